"""Model bundles without pickle: arrays in ``.npz``, everything else in JSON.

A bundle is a directory, or a single zip file, holding

- ``arrays.npz``: every numpy array of the model (``np.savez``; read back with
  ``allow_pickle=False``);
- ``meta.json``: the library and format versions, and the estimator as a tree of
  nodes ``{"class", "params", "fitted"}`` (constructor parameters and public
  fitted attributes, with nested estimators as nodes of their own), plus the
  optional id maps (an :class:`~skfewrec.preprocessing.InteractionEncoder`);
- ``lightgbm/<n>.txt``: each LightGBM booster as LightGBM's own model text;
- ``manifest.json``: the format, the library version and the SHA-256 and size of
  every other member.

Loading instantiates only allow-listed classes (skfewrec's estimators, and
scikit-learn's ``Pipeline`` and ``FrozenEstimator``): it restores the parameters
through the constructor, sets the public fitted attributes, then calls
``_rebuild()`` where an estimator has one, to recompute its private caches.
Nothing is unpickled and nothing is evaluated.
"""

import datetime as _dt
import hashlib
import importlib
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from ._core.threads import blas_limits

FORMAT_NAME = "skfewrec-bundle"
#: the bundle format this module writes; it reads this one and older ones
FORMAT_VERSION = 1

MANIFEST = "manifest.json"
META = "meta.json"
ARRAYS = "arrays.npz"

#: classes from outside skfewrec that may be saved and loaded: public path -> (module, name)
_EXTERNAL_CLASSES = {
    "sklearn.pipeline.Pipeline": ("sklearn.pipeline", "Pipeline"),
    "sklearn.frozen.FrozenEstimator": ("sklearn.frozen", "FrozenEstimator"),
}
#: the modules whose public names a bundle may use for skfewrec classes
_PUBLIC_MODULES = ("skfewrec", "skfewrec.preprocessing")
#: class paths written by earlier versions (private module paths) -> public path
_ALIASES = {
    **{
        f"skfewrec.{module}.{name}": f"skfewrec.{name}"
        for module, names in {
            "_factors": ["ALSFactors"],
            "_explicit": ["ExplicitALSFactors"],
            "_closed_form": ["ClosedFormFoldIn"],
            "_gradient": ["GradientFoldIn"],
            "_rerank": ["LightGBMReranker"],
            "_baselines": ["EASE", "ImplicitFoldIn", "ItemKNN", "MostPopular"],
        }.items()
        for name in names
    },
    "skfewrec.preprocessing._encoder.InteractionEncoder": (
        "skfewrec.preprocessing.InteractionEncoder"
    ),
    **{
        f"skfewrec.preprocessing._weighting.{name}": f"skfewrec.preprocessing.{name}"
        for name in ("BM25Weighting", "LogConfidence", "TFIDFWeighting")
    },
}
#: member names a manifest may list, and the largest manifest read
_MEMBER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")
_MAX_MANIFEST = 16 * 2**20
#: strings longer than this are stored as members of their own
_LONG_TEXT = 4096
_LIGHTGBM_HEADER = "tree\nversion="
# the root estimator's attribute holding the bundle's id maps (see ``load``)
_ENCODER_ATTR = "encoder_"


class BundleError(ValueError):
    """A model bundle that cannot be written or read: corrupt, tampered, or unsupported.

    A ``ValueError``: catching ``ValueError`` catches it.

    Examples
    --------
    >>> from skfewrec.persistence import BundleError, loads
    >>> try:
    ...     loads(b"junk")
    ... except BundleError as exc:
    ...     print("refused")
    refused
    """


def _library_version():
    from . import __version__

    return __version__


def _major(version):
    head = str(version).split(".", 1)[0]
    return int(head) if head.isdigit() else None


# ----------------------------------------------------------------------- writing
def _public_class_path(cls):
    for path, (module, name) in _EXTERNAL_CLASSES.items():
        if getattr(importlib.import_module(module), name) is cls:
            return path
    for module in _PUBLIC_MODULES:
        if getattr(importlib.import_module(module), cls.__name__, None) is cls:
            return f"{module}.{cls.__name__}"
    return None


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
        if isinstance(value, str) and len(value) > _LONG_TEXT:
            # long texts (a LightGBM model) are members of their own, readable as such
            folder = "lightgbm" if value.startswith(_LIGHTGBM_HEADER) else "text"
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
        path = _public_class_path(type(est))
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
        if where == "estimator":
            fitted.pop(_ENCODER_ATTR, None)
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
        "library_version": _library_version(),
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
    if encoder is None:
        encoder = getattr(estimator, _ENCODER_ATTR, None)
    if encoder is not None:
        from .preprocessing import InteractionEncoder

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
        (its ``handle_unknown``). None saves the estimator's ``encoder_`` if it has
        one (a model loaded from a bundle with id maps), else no id maps.

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


# ----------------------------------------------------------------------- reading
class _Reader:
    """Member access for a directory or a zip bundle."""

    def __init__(self, source, label):
        self.label = label
        self._dir = None
        self._zip = None
        if isinstance(source, bytes | bytearray | memoryview):
            self._open_zip(io.BytesIO(bytes(source)))
            return
        path = Path(os.fspath(source))
        if path.is_dir():
            self._dir = path
        elif path.is_file():
            self._open_zip(path)
        else:
            raise FileNotFoundError(f"No model bundle at {str(path)!r}: it does not exist.")

    def _open_zip(self, source):
        try:
            self._zip = zipfile.ZipFile(source)
        except (zipfile.BadZipFile, OSError) as exc:
            raise BundleError(
                f"{self.label} is not a readable skfewrec bundle: not a directory bundle and "
                f"not a valid zip file ({exc}); it may be truncated. Save the model again."
            ) from None

    def size(self, name):
        """The stored (uncompressed) size of a member, or None when it is missing."""
        try:
            if self._dir is not None:
                return (self._dir / name).stat().st_size
            return self._zip.getinfo(name).file_size
        except (FileNotFoundError, KeyError):
            return None

    def read(self, name):
        try:
            if self._dir is not None:
                return (self._dir / name).read_bytes()
            return self._zip.read(name)
        except (FileNotFoundError, KeyError):
            return None
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise BundleError(
                f"{self.label}: member {name!r} cannot be read ({exc}); the bundle is "
                "truncated or corrupted. Save the model again."
            ) from None

    def close(self):
        if self._zip is not None:
            self._zip.close()


def _parse_json(data, name, label):
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(
            f"{label}: {name} is not valid JSON ({exc}); the bundle is corrupted."
        ) from None


def _check_versions(doc, name, label):
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise BundleError(f"{label}: {name} does not describe a skfewrec bundle.")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BundleError(f"{label}: {name} has an invalid format_version {version!r}.")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"{label} uses bundle format {version}, newer than the formats this skfewrec "
            f"({_library_version()}) reads (up to {FORMAT_VERSION}); upgrade skfewrec."
        )
    written = doc.get("library_version")
    if _major(written) != _major(_library_version()):
        raise BundleError(
            f"{label} was written by skfewrec {written!r}, whose major version differs from "
            f"this skfewrec {_library_version()}; load it with skfewrec {written} or refit "
            "the model."
        )


def _read_members(reader):
    label = reader.label
    size = reader.size(MANIFEST)
    if size is not None and size > _MAX_MANIFEST:
        raise BundleError(f"{label}: {MANIFEST} is {size} bytes, too large for a manifest.")
    raw = reader.read(MANIFEST)
    if raw is None:
        raise BundleError(
            f"{label} is not a skfewrec bundle, or it is truncated: it has no {MANIFEST}. "
            "Bundles are written by skfewrec.save or `skfewrec fit`."
        )
    manifest = _parse_json(raw, MANIFEST, label)
    _check_versions(manifest, MANIFEST, label)
    listed = manifest.get("members")
    if not isinstance(listed, dict) or META not in listed or ARRAYS not in listed:
        raise BundleError(f"{label}: {MANIFEST} does not list {META} and {ARRAYS}.")
    members = {}
    for name, entry in listed.items():
        if not isinstance(name, str) or not _MEMBER_NAME.match(name) or ".." in name:
            raise BundleError(f"{label}: {MANIFEST} lists an invalid member name {name!r}.")
        stored = reader.size(name)
        expected = entry.get("size") if isinstance(entry, dict) else None
        if stored is not None and stored != expected:
            # checked before reading: a member is never decompressed past its listed size
            raise BundleError(
                f"{label} is truncated or corrupted: member {name!r} has {stored} bytes, "
                f"the manifest says {expected}."
            )
        data = reader.read(name)
        if data is None:
            raise BundleError(
                f"{label} is truncated: member {name!r} listed in the manifest is missing."
            )
        if not isinstance(entry, dict) or len(data) != entry.get("size"):
            raise BundleError(
                f"{label} is truncated or corrupted: member {name!r} has {len(data)} bytes, "
                f"the manifest says {entry.get('size') if isinstance(entry, dict) else '?'}."
            )
        if _sha256(data) != entry.get("sha256"):
            raise BundleError(
                f"{label} failed its integrity check: the SHA-256 of member {name!r} does not "
                "match the manifest, so the bundle was modified or corrupted after it was "
                "saved. Save the model again."
            )
        members[name] = data
    return members


def _allowed_class(path, label):
    if not isinstance(path, str):
        raise BundleError(f"{label}: a node has no class path.")
    if path in _EXTERNAL_CLASSES:
        module, name = _EXTERNAL_CLASSES[path]
        return getattr(importlib.import_module(module), name)
    path = _ALIASES.get(path, path)
    module, _, name = path.rpartition(".")
    if module in _PUBLIC_MODULES:
        cls = getattr(importlib.import_module(module), name, None)
        if isinstance(cls, type) and issubclass(cls, BaseEstimator):
            return cls
    if path.startswith("skfewrec."):
        raise BundleError(
            f"{label} holds a {path}, which this skfewrec ({_library_version()}) does not "
            "have; load it with the skfewrec version that saved it."
        )
    raise BundleError(
        f"{label} asks for class {path!r}, which is not on the allow-list (skfewrec's "
        "estimators, sklearn.pipeline.Pipeline, sklearn.frozen.FrozenEstimator); refusing "
        "to load it."
    )


class _Decoder:
    def __init__(self, arrays, members, label):
        self.arrays = arrays
        self.members = members
        self.label = label
        self._nodes = {}

    def _array(self, spec):
        key = spec.get("__array__")
        if key not in self.arrays:
            raise BundleError(f"{self.label}: array {key!r} is missing from {ARRAYS}.")
        value = self.arrays[key]
        kind = spec.get("object")
        if kind == "str":
            value = value.astype(object)
        elif kind == "int":
            value = np.array(value.tolist(), dtype=object).reshape(value.shape)
        return value

    def value(self, value):
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if not isinstance(value, dict):
            raise BundleError(f"{self.label}: unexpected value {value!r} in {META}.")
        if "__array__" in value:
            return self._array(value)
        if "__float__" in value:
            return float(value["__float__"])
        if "__tuple__" in value:
            return tuple(self.value(v) for v in value["__tuple__"])
        if "__dict__" in value:
            return {self.value(k): self.value(v) for k, v in value["__dict__"]}
        if "__estimator__" in value:
            return self.node(value["__estimator__"])
        if "__sparse__" in value:
            base = {"csr": sp.csr_matrix, "csc": sp.csc_matrix}[value["base"]]
            mat = base(
                (
                    self._array(value["data"]),
                    self._array(value["indices"]),
                    self._array(value["indptr"]),
                ),
                shape=tuple(value["shape"]),
            )
            mat = mat.asformat(value["__sparse__"])
            if value.get("array"):
                mat = getattr(sp, f"{value['__sparse__']}_array")(mat)
            return mat
        if "__dtype__" in value:
            return np.dtype(value["__dtype__"])
        if "__scalar_type__" in value:
            return np.dtype(value["__scalar_type__"]).type
        if "__builtin_type__" in value:
            return {"bool": bool, "int": int, "float": float, "str": str, "complex": complex}[
                value["__builtin_type__"]
            ]
        if "__text__" in value:
            text = self.members.get(value["__text__"])
            if text is None:
                raise BundleError(f"{self.label}: member {value['__text__']!r} is missing.")
            return text.decode("utf-8")
        if "__lightgbm_booster__" in value:
            import lightgbm

            text = self.members.get(value["__lightgbm_booster__"])
            if text is None:
                raise BundleError(f"{self.label}: LightGBM model member is missing.")
            return lightgbm.Booster(model_str=text.decode("utf-8"))
        if any(key in value for key in ("__dataframe__", "__series__", "__index__")):
            return self._pandas(value)
        raise BundleError(f"{self.label}: unknown value tag in {META}: {sorted(value)}.")

    def _column(self, spec):
        import pandas as pd

        if isinstance(spec, dict) and "__categorical__" in spec:
            codes = self._array({"__array__": spec["__categorical__"]["__array__"]})
            return pd.Categorical.from_codes(
                codes, categories=self.value(spec["categories"]), ordered=spec["ordered"]
            )
        return self.value(spec)

    def _pandas(self, value):
        import pandas as pd

        if "__dataframe__" in value:
            names = [self.value(c) for c in value["__dataframe__"]]
            index = self.value(value["index"])
            cols = [self._column(c) for c in value["columns"]]
            frame = pd.DataFrame(dict(zip(range(len(cols)), cols)), index=index)
            frame.columns = names
            return frame
        if "__series__" in value:
            return pd.Series(
                self._column(value["values"]),
                index=self.value(value["index"]),
                name=self.value(value["__series__"]),
            )
        return pd.Index(self._column(value["__index__"]), name=self.value(value["name"]))

    def node(self, node):
        if not isinstance(node, dict):
            raise BundleError(f"{self.label}: an estimator node is malformed.")
        if "ref" in node:
            if node["ref"] not in self._nodes:
                raise BundleError(f"{self.label}: a node refers to an unknown estimator.")
            return self._nodes[node["ref"]]
        cls = _allowed_class(node.get("class"), self.label)
        params = {k: self.value(v) for k, v in node.get("params", {}).items()}
        try:
            est = cls(**params)
        except TypeError as exc:
            raise BundleError(
                f"{self.label}: {cls.__name__} does not accept the saved parameters ({exc}); "
                "load the bundle with the skfewrec version that saved it."
            ) from None
        self._nodes[node.get("id")] = est
        for key, val in node.get("fitted", {}).items():
            if not (isinstance(key, str) and key.endswith("_") and not key.startswith("_")):
                raise BundleError(f"{self.label}: {key!r} is not a public fitted attribute.")
            setattr(est, key, self.value(val))
        if node.get("fitted"):
            rebuild = getattr(est, "_rebuild", None)
            if callable(rebuild):
                # the estimator's own BLAS threads (n_jobs=None: one): an unlimited BLAS
                # on a busy machine makes these small factorisations several times slower
                with blas_limits(_blas_threads(est)):
                    rebuild()
        return est


def _blas_threads(est):
    from ._core.threads import effective_n_jobs

    n_jobs = getattr(est, "n_jobs", None)
    try:
        return effective_n_jobs(n_jobs if isinstance(n_jobs, int) else None)
    except ValueError:
        return 1


def _load(source, label):
    reader = _Reader(source, label)
    try:
        members = _read_members(reader)
    finally:
        reader.close()
    meta = _parse_json(members[META], META, label)
    _check_versions(meta, META, label)
    try:
        with np.load(io.BytesIO(members[ARRAYS]), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise BundleError(f"{label}: {ARRAYS} cannot be read ({exc}).") from None
    decoder = _Decoder(arrays, members, label)
    try:
        estimator = decoder.node(meta.get("estimator"))
        if meta.get("encoder") is not None:
            setattr(estimator, _ENCODER_ATTR, decoder.node(meta["encoder"]))
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise BundleError(f"{label}: {META} is malformed ({type(exc).__name__}: {exc}).") from None
    return estimator


def load(path):
    """Load an estimator from a model bundle written by :func:`save`.

    Only allow-listed classes are instantiated (skfewrec's estimators, scikit-learn's
    ``Pipeline`` and ``FrozenEstimator``); nothing is unpickled or evaluated. Every
    member's SHA-256 is checked against the manifest first.

    Parameters
    ----------
    path : str or path-like
        A bundle directory or zip file.

    Returns
    -------
    estimator : estimator
        The saved estimator, ready to use. When the bundle carries id maps, they are
        attached as ``estimator.encoder_`` (an
        :class:`~skfewrec.preprocessing.InteractionEncoder`).

    Raises
    ------
    FileNotFoundError
        When nothing exists at ``path``.
    BundleError
        (a ``ValueError``) When the bundle is truncated, fails its checksums, was
        written by a newer bundle format or another major version of skfewrec, or
        names a class outside the allow-list.

    See Also
    --------
    save : Write a bundle.

    Examples
    --------
    >>> import skfewrec
    >>> skfewrec.load("no/such/model.zip")
    Traceback (most recent call last):
    ...
    FileNotFoundError: No model bundle at 'no/such/model.zip': it does not exist.
    """
    return _load(path, f"Bundle {os.fspath(path)!r}")


def loads(data):
    """Load an estimator from the bytes of a zip bundle (see :func:`dumps`).

    Parameters
    ----------
    data : bytes
        What :func:`dumps` returned (or the bytes of a ``.zip`` bundle file).

    Returns
    -------
    estimator : estimator
        The saved estimator; with ``encoder_`` when the bundle carries id maps.

    Examples
    --------
    >>> from skfewrec.persistence import loads
    >>> loads(b"not a bundle")
    Traceback (most recent call last):
    ...
    skfewrec.persistence.BundleError: The bundle bytes is not a readable skfewrec bundle: ...
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes from dumps(), got {type(data).__name__}.")
    return _load(data, "The bundle bytes")


def read_metadata(path):
    """The ``meta.json`` of a bundle without loading its arrays (after checksums).

    Parameters
    ----------
    path : str, path-like or bytes
        A bundle directory, zip file, or the bytes of one.

    Returns
    -------
    meta : dict
        Versions, creation time and the estimator tree (arrays as references).

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec import ALSFactors
    >>> from skfewrec.persistence import dumps, read_metadata
    >>> meta = read_metadata(dumps(ALSFactors.from_arrays(np.eye(3, 2))))
    >>> meta["format_version"], meta["estimator"]["class"]
    (1, 'skfewrec.ALSFactors')
    """
    label = "The bundle bytes" if isinstance(path, bytes) else f"Bundle {os.fspath(path)!r}"
    reader = _Reader(path, label)
    try:
        members = _read_members(reader)
    finally:
        reader.close()
    return _parse_json(members[META], META, label)
