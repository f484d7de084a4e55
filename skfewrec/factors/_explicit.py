"""Explicit ratings: biased matrix factorisation trained by batched alternating least squares.

The model predicts a rating as ``r_ui = mu + b_u + b_i + x_u . y_i``. With the
item side ``(y_i, b_i)`` fixed, the user side ``w_u = [x_u, b_u]`` is a ridge
regression of the residuals ``r_ui - mu - b_i`` on the features ``z_i = [y_i, 1]``
over the items the user rated::

    (Z_S^T Z_S + M) w = Z_S^T (r_S - mu - b_S) + M w0

(``M``: the ridge, plus a prior's precision; ``w0 = M^-1 m``, the prior's
answer). This is the closed-form system of :mod:`skfewrec._core.solvers` with every
shot's extra confidence ``d = 1`` and target ``t = r - mu - b_i``, and without
the implicit term ``Y^T Y`` in the shared matrix, so the same batched Woodbury
and direct solvers fold users in, and train both sides of the model.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state

from .._core.compat import Interval, _fit_context, check_is_fitted
from .._core.solvers import solve_users, system_with_prior
from .._core.threads import blas_limits, effective_n_jobs
from ..base import DerivedCachesMixin, SparseFloat32TransformerMixin, validate_interactions
from ._base import FactorSourceMixin


def explicit_system(features, ridge, prior_precision=None, prior_mean=None):
    """Precompute what every explicit ridge solve shares.

    Parameters
    ----------
    features : ndarray of shape (n_items, n_features)
        ``z_i``, one row per item (``[y_i, 1]`` for a biased model).
    ridge : float or ndarray of shape (n_features,)
        The diagonal ridge.
    prior_precision : ndarray of shape (n_features, n_features), default=None
        ``s P``, already scaled by the prior strength; None for no prior.
    prior_mean : ndarray of shape (n_features,), default=None
        The prior mean ``mu``; None for a zero mean.

    Returns
    -------
    system : FoldInSystem
        What :func:`skfewrec._core.solvers.solve_users` reads.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.factors._explicit import explicit_system
    >>> system = explicit_system(np.ones((3, 2)), 0.5)
    >>> system.M
    array([[0.5, 0. ],
           [0. , 0.5]])
    """
    Z = np.asarray(features, dtype=np.float64)
    g = Z.shape[1]
    M = np.diag(np.broadcast_to(np.asarray(ridge, dtype=np.float64), (g,)))
    # no Z^T Z term: an explicit ridge sees only the rated items (every shot has d = 1)
    return system_with_prior(Z, M, prior_precision, prior_mean)


def with_bias_column(factors):
    """``[factors, 1]``: the features of a biased ridge regression."""
    factors = np.asarray(factors, dtype=np.float64)
    return np.hstack([factors, np.ones((factors.shape[0], 1))])


def solve_explicit(X, offsets, system, *, solver="auto", n_jobs=None):
    """Ridge-solve every row of ``X`` against fixed column features, batched.

    Parameters
    ----------
    X : csr_matrix of shape (n_rows, n_columns)
        Ratings; the nonzeros of a row are the observations of its ridge regression.
    offsets : ndarray of shape (n_columns,)
        Subtracted from each rating of a column (``mu + b_i``).
    system : FoldInSystem
        From :func:`explicit_system` on the columns' features.
    solver : {"auto", "woodbury", "direct"}, default="auto"
        As in :func:`skfewrec._core.solvers.solve_users`.

    Returns
    -------
    W : ndarray of shape (n_rows, n_features), float64
    """
    t = X.data.astype(np.float64) - offsets[X.indices]
    return solve_users(
        X.indptr, X.indices, np.ones_like(t), t, system, solver=solver, n_jobs=n_jobs
    )


def check_rating_scale(rating_scale):
    """Check a declared rating scale ``(low, high)`` and return it as floats.

    Examples
    --------
    >>> from skfewrec.factors._explicit import check_rating_scale
    >>> check_rating_scale((1, 5))
    (1.0, 5.0)
    """
    try:
        low, high = (float(v) for v in rating_scale)
    except (TypeError, ValueError):
        raise ValueError(
            f"rating_scale must be a pair (low, high) of numbers, got {rating_scale!r}; "
            "e.g. rating_scale=(1, 5)."
        ) from None
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low <= high):
        raise ValueError(
            f"rating_scale must satisfy 0 < low <= high, got {rating_scale!r}. A zero in X "
            "means 'no rating', so the lowest rating must be positive: shift the ratings "
            "(e.g. a 0-5 scale becomes 1-6) before fitting."
        )
    return low, high


def check_ratings_in_scale(X, rating_scale, *, name="X"):
    """Raise a clear error if a nonzero value of ``X`` is outside ``rating_scale``.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from skfewrec.factors._explicit import check_ratings_in_scale
    >>> check_ratings_in_scale(sp.csr_matrix(np.array([[6.0, 0]])), (1, 5))
    Traceback (most recent call last):
    ...
    ValueError: X has 1 rating(s) outside the declared rating_scale [1, 5] ...
    """
    if rating_scale is None or X.nnz == 0:
        return
    low, high = check_rating_scale(rating_scale)
    bad = (X.data < low) | (X.data > high)
    if bad.any():
        rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))[bad]
        raise ValueError(
            f"{name} has {int(bad.sum())} rating(s) outside the declared rating_scale "
            f"[{low:g}, {high:g}] (first: {X.data[bad][0]:g} in row {rows[0]}, column "
            f"{X.indices[bad][0]}). Fix or drop those ratings, or declare the scale they use."
        )


class ExplicitALSFactors(
    FactorSourceMixin,
    DerivedCachesMixin,
    SparseFloat32TransformerMixin,
    TransformerMixin,
    BaseEstimator,
):
    """Biased matrix factorisation of explicit ratings, trained by batched ALS.

    Learns ``r_ui ~ mu + b_u + b_i + x_u . y_i`` on the observed ratings only
    (unobserved entries are missing, not negative), alternating exact ridge
    solves of the user side ``[x_u, b_u]`` and of the item side ``[y_i, b_i]``,
    each batched over rows (no Python loop per user or item). The factor
    source of ``ClosedFormFoldIn(objective="explicit")``; ``transform`` folds in
    new users with the item side fixed, :meth:`fold_in_items` new items with
    the user side fixed (:meth:`extend_items` appends them to a copy).

    Parameters
    ----------
    n_components : int, default=32
        Number of latent factors.
    regularization : float, default=5.0
        Ridge on the factors (and biases) of every user and item.
    bias_regularization : float, default=None
        Ridge on the biases; None uses ``regularization``.
    max_iter : int, default=15
        Number of ALS sweeps (each solves every user, then every item).
    init_scale : float, default=0.1
        Standard deviation of the random initial item factors.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial item factors.
    n_jobs : int, default=None
        BLAS threads. None: 1.

    Attributes
    ----------
    item_factors_ : ndarray of shape (n_items, n_components), float32
    item_biases_ : ndarray of shape (n_items,), float32
    user_factors_ : ndarray of shape (n_users, n_components), float32
        Exact fold-ins of the training rows against the final item side.
    user_biases_ : ndarray of shape (n_users,), float32
    global_mean_ : float
        The mean training rating ``mu``.
    n_iter_ : int
        Number of ALS sweeps run.
    n_features_in_ : int
        The catalogue size.

    See Also
    --------
    ClosedFormFoldIn : with ``objective="explicit"``, folds in new users from a
        few ratings, with an empirical-Bayes prior.

    Notes
    -----
    Items (users) without a training rating get zero factors and a zero bias:
    their predicted rating is ``mu + b_u`` (``mu + b_i``).

    Examples
    --------
    >>> from skfewrec.factors._explicit import ExplicitALSFactors
    >>> from skfewrec.datasets import make_interactions
    >>> X = make_interactions(n_users=100, n_items=50, random_state=0).X
    >>> als = ExplicitALSFactors(n_components=4, random_state=0).fit(X)
    >>> als.item_factors_.shape, als.item_biases_.shape
    ((50, 4), (50,))
    """

    _derived_caches = ("_system",)

    _parameter_constraints = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "regularization": [Interval(Real, 0, None, closed="neither")],
        "bias_regularization": [Interval(Real, 0, None, closed="neither"), None],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "init_scale": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        n_components=32,
        *,
        regularization=5.0,
        bias_regularization=None,
        max_iter=15,
        init_scale=0.1,
        random_state=None,
        n_jobs=None,
    ):
        self.n_components = n_components
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.max_iter = max_iter
        self.init_scale = init_scale
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _ridge(self):
        bias = self.regularization if self.bias_regularization is None else self.bias_regularization
        return np.r_[np.full(self.n_components, float(self.regularization)), float(bias)]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the biased factorisation on the warm users' ratings.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Positive ratings; zero means "not rated".
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted estimator.
        """

        X = validate_interactions(self, X, reset=True)
        Xt = X.T.tocsr()
        f = self.n_components
        rng = check_random_state(self.random_state)
        mu = float(X.data.mean()) if X.nnz else 0.0
        V = np.hstack(
            [rng.normal(scale=self.init_scale, size=(X.shape[1], f)), np.zeros((X.shape[1], 1))]
        )
        ridge = self._ridge()
        with blas_limits(effective_n_jobs(self.n_jobs)):
            W = self._user_step(X, V, mu, ridge)
            for _ in range(self.max_iter):
                V = self._user_step(Xt, W, mu, ridge)  # the item side, by symmetry
                W = self._user_step(X, V, mu, ridge)
        self.global_mean_ = mu
        self.item_factors_ = np.ascontiguousarray(V[:, :f], dtype=np.float32)
        self.item_biases_ = V[:, f].astype(np.float32)
        self.user_factors_ = np.ascontiguousarray(W[:, :f], dtype=np.float32)
        self.user_biases_ = W[:, f].astype(np.float32)
        self.n_iter_ = self.max_iter
        self._rebuild()
        return self

    @staticmethod
    def _user_step(X, other, mu, ridge):
        """Solve every row of X for ``[x, b]`` with the other side ``[y, b]`` fixed."""
        features = with_bias_column(other[:, :-1])
        return solve_explicit(X, mu + other[:, -1], explicit_system(features, ridge))

    def _rebuild(self):
        """Recompute the private caches derived from the public fitted state."""
        self._system = explicit_system(with_bias_column(self.item_factors_), self._ridge())

    def transform(self, X):
        """Fold in users: the factors of their ridge solve, item side fixed.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            The users' ratings.

        Returns
        -------
        U : ndarray of shape (n_users, n_components), float32
            User factors; zero for users without ratings. The users' biases are
            not returned (see ``ClosedFormFoldIn(objective="explicit")``).
        """

        check_is_fitted(self)
        X = validate_interactions(self, X, reset=False)
        with blas_limits(effective_n_jobs(self.n_jobs)):
            W = self.fold_in(X, self._system)
        return W[:, : self.n_components].astype(np.float32)

    def fold_in_params(self, regularization=None, confidence_scale=None, convention=None):
        """The fold-in settings of an adapter: its ridge, or these factors' own.

        Parameters
        ----------
        regularization : float, default=None
            The ridge on the user side ``[x_u, b_u]``; None: ``self.regularization``.
            Must be > 0.
        confidence_scale, convention : None
            Settings of implicit feedback: they say how values become
            confidences, which ratings do not, so anything but None is refused.

        Returns
        -------
        params : dict
            ``regularization``, and ``confidence_scale`` and ``convention`` (None).

        Examples
        --------
        >>> from skfewrec.factors import ExplicitALSFactors
        >>> from skfewrec.datasets import make_interactions
        >>> X = make_interactions(n_users=50, n_items=20, random_state=0).X
        >>> ExplicitALSFactors(n_components=2, random_state=0).fit(X).fold_in_params()
        {'regularization': 5.0, 'confidence_scale': None, 'convention': None}
        """
        check_is_fitted(self)
        for name, value in (("confidence_scale", confidence_scale), ("convention", convention)):
            if value is not None:
                raise ValueError(
                    f"{name}={value!r} does nothing for explicit ratings: it says how implicit "
                    "feedback becomes confidences, and a rating is fitted as it is. Leave "
                    f"{name}=None with objective='explicit'."
                )
        ridge = float(self.regularization if regularization is None else regularization)
        if ridge <= 0:
            raise ValueError(
                f"objective='explicit' needs regularization > 0 (got {ridge:g}): a user with "
                "fewer ratings than factors has no unique ridge solution without it."
            )
        return {"regularization": ridge, "confidence_scale": None, "convention": None}

    def fold_in_system(
        self, *, regularization, convention=None, prior_precision=None, prior_mean=None
    ):
        """The immutable system new users' ``[x_u, b_u]`` are solved against.

        Parameters
        ----------
        regularization : float
            The ridge on every coordinate of ``[x_u, b_u]``.
        convention : None
            Unused (explicit ratings have no confidence convention).
        prior_precision : ndarray of shape (n_components + 1, n_components + 1), default=None
            ``s P``; None for no prior.
        prior_mean : ndarray of shape (n_components + 1,), default=None
            The prior mean.

        Returns
        -------
        system : FoldInSystem

        Examples
        --------
        >>> from skfewrec.factors import ExplicitALSFactors
        >>> from skfewrec.datasets import make_interactions
        >>> X = make_interactions(n_users=50, n_items=20, random_state=0).X
        >>> als = ExplicitALSFactors(n_components=2, random_state=0).fit(X)
        >>> als.fold_in_system(regularization=1.0).M.shape
        (3, 3)
        """
        features = with_bias_column(self.item_factors_)
        return explicit_system(features, regularization, prior_precision, prior_mean)

    def fold_in(
        self,
        X,
        system,
        *,
        regularization=None,
        confidence_scale=None,
        convention=None,
        solver="auto",
        n_jobs=None,
    ):
        """Users' ``[x_u, b_u]``: their ridge solves against ``system`` (float64).

        Parameters
        ----------
        X : csr_matrix of shape (n_users, n_items)
            The users' ratings (already validated).
        system : FoldInSystem
            From :meth:`fold_in_system` (its ridge is the one solved with).
        regularization, confidence_scale, convention : None
            Accepted for the adapters' uniform call; the ridge is ``system``'s.
        solver : {"auto", "woodbury", "direct"}, default="auto"
            How each user's system is solved.
        n_jobs : int, default=None
            Threads solving batches of users (None: 1).

        Returns
        -------
        W : ndarray of shape (n_users, n_components + 1), float64
            The factors, then the user's rating bias.

        Examples
        --------
        >>> from skfewrec.factors import ExplicitALSFactors
        >>> from skfewrec.datasets import make_interactions
        >>> X = make_interactions(n_users=50, n_items=20, random_state=0).X
        >>> als = ExplicitALSFactors(n_components=2, random_state=0).fit(X)
        >>> als.fold_in(X[:3], als.fold_in_system(regularization=1.0)).shape
        (3, 3)
        """
        offsets = self.global_mean_ + self.item_biases_.astype(np.float64)
        return solve_explicit(X, offsets, system, solver=solver, n_jobs=n_jobs)

    def scoring_factors(self, U, columns=None):
        """User and item matrices whose products are predicted ratings.

        ``[x_u, b_u, 1] . [y_i, 1, mu + b_i] = mu + b_u + b_i + x_u . y_i``.

        Parameters
        ----------
        U : ndarray of shape (n_users, n_components + 1)
            Users' ``[x_u, b_u]`` (from :meth:`fold_in`).
        columns : ndarray of int, default=None
            The items to score (None: every item).

        Returns
        -------
        U, V : ndarray, float32
            ``U @ V.T`` are the predicted ratings.

        Examples
        --------
        >>> import numpy as np
        >>> from skfewrec.factors import ExplicitALSFactors
        >>> from skfewrec.datasets import make_interactions
        >>> X = make_interactions(n_users=50, n_items=20, random_state=0).X
        >>> als = ExplicitALSFactors(n_components=2, random_state=0).fit(X)
        >>> U, V = als.scoring_factors(np.zeros((1, 3)))
        >>> bool(np.allclose(U @ V.T, als.global_mean_ + als.item_biases_))
        True
        """
        U = np.asarray(U, dtype=np.float32)
        U = np.hstack([U, np.ones((U.shape[0], 1), dtype=np.float32)])
        Y = self.item_factors_ if columns is None else self.item_factors_[columns]
        off = self.global_mean_ + self.item_biases_.astype(np.float64)
        off = off if columns is None else off[columns]
        V = np.hstack([Y, np.ones((Y.shape[0], 1), dtype=np.float32), off[:, None]])
        return U, np.ascontiguousarray(V, dtype=np.float32)

    def _item_step(self, Xt):
        """The new items' ``[y_i, b_i]``: the item step of training, warm users fixed."""
        users = np.hstack([self.user_factors_, self.user_biases_[:, None]]).astype(np.float64)
        V = self._user_step(Xt, users, self.global_mean_, self._ridge())
        return {
            "item_factors_": V[:, :-1].astype(np.float32),
            "item_biases_": V[:, -1].astype(np.float32),
        }
