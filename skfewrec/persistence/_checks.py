"""Checks of a restored estimator: a bundle's values are input, checked like any input.

Generic rules, applied to every node of a bundle (no per-class loader code):

- parameters go through the estimator's own ``_parameter_constraints`` (and its
  ``_check_settings`` where it has one), then a numeric sanity the constraints do
  not express: every float finite and at most :data:`MAX_PARAMETER` in size,
  ``n_jobs`` a non-zero int of at most :data:`MAX_N_JOBS` threads;
- every fitted number is checked like a float parameter; every float array and
  sparse matrix among the fitted attributes is finite and at most
  :data:`MAX_VALUE` in size (NaN only where it means
  "unknown", :data:`MAY_HOLD_NAN`); per-item attributes have one entry per item
  of ``n_features_in_``; ``*_ids_`` arrays are unique;
- ``_rebuild()`` runs inside a guard that turns any exception into
  :class:`BundleError`; then a fitted recommender answers a small probe, which
  must give in-range item ids and finite scores.
"""

import math
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp

from .._core.threads import blas_limits, effective_n_jobs
from ._errors import BundleError

#: the largest size of a float hyper-parameter, or fitted number, read from a bundle
MAX_PARAMETER = 1e12
#: the largest size of a fitted float: scores are sums of products of these with
#: interaction values, and float32 scores overflow at 3.4e38
MAX_VALUE = 1e15
#: fitted float arrays where NaN means "unknown" (and is handled as such)
MAY_HOLD_NAN = ("item_time_",)
#: the most threads a bundle may ask for
MAX_N_JOBS = 1024
#: fitted attributes with one entry per item along the listed axes
PER_ITEM_AXES = {
    "idf_": (0,),
    "item_factors_": (0,),
    "item_biases_": (0,),
    "item_counts_": (0,),
    "item_popularity_": (0,),
    "penalty_": (0,),
    "item_time_": (0,),
    "item_side_": (0,),
    "recent_item_counts_": (0,),
    "coef_": (0, 1),
    "similarity_": (0, 1),
    "cooccurrence_": (0, 1),
    "warm_interactions_": (1,),
}


def _check_rating_scale(value):
    from ..factors._explicit import check_rating_scale

    check_rating_scale(value)


#: checks of a parameter that ``fit`` runs but ``_parameter_constraints`` cannot
#: express (a loaded estimator is never fitted), by parameter name
_FIT_TIME_RULES = {"rating_scale": _check_rating_scale}


def _refuse(label, est, what):
    raise BundleError(f"{label}: {type(est).__name__} {what}; refusing the bundle.")


def _check_number(value, name, label, est):
    if isinstance(value, bool) or not isinstance(value, Real):
        return
    if isinstance(value, Integral):
        if abs(int(value)) > 2**62:
            _refuse(label, est, f"{name}={value} is out of range")
        return
    if not math.isfinite(value) or abs(value) > MAX_PARAMETER:
        _refuse(label, est, f"{name}={value!r} is not a finite number of at most {MAX_PARAMETER:g}")


def check_params(est, label):
    """The constructor parameters of a restored estimator."""
    params = est.get_params(deep=False)
    for name, value in params.items():
        values = value if isinstance(value, tuple | list) else [value]
        for item in values:
            _check_number(item, name, label, est)
    if "n_jobs" in params:
        n_jobs = params["n_jobs"]
        if n_jobs is not None and (
            isinstance(n_jobs, bool)
            or not isinstance(n_jobs, Integral)
            or n_jobs == 0
            or abs(n_jobs) > MAX_N_JOBS
        ):
            _refuse(
                label,
                est,
                f"parameter n_jobs={n_jobs!r} is not None or a non-zero int of at most "
                f"{MAX_N_JOBS} in size",
            )
    try:
        if hasattr(type(est), "_parameter_constraints"):
            est._validate_params()
        if hasattr(est, "_check_settings"):
            est._check_settings()
        for name, rule in _FIT_TIME_RULES.items():
            if params.get(name) is not None:
                rule(params[name])
    except (ValueError, TypeError) as exc:
        raise BundleError(
            f"{label}: {type(est).__name__} has an invalid parameter: {exc}"
        ) from None


def check_sparse(data, indices, indptr, shape, label):
    """The parts of a CSR/CSC matrix: scipy does not bounds-check indices."""
    if (
        len(shape) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in shape)
        or not all(0 <= n < 2**31 for n in shape)
    ):
        raise BundleError(f"{label}: a sparse matrix has an invalid shape {shape!r}.")
    major, minor = shape
    for part, name in ((indices, "indices"), (indptr, "indptr")):
        if not isinstance(part, np.ndarray) or part.ndim != 1 or part.dtype.kind not in "iu":
            raise BundleError(f"{label}: a sparse matrix's {name} is not a 1-d integer array.")
    if (
        not isinstance(data, np.ndarray)
        or data.ndim != 1
        or data.dtype.kind not in "biuf"
        or data.size != indices.size
    ):
        raise BundleError(f"{label}: a sparse matrix's data do not match its indices.")
    if indptr.size != major + 1 or indptr[0] != 0 or indptr[-1] != indices.size:
        raise BundleError(
            f"{label}: a sparse matrix's indptr must have {major + 1} entries from 0 to "
            f"{indices.size} (its number of values)."
        )
    if np.any(np.diff(indptr) < 0):
        raise BundleError(f"{label}: a sparse matrix's indptr decreases.")
    if indices.size and (indices.min() < 0 or indices.max() >= minor):
        raise BundleError(
            f"{label}: a sparse matrix has indices outside [0, {minor}); the bundle is "
            "corrupted or crafted."
        )
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise BundleError(f"{label}: a sparse matrix holds NaN or infinite values.")


def _per_item_length(value, axis):
    shape = getattr(value, "shape", None)
    if shape is None or len(shape) <= axis:
        return None
    return shape[axis]


def _out_of_range(values, name):
    """Whether float ``values`` hold a NaN (unless ``name`` may), an inf or a huge value."""
    if name in MAY_HOLD_NAN:
        values = values[~np.isnan(values)]
    with np.errstate(invalid="ignore"):
        return values.size > 0 and not np.all(np.abs(values) <= MAX_VALUE)


def check_fitted(est, label):
    """The public fitted attributes of a restored estimator."""
    fitted = {k: v for k, v in vars(est).items() if k.endswith("_") and not k.startswith("_")}
    for name, value in fitted.items():
        if isinstance(value, Real) and not isinstance(value, bool):
            # a fitted number is a setting in use (regularization_, confidence_scale_)
            _check_number(float(value), name, label, est)
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            values = value
        elif sp.issparse(value) and value.dtype.kind == "f":
            values = value.data
        else:
            values = None
        if values is not None and _out_of_range(values, name):
            _refuse(
                label,
                est,
                f"attribute {name} holds NaN, infinite or values beyond {MAX_VALUE:g} in size",
            )
        if (
            name.endswith("_ids_")
            and isinstance(value, np.ndarray)
            and (value.ndim != 1 or np.unique(value).size != value.size)
        ):
            _refuse(label, est, f"attribute {name} is not a 1-d array of distinct ids")
    if "n_features_in_" not in fitted and "n_items_" not in fitted:
        return
    n_items = fitted.get("n_features_in_", fitted.get("n_items_"))
    if isinstance(n_items, bool) or not isinstance(n_items, Integral) or not 1 <= n_items < 2**31:
        _refuse(label, est, f"n_features_in_={n_items!r} is not a catalogue size")
    if "item_ids_" in fitted and len(fitted["item_ids_"]) != n_items:
        _refuse(label, est, f"has {len(fitted['item_ids_'])} item ids for {n_items} items")
    for name, axes in PER_ITEM_AXES.items():
        value = fitted.get(name)
        if value is None:
            continue
        for axis in axes:
            if _per_item_length(value, axis) != n_items:
                _refuse(
                    label,
                    est,
                    f"attribute {name} has shape {getattr(value, 'shape', None)}, not "
                    f"{n_items} items along axis {axis}",
                )


def _blas_threads(est):
    n_jobs = getattr(est, "n_jobs", None)
    try:
        return effective_n_jobs(n_jobs if isinstance(n_jobs, int) else None)
    except ValueError:
        return 1


def guarded(step, est, label, call):
    """Run ``call()``; any exception it raises becomes a :class:`BundleError`."""
    try:
        # the estimator's own BLAS threads (n_jobs=None: one): an unlimited BLAS on a
        # busy machine makes these small factorisations several times slower
        with blas_limits(_blas_threads(est)), np.errstate(all="ignore"):
            return call()
    except BundleError:
        raise
    except (Exception, MemoryError) as exc:
        raise BundleError(
            f"{label}: {type(est).__name__} cannot be restored: {step} failed "
            f"({type(exc).__name__}: {exc}); the bundle is corrupted or crafted."
        ) from None


def _probe(n_items, est):
    """Three users: none, one and two interactions (values inside a declared rating scale)."""
    scale = getattr(est, "rating_scale", None)
    value = float(scale[0]) if scale is not None else 1.0
    cols = [0, n_items - 1, n_items // 2]
    rows = [1, 2, 2]
    X = sp.csr_matrix((np.full(3, value, dtype=np.float32), (rows, cols)), shape=(3, n_items))
    X.sum_duplicates()
    return X


def smoke_check(est, label):
    """A fitted recommender must answer a small probe with in-range ids and finite scores.

    A ``Pipeline`` ending in a recommender is probed through its transformers
    (after the InteractionEncoder it may start with: the probe is a matrix).
    """
    steps = getattr(est, "steps", None)
    last = steps[-1][1] if isinstance(steps, list) and steps else est
    # a Pipeline's transformers keep the catalogue's columns: the recommender's size
    n_items = getattr(last, "n_features_in_", None)
    if (
        not callable(getattr(last, "recommend", None))
        or not isinstance(n_items, Integral)
        or isinstance(n_items, bool)
        # a re-ranker fitted with user features cannot answer without them
        or getattr(last, "user_side_names_", None) is not None
    ):
        return
    k = min(int(n_items), 5)

    def answer():
        X = _probe(int(n_items), last)
        if steps is not None:
            from ..preprocessing import InteractionEncoder

            # the probe is a matrix: it enters after the encoder a pipeline starts with
            first = 1 if isinstance(steps[0][1], InteractionEncoder) else 0
            if len(steps) - 1 > first:
                X = est[first:-1].transform(X)
        return last.recommend(X, k=k, filter_seen=False)

    ids, scores = guarded("answering a probe", est, label, answer)
    ids, scores = np.asarray(ids), np.asarray(scores)
    if ids.shape != (3, k) or ids.min() < 0 or ids.max() >= n_items:
        _refuse(label, est, "answers item ids outside its catalogue")
    if not np.all(np.isfinite(scores)):
        _refuse(label, est, "answers NaN or infinite scores")
