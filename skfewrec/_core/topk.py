"""Chunked top-k: blocked score computation, vectorised filtering, argpartition.

Scores are computed for a block of users at a time (a float32 GEMM for factor
models), already-seen and excluded items are set to -inf with one fancy-index
assignment per block (no loop over users), and the k best are selected with
``argpartition``. Blocks run on a small thread pool: numpy releases the GIL in
both GEMM and argpartition, so blocks overlap on several cores, and each block
is small enough that memory stays bounded whatever the number of users.
"""

import numpy as np

from .csr import lookup
from .threads import blas_limits, effective_n_jobs, run_threaded
from .validation import check_item_indices, check_k

#: bytes of float32 scores one block may hold
DEFAULT_BLOCK_BYTES = 32 * 2**20

#: columns per block whose maxima bound the k-th best score (see _select_block)
_SELECT_BLOCK = 128


def _select_block(scores, k):
    """Row-wise top-k of a dense block, best first; -inf slots become id -1.

    The k-th largest of the row's column-block maxima is a lower bound of its
    k-th largest score (k blocks each hold a score at least that large), so only
    the few scores above it are sorted. Ties keep column order. Falls back to
    argpartition when there are fewer blocks than k.
    """
    n_rows, n_cols = scores.shape
    starts = np.arange(0, n_cols, _SELECT_BLOCK)
    if starts.size < 2 * k:
        if k < n_cols:
            part = np.argpartition(scores, n_cols - k, axis=1)[:, n_cols - k :]
            part.sort(axis=1)
        else:
            part = np.broadcast_to(np.arange(n_cols), scores.shape).copy()
        top = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        ids = np.take_along_axis(part, order, axis=1)
        top = np.take_along_axis(top, order, axis=1)
    else:
        maxima = np.maximum.reduceat(scores, starts, axis=1)
        bound = np.partition(maxima, starts.size - k, axis=1)[:, starts.size - k]
        rows, cols = np.nonzero(scores >= bound[:, None])
        vals = scores[rows, cols]
        order = np.lexsort((-vals, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        pos = np.arange(rows.size) - np.searchsorted(rows, np.arange(n_rows))[rows]
        keep = pos < k
        ids = np.empty((n_rows, k), dtype=np.int64)
        top = np.empty((n_rows, k), dtype=scores.dtype)
        ids[rows[keep], pos[keep]] = cols[keep]
        top[rows[keep], pos[keep]] = vals[keep]
    ids[~np.isfinite(top)] = -1
    top[ids < 0] = -np.inf
    return ids, top


def restrict_items(seen, items, exclude, n_items):
    """Resolve the allow-list and deny-list into column positions.

    Returns
    -------
    columns : ndarray or None
        The item indices scored (None: all).
    seen : csr_matrix or None
        The seen matrix with columns renumbered to ``columns`` positions.
    exclude_pos : ndarray or None
        Positions (within ``columns``) never recommended.
    """
    columns = None
    if items is not None:
        columns = check_item_indices(items, n_items, name="items")
        if columns.size == 0:
            raise ValueError("items is empty; pass at least one item index to rank.")
        if seen is not None:
            seen = seen[:, columns].tocsr()
    exclude_pos = None
    if exclude is not None:
        exclude = check_item_indices(exclude, n_items, name="exclude")
        if columns is not None:
            exclude = np.flatnonzero(np.isin(columns, exclude))
        exclude_pos = exclude if exclude.size else None
    return columns, seen, exclude_pos


def chunked_topk(
    score_block,
    n_rows,
    n_cols,
    k,
    *,
    seen=None,
    exclude=None,
    n_jobs=None,
    block_bytes=DEFAULT_BLOCK_BYTES,
):
    """Top-k of a score matrix computed block by block.

    Parameters
    ----------
    score_block : callable
        ``score_block(start, stop)`` returns the float32 scores of rows
        ``start:stop`` as a dense array of shape (stop - start, n_cols). It may
        return a fresh array that this function then overwrites.
    n_rows, n_cols : int
        Shape of the (never materialised) score matrix.
    k : int
        Number of items per row.
    seen : csr_matrix of shape (n_rows, n_cols), default=None
        Items never returned for each row.
    exclude : ndarray of int, default=None
        Columns never returned for any row.
    n_jobs : int, default=None
        Worker threads; each runs single-threaded BLAS.
    block_bytes : int
        Bytes of scores per block.

    Returns
    -------
    ids : ndarray of shape (n_rows, k), int64
        Column indices, best first; -1 where fewer than k columns remain.
    scores : ndarray of shape (n_rows, k), float32
        Their scores; -inf where the id is -1.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._core.topk import chunked_topk
    >>> S = np.array([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]], dtype=np.float32)
    >>> ids, scores = chunked_topk(lambda a, b: S[a:b].copy(), 2, 3, 2)
    >>> ids
    array([[1, 2],
           [0, 2]])
    """
    k = check_k(k, n_cols)
    ids = np.empty((n_rows, k), dtype=np.int64)
    scores = np.empty((n_rows, k), dtype=np.float32)
    block = max(1, min(n_rows, block_bytes // (4 * max(n_cols, 1))))
    starts = range(0, n_rows, block)

    def run(start):
        stop = min(start + block, n_rows)
        S = np.asarray(score_block(start, stop), dtype=np.float32)
        if seen is not None:
            sub = seen[start:stop]
            if sub.nnz:
                rows = np.repeat(np.arange(stop - start), np.diff(sub.indptr))
                S[rows, sub.indices] = -np.inf
        if exclude is not None:
            S[:, exclude] = -np.inf
        ids[start:stop], scores[start:stop] = _select_block(S, k)

    # n_jobs counts every thread: each worker runs single-threaded BLAS
    with blas_limits(1):
        run_threaded(run, starts, effective_n_jobs(n_jobs))
    return ids, scores


def factor_topk(U, V, k, *, seen=None, exclude=None, n_jobs=None, block_rows=8192, max_extra=None):
    """Top-k of ``U @ V.T``: implicit's C++ kernel for new users, a dense path for heavy ones.

    implicit's kernel fuses a blocked GEMM with a heap selection, multi-threaded,
    but filters already-seen items with a Python loop over users. Here users with
    few seen items (the few-shot case) are ranked by that kernel, unfiltered, asked
    for ``k`` plus the largest number of seen items in each block of users; the
    seen items are then dropped from its answer with one sorted lookup. Users with
    many seen items (more than ``max_extra``; a heap that large is slow) go through
    :func:`chunked_topk` instead: a blocked GEMM, seen items masked, then selection.
    No per-user Python work on either path.

    Parameters
    ----------
    U : ndarray of shape (n_users, n_components), float32
    V : ndarray of shape (n_items, n_components), float32
    k : int
    seen : csr_matrix of shape (n_users, n_items), default=None
        Canonical CSR (sorted indices) of items never returned per user.
    exclude : ndarray of int, default=None
        Items never returned.
    n_jobs : int, default=None
        Threads (BLAS runs single-threaded inside each).
    block_rows : int
        Users per call of implicit's kernel: bounds the memory of its answers.
    max_extra : int, default=None
        Seen items above which a user takes the dense path; None: ``max(64, 2 k)``.

    Returns
    -------
    ids, scores : ndarray of shape (n_users, k)
        As :func:`chunked_topk`.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from skfewrec._core.topk import factor_topk
    >>> U = np.array([[1.0, 0.0]], dtype=np.float32)
    >>> V = np.array([[3, 0], [2, 0], [1, 0]], dtype=np.float32)
    >>> factor_topk(U, V, 2, seen=sp.csr_matrix(np.array([[1, 0, 0]])))[0]
    array([[1, 2]])
    """
    from implicit.cpu.topk import topk as implicit_topk

    n_users, n_items = U.shape[0], V.shape[0]
    k = check_k(k, n_items)
    U = np.ascontiguousarray(U, dtype=np.float32)
    V = np.ascontiguousarray(V, dtype=np.float32)
    ids = np.empty((n_users, k), dtype=np.int64)
    scores = np.empty((n_users, k), dtype=np.float32)
    max_extra = max(64, 2 * k) if max_extra is None else max_extra
    if seen is not None and seen.nnz:
        heavy = np.flatnonzero(np.diff(seen.indptr) > max_extra)
        if heavy.size:
            Vt = np.ascontiguousarray(V.T)
            Uh = U[heavy]
            ids[heavy], scores[heavy] = chunked_topk(
                lambda start, stop: Uh[start:stop] @ Vt,
                heavy.size,
                n_items,
                k,
                seen=seen[heavy],
                exclude=exclude,
                n_jobs=n_jobs,
            )
            light = np.setdiff1d(np.arange(n_users), heavy, assume_unique=True)
            if light.size:
                ids[light], scores[light] = factor_topk(
                    U[light],
                    V,
                    k,
                    seen=seen[light],
                    exclude=exclude,
                    n_jobs=n_jobs,
                    block_rows=block_rows,
                    max_extra=max_extra,
                )
            return ids, scores
    threads = effective_n_jobs(n_jobs)
    lowest = -np.finfo(np.float32).max  # implicit's mark for filtered items
    for start in range(0, n_users, block_rows):
        stop = min(start + block_rows, n_users)
        sub = seen[start:stop] if seen is not None else None
        extra = int(np.diff(sub.indptr).max()) if sub is not None and sub.nnz else 0
        kk = min(n_items, k + extra)
        with blas_limits(1):
            bi, bs = implicit_topk(V, U[start:stop], kk, filter_items=exclude, num_threads=threads)
        bi = bi.astype(np.int64)
        drop = bs <= lowest
        if extra:
            drop |= lookup(sub, bi)[1]
        if drop.any():
            # move kept entries to the front, keeping their order
            order = np.argsort(drop, axis=1, kind="stable")
            bi = np.take_along_axis(bi, order, axis=1)
            bs = np.take_along_axis(bs, order, axis=1)
            drop = np.take_along_axis(drop, order, axis=1)
            bi[drop] = -1
            bs[drop] = -np.inf
        ids[start:stop] = bi[:, :k]
        scores[start:stop] = bs[:, :k]
    return ids, scores
