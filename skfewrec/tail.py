"""A popularity-bias knob: trade a measured amount of accuracy for exposure of the tail."""

import time
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state

from ._core.compat import Interval, StrOptions, _fit_context, check_is_fitted
from ._core.validation import check_interactions
from .base import RecommenderMixin, SparseInputMixin, validate_interactions

__all__ = ["PopularityPenalty"]

#: the strengths "auto" tries: 0 and a log grid of 6 points a decade from 0.01 to 1
#: (at 1 the penalty spans the scores' whole spread and the lists are mostly tail)
AUTO_STRENGTHS = (0.0, *np.round(np.logspace(-2, 0, 13), 4).tolist())


class PopularityPenalty(SparseInputMixin, RecommenderMixin, BaseEstimator):
    """Wrap a recommender and lower each item's score by a calibrated popularity penalty.

    The ranking score of item i for a user becomes::

        score(u, i) - strength * sigma * z_i

    with ``z_i`` the standardised ``log(1 + popularity_i)`` over the catalogue
    (popularity: users per item in ``fit``'s data) and ``sigma`` the spread of the
    wrapped recommender's scores on (a sample of) the training users. So
    ``strength`` is in units of the recommender's own score spread: 0 is the
    wrapped recommender, larger values push the tail up.

    How much accuracy a given strength costs depends on the data and on the
    wrapped model (``benchmarks/longtail.py``: with the same adapter, 1 costs 5% of
    NDCG@20 on ml-latest-small and gains 3% on Gowalla), so the default
    ``strength="auto"`` measures it at fit time: a
    slice of the warm users is held out, the wrapped recommender is refitted on
    the rest (with any "auto" setting of it fixed to what the full fit chose),
    and simulated few-shot episodes of the held-out users (1, 3, 5, 10 and 20
    random shots, the rest of the row as query, as for the adapters' "auto"
    settings) are scored at each strength of :data:`AUTO_STRENGTHS`. The
    chosen strength is the largest whose mean NDCG@20 is at least
    ``(1 - tolerance)`` times that of strength 0. The trade-off curve (NDCG
    against tail share, coverage and Gini) is measured in
    ``benchmarks/longtail.py``.

    Parameters
    ----------
    recommender : estimator, default=None
        An unfitted skfewrec recommender. None uses ``ClosedFormFoldIn()`` with
        its default factors, both seeded by ``random_state``.
    strength : float or "auto", default="auto"
        The penalty in units of the score spread, >= 0; "auto" chooses it on
        held-out warm users (above). An explicit number is used as given.
    tolerance : float, default=0.02
        For ``strength="auto"``: the share of NDCG@20 (relative to strength 0)
        the penalty may cost on the held-out episodes, in [0, 1).
    random_state : int, RandomState instance or None, default=None
        Seeds the default recommender, the users sampled for ``sigma``, and the
        held-out users and shots of "auto".

    Attributes
    ----------
    recommender_ : estimator
        The fitted wrapped recommender.
    strength_ : float
        The strength in use (the chosen one for "auto").
    auto_report_ : dict or None
        How "auto" chose ``strength_``: the strengths tried, their mean held-out
        NDCG@20 and its ratio to strength 0, the tolerance, the episode sizes and
        the seconds taken (or the fallback used when the data are too small to
        hold users out). None for an explicit strength.
    score_spread_ : float
        ``sigma``: the spread of the wrapped recommender's scores.
    item_popularity_ : ndarray of shape (n_items,)
        Users per item in ``fit``'s data; a new item's is its support count.
    penalty_ : ndarray of shape (n_items,)
        ``sigma * z_i`` per item (multiplied by ``strength_`` when ranking).
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
    >>> auto = PopularityPenalty(base, random_state=0).fit(X)
    >>> auto.strength_ in auto.auto_report_["strengths"]
    True
    """

    _parameter_constraints = {
        "recommender": "no_validation",
        "strength": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "tolerance": [Interval(Real, 0, 1, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, recommender=None, *, strength="auto", tolerance=0.02, random_state=None):
        self.recommender = recommender
        self.strength = strength
        self.tolerance = tolerance
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the wrapped recommender, calibrate the penalty and choose "auto".

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
        rng = check_random_state(self.random_state)
        template = self._template()
        self._calibrate(clone(template), X, rng)
        if isinstance(self.strength, str):
            self.strength_, self.auto_report_ = self._choose_strength(template, X, rng)
        else:
            self.strength_, self.auto_report_ = float(self.strength), None
        return self

    def _template(self):
        """The unfitted wrapped recommender."""
        if self.recommender is None:
            from .adapters import ClosedFormFoldIn
            from .factors import ALSFactors

            return ClosedFormFoldIn(
                ALSFactors(random_state=self.random_state), random_state=self.random_state
            )
        return clone(self.recommender)

    def _calibrate(self, rec, X, rng):
        """Fit ``rec`` on X and set ``recommender_``, ``score_spread_`` and the penalty."""
        self.recommender_ = rec.fit(X)
        sample = np.sort(rng.permutation(X.shape[0])[: min(X.shape[0], 500)])
        scores = self.recommender_._scorer(X[sample], None)(0, sample.size)
        self.score_spread_ = float(np.std(scores)) or 1.0
        self.item_popularity_ = X.getnnz(axis=0).astype(np.float64)
        self.penalty_ = self._penalty(self.item_popularity_)
        return self

    def _choose_strength(self, template, X, rng):
        """The largest strength of the grid within ``tolerance`` of strength 0's NDCG."""
        from ._auto import N_SHOTS, _enough_episodes, _too_few, episode_scores, holdout_users

        t0 = time.perf_counter()
        X_fit, X_val = holdout_users(X, random_state=rng)
        if not _enough_episodes(X_val):
            return 0.0, {"fallback": _too_few(X_val).replace("settings", "strength 0")}
        rec = self._fixed_template(template)
        probe = PopularityPenalty(rec, strength=0.0)
        probe._calibrate(clone(rec), X_fit, rng)
        probe.n_features_in_ = X.shape[1]
        seed = int(rng.randint(np.iinfo(np.int32).max))
        ndcg = []
        for strength in AUTO_STRENGTHS:
            probe.strength_ = strength
            ndcg.append(float(np.nanmean(episode_scores(probe, X_val, random_state=seed))))
        ndcg = np.array(ndcg)
        ratio = ndcg / ndcg[0] if ndcg[0] > 0 else np.ones_like(ndcg)
        ok = np.flatnonzero(ratio >= 1.0 - self.tolerance)
        chosen = float(AUTO_STRENGTHS[ok.max()]) if ok.size else 0.0
        report = {
            "strengths": list(AUTO_STRENGTHS),
            "ndcg": ndcg.tolist(),
            "ratio": ratio.tolist(),
            "tolerance": float(self.tolerance),
            "chosen": chosen,
            "n_shots": list(N_SHOTS),
            "n_fit_users": int(X_fit.shape[0]),
            "n_val_users": int(X_val.shape[0]),
            "seconds": time.perf_counter() - t0,
        }
        return chosen, report

    def _fixed_template(self, template):
        """``template`` with its "auto" settings fixed to what ``recommender_`` chose."""
        from ._auto import fix_auto_settings, has_auto

        if "factors" in template.get_params(deep=False) and has_auto(template):
            return fix_auto_settings(template, self.recommender_)
        return template

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
        shift = (self._strength_in_use() * penalty).astype(np.float32)

        def score_block(start, stop):
            return inner(start, stop) - shift

        return score_block

    def _strength_in_use(self):
        # models saved before "auto" existed carry no strength_: their strength was a number
        strength = getattr(self, "strength_", None)
        return float(self.strength) if strength is None else strength
