"""Baselines of the few-shot protocol, as skfewrec recommenders.

Every benchmark runs them in the same process as skfewrec's adapters:
most-popular, implicit's own ALS fold-in, EASE and item-kNN.
"""

import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

from ._core.compat import HasMethods, Interval, StrOptions, _fit_context
from ._core.threads import blas_limits, effective_n_jobs, implicit_threads
from .base import (
    DerivedCachesMixin,
    FactorRecommenderMixin,
    ItemsFromFactorsMixin,
    RecommenderMixin,
    SparseFloat32TransformerMixin,
    SparseInputMixin,
    fit_factor_source,
    validate_interactions,
)
from .factors._als import ALSFactors


class MostPopular(SparseInputMixin, RecommenderMixin, BaseEstimator):
    """Recommend the items most warm users interacted with.

    Parameters
    ----------
    weighting : {"users", "values"}, default="users"
        Popularity as the number of users per item, or as the sum of values.

    Attributes
    ----------
    item_popularity_ : ndarray of shape (n_items,), float32
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec import MostPopular
    >>> rec = MostPopular().fit(np.array([[1, 1, 0], [0, 1, 0]]))
    >>> rec.recommend(np.array([[0, 1, 0]]), k=2)[0]
    array([[0, 2]])
    """

    _parameter_constraints = {"weighting": [StrOptions({"users", "values"})]}

    #: the same ranking for every user (skips the personalisation checks)
    _personalized = False

    def __init__(self, *, weighting="users"):
        self.weighting = weighting

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Count each item's warm users.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Warm users' interactions.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X = validate_interactions(self, X, reset=True)
        if self.weighting == "users":
            pop = np.bincount(X.indices, minlength=X.shape[1])
        else:
            pop = np.asarray(X.sum(axis=0)).ravel()
        self.item_popularity_ = pop.astype(np.float32)
        return self

    def _scorer(self, X, columns):
        pop = self.item_popularity_ if columns is None else self.item_popularity_[columns]

        def score_block(start, stop):
            return np.broadcast_to(pop, (stop - start, pop.size)).copy()

        return score_block


class ImplicitFoldIn(
    ItemsFromFactorsMixin,
    DerivedCachesMixin,
    SparseFloat32TransformerMixin,
    FactorRecommenderMixin,
    TransformerMixin,
    BaseEstimator,
):
    """implicit's own fold-in (``recalculate_user``), as a baseline recommender.

    The users' vectors come from implicit's C++ Cholesky solve, one user at a
    time, on the same factors as skfewrec's adapters; the scoring is skfewrec's.

    Parameters
    ----------
    factors : estimator, default=None
        An :class:`ALSFactors` (fitted by ``fit``) or a ``FrozenEstimator`` of one.
    n_jobs : int, default=None
        implicit's threads (None: all cores, implicit's default).
    random_state : int, RandomState instance or None, default=None
        Seeds the factor source ``fit`` trains (the default, or a passed
        unfitted one, whose own seed it then replaces); None keeps a passed
        source's seed. A frozen source is unaffected.

    Attributes
    ----------
    factors_ : ALSFactors
    item_factors_ : ndarray of shape (n_items, n_components), float32
        ``factors_.item_factors_`` (read-only).
    n_features_in_ : int

    Examples
    --------
    >>> from skfewrec import ALSFactors, ImplicitFoldIn
    >>> from skfewrec.datasets import make_interactions
    >>> X = make_interactions(n_users=200, n_items=80, random_state=0).X
    >>> rec = ImplicitFoldIn(ALSFactors(n_components=8, random_state=0)).fit(X)
    >>> rec.recommend(X[:2], k=3)[0].shape
    (2, 3)
    """

    _derived_caches = ("_model",)

    _parameter_constraints = {
        "factors": [HasMethods(["fit"]), None],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
    }

    def __init__(self, factors=None, *, n_jobs=None, random_state=None):
        self.factors = factors
        self.n_jobs = n_jobs
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Pretrain (or take) the factors.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Warm users' interactions.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X = validate_interactions(self, X, reset=True)
        self.factors_ = fit_factor_source(
            self.factors,
            X,
            ALSFactors(random_state=self.random_state),
            random_state=self.random_state,
        )
        self._rebuild()
        return self

    def _rebuild(self):
        """Recreate the implicit model from the fitted factors."""
        self._model = self.factors_.to_implicit()
        self._model.num_threads = implicit_threads(self.n_jobs)

    def _user_vectors(self, X):
        with blas_limits(1):
            U = self._model.recalculate_user(np.arange(X.shape[0]), sp.csr_matrix(X))
        U = np.asarray(U, dtype=np.float32).reshape(X.shape[0], -1)
        empty = np.diff(X.indptr) == 0
        if empty.any():
            # implicit answers 0 for a user without interactions: rank by the warm mean
            U[empty] = self.factors_.user_factors_.mean(axis=0)
        return U

    def transform(self, X):
        """implicit's fold-in vectors.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)

        Returns
        -------
        U : ndarray of shape (n_users, n_components), float32
        """
        return self._user_vectors(self._validate_users(X))


class EASE(SparseInputMixin, RecommenderMixin, BaseEstimator):
    """Embarrassingly Shallow Autoencoder (Steck, 2019): a closed-form item-item model.

    ``B = I - P / diag(P)`` with ``P = (X^T X + l2 I)^-1``; a user's scores are
    ``x_u B``. Needs a dense n_items x n_items matrix: for catalogues up to
    a few tens of thousands of items.

    Parameters
    ----------
    l2 : float, default=500.0
        Ridge on the item-item weights.
    n_jobs : int, default=None
        BLAS threads while fitting and threads while ranking.

    Attributes
    ----------
    coef_ : ndarray of shape (n_items, n_items), float32
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec import EASE
    >>> X = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]])
    >>> EASE(l2=0.1).fit(X).recommend(np.array([[1, 0, 0]]), k=1)[0]
    array([[1]])
    """

    _parameter_constraints = {
        "l2": [Interval(Real, 0, None, closed="neither")],
        "n_jobs": [Integral, None],
    }

    def __init__(self, *, l2=500.0, n_jobs=None):
        self.l2 = l2
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Solve for the item-item weights.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Warm users' interactions.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X = validate_interactions(self, X, reset=True)
        with blas_limits(effective_n_jobs(self.n_jobs)):
            G = (X.T @ X).toarray().astype(np.float64)
            G[np.diag_indices_from(G)] += self.l2
            try:
                P = np.linalg.inv(G)
            except np.linalg.LinAlgError:
                P = None
        with np.errstate(all="ignore"):
            B = None if P is None else (-P / np.diag(P)[None, :]).astype(np.float32)
        if B is None or not np.all(np.isfinite(B)):
            raise ValueError(
                f"EASE cannot invert X^T X + l2 I with l2={self.l2:g}: the system is "
                "singular or too ill-conditioned (its weights are not finite in float32). "
                "Increase l2 (the default is 500), or rescale large interaction values "
                "(e.g. np.log1p)."
            )
        B[np.diag_indices_from(B)] = 0.0
        self.coef_ = B
        return self

    def _scorer(self, X, columns):
        B = self.coef_ if columns is None else np.ascontiguousarray(self.coef_[:, columns])

        def score_block(start, stop):
            return np.asarray(X[start:stop] @ B, dtype=np.float32)

        return score_block


class ItemKNN(SparseInputMixin, RecommenderMixin, BaseEstimator):
    """Item-based k-nearest neighbours with cosine similarity (implicit's kernel).

    Parameters
    ----------
    n_neighbors : int, default=50
        Neighbours kept per item.
    n_jobs : int, default=None
        implicit's threads (None: all cores).

    Attributes
    ----------
    similarity_ : scipy.sparse.csr_matrix of shape (n_items, n_items)
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec import ItemKNN
    >>> X = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]])
    >>> ItemKNN(n_neighbors=2).fit(X).recommend(np.array([[1, 0, 0]]), k=1)[0]
    array([[1]])
    """

    _parameter_constraints = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
    }

    def __init__(self, *, n_neighbors=50, n_jobs=None):
        self.n_neighbors = n_neighbors
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Compute the item-item cosine similarities.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Warm users' interactions.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        from implicit.nearest_neighbours import CosineRecommender

        X = validate_interactions(self, X, reset=True)
        threads = implicit_threads(self.n_jobs)
        model = CosineRecommender(K=self.n_neighbors, num_threads=threads)
        with warnings.catch_warnings():
            # implicit's own normalisation hands its kernel a COO matrix and warns
            # about it; nothing a caller could change
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            model.fit(sp.csr_matrix(X), show_progress=False)
        self.similarity_ = sp.csr_matrix(model.similarity, dtype=np.float32)
        return self

    def _scorer(self, X, columns):
        S = self.similarity_ if columns is None else self.similarity_[:, columns].tocsc()

        def score_block(start, stop):
            return np.asarray((X[start:stop] @ S).toarray(), dtype=np.float32)

        return score_block
