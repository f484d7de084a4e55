"""Row-wise helpers on canonical CSR matrices: ranks, support/query cuts, lookups.

One home for what the few-shot code does to rows of interactions: cut each row
into a support (the shots) and a query (held back), by time or at random, draw
simulated episodes of warm users, and ask whether item ``j`` is in row ``u``.
Everything is vectorised over all stored entries: no Python loop over rows.
"""

import numpy as np
import scipy.sparse as sp


def row_of_nonzeros(X):
    """The row of every stored entry of the CSR matrix X, in storage order.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from skfewrec._core.csr import row_of_nonzeros
    >>> row_of_nonzeros(sp.csr_matrix(np.array([[1, 1], [0, 0], [0, 1]]))).tolist()
    [0, 0, 2]
    """
    return np.repeat(np.arange(X.shape[0], dtype=X.indices.dtype), np.diff(X.indptr))


def rank_in_rows(X, order, times=None):
    """The rank of every stored entry within its row, by ``times``, ties in ``order``.

    Parameters
    ----------
    X : csr_matrix of shape (n_rows, n_columns)
    order : ndarray of shape (X.nnz,), int
        A permutation of the stored entries: within a row (and a time), an entry
        listed earlier ranks first. A random permutation gives a random order.
    times : ndarray of shape (X.nnz,), default=None
        Sorted on first when given.

    Returns
    -------
    rank : ndarray of shape (X.nnz,), int64
        0 for the first entry of its row, 1 for the next, ...

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from skfewrec._core.csr import rank_in_rows
    >>> X = sp.csr_matrix(np.array([[1, 1, 1], [0, 1, 1]]))
    >>> rank_in_rows(X, np.array([1, 0, 4, 2, 3])).tolist()
    [1, 0, 2, 1, 0]
    """
    rows = row_of_nonzeros(X)
    # stable sorts from the last key to the first (as np.lexsort, but faster here)
    if times is not None:
        order = order[np.argsort(times[order], kind="stable")]
    order = order[np.argsort(rows[order], kind="stable")]
    # the sort keeps rows grouped: an entry's rank is its offset from its row's start
    rank = np.empty(X.nnz, dtype=np.int64)
    rank[order] = np.arange(X.nnz) - X.indptr[rows[order]]
    return rank


def select_entries(X, mask, container=sp.csr_matrix):
    """The CSR matrix of X's stored entries where ``mask`` is True (same shape).

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from skfewrec._core.csr import select_entries
    >>> X = sp.csr_matrix(np.array([[1, 2], [3, 0]]))
    >>> select_entries(X, np.array([True, False, True])).toarray()
    array([[1, 0],
           [3, 0]])
    """
    counts = np.bincount(row_of_nonzeros(X)[mask], minlength=X.shape[0])
    indptr = np.concatenate(([0], np.cumsum(counts))).astype(X.indptr.dtype)
    return container((X.data[mask], X.indices[mask], indptr), shape=X.shape)


def split_rows(X, n_shots, order, *, times=None, max_query=None, container=sp.csr_matrix):
    """Cut each row into its first ``n_shots`` entries (the support) and the rest (the query).

    "First" is by ``times``, ties in ``order`` (see :func:`rank_in_rows`).

    Parameters
    ----------
    X : csr_matrix of shape (n_rows, n_columns)
    n_shots : int or ndarray of shape (n_rows,)
        The support size of every row (or of each row).
    order : ndarray of shape (X.nnz,), int
        A permutation of the stored entries, the order within a row: a random
        one cuts at random.
    times : ndarray of shape (X.nnz,), default=None
        Ordered on first: the support holds the earliest entries.
    max_query : int, default=None
        Keep at most this many entries after the support in the query; None keeps all.
    container : type, default=scipy.sparse.csr_matrix
        The type of the two parts.

    Returns
    -------
    S, Q : sparse matrices of shape (n_rows, n_columns)
        The support and the query, with X's values.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from skfewrec._core.csr import split_rows
    >>> X = sp.csr_matrix(np.array([[1, 2, 3], [0, 4, 5]]))
    >>> S, Q = split_rows(X, np.array([1, 2]), np.array([1, 0, 4, 2, 3]))
    >>> S.toarray()
    array([[0, 2, 0],
           [0, 4, 5]])
    >>> Q.toarray()
    array([[1, 0, 3],
           [0, 0, 0]])
    """
    rank = rank_in_rows(X, order, times)
    n = n_shots[row_of_nonzeros(X)] if np.ndim(n_shots) else n_shots
    in_support = rank < n
    in_query = ~in_support if max_query is None else ~in_support & (rank < n + max_query)
    return select_entries(X, in_support, container), select_entries(X, in_query, container)


def sample_episodes(X, low, high, n_episodes, rng):
    """Simulated few-shot episodes of warm users: random support, the rest held back.

    Each user with enough interactions gets ``n_episodes`` episodes; each draws
    its number of shots uniformly in ``[low, high]``, capped so that at least one
    interaction is held back.

    Parameters
    ----------
    X : csr_matrix of shape (n_users, n_items)
    low, high : int
        The range of support sizes.
    n_episodes : int
        Episodes per user.
    rng : numpy.random.RandomState

    Returns
    -------
    S, Q : csr_matrix of shape (n_episodes_total, n_items)
        Support and held-back part of each episode.
    owner : ndarray of shape (n_episodes_total,), int
        The row of X each episode comes from.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from skfewrec._core.csr import sample_episodes
    >>> X = sp.csr_matrix(np.array([[1.0, 1, 1, 0], [1, 0, 0, 0]]))
    >>> S, Q, owner = sample_episodes(X, 1, 5, 2, np.random.RandomState(0))
    >>> owner.tolist(), S.getnnz(axis=1).tolist(), Q.getnnz(axis=1).tolist()
    ([0, 0], [2, 1], [1, 2])
    """
    counts = np.diff(X.indptr)
    eligible = np.flatnonzero(counts >= low + 1)
    owner = np.repeat(eligible, n_episodes)
    E = X[owner]
    shots = rng.randint(low, high + 1, size=owner.size)
    shots = np.minimum(shots, counts[owner] - 1)
    # random keys, sorted: a random order of each row's interactions
    S, Q = split_rows(E, shots, np.argsort(rng.random_sample(E.nnz), kind="stable"))
    return S, Q, owner


def lookup(X, ids):
    """Where each ``ids[u, j]`` is stored in row ``u`` of X, and whether it is there.

    Parameters
    ----------
    X : csr_matrix of shape (n_rows, n_columns)
        Canonical (sorted indices, no duplicates).
    ids : ndarray of shape (n_rows, m), int
        Column indices to look up per row; negative ones are never found.

    Returns
    -------
    pos : ndarray of shape (n_rows, m), int
        The index into ``X.data`` of each found entry (meaningless where not found).
    found : ndarray of shape (n_rows, m), bool

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from skfewrec._core.csr import lookup
    >>> X = sp.csr_matrix(np.array([[0, 7, 8], [9, 0, 0]]))
    >>> pos, found = lookup(X, np.array([[2, 0], [0, -1]]))
    >>> found.tolist(), X.data[pos[found]].tolist()
    ([[True, False], [True, False]], [8, 9])
    """
    ids = np.asarray(ids)
    if X.nnz == 0:
        return np.zeros(ids.shape, dtype=np.int64), np.zeros(ids.shape, dtype=bool)
    n_columns = X.shape[1]
    # with canonical CSR, row * n_columns + column is sorted over the whole matrix
    keys = row_of_nonzeros(X).astype(np.int64) * n_columns + X.indices
    wanted = np.arange(ids.shape[0], dtype=np.int64)[:, None] * n_columns + ids
    pos = np.searchsorted(keys, wanted)
    np.minimum(pos, keys.size - 1, out=pos)
    return pos, (ids >= 0) & (keys[pos] == wanted)


def user_folds(n_users, n_folds, rng):
    """The cross-fitting fold of each of ``n_users`` users (rows).

    A random permutation of the users dealt out in turn, so fold sizes differ by
    at most one. One helper for every estimator that cross-fits on warm users
    (the re-ranker's candidate adapters, GradientFoldIn's meta-learning).

    Parameters
    ----------
    n_users : int
    n_folds : int
    rng : numpy.random.Generator or RandomState

    Returns
    -------
    fold : ndarray of shape (n_users,), int
        Values in ``range(n_folds)``.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._core.csr import user_folds
    >>> np.bincount(user_folds(10, 3, np.random.default_rng(0))).tolist()
    [4, 3, 3]
    """
    return rng.permutation(n_users) % n_folds
