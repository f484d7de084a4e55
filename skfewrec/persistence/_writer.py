"""Writing bundles: an estimator tree as JSON nodes, numpy arrays and member texts."""

import datetime as _dt
import hashlib
import io
import json
import math
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from ._errors import BundleError
from ._format import (
    ARRAYS,
    FORMAT_NAME,
    FORMAT_VERSION,
    LIGHTGBM_HEADER,
    LONG_TEXT,
    MANIFEST,
    META,
    library_version,
    public_class_path,
)


def _is_lightgbm_booster(value):
    module = type(value).__module__ or ""
    return module.startswith("lightgbm") and type(value).__name__ == "Booster"


class _Encoder:
    """Turns an estimator tree into JSON-able nodes, arrays and member texts."""

    def __init__(self):
        self.arrays = {}
        self.texts = {}
        self._array_keys = {}  # id(array) -> key: an array shared by attributes is stored once
        self._nodes = {}  # id(estimator) -> node number: shared estimators stay shared
        self._n_nodes = 0
        self._keep_alive = []

    def _array(self, value, where):
        key = self._array_keys.get(id(value))
        if key is not None:
            return {"__array__": key}
        if value.dtype.hasobject:
            stored, kind = _object_array(value, where)
        else:
            stored, kind = value, None
        key = f"a{len(self.arrays)}"
        self.arrays[key] = stored
        self._array_keys[id(value)] = key
        self._keep_alive.append(value)
        out = {"__array__": key}
        if kind is not None:
            out["object"] = kind
        return out

    def value(self, value, where):
        """The JSON form of one parameter or attribute value."""
        if isinstance(value, str) and len(value) > LONG_TEXT:
            # long texts (a LightGBM model) are members of their own, readable as such
            folder = "lightgbm" if value.startswith(LIGHTGBM_HEADER) else "text"
            name = f"{folder}/{len(self.texts)}.txt"
            self.texts[name] = value
            return {"__text__": name}
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, int | np.integer):
            return int(value)
        if isinstance(value, float | np.floating):
            value = float(value)
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, list):
            return [self.value(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, tuple):
            return {"__tuple__": [self.value(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, dict):
            return {
                "__dict__": [
                    [self.value(k, f"{where} key"), self.value(v, f"{where}[{k!r}]")]
                    for k, v in value.items()
                ]
            }
        if isinstance(value, np.ndarray):
            return self._array(value, where)
        if sp.issparse(value):
            csr = value.tocsr() if value.format not in ("csr", "csc") else value
            return {
                "__sparse__": value.format,
                "array": isinstance(value, sp.sparray),
                "shape": [int(n) for n in value.shape],
                "base": csr.format,
                "data": self._array(csr.data, where),
                "indices": self._array(csr.indices, where),
                "indptr": self._array(csr.indptr, where),
            }
        if isinstance(value, np.dtype) and value.names is None:
            return {"__dtype__": value.str}
        if isinstance(value, type):
            if issubclass(value, np.generic):
                return {"__scalar_type__": np.dtype(value).name}
            if value in (bool, int, float, str, complex):
                return {"__builtin_type__": value.__name__}
        if isinstance(value, BaseEstimator):
            return {"__estimator__": self.node(value, where)}
        if _is_lightgbm_booster(value):
            name = f"lightgbm/{len(self.texts)}.txt"
            self.texts[name] = value.model_to_string()
            return {"__lightgbm_booster__": name}
        frame = _pandas_value(self, value, where)
        if frame is not None:
            return frame
        if isinstance(value, np.random.RandomState | np.random.Generator):
            raise BundleError(
                f"Cannot save {where}: it is a {type(value).__name__}. Set an int seed "
                "(random_state=0) or None instead of a random generator to save the model."
            )
        raise BundleError(
            f"Cannot save {where}: values of type {type(value).__module__}."
            f"{type(value).__qualname__} have no pickle-free form. Bundles hold numbers, "
            "strings, lists, dicts, numpy arrays, sparse matrices, DataFrames, skfewrec "
            "estimators and LightGBM boosters."
        )

    def node(self, est, where):
        """The node of an estimator: its class, params and public fitted attributes."""
        number = self._nodes.get(id(est))
        if number is not None:
            return {"ref": number}
        path = public_class_path(type(est))
        if path is None:
            raise BundleError(
                f"Cannot save {where}: {type(est).__module__}.{type(est).__qualname__} is not "
                "a class bundles may hold. Allowed: skfewrec's estimators, "
                "sklearn.pipeline.Pipeline and sklearn.frozen.FrozenEstimator."
            )
        number = self._n_nodes
        self._n_nodes += 1
        self._nodes[id(est)] = number
        self._keep_alive.append(est)
        name = type(est).__name__
        params = est.get_params(deep=False)
        fitted = {
            key: val
            for key, val in vars(est).items()
            if key.endswith("_") and not key.startswith("_") and key not in params
        }
        return {
            "id": number,
            "class": path,
            "params": {k: self.value(v, f"{name}.{k}") for k, v in sorted(params.items())},
            "fitted": {k: self.value(v, f"{name}.{k}") for k, v in sorted(fitted.items())},
        }


def _object_array(value, where):
    """An object array of str (or of int) as a plain numpy array, or an error."""
    flat = value.ravel()
    if all(isinstance(v, str) for v in flat):
        return (np.asarray(value, dtype=str) if flat.size else value.astype("U1")), "str"
    if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in flat):
        return value.astype(np.int64), "int"
    kinds = sorted({type(v).__name__ for v in flat})
    raise BundleError(
        f"Cannot save {where}: an object array holding {', '.join(kinds)} values. Only "
        "object arrays of all-str or all-int values (such as raw ids) can be saved; convert "
        "ids to one type first, e.g. df['item'].astype(str)."
    )


def _pandas_value(encoder, value, where):
    """DataFrame, Series, Index and Categorical values, or None if not pandas."""
    if "pandas" not in sys.modules:
        return None
    import pandas as pd

    def column(col, name):
        if isinstance(col.dtype, pd.CategoricalDtype):
            return {
                "__categorical__": encoder._array(np.asarray(col.cat.codes), name),
                "categories": encoder.value(np.asarray(col.cat.categories), name),
                "ordered": bool(col.cat.ordered),
            }
        return encoder.value(np.asarray(col.to_numpy()), name)

    if isinstance(value, pd.DataFrame):
        return {
            "__dataframe__": [
                encoder.value(str(c) if not isinstance(c, int | str) else c, where)
                for c in value.columns
            ],
            "columns": [
                column(value.iloc[:, j], f"{where}[{c!r}]") for j, c in enumerate(value.columns)
            ],
            "index": encoder.value(value.index, f"{where}.index"),
        }
    if isinstance(value, pd.Series):
        return {
            "__series__": encoder.value(value.name, where),
            "values": column(value, where),
            "index": encoder.value(value.index, f"{where}.index"),
        }
    if isinstance(value, pd.Index):
        if isinstance(value, pd.MultiIndex):
            raise BundleError(f"Cannot save {where}: a MultiIndex; reset_index() first.")
        return {
            "__index__": column(pd.Series(value), where),
            "name": encoder.value(value.name, where),
        }
    return None


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _members(estimator, encoder):
    """The bundle's members, name -> bytes, with the manifest."""
    enc = _Encoder()
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library": "skfewrec",
        "library_version": library_version(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "estimator": enc.node(estimator, "estimator"),
        "encoder": None if encoder is None else enc.node(encoder, "encoder"),
    }
    buf = io.BytesIO()
    np.savez(buf, **enc.arrays)
    members = {
        META: json.dumps(meta, indent=1, allow_nan=False).encode(),
        ARRAYS: buf.getvalue(),
    }
    members.update({name: text.encode() for name, text in enc.texts.items()})
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": meta["library_version"],
        "members": {
            name: {"sha256": _sha256(data), "size": len(data)} for name, data in members.items()
        },
    }
    members[MANIFEST] = json.dumps(manifest, indent=1).encode()
    return members


def _check_savable(estimator, encoder):
    if not isinstance(estimator, BaseEstimator):
        raise TypeError(
            f"estimator must be a scikit-learn estimator (a skfewrec model or a Pipeline of "
            f"them), got {type(estimator).__name__}."
        )
    if encoder is not None:
        from ..preprocessing import InteractionEncoder

        if not isinstance(encoder, InteractionEncoder):
            raise TypeError(
                f"encoder must be a fitted skfewrec.preprocessing.InteractionEncoder (the id "
                f"maps of the model), got {type(encoder).__name__}."
            )
        if not hasattr(encoder, "item_ids_"):
            raise ValueError("encoder is not fitted; fit it on the training log first.")
        n_items = getattr(estimator, "n_features_in_", None)
        if n_items is not None and n_items != encoder.n_items_:
            raise ValueError(
                f"encoder knows {encoder.n_items_} items but the estimator was fitted on "
                f"{n_items}; pass the encoder that built the model's training matrix."
            )
    return encoder


def dumps(estimator, *, encoder=None):
    """Serialise an estimator into the bytes of a zip bundle (no pickle).

    Parameters
    ----------
    estimator : estimator
        A skfewrec estimator, fitted or not, or a Pipeline of them.
    encoder : InteractionEncoder, default=None
        The fitted id maps to ship with the model (see :func:`save`).

    Returns
    -------
    data : bytes
        A zip bundle; :func:`loads` reads it back.

    See Also
    --------
    save : The same, written to a directory or a zip file.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec import ALSFactors
    >>> from skfewrec.persistence import dumps, loads
    >>> als = ALSFactors.from_arrays(np.eye(4, 2), regularization=0.1)
    >>> loads(dumps(als)).item_factors_.shape
    (4, 2)
    """
    encoder = _check_savable(estimator, encoder)
    buf = io.BytesIO()
    _write_zip(buf, _members(estimator, encoder))
    return buf.getvalue()


def _write_zip(fileobj, members):
    with zipfile.ZipFile(fileobj, "w") as zf:
        for name, data in members.items():
            # arrays.npz is itself a zip: storing it keeps loading fast
            method = zipfile.ZIP_STORED if name == ARRAYS else zipfile.ZIP_DEFLATED
            zf.writestr(name, data, compress_type=method)


def save(estimator, path, *, encoder=None):
    """Save an estimator to a model bundle, without pickle.

    The bundle is a single zip file when ``path`` ends in ``.zip``, else a directory.
    An existing bundle at ``path`` is replaced atomically (readers never see half a
    bundle).

    Parameters
    ----------
    estimator : estimator
        A skfewrec estimator, fitted or not, or a scikit-learn ``Pipeline`` of them.
        Nested estimators (``factors``, ``candidates``, a ``FrozenEstimator``,
        fitted ``factors_``) are saved with it.
    path : str or path-like
        Where to write: ``model.zip`` for a zip file, any other name for a directory.
    encoder : InteractionEncoder, default=None
        The fitted :class:`~skfewrec.preprocessing.InteractionEncoder` whose
        columns are the model's items: the id maps that let the command line and
        the HTTP service take and return raw ids, and the policy for unknown ids
        (its ``handle_unknown``). None: no id maps. To keep the id maps of a
        loaded model, pass the encoder ``load(..., return_encoder=True)`` returned.

    Returns
    -------
    path : pathlib.Path
        The bundle written.

    Raises
    ------
    BundleError
        When a parameter or attribute has no pickle-free form (a random generator,
        a callable, an object of a class outside the allow-list).

    See Also
    --------
    load : Read a bundle back.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> import skfewrec
    >>> from skfewrec import ALSFactors, ClosedFormFoldIn
    >>> from skfewrec.datasets import make_interactions
    >>> X = make_interactions(n_users=200, n_items=50, random_state=0).X
    >>> rec = ClosedFormFoldIn(ALSFactors(n_components=4, random_state=0)).fit(X)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = skfewrec.save(rec, f"{tmp}/model.zip")
    ...     loaded = skfewrec.load(path)
    >>> bool(np.array_equal(loaded.recommend(X[:5])[0], rec.recommend(X[:5])[0]))
    True
    """
    encoder = _check_savable(estimator, encoder)
    members = _members(estimator, encoder)
    path = Path(os.fspath(path))
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(
            f"Cannot save to {str(path)!r}: the folder {str(parent)!r} does not exist."
        )
    if path.suffix.lower() == ".zip":
        if path.is_dir():
            raise IsADirectoryError(
                f"Cannot save to {str(path)!r}: it is a directory; remove it or pick another name."
            )
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                _write_zip(fh, members)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
    is_bundle = path.is_dir() and (path / MANIFEST).is_file()
    if path.exists() and not is_bundle and (path.is_file() or any(path.iterdir())):
        raise FileExistsError(
            f"Cannot save to {str(path)!r}: it exists and is not a skfewrec bundle; "
            "remove it or pick another name (use a .zip name for a single-file bundle)."
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    try:
        for name, data in members.items():
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
