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

from functools import partial
from numbers import Integral

import numpy as np

from ._core.csr import lookup
from ._core.validation import check_interactions, check_k

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
    return check_k(
        k,
        n_columns,
        or_none=True,
        too_large=(
            "k={k} is larger than the {limit} recommendations per user in y_pred; "
            "recommend at least k items, or use k <= {limit}."
        ),
    )


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


def _evaluate(per_user, y_true, y_pred, k, average):
    """One metric: ``per_user`` of the validated top k, then NaNs and the average."""
    r = _rank(y_true, y_pred, k)
    return r.finish(per_user(r), average)


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
    return _evaluate(partial(_ndcg, graded=graded), y_true, y_pred, k, average)


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
    return _evaluate(_recall, y_true, y_pred, k, average)


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
    return _evaluate(_precision, y_true, y_pred, k, average)


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
    return _evaluate(_average_precision, y_true, y_pred, k, average)


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
    return _evaluate(_reciprocal_rank, y_true, y_pred, k, average)


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
    return _evaluate(_hit_rate, y_true, y_pred, k, average)


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


# --- The long tail: who gets exposure (issue 13) ------------------------------------


def _check_popularity(popularity, n_items=None):
    pop = np.asarray(popularity, dtype=np.float64)
    if pop.ndim != 1 or (n_items is not None and pop.size != n_items):
        raise ValueError(
            f"popularity must be a 1-d array with one count per item, got shape {pop.shape}"
            + (f" for {n_items} items." if n_items is not None else ".")
            + " Compute it with item_popularity(X_train)."
        )
    if not np.all(np.isfinite(pop)) or np.any(pop < 0):
        raise ValueError("popularity must hold finite counts >= 0 (users per item).")
    return pop


def _slots(y_pred, n_items, k):
    ids = _check_y_pred(y_pred, n_items=n_items)
    ids = ids[:, : _check_cutoff(k, ids.shape[1])]
    return ids[ids >= 0]


def item_popularity(X):
    """Number of users who interacted with each item: the popularity the tail metrics use.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        Training interactions; zero means none.

    Returns
    -------
    popularity : ndarray of shape (n_items,), int64

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.metrics import item_popularity
    >>> item_popularity(np.array([[1, 0, 3], [2, 0, 0]])).tolist()
    [2, 0, 1]
    """
    return check_interactions(X).getnnz(axis=0).astype(np.int64)


def tail_items(popularity, *, head_share=0.8):
    """Mask of the tail: the items outside the head that holds ``head_share`` of interactions.

    The head is the smallest set of most popular items whose interactions reach
    ``head_share`` of all interactions (ties broken by item index).

    Parameters
    ----------
    popularity : array-like of shape (n_items,)
        Interactions (users) per item, e.g. :func:`item_popularity` of the training data.
    head_share : float, default=0.8
        Share of the interactions held by the head, in (0, 1].

    Returns
    -------
    tail : ndarray of shape (n_items,), bool

    Examples
    --------
    >>> from skfewrec.metrics import tail_items
    >>> tail_items([50, 30, 10, 5, 5], head_share=0.8).tolist()
    [False, False, True, True, True]
    """
    pop = _check_popularity(popularity)
    if not 0 < head_share <= 1:
        raise ValueError(f"head_share must be in (0, 1], got {head_share!r}.")
    order = np.argsort(-pop, kind="stable")
    cumulative = np.cumsum(pop[order])
    n_head = int(np.searchsorted(cumulative, head_share * cumulative[-1] - 1e-9) + 1)
    tail = np.ones(pop.size, dtype=bool)
    tail[order[:n_head]] = False
    return tail


def gini_exposure(y_pred, n_items, *, k=None):
    """Gini coefficient of how often each catalogue item is recommended.

    0 when every item fills as many slots as every other; close to 1 when a few
    items take every slot. Items never recommended count with exposure 0.

    Parameters
    ----------
    y_pred : array-like of int of shape (n_users, n_recommended)
        Recommended item indices; -1 padding is ignored.
    n_items : int
        The catalogue size.
    k : int, default=None
        Only the first k columns count. None uses all.

    Returns
    -------
    gini : float

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.metrics import gini_exposure
    >>> gini_exposure(np.array([[0, 1], [1, 0]]), n_items=2)
    0.0
    >>> gini_exposure(np.array([[0], [0]]), n_items=2)
    0.5
    """
    slots = _slots(y_pred, n_items, k)
    exposure = np.sort(np.bincount(slots, minlength=n_items).astype(np.float64))
    if exposure.sum() == 0:
        raise ValueError("y_pred has no recommended item; nothing to measure.")
    rank = np.arange(1, n_items + 1)
    return float(np.sum((2 * rank - n_items - 1) * exposure) / (n_items * exposure.sum()))


def tail_share(y_pred, popularity, *, head_share=0.8, k=None):
    """Share of the recommendation slots given to tail items (see :func:`tail_items`).

    Parameters
    ----------
    y_pred : array-like of int of shape (n_users, n_recommended)
        Recommended item indices; -1 padding is ignored.
    popularity : array-like of shape (n_items,)
        Interactions per item in the training data (:func:`item_popularity`).
    head_share : float, default=0.8
        Share of the interactions the head holds.
    k : int, default=None
        Only the first k columns count. None uses all.

    Returns
    -------
    share : float

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.metrics import tail_share
    >>> tail_share(np.array([[0, 2], [1, 3]]), [50, 30, 10, 10], head_share=0.8)
    0.5
    """
    tail = tail_items(popularity, head_share=head_share)
    slots = _slots(y_pred, tail.size, k)
    if slots.size == 0:
        raise ValueError("y_pred has no recommended item; nothing to measure.")
    return float(tail[slots].mean())


def novelty(y_pred, popularity, n_users, *, k=None):
    """Mean self-information of the recommended items, in bits.

    An item known to a share ``p`` of the users carries ``-log2(p)`` bits, with
    ``p = (popularity + 1) / (n_users + 1)`` (so items nobody had are finite).

    Parameters
    ----------
    y_pred : array-like of int of shape (n_users, n_recommended)
        Recommended item indices; -1 padding is ignored.
    popularity : array-like of shape (n_items,)
        Users per item in the training data (:func:`item_popularity`).
    n_users : int
        The number of training users the popularity was counted on.
    k : int, default=None
        Only the first k columns count. None uses all.

    Returns
    -------
    novelty : float

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.metrics import novelty
    >>> novelty(np.array([[0], [1]]), [3, 1], n_users=3)
    0.5
    """
    pop = _check_popularity(popularity)
    if isinstance(n_users, bool) or not isinstance(n_users, Integral) or n_users < 1:
        raise ValueError(f"n_users must be an integer >= 1, got {n_users!r}.")
    if pop.max(initial=0) > n_users:
        raise ValueError(
            f"popularity has an item with {pop.max():.0f} users but n_users={n_users}; "
            "pass the number of users the popularity was counted on."
        )
    slots = _slots(y_pred, pop.size, k)
    if slots.size == 0:
        raise ValueError("y_pred has no recommended item; nothing to measure.")
    return float(np.mean(-np.log2((pop[slots] + 1) / (n_users + 1))))


def popularity_buckets(popularity, *, n_buckets=3):
    """Bucket of each item: equal shares of the interactions, most popular first.

    Bucket 0 holds the most popular items that together have about
    ``1 / n_buckets`` of the interactions, the last bucket the long tail.

    Parameters
    ----------
    popularity : array-like of shape (n_items,)
        Interactions per item (:func:`item_popularity`).
    n_buckets : int, default=3
        Number of buckets, >= 1.

    Returns
    -------
    buckets : ndarray of shape (n_items,), int64

    Examples
    --------
    >>> from skfewrec.metrics import popularity_buckets
    >>> popularity_buckets([40, 30, 20, 10], n_buckets=2).tolist()
    [0, 0, 1, 1]
    """
    pop = _check_popularity(popularity)
    if isinstance(n_buckets, bool) or not isinstance(n_buckets, Integral) or n_buckets < 1:
        raise ValueError(f"n_buckets must be an integer >= 1, got {n_buckets!r}.")
    order = np.argsort(-pop, kind="stable")
    total = pop.sum()
    before = np.cumsum(pop[order]) - pop[order]  # interactions of the more popular items
    share = before / total if total > 0 else np.arange(pop.size) / pop.size
    buckets = np.empty(pop.size, dtype=np.int64)
    buckets[order] = np.minimum((share * n_buckets + 1e-9).astype(np.int64), n_buckets - 1)
    return buckets


def ndcg_by_popularity(y_true, y_pred, popularity, *, n_buckets=3, k=None):
    """NDCG@k per popularity bucket: how well each part of the catalogue is found.

    For bucket b, the relevant items are the user's query items in bucket b
    (the ranking is unchanged); users without any are left out of that bucket.

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_users, n_items)
        The query interactions.
    y_pred : array-like of int of shape (n_users, n_recommended)
        Recommended item indices, best first; -1 is padding.
    popularity : array-like of shape (n_items,)
        Interactions per item in the training data (:func:`item_popularity`).
    n_buckets : int, default=3
        Buckets of :func:`popularity_buckets`, bucket 0 the head.
    k : int, default=None
        Cut-off. None uses all columns of ``y_pred``.

    Returns
    -------
    ndcg : ndarray of shape (n_buckets,)
        NaN for a bucket no user has a query item in.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.metrics import ndcg_by_popularity
    >>> y_true = np.array([[1, 0, 0, 1], [0, 0, 1, 0]])
    >>> ndcg_by_popularity(y_true, np.array([[0, 1], [2, 3]]), [40, 30, 20, 10], n_buckets=2)
    array([1. , 0.5])
    """
    Y = check_interactions(y_true, dtype=np.float64)
    buckets = popularity_buckets(_check_popularity(popularity, Y.shape[1]), n_buckets=n_buckets)
    out = np.full(n_buckets, np.nan)
    for b in range(n_buckets):  # a handful of buckets, each vectorised over users
        Yb = Y.multiply((buckets == b)[None, :]).tocsr()
        Yb.eliminate_zeros()
        if Yb.nnz:
            out[b] = ndcg_at_k(Yb, y_pred, k=k)
    return out


__all__ += [
    "gini_exposure",
    "item_popularity",
    "ndcg_by_popularity",
    "novelty",
    "popularity_buckets",
    "tail_items",
    "tail_share",
]
