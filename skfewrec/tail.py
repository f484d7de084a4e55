"""A popularity-bias knob: trade a measured amount of accuracy for exposure of the tail."""

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state

from ._core.compat import Interval, _fit_context, check_is_fitted
from ._core.validation import check_interactions
from .base import RecommenderMixin, SparseInputMixin, validate_interactions

__all__ = ["PopularityPenalty"]


class PopularityPenalty(SparseInputMixin, RecommenderMixin, BaseEstimator):
    """Wrap a recommender and lower each item's score by a calibrated popularity penalty.

    The ranking score of item i for a user becomes::

        score(u, i) - strength * sigma * z_i

    with ``z_i`` the standardised ``log(1 + popularity_i)`` over the catalogue
    (popularity: users per item in ``fit``'s data) and ``sigma`` the spread of the
    wrapped recommender's scores on (a sample of) the training users. So
    ``strength`` is in units of the recommender's own score spread: 0 is the
    wrapped recommender, larger values push the tail up. The trade-off curve
    (NDCG against tail share, coverage and Gini) is measured in
    ``benchmarks/longtail.py``; the default was chosen from it.

    Parameters
    ----------
    recommender : estimator, default=None
        An unfitted skfewrec recommender. None uses ``ClosedFormFoldIn()`` with
        its default factors seeded by ``random_state``.
    strength : float, default=0.05
        The penalty in units of the score spread, >= 0.
    random_state : int, RandomState instance or None, default=None
        Seeds the default recommender and the users sampled for ``sigma``.

    Attributes
    ----------
    recommender_ : estimator
        The fitted wrapped recommender.
    score_spread_ : float
        ``sigma``: the spread of the wrapped recommender's scores.
    item_popularity_ : ndarray of shape (n_items,)
        Users per item in ``fit``'s data; a new item's is its support count.
    penalty_ : ndarray of shape (n_items,)
        ``sigma * z_i`` per item (multiplied by ``strength`` when ranking).
    n_features_in_ : int
        The catalogue size.

    See Also
    --------
    skfewrec.metrics.tail_share, skfewrec.metrics.gini_exposure : what it trades for.

    Examples
    --------
    >>> from skfewrec import ALSFactors, ClosedFormFoldIn
    >>> from skfewrec.datasets import make_interactions
    >>> from skfewrec.metrics import item_popularity, tail_share
    >>> from skfewrec.tail import PopularityPenalty
    >>> X = make_interactions(n_users=300, n_items=80, random_state=0).X
    >>> base = ClosedFormFoldIn(ALSFactors(n_components=8, random_state=0))
    >>> plain = PopularityPenalty(base, strength=0.0).fit(X)
    >>> fair = PopularityPenalty(base, strength=1.0).fit(X)
    >>> pop = item_popularity(X)
    >>> fair_ids, plain_ids = fair.recommend(X, k=5)[0], plain.recommend(X, k=5)[0]
    >>> bool(tail_share(fair_ids, pop) > tail_share(plain_ids, pop))
    True
    """

    _parameter_constraints = {
        "recommender": "no_validation",
        "strength": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, recommender=None, *, strength=0.05, random_state=None):
        self.recommender = recommender
        self.strength = strength
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the wrapped recommender and calibrate the penalty.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Training interactions.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X = validate_interactions(self, X, reset=True)
        if self.recommender is None:
            from .adapters import ClosedFormFoldIn
            from .factors import ALSFactors

            rec = ClosedFormFoldIn(ALSFactors(random_state=self.random_state))
        else:
            rec = clone(self.recommender)
        self.recommender_ = rec.fit(X)
        rng = check_random_state(self.random_state)
        sample = np.sort(rng.permutation(X.shape[0])[: min(X.shape[0], 500)])
        scores = self.recommender_._scorer(X[sample], None)(0, sample.size)
        self.score_spread_ = float(np.std(scores)) or 1.0
        self.item_popularity_ = X.getnnz(axis=0).astype(np.float64)
        self.penalty_ = self._penalty(self.item_popularity_)
        return self

    def _penalty(self, popularity):
        logs = np.log1p(popularity)
        spread = logs.std() or 1.0
        return self.score_spread_ * (logs - logs.mean()) / spread

    def add_items(self, X_new_items, **params):
        """Add new items to the wrapped recommender; their popularity is their support.

        Parameters
        ----------
        X_new_items : {array-like, sparse matrix} of shape (n_warm_users, n_new_items)
            The warm users' interactions with the new items.
        **params : dict
            Passed to the wrapped recommender's ``add_items`` (e.g. ``item_features``).

        Returns
        -------
        self : object
        """
        check_is_fitted(self)
        self.recommender_.add_items(X_new_items, **params)
        counts = check_interactions(X_new_items, name="X_new_items").getnnz(axis=0)
        self.item_popularity_ = np.concatenate([self.item_popularity_, counts])
        self.penalty_ = self._penalty(self.item_popularity_)
        self.n_features_in_ = int(self.recommender_.n_features_in_)
        return self

    def _scorer(self, X, columns):
        inner = self.recommender_._scorer(X, columns)
        penalty = self.penalty_ if columns is None else self.penalty_[columns]
        shift = (self.strength * penalty).astype(np.float32)

        def score_block(start, stop):
            return inner(start, stop) - shift

        return score_block
