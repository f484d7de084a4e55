"""ClosedFormFoldIn: the exact iALS fold-in of new users, with an empirical-Bayes prior."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from threadpoolctl import threadpool_limits

from ._base import FactorRecommenderMixin, fit_factor_source, validate_interactions
from ._compat import HasMethods, Interval, StrOptions, _fit_context
from ._factors import CONVENTIONS, ALSFactors, confidence_coefficients, ridge_per_user
from ._solvers import shared_system, solve_users
from ._topk import effective_n_jobs


def warm_prior(U, *, eps=1e-6):
    """Mean and (Ledoit-Wolf shrunk) covariance of warm users' vectors.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._closed_form import warm_prior
    >>> mean, cov = warm_prior(np.random.default_rng(0).normal(size=(50, 3)))
    >>> mean.shape, cov.shape
    ((3,), (3, 3))
    """
    from sklearn.covariance import ledoit_wolf

    U = np.asarray(U, dtype=np.float64)
    mean = U.mean(axis=0)
    f = U.shape[1]
    if U.shape[0] > 1:
        cov = ledoit_wolf(U - mean, assume_centered=True)[0]
    else:
        cov = np.zeros((f, f))
    scale = np.trace(cov) / f
    cov = cov + max(eps, 1e-3 * scale) * np.eye(f)
    return mean, cov


class ClosedFormFoldIn(FactorRecommenderMixin, TransformerMixin, BaseEstimator):
    """Recommend to new users from a few interactions: the exact iALS fold-in.

    The item factors are pretrained once (``factors``) and kept fixed. A new
    user's vector is the exact minimiser of the iALS loss over their support
    set, optionally with a prior learned from the warm users (empirical Bayes),
    which keeps 1- to 3-shot users sensible::

        (Y^T C_u Y + lambda I + s P) x = Y^T C_u p_u + s P mu

    with ``P = I`` (``prior="mean"``) or ``P = Sigma^-1`` (``prior="gaussian"``),
    ``mu`` and ``Sigma`` the mean and covariance of the warm users' vectors.
    Users with fewer shots than factors are solved through the Woodbury
    identity in O(k^2 f + k^3); others by a direct f x f solve. Both are batched
    over users.

    Parameters
    ----------
    factors : estimator, default=None
        The factor source: an :class:`ALSFactors` (fitted on ``X`` by ``fit``), or a
        :class:`~sklearn.frozen.FrozenEstimator` wrapping a fitted one (used as is,
        kept by ``clone``). None means ``ALSFactors()``.
    regularization : float, default=None
        The ridge ``lambda``; None uses the factors' own.
    confidence_scale : float, default=None
        ``c = confidence_scale * x``; None uses the factors' own.
    prior : {"none", "mean", "gaussian"}, default="none"
        "none": plain iALS (identical to implicit's ``recalculate_user``);
        "mean": shrink toward the warm users' mean vector; "gaussian": the
        empirical-Bayes MAP with the warm users' mean and covariance.
    prior_strength : float, default=1.0
        ``s`` above; ignored for ``prior="none"``.
    solver : {"auto", "woodbury", "direct"}, default="auto"
        How each user's system is solved; "auto" picks the cheaper per user.
    convention : {"implicit", "spark"}, default=None
        How values become confidences and how the ridge scales: implicit's
        (``c = scale * x``, ridge ``lambda``) or Spark MLlib's
        (``c = 1 + scale * x``, ridge ``lambda * n_u``). None uses the factors'
        own (``factors_.convention_``).
    n_jobs : int, default=None
        BLAS threads while folding in and threads while ranking. None: 1.

    Attributes
    ----------
    factors_ : ALSFactors
        The fitted factor source.
    regularization_, confidence_scale_ : float
        The ridge and confidence scale in use.
    convention_ : str
        The confidence convention in use.
    item_factors_ : ndarray of shape (n_items, n_components), float32
    mean_ : ndarray of shape (n_components,)
        Mean of the warm users' (plain fold-in) vectors.
    covariance_ : ndarray of shape (n_components, n_components)
        Their shrunk covariance.
    n_features_in_ : int
        The catalogue size.

    Notes
    -----
    A user without interactions gets the prior's answer: ``mean_`` for
    ``prior="none"`` (a popularity-like ranking), the prior's solve otherwise.

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
    """

    _parameter_constraints = {
        "factors": [HasMethods(["fit"]), None],
        "regularization": [Interval(Real, 0, None, closed="left"), None],
        "confidence_scale": [Interval(Real, 0, None, closed="neither"), None],
        "prior": [StrOptions({"none", "mean", "gaussian"})],
        "prior_strength": [Interval(Real, 0, None, closed="left")],
        "solver": [StrOptions({"auto", "woodbury", "direct"})],
        "convention": [StrOptions(set(CONVENTIONS)), None],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        factors=None,
        *,
        regularization=None,
        confidence_scale=None,
        prior="none",
        prior_strength=1.0,
        solver="auto",
        convention=None,
        n_jobs=None,
    ):
        self.factors = factors
        self.regularization = regularization
        self.confidence_scale = confidence_scale
        self.prior = prior
        self.prior_strength = prior_strength
        self.solver = solver
        self.convention = convention
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Pretrain (or take) the item factors and learn the prior from warm users.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            The warm users' interactions.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X = validate_interactions(self, X, reset=True)
        self.factors_ = fit_factor_source(self.factors, X, ALSFactors())
        self.item_factors_ = np.ascontiguousarray(self.factors_.item_factors_, dtype=np.float32)
        self.regularization_ = float(
            self.factors_.regularization if self.regularization is None else self.regularization
        )
        self.confidence_scale_ = float(
            self.factors_.confidence_scale
            if self.confidence_scale is None
            else self.confidence_scale
        )
        self.convention_ = (
            getattr(self.factors_, "convention_", "implicit")
            if self.convention is None
            else self.convention
        )
        shared, _ = ridge_per_user(X.indptr, self.regularization_, self.convention_)
        with threadpool_limits(self._blas_threads(), user_api="blas"):
            warm = self._solve(X, shared_system(self.item_factors_, shared))
        self.mean_, self.covariance_ = warm_prior(warm)
        self._rebuild()
        return self

    def _blas_threads(self):
        return effective_n_jobs(self.n_jobs)

    def _prior_terms(self):
        f = self.item_factors_.shape[1]
        if self.prior == "mean":
            return self.prior_strength * np.eye(f), self.mean_
        if self.prior == "gaussian":
            return self.prior_strength * np.linalg.inv(self.covariance_), self.mean_
        return None, None

    def _rebuild(self):
        """Recompute the private caches derived from the public fitted state."""
        precision, mean = self._prior_terms()
        shared, _ = ridge_per_user(np.zeros(1), self.regularization_, self.convention_)
        self._system = shared_system(self.item_factors_, shared, precision, mean)
        # the answer for a user with no shots: the prior's, or the warm mean
        self._empty_vector = self.mean_ if self.prior == "none" else self._system["x0"]

    def __setstate__(self, state):
        super().__setstate__(state)
        if "mean_" in state:
            self._rebuild()

    def __getstate__(self):
        state = super().__getstate__()
        # derived caches are rebuilt on load, keeping pickles and bundles small
        state.pop("_system", None)
        state.pop("_empty_vector", None)
        return state

    def _solve(self, X, system):
        d, t = confidence_coefficients(X.data, self.confidence_scale_, self.convention_)
        _, extra = ridge_per_user(X.indptr, self.regularization_, self.convention_)
        return solve_users(X.indptr, X.indices, d, t, system, solver=self.solver, extra_ridge=extra)

    def _user_vectors(self, X):
        with threadpool_limits(self._blas_threads(), user_api="blas"):
            U = self._solve(X, self._system)
        empty = np.diff(X.indptr) == 0
        if empty.any():
            U[empty] = self._empty_vector
        return U.astype(np.float32)

    def transform(self, X):
        """Fold in users: their vectors given their support sets, item factors fixed.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            The users' interactions (shots).

        Returns
        -------
        U : ndarray of shape (n_users, n_components), float32
            One vector per user; users without interactions get the prior's answer.
        """
        X = self._validate_users(X)
        return self._user_vectors(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
