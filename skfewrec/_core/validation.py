"""Input checks shared by every skfewrec estimator and function.

Each check raises an error that names the parameter, says what was wrong and how
to fix it. Nothing is silently dropped or clipped.
"""

from numbers import Integral

import numpy as np
import scipy.sparse as sp


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
        X = sp.csr_matrix(X, dtype=dtype, copy=copy)
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
    data = X.data
    if not np.all(np.isfinite(data)):
        n_bad = int(np.sum(~np.isfinite(data)))
        raise ValueError(
            f"{name} has {n_bad} NaN or infinite value(s); confidences must be finite. "
            "Drop or impute them before fitting."
        )
    if data.size and data.min() < 0:
        n_neg = int(np.sum(data < 0))
        raise ValueError(
            f"Negative values in data passed as {name}: {name} has {n_neg} negative value(s) "
            f"(the smallest is {data.min():g}); confidences must be >= 0. Use 0 for "
            "'no interaction'; for explicit ratings use objective='explicit' where available."
        )
    if not X.has_canonical_format:
        X = X.copy() if not copy else X
        X.sum_duplicates()
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


def check_k(k, n_items, *, name="k"):
    """Check a top-k size against the number of rankable items.

    Examples
    --------
    >>> from skfewrec._core.validation import check_k
    >>> check_k(5, 10)
    5
    """
    if isinstance(k, bool) or not isinstance(k, Integral):
        raise TypeError(f"{name} must be an integer >= 1, got {k!r} of type {type(k).__name__}.")
    if k < 1:
        raise ValueError(f"{name} must be >= 1, got {k}.")
    if k > n_items:
        raise ValueError(
            f"{name}={k} is larger than the {n_items} items that can be recommended; "
            f"ask for at most {n_items} (or widen the `items` allow-list)."
        )
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
