"""Helpers shared by the dataset loaders: path checks and the common Bunch."""

from numbers import Real
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from ..preprocessing._encoder import InteractionEncoder


def _find_layout(path, layouts, *, dataset):
    """Return the name of the first layout whose marker file exists under ``path``.

    Parameters
    ----------
    path : str or path-like
        The folder to look in.
    layouts : dict
        Maps a layout name to ``(marker_file, all_files)``: the layout is detected when
        ``marker_file`` exists; ``all_files`` are listed in the error message.
    dataset : str
        Name of the dataset, for the error message.

    Returns
    -------
    layout : str
        The detected layout.
    path : pathlib.Path
        ``path`` as a Path.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        for name, (marker, _) in layouts.items():
            if (path / marker).is_file():
                return name, path
    expected = "; ".join(f"{name}: {', '.join(files)}" for name, (_, files) in layouts.items())
    if not path.exists():
        problem = "does not exist"
    elif not path.is_dir():
        problem = "is not a folder"
    else:
        found = sorted(p.name for p in path.iterdir())[:10]
        problem = f"holds none of the known layouts (it contains: {', '.join(found) or 'nothing'})"
    raise FileNotFoundError(
        f"Cannot load {dataset}: {str(path)!r} {problem}. Pass the folder of an extracted "
        f"release, holding the files of one of these layouts ({expected})."
    )


def _check_min_rating(min_rating):
    if min_rating is not None and (
        isinstance(min_rating, bool) or not isinstance(min_rating, Real) or np.isnan(min_rating)
    ):
        raise TypeError(
            f"min_rating must be a number or None, got {min_rating!r} of type "
            f"{type(min_rating).__name__}."
        )


def _make_bunch(
    frame,
    *,
    item_features=None,
    user_features=None,
    descr,
    min_rating=None,
    binarize=False,
):
    """Filter a long log and build the Bunch every loader returns.

    Parameters
    ----------
    frame : pandas.DataFrame
        Columns ``user``, ``item``, ``value`` and optionally ``timestamp``.
    item_features, user_features : pandas.DataFrame or None
        Indexed by raw id; restricted and ordered to the ids kept in ``X``.
    descr : str
        First lines of ``DESCR``; counts are appended.
    min_rating : float or None
        Keep only rows with ``value >= min_rating``.
    binarize : bool
        Replace the values by 1.0.

    Returns
    -------
    bunch : sklearn.utils.Bunch
        With ``X``, ``timestamps``, ``user_ids``, ``item_ids``, ``item_features``,
        ``user_features``, ``frame`` and ``DESCR``.
    """
    _check_min_rating(min_rating)
    keep = frame["value"].to_numpy() > 0
    if min_rating is not None:
        keep &= frame["value"].to_numpy() >= min_rating
    if not keep.all():
        frame = frame.loc[keep]
    if len(frame) == 0:
        raise ValueError(
            f"No interaction is left after filtering (min_rating={min_rating!r}); lower min_rating."
        )
    frame = frame.reset_index(drop=True)
    if binarize:
        frame["value"] = np.float32(1.0)
    has_time = "timestamp" in frame.columns
    encoder = InteractionEncoder(
        user_col="user",
        item_col="item",
        value_col="value",
        time_col="timestamp" if has_time else None,
    )
    X, T, user_ids = encoder._fit_encode(frame, timestamps=has_time)
    item_ids = encoder.item_ids_
    if item_features is not None:
        item_features = _align(item_features, item_ids)
    if user_features is not None:
        user_features = _align(user_features, user_ids)
    descr = (
        f"{descr}\n\n{X.shape[0]} users, {X.shape[1]} items, {X.nnz} interactions "
        f"(min_rating={min_rating!r}, binarize={binarize}); timestamps: "
        f"{'unix seconds' if has_time else 'none'}."
    )
    return _dataset(X, T, user_ids, item_ids, item_features, user_features, frame, descr)


def _dataset(X, timestamps, user_ids, item_ids, item_features, user_features, frame, descr):
    """The Bunch every dataset function returns (loaders and generators alike)."""
    return Bunch(
        X=X,
        timestamps=timestamps,
        user_ids=user_ids,
        item_ids=item_ids,
        item_features=item_features,
        user_features=user_features,
        frame=frame,
        DESCR=descr,
    )


def _align(features, ids):
    """Reindex a feature table to ``ids``; genre flags of ids it lacks are 0, the rest NaN."""
    aligned = features.reindex(pd.Index(ids, name=features.index.name))
    if not np.all(pd.Index(ids).isin(features.index)):
        for col in features.columns:
            if str(col).startswith("genre_"):
                aligned[col] = aligned[col].fillna(0).astype(features[col].dtype)
    return aligned
