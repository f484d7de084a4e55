"""What the warm users' interactions say about items, in a size bounded by the catalogue.

:func:`warm_statistics` is the re-ranker's whole memory of the warm users: item
counts, recent counts and times, and a co-occurrence table that keeps a fixed
number of neighbours per item. None of it grows with the number of warm users,
and no user's history is kept.
"""

import numpy as np
import scipy.sparse as sp

#: each item keeps its strongest co-occurring items (by cosine)
COOC_NEIGHBORS = 200
#: "recent" interactions: the latest share of the warm interactions by time
RECENT_FRACTION = 0.1
#: float32 elements a dense block may hold (bounds memory)
BLOCK_ELEMENTS = 1 << 22


def binary(X):
    """``X`` as a float32 CSR matrix with every stored value set to 1."""
    B = sp.csr_matrix(X, dtype=np.float32, copy=True)
    B.data[:] = 1.0
    return B


def pruned_cooccurrence(X, n_neighbors=None, block_elements=BLOCK_ELEMENTS):
    """Item-item co-occurrence counts, each item keeping its strongest neighbours.

    ``C[i, j]`` is the number of users (rows of ``X``) who have both items. Row
    ``i`` keeps the ``n_neighbors`` items ``j`` with the largest cosine
    ``C[i, j] / sqrt(C[i, i] C[j, j])`` (so the matrix is not symmetric: row
    ``i`` lists ``i``'s neighbours), and the diagonal is zero. Computed in blocks
    of rows of ``X^T X``, so memory stays bounded for large catalogues, and
    every row has at most ``n_neighbors`` entries, which bounds both the model's
    size (by the catalogue) and the cost of the features per shot.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
    n_neighbors : int, default=None
        Neighbours kept per item (None: ``COOC_NEIGHBORS``).
    block_elements : int
        Dense elements of one block of ``X^T X``.

    Returns
    -------
    C : csr_matrix of shape (n_items, n_items), float32
        Canonical CSR of co-occurrence counts.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.rerank._warm import pruned_cooccurrence
    >>> X = np.array([[1, 1, 0], [1, 1, 1], [0, 0, 1]])
    >>> pruned_cooccurrence(X).toarray()
    array([[0., 2., 1.],
           [2., 0., 1.],
           [1., 1., 0.]], dtype=float32)
    >>> pruned_cooccurrence(X, n_neighbors=1).toarray()  # ties: the lower index
    array([[0., 2., 0.],
           [2., 0., 0.],
           [1., 0., 0.]], dtype=float32)
    """
    n_neighbors = COOC_NEIGHBORS if n_neighbors is None else n_neighbors
    B = binary(sp.csr_matrix(X))
    n_items = B.shape[1]
    counts = np.asarray(B.sum(axis=0)).ravel()
    inv_norm = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    Bt = B.T.tocsr()
    block = max(1, int(block_elements // max(n_items, 1)))
    rows, cols, vals = [], [], []
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        D = np.asarray((Bt[start:stop] @ B).toarray(), dtype=np.float32)
        D[np.arange(stop - start), np.arange(start, stop)] = 0.0
        if n_neighbors < n_items:
            # ties broken by item index, so the result does not depend on the block size
            cos = D * inv_norm[start:stop, None] * inv_norm[None, :]
            keep = np.argsort(-cos, axis=1, kind="stable")[:, :n_neighbors]
            r = np.repeat(np.arange(stop - start), n_neighbors)
            c = keep.ravel()
        else:
            r, c = np.nonzero(D)
        v = D[r, c]
        nz = v > 0
        rows.append(r[nz] + start)
        cols.append(c[nz])
        vals.append(v[nz])
    C = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_items, n_items),
        dtype=np.float32,
    )
    C.sum_duplicates()
    return C


def warm_statistics(X, *, times=None, recent_threshold=None, n_neighbors=None):
    """What the warm users' interactions say about items.

    The result is all a re-ranker keeps of its warm users: its size depends on
    the catalogue (at most ``n_neighbors`` co-occurrence entries per item), not
    on the number of warm users, and it holds no user's history.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        Warm interactions.
    times : csr_matrix of shape (n_users, n_items), default=None
        Their timestamps, with the sparsity pattern of ``X``, scaled to [0, 1]
        over the whole warm period (so that folds share one scale).
    recent_threshold : float, default=None
        Interactions at or after this time are "recent" (needed with ``times``).
    n_neighbors : int, default=None
        Neighbours kept per item in the co-occurrence matrix (None:
        ``COOC_NEIGHBORS``).

    Returns
    -------
    stats : dict
        ``item_counts`` (users per item), ``n_users``, ``recent_counts``,
        ``n_recent`` and ``item_time`` (mean scaled time of the item's
        interactions, NaN for items without any; all None without times), and
        ``cooccurrence`` (csr counts, from :func:`pruned_cooccurrence`).

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.rerank._warm import warm_statistics
    >>> stats = warm_statistics(np.array([[1.0, 0, 2], [0, 1, 1]]))
    >>> stats["item_counts"].tolist(), stats["n_users"]
    ([1.0, 1.0, 2.0], 2)
    """
    X = sp.csr_matrix(X)
    item_counts = np.bincount(X.indices, minlength=X.shape[1]).astype(np.float64)
    recent_counts = n_recent = item_time = None
    if times is not None:
        t = np.asarray(times.data, dtype=np.float64)
        recent = t >= recent_threshold
        recent_counts = np.bincount(X.indices[recent], minlength=X.shape[1]).astype(np.float64)
        n_recent = int(recent.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            item_time = np.bincount(X.indices, weights=t, minlength=X.shape[1]) / item_counts
    return {
        "item_counts": item_counts,
        "n_users": int(X.shape[0]),
        "recent_counts": recent_counts,
        "n_recent": n_recent,
        "item_time": item_time,
        "cooccurrence": pruned_cooccurrence(X, n_neighbors),
    }


def log_frequency(counts, total):
    """``log((count + 1) / (total + 1))``: a popularity on the same scale for any
    number of warm users (folds have fewer users than the whole warm set).

    Examples
    --------
    >>> from skfewrec.rerank._warm import log_frequency
    >>> log_frequency([0, 9], 9).astype(float).round(3).tolist()
    [-2.303, 0.0]
    """
    return np.log((np.asarray(counts, dtype=np.float64) + 1.0) / (total + 1.0)).astype(np.float32)
