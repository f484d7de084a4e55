"""Ranking metrics for top-k recommendations, vectorised over users.

Every metric compares a query matrix ``y_true`` of shape (n_users, n_items), in
which the relevant items of a user are the nonzero entries of their row, with the
``ids`` returned by a recommender's ``recommend``: an integer array of shape
(n_users, >= k) of item column indices, best first, where ``-1`` pads a list that
is shorter than k and counts as a miss.

Users whose query row is empty have nothing to find: they get NaN with
``average=False`` and are left out of the mean. If no user has a query item, the
metrics raise a ``ValueError`` rather than return a meaningless number.

The relevance of every recommended item is gathered from the CSR structure of
``y_true`` with one ``np.searchsorted`` over all users, so the cost is
O((nnz + n_users * k) log nnz) and there is no Python loop over users.
"""

from numbers import Integral

import numpy as np

from ._core.csr import lookup
from ._core.validation import check_interactions

__all__ = [
    "METRICS",
    "catalogue_coverage",
    "evaluate",
    "hit_rate_at_k",
    "map_at_k",
    "mrr",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
]


class _Ranked:
    """The relevance of each of the first k recommendations of each user.

    Built once by ``_rank`` and shared by the metrics, so that ``evaluate`` reads
    ``y_true`` and gathers the relevance a single time.
    """

    def __init__(self, y_true, ids, k):
        self.y_true = y_true
        self.ids = ids
        self.k = k
        self.n_relevant = np.diff(y_true.indptr)
        self.gains = _gather(y_true, ids)
        self.hits = self.gains > 0

    def finish(self, values, average):
        """Set users without query items to NaN and average if asked."""
        values = np.asarray(values, dtype=np.float64)
        has_query = self.n_relevant > 0
        values[~has_query] = np.nan
        if average:
            return float(values[has_query].mean())
        return values


def _check_y_pred(y_pred, *, n_users=None, n_items=None, name="y_pred"):
    """Validate recommended ids and return them as a 2-d int64 array."""
    ids = np.asarray(y_pred)
    if ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(
            f"{name} must hold integer item indices (the `ids` returned by recommend), got "
            f"dtype {ids.dtype}. Pass the ids, not the scores."
        )
    if ids.ndim != 2:
        raise ValueError(
            f"{name} must be 2-dimensional of shape (n_users, k), got shape {ids.shape}. "
            "Reshape a single user's list with y_pred.reshape(1, -1)."
        )
    if n_users is not None and ids.shape[0] != n_users:
        raise ValueError(
            f"y_true has {n_users} users (rows) but {name} has {ids.shape[0]}; pass one row of "
            "recommendations per row of y_true, in the same order."
        )
    ids = ids.astype(np.int64, copy=False)
    if n_items is not None and ids.size:
        bad = (ids < -1) | (ids >= n_items)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"{name} contains the item index {ids[row, col]} (row {row}, column {col}), "
                f"outside the catalogue [0, {n_items}); -1 is the only allowed padding value."
            )
    return ids


def _check_cutoff(k, n_columns):
    """Resolve ``k=None`` to all columns and check an explicit k."""
    if k is None:
        k = n_columns
        if k < 1:
            raise ValueError("y_pred has 0 columns; pass at least one recommendation per user.")
        return k
    if isinstance(k, bool) or not isinstance(k, Integral):
        raise TypeError(f"k must be an integer >= 1 or None, got {k!r} of type {type(k).__name__}.")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    if k > n_columns:
        raise ValueError(
            f"k={k} is larger than the {n_columns} recommendations per user in y_pred; "
            f"recommend at least k items, or use k <= {n_columns}."
        )
    return int(k)


def _rank(y_true, y_pred, k):
    """Validate the inputs of a metric and gather the relevance of the top k."""
    y_true = check_interactions(y_true, name="y_true", dtype=np.float64)
    ids = _check_y_pred(y_pred, n_users=y_true.shape[0], n_items=y_true.shape[1])
    k = _check_cutoff(k, ids.shape[1])
    ids = ids[:, :k]
    # Several copies of an item would each count as a hit and push recall above 1.
    ranked = np.sort(ids, axis=1)
    dup = (ranked[:, 1:] == ranked[:, :-1]) & (ranked[:, 1:] >= 0)
    if dup.any():
        row, col = np.argwhere(dup)[0]
        raise ValueError(
            f"y_pred recommends item {ranked[row, col]} more than once to user {row} within "
            "the first k; each item may appear at most once per row (pad with -1)."
        )
    if not np.any(np.diff(y_true.indptr)):
        raise ValueError(
            "y_true has no relevant item in any row, so every user would be excluded and the "
            "metric is undefined; pass the query interactions (e.g. from support_query_split)."
        )
    return _Ranked(y_true, ids, k)


def _gather(y_true, ids):
    """Return y_true[u, ids[u, j]] for every u and j (0 for -1 and missing items)."""
    pos, found = lookup(y_true, ids)
    return np.where(found, y_true.data[pos], 0.0)


def _discount(k):
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _ideal_graded_dcg(y_true, k):
    """DCG of each row's k largest gains, sorted best first."""
    n_users = y_true.shape[0]
    n_relevant = np.diff(y_true.indptr)
    rows = np.repeat(np.arange(n_users, dtype=np.int64), n_relevant)
    order = np.lexsort((-y_true.data, rows))
    # Sorting keeps rows grouped, so the rank within a row is the offset from indptr.
    rank = np.arange(y_true.nnz) - y_true.indptr[rows]
    keep = rank < k
    weights = y_true.data[order][keep] * _discount(k)[rank[keep]]
    return np.bincount(rows[keep], weights=weights, minlength=n_users)


def binary_ndcg(hits, n_relevant):
    """NDCG of each row of 0/1 relevances, best first: the kernel of every NDCG here.

    Parameters
    ----------
    hits : ndarray of shape (n_users, k), bool
        Whether each of a user's first k recommendations is relevant.
    n_relevant : ndarray of shape (n_users,), int
        The user's number of relevant items (the ideal ranking puts
        ``min(n_relevant, k)`` of them first).

    Returns
    -------
    ndcg : ndarray of shape (n_users,)
        NaN for users without relevant items.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.metrics import binary_ndcg
    >>> binary_ndcg(np.array([[True, False], [False, True]]), np.array([1, 1])).round(3)
    array([1.   , 0.631])
    """
    k = hits.shape[1]
    disc = _discount(k)
    dcg = (hits * disc).sum(axis=1)
    idcg = np.concatenate(([0.0], np.cumsum(disc)))[np.minimum(n_relevant, k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return dcg / idcg


def _ndcg(r, graded=False):
    if not graded:
        return binary_ndcg(r.hits, r.n_relevant)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (r.gains @ _discount(r.k)) / _ideal_graded_dcg(r.y_true, r.k)


def _recall(r):
    with np.errstate(invalid="ignore", divide="ignore"):
        return r.hits.sum(axis=1) / np.minimum(r.n_relevant, r.k)


def _precision(r):
    return r.hits.sum(axis=1) / r.k


def _average_precision(r):
    precision_at = np.cumsum(r.hits, axis=1) / np.arange(1, r.k + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (precision_at * r.hits).sum(axis=1) / np.minimum(r.n_relevant, r.k)


def _reciprocal_rank(r):
    first = r.hits.argmax(axis=1)
    return np.where(r.hits.any(axis=1), 1.0 / (first + 1), 0.0)


def _hit_rate(r):
    return r.hits.any(axis=1).astype(np.float64)


def ndcg_at_k(y_true, y_pred, *, k=None, graded=False, average=True):
    """Normalised discounted cumulative gain at k.

    DCG@k sums the gain of each recommended item divided by log2(rank + 1), for
    ranks 1 to k. It is divided by the ideal DCG@k: the DCG of the best possible
    list, which for binary gains puts min(k, |query|) relevant items first and
    for graded gains the k largest true gains in decreasing order.

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_users, n_items)
        The query interactions; a user's relevant items are the nonzero entries
        of their row.
    y_pred : array-like of int of shape (n_users, n_recommended)
        Recommended item indices, best first (the ``ids`` returned by
        ``recommend``); -1 is padding and counts as a miss.
    k : int, default=None
        Cut-off: only the first k columns of ``y_pred`` count. None uses all of
        them.
    graded : bool, default=False
        If False, every relevant item has gain 1. If True, the values of
        ``y_true`` are the gains (e.g. ratings).
    average : bool, default=True
        If True, return the mean over the users with at least one query item.
        If False, return one value per user, NaN for users without query items.

    Returns
    -------
    score : float or ndarray of shape (n_users,)
        The NDCG@k, between 0 and 1. The mean over the users with query items if
        ``average=True``, else one value per user (NaN without query items).

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.metrics import ndcg_at_k
    >>> y_true = np.array([[0, 1, 0, 1], [1, 0, 0, 0]])
    >>> y_pred = np.array([[1, 2], [3, 0]])
    >>> ndcg_at_k(y_true, y_pred, average=False).round(4)
    array([0.6131, 0.6309])
    >>> round(ndcg_at_k(y_true, y_pred), 4)
    0.622
    """
    r = _rank(y_true, y_pred, k)
    return r.finish(_ndcg(r, graded=graded), average)


def recall_at_k(y_true, y_pred, *, k=None, average=True):
    """Recall at k: the share of the query found in the top k.

    The denominator is min(k, |query|), so that a perfect list scores 1 even when
    a user has more than k query items.

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_users, n_items)
        The query interactions; a user's relevant items are the nonzero entries
        of their row.
    y_pred : array-like of int of shape (n_users, n_recommended)
        Recommended item indices, best first (the ``ids`` returned by
        ``recommend``); -1 is padding and counts as a miss.
    k : int, default=None
        Cut-off: only the first k columns of ``y_pred`` count. None uses all of
        them.
    average : bool, default=True
        If True, return the mean over the users with at least one query item.
        If False, return one value per user, NaN for users without query items.

    Returns
    -------
    score : float or ndarray of shape (n_users,)
        The recall@k, between 0 and 1. The mean over the users with query items if
        ``average=True``, else one value per user (NaN without query items).

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.metrics import recall_at_k
    >>> y_true = np.array([[1, 1, 1, 0], [0, 0, 0, 1]])
    >>> y_pred = np.array([[0, 3], [3, -1]])
    >>> recall_at_k(y_true, y_pred, average=False)
    array([0.5, 1. ])
    """
    r = _rank(y_true, y_pred, k)
    return r.finish(_recall(r), average)


def precision_at_k(y_true, y_pred, *, k=None, average=True):
    """Precision at k: the share of the top k that is relevant.

    The denominator is always k, so padding (-1) counts as a miss.

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_users, n_items)
        The query interactions; a user's relevant items are the nonzero entries
        of their row.
    y_pred : array-like of int of shape (n_users, n_recommended)
        Recommended item indices, best first (the ``ids`` returned by
        ``recommend``); -1 is padding and counts as a miss.
    k : int, default=None
        Cut-off: only the first k columns of ``y_pred`` count. None uses all of
        them.
    average : bool, default=True
        If True, return the mean over the users with at least one query item.
        If False, return one value per user, NaN for users without query items.

    Returns
    -------
    score : float or ndarray of shape (n_users,)
        The precision@k, between 0 and 1. The mean over the users with query items if
        ``average=True``, else one value per user (NaN without query items).

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.metrics import precision_at_k
    >>> y_true = np.array([[1, 1, 1, 0], [0, 0, 0, 1]])
    >>> y_pred = np.array([[0, 3], [3, -1]])
    >>> precision_at_k(y_true, y_pred, average=False)
    array([0.5, 0.5])
    """
    r = _rank(y_true, y_pred, k)
    return r.finish(_precision(r), average)


def map_at_k(y_true, y_pred, *, k=None, average=True):
    """Mean average precision at k.

    The average precision of a user sums precision@i over the ranks i <= k that
    hold a relevant item, divided by min(k, |query|).

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_users, n_items)
        The query interactions; a user's relevant items are the nonzero entries
        of their row.
    y_pred : array-like of int of shape (n_users, n_recommended)
        Recommended item indices, best first (the ``ids`` returned by
        ``recommend``); -1 is padding and counts as a miss.
    k : int, default=None
        Cut-off: only the first k columns of ``y_pred`` count. None uses all of
        them.
    average : bool, default=True
        If True, return the mean over the users with at least one query item.
        If False, return one value per user, NaN for users without query items.

    Returns
    -------
    score : float or ndarray of shape (n_users,)
        The MAP@k, between 0 and 1. The mean over the users with query items if
        ``average=True``, else one value per user (NaN without query items).

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.metrics import map_at_k
    >>> y_true = np.array([[1, 0, 1, 0]])
    >>> map_at_k(y_true, np.array([[1, 0, 2]]))  # (1/2 + 2/3) / 2
    0.5833333333333333
    """
    r = _rank(y_true, y_pred, k)
    return r.finish(_average_precision(r), average)


def mrr(y_true, y_pred, *, k=None, average=True):
    """Mean reciprocal rank of the first relevant item within the top k.

    A user whose top k holds no relevant item scores 0.

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_users, n_items)
        The query interactions; a user's relevant items are the nonzero entries
        of their row.
    y_pred : array-like of int of shape (n_users, n_recommended)
        Recommended item indices, best first (the ``ids`` returned by
        ``recommend``); -1 is padding and counts as a miss.
    k : int, default=None
        Cut-off: only the first k columns of ``y_pred`` count. None uses all of
        them.
    average : bool, default=True
        If True, return the mean over the users with at least one query item.
        If False, return one value per user, NaN for users without query items.

    Returns
    -------
    score : float or ndarray of shape (n_users,)
        The reciprocal rank, between 0 and 1. The mean over the users with query items if
        ``average=True``, else one value per user (NaN without query items).

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.metrics import mrr
    >>> y_true = np.array([[0, 0, 1], [1, 0, 0]])
    >>> mrr(y_true, np.array([[0, 2, 1], [1, 2, -1]]), average=False)
    array([0.5, 0. ])
    """
    r = _rank(y_true, y_pred, k)
    return r.finish(_reciprocal_rank(r), average)


def hit_rate_at_k(y_true, y_pred, *, k=None, average=True):
    """Hit rate at k: whether the top k holds at least one relevant item.

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_users, n_items)
        The query interactions; a user's relevant items are the nonzero entries
        of their row.
    y_pred : array-like of int of shape (n_users, n_recommended)
        Recommended item indices, best first (the ``ids`` returned by
        ``recommend``); -1 is padding and counts as a miss.
    k : int, default=None
        Cut-off: only the first k columns of ``y_pred`` count. None uses all of
        them.
    average : bool, default=True
        If True, return the mean over the users with at least one query item.
        If False, return one value per user, NaN for users without query items.

    Returns
    -------
    score : float or ndarray of shape (n_users,)
        The hit rate@k, 0 or 1 per user. The mean over the users with query items if
        ``average=True``, else one value per user (NaN without query items).

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.metrics import hit_rate_at_k
    >>> y_true = np.array([[0, 0, 1], [1, 0, 0]])
    >>> hit_rate_at_k(y_true, np.array([[0, 2], [1, 2]]), average=False)
    array([1., 0.])
    """
    r = _rank(y_true, y_pred, k)
    return r.finish(_hit_rate(r), average)


def catalogue_coverage(y_pred, n_items, *, k=None):
    """Fraction of the catalogue recommended to at least one user.

    Parameters
    ----------
    y_pred : array-like of int of shape (n_users, n_recommended)
        Recommended item indices (the ``ids`` returned by ``recommend``); -1
        padding is ignored.
    n_items : int
        The catalogue size.
    k : int, default=None
        Only the first k columns count. None uses all of them.

    Returns
    -------
    coverage : float
        The number of distinct items recommended divided by ``n_items``.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.metrics import catalogue_coverage
    >>> catalogue_coverage(np.array([[0, 1], [1, -1]]), n_items=4)
    0.5
    """
    if isinstance(n_items, bool) or not isinstance(n_items, Integral):
        raise TypeError(f"n_items must be an integer >= 1, got {n_items!r}.")
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}.")
    ids = _check_y_pred(y_pred, n_items=n_items)
    ids = ids[:, : _check_cutoff(k, ids.shape[1])]
    return np.unique(ids[ids >= 0]).size / n_items


METRICS = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "map": map_at_k,
    "mrr": mrr,
    "hit_rate": hit_rate_at_k,
}
"""Per-user ranking metrics by name, each ``metric(y_true, y_pred, *, k, average)``."""

_FROM_RANKED = {
    "ndcg": _ndcg,
    "recall": _recall,
    "precision": _precision,
    "map": _average_precision,
    "mrr": _reciprocal_rank,
    "hit_rate": _hit_rate,
}


def _check_metric_names(metrics, *, allow_coverage=True):
    """Return metric names as a tuple, raising on unknown or duplicate names."""
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    available = list(METRICS) + (["coverage"] if allow_coverage else [])
    if not names:
        raise ValueError(f"metrics is empty; choose among {available}.")
    for name in names:
        if name not in available:
            raise ValueError(f"Unknown metric {name!r}; choose among {available}.")
    if len(set(names)) != len(names):
        raise ValueError(f"metrics lists a name twice: {list(names)}.")
    return names


def evaluate(y_true, y_pred, *, k=None, metrics=("ndcg", "recall", "precision", "map", "mrr")):
    """Compute several ranking metrics at once.

    The inputs are validated and the relevance of the recommendations gathered
    once, so this is cheaper than calling each metric in turn.

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_users, n_items)
        The query interactions; relevant items are the nonzero entries.
    y_pred : array-like of int of shape (n_users, n_recommended)
        Recommended item indices, best first; -1 is padding.
    k : int, default=None
        Cut-off: only the first k columns of ``y_pred`` count. None uses all.
    metrics : str or sequence of str, default=("ndcg", "recall", "precision", "map", "mrr")
        Names from :data:`METRICS`, or ``"coverage"`` for
        :func:`catalogue_coverage` over the columns of ``y_true``.

    Returns
    -------
    scores : dict
        Metric name to its mean over the users with at least one query item.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.metrics import evaluate
    >>> y_true = np.array([[0, 1, 0, 1], [1, 0, 0, 0]])
    >>> y_pred = np.array([[1, 2], [2, 0]])
    >>> evaluate(y_true, y_pred, metrics=("recall", "mrr", "coverage"))
    {'recall': 0.75, 'mrr': 0.75, 'coverage': 0.75}
    """
    names = _check_metric_names(metrics)
    r = _rank(y_true, y_pred, k)
    scores = {}
    for name in names:
        if name == "coverage":
            scores[name] = np.unique(r.ids[r.ids >= 0]).size / r.y_true.shape[1]
        else:
            scores[name] = r.finish(_FROM_RANKED[name](r), average=True)
    return scores
