"""Loader for the HetRec 2011 Last.fm dataset (hetrec2011-lastfm-2k)."""

import csv

import numpy as np
import pandas as pd

from ._base import _find_layout, _make_bunch

_LAYOUTS = {"hetrec2011-lastfm-2k": ("user_artists.dat", ["user_artists.dat", "artists.dat"])}


def load_lastfm(path):
    """Load the HetRec 2011 Last.fm play counts (hetrec2011-lastfm-2k).

    Parameters
    ----------
    path : str or path-like
        The extracted folder, holding ``user_artists.dat`` (tab-separated ``userID``,
        ``artistID``, ``weight`` with a header) and optionally ``artists.dat``
        (``id``, ``name``, ``url``, ``pictureURL``).

    Returns
    -------
    data : sklearn.utils.Bunch
        Dictionary-like object with:

        X : scipy.sparse.csr_matrix of shape (n_users, n_items)
            Float32 play counts of each user for each artist.
        timestamps : None
            The play counts carry no times.
        user_ids, item_ids : ndarray
            Sorted raw user and artist ids: the rows and columns of ``X``.
        item_features : pandas.DataFrame or None
            Indexed by artist id in ``item_ids`` order, with a ``name`` column; None
            without ``artists.dat``.
        user_features : None
            The dataset has no user attributes.
        frame : pandas.DataFrame
            The play counts: columns ``user``, ``item``, ``value``.
        DESCR : str
            Description of the loaded data.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist or holds no ``user_artists.dat``.

    See Also
    --------
    load_movielens : MovieLens ratings.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from skfewrec.datasets import load_lastfm
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = (pathlib.Path(folder) / "user_artists.dat").write_text(
    ...         "userID\\tartistID\\tweight\\n2\\t51\\t138\\n2\\t52\\t116\\n4\\t51\\t7\\n")
    ...     data = load_lastfm(folder)
    >>> data.X.toarray()
    array([[138., 116.],
           [  7.,   0.]], dtype=float32)
    >>> data.user_ids, data.item_ids
    (array([2, 4], dtype=int32), array([51, 52], dtype=int32))
    """
    _, path = _find_layout(path, _LAYOUTS, dataset="Last.fm (hetrec2011-lastfm-2k)")
    frame = pd.read_csv(
        path / "user_artists.dat",
        sep="\t",
        header=0,
        names=["user", "item", "value"],
        usecols=[0, 1, 2],
        dtype={"user": np.int32, "item": np.int32, "value": np.float32},
        engine="c",
    )
    items = None
    if (path / "artists.dat").is_file():
        items = pd.read_csv(
            path / "artists.dat",
            sep="\t",
            header=0,
            names=["item", "name"],
            usecols=[0, 1],
            dtype={"item": np.int32, "name": str},
            quoting=csv.QUOTE_NONE,
            encoding="utf-8",
            encoding_errors="replace",
            engine="c",
        ).set_index("item")
    descr = (
        f"HetRec 2011 Last.fm play counts (users x artists) read from {str(path)!r}. "
        "Released by GroupLens for research (HetRec 2011 workshop); see its readme."
    )
    return _make_bunch(frame, item_features=items, descr=descr)
