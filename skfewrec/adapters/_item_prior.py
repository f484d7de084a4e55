"""New items from a few users: activity-weighted support, user neighbours and an item prior.

The symmetric iALS item fold-in (``add_items`` of the adapters) whitens the
support users' vectors by ``U^T U``, and on the k-shot item protocol it learns
less from a handful of users than the neighbours of those users do. This scorer
places a new item ``j`` with support users ``S_j`` from three measured signals:

- **factors**: ``y_j = G sum_s w_s u_s`` with ``G = V^T V`` (the warm items'
  Gram matrix, so ``u . y_j`` approximates the overlap of the reconstructed
  histories of ``u`` and the support users) and ``w_s = a_s^-p`` with ``a_s``
  the warm activity of support user ``s`` (light users say more about an item
  than users who touch everything);
- **user neighbours**: ``h_u . z_j`` with ``z_j = sum_s w_s h_s`` and ``h`` the
  warm histories (0/1) with each item weighted ``popularity ** -popularity_power``
  on the support side (shared popular items say less about two users than shared
  rare ones): a user-neighbour score computed through the item's sparse profile
  over warm items, never through a user x user matrix;
- **item prior**: the ridge map from side features (e.g. genres) to the warm item
  vectors gives each new item a prior mean (without features: the warm items'
  mean, :func:`skfewrec.adapters._priors.warm_prior`), weighted
  ``feature_strength / (feature_strength + n_j)``, so a zero-shot item is placed.

Each part is scaled to the spread of the warm items' scores, so new and warm
items rank in one list.
"""

from numbers import Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state

from .._core.compat import Interval, _fit_context, check_is_fitted
from .._core.validation import check_interactions
from ..base import (
    DerivedCachesMixin,
    RecommenderMixin,
    SparseInputMixin,
    validate_interactions,
)
from ._items import append_csr_rows, append_rows
from ._priors import warm_prior

__all__ = ["NewItemRecommender", "feature_map"]


def feature_map(features, item_factors, *, regularization=1.0):
    """Ridge map from item side features to item vectors (with an intercept).

    Parameters
    ----------
    features : array-like of shape (n_items, n_features)
        Side features of the warm items (e.g. 0/1 genres).
    item_factors : array-like of shape (n_items, n_components)
        Their vectors.
    regularization : float, default=1.0
        The ridge penalty (not applied to the intercept).

    Returns
    -------
    coef : ndarray of shape (n_features + 1, n_components)
        Apply with ``np.c_[F, np.ones(len(F))] @ coef``.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.adapters._item_prior import feature_map
    >>> F = np.array([[1, 0], [0, 1], [1, 1]])
    >>> coef = feature_map(F, F @ np.array([[1.0, 0.0], [0.0, 2.0]]), regularization=1e-9)
    >>> np.round(np.c_[F, np.ones(3)] @ coef, 6)
    array([[1., 0.],
           [0., 2.],
           [1., 2.]])
    """
    F = np.asarray(features, dtype=np.float64)
    F1 = np.c_[F, np.ones(F.shape[0])]
    penalty = regularization * np.eye(F1.shape[1])
    penalty[-1, -1] = 0.0
    return np.linalg.solve(F1.T @ F1 + penalty + 1e-9 * np.eye(F1.shape[1]), F1.T @ item_factors)


def _binary(X):
    """0/1 CSR copy of the interactions."""
    B = sp.csr_matrix(X, dtype=np.float64, copy=True)
    B.data = (B.data > 0).astype(np.float64)
    B.eliminate_zeros()
    return B


def _check_features(features, n_items, name):
    F = np.asarray(features, dtype=np.float64)
    if F.ndim != 2 or F.shape[0] != n_items:
        raise ValueError(
            f"{name} must have shape (n_items, n_features) with one row per item ({n_items}), "
            f"got shape {F.shape}."
        )
    if not np.all(np.isfinite(F)):
        raise ValueError(f"{name} has NaN or infinite values; fill or drop them first.")
    return F


class NewItemRecommender(DerivedCachesMixin, SparseInputMixin, RecommenderMixin, BaseEstimator):
    """A factor recommender whose new items are placed from their few users and features.

    Wraps a fitted-on-``fit`` factor recommender (by default
    :class:`~skfewrec.ClosedFormFoldIn`) for the warm items; ``add_items``
    appends new items scored by activity-weighted support factors, the cosine
    user-neighbour score of their support and an item prior from side features
    (see the module documentation for the formulas).

    Parameters
    ----------
    recommender : estimator, default=None
        An unfitted factor recommender with ``transform`` (user vectors) and
        ``item_factors_`` (e.g. ``ClosedFormFoldIn``). None uses
        ``ClosedFormFoldIn(ALSFactors(regularization=1.0, confidence_scale=10.0,
        random_state=random_state))``.
    neighbour_weight : float, default=0.7
        Share of the user-neighbour score in a new item's score, in [0, 1]; the
        rest is the factor score.
    activity_power : float, default=1.0
        A support user's weight is ``activity ** -activity_power`` (activity: the
        number of warm items the user touched).
    popularity_power : float, default=0.5
        A warm item in a support user's history weighs
        ``popularity ** -popularity_power`` in the neighbour profile.
    feature_strength : float, default=1.0
        Weight of the item prior: ``feature_strength / (feature_strength + n)``
        for an item with n support users; 0 turns the prior off.
    feature_regularization : float, default=1.0
        Ridge penalty of the map from side features to item vectors.
    random_state : int, RandomState instance or None, default=None
        Seeds the default recommender and the users sampled to scale the parts.

    Attributes
    ----------
    recommender_ : estimator
        The fitted warm recommender.
    item_factors_ : ndarray of shape (n_items, n_components)
        Warm item vectors, then the new items' factor part.
    item_profiles_ : scipy.sparse.csr_matrix of shape (n_items, n_warm_items)
        Each new item's weighted support history (zero rows for warm items).
    support_counts_ : ndarray of shape (n_items,)
        Users behind each item (warm: training users; new: support users).
    n_warm_items_ : int
        Number of items seen by ``fit``.
    scale_users_ : ndarray of int
        The warm users (rows) on which the parts of a new item's score are scaled.
    warm_scale_ : float
        The spread of the warm items' scores on those users: the unit of every part.
    n_features_in_ : int
        The current catalogue size.

    Notes
    -----
    The neighbour part needs the warm users' histories: the estimator keeps
    them as a 0/1 sparse matrix (``histories_``), so its size grows with the
    warm interactions. ``neighbour_weight=0`` leaves them unused.

    Each part of a new item's score is scaled by its spread over the items of
    the same ``add_items`` call (on a fixed sample of warm users), so items
    added one at a time get slightly different scales than the same items added
    together. An ``add_items`` call costs what its items need (their support
    users' histories and vectors), not the catalogue: the per-item arrays grow
    in place into buffers that double when full (rows already there are never
    written, so a reference to the old arrays keeps its values). Added items
    survive :func:`skfewrec.save` and :func:`skfewrec.load`, and a loaded model
    takes more. A user's vector comes from their warm items only: interactions
    with new items do not move it (``recommend`` still filters them as seen).

    The defaults were chosen on the k-shot item protocol of ml-latest-small and
    Gowalla (``benchmarks/new_items.py``; see the "Long tail" guide).

    Examples
    --------
    >>> from skfewrec import ALSFactors, ClosedFormFoldIn
    >>> from skfewrec.adapters._item_prior import NewItemRecommender
    >>> from skfewrec.datasets import make_interactions
    >>> X = make_interactions(n_users=200, n_items=60, random_state=0).X
    >>> base = ClosedFormFoldIn(ALSFactors(n_components=8, random_state=0))
    >>> rec = NewItemRecommender(base, random_state=0).fit(X[:, :50])
    >>> rec.add_items(X[:, 50:]).n_features_in_
    60
    >>> rec.recommend(X[:2], k=3)[0].shape
    (2, 3)
    """

    _derived_caches = ("_append_buffers", "_append_csr")

    _parameter_constraints = {
        "recommender": "no_validation",
        "neighbour_weight": [Interval(Real, 0, 1, closed="both")],
        "activity_power": [Interval(Real, 0, None, closed="left")],
        "popularity_power": [Interval(Real, 0, None, closed="left")],
        "feature_strength": [Interval(Real, 0, None, closed="left")],
        "feature_regularization": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        recommender=None,
        *,
        neighbour_weight=0.7,
        activity_power=1.0,
        popularity_power=0.5,
        feature_strength=1.0,
        feature_regularization=1.0,
        random_state=None,
    ):
        self.recommender = recommender
        self.neighbour_weight = neighbour_weight
        self.activity_power = activity_power
        self.popularity_power = popularity_power
        self.feature_strength = feature_strength
        self.feature_regularization = feature_regularization
        self.random_state = random_state

    def _make_recommender(self):
        if self.recommender is not None:
            return clone(self.recommender)
        from ..factors import ALSFactors
        from ._closed_form import ClosedFormFoldIn

        factors = ALSFactors(regularization=1.0, confidence_scale=10.0)
        factors.set_params(random_state=self.random_state)
        return ClosedFormFoldIn(factors)

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, *, item_features=None):
        """Fit the warm recommender and keep what new items are placed with.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            The warm users' interactions with the warm items.
        y : None
            Ignored.
        item_features : array-like of shape (n_items, n_features), default=None
            Side features of the warm items (e.g. genres); new items given
            features in ``add_items`` are then placed by them.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X = validate_interactions(self, X, reset=True)
        self.recommender_ = self._make_recommender().fit(X, y)
        V = np.asarray(self.recommender_.item_factors_, dtype=np.float64)
        self.user_factors_ = np.asarray(self.recommender_.transform(X), dtype=np.float64)
        counts = X.getnnz(axis=0)
        self.histories_ = _binary(X)
        self.item_weights_ = (counts + 1.0) ** -self.popularity_power
        self.activity_ = X.getnnz(axis=1).astype(np.float64) + 1.0
        self.gram_ = V.T @ V
        self.prior_mean_, _ = warm_prior(V)
        self.feature_coef_ = None
        if item_features is not None:
            F = _check_features(item_features, X.shape[1], "item_features")
            self.feature_coef_ = feature_map(F, V, regularization=self.feature_regularization)
        self.n_warm_items_ = X.shape[1]
        self.item_factors_ = V
        self.item_profiles_ = sp.csr_matrix((X.shape[1], X.shape[1]))
        self.support_counts_ = counts.astype(np.int64)
        # the unit new parts are put in: the warm scores' spread on a sample of users
        rng = check_random_state(self.random_state)
        n_users = self.user_factors_.shape[0]
        self.scale_users_ = np.sort(rng.permutation(n_users)[: min(n_users, 1000)])
        self.warm_scale_ = float(np.std(self.user_factors_[self.scale_users_] @ V.T)) or 1.0
        self._rebuild()
        return self

    def _rebuild(self):
        """Check that the fitted state is consistent (a loaded model is untrusted input)."""
        n_users, f = np.shape(self.user_factors_)
        n_warm, n_items = int(self.n_warm_items_), int(self.n_features_in_)
        expected = {
            "histories_": (n_users, n_warm),
            "activity_": (n_users,),
            "item_weights_": (n_warm,),
            "gram_": (f, f),
            "prior_mean_": (f,),
            "item_factors_": (n_items, f),
            "item_profiles_": (n_items, n_warm),
            "support_counts_": (n_items,),
        }
        for name, shape in expected.items():
            if tuple(np.shape(getattr(self, name))) != shape:
                raise ValueError(
                    f"{name} has shape {np.shape(getattr(self, name))}, not {shape}: the "
                    "fitted state is inconsistent; refit the model."
                )
        users = np.asarray(self.scale_users_)
        if users.ndim != 1 or users.size == 0 or users.dtype.kind not in "iu":
            raise ValueError("scale_users_ must be a non-empty 1-d array of row indices.")
        if users.min() < 0 or users.max() >= n_users or not n_warm <= n_items:
            raise ValueError("scale_users_ or n_warm_items_ is out of range; refit the model.")
        if not (np.isfinite(self.warm_scale_) and self.warm_scale_ > 0):
            raise ValueError(f"warm_scale_ must be > 0, got {self.warm_scale_!r}.")
        if np.min(self.activity_) < 1 or np.min(self.support_counts_) < 0:
            raise ValueError("activity_ must be >= 1 and support_counts_ >= 0; refit the model.")
        coef = self.feature_coef_
        if coef is not None and (np.ndim(coef) != 2 or np.shape(coef)[1] != f):
            raise ValueError(f"feature_coef_ must have {f} columns; refit the model.")

    def _spread(self, scores):
        s = float(np.std(scores))
        return s if s > 0 else 1.0

    def add_items(self, X_new_items, *, item_features=None):
        """Append items added after fitting, placed from their warm users and features.

        Parameters
        ----------
        X_new_items : {array-like, sparse matrix} of shape (n_warm_users, n_new_items)
            The warm users' interactions with the new items, one row per user
            ``fit`` saw, in that order. A new item without any (zero-shot) is
            placed by its features alone (or at the warm items' mean).
        item_features : array-like of shape (n_new_items, n_features), default=None
            The new items' side features; needs ``item_features`` at ``fit``.

        Returns
        -------
        self : object
            The estimator, with the new items appended as columns
            ``n_features_in_`` onwards.
        """
        check_is_fitted(self)
        S = check_interactions(X_new_items, name="X_new_items", dtype=np.float64)
        F = None
        U = self.user_factors_
        if S.shape[0] != U.shape[0]:
            raise ValueError(
                f"X_new_items has {S.shape[0]} rows but {U.shape[0]} warm users were fitted; "
                "pass one row per warm user, in the order of the rows fit saw."
            )
        n_new = S.shape[1]
        if item_features is not None and self.feature_coef_ is None:
            raise ValueError(
                "item_features were given to add_items but not to fit; pass the warm "
                "items' features to fit(X, item_features=...) to learn the feature map."
            )
        if item_features is not None:
            F = _check_features(item_features, n_new, "item_features")
            if F.shape[1] + 1 != self.feature_coef_.shape[0]:
                raise ValueError(
                    f"item_features has {F.shape[1]} columns but fit saw "
                    f"{self.feature_coef_.shape[0] - 1}; pass the same features."
                )
        S = sp.csr_matrix(S.astype(bool).astype(np.float64))
        counts = S.getnnz(axis=0)
        Sw = (sp.diags(self.activity_**-self.activity_power) @ S).T.tocsr()
        factor_part = np.asarray(Sw @ U) @ self.gram_
        a = self.neighbour_weight
        if a > 0:
            profiles = sp.csr_matrix(Sw @ self.histories_ @ sp.diags(self.item_weights_))
        else:
            profiles = sp.csr_matrix((n_new, self.n_warm_items_))
        if F is not None:
            prior = np.c_[F, np.ones(n_new)] @ self.feature_coef_
        else:
            prior = np.tile(self.prior_mean_, (n_new, 1))
        # scale each part to the warm scores' spread, measured on sampled users
        Us = U[self.scale_users_]
        warm = self.warm_scale_
        factor_part *= (1 - a) * warm / self._spread(Us @ factor_part.T)
        if a > 0:
            spread = self._spread((self.histories_[self.scale_users_] @ profiles.T).toarray())
            profiles = profiles * (a * warm / spread)
        s = self.feature_strength
        prior *= (s / (s + counts))[:, None] * warm / self._spread(Us @ prior.T)
        append_rows(self, "item_factors_", factor_part + prior)
        append_csr_rows(self, "item_profiles_", profiles)
        append_rows(self, "support_counts_", counts.astype(np.int64))
        self.n_features_in_ = int(self.n_features_in_ + n_new)
        return self

    def _scorer(self, X, columns):
        warm_X = X[:, : self.n_warm_items_]
        U = np.asarray(self.recommender_.transform(warm_X), dtype=np.float64)
        H = _binary(warm_X)
        V = self.item_factors_ if columns is None else self.item_factors_[columns]
        P = self.item_profiles_ if columns is None else self.item_profiles_[columns]
        Pt = P.T.tocsc()

        def score_block(start, stop):
            scores = U[start:stop] @ V.T + (H[start:stop] @ Pt).toarray()
            return scores.astype(np.float32)

        return score_block
