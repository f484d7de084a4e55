"""Reading bundles: a parser of untrusted input, within resource limits.

Nothing in a bundle is trusted because its checksums match (anyone can recompute
them): members are read within size limits, every value is checked before use
(:mod:`._checks`), LightGBM text goes through a strict reader first
(:mod:`._lightgbm`), and every failure is one :class:`BundleError`.
"""

import hashlib
import importlib
import os

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from ._checks import check_fitted, check_params, check_sparse, guarded, smoke_check
from ._errors import BundleError
from ._format import (
    _ALIASES,
    _EXTERNAL_CLASSES,
    _PUBLIC_MODULES,
    ARRAYS,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    MEMBER_NAME,
    META,
    library_version,
)
from ._lightgbm import canonical_model_text
from ._reader import (
    Budget,
    LazyArrays,
    Reader,
    limits,
    parse_json,
    read_capped,
    sha256_stream,
)

#: the most members a manifest may list
_MAX_MEMBERS = 10_000
#: fitted attributes holding a LightGBM model text (rebuilt into a Booster)
_LIGHTGBM_TEXT_ATTRIBUTES = ("model_text_",)
_SPARSE_FORMATS = {"csr": sp.csr_matrix, "csc": sp.csc_matrix}
_BUILTIN_TYPES = {"bool": bool, "int": int, "float": float, "str": str}


def _major(version):
    head = str(version).split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _check_versions(doc, name, label):
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise BundleError(f"{label}: {name} does not describe a skfewrec bundle.")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BundleError(f"{label}: {name} has an invalid format_version {version!r}.")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"{label} uses bundle format {version}, newer than the formats this skfewrec "
            f"({library_version()}) reads (up to {FORMAT_VERSION}); upgrade skfewrec."
        )
    written = doc.get("library_version")
    if _major(written) != _major(library_version()):
        raise BundleError(
            f"{label} was written by skfewrec {written!r}, whose major version differs from "
            f"this skfewrec {library_version()}; load it with skfewrec {written} or refit "
            "the model."
        )


def _entry(name, entry, label):
    """A manifest entry: a valid member name, a size and a SHA-256."""
    if not isinstance(name, str) or not MEMBER_NAME.match(name) or ".." in name:
        raise BundleError(f"{label}: {MANIFEST} lists an invalid member name {name!r}.")
    size = entry.get("size") if isinstance(entry, dict) else None
    digest = entry.get("sha256") if isinstance(entry, dict) else None
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BundleError(f"{label}: {MANIFEST} gives member {name!r} an invalid size.")
    if not isinstance(digest, str):
        raise BundleError(f"{label}: {MANIFEST} gives member {name!r} no SHA-256.")
    return size, digest


def _missing(name, label):
    return BundleError(f"{label} is truncated: member {name!r} listed in the manifest is missing.")


def _verify(reader, name, size, digest, budget, *, keep):
    """Stream a member against its manifest entry; its bytes (keep) or its open file.

    A kept member counts against the bundle's budget; ``arrays.npz`` is not kept
    (its arrays count when read), so it is only bounded by the bundle's total.
    """
    if keep:
        budget.take(size, f"member {name!r}")
    elif size > limits.total_bytes:
        raise BundleError(
            f"{reader.label}: member {name!r} holds {size} bytes, more than the limit of "
            f"{limits.total_bytes} per bundle (skfewrec.persistence.limits.total_bytes)."
        )
    fh = reader.open(name)
    if fh is None:
        raise _missing(name, reader.label)
    what = f"member {name!r}"
    try:
        if keep:
            data = read_capped(fh, size, what, reader.label)
            n_bytes, actual = len(data), hashlib.sha256(data).hexdigest()
        else:
            actual, n_bytes = sha256_stream(fh, size, what, reader.label)
            fh.seek(0)
        if n_bytes != size:
            raise BundleError(
                f"{reader.label} is truncated or corrupted: member {name!r} has {n_bytes} "
                f"bytes, the manifest says {size}."
            )
        if actual != digest:
            raise BundleError(
                f"{reader.label} failed its integrity check: the SHA-256 of member {name!r} "
                "does not match the manifest, so the bundle was modified or corrupted after "
                "it was saved. Save the model again."
            )
    except BaseException:
        fh.close()
        raise
    if not keep:
        return fh
    fh.close()
    return data


def _read_members(reader, budget):
    """The checked members: texts by name, and ``arrays.npz`` as an open file."""
    label = reader.label
    fh = reader.open(MANIFEST)
    if fh is None:
        raise BundleError(
            f"{label} is not a skfewrec bundle, or it is truncated: it has no {MANIFEST}. "
            "Bundles are written by skfewrec.save or `skfewrec fit`."
        )
    with fh:
        raw = read_capped(fh, limits.json_bytes, MANIFEST, label)
    manifest = parse_json(raw, MANIFEST, label)
    _check_versions(manifest, MANIFEST, label)
    listed = manifest.get("members")
    if not isinstance(listed, dict) or META not in listed or ARRAYS not in listed:
        raise BundleError(f"{label}: {MANIFEST} does not list {META} and {ARRAYS}.")
    if len(listed) > _MAX_MEMBERS:
        raise BundleError(f"{label}: {MANIFEST} lists more than {_MAX_MEMBERS} members.")
    entries = {name: _entry(name, entry, label) for name, entry in listed.items()}
    if entries[META][0] > limits.json_bytes:
        raise BundleError(f"{label}: {META} is larger than {limits.json_bytes} bytes.")
    members = {}
    for name, (size, digest) in entries.items():
        if name != ARRAYS:
            members[name] = _verify(reader, name, size, digest, budget, keep=True)
    size, digest = entries[ARRAYS]
    arrays_file = _verify(reader, ARRAYS, size, digest, budget, keep=False)
    return members, arrays_file


def _allowed_class(path, label):
    if not isinstance(path, str):
        raise BundleError(f"{label}: a node has no class path.")
    if path == "sklearn.pipeline.Pipeline":
        # the same steps, with the recommender's methods (recommend, the few-shot score)
        from ..pipeline import RecommenderPipeline

        return RecommenderPipeline
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
            f"{label} holds a {path}, which this skfewrec ({library_version()}) does not "
            "have; load it with the skfewrec version that saved it."
        )
    raise BundleError(
        f"{label} asks for class {path!r}, which is not on the allow-list (skfewrec's "
        "estimators, sklearn.pipeline.Pipeline, sklearn.frozen.FrozenEstimator); refusing "
        "to load it."
    )


def _lightgbm_text(text, label):
    try:
        return canonical_model_text(text)
    except ValueError as exc:
        raise BundleError(f"{label}: refused its LightGBM model ({exc}).") from None


def _numeric_dtype(text, label):
    dtype = np.dtype(text)
    if dtype.kind not in "biuf" or dtype.names is not None:
        raise BundleError(f"{label}: dtype {text!r} is not a numeric dtype.")
    return dtype


class _Decoder:
    """Turns the JSON nodes of ``meta.json`` back into estimators, checking each."""

    def __init__(self, arrays, members, label):
        self.arrays = arrays
        self.members = members
        self.label = label
        self._nodes = {}
        self.fitted_nodes = []

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

    def _sparse(self, value):
        fmt = value["__sparse__"]
        if fmt not in ("csr", "csc", "coo") or value["base"] not in _SPARSE_FORMATS:
            raise BundleError(f"{self.label}: unknown sparse format {fmt!r}.")
        shape = value["shape"]
        shape = tuple(shape) if isinstance(shape, list) else shape
        parts = [self._array(value[key]) for key in ("data", "indices", "indptr")]
        base = value["base"]
        major_minor = shape if base == "csr" or not isinstance(shape, tuple) else shape[::-1]
        check_sparse(*parts, major_minor, self.label)
        mat = _SPARSE_FORMATS[base](tuple(parts), shape=shape).asformat(fmt)
        if value.get("array"):
            mat = getattr(sp, f"{fmt}_array")(mat)
        return mat

    def _member_text(self, name):
        data = self.members.get(name) if isinstance(name, str) else None
        if data is None:
            raise BundleError(f"{self.label}: member {name!r} is missing.")
        return data.decode("utf-8")

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
            return self._sparse(value)
        if "__dtype__" in value:
            return _numeric_dtype(value["__dtype__"], self.label)
        if "__scalar_type__" in value:
            return _numeric_dtype(value["__scalar_type__"], self.label).type
        if "__builtin_type__" in value:
            return _BUILTIN_TYPES[value["__builtin_type__"]]
        if "__text__" in value:
            return self._member_text(value["__text__"])
        if "__lightgbm_booster__" in value:
            import lightgbm

            text = _lightgbm_text(self._member_text(value["__lightgbm_booster__"]), self.label)
            return lightgbm.Booster(model_str=text)
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
        """One estimator: constructed, parameters checked, fitted state checked, rebuilt."""
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
        check_params(est, self.label)
        self._nodes[node.get("id")] = est
        fitted = node.get("fitted", {})
        for key, val in fitted.items():
            if not (isinstance(key, str) and key.endswith("_") and not key.startswith("_")):
                raise BundleError(f"{self.label}: {key!r} is not a public fitted attribute.")
            value = self.value(val)
            if key in _LIGHTGBM_TEXT_ATTRIBUTES and isinstance(value, str):
                value = _lightgbm_text(value, self.label)
            setattr(est, key, value)
        if fitted:
            check_fitted(est, self.label)
            rebuild = getattr(est, "_rebuild", None)
            if callable(rebuild):
                guarded("rebuilding its caches", est, self.label, rebuild)
            self.fitted_nodes.append(est)
        return est


def _check_encoder(estimator, encoder, label):
    n_items = getattr(estimator, "n_features_in_", None)
    if n_items is None and hasattr(estimator, "steps"):
        n_items = getattr(estimator.steps[-1][1], "n_features_in_", None)
    if n_items is not None and getattr(encoder, "n_items_", None) != n_items:
        raise BundleError(
            f"{label}: its id maps know {getattr(encoder, 'n_items_', None)} items but the "
            f"model has {n_items}; the bundle is corrupted or crafted."
        )


def _first_step_encoder(estimator):
    """The fitted InteractionEncoder a pipeline starts with, or None."""
    from ..preprocessing import InteractionEncoder

    steps = getattr(estimator, "steps", None)
    first = steps[0][1] if isinstance(steps, list) and steps else None
    if isinstance(first, InteractionEncoder) and hasattr(first, "item_ids_"):
        return first
    return None


def _decode(meta, arrays, members, label):
    _check_versions(meta, META, label)
    decoder = _Decoder(arrays, members, label)
    estimator = decoder.node(meta.get("estimator"))
    if not isinstance(estimator, BaseEstimator):
        raise BundleError(f"{label}: {META} holds no estimator.")
    encoder = None
    if meta.get("encoder") is not None:
        from ..preprocessing import InteractionEncoder

        encoder = decoder.node(meta["encoder"])
        if not isinstance(encoder, InteractionEncoder) or not hasattr(encoder, "item_ids_"):
            raise BundleError(f"{label}: its id maps are not a fitted InteractionEncoder.")
        _check_encoder(estimator, encoder, label)
    elif _first_step_encoder(estimator) is not None:
        # a pipeline that starts with its encoder carries its own id maps
        encoder = _first_step_encoder(estimator)
    # every fitted node, and the root (a Pipeline is probed through its steps)
    probed = decoder.fitted_nodes + [n for n in [estimator] if n not in decoder.fitted_nodes]
    for est in probed:
        smoke_check(est, label)
    return estimator, encoder


def _load(source, label):
    budget = Budget(label)
    reader = Reader(source, label)
    arrays = arrays_file = None
    try:
        members, arrays_file = _read_members(reader, budget)
        meta = parse_json(members[META], META, label)
        arrays = LazyArrays(arrays_file, budget, label)
        try:
            return _decode(meta, arrays, members, label)
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise BundleError(
                f"{label}: {META} is malformed ({type(exc).__name__}: {exc})."
            ) from None
    except BundleError:
        raise
    except Exception as exc:
        # whatever else fails inside (zip, zlib, numpy, pandas, LightGBM, memory) is
        # a bundle that cannot be read: one error type for the caller
        raise BundleError(
            f"{label}: cannot be read ({type(exc).__name__}: {exc}); the bundle is corrupted "
            "or was not written by skfewrec."
        ) from None
    finally:
        if arrays is not None:
            arrays.close()
        if arrays_file is not None:
            arrays_file.close()
        reader.close()


def _with_encoder(result, return_encoder):
    estimator, encoder = result
    return (estimator, encoder) if return_encoder else estimator


def load(path, *, return_encoder=False):
    """Load an estimator from a model bundle written by :func:`save`.

    A bundle is parsed as untrusted input: only allow-listed classes are
    instantiated (skfewrec's estimators, scikit-learn's ``Pipeline`` and
    ``FrozenEstimator``); nothing is unpickled or evaluated; every member is read
    within size limits and checked against the manifest's SHA-256; every
    parameter, array, sparse structure and LightGBM tree is validated before use,
    and the loaded model must answer a small probe with in-range ids and finite
    scores.

    Parameters
    ----------
    path : str or path-like
        A bundle directory or zip file.
    return_encoder : bool, default=False
        Also return the bundle's id maps.

    Returns
    -------
    estimator : estimator
        The saved estimator, ready to use. A saved scikit-learn ``Pipeline`` comes
        back as a :class:`~skfewrec.pipeline.RecommenderPipeline` (the same steps,
        with ``recommend``).
    encoder : InteractionEncoder or None
        Only when ``return_encoder=True``: the fitted
        :class:`~skfewrec.preprocessing.InteractionEncoder` saved with the model
        (``save(..., encoder=)``), or the pipeline's first step when the model is
        a pipeline that starts with one, or None when the bundle has no id maps.

    Raises
    ------
    FileNotFoundError
        When nothing exists at ``path``.
    BundleError
        (a ``ValueError``) For any bundle that cannot be read safely: truncated,
        failing its checksums, beyond a size limit, written by a newer bundle format
        or another major version of skfewrec, naming a class outside the
        allow-list, or holding a value that fails its checks.

    See Also
    --------
    save : Write a bundle.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> import skfewrec
    >>> from skfewrec import MostPopular
    >>> from skfewrec.preprocessing import InteractionEncoder
    >>> log = pd.DataFrame({"user": [1, 1, 2], "item": ["a", "b", "b"]})
    >>> enc = InteractionEncoder()
    >>> rec = MostPopular().fit(enc.fit_transform(log))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = skfewrec.save(rec, f"{tmp}/model.zip", encoder=enc)
    ...     rec, enc = skfewrec.load(path, return_encoder=True)
    >>> enc.item_ids_.tolist()
    ['a', 'b']
    """
    return _with_encoder(_load(path, f"Bundle {os.fspath(path)!r}"), return_encoder)


def loads(data, *, return_encoder=False):
    """Load an estimator from the bytes of a zip bundle (see :func:`dumps`).

    The same checks as :func:`load`.

    Parameters
    ----------
    data : bytes
        What :func:`dumps` returned (or the bytes of a ``.zip`` bundle file).
    return_encoder : bool, default=False
        Also return the bundle's id maps.

    Returns
    -------
    estimator : estimator
        The saved estimator.
    encoder : InteractionEncoder or None
        Only when ``return_encoder=True``: the bundle's id maps, or None.

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
    return _with_encoder(_load(data, "The bundle bytes"), return_encoder)


def read_metadata(path):
    """The ``meta.json`` of a bundle without loading its model (after checksums).

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
    (2, 'skfewrec.ALSFactors')
    """
    label = "The bundle bytes" if isinstance(path, bytes) else f"Bundle {os.fspath(path)!r}"
    reader = Reader(path, label)
    try:
        members, arrays_file = _read_members(reader, Budget(label))
        arrays_file.close()
    finally:
        reader.close()
    return parse_json(members[META], META, label)
