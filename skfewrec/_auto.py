"""Few-shot knobs chosen from the warm data at fit time: what ``"auto"`` means.

The right ALS regularization moves by orders of magnitude with the size and
density of the data, and the right prior strength with the factors it sits on; a
setting that is good for warm users (whole rows) is not the one that is good for
a user with three clicks. So "auto" measures instead of guessing: it holds out a
slice of the *warm* users (never the users being recommended to), trains on the
rest, and scores simulated few-shot episodes of the held-out slice (n random
shots, the rest of the row as query, NDCG@k averaged over n = 1, 3, 5, 10, 20).

- :func:`choose_prior` scores a fitted adapter at several prior strengths and
  support shrinkages (cheap: the factors are fixed, only the shared solve, or
  only the user vectors, change).
- :func:`choose_als_settings` walks a log grid of (regularization,
  confidence_scale) by coordinate moves of half a decade, each point scored with
  its best prior, until the centre beats its four neighbours.

The support shrinkage (:func:`shrink_to_support`) pulls a user's vector toward the
mean vector of the warm users who share their shots, with a weight that fades as
shots accumulate: a 1-shot user gets "what the users who took this item have in
common", which beats both popularity and a plain fold-in on MovieLens.

Both return the chosen value(s) and a report (every point scored, the episode
sizes, the time), which the estimators expose after fit. On data too small to
hold out a useful slice they return the fallback values and say so in the report.
"""

import time
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_random_state

from ._core.validation import check_interactions

#: what a search falls back to on data too small to measure on (and where it starts)
FALLBACK = {
    "regularization": 30.0,
    "confidence_scale": 30.0,
    "prior_strength": 1.0,
    "shrinkage": 3.0,
    "knn_weight": 0.0,
}

#: the prior strengths tried by default (1 weighs the prior as one warm user's spread;
#: 0 is no prior: on sparse catalogues such as Gowalla any prior hurts)
STRENGTHS = (0.0, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)

#: the support shrinkages tried by default (``kappa`` of :func:`shrink_to_support`)
SHRINKAGES = (0.0, 1.0, 3.0, 10.0, 30.0)

#: the prior strengths each point of the ALS search is scored with, with the middle
#: shrinkage (the full grids above are tried at the chosen point only)
SEARCH_STRENGTHS = (0.0, 0.1, 1.0)

#: the episode sizes of the points of the ALS search (the chosen point: all of N_SHOTS)
SEARCH_SHOTS = (1, 5, 20)

#: the item-kNN weights tried by default (``beta`` of the hybrid score; 0 is the
#: pure factor model, which keeps the fast dot-product path)
KNN_WEIGHTS = (0.0, 0.1, 0.3, 0.5, 1.0, 2.0, 4.0)

#: the conditional-probability item-kNN of the hybrid: neighbours per item and the
#: exponent of the neighbour's popularity (:func:`skfewrec._core.knn.conditional_neighbors`)
KNN_NEIGHBORS = 100
KNN_POP_DISCOUNT = 0.0

#: interactions below which every point of the ALS search is fitted from scratch (cheap
#: there; a warm start leaves a neighbour a little less converged than its centre)
WARM_START_NNZ = 100_000

#: the shot counts of the simulated episodes (the protocol's)
N_SHOTS = (1, 3, 5, 10, 20)

#: fewest held-out users with a 1-shot episode for a search to be worth running
MIN_EPISODE_USERS = 30


def holdout_users(X, *, fraction=0.2, max_users=1000, random_state=None):
    """Split warm users (rows) into a part to fit on and a held-out part to score on.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        The warm users' interactions.
    fraction : float, default=0.2
        Share of the users held out.
    max_users : int, default=1000
        At most this many users are held out (the episodes' cost grows with them).
    random_state : int, RandomState instance or None, default=None
        Seeds the draw.

    Returns
    -------
    X_fit : scipy.sparse.csr_matrix of shape (n_fit, n_items)
    X_val : scipy.sparse.csr_matrix of shape (n_val, n_items)

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._auto import holdout_users
    >>> X_fit, X_val = holdout_users(np.eye(10), fraction=0.3, random_state=0)
    >>> X_fit.shape, X_val.shape
    ((7, 10), (3, 10))
    """
    X = check_interactions(X)
    rng = check_random_state(random_state)
    n_val = min(int(round(fraction * X.shape[0])), max_users)
    order = rng.permutation(X.shape[0])
    val, fit = np.sort(order[:n_val]), np.sort(order[n_val:])
    return X[fit], X[val]


def episode_scores(recommender, X_val, *, n_shots=N_SHOTS, k=20, min_query=3, random_state=0):
    """Mean NDCG@k of a fitted recommender on simulated n-shot episodes of held-out users.

    For each n, the users of ``X_val`` with at least ``n + min_query`` interactions
    get n random shots; the rest of their row is the query.

    Parameters
    ----------
    recommender : fitted recommender
        Anything with ``recommend(X, k, filter_seen=True)``.
    X_val : sparse matrix of shape (n_users, n_items)
        Held-out warm users, not used to fit ``recommender``.
    n_shots : sequence of int, default=(1, 3, 5, 10, 20)
    k : int, default=20
    min_query : int, default=3
    random_state : int, default=0
        Seeds the shots: the same episodes for every candidate setting.

    Returns
    -------
    scores : ndarray of shape (len(n_shots),)
        NaN where no user has enough interactions for that n.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec import MostPopular
    >>> from skfewrec._auto import episode_scores
    >>> X = (np.random.default_rng(0).random((60, 30)) < 0.3).astype(float)
    >>> episode_scores(MostPopular().fit(X[:40]), X[40:], n_shots=(1, 50)).round(2)
    array([0.54,  nan])
    """
    from .metrics import ndcg_at_k
    from .model_selection import support_query_split

    X_val = check_interactions(X_val, name="X_val")
    counts = np.diff(X_val.indptr)
    scores = np.full(len(n_shots), np.nan)
    for j, n in enumerate(n_shots):
        keep = np.flatnonzero(counts >= n + min_query)
        if keep.size == 0:
            continue
        S, Q = support_query_split(X_val[keep], n, random_state=random_state)
        ids, _ = recommender.recommend(S, k=k, filter_seen=True)
        scores[j] = ndcg_at_k(Q, ids, k=k)
    return scores


def item_conditional_means(X, U):
    """For each item, the mean vector of the warm users who interacted with it.

    ``m_i = mean of U[u] over users u with X[u, i] > 0``: the "users who took this
    also took" direction of the item in the factor space, which a user with one
    shot on ``i`` is most likely to share. Zero for an item without users.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        The warm users' interactions.
    U : ndarray of shape (n_users, n_components)
        Their vectors (fold-ins of their rows).

    Returns
    -------
    means : ndarray of shape (n_items, n_components), float32

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._auto import item_conditional_means
    >>> item_conditional_means(np.array([[1, 0], [1, 1]]), np.array([[2.0], [4.0]]))
    array([[3.],
           [4.]], dtype=float32)
    """
    X = check_interactions(X)
    B = X.copy()
    B.data[:] = 1.0
    counts = np.asarray(B.sum(axis=0)).ravel()
    sums = np.asarray(B.T @ np.asarray(U, dtype=np.float64))
    return (sums / np.maximum(counts, 1.0)[:, None]).astype(np.float32)


def shrink_to_support(U, X, item_means, shrinkage):
    """Pull each user's vector toward the item-conditional means of their shots.

    ``u <- (1 - w) u + w mean_{i in S} m_i`` with ``w = shrinkage / (shrinkage + n)``
    and ``n`` the user's number of shots: a user with one shot mostly gets what the
    warm users who share that shot have in common; with many shots, their own
    fold-in. Items whose mean is zero (unknown to the warm users) are left out of
    the average; a user without known shots keeps ``u``.

    Parameters
    ----------
    U : ndarray of shape (n_users, n_components)
        The users' fold-in vectors.
    X : sparse matrix of shape (n_users, n_items)
        Their shots.
    item_means : ndarray of shape (n_items, n_components)
        From :func:`item_conditional_means`.
    shrinkage : float
        ``kappa`` above, >= 0 (0 leaves ``U`` unchanged).

    Returns
    -------
    U : ndarray of shape (n_users, n_components), float32

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._auto import shrink_to_support
    >>> means = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> shrink_to_support(np.zeros((1, 2)), np.array([[1, 0]]), means, 1.0)
    array([[0.5, 0. ]], dtype=float32)
    """
    U = np.asarray(U, dtype=np.float32)
    if shrinkage == 0:
        return U
    X = check_interactions(X)
    known = np.any(item_means != 0, axis=1).astype(np.float32)
    B = X.copy()
    B.data = known[X.indices]
    n = np.asarray(B.sum(axis=1)).ravel()
    pulled = np.asarray(B @ item_means) / np.maximum(n, 1.0)[:, None]
    w = np.where(n > 0, shrinkage / (shrinkage + n), 0.0)[:, None]
    return ((1.0 - w) * U + w * pulled).astype(np.float32)


def _too_few(X_val):
    return (
        f"only {X_val.shape[0]} warm users held out, fewer than {MIN_EPISODE_USERS} with >= 2 "
        "interactions: too few to measure on; using the fallback settings"
    )


def _enough_episodes(X_val):
    return int((np.diff(X_val.indptr) >= 2).sum()) >= MIN_EPISODE_USERS


class _ShrunkAdapter:
    """A fitted adapter whose user vectors are shrunk toward their shots' item means."""

    def __init__(self, adapter, item_means, shrinkage):
        self.adapter, self.item_means, self.shrinkage = adapter, item_means, shrinkage

    def recommend(self, X, k, filter_seen=True):
        from ._core.topk import factor_topk

        X = check_interactions(X)
        U = shrink_to_support(self.adapter.transform(X), X, self.item_means, self.shrinkage)
        seen = X if filter_seen else None
        return factor_topk(U, self.adapter.item_factors_, k, seen=seen)


def choose_prior(
    adapter,
    X_fit,
    X_val,
    *,
    strengths=STRENGTHS,
    shrinkages=SHRINKAGES,
    knn_weights=(0.0,),
    similarity=None,
    n_shots=N_SHOTS,
    k=20,
    min_query=3,
    n_jobs=1,
    random_state=0,
):
    """The prior strength, support shrinkage and item-kNN weight whose episodes score best.

    Parameters
    ----------
    adapter : estimator
        An adapter with a ``prior_strength`` parameter (e.g.
        ``ClosedFormFoldIn(FrozenEstimator(factors), prior="gaussian")``) whose
        factors were fitted on ``X_fit`` only. It is fitted here once; each
        strength then only rebuilds its shared solve, and each shrinkage only
        moves the user vectors (:func:`shrink_to_support`).
    X_fit : sparse matrix of shape (n_fit, n_items)
        The users the factors were fitted on (the prior is learned from them).
    X_val : sparse matrix of shape (n_val, n_items)
        Held-out warm users, scored on simulated episodes.
    strengths : sequence of float, default=(0, 0.03, 0.1, 0.3, 1, 3, 10)
    shrinkages : sequence of float, default=(0, 1, 3, 10, 30)
        Use ``(0,)`` to choose the strength alone.
    knn_weights : sequence of float, default=(0,)
        Weights of the item-kNN score blended into the factor score
        (:func:`skfewrec._core.knn.blend_scores`), tried at the best strength
        and shrinkage; ``(0,)``: none.
    similarity : sparse matrix of shape (n_items, n_items), default=None
        The item neighbours of ``X_fit``
        (:func:`skfewrec._core.knn.conditional_neighbors`); needed when
        ``knn_weights`` holds more than 0.
    n_shots : sequence of int, default=(1, 3, 5, 10, 20)
    k : int, default=20
        The cut-off of NDCG.
    min_query : int, default=3
        The least number of held-back interactions of a scored user.
    n_jobs : int, default=1
        Threads of the top-k.
    random_state : int, default=0
        Seeds the episodes (see :func:`episode_scores`).

    Returns
    -------
    chosen : dict
        ``prior_strength``, ``shrinkage`` and ``knn_weight`` with the best mean
        NDCG over ``n_shots``.
    report : dict
        ``{"strengths", "shrinkages", "scores", "knn_weights", "knn_scores",
        "n_shots"}``; ``knn_scores`` of shape (knn_weights, n_shots) at the
        best strength and shrinkage, ``scores`` of shape
        (strengths, shrinkages, n_shots) as nested lists (NaN: not scored; the
        search scores every strength with the middle shrinkage, then every
        shrinkage at the best strength).

    Examples
    --------
    >>> from sklearn.frozen import FrozenEstimator
    >>> from skfewrec import ALSFactors, ClosedFormFoldIn
    >>> from skfewrec._auto import choose_prior, holdout_users
    >>> from skfewrec.datasets import make_interactions
    >>> X = make_interactions(n_users=400, n_items=120, random_state=0).X
    >>> X_fit, X_val = holdout_users(X, random_state=0)
    >>> als = FrozenEstimator(ALSFactors(8, random_state=0).fit(X_fit))
    >>> chosen, report = choose_prior(
    ...     ClosedFormFoldIn(als, prior="gaussian"), X_fit, X_val, n_shots=(1, 5))
    >>> chosen["prior_strength"] in report["strengths"]
    True
    """
    from ._core.threads import blas_limits
    from ._core.topk import factor_topk
    from .metrics import ndcg_at_k
    from .model_selection import support_query_split

    if not _enough_episodes(sp.csr_matrix(X_val)):
        report = {"fallback": _too_few(X_val)}
        return {k: FALLBACK[k] for k in ("prior_strength", "shrinkage", "knn_weight")}, report
    if any(knn_weights) and similarity is None:
        raise ValueError("choose_prior needs the item similarity to try knn_weights above 0.")
    # explicit values while searching: an "auto" adapter would search again inside
    params = adapter.get_params(deep=False)
    explicit = {"prior_strength": float(strengths[0]), "shrinkage": 0.0}
    est = adapter.set_params(**{k: v for k, v in explicit.items() if k in params}).fit(X_fit)
    means = getattr(est, "item_means_", None)
    if means is None:  # an adapter that predates the support shrinkage
        means = item_conditional_means(X_fit, est.factors_.user_factors_)
    X_val = check_interactions(X_val, name="X_val")
    counts = np.diff(X_val.indptr)
    episodes = {}
    for j, n in enumerate(n_shots):
        keep = np.flatnonzero(counts >= n + min_query)
        if keep.size:
            episodes[j] = support_query_split(X_val[keep], n, random_state=random_state)
    scores = np.full((len(strengths), len(shrinkages), len(n_shots)), np.nan)
    vectors = {}

    def score(a, b):
        if a not in vectors:
            est.set_params(prior_strength=strengths[a])
            if hasattr(est, "prior_strength_"):  # the fitted value the solve reads
                est.prior_strength_ = float(strengths[a])
            est._rebuild()
            vectors[a] = {j: est.transform(S) for j, (S, _) in episodes.items()}
        for j, (S, Q) in episodes.items():
            V = shrink_to_support(vectors[a][j], S, means, shrinkages[b])
            ids, _ = factor_topk(V, est.item_factors_, k, seen=S, n_jobs=n_jobs)
            scores[a, b, j] = ndcg_at_k(Q, ids, k=k)

    # two stages, as the full grid costs a top-k per cell and n: every strength
    # at the middle shrinkage, then every shrinkage at the best strength (one BLAS
    # thread: a pool on top of the top-k's threads makes the small products crawl)
    middle = len(shrinkages) // 2
    with blas_limits(1):
        for a in range(len(strengths)):
            score(a, middle)
        best_strength = int(np.nanargmax(np.nanmax(_mean_over_shots(scores), axis=1)))
        for b in range(len(shrinkages)):
            if np.isnan(scores[best_strength, b]).all():
                score(best_strength, b)
    mean = _mean_over_shots(scores)
    a, b = np.unravel_index(int(np.nanargmax(mean)), mean.shape)
    # the item-kNN blend at the best strength and shrinkage (weight 0: the cell above)
    knn = np.full((len(knn_weights), len(n_shots)), np.nan)
    for c, weight in enumerate(knn_weights):
        if weight == 0:
            knn[c] = scores[a, b]
            continue
        for j, (S, Q) in episodes.items():
            V = shrink_to_support(vectors[a][j], S, means, shrinkages[b])
            ids, _ = blended_topk(V, est.item_factors_, S, similarity, weight, k, n_jobs)
            knn[c, j] = ndcg_at_k(Q, ids, k=k)
    best_knn = int(np.nanargmax(_mean_over_shots(knn)))
    report = {
        "strengths": [float(v) for v in strengths],
        "shrinkages": [float(v) for v in shrinkages],
        "scores": scores.round(5).tolist(),
        "knn_weights": [float(v) for v in knn_weights],
        "knn_scores": knn.round(5).tolist(),
        "n_shots": list(n_shots),
    }
    chosen = {
        "prior_strength": float(strengths[a]),
        "shrinkage": float(shrinkages[b]),
        "knn_weight": float(knn_weights[best_knn]),
    }
    return chosen, report


def blended_topk(U, V, X, similarity, weight, k, n_jobs=1, seen=True):
    """Top-k of the factor scores ``U V^T`` blended with the item-kNN scores of ``X``.

    Parameters
    ----------
    U : ndarray of shape (n_users, n_components)
    V : ndarray of shape (n_items, n_components)
    X : sparse matrix of shape (n_users, n_items)
        The users' shots (the kNN scores are ``binary(X) @ similarity``; the
        shots are never returned when ``seen``).
    similarity : sparse matrix of shape (n_items, n_items)
    weight : float
        ``beta`` of :func:`skfewrec._core.knn.blend_scores`.
    k : int
    n_jobs : int, default=1
    seen : bool, default=True
        Filter the shots.

    Returns
    -------
    ids, scores : ndarray of shape (n_users, k)
    """
    from ._core.knn import blend_scores
    from ._core.topk import chunked_topk

    X = sp.csr_matrix(X)
    B = sp.csr_matrix((np.ones(X.nnz, dtype=np.float32), X.indices, X.indptr), shape=X.shape)
    U = np.ascontiguousarray(U, dtype=np.float32)
    Vt = np.ascontiguousarray(np.asarray(V, dtype=np.float32).T)
    S = sp.csr_matrix(similarity, dtype=np.float32)

    def block(start, stop):
        knn = np.asarray((B[start:stop] @ S).toarray(), dtype=np.float32)
        return blend_scores(U[start:stop] @ Vt, knn, weight)

    return chunked_topk(block, X.shape[0], V.shape[0], k, seen=X if seen else None, n_jobs=n_jobs)


def _mean_over_shots(scores):
    """Mean over the last axis, NaN where nothing was scored (without the warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(scores, axis=-1)


def _log_neighbours(point, step, free=(True, True)):
    """The points one ``step`` away along each free axis."""
    out = []
    for axis in (0, 1):
        if free[axis]:
            for factor in (step, 1.0 / step):
                moved = list(point)
                moved[axis] *= factor
                out.append(tuple(moved))
    return out


def _trial_factors(X_fit, point, n_components, n_iter, seed, num_threads, init=None):
    """The ``(user, item)`` ALS factors of one search point (implicit's own fit),
    warm-started from ``init`` (a neighbour's factors) when given."""
    from ._core.threads import blas_limits
    from .factors._als import _new_implicit_model

    model = _new_implicit_model(n_components, point[0], point[1], n_iter, True, seed, num_threads)
    if init is not None:
        # the neighbour's factors plus implicit's own random start: zero factors (a
        # neighbour regularised to nothing) are a fixed point of ALS, the noise leaves it
        rng = np.random.default_rng(seed)
        model.user_factors, model.item_factors = (
            (f + 0.01 * rng.random(f.shape, dtype=np.float32)).astype(np.float32) for f in init
        )
    with blas_limits(1):
        model.fit(X_fit, show_progress=False)
    return model.user_factors, model.item_factors


def _als_of(item_factors, point, item_counts):
    """A fitted :class:`~skfewrec.ALSFactors` holding a search point's item factors."""
    from .factors._als import ALSFactors

    als = ALSFactors.from_arrays(item_factors, regularization=point[0], confidence_scale=point[1])
    als.item_counts_ = item_counts
    return als


def _coarse_grids(strengths, shrinkages, search_strengths, search_shrinkages):
    """The prior strengths and shrinkages scored at every point of the ALS search."""
    if search_strengths is None:
        search_strengths = [v for v in strengths if v in SEARCH_STRENGTHS] or strengths
    if search_shrinkages is None:
        search_shrinkages = [shrinkages[len(shrinkages) // 2]]
    return tuple(search_strengths), tuple(search_shrinkages)


def choose_als_settings(
    X,
    *,
    n_components=64,
    max_iter=15,
    warm_iter=5,
    regularization=None,
    confidence_scale=None,
    start=(FALLBACK["regularization"], FALLBACK["confidence_scale"]),
    step=10**0.5,
    max_moves=4,
    strengths=STRENGTHS,
    shrinkages=SHRINKAGES,
    search_strengths=None,
    search_shrinkages=None,
    knn_weights=KNN_WEIGHTS,
    n_shots=N_SHOTS,
    search_shots=None,
    holdout=0.2,
    max_users=500,
    n_jobs=None,
    random_state=None,
):
    """ALS regularization, confidence scale and prior strength for few-shot users.

    Holds out a slice of the warm users, fits ALS on the rest at a point of a
    log grid of (regularization, confidence_scale), and scores the held-out
    users' simulated episodes with the gaussian-prior closed-form fold-in at its
    best strength. The point moves to its best neighbour (x or / ``step`` along
    one axis) until it beats all four, or ``max_moves`` moves were made.

    The search only ranks settings, so it is kept cheap: the first point is
    fitted from scratch (``max_iter`` sweeps), every other one warm-started from
    the factors of the centre it neighbours (``warm_iter`` sweeps: ALS converges
    in a few sweeps from a nearby solution), and each point is scored with a few
    prior strengths and shrinkages (``search_strengths`` x ``search_shrinkages``).
    The full ``strengths`` x ``shrinkages`` are then tried at the chosen point
    only (which costs no refit).

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        The warm users' interactions.
    n_components : int, default=64
        The factors of the ALS being tuned.
    max_iter : int, default=15
        ALS sweeps of the first trial fit.
    warm_iter : int, default=5
        ALS sweeps of every other trial fit, warm-started from its centre's
        factors. ``warm_iter=None`` fits every point from scratch with ``max_iter``,
        as does any search on fewer than 100,000 interactions (cheap there).
    regularization, confidence_scale : float, default=None
        A value given here is fixed (an explicit setting wins): the search moves
        along the other axis only.
    start : tuple of (float, float), default=(30.0, 30.0)
        The first (regularization, confidence_scale), for the axes not fixed.
    step : float, default=sqrt(10)
        The multiplicative grid step.
    max_moves : int, default=4
        Moves of the centre at most (each move fits up to three new points).
    strengths : sequence of float, default=(0, 0.03, 0.1, 0.3, 1, 3, 10)
        Prior strengths tried at the chosen point.
    shrinkages : sequence of float, default=(0, 1, 3, 10, 30)
        Support shrinkages tried at the chosen point.
    search_strengths, search_shrinkages : sequence of float, default=None
        The few tried at every point while searching. None: those of
        ``strengths`` among (0, 0.1, 1), and the middle of ``shrinkages`` (all
        of ``strengths`` when none is among them). Pass ``strengths`` (and
        ``shrinkages``) to score the full grids at every point.
    knn_weights : sequence of float, default=(0, 0.1, 0.3, 0.5, 1, 2, 4)
        Weights of the conditional-probability item-kNN score blended into the
        factor score, tried at the chosen point (``(0,)``: the pure factor model).
    n_shots : sequence of int, default=(1, 3, 5, 10, 20)
        The episode sizes; the score is the mean NDCG@20 over them.
    search_shots : sequence of int, default=None
        The episode sizes of the points while searching (the chosen point is
        scored on ``n_shots``). None: those of ``n_shots`` among (1, 5, 20), or
        all of them when none is.
    holdout : float, default=0.2
        Share of warm users held out (at most ``max_users``).
    max_users : int, default=500
    n_jobs : int, default=None
        Threads of the trial fits and of the scoring (None: every core, as
        implicit's default).
    random_state : int, RandomState instance or None, default=None
        Seeds the hold-out, the trial fits and the episodes.

    Returns
    -------
    settings : dict
        ``regularization``, ``confidence_scale``, ``prior_strength``,
        ``shrinkage`` and ``knn_weight``.
    report : dict
        ``points`` (every point scored: settings, per-n NDCG, mean, best
        strength), ``refined`` (the full prior grid at the chosen point),
        ``n_fit_users``, ``n_val_users``, ``seconds``, and ``fallback`` (a
        reason, when the data were too small to search).

    Examples
    --------
    >>> from skfewrec._auto import choose_als_settings
    >>> from skfewrec.datasets import make_interactions
    >>> X = make_interactions(n_users=500, n_items=150, random_state=0).X
    >>> settings, report = choose_als_settings(
    ...     X, n_components=8, max_iter=5, max_moves=1, n_shots=(1, 5), random_state=0)
    >>> sorted(settings)
    ['confidence_scale', 'knn_weight', 'prior_strength', 'regularization', 'shrinkage']
    >>> len(report["points"]) >= 5
    True
    """
    from sklearn.frozen import FrozenEstimator

    from ._core.threads import blas_limits, implicit_threads, max_threads
    from .adapters._closed_form import ClosedFormFoldIn

    t0 = time.perf_counter()
    rng = check_random_state(random_state)
    seed = int(rng.randint(np.iinfo(np.int32).max))
    X_fit, X_val = holdout_users(X, fraction=holdout, max_users=max_users, random_state=seed)
    report = {"n_fit_users": X_fit.shape[0], "n_val_users": X_val.shape[0], "points": []}
    if not _enough_episodes(X_val):
        report["fallback"] = _too_few(X_val)
        report["seconds"] = time.perf_counter() - t0
        settings = dict(FALLBACK)
        for name, value in (
            ("regularization", regularization),
            ("confidence_scale", confidence_scale),
        ):
            if value is not None:
                settings[name] = float(value)
        return settings, report

    num_threads = implicit_threads(n_jobs)
    threads = max_threads() if n_jobs is None else num_threads
    coarse = _coarse_grids(strengths, shrinkages, search_strengths, search_shrinkages)
    if search_shots is None:
        search_shots = [n for n in n_shots if n in SEARCH_SHOTS] or n_shots
    scored, fitted = {}, {}
    counts = np.bincount(X_fit.indices, minlength=X_fit.shape[1]).astype(np.int64)

    def adapter_of(als):
        return ClosedFormFoldIn(
            FrozenEstimator(als),
            prior="gaussian",
            prior_strength=1.0,
            shrinkage=0.0,
            n_jobs=threads,
        )

    def prior_on(als, grid, shots, knn=(0.0,), similarity=None):
        return choose_prior(
            adapter_of(als),
            X_fit,
            X_val,
            strengths=grid[0],
            shrinkages=grid[1],
            knn_weights=knn,
            similarity=similarity,
            n_shots=shots,
            n_jobs=threads,
            random_state=seed,
        )

    def score(point, init=None):
        key = tuple(round(float(v), 6) for v in point)
        if key not in scored:
            first = init is None or warm_iter is None or X_fit.nnz < WARM_START_NNZ
            fitted[key] = _trial_factors(
                X_fit,
                key,
                n_components,
                max_iter if first else warm_iter,
                seed,
                num_threads,
                None if first else fitted[init],
            )
            prior, sub = prior_on(_als_of(fitted[key][1], key, counts), coarse, search_shots)
            a = sub["strengths"].index(prior["prior_strength"])
            b = sub["shrinkages"].index(prior["shrinkage"])
            per_n = np.asarray(sub["scores"])[a, b]
            scored[key] = float(np.nanmean(per_n))
            report["points"].append(
                {
                    "regularization": key[0],
                    "confidence_scale": key[1],
                    **prior,
                    "ndcg": per_n.tolist(),
                    "mean": scored[key],
                    "warm_start": not first,
                }
            )
        return scored[key], key

    fixed = (regularization, confidence_scale)
    free = tuple(v is None for v in fixed)
    # one BLAS thread throughout: the parallelism is implicit's and the top-k's own
    # (a BLAS pool on top of them oversubscribes the cores: many times slower)
    with blas_limits(1):
        centre = score(tuple(s if v is None else float(v) for s, v in zip(start, fixed)))
        for _ in range(max_moves if any(free) else 0):
            neighbours = [score(p, centre[1]) for p in _log_neighbours(centre[1], step, free)]
            best = max([*neighbours, centre])
            if best[1] == centre[1]:
                break
            centre = best
        chosen = next(
            p for p in report["points"] if (p["regularization"], p["confidence_scale"]) == centre[1]
        )
        settings = {**{k: chosen[k] for k in FALLBACK if k in chosen}, "knn_weight": 0.0}
        full = (tuple(strengths), tuple(shrinkages))
        if coarse != full or list(search_shots) != list(n_shots) or any(knn_weights):
            # the full prior grid and the item-kNN blend at the chosen point: no refit
            from ._core.knn import conditional_neighbors

            als = _als_of(fitted[centre[1]][1], centre[1], counts)
            similarity = (
                conditional_neighbors(X_fit, KNN_NEIGHBORS, KNN_POP_DISCOUNT)
                if any(knn_weights)
                else None
            )
            prior, sub = prior_on(als, full, n_shots, tuple(knn_weights), similarity)
            settings.update(prior)
            report["refined"] = sub
    report["n_shots"], report["search_shots"] = list(n_shots), list(search_shots)
    report["seconds"] = time.perf_counter() - t0
    return settings, report


#: the parameters that may be "auto"
AUTO_PARAMS = ("regularization", "confidence_scale", "prior_strength", "shrinkage", "knn_weight")


def has_auto(estimator):
    """Whether an (unfitted) adapter would choose any setting at fit time.

    True when one of its parameters, or its factor source's, is "auto", or when
    it has no factor source (its default one is "auto").

    Examples
    --------
    >>> from skfewrec import ALSFactors, ClosedFormFoldIn
    >>> from skfewrec._auto import has_auto
    >>> has_auto(ClosedFormFoldIn()), has_auto(ClosedFormFoldIn(
    ...     ALSFactors(regularization=1.0, confidence_scale=1.0),
    ...     prior_strength=1.0, shrinkage=0.0, knn_weight=0.0))
    (True, False)
    """
    params = estimator.get_params(deep=True)
    if "factors" in params and params["factors"] is None:
        return True
    return any(
        isinstance(value, str) and value == "auto" and key.split("__")[-1] in AUTO_PARAMS
        for key, value in params.items()
    )


def fix_auto_settings(template, fitted):
    """A clone of an adapter with every "auto" setting fixed to what ``fitted`` chose.

    The re-ranker refits its candidate adapter on each cross-fitting fold; with
    this, the "auto" search runs once (on all warm users) instead of once per fold.

    Parameters
    ----------
    template : estimator
        The unfitted adapter (its ``factors`` may be None, an unfitted source, or a
        ``FrozenEstimator``, which is kept as is).
    fitted : estimator
        ``template`` fitted on the warm users.

    Returns
    -------
    adapter : estimator
        Unfitted, with explicit values where ``template`` had "auto".

    Examples
    --------
    >>> from skfewrec import ALSFactors, ClosedFormFoldIn
    >>> from sklearn.base import clone
    >>> from skfewrec._auto import fix_auto_settings
    >>> from skfewrec.datasets import make_interactions
    >>> X = make_interactions(n_users=100, n_items=40, random_state=0).X
    >>> template = ClosedFormFoldIn(ALSFactors(4, random_state=0))
    >>> fixed = fix_auto_settings(template, clone(template).fit(X))
    >>> fixed.prior_strength, fixed.factors.regularization
    (1.0, 30.0)
    """
    from sklearn.base import clone
    from sklearn.frozen import FrozenEstimator

    adapter = clone(template)
    params = adapter.get_params(deep=False)
    updates = {
        name: getattr(fitted, f"{name}_")
        for name in ("prior_strength", "shrinkage", "knn_weight")
        if params.get(name) == "auto" and hasattr(fitted, f"{name}_")
    }
    source = getattr(fitted, "factors_", None)
    if source is not None and not isinstance(params.get("factors"), FrozenEstimator):
        factors = clone(source)
        own = factors.get_params(deep=False)
        factors.set_params(
            **{
                name: getattr(source, f"{name}_")
                for name in ("regularization", "confidence_scale")
                if own.get(name) == "auto"
            }
        )
        updates["factors"] = factors
    return adapter.set_params(**updates)
