"""ClosedFormFoldIn: the exact fold-in of new users (implicit iALS or explicit ratings),
with an empirical-Bayes prior."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state

from .._auto import (
    KNN_NEIGHBORS,
    KNN_POP_DISCOUNT,
    blended_topk,
    item_conditional_means,
    shrink_to_support,
)
from .._core.compat import HasMethods, Interval, StrOptions, _fit_context, check_is_fitted
from .._core.conventions import CONVENTIONS
from .._core.csr import select_entries
from .._core.knn import blend_scores, conditional_neighbors, pad_square
from .._core.threads import blas_limits, effective_n_jobs
from .._core.validation import check_interactions
from ..base import (
    DerivedCachesMixin,
    FactorRecommenderMixin,
    ItemsFromFactorsMixin,
    RecommenderMixin,
    SparseFloat32TransformerMixin,
    fit_factor_source,
    validate_interactions,
)
from ..factors._als import ALSFactors
from ..factors._explicit import ExplicitALSFactors, check_rating_scale, check_ratings_in_scale
from ._items import NewItemsMixin, extend_with_vectors, support_item_factors
from ._priors import prior_terms, warm_prior

#: objective -> (default factor source, attributes it must have, what provides them)
_FACTOR_SOURCES = {
    "implicit": (
        ALSFactors,
        ("item_factors_", "regularization", "confidence_scale", "fold_in"),
        "an ALSFactors",
    ),
    "explicit": (
        ExplicitALSFactors,
        ("item_factors_", "item_biases_", "global_mean_", "regularization", "fold_in"),
        "objective='explicit' needs a factor source with item biases: an ExplicitALSFactors",
    ),
}


class ClosedFormFoldIn(
    ItemsFromFactorsMixin,
    DerivedCachesMixin,
    NewItemsMixin,
    SparseFloat32TransformerMixin,
    FactorRecommenderMixin,
    TransformerMixin,
    BaseEstimator,
):
    """Recommend to new users from a few interactions: the exact closed-form fold-in.

    The item factors are pretrained once (``factors``) and kept fixed; the
    factor source owns them and does the objective's work (its system, solve
    and scores), so this adapter adds the prior and the ranking. A new
    user's vector is the exact minimiser of the pretraining loss over their
    support set, optionally with a prior learned from the warm users (empirical
    Bayes), which keeps 1- to 3-shot users sensible. For implicit feedback
    (``objective="implicit"``, iALS)::

        (Y^T C_u Y + lambda I + s P) x = Y^T C_u p_u + s P mu

    with ``P = Sigma^-1`` (``prior="gaussian"``) or ``P = I / sigma^2``
    (``prior="mean"``), ``mu`` and ``Sigma`` the mean and covariance of the warm
    users' vectors and ``sigma^2 = trace(Sigma) / f`` their average variance, so
    that a strength means the same for both priors and any scale of the factors.
    Users with fewer shots than factors are solved through the Woodbury
    identity in O(k^2 f + k^3); others by a direct f x f solve. Both are batched
    over users.

    For explicit ratings (``objective="explicit"``) the model is
    ``r_ui = mu_r + b_u + b_i + x_u . y_i``, with the item side learned on the
    warm users (:class:`~skfewrec.factors._explicit.ExplicitALSFactors`), and the user
    side ``w_u = [x_u, b_u]`` the ridge (MAP) solve on the user's ratings::

        (Z_S^T Z_S + lambda I + s P) w = Z_S^T (r_S - mu_r - b_S) + s P mu

    with ``z_i = [y_i, 1]``; ``decision_function`` then gives predicted ratings.

    Parameters
    ----------
    factors : estimator, default=None
        The factor source: an :class:`ALSFactors` (``ExplicitALSFactors`` for
        ``objective="explicit"``), fitted on ``X`` by ``fit``, or a
        :class:`~sklearn.frozen.FrozenEstimator` wrapping a fitted one (used as
        is, kept by ``clone``). None means ``ALSFactors(random_state=random_state)``
        (``ExplicitALSFactors(random_state=random_state)``).
    regularization : float, default=None
        The ridge ``lambda``; None uses the factors' own. Must be > 0 for
        ``objective="explicit"``.
    confidence_scale : float, default=None
        ``c = confidence_scale * x``; None uses the factors' own. Must be None
        for ``objective="explicit"`` (ratings are not confidences).
    prior : {"none", "mean", "gaussian"}, default="gaussian"
        "none": plain iALS (identical to implicit's ``recalculate_user``) or plain
        ridge; "mean": shrink toward the warm users' mean vector; "gaussian": the
        empirical-Bayes MAP with the warm users' mean and covariance.
    prior_strength : float or "auto", default="auto"
        ``s`` above; ignored for ``prior="none"``. 1 weighs the prior as one
        warm user's spread; larger trusts the population more, smaller the shots.
        "auto" chooses it on simulated few-shot episodes of held-out warm users
        (see the "Defaults" page); 1 for ``objective="explicit"``.
    shrinkage : float or "auto", default="auto"
        ``kappa`` of the support shrinkage: for ranking (``recommend``,
        ``decision_function``), a user's vector is pulled toward the mean vector
        of the warm users who share their shots (``item_means_``) with weight
        ``kappa / (kappa + n_shots)``, so a 1-shot user mostly gets what the users
        who took that item have in common; ``transform`` returns the exact solve,
        unshrunk. 0 turns it off. "auto" chooses it with ``prior_strength``; 0 for
        ``objective="explicit"``.
    knn_weight : float or "auto", default="auto"
        ``beta`` of a hybrid ranking: the factor scores blended with a
        conditional-probability item-kNN score of the shots (each item's 100
        nearest items, ``sim(i, j) = co(i, j) / n_i``; the signal a dot product
        misses on sparse catalogues), ``f / max|f| + beta * s / max s`` per user.
        0 is the pure factor model (and its fused top-k). "auto" chooses it with
        ``prior_strength`` on the same episodes (0 allowed); 0 for
        ``objective="explicit"``, and 0 when ``prior_strength`` and ``shrinkage``
        are both given and the factors' own search did not score the blend (a
        pinned adapter is not refitted on a hold-out for the blend alone).
        Applies to ``recommend`` and ``decision_function``, not to ``transform``.
    objective : {"implicit", "explicit"}, default="implicit"
        "implicit": values are confidences (counts, clicks); "explicit": values
        are ratings, fitted by biased ridge regression on the rated items only.
    rating_scale : tuple of (float, float), default=None
        The declared ``(low, high)`` of the values, with ``0 < low <= high``;
        when given, ``fit``, ``add_items`` and every method taking users refuse
        values outside it. None: no check.
    solver : {"auto", "woodbury", "direct"}, default="auto"
        How each user's system is solved; "auto" picks the cheaper per user.
    convention : {"implicit", "spark"}, default=None
        How values become confidences and how the ridge scales: implicit's
        (``c = scale * x``, ridge ``lambda``) or Spark MLlib's
        (``c = 1 + scale * x``, ridge ``lambda * n_u``). None uses the factors'
        own (``factors_.convention_``). Must be None for ``objective="explicit"``.
    n_jobs : int, default=None
        BLAS threads while folding in and threads while ranking. None: 1.
    random_state : int, RandomState instance or None, default=None
        Seeds the factor source that ``fit`` trains: the default one, and a
        passed unfitted one (whose own ``random_state`` it then replaces, as
        scikit-learn's ensembles do). None keeps a passed source's own seed. A
        frozen source is never refitted, so it is unaffected. Also seeds the
        hold-out of the "auto" choices.

    Attributes
    ----------
    factors_ : ALSFactors or ExplicitALSFactors
        The fitted factor source.
    prior_strength_ : float
        The prior strength in use (the chosen one for "auto").
    shrinkage_ : float
        The support shrinkage in use (the chosen one for "auto").
    knn_weight_ : float
        The item-kNN weight in use (the chosen one for "auto").
    knn_similarity_ : csr_matrix of shape (n_items, n_items), float32, or None
        The item neighbours of the hybrid ranking, learned from the warm users;
        None when ``knn_weight_`` is 0. Items added later (:meth:`add_items`)
        have none, so after :meth:`add_items` the ranking is the factor model's
        (without the blend) until the model is refitted.
    item_means_ : ndarray of shape (n_items, n_components), float32, or None
        Each item's mean warm-user vector (the target of the support
        shrinkage); None for ``objective="explicit"``.
    auto_report_ : dict or None
        How "auto" chose ``prior_strength_`` and ``shrinkage_``: taken from the
        factor source's own search (``factors_.auto_report_``) when it scored this
        very adapter, otherwise measured here on held-out warm users; None when
        nothing was "auto".
    regularization_ : float
        The ridge in use.
    confidence_scale_ : float or None
        The confidence scale in use (None for ``objective="explicit"``).
    convention_ : str or None
        The confidence convention in use (None for ``objective="explicit"``).
    item_factors_ : ndarray of shape (n_items, n_components), float32
        ``factors_.item_factors_`` (read-only); grows with :meth:`add_items`.
    item_biases_ : ndarray of shape (n_items,), float32
        Only for ``objective="explicit"``: the items' rating biases ``b_i``
        (``factors_.item_biases_``, read-only).
    global_mean_ : float
        Only for ``objective="explicit"``: the mean warm rating ``mu_r``
        (``factors_.global_mean_``, read-only).
    user_activity_ : ndarray of shape (n_warm_users,), int64, or None
        The number of items each row of ``X`` interacted with, kept for
        :meth:`add_items` when those rows are the factor source's users
        (None otherwise).
    item_counts_ : ndarray of shape (n_items,), int64
        Number of warm users who interacted with each item when the factors were
        trained (the factor source's ``item_counts_``; for prefit factors without
        counts, the users of ``X`` given to ``fit``). Items with 0 are unknown to
        the model: shots on them are ignored.
    mean_ : ndarray of shape (n_user_components,)
        Mean of the warm users' (plain fold-in) vectors; ``n_user_components``
        is ``n_components``, plus one (the user bias, last) for
        ``objective="explicit"``.
    covariance_ : ndarray of shape (n_user_components, n_user_components)
        Their shrunk (Ledoit-Wolf) covariance.
    n_features_in_ : int
        The catalogue size.

    See Also
    --------
    ALSFactors : the implicit pretrainer.
    skfewrec.factors._explicit.ExplicitALSFactors : the explicit-ratings pretrainer.

    Notes
    -----
    A user without interactions gets the prior's answer: ``mean_`` for
    ``prior="none"`` (a popularity-like ranking), the prior's solve otherwise.
    So does a user whose every shot is on an unknown item (``item_counts_ == 0``);
    shots on unknown items are ignored for every user.

    Examples
    --------
    >>> from skfewrec import ALSFactors, ClosedFormFoldIn
    >>> from skfewrec.datasets import make_interactions
    >>> X = make_interactions(n_users=300, n_items=100, random_state=0).X
    >>> rec = ClosedFormFoldIn(factors=ALSFactors(n_components=8, random_state=0),
    ...                        prior="gaussian").fit(X[:250])
    >>> ids, scores = rec.recommend(X[250:], k=5)
    >>> ids.shape
    (50, 5)

    Explicit ratings: ``decision_function`` predicts them.

    >>> from skfewrec.factors._explicit import ExplicitALSFactors
    >>> R = make_interactions(n_users=300, n_items=100, random_state=0).X
    >>> R.data = 1.0 + (R.data % 5)  # ratings 1 to 5
    >>> rec = ClosedFormFoldIn(ExplicitALSFactors(n_components=4, random_state=0),
    ...                        objective="explicit", prior="gaussian",
    ...                        rating_scale=(1, 5)).fit(R[:250])
    >>> rec.decision_function(R[250:]).shape
    (50, 100)
    """

    _derived_caches = ("_system", "_empty_vector", "_unknown")
    _item_attributes = ("item_factors_", "item_biases_", "global_mean_")

    _parameter_constraints = {
        "factors": [HasMethods(["fit"]), None],
        "regularization": [Interval(Real, 0, None, closed="left"), None],
        "confidence_scale": [Interval(Real, 0, None, closed="neither"), None],
        "prior": [StrOptions({"none", "mean", "gaussian"})],
        "prior_strength": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "shrinkage": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "knn_weight": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "objective": [StrOptions({"implicit", "explicit"})],
        "rating_scale": [tuple, list, None],
        "solver": [StrOptions({"auto", "woodbury", "direct"})],
        "convention": [StrOptions(set(CONVENTIONS)), None],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        factors=None,
        *,
        regularization=None,
        confidence_scale=None,
        prior="gaussian",
        prior_strength="auto",
        shrinkage="auto",
        knn_weight="auto",
        objective="implicit",
        rating_scale=None,
        solver="auto",
        convention=None,
        n_jobs=None,
        random_state=None,
    ):
        self.factors = factors
        self.regularization = regularization
        self.confidence_scale = confidence_scale
        self.prior = prior
        self.prior_strength = prior_strength
        self.shrinkage = shrinkage
        self.knn_weight = knn_weight
        self.objective = objective
        self.rating_scale = rating_scale
        self.solver = solver
        self.convention = convention
        self.n_jobs = n_jobs
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Pretrain (or take) the item factors and learn the prior from warm users.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            The warm users' interactions (ratings for ``objective="explicit"``).
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        if self.rating_scale is not None:
            check_rating_scale(self.rating_scale)
        X = validate_interactions(self, X, reset=True)
        check_ratings_in_scale(X, self.rating_scale)
        default, required, expected = _FACTOR_SOURCES[self.objective]
        self.factors_ = fit_factor_source(
            self.factors,
            X,
            default(random_state=self.random_state),
            required=required,
            expected=expected,
            random_state=self.random_state,
        )
        params = self.factors_.fold_in_params(
            regularization=self.regularization,
            confidence_scale=self.confidence_scale,
            convention=self.convention,
        )
        self.regularization_ = params["regularization"]
        self.confidence_scale_ = params["confidence_scale"]
        self.convention_ = params["convention"]
        # "unknown" items are those the factors were trained without; prefit factors
        # from elsewhere (no counts) fall back to the warm users given here
        counts = getattr(self.factors_, "item_counts_", None)
        if counts is None:
            counts = np.bincount(X.indices, minlength=X.shape[1])
        self.item_counts_ = np.array(counts, dtype=np.int64)
        # the warm users' activity, for add_items(method="support"): X's rows must be theirs
        warm_users = getattr(self.factors_, "user_factors_", None)
        same_rows = warm_users is not None and warm_users.shape[0] == X.shape[0]
        self.user_activity_ = np.diff(X.indptr).astype(np.int64) if same_rows else None
        with blas_limits(1):
            warm = self._solve(X, self._make_system(None, None))
        self.mean_, self.covariance_ = warm_prior(warm)
        implicit = self.objective == "implicit"
        self.item_means_ = item_conditional_means(X, warm) if implicit else None
        chosen, self.auto_report_ = self._choose_prior(X)
        self.prior_strength_, self.shrinkage_, self.knn_weight_ = chosen
        self.knn_similarity_ = (
            conditional_neighbors(X, KNN_NEIGHBORS, KNN_POP_DISCOUNT)
            if self.knn_weight_ > 0
            else None
        )
        self._rebuild()
        return self

    def _choose_prior(self, X):
        """``(prior_strength_, shrinkage_, knn_weight_)`` and how they were chosen."""
        names = ("prior_strength", "shrinkage", "knn_weight")
        given = {k: getattr(self, k) for k in names}
        auto = [k for k, v in given.items() if isinstance(v, str)]
        if not auto:
            return tuple(float(given[k]) for k in names), None
        chosen = {k: v for k, v in given.items() if k not in auto}
        if self.objective == "explicit":
            chosen = {"prior_strength": 1.0, "shrinkage": 0.0, "knn_weight": 0.0, **chosen}
            report = {"fallback": "explicit ratings: prior_strength 1, shrinkage 0, knn_weight 0"}
            return tuple(float(chosen[k]) for k in names), report
        searched = getattr(self.factors_, "auto_report_", None)
        if auto == ["knn_weight"] and not self._scored_by(searched):
            # the prior and shrinkage were pinned (a plain fold-in is asked for): no
            # hold-out refit just for the blend
            chosen["knn_weight"] = 0.0
            report = {"fallback": "prior_strength and shrinkage given: knn_weight 0"}
            return tuple(float(chosen[k]) for k in names), report
        if self._scored_by(searched):
            # the factors' own search scored this very adapter on held-out warm users
            found = {k: searched["settings"].get(k, 0.0) for k in auto}
            chosen = {**found, **chosen}
            report = {"source": "factors_.auto_report_", "settings": dict(chosen)}
        else:
            chosen, report = self._measure_prior(X, given, chosen)
        return tuple(float(chosen[k]) for k in names), report

    def _scored_by(self, searched):
        """Whether a factor source's search scored this adapter's settings."""
        return (
            searched is not None
            and "settings" in searched
            and "fallback" not in searched
            and self.prior == "gaussian"
            and self.regularization is None
            and self.confidence_scale is None
            and self.convention is None
        )

    def _measure_prior(self, X, given, fixed):
        """Choose the "auto" values on held-out warm users (a factor refit on the rest,
        unless the factors are prefit: then they may have seen the held-out rows)."""
        from sklearn.base import clone
        from sklearn.frozen import FrozenEstimator

        from .._auto import KNN_WEIGHTS, SHRINKAGES, STRENGTHS, choose_prior, holdout_users

        rng = check_random_state(self.random_state)
        X_fit, X_val = holdout_users(X, random_state=rng)
        if isinstance(self.factors, FrozenEstimator):
            factors = self.factors
        else:
            source = clone(self.factors_).set_params(
                regularization=self.factors_.regularization_,
                confidence_scale=self.factors_.confidence_scale_,
            )
            factors = FrozenEstimator(source.fit(X_fit))
        adapter = clone(self).set_params(
            factors=factors, prior_strength=1.0, shrinkage=0.0, knn_weight=0.0
        )
        strengths = (
            STRENGTHS
            if given["prior_strength"] == "auto" and self.prior != "none"
            else (fixed.get("prior_strength", 1.0),)
        )
        shrinkages = SHRINKAGES if given["shrinkage"] == "auto" else (fixed["shrinkage"],)
        weights = KNN_WEIGHTS if given["knn_weight"] == "auto" else (fixed["knn_weight"],)
        similarity = (
            conditional_neighbors(X_fit, KNN_NEIGHBORS, KNN_POP_DISCOUNT) if any(weights) else None
        )
        chosen, report = choose_prior(
            adapter,
            X_fit,
            X_val,
            strengths=strengths,
            shrinkages=shrinkages,
            knn_weights=weights,
            similarity=similarity,
            n_jobs=effective_n_jobs(self.n_jobs),
            random_state=int(rng.randint(np.iinfo(np.int32).max)),
        )
        report.update(source="measured", settings=dict(chosen), prefit=factors is self.factors)
        return {**chosen, **fixed}, report

    def add_items(self, X_new_items, *, method="support"):
        """Append items added after fitting, placed from the warm users who interacted with them.

        Two placements (``method``):

        - ``"support"`` (default): each new item's vector is the
          activity-weighted sum of its support users' vectors through the warm
          items' Gram matrix, scaled to the warm scores' spread
          (:func:`~skfewrec.adapters._items.support_item_factors`). On the
          k-shot item protocol (``benchmarks/new_items.py``) it finds new items
          more often than the exact fold-in on ml-latest-small and Gowalla at
          every number of support users, hence the default. It needs the warm
          users' activity (``user_activity_``, kept by ``fit`` when ``X``'s rows
          are the factor source's users); without it (a prefit source trained
          on other rows, a model saved before it), and for
          ``objective="explicit"``, the items are folded in as by ``"fold_in"``.
        - ``"fold_in"``: the exact closed-form solve of the pretraining
          objective with the warm users' vectors fixed (the item half-step of
          ALS, :meth:`ALSFactors.extend_items`).

        For the best new items, with the neighbours of their support users and
        side features, use :class:`~skfewrec.adapters.NewItemRecommender`.
        The new items get the column indices ``n_features_in_`` onwards,
        ``recommend`` ranks them, and new users' interaction matrices must then
        have the grown number of columns.

        Parameters
        ----------
        X_new_items : {array-like, sparse matrix} of shape (n_warm_users, n_new_items)
            The warm users' interactions with the new items: one row per warm
            user, in the order of the rows the factor source was trained on
            (the rows ``fit`` saw, unless the factor source was prefit).
        method : {"support", "fold_in"}, default="support"
            How the new items are placed (see above).

        Returns
        -------
        self : object
            The estimator, with ``factors_`` (so ``item_factors_``) and
            ``n_features_in_`` grown.

        Warns
        -----
        UserWarning
            When a new item has no interaction from any warm user: it gets a zero
            vector (a score of 0 for every user, so it ranks as an unknown item)
            and shots on it are ignored when folding in users.

        Examples
        --------
        >>> from skfewrec import ALSFactors, ClosedFormFoldIn
        >>> from skfewrec.datasets import make_interactions
        >>> X = make_interactions(n_users=200, n_items=60, random_state=0).X
        >>> rec = ClosedFormFoldIn(ALSFactors(n_components=8, random_state=0)).fit(X[:, :50])
        >>> rec.add_items(X[:, 50:]).n_features_in_
        60
        >>> rec.item_factors_.shape
        (60, 8)
        """
        check_is_fitted(self)
        if method not in ("support", "fold_in"):
            raise ValueError(f'method must be "support" or "fold_in", got {method!r}.')
        activity = getattr(self, "user_activity_", None)
        new = check_interactions(X_new_items, name="X_new_items")
        warm = getattr(self.factors_, "user_factors_", None)
        if (
            method == "fold_in"
            or self.objective != "implicit"
            or activity is None
            or warm is None
            or np.shape(activity) != (warm.shape[0],)
        ):
            super().add_items(new)
        else:
            self._check_new_item_values(new)
            self.factors_._warm_users(new)  # the checks of the fold-in: one row per warm user
            if np.min(activity, initial=0) < 0:
                raise ValueError("user_activity_ holds negative counts; refit the model.")
            V = self.factors_.item_factors_
            vectors = support_item_factors(warm, V, new, activity)
            self.factors_ = extend_with_vectors(self.factors_, new, vectors)
            self._grew_items(new)
        if self.item_means_ is not None:
            # the new items' means from the warm users who touched them (zero: unknown)
            warm = self.factors_.user_factors_
            means = (
                item_conditional_means(new, warm)
                if warm.shape[0] == new.shape[0]
                else np.zeros((new.shape[1], self.item_means_.shape[1]), dtype=np.float32)
            )
            self.item_means_ = np.vstack([self.item_means_, means])
        return self

    def _blas_threads(self):
        return effective_n_jobs(self.n_jobs)

    def _prior_terms(self):
        # models saved before "auto" existed hold only the parameter
        strength = getattr(self, "prior_strength_", self.prior_strength)
        return prior_terms(self.prior, strength, self.mean_, self.covariance_)

    def _make_system(self, precision, mean):
        return self.factors_.fold_in_system(
            regularization=self.regularization_,
            convention=self.convention_,
            prior_precision=precision,
            prior_mean=mean,
        )

    def _rebuild(self):
        """Recompute the private caches derived from the public fitted state."""
        self._system = self._make_system(*self._prior_terms())
        # the answer for a user with no (known) shots: the prior's, or the warm mean
        self._empty_vector = self.mean_ if self.prior == "none" else self._system.x0
        self._unknown = None if self.item_counts_.all() else self.item_counts_ == 0

    def _validate_users(self, X):
        X = super()._validate_users(X)
        check_ratings_in_scale(X, self.rating_scale)
        return X

    def _check_new_item_values(self, X_new):
        check_ratings_in_scale(X_new, self.rating_scale, name="X_new_items")

    def _solve(self, X, system):
        # n_jobs threads solve batches of users, each with single-threaded BLAS
        return self.factors_.fold_in(
            X,
            system,
            regularization=self.regularization_,
            confidence_scale=self.confidence_scale_,
            convention=self.convention_,
            solver=self.solver,
            n_jobs=self._blas_threads(),
        )

    def _drop_unknown_shots(self, X):
        """X without its shots on items no warm user touched (item_counts_ == 0)."""
        if self._unknown is None or X.nnz == 0:
            return X
        keep = ~self._unknown[X.indices]
        if keep.all():
            return X
        return select_entries(X, keep, type(X))

    def _user_vectors(self, X):
        X = self._drop_unknown_shots(X)
        with blas_limits(1):
            U = self._solve(X, self._system)
        empty = np.diff(X.indptr) == 0
        if empty.any():
            U[empty] = self._empty_vector
        return U.astype(np.float32)

    def _scoring_factors(self, X, columns):
        # the ranking uses the shrunk vectors; transform stays the exact (MAP) solve
        U = self._user_vectors(X)
        shrinkage = getattr(self, "shrinkage_", 0.0)  # 0 for models saved before it
        if shrinkage:
            U = shrink_to_support(U, X, self.item_means_, shrinkage)
        return self.factors_.scoring_factors(U, columns)

    def _knn(self, n_items):
        """The item neighbours, or None: no blend (weight 0, or items added since fit)."""
        S = getattr(self, "knn_similarity_", None)  # None for models saved before it
        if S is None or not getattr(self, "knn_weight_", 0.0):
            return None
        if S.ndim != 2 or S.shape[0] != S.shape[1] or S.shape[0] > n_items:
            raise ValueError(
                f"knn_similarity_ has shape {S.shape}, not square within the {n_items} items: "
                "the model is corrupt; refit it."
            )
        if S.shape[0] < n_items:
            # items added since fit have no neighbours: the blend would bury them, so
            # the ranking is the factor model's until a refit
            return None
        return pad_square(S, n_items)

    def _topk(self, X, k, columns, seen, exclude):
        S = self._knn(X.shape[1])
        if S is None:
            return super()._topk(X, k, columns, seen, exclude)
        if columns is not None or exclude is not None or not _same_pattern(seen, X):
            # the blended kernel filters X's own items only: a wider seen matrix (the raw
            # log's items under a data contract) goes through the generic top-k
            return RecommenderMixin._topk(self, X, k, columns, seen, exclude)
        U, V = self._scoring_factors(X, None)
        n_jobs = effective_n_jobs(self.n_jobs)
        return blended_topk(U, V, X, S, self.knn_weight_, k, n_jobs, seen=seen is not None)

    def _scorer(self, X, columns):
        S = self._knn(X.shape[1])
        if S is None:
            return super()._scorer(X, columns)
        U, V = self._scoring_factors(X, columns)
        U = np.ascontiguousarray(U, dtype=np.float32)
        Vt = np.ascontiguousarray(V.T, dtype=np.float32)
        S = S if columns is None else S[:, columns].tocsr()
        B = X.copy()
        B.data = np.ones_like(B.data, dtype=np.float32)
        weight = self.knn_weight_

        def score_block(start, stop):
            knn = np.asarray((B[start:stop] @ S).toarray(), dtype=np.float32)
            return blend_scores(U[start:stop] @ Vt, knn, weight)

        return score_block

    @property
    def item_biases_(self):
        """ndarray of shape (n_items,), float32: ``factors_.item_biases_`` (explicit)."""
        return np.asarray(self.factors_.item_biases_, dtype=np.float32)

    @item_biases_.setter
    def item_biases_(self, value):
        self._restore_item_attribute("item_biases_", value)

    @property
    def global_mean_(self):
        """float: ``factors_.global_mean_``, the mean warm rating (explicit)."""
        return float(self.factors_.global_mean_)

    @global_mean_.setter
    def global_mean_(self, value):
        if value != self.global_mean_:
            raise ValueError(
                f"global_mean_ ({value!r}) differs from factors_.global_mean_ "
                f"({self.global_mean_!r}): it is read from factors_, and the saved model is "
                "inconsistent; refit it."
            )

    def transform(self, X):
        """Fold in users: their vectors given their support sets, item factors fixed.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            The users' interactions (shots).

        Returns
        -------
        U : ndarray of shape (n_users, n_user_components), float32
            One vector per user; users without (known) interactions get the
            prior's answer. For ``objective="explicit"`` the last column is the
            user's rating bias ``b_u``.
        """
        X = self._validate_users(X)
        return self._user_vectors(X)


def _same_pattern(seen, X):
    """True when ``seen`` is None or marks exactly X's stored cells."""
    return (
        seen is None
        or seen is X
        or (
            seen.shape == X.shape
            and np.array_equal(seen.indptr, X.indptr)
            and np.array_equal(seen.indices, X.indices)
        )
    )
