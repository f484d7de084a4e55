"""The k-shot item protocol: new items revealed through a few of their users.

The twin of the few-shot user protocol. A share of the catalogue is held out
(*new items*); a recommender is fitted on every user x the remaining (*warm*)
items; each new item then reveals ``n`` of its users (its *support*: the earliest
by time when timestamps are given), is added to the model with
``add_items(support)``, and is evaluated on the users who touch it later (its
*query*):

- ``items`` (item -> user lists, the usual direction): every user with a query
  interaction gets a top-k list from their known interactions (warm items plus
  the support entries), over the whole catalogue (``full_*``) and over the new
  items only (``new_*``);
- ``users`` (item -> users): every new item gets the top-k users most likely to
  want it, among all users except its support (``users_*``).
"""

from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.utils import check_random_state

from ._core.validation import check_int, check_interactions
from .metrics import METRICS, ndcg_at_k, recall_at_k

__all__ = [
    "ItemKShotSplit",
    "evaluate_item_kshot",
    "item_kshot_curve",
    "item_kshot_split",
    "make_item_kshot_scorer",
]


@dataclass(frozen=True, eq=False)
class ItemKShotSplit:
    """One k-shot item split, made by :func:`item_kshot_split`.

    Attributes
    ----------
    warm_items : ndarray of int
        Columns of ``X`` the recommender is fitted on (in this order).
    new_items : ndarray of int
        Columns of ``X`` of the evaluated new items, in a random order (so that
        ties between new items are not broken by their original column order);
        the columns of ``support`` and ``query``.
    X_warm : scipy.sparse.csr_matrix of shape (n_users, n_warm_items)
        Every user's interactions with the warm items: what to fit on.
    support : scipy.sparse.csr_matrix of shape (n_users, n_new_items)
        The ``n_shots`` revealed users of each new item: what ``add_items`` gets.
    query : scipy.sparse.csr_matrix of shape (n_users, n_new_items)
        The later users of each new item: what to find.
    """

    warm_items: np.ndarray
    new_items: np.ndarray
    X_warm: sp.csr_matrix
    support: sp.csr_matrix
    query: sp.csr_matrix

    @property
    def known(self):
        """Each user's known interactions in the grown catalogue: warm items, then new."""
        return sp.hstack([self.X_warm, self.support], format="csr")


def item_kshot_split(X, n_shots, *, test_size=0.1, timestamps=None, min_query=1, random_state=None):
    """Hold out items and reveal ``n_shots`` of each held-out item's users.

    A random ``test_size`` share of the items is held out; those with at least
    ``n_shots + min_query`` users are the evaluated new items, the others are
    dropped (neither warm nor evaluated). The same ``random_state`` holds out the
    same items for every ``n_shots``, so a curve compares like with like.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        Interactions; zero means none.
    n_shots : int
        The number of revealed users per new item, >= 0.
    test_size : float, default=0.1
        The share of the items held out, in (0, 1).
    timestamps : {array-like, sparse matrix} of shape (n_users, n_items), default=None
        The time of each interaction; the revealed users are then each item's
        earliest. None reveals random users.
    min_query : int, default=1
        The least number of later users of an evaluated new item, >= 1.
    random_state : int, RandomState instance or None, default=None
        Seeds the held-out items, the revealed users and the order of the new items.

    Returns
    -------
    split : ItemKShotSplit
        The warm matrix, the support and the query.

    Raises
    ------
    ValueError
        When no held-out item has ``n_shots + min_query`` users.

    See Also
    --------
    item_kshot_curve : Fit, add the new items and measure, for several n_shots.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.model_selection import item_kshot_split
    >>> X = (np.random.RandomState(0).rand(40, 30) < 0.3).astype(float)
    >>> split = item_kshot_split(X, 2, test_size=0.2, random_state=0)
    >>> split.X_warm.shape, split.support.shape
    ((40, 24), (40, 6))
    >>> split.support.getnnz(axis=0).tolist()
    [2, 2, 2, 2, 2, 2]
    >>> bool(np.all(split.query.getnnz(axis=0) >= 1))
    True
    """
    X = check_interactions(X, name="X", dtype=np.float64)
    n_shots = check_int(n_shots, "n_shots", 0)
    min_query = check_int(min_query, "min_query", 1)
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be a share of the items in (0, 1), got {test_size!r}.")
    rng = check_random_state(random_state)
    n_items = X.shape[1]
    held = rng.permutation(n_items)[: max(1, int(round(test_size * n_items)))]
    warm = np.setdiff1d(np.arange(n_items), held)
    counts = X.getnnz(axis=0)
    new = held[counts[held] >= n_shots + min_query]
    if new.size == 0:
        raise ValueError(
            f"No held-out item has n_shots + min_query = {n_shots + min_query} users (the "
            f"most any has is {int(counts[held].max())}); lower n_shots or min_query, or "
            "raise test_size."
        )
    from .model_selection import support_query_split  # the public module imports this one

    # the items are the rows of the transposed problem: the user split, per item
    Xt = X[:, new].T.tocsr()
    Tt = None
    if timestamps is not None:
        T = timestamps if sp.issparse(timestamps) else sp.csr_matrix(np.asarray(timestamps))
        Tt = sp.csc_matrix(T)[:, new].T.tocsr()
    St, Qt = support_query_split(Xt, n_shots, timestamps=Tt, random_state=rng)
    return ItemKShotSplit(
        warm_items=warm,
        new_items=new,
        X_warm=X[:, warm].tocsr(),
        support=sp.csr_matrix(St.T),
        query=sp.csr_matrix(Qt.T),
    )


def _top_users(score_block, n_users, n_new, support, k, batch):
    """Top-k users of each new item (column) from user-batched scores, support masked."""
    best_ids = np.empty((0, n_new), dtype=np.int64)
    best = np.empty((0, n_new), dtype=np.float64)
    support = support.tocsr()
    for start in range(0, n_users, batch):
        stop = min(start + batch, n_users)
        block = np.asarray(score_block(start, stop), dtype=np.float64)
        sub = support[start:stop]
        block[sub.nonzero()] = -np.inf
        ids = np.broadcast_to(np.arange(start, stop)[:, None], block.shape)
        best = np.vstack([best, block])
        best_ids = np.vstack([best_ids, ids])
        if best.shape[0] > k:
            keep = np.argpartition(-best, k - 1, axis=0)[:k]
            best = np.take_along_axis(best, keep, axis=0)
            best_ids = np.take_along_axis(best_ids, keep, axis=0)
    order = np.argsort(-best, axis=0, kind="stable")
    ids = np.take_along_axis(best_ids, order, axis=0).T
    return np.where(np.isfinite(np.take_along_axis(best, order, axis=0).T), ids, -1)


def evaluate_item_kshot(estimator, split, *, k=20, directions=("items", "users"), batch=2048):
    """Metrics of a fitted recommender whose new items were added from ``split.support``.

    Parameters
    ----------
    estimator : fitted recommender
        Fitted on ``split.X_warm`` and grown by ``add_items(split.support)``: it
        has ``recommend`` and ``decision_function`` over the grown catalogue.
    split : ItemKShotSplit
        The split the estimator was built from.
    k : int, default=20
        The length of the lists and the metrics' cut-off.
    directions : sequence of {"items", "users"}, default=("items", "users")
        ``"items"``: top-k items per user (``full_*`` and ``new_*`` metrics);
        ``"users"``: top-k users per new item (``users_*``).
    batch : int, default=2048
        Users scored at once in the ``"users"`` direction.

    Returns
    -------
    scores : dict
        ``full_recall``, ``full_ndcg``, ``new_recall``, ``new_ndcg`` (over the
        users with a query), ``users_recall``, ``users_ndcg`` (over the new items).

    Examples
    --------
    >>> from skfewrec import ALSFactors, ClosedFormFoldIn
    >>> from skfewrec.datasets import make_interactions
    >>> from skfewrec.model_selection import evaluate_item_kshot, item_kshot_split
    >>> X = make_interactions(n_users=200, n_items=60, random_state=0).X
    >>> split = item_kshot_split(X, 3, test_size=0.25, random_state=0)
    >>> model = ClosedFormFoldIn(ALSFactors(n_components=8, random_state=0))
    >>> model = model.fit(split.X_warm).add_items(split.support)
    >>> sorted(evaluate_item_kshot(model, split, k=5))
    ['full_ndcg', 'full_recall', 'new_ndcg', 'new_recall', 'users_ndcg', 'users_recall']
    """
    n_warm = split.X_warm.shape[1]
    n_new = split.support.shape[1]
    new_cols = n_warm + np.arange(n_new)
    known = split.known
    out = {}
    if "items" in directions:
        users = np.flatnonzero(split.query.getnnz(axis=1))
        Q = split.query[users]
        Q_full = sp.hstack([sp.csr_matrix((users.size, n_warm)), Q], format="csr")
        ids_full, _ = estimator.recommend(known[users], k=k)
        ids_new, _ = estimator.recommend(known[users], k=min(k, n_new), items=new_cols)
        out["full_recall"] = recall_at_k(Q_full, ids_full, k=k)
        out["full_ndcg"] = ndcg_at_k(Q_full, ids_full, k=k)
        out["new_recall"] = recall_at_k(Q_full, ids_new)
        out["new_ndcg"] = ndcg_at_k(Q_full, ids_new)
    if "users" in directions:
        n_users = known.shape[0]
        if callable(getattr(estimator, "_scorer", None)):  # skfewrec: score the new columns only
            score_block = estimator._scorer(estimator._validate_users(known), new_cols)
        else:

            def score_block(start, stop):
                return estimator.decision_function(known[start:stop])[:, new_cols]

        ids = _top_users(score_block, n_users, n_new, split.support, min(k, n_users), batch)
        Qt = split.query.T.tocsr()
        out["users_recall"] = recall_at_k(Qt, ids)
        out["users_ndcg"] = ndcg_at_k(Qt, ids)
    return out


def item_kshot_curve(
    estimator,
    X,
    *,
    n_shots=(1, 3, 5, 10, 20),
    k=20,
    test_size=0.1,
    timestamps=None,
    min_query=1,
    directions=("items", "users"),
    random_state=0,
):
    """Measure a recommender's new items with 1, 3, 5, ... revealed users each.

    For each n in ``n_shots``: split X with :func:`item_kshot_split`, fit a clone
    of ``estimator`` on the warm items, add the new items from their support
    (``add_items``) and measure both directions (:func:`evaluate_item_kshot`).

    Parameters
    ----------
    estimator : estimator
        An unfitted skfewrec recommender with ``add_items`` (cloned per n).
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        All interactions.
    n_shots : int or sequence of int, default=(1, 3, 5, 10, 20)
        Revealed users per new item.
    k : int, default=20
        The length of the lists and the metrics' cut-off.
    test_size : float, default=0.1
        Share of the items held out.
    timestamps : {array-like, sparse matrix}, default=None
        Times of the interactions; the revealed users are the earliest.
    min_query : int, default=1
        Least number of later users of an evaluated new item.
    directions : sequence of {"items", "users"}, default=("items", "users")
        What to measure (see :func:`evaluate_item_kshot`).
    random_state : int, default=0
        Seeds the splits: the same items are held out for every n.

    Returns
    -------
    curve : pandas.DataFrame
        One row per n_shots, one column per metric, and ``n_new_items``.

    See Also
    --------
    make_item_kshot_scorer : One point of the curve as a ``scoring=`` callable.

    Examples
    --------
    >>> from skfewrec import ALSFactors, ClosedFormFoldIn
    >>> from skfewrec.datasets import make_interactions
    >>> from skfewrec.model_selection import item_kshot_curve
    >>> X = make_interactions(n_users=300, n_items=80, random_state=0).X
    >>> model = ClosedFormFoldIn(ALSFactors(n_components=8, random_state=0))
    >>> curve = item_kshot_curve(model, X, n_shots=(1, 3), k=5, test_size=0.2)
    >>> curve.index.tolist()
    [1, 3]
    >>> bool((curve["new_recall"] > 0).all())
    True
    """
    shots = (n_shots,) if isinstance(n_shots, Integral) else tuple(n_shots)
    if not shots:
        raise ValueError("n_shots is empty; pass the support sizes to measure, e.g. (1, 3, 5).")
    k = check_int(k, "k", 1)
    rows = []
    for n in shots:
        split = item_kshot_split(
            X,
            n,
            test_size=test_size,
            timestamps=timestamps,
            min_query=min_query,
            random_state=random_state,
        )
        model = clone(estimator).fit(split.X_warm).add_items(split.support)
        row = evaluate_item_kshot(model, split, k=k, directions=directions)
        row["n_new_items"] = int(split.new_items.size)
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index(shots, name="n_shots"))


class _ItemKShotScorer:
    def __init__(self, metric, direction, k, n_shots, test_size, min_query, random_state):
        self.metric = metric
        self.direction = direction
        self.k = k
        self.n_shots = n_shots
        self.test_size = test_size
        self.min_query = min_query
        self.random_state = random_state

    def __call__(self, estimator, X, y=None):
        split = item_kshot_split(
            X,
            self.n_shots,
            test_size=self.test_size,
            min_query=self.min_query,
            random_state=self.random_state,
        )
        model = clone(estimator).fit(split.X_warm).add_items(split.support)
        directions = ("users",) if self.direction == "users" else ("items",)
        scores = evaluate_item_kshot(model, split, k=self.k, directions=directions)
        return scores[f"{self.direction}_{self.metric}"]

    def __repr__(self):
        return (
            f"make_item_kshot_scorer(metric={self.metric!r}, direction={self.direction!r}, "
            f"k={self.k}, n_shots={self.n_shots}, test_size={self.test_size}, "
            f"min_query={self.min_query}, random_state={self.random_state!r})"
        )


def make_item_kshot_scorer(
    metric="recall",
    *,
    direction="new",
    k=20,
    n_shots=5,
    test_size=0.1,
    min_query=1,
    random_state=0,
):
    """Make a ``scoring=`` callable that measures a recommender's new items.

    ``scorer(estimator, X, y=None)`` holds out items of ``X``
    (:func:`item_kshot_split`), fits a *clone* of the estimator's parameters on
    the warm items, adds the new items from ``n_shots`` users each and returns
    the metric. Because the items are held out inside the scorer, the fold's
    rows are its users: in ``GridSearchCV`` use a ``cv`` whose test folds hold
    enough users (e.g. ``KFold(2)``), or ``cv=[(rows, rows)]`` to score on all.

    Parameters
    ----------
    metric : {"recall", "ndcg"}, default="recall"
        The metric at k.
    direction : {"new", "full", "users"}, default="new"
        ``"new"``: rank the new items for the users who touch them later;
        ``"full"``: the same over the whole catalogue; ``"users"``: rank the
        users for each new item.
    k : int, default=20
        The cut-off.
    n_shots : int, default=5
        Revealed users per new item.
    test_size : float, default=0.1
        Share of the items held out.
    min_query : int, default=1
        Least number of later users of an evaluated new item.
    random_state : int, default=0
        Seeds the split, so every candidate of a grid search sees the same one.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y=None) -> float``; higher is better.

    Examples
    --------
    >>> from skfewrec.model_selection import make_item_kshot_scorer
    >>> make_item_kshot_scorer("ndcg", n_shots=3)
    make_item_kshot_scorer(metric='ndcg', direction='new', k=20, n_shots=3, test_size=0.1, \
min_query=1, random_state=0)
    """
    if metric not in ("recall", "ndcg") or metric not in METRICS:
        raise ValueError(f"metric must be 'recall' or 'ndcg', got {metric!r}.")
    if direction not in ("new", "full", "users"):
        raise ValueError(f"direction must be 'new', 'full' or 'users', got {direction!r}.")
    return _ItemKShotScorer(
        metric,
        direction,
        check_int(k, "k", 1),
        check_int(n_shots, "n_shots", 0),
        test_size,
        check_int(min_query, "min_query", 1),
        random_state,
    )
