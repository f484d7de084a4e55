"""Conditional-probability item neighbours, sparse and built by blocks of items.

``sim(i, j) = co(i, j) / (n_i * n_j ** pop_discount)``, with ``co(i, j)`` the number
of users who took both items and ``n`` each item's number of users (Deshpande &
Karypis, 2004; RecPack's ``ItemKNN(similarity="conditional_probability")``). Each
item keeps its ``n_neighbors`` most similar items. The co-occurrence counts are
computed for a block of items at a time, so that memory stays bounded on large
catalogues (never a dense item x item matrix, never the whole co-occurrence).
"""

import numpy as np
import scipy.sparse as sp

#: co-occurrence entries one block may hold (before its rows are cut to the top k)
_BLOCK_ENTRIES = 20_000_000


def top_k_per_row(S, k):
    """The ``k`` largest entries of each row of a CSR matrix, vectorised.

    Ties keep the lower column. Returns a canonical CSR of the same shape.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from skfewrec._core.knn import top_k_per_row
    >>> top_k_per_row(sp.csr_matrix(np.array([[1.0, 3.0, 2.0]])), 2).toarray()
    array([[0., 3., 2.]])
    """
    S = sp.csr_matrix(S)
    S.sort_indices()
    rows = np.repeat(np.arange(S.shape[0]), np.diff(S.indptr))
    # one float64 key, row then value descending (a stable sort keeps the lower
    # column first among ties): several times faster than a lexsort of three keys
    top = np.abs(S).max(axis=1).toarray().ravel()
    top = np.where(top > 0, top, 1.0)
    key = rows + 0.5 * (1.0 - S.data.astype(np.float64) / top[rows])
    order = np.argsort(key, kind="stable")
    rank = np.empty(S.nnz, dtype=np.int64)
    rank[order] = np.arange(S.nnz) - S.indptr[rows[order]]
    keep = rank < k
    out = sp.csr_matrix((S.data[keep], (rows[keep], S.indices[keep])), shape=S.shape)
    out.sort_indices()
    return out


def conditional_neighbors(X, n_neighbors=100, pop_discount=0.5):
    """Each item's ``n_neighbors`` most similar items under the conditional probability.

    Parameters
    ----------
    X : sparse matrix of shape (n_users, n_items)
        Interactions; only their pattern counts (binary).
    n_neighbors : int, default=100
        Neighbours kept per item.
    pop_discount : float, default=0.5
        Exponent of the neighbour's popularity in the denominator.

    Returns
    -------
    similarity : csr_matrix of shape (n_items, n_items), float32
        Row ``i``: the neighbours of item ``i``; the diagonal is zero. A user's
        item-kNN scores are ``b_u @ similarity`` with ``b_u`` their binary row.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from skfewrec._core.knn import conditional_neighbors
    >>> X = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [1, 0, 1]]))
    >>> conditional_neighbors(X, n_neighbors=1, pop_discount=0.0).toarray().round(2)
    array([[0.  , 0.67, 0.  ],
           [1.  , 0.  , 0.  ],
           [1.  , 0.  , 0.  ]], dtype=float32)
    """
    X = sp.csr_matrix(X)
    B = sp.csr_matrix((np.ones(X.nnz, dtype=np.float32), X.indices, X.indptr), shape=X.shape)
    Bt = B.T.tocsr()  # items x users
    n = np.maximum(np.diff(Bt.indptr), 1).astype(np.float32)
    discount = n ** np.float32(pop_discount)
    # an item's co-occurrence row has at most sum over its users of their counts
    per_user = np.diff(B.indptr).astype(np.int64)
    work = np.asarray(Bt @ per_user.astype(np.float64)).ravel()
    blocks, start = [], 0
    n_items = X.shape[1]
    while start < n_items:
        stop = start + 1
        budget = work[start]
        while stop < n_items and budget + work[stop] <= _BLOCK_ENTRIES:
            budget += work[stop]
            stop += 1
        co = sp.csr_matrix(Bt[start:stop] @ B, dtype=np.float32)
        co.setdiag(0, k=start)
        co.eliminate_zeros()
        rows = np.repeat(np.arange(stop - start), np.diff(co.indptr))
        co.data /= n[start + rows] * discount[co.indices]
        blocks.append(top_k_per_row(co, n_neighbors))
        start = stop
    return sp.vstack(blocks, format="csr", dtype=np.float32)


def blend_scores(factor_scores, knn_scores, weight):
    """``f / max|f| + weight * s / max s`` per row: factor and item-kNN scores on one scale.

    Each part is divided by its row's largest magnitude, so ``weight`` means the
    same whatever the scales of the factors and of the similarities; the ranking
    of either part alone is unchanged. Works in place on float32 blocks.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._core.knn import blend_scores
    >>> blend_scores(np.array([[2.0, 1.0]]), np.array([[0.0, 4.0]]), 0.5)
    array([[1., 1.]])
    """
    F = np.asarray(factor_scores)
    K = np.asarray(knn_scores)
    F /= np.maximum(np.abs(F).max(axis=1, keepdims=True), np.finfo(F.dtype).tiny)
    K /= np.maximum(K.max(axis=1, keepdims=True), np.finfo(K.dtype).tiny)
    F += weight * K
    return F


def pad_square(S, n):
    """An ``n x n`` CSR holding ``S`` in its top-left corner (items added since: no
    neighbours, and no item has them as neighbours).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from skfewrec._core.knn import pad_square
    >>> pad_square(sp.csr_matrix(np.ones((1, 1))), 2).toarray()
    array([[1., 0.],
           [0., 0.]])
    """
    if S.shape[0] == n:
        return S
    indptr = np.concatenate([S.indptr, np.full(n - S.shape[0], S.indptr[-1])])
    return sp.csr_matrix((S.data, S.indices, indptr), shape=(n, n))
