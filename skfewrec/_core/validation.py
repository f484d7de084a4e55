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

A long interaction log (one row per event: user, item[, value][, time]) passed
where a user x item matrix is expected is refused, never read as a catalogue of
2 to 4 items (:func:`check_not_a_log`). Dense input is read as a log when

- it is a DataFrame with a non-numeric column (ids, names, datetimes): a user x
  item matrix holds only numbers;
- it is a DataFrame with a column named like a user or item id (``user``,
  ``userId``, ``item_id``, ``movieId``, ...: see :data:`LOG_COLUMN_NAMES`);
- it has 2 to 4 columns and its first two columns hold non-negative integers
  with at least :data:`MIN_LOG_IDS` distinct values each: ids of users and
  items, not the counts of a 2- to 4-item catalogue (random or float-valued
  matrices, such as scikit-learn's estimator checks use, never match).

Sparse matrices are never read as logs: a genuine matrix of a few items that
matches the last rule can always be passed as ``scipy.sparse.csr_matrix(X)``.
"""

import re
from numbers import Integral

import numpy as np
import scipy.sparse as sp

#: the largest interaction value accepted (see the module's docstring for why)
MAX_INTERACTION_VALUE = 1e6
#: the smallest positive value accepted: float32's smallest normal number; smaller
#: ones would become 0 (no interaction) or lose their precision in float32
MIN_POSITIVE_VALUE = float(np.finfo(np.float32).tiny)


#: column names (lower-cased, without "_", "-", " " and ".") that mark a DataFrame as a log
LOG_COLUMN_NAMES = re.compile(
    r"^(user|item|movie|product|artist|track|song|book|customer|session|visitor|client"
    r"|article|video|sku|listing|place|venue|location|poi)s?(id|ids|idx|index|key|code|name)?$"
)
#: distinct values each of the first two columns of a 2- to 4-column dense array needs
#: to be read as the user and item ids of a log
MIN_LOG_IDS = 10

_ENCODE_HINT = (
    "Encode the log first: X = skfewrec.preprocessing.InteractionEncoder(user_col=..., "
    "item_col=..., value_col=...).fit_transform(log), or fit "
    "skfewrec.pipeline.make_pipeline(InteractionEncoder(...), <recommender>), which takes "
    "the log itself and answers raw ids."
)


def _log_reason(X):
    """Why a dense ``X`` is a long log rather than a user x item matrix, or None."""
    columns = getattr(X, "columns", None)
    dtypes = getattr(X, "dtypes", None)
    if columns is not None and dtypes is not None and hasattr(X, "to_numpy"):
        from pandas.api.types import is_bool_dtype, is_complex_dtype, is_numeric_dtype

        odd = [
            (c, t)
            for c, t in zip(columns, dtypes)
            if not (is_numeric_dtype(t) or is_bool_dtype(t)) or is_complex_dtype(t)
        ]
        if odd:
            shown = ", ".join(f"{c!r} ({t})" for c, t in odd[:4])
            return (
                f"a DataFrame with non-numeric column(s) {shown}; a user x item matrix holds "
                "only numbers"
            )
        named = [
            c for c in columns if LOG_COLUMN_NAMES.match(re.sub(r"[_\-\s.]", "", str(c).lower()))
        ]
        if named:
            shown = ", ".join(repr(c) for c in named[:4])
            return f"a DataFrame with column(s) named like user or item ids ({shown})"
        arr = X.to_numpy()
    else:
        arr = np.asarray(X)
    if arr.ndim != 2 or not 2 <= arr.shape[1] <= 4 or arr.shape[0] < MIN_LOG_IDS:
        return None
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        return None
    if np.issubdtype(arr.dtype, np.complexfloating):
        return None
    ids = arr[:, :2]
    if np.issubdtype(arr.dtype, np.floating):
        with np.errstate(invalid="ignore"):
            if not (np.all(np.isfinite(ids)) and np.all(ids == np.floor(ids))):
                return None
    if ids.min() < 0:
        return None
    n_distinct = [np.unique(ids[:, j]).size for j in range(2)]
    if min(n_distinct) < MIN_LOG_IDS:
        return None
    return (
        f"an array of {arr.shape[0]} rows and only {arr.shape[1]} columns whose first two "
        f"columns hold integer ids ({n_distinct[0]} and {n_distinct[1]} distinct values)"
    )


def check_not_a_log(X, name="X"):
    """Refuse a long interaction log passed where a user x item matrix is expected.

    See the module's docstring for the rule. Fitting a log such as
    ``df[["userId", "movieId", "rating"]]`` would otherwise build a 3-item model.

    Parameters
    ----------
    X : object
        Dense input (array-like or DataFrame); sparse matrices pass unchecked.
    name : str, default="X"
        The parameter name used in the message.

    Raises
    ------
    ValueError
        Saying why ``X`` looks like a log and how to encode it.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._core.validation import check_not_a_log
    >>> log = np.column_stack([np.arange(40) // 2, np.arange(40) % 20, np.ones(40)])
    >>> check_not_a_log(log)
    Traceback (most recent call last):
    ...
    ValueError: X looks like a long interaction log (one row per event: user, item[, value]...
    >>> check_not_a_log(np.ones((40, 3)))  # a 3-item matrix: no ids in it
    """
    if sp.issparse(X) or X is None or isinstance(X, str | bytes):
        return
    reason = _log_reason(X)
    if reason is None:
        return
    raise ValueError(
        f"{name} looks like a long interaction log (one row per event: user, item[, value]"
        f"[, time]) rather than a user x item matrix: it is {reason}. Read as a matrix, each "
        f"of its columns would be an item. {_ENCODE_HINT} If {name} really is a matrix of "
        "that few items, pass it as a scipy.sparse matrix."
    )


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

    A long interaction log passed instead of a matrix is refused with how to
    encode it (:func:`check_not_a_log`).

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
        check_not_a_log(X, name)
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
