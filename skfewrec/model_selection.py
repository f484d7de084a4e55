"""Splitting users and their interactions, and scoring few-shot recommendations.

The protocol is scikit-learn's: held-out *users* are the test samples
(:func:`train_test_split_users`, or any ``cv`` over rows), and each held-out row is
cut into a support part, the few interactions ("shots") the recommender sees, and
a query part, what it must find (:func:`support_query_split`).
:func:`make_fewshot_scorer` packs that protocol into a ``scoring=`` callable for
``GridSearchCV`` and ``cross_val_score``; :func:`fewshot_curve` measures a fitted
recommender for several numbers of shots.
"""

import warnings
from numbers import Integral

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

from ._core.csr import row_of_nonzeros, split_rows
from ._core.validation import check_int, check_interactions
from ._item_protocol import (
    evaluate_item_kshot,
    item_kshot_curve,
    item_kshot_split,
    make_item_kshot_scorer,
)
from .metrics import METRICS, _check_metric_names, evaluate

__all__ = [
    "evaluate_item_kshot",
    "fewshot_curve",
    "filter_users",
    "item_kshot_curve",
    "item_kshot_split",
    "make_fewshot_scorer",
    "make_item_kshot_scorer",
    "support_query_split",
    "train_test_split_users",
]


def train_test_split_users(
    *arrays, test_size=None, train_size=None, random_state=None, shuffle=True
):
    """Split users (rows) into a warm (train) part and a held-out (test) part.

    A thin wrapper over :func:`sklearn.model_selection.train_test_split` that
    names the protocol: held-out users are new users, never seen in training.
    Several arrays with one row per user (the interaction matrix, its
    timestamps, side features, user ids) are split with the same rows. Sparse
    matrices come back as CSR.

    Parameters
    ----------
    *arrays : sequence of {array-like, sparse matrix} with the same number of rows
        The matrices and arrays to split, rows being users.
    test_size : float or int, default=None
        The share (float in (0, 1)) or number (int) of held-out users. None means
        0.2, or the complement of ``train_size`` when that is given.
    train_size : float or int, default=None
        The share or number of warm users. None means the complement of
        ``test_size``.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffling; pass an int for a reproducible split.
    shuffle : bool, default=True
        Whether to shuffle the users before splitting.

    Returns
    -------
    splitting : list of length 2 * len(arrays)
        The train and test part of each input, in order:
        ``X_train, X_test, other_train, other_test, ...``.

    See Also
    --------
    support_query_split : Cut each held-out user's row into shots and queries.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from skfewrec.model_selection import train_test_split_users
    >>> X = sp.random(10, 6, density=0.5, format="csr", random_state=0)
    >>> users = np.arange(10)
    >>> X_warm, X_new, warm_users, new_users = train_test_split_users(
    ...     X, users, test_size=0.2, random_state=0)
    >>> X_warm.shape, X_new.shape, X_new.format
    ((8, 6), (2, 6), 'csr')
    >>> np.array_equal(X_new.toarray(), X[new_users].toarray())
    True
    """
    if not arrays:
        raise ValueError("train_test_split_users needs at least one array to split.")
    if test_size is None and train_size is None:
        test_size = 0.2
    return train_test_split(
        *arrays,
        test_size=test_size,
        train_size=train_size,
        random_state=random_state,
        shuffle=shuffle,
    )


def _check_interaction_matrix(X, name="X"):
    """Canonical CSR of X, keeping its numeric dtype so values survive a split."""
    dtype = X.dtype if sp.issparse(X) else np.asarray(X).dtype
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        dtype = np.float64
    return check_interactions(X, name=name, dtype=dtype)


def _times_of_nonzeros(timestamps, X):
    """Return the timestamp of each stored entry of the canonical CSR matrix X."""
    if not sp.issparse(timestamps):
        timestamps = np.asarray(timestamps)
        if np.issubdtype(timestamps.dtype, np.datetime64):
            timestamps = timestamps.astype(np.int64)
    if timestamps.shape != X.shape:
        raise ValueError(
            f"timestamps has shape {timestamps.shape} but X has shape {X.shape}; pass one "
            "timestamp per interaction of X, with the same sparsity pattern."
        )
    if not np.issubdtype(timestamps.dtype, np.number) or np.issubdtype(
        timestamps.dtype, np.complexfloating
    ):
        raise TypeError(
            f"timestamps has dtype {timestamps.dtype}; pass real numbers (e.g. seconds since "
            "the epoch, or datetime64 values converted with .astype('int64'))."
        )
    if not sp.issparse(timestamps):
        times = timestamps[row_of_nonzeros(X), X.indices]
    else:
        # Explicit zeros are kept: a timestamp of 0 is a time, not a missing entry.
        T = sp.csr_matrix(timestamps, copy=True)
        T.sort_indices()
        if np.array_equal(T.indptr, X.indptr) and np.array_equal(T.indices, X.indices):
            times = T.data
        else:
            n_items = X.shape[1]
            x_keys = row_of_nonzeros(X).astype(np.int64) * n_items + X.indices
            t_keys = row_of_nonzeros(T).astype(np.int64) * n_items + T.indices
            if np.any(t_keys[1:] == t_keys[:-1]):
                raise ValueError(
                    "timestamps stores some (user, item) entry twice; keep one time per "
                    "interaction (e.g. the first), as X holds one value per interaction."
                )
            missing = ~np.isin(x_keys, t_keys, assume_unique=True)
            if missing.any():
                i = np.flatnonzero(missing)[0]
                raise ValueError(
                    f"timestamps has no time for {missing.sum()} interaction(s) of X (first at "
                    f"row {x_keys[i] // n_items}, column {x_keys[i] % n_items}); it must have "
                    "the same sparsity pattern as X."
                )
            extra = ~np.isin(t_keys, x_keys, assume_unique=True)
            i = np.flatnonzero(extra)[0]
            raise ValueError(
                f"timestamps has {extra.sum()} entry(ies) where X has no interaction (first at "
                f"row {t_keys[i] // n_items}, column {t_keys[i] % n_items}); it must have "
                "the same sparsity pattern as X (did X contain explicit zeros?)."
            )
    times = np.asarray(times)
    if np.issubdtype(times.dtype, np.floating) and not np.all(np.isfinite(times)):
        raise ValueError("timestamps has NaN or infinite values at interactions of X.")
    return times


def support_query_split(X, n_shots, *, timestamps=None, random_state=None):
    """Split each user's interactions into a support part and a query part.

    Each row keeps ``min(n_shots, nnz_row)`` of its interactions in the support
    ``S`` (the shots a recommender adapts from) and the rest in the query ``Q``
    (what it is evaluated on). The shots are drawn at random, or, when
    ``timestamps`` are given, are the earliest interactions, ties broken at
    random. The split is vectorised: one sort of all nonzeros by (row, time,
    random key).

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        Interactions; zero means none.
    n_shots : int
        The number of support interactions per user, >= 0. Users with fewer
        interactions put all of them in the support and have an empty query.
    timestamps : {array-like, sparse matrix} of shape (n_users, n_items), default=None
        The time of each interaction. If sparse, it must store an entry exactly
        where X has a nonzero (explicit zeros count as times). If dense, it is
        read at X's nonzeros. None draws the support at random.
    random_state : int, RandomState instance or None, default=None
        Seeds the random draw and the tie-breaking; an int gives the same split
        on every call.

    Returns
    -------
    S : sparse matrix of shape (n_users, n_items)
        The support, CSR (a ``csr_array`` if X is one), with X's values.
    Q : sparse matrix of shape (n_users, n_items)
        The query, of the same type. ``S + Q`` equals X.

    See Also
    --------
    filter_users : Keep the users with enough interactions for a split.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.model_selection import support_query_split
    >>> X = np.array([[1, 2, 3, 0], [0, 0, 4, 0]])
    >>> S, Q = support_query_split(X, 2, random_state=0)
    >>> S.getnnz(axis=1).tolist(), Q.getnnz(axis=1).tolist()
    ([2, 1], [1, 0])
    >>> np.array_equal((S + Q).toarray(), X)
    True

    With timestamps the support holds the earliest interactions:

    >>> T = np.array([[30, 10, 20, 0], [0, 0, 5, 0]])
    >>> S, Q = support_query_split(X, 2, timestamps=T)
    >>> S.toarray()
    array([[0, 2, 3, 0],
           [0, 0, 4, 0]])
    """
    container = sp.csr_array if isinstance(X, sp.sparray) else sp.csr_matrix
    X = _check_interaction_matrix(X)
    n_shots = check_int(n_shots, "n_shots", 0)
    times = None if timestamps is None else _times_of_nonzeros(timestamps, X)
    rng = check_random_state(random_state)

    # A random permutation as the tie-break within a row (after time, if given):
    # uniform, and the same on every machine for a given seed.
    return split_rows(X, n_shots, rng.permutation(X.nnz), times=times, container=container)


def filter_users(X, min_interactions, *, return_indices=False):
    """Find the users with at least ``min_interactions`` interactions.

    For a few-shot evaluation with n shots, keep the users with at least
    ``n + min_query`` interactions so each has a non-trivial query.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        Interactions; zero means none.
    min_interactions : int
        The smallest number of nonzeros a kept row has, >= 0.
    return_indices : bool, default=False
        If True, return the indices of the kept rows instead of a mask.

    Returns
    -------
    keep : ndarray of shape (n_users,) of bool, or ndarray of int
        A boolean mask over rows, or the sorted indices of the kept rows.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.model_selection import filter_users
    >>> X = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1]])
    >>> filter_users(X, 2)
    array([ True, False,  True])
    >>> filter_users(X, 2, return_indices=True)
    array([0, 2])
    """
    X = check_interactions(X)
    min_interactions = check_int(min_interactions, "min_interactions", 0)
    keep = np.diff(X.indptr) >= min_interactions
    return np.flatnonzero(keep) if return_indices else keep


def _recommender(estimator):
    """``recommend(S, k)`` of a fitted recommender, or of a Pipeline ending in one.

    A Pipeline's earlier steps (e.g. confidence weighting) transform the support
    before its last step ranks (:class:`~skfewrec.pipeline.RecommenderPipeline`'s
    ``recommend``); ``filter_seen`` applies to the support's items as given.
    """
    steps = getattr(estimator, "steps", None)
    if steps:
        from .pipeline import as_recommender_pipeline

        estimator = as_recommender_pipeline(estimator)
        final = steps[-1][1]
    else:
        final = estimator
    if not callable(getattr(final, "recommend", None)):
        raise TypeError(
            f"{type(final).__name__} has no recommend method; pass a fitted skfewrec "
            "recommender (anything with recommend(X, k, filter_seen=True) -> (ids, scores)), "
            "or a Pipeline whose last step is one."
        )
    return lambda S, k: estimator.recommend(S, k=k, filter_seen=True)


def _encoded(estimator, X, y=None):
    """``(estimator, X)``, with a log encoded by the pipeline's first step when it is an encoder.

    A pipeline starting with an InteractionEncoder is scored on a log: the log is
    encoded (filter, duplicates, binarize) by the fitted encoder, and the rest of
    the pipeline is scored on the matrix.
    """
    steps = getattr(estimator, "steps", None)
    if not steps or not hasattr(X, "columns"):
        return estimator, X
    from .preprocessing import InteractionEncoder

    if not isinstance(steps[0][1], InteractionEncoder):
        return estimator, X
    if y is not None:
        raise ValueError(
            "A pipeline starting with an InteractionEncoder is scored on a log alone (y=None): "
            "each user's encoded row is split into shots and a query."
        )
    from .pipeline import as_recommender_pipeline

    return as_recommender_pipeline(estimator)[1:], steps[0][1].transform(X)


def _score_fewshot(estimator, X, y=None, *, k=20, n_shots=5):
    """The ``score`` of recommenders and recommender pipelines: mean NDCG@k, few-shot.

    Without ``y``, ``n_shots`` drops (with a warning) to the longest row's length
    minus one when no row has more than ``n_shots`` interactions.
    """
    if y is not None and np.ndim(y) == 1:
        y = None
    estimator, X = _encoded(estimator, X, y)
    if y is None:
        longest = int(np.diff(check_interactions(X).indptr).max())
        if longest <= n_shots:
            warnings.warn(
                f"No user in X has more than n_shots={n_shots} interactions; scoring "
                f"with n_shots={max(longest - 1, 0)} instead (the longest row has "
                f"{longest}).",
                UserWarning,
                stacklevel=3,
            )
            n_shots = max(longest - 1, 0)
    final = estimator.steps[-1][1] if getattr(estimator, "steps", None) else estimator
    if hasattr(final, "n_features_in_"):
        k = min(k, final.n_features_in_)
    return make_fewshot_scorer("ndcg", k=k, n_shots=n_shots)(estimator, X, y)


def _no_users_error(X, min_interactions, n_shots, min_query):
    most = int(np.diff(X.indptr).max())
    return ValueError(
        f"No user in X has the n_shots + min_query = {n_shots} + {min_query} = "
        f"{min_interactions} interactions needed for a few-shot split (the most any user has "
        f"is {most}); lower n_shots or min_query, or evaluate on users with more history."
    )


def _fewshot_split(X, n_shots, min_query, random_state):
    """Keep the users with enough interactions and split them."""
    min_interactions = n_shots + min_query
    keep = np.diff(X.indptr) >= min_interactions
    if not keep.any():
        raise _no_users_error(X, min_interactions, n_shots, min_query)
    S, Q = support_query_split(X[keep], n_shots, random_state=random_state)
    return S, Q


class _FewShotScorer:
    """Score a recommender's top k on few-shot splits; made by make_fewshot_scorer."""

    def __init__(self, metric, k, n_shots, min_query, random_state):
        self.metric = metric
        self.k = k
        self.n_shots = n_shots
        self.min_query = min_query
        self.random_state = random_state

    def __call__(self, estimator, X, y=None):
        estimator, X = _encoded(estimator, X, y)
        recommend = _recommender(estimator)
        if y is None:
            X = _check_interaction_matrix(X)
            S, Q = _fewshot_split(X, self.n_shots, self.min_query, self.random_state)
        else:
            S = _check_interaction_matrix(X)
            Q = check_interactions(y, name="y", dtype=np.float64)
            if Q.shape != S.shape:
                raise ValueError(
                    f"X (the support) has shape {S.shape} but y (the query) has shape "
                    f"{Q.shape}; pass the two parts of one interaction matrix."
                )
        ids, _ = recommend(S, self.k)
        return METRICS[self.metric](Q, ids, k=self.k)

    def __repr__(self):
        return (
            f"make_fewshot_scorer(metric={self.metric!r}, k={self.k}, n_shots={self.n_shots}, "
            f"min_query={self.min_query}, random_state={self.random_state!r})"
        )


def make_fewshot_scorer(metric="ndcg", *, k=20, n_shots=5, min_query=1, random_state=0):
    """Make a ``scoring=`` callable that evaluates recommenders on few-shot users.

    The returned ``scorer(estimator, X, y=None)`` works with ``GridSearchCV``,
    ``cross_val_score`` and ``cross_validate``: with a ``cv`` over rows, the
    held-out rows are new users.

    - With ``y`` (same shape as X), X is the support and y the query.
    - Without ``y``, the rows of X with at least ``n_shots + min_query``
      interactions are kept and split by :func:`support_query_split`.

    The scorer then calls ``estimator.recommend(S, k=k, filter_seen=True)`` and
    returns the mean metric over users with a query; higher is better. A
    :class:`~sklearn.pipeline.Pipeline` ending in a recommender works too: its
    earlier steps transform the support first (the support's own items are
    filtered). A pipeline starting with an
    :class:`~skfewrec.preprocessing.InteractionEncoder` is scored on a log
    (``y=None``): the fitted encoder encodes it, then each user's row is split.

    Parameters
    ----------
    metric : str, default="ndcg"
        A name from :data:`skfewrec.metrics.METRICS`: "ndcg", "recall",
        "precision", "map", "mrr" or "hit_rate".
    k : int, default=20
        The length of the recommended lists and the metric's cut-off.
    n_shots : int, default=5
        The support size per user when X is split, >= 0.
    min_query : int, default=1
        The least number of query interactions a scored user has, >= 1.
    random_state : int, RandomState instance or None, default=0
        Seeds the split; an int gives the same split on every call, so all
        candidates of a grid search are scored on the same shots.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y=None) -> float``.

    See Also
    --------
    fewshot_curve : The metrics of a fitted recommender for several n_shots.

    Examples
    --------
    >>> from skfewrec.model_selection import make_fewshot_scorer
    >>> make_fewshot_scorer("recall", k=10, n_shots=3)
    make_fewshot_scorer(metric='recall', k=10, n_shots=3, min_query=1, random_state=0)

    Used in a grid search over users (``estimator`` being any skfewrec
    recommender)::

        GridSearchCV(estimator, param_grid, cv=KFold(5, shuffle=True),
                     scoring=make_fewshot_scorer("ndcg", k=20, n_shots=3))
    """
    if not isinstance(metric, str) or metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; choose among {list(METRICS)}.")
    return _FewShotScorer(
        metric,
        check_int(k, "k", 1),
        check_int(n_shots, "n_shots", 0),
        check_int(min_query, "min_query", 1),
        random_state,
    )


def fewshot_curve(
    estimator,
    X,
    *,
    n_shots=(1, 3, 5, 10, 20),
    k=20,
    min_query=5,
    metrics=("ndcg", "recall"),
    random_state=0,
):
    """Measure a fitted recommender on new users with 1, 3, 5, ... shots.

    For each n in ``n_shots``: keep the users of X with at least
    ``n + min_query`` interactions, split each into n shots and a query
    (:func:`support_query_split`), recommend ``k`` items from the shots with
    seen items filtered, and average the metrics over those users. The
    estimator is not fitted here.

    Parameters
    ----------
    estimator : fitted recommender
        Anything with ``recommend(X, k, filter_seen=True) -> (ids, scores)``.
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        Interactions of users not used in fitting.
    n_shots : int or sequence of int, default=(1, 3, 5, 10, 20)
        The support sizes to measure, each >= 0, without repeats.
    k : int, default=20
        The length of the recommended lists and the metrics' cut-off.
    min_query : int, default=5
        The least number of query interactions of a measured user, >= 1.
    metrics : str or sequence of str, default=("ndcg", "recall")
        Names from :data:`skfewrec.metrics.METRICS`, or "coverage".
    random_state : int, RandomState instance or None, default=0
        Seeds the splits. An int splits the users of every n with the same seed.

    Returns
    -------
    curve : pandas.DataFrame
        One row per n_shots (the index), one column per metric, and
        ``n_users``, the number of users measured. A row without any user
        qualifying holds NaN metrics and ``n_users`` 0.

    See Also
    --------
    make_fewshot_scorer : One point of the curve, as a ``scoring=`` callable.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.model_selection import fewshot_curve
    >>> class MostPopular:
    ...     def __init__(self, popularity):
    ...         self.popularity = popularity
    ...     def recommend(self, X, k=10, *, filter_seen=True):
    ...         scores = np.tile(self.popularity, (X.shape[0], 1))
    ...         scores[X.nonzero()] = -np.inf
    ...         ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    ...         return ids, np.take_along_axis(scores, ids, axis=1)
    >>> X = (np.random.RandomState(0).rand(50, 30) < 0.4).astype(float)
    >>> popular = MostPopular(np.arange(30.0))
    >>> curve = fewshot_curve(popular, X, n_shots=(1, 3), k=5, min_query=2)
    >>> curve.index.tolist(), curve.columns.tolist()
    ([1, 3], ['ndcg', 'recall', 'n_users'])
    >>> curve["n_users"].tolist()
    [50, 50]
    """
    recommend = _recommender(estimator)
    shots = (n_shots,) if isinstance(n_shots, Integral) else tuple(n_shots)
    if not shots:
        raise ValueError("n_shots is empty; pass the support sizes to measure, e.g. (1, 3, 5).")
    shots = tuple(check_int(n, "each n_shots", 0) for n in shots)
    if len(set(shots)) != len(shots):
        raise ValueError(f"n_shots lists a value twice: {list(shots)}.")
    k = check_int(k, "k", 1)
    min_query = check_int(min_query, "min_query", 1)
    names = _check_metric_names(metrics)
    X = _check_interaction_matrix(X)
    n_per_user = np.diff(X.indptr)

    rows = []
    for n in shots:
        keep = n_per_user >= n + min_query
        row = dict.fromkeys(names, np.nan)
        if keep.any():
            S, Q = support_query_split(X[keep], n, random_state=random_state)
            ids, _ = recommend(S, k)
            row.update(evaluate(Q, ids, k=k, metrics=names))
        row["n_users"] = int(keep.sum())
        rows.append(row)
    curve = pd.DataFrame(rows, index=pd.Index(shots, name="n_shots"))
    empty = curve.index[curve["n_users"] == 0].tolist()
    if len(empty) == len(shots):
        raise _no_users_error(X, min(shots) + min_query, min(shots), min_query)
    if empty:
        warnings.warn(
            f"No user has n_shots + min_query interactions for n_shots in {empty}; their "
            "metrics are NaN. Lower min_query or drop those n_shots.",
            UserWarning,
            stacklevel=2,
        )
    return curve
