"""Input checks shared by every skfewrec estimator and function.

Each check raises an error that names the parameter, says what was wrong and how
to fix it. Nothing is silently dropped or clipped.

Interaction values are refused at the door when they are not finite, negative,
positive but below :data:`MIN_POSITIVE_VALUE` (float32's smallest normal number,
about 1.2e-38: float32 would store them as 0 and drop the interaction), or larger
than :data:`MAX_INTERACTION_VALUE` (one million). The upper bound is generous
for real counts (ratings, clicks, check-ins and purchases are far smaller; even
the play count of one listener for one artist rarely reaches the hundreds of
thousands) and leaves a wide margin below what breaks the models: values enter
float32 Gram matrices as their squares (EASE's ``X^T X`` overflows float32 above
about 1.8e19), implicit's ALS refuses to fit and the fold-in's Cholesky solve
loses positive definiteness from about 1e15, and 1e300 is not a float32 at all.
Larger values are almost always a unit mistake (milliseconds, bytes, ids in
the value column); rescale them, e.g. with ``np.log1p`` or
:class:`skfewrec.preprocessing.LogConfidence`.
"""

from numbers import Integral

import numpy as np
import scipy.sparse as sp

#: the largest interaction value accepted (see the module's docstring for why)
MAX_INTERACTION_VALUE = 1e6
#: the smallest positive value accepted: float32's smallest normal number; smaller
#: ones would become 0 (no interaction) or lose their precision in float32
MIN_POSITIVE_VALUE = float(np.finfo(np.float32).tiny)


def check_values(values, name):
    """Check raw interaction values: finite, 0 or in [MIN_POSITIVE_VALUE, MAX_INTERACTION_VALUE].

    Runs on the values as given (before any cast to float32, which would turn
    1e300 into inf and hide what was wrong).

    Parameters
    ----------
    values : ndarray
        The values (any real dtype).
    name : str
        What holds them, for the messages (``"X"``, ``"column 'plays'"``).

    Returns
    -------
    values : ndarray
        ``values``, unchanged.

    Raises
    ------
    ValueError
        Naming the first offending value and the rule.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._core.validation import check_values
    >>> check_values(np.array([1.0, 3.0]), "X")
    array([1., 3.])
    >>> check_values(np.array([1.0, 1e20]), "X")
    Traceback (most recent call last):
    ...
    ValueError: X has 1 value(s) above 1e+06, the largest interaction value skfewrec accepts ...
    """
    values = np.asarray(values)
    if not values.size or values.dtype == bool:
        return values
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(values)
        if not finite.all():
            bad = values[~finite]
            raise ValueError(
                f"{name} has {bad.size} NaN or infinite value(s) (the first is {bad[0]}); "
                "interaction values must be finite numbers. Drop or impute them first."
            )
        smallest, largest = values.min(), values.max()
    if smallest < 0:
        raise ValueError(
            f"Negative values in data passed as {name}: {name} has "
            f"{int(np.sum(values < 0))} negative value(s) (the smallest is {smallest:g}); "
            "confidences must be >= 0. Use 0 for 'no interaction'; for explicit ratings "
            "use objective='explicit' where available."
        )
    if largest > MAX_INTERACTION_VALUE:
        raise ValueError(
            f"{name} has {int(np.sum(values > MAX_INTERACTION_VALUE))} value(s) above "
            f"{MAX_INTERACTION_VALUE:g}, the largest interaction value skfewrec accepts (the "
            f"largest is {largest:g}): confidences that large overflow float32 or make the "
            "solves ill-conditioned. Values of this size are usually a unit mistake "
            "(milliseconds, bytes, ids); rescale them, e.g. np.log1p(values) or "
            "skfewrec.preprocessing.LogConfidence."
        )
    tiny = ()
    if values.dtype.kind == "f" and smallest < MIN_POSITIVE_VALUE:
        tiny = values[(values > 0) & (values < MIN_POSITIVE_VALUE)]
    if len(tiny):
        raise ValueError(
            f"{name} has {tiny.size} positive value(s) below {MIN_POSITIVE_VALUE:.3g} (the "
            f"smallest is {tiny.min():g}), which float32 cannot hold: they would become 0 "
            "(no interaction). Use 0 for 'no interaction', or rescale the values."
        )
    return values


def check_interactions(
    X,
    *,
    name="X",
    n_items=None,
    dtype=np.float32,
    allow_empty_rows=True,
    copy=False,
):
    """Validate an interaction matrix and return it as a canonical CSR matrix.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        Non-negative, finite confidences; zero means "no interaction".
    name : str, default="X"
        The parameter name used in error messages.
    n_items : int, default=None
        The catalogue size the matrix must have (the fitted ``n_features_in_``).
    dtype : dtype, default=np.float32
        The dtype of the returned values.
    allow_empty_rows : bool, default=True
        Whether users without any interaction are allowed.
    copy : bool, default=False
        Whether to always copy the data.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_users, n_items)
        Canonical CSR (sorted indices, no explicit zeros, no duplicates).

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._core.validation import check_interactions
    >>> check_interactions(np.array([[0, 2.0], [1.0, 0]])).nnz
    2
    >>> check_interactions(np.array([[-1.0, 0]]))
    Traceback (most recent call last):
    ...
    ValueError: Negative values in data passed as X: X has 1 negative value(s) (the smallest ...
    """
    if X is None:
        raise ValueError(f"{name} is None; pass an interaction matrix of shape (n_users, n_items).")
    if isinstance(X, str | bytes):
        raise TypeError(
            f"{name} is a string; pass an interaction matrix of shape (n_users, n_items)."
        )
    if sp.issparse(X):
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-dimensional, got {X.ndim} dimensions.")
        _check_real_dtype(X.dtype, name)
        X = sp.csr_matrix(X, copy=copy)  # every format (dok, lil, ...) has .data as CSR
        check_values(X.data, name)  # before the cast: float32 turns 1e300 into inf
        X = X.astype(dtype, copy=False)
    else:
        arr = np.asarray(X) if not hasattr(X, "to_numpy") else X.to_numpy()
        if arr.dtype == object:
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"{name} contains non-numeric values ({exc}); interaction values must be "
                    "real numbers (counts, ratings or confidences). Encode raw logs with "
                    "skfewrec.preprocessing.InteractionEncoder first."
                ) from None
        if arr.dtype != bool:
            _check_real_dtype(arr.dtype, name)
        if arr.ndim != 2:
            raise ValueError(
                f"Reshape your data: {name} must be 2-dimensional of shape (n_users, n_items), "
                f"got an array of shape {arr.shape}. For a single user use x.reshape(1, -1)."
            )
        check_values(arr, name)
        X = sp.csr_matrix(arr.astype(dtype, copy=False))
    if X.shape[0] == 0:
        raise ValueError(
            f"{name} has 0 sample(s) (shape={X.shape}) while a minimum of 1 is required: "
            "pass at least one user (row)."
        )
    if X.shape[1] == 0:
        raise ValueError(
            f"{name} has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required: "
            "pass at least one item (column)."
        )
    if n_items is not None and X.shape[1] != n_items:
        raise ValueError(
            f"{name} has {X.shape[1]} items (columns) but the model was fitted on {n_items}. "
            "Encode new users with the same item ids as the training data "
            "(InteractionEncoder.transform), so columns line up."
        )
    if not X.has_canonical_format:
        X = X.copy() if not copy else X
        X.sum_duplicates()
    if X.nnz and X.data.max() > MAX_INTERACTION_VALUE:
        # repeated cells were summed: the sums obey the same bound
        check_values(X.data, name)
    if X.nnz and np.any(X.data == 0):
        X = X.copy()
        X.eliminate_zeros()
    if not allow_empty_rows:
        empty = np.flatnonzero(np.diff(X.indptr) == 0)
        if empty.size:
            raise ValueError(
                f"{name} has {empty.size} user(s) without any interaction (first row: "
                f"{empty[0]}); every user needs at least one interaction here."
            )
    return X


def _check_real_dtype(dtype, name):
    if np.issubdtype(dtype, np.complexfloating):
        raise ValueError(
            f"Complex data not supported: {name} has dtype {dtype}; interaction values must "
            "be real numbers (counts, ratings or confidences)."
        )
    if not np.issubdtype(dtype, np.number):
        raise TypeError(
            f"{name} has dtype {dtype}; interaction values must be real numbers "
            "(counts, ratings or confidences)."
        )


def check_int(value, name, min_value):
    """Check an integer setting: a TypeError for a non-integer, a ValueError below the bound.

    Examples
    --------
    >>> from skfewrec._core.validation import check_int
    >>> check_int(3, "n_shots", 0)
    3
    >>> check_int(1.5, "n_shots", 0)
    Traceback (most recent call last):
    ...
    TypeError: n_shots must be an integer >= 0, got 1.5 of type float.
    """
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(
            f"{name} must be an integer >= {min_value}, got {value!r} of type "
            f"{type(value).__name__}."
        )
    if value < min_value:
        raise ValueError(f"{name} must be >= {min_value}, got {value}.")
    return int(value)


def check_k(k, n_items, *, name="k", or_none=False, too_large=None):
    """Check a top-k size against the number of rankable items.

    Parameters
    ----------
    k : int
        The size to check.
    n_items : int
        The largest allowed ``k``.
    name : str, default="k"
        The parameter's name in the messages.
    or_none : bool, default=False
        Whether the caller also accepts None (resolved before this check); only
        changes the message of the type error.
    too_large : str, default=None
        The message when ``k > n_items``, formatted with ``name``, ``k`` and
        ``limit``; None for a message about the items that can be recommended.

    Returns
    -------
    k : int

    Examples
    --------
    >>> from skfewrec._core.validation import check_k
    >>> check_k(5, 10)
    5
    """
    if isinstance(k, bool) or not isinstance(k, Integral):
        expected = "an integer >= 1 or None" if or_none else "an integer >= 1"
        raise TypeError(f"{name} must be {expected}, got {k!r} of type {type(k).__name__}.")
    if k < 1:
        raise ValueError(f"{name} must be >= 1, got {k}.")
    if k > n_items:
        if too_large is None:
            too_large = (
                "{name}={k} is larger than the {limit} items that can be recommended; "
                "ask for at most {limit} (or widen the `items` allow-list)."
            )
        raise ValueError(too_large.format(name=name, k=k, limit=n_items))
    return int(k)


def check_item_indices(items, n_items, *, name="items"):
    """Check an array of item column indices and return it as a sorted unique int array.

    Examples
    --------
    >>> from skfewrec._core.validation import check_item_indices
    >>> check_item_indices([3, 1, 3], 5)
    array([1, 3])
    """
    arr = np.asarray(items)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array of item indices, got shape {arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(
                f"{name} must hold integer item indices (columns of X), got dtype {arr.dtype}. "
                "Map raw item ids to indices with InteractionEncoder first."
            )
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= n_items):
        bad = arr[(arr < 0) | (arr >= n_items)][0]
        raise ValueError(
            f"{name} contains the index {bad}, outside the catalogue [0, {n_items}); "
            "item indices are column numbers of the fitted interaction matrix."
        )
    return np.unique(arr)


def check_flag(value, name):
    """Check a yes/no option: True or False (numpy's bools too), nothing merely truthy.

    ``filter_seen="no"`` would otherwise filter, since any non-empty string is true.

    Parameters
    ----------
    value : object
        The option's value.
    name : str
        The parameter name for the message.

    Returns
    -------
    value : bool

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._core.validation import check_flag
    >>> check_flag(np.True_, "filter_seen")
    True
    >>> check_flag("no", "filter_seen")
    Traceback (most recent call last):
    ...
    TypeError: filter_seen must be True or False, got 'no' of type str.
    """
    if not isinstance(value, bool | np.bool_):
        raise TypeError(
            f"{name} must be True or False, got {value!r} of type {type(value).__name__}."
        )
    return bool(value)
