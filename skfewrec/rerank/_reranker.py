"""LightGBMReranker: two-stage few-shot recommendation as one scikit-learn estimator."""

import logging
import time
import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils import check_random_state

from .._core.compat import HasMethods, Interval, _fit_context, check_is_fitted
from .._core.csr import lookup, sample_episodes
from .._core.threads import blas_limits, effective_n_jobs
from .._core.topk import chunked_topk, restrict_items
from .._core.validation import check_flag, check_k
from ..base import DerivedCachesMixin, RecommenderMixin, SparseInputMixin, validate_interactions
from ._features import FeatureBuilder
from ._tables import UserTable, encode_item_table
from ._warm import RECENT_FRACTION, warm_statistics

#: stage messages of ``fit`` (info level; ``skfewrec fit --model rerank`` shows them)
_logger = logging.getLogger("skfewrec.rerank")

#: users whose features are built and scored at once while re-ranking
_USERS_PER_BLOCK = 2048
#: the cut-off of the NDCG that early stopping watches
_EVAL_AT = 20


#: the fitted attributes of a bundle saved by skfewrec 0.1.0 -> their key in ``warm_statistics_``
_LEGACY_STATISTICS = {
    "item_counts_": "item_counts",
    "n_warm_users_": "n_users",
    "recent_item_counts_": "recent_counts",
    "n_recent_": "n_recent",
    "item_time_": "item_time",
    "cooccurrence_": "cooccurrence",
    "warm_interactions_": "warm",
}


def _default_candidates(random_state):
    """``ClosedFormFoldIn`` over ``ALSFactors`` seeded with the re-ranker's ``random_state``."""
    from ..adapters._closed_form import ClosedFormFoldIn
    from ..factors import ALSFactors

    return ClosedFormFoldIn(factors=ALSFactors(random_state=random_state))


def check_shots_range(n_shots_range):
    """Check ``n_shots_range = (low, high)`` with ``0 <= low <= high``.

    Examples
    --------
    >>> from skfewrec.rerank._reranker import check_shots_range
    >>> check_shots_range((1, 20))
    (1, 20)
    """
    ok = (
        isinstance(n_shots_range, tuple | list)
        and len(n_shots_range) == 2
        and all(isinstance(v, Integral) and not isinstance(v, bool) for v in n_shots_range)
    )
    if not ok or not 0 <= n_shots_range[0] <= n_shots_range[1]:
        raise ValueError(
            "n_shots_range must be a pair of integers (low, high) with 0 <= low <= high, the "
            f"range of support sizes of the training episodes; got {n_shots_range!r}."
        )
    return int(n_shots_range[0]), int(n_shots_range[1])


def _labels(Q, candidates):
    """1 where a candidate is among the row's held-back items (Q), else 0."""
    return lookup(Q, candidates)[1].astype(np.float32)


def _below(head, tail):
    """Scores for the ``tail`` items (adapter scores, best first) placed under ``head``.

    Every tail item scores below the lowest finite head score of its row (by at
    least 1), keeping the adapter's order and gaps among tail items.
    """
    finite = np.isfinite(head)
    low = np.where(finite, head, np.inf).min(axis=1, initial=np.inf)
    low = np.where(np.isfinite(low), low, 0.0)
    top = tail[:, :1]
    with np.errstate(invalid="ignore"):
        out = low[:, None] - 1.0 - (top - tail)
    return np.where(np.isfinite(tail), out, -np.inf).astype(np.float32)


class LightGBMReranker(DerivedCachesMixin, SparseInputMixin, RecommenderMixin, BaseEstimator):
    """Re-rank a few-shot adapter's top candidates with a LightGBM ranker.

    Stage one, the candidate adapter (e.g. :class:`ClosedFormFoldIn`), scores the
    catalogue for each user from their shots and keeps the ``n_candidates`` best.
    Stage two, a LightGBM ``lambdarank`` model, orders these candidates using
    what a dot product does not see: the adapter's score and rank, item
    popularity (recent popularity when ``timestamps`` are given), item factor
    norm, the number of shots, cosine similarity between the candidate and the
    shots in factor space, the score of the plain (prior-free) fold-in,
    co-occurrence of the candidate with the shots in the warm data, the share
    of warm users like the shots who have it, item and user side features, and
    the overlap of the candidate's side features with the shots'. The features
    are listed, with their names, in ``skfewrec.rerank._features.FEATURES``.

    **Leak-free training episodes (cross-fitting).** The ranker learns from
    simulated episodes of the warm users: ``n`` shots drawn at random (``n``
    uniform in ``n_shots_range``), labels = whether a candidate is among the
    user's other (held-back) interactions. If the adapter that scores an
    episode had been fitted on that user's row, it would already know the
    held-back items and the ranker would learn to trust it far too much. So the
    warm users are split into ``cv`` folds; the episodes of fold k are scored by
    an adapter cloned from ``candidates`` and fitted on the other folds only, and
    every warm statistic they see (popularity, co-occurrence) is computed on the
    other folds too. Nothing an episode's features are built from has seen that
    user's held-back interactions. The adapter used for serving,
    ``candidates_``, is then fitted on every warm user. A prefit
    (:class:`~sklearn.frozen.FrozenEstimator`) factor source cannot be refitted per
    fold: if it was trained on the users of ``X`` a warning says so.

    Boosting starts from the adapter's order (an initial score ``-log(1 + j)``
    for the adapter's j-th candidate), so the trees learn corrections to it.
    Early stopping watches NDCG@20 on the episodes of ``validation_fraction`` of
    the warm users, which the ranker does not train on.

    Parameters
    ----------
    candidates : estimator, default=None
        The candidate adapter: any skfewrec recommender (``fit`` and
        ``recommend``). It is cloned and fitted ``cv + 1`` times. Factor
        features (norm, cosines) are used when it has ``item_factors_``. None
        means ``ClosedFormFoldIn(factors=ALSFactors(random_state=random_state))``.
    n_candidates : int, default=100
        Candidates re-ranked per user.
    n_estimators : int, default=100
        Maximum number of boosting rounds.
    learning_rate : float, default=0.1
        LightGBM's shrinkage.
    num_leaves : int, default=31
        Leaves per tree.
    min_child_samples : int, default=100
        Least (user, candidate) rows in a leaf.
    n_shots_range : tuple of int (low, high), default=(1, 20)
        Support sizes of the training episodes, drawn uniformly; ``low=0``
        also trains on users without shots.
    n_episodes : int, default=5
        Episodes per warm user (each with its own shots).
    cv : int, default=5
        Cross-fitting folds of warm users, >= 2. More folds make the fold
        adapters closer to the serving one (fitted on every warm user) at the
        cost of more adapter fits.
    item_features : pandas.DataFrame, default=None
        Item side table: one row per item, **indexed by item index** (the item's
        column number in X). Numeric and boolean columns are used as they are,
        pandas categoricals as LightGBM categorical features. It is a
        constructor parameter because it describes the catalogue, not the
        users: it is cloned with the estimator and never sliced by a
        cross-validation over users.
    early_stopping_rounds : int, default=50
        Stop when validation NDCG has not improved for this many rounds; None
        trains ``n_estimators`` rounds on every episode.
    validation_fraction : float, default=0.2
        Share of warm users whose episodes are held out for early stopping.
    random_state : int, RandomState instance or None, default=None
        Seeds the folds, the episodes and LightGBM, and the factor source of the
        default candidate adapter (``candidates=None``).
    n_jobs : int, default=None
        Threads of LightGBM (training and prediction). None: 1; -1: every core.

    Attributes
    ----------
    candidates_ : estimator
        The candidate adapter fitted on every warm user (serves ``recommend``).
    model_text_ : str
        The LightGBM model as text (``Booster.model_to_string``): the canonical
        fitted state of the ranker, from which ``booster_`` is rebuilt.
    booster_ : lightgbm.Booster
        The ranker (read-only, rebuilt from ``model_text_``).
    best_iteration_ : int
        Boosting rounds kept (after early stopping).
    feature_names_ : ndarray of str
        Names of the ranker's features.
    feature_importances_ : ndarray of shape (n_features,)
        Total gain of each feature's splits, normalised to sum to 1.
    warm_statistics_ : dict
        All the model keeps of the warm users, from
        :func:`~skfewrec.rerank._warm.warm_statistics`: ``item_counts`` (warm
        users per item), ``n_users`` (number of warm users), ``recent_counts``
        and ``n_recent`` (interactions per item, and in all, among the latest
        10% of the warm interactions by time), ``item_time`` (mean scaled time
        of each item's interactions; these three None without timestamps) and
        ``cooccurrence`` (a ``scipy.sparse.csr_matrix`` of warm co-occurrence
        counts, each item keeping its 200 strongest neighbours). Its size is
        bounded by the catalogue, whatever the number of warm users, and it
        holds no user's history.
    item_side_ : ndarray of shape (n_items, n_item_features) or None
        Encoded item table (categoricals as codes).
    item_side_names_ : ndarray of str or None
    item_side_categorical_ : ndarray of bool or None
    user_side_names_ : ndarray of str or None
        Columns of the user table given to ``fit``.
    user_side_categories_ : dict of str to ndarray or None
        Categories of each categorical user column.
    n_training_groups_ : int
        Episodes (groups) the ranker was trained on.
    n_features_in_ : int
        The catalogue size.

    See Also
    --------
    ClosedFormFoldIn : the default candidate adapter.

    Notes
    -----
    User side features are per-user data, like ``sample_weight``: pass them to
    ``fit`` (one row per row of X) and to ``recommend`` / ``decision_function``
    for the users being served. A model fitted with them needs them at
    recommend time (so ``score`` and few-shot scorers, which pass only X, work
    with models fitted without). An unseen category of a new user counts as
    missing. A user without shots gets the candidates of the adapter's
    zero-shot answer, re-ranked (``n_shots_range`` starting at 0 trains for that
    case). When ``k > n_candidates`` the re-ranked candidates are followed by the
    adapter's next items in its own order.

    Examples
    --------
    >>> from skfewrec import ALSFactors, ClosedFormFoldIn, LightGBMReranker
    >>> from skfewrec.datasets import make_interactions
    >>> X = make_interactions(n_users=300, n_items=100, random_state=0).X
    >>> rr = LightGBMReranker(
    ...     ClosedFormFoldIn(factors=ALSFactors(n_components=8, random_state=0)),
    ...     n_candidates=30, n_estimators=20, random_state=0).fit(X[:250])
    >>> ids, scores = rr.recommend(X[250:], k=5)
    >>> ids.shape
    (50, 5)
    >>> rr.feature_names_[:3].tolist()
    ['adapter_score', 'adapter_rank', 'adapter_score_gap']
    """

    _derived_caches = ("_booster", "_builder", "_user_table")

    #: start boosting from the adapter's order (an ablation switch)
    _boost_from_adapter = 1.0

    _parameter_constraints = {
        "candidates": [HasMethods(["fit", "recommend"]), None],
        "n_candidates": [Interval(Integral, 1, None, closed="left")],
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "num_leaves": [Interval(Integral, 2, None, closed="left")],
        "min_child_samples": [Interval(Integral, 1, None, closed="left")],
        "n_shots_range": [tuple, list],
        "n_episodes": [Interval(Integral, 1, None, closed="left")],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "item_features": [pd.DataFrame, None],
        "early_stopping_rounds": [Interval(Integral, 1, None, closed="left"), None],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        candidates=None,
        *,
        n_candidates=100,
        n_estimators=100,
        learning_rate=0.1,
        num_leaves=31,
        min_child_samples=100,
        n_shots_range=(1, 20),
        n_episodes=5,
        cv=5,
        item_features=None,
        early_stopping_rounds=50,
        validation_fraction=0.2,
        random_state=None,
        n_jobs=None,
    ):
        self.candidates = candidates
        self.n_candidates = n_candidates
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.n_shots_range = n_shots_range
        self.n_episodes = n_episodes
        self.cv = cv
        self.item_features = item_features
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ fitting
    def _candidate_template(self):
        if self.candidates is None:
            return _default_candidates(self.random_state)
        return self.candidates

    def _fit_adapter(self, X):
        """A fresh candidate adapter fitted on ``X`` (a fold's users, or all)."""
        template = getattr(self, "_fixed_template", None)
        return clone(self._candidate_template() if template is None else template).fit(X)

    def _fixed_settings(self, X):
        """The candidate template with its "auto" settings fixed to what a fit on all
        warm users chooses: the search runs once, not once per fold (the settings,
        not any fitted parameter, are shared by the folds)."""
        from .._auto import fix_auto_settings, has_auto

        template = self._candidate_template()
        if not has_auto(template):
            return template
        _logger.info("candidate adapter: choosing its 'auto' settings on %d warm users", X.shape[0])
        return fix_auto_settings(template, clone(template).fit(X))

    def _warn_if_frozen(self):
        template = self._candidate_template()
        factors = getattr(template, "factors", None)
        if isinstance(template, FrozenEstimator) or isinstance(factors, FrozenEstimator):
            warnings.warn(
                "The candidate adapter uses a prefit (FrozenEstimator) model, which "
                "cross-fitting cannot refit without each fold's users. If it was trained on "
                "the users of X, the training episodes see factors that know their held-back "
                "interactions, and the ranker learns to over-trust the adapter. Pass an "
                "unfitted factor source (e.g. clone(frozen.estimator)) or fit the re-ranker "
                "on users the prefit model was not trained on.",
                UserWarning,
                stacklevel=3,
            )

    def _times(self, timestamps, X):
        if timestamps is None:
            return None
        from ..model_selection import _times_of_nonzeros

        times = np.asarray(_times_of_nonzeros(timestamps, X), dtype=np.float64)
        if times.size:
            # one [0, 1] scale over the warm period, shared by every fold
            low, span = times.min(), np.ptp(times)
            times = (times - low) / (span if span > 0 else 1.0)
        return sp.csr_matrix((times, X.indices, X.indptr), shape=X.shape)

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, *, user_features=None, timestamps=None):
        """Fit the candidate adapter and the ranker on leak-free episodes of warm users.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            The warm users' interactions.
        y : None
            Ignored; the labels come from the episodes.
        user_features : pandas.DataFrame, default=None
            User side table, one row per row of X in the same order (the index is
            ignored). Numeric, boolean and categorical columns.
        timestamps : {array-like, sparse matrix} of shape (n_users, n_items), default=None
            Time of each interaction; adds the items' recent popularity.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X = validate_interactions(self, X, reset=True)
        check_shots_range(self.n_shots_range)
        n_users, n_items = X.shape
        if n_users < self.cv:
            raise ValueError(
                f"cv={self.cv} cross-fitting folds need at least {self.cv} warm users; X has "
                f"{n_users} sample(s). Pass more users or a smaller cv."
            )
        times = self._times(timestamps, X)
        threshold = None
        if times is not None:
            threshold = float(np.quantile(times.data, 1 - RECENT_FRACTION)) if times.nnz else 0
        item_side = None
        if self.item_features is not None:
            item_side = encode_item_table(self.item_features, n_items)
        user_spec, user_values = None, None
        if user_features is not None:
            user_spec, user_values = UserTable.fit(user_features, n_users)
        self._warn_if_frozen()

        rng = check_random_state(self.random_state)
        self._fixed_template = self._fixed_settings(X)
        parts, builder = self._episodes(
            X,
            rng,
            times=times,
            threshold=threshold,
            item_side=item_side,
            user_spec=user_spec,
            user_values=user_values,
        )
        in_validation = np.zeros(n_users, dtype=bool)
        if self.early_stopping_rounds is not None:
            n_val = int(round(self.validation_fraction * n_users))
            if n_val >= 1:
                in_validation[rng.choice(n_users, n_val, replace=False)] = True
        start = time.perf_counter()
        _logger.info(
            "LightGBM: training the ranker on %d episodes (at most %d trees)...",
            sum(part[3].size for part in parts),
            self.n_estimators,
        )
        self._train_ranker(parts, in_validation, builder, rng, n_users, n_items)
        _logger.info(
            "LightGBM: %d trees in %.1f s", self.best_iteration_, time.perf_counter() - start
        )
        _logger.info("candidate adapter: final fit on all %d warm users", n_users)
        self.candidates_ = self._fit_adapter(X)
        del self._fixed_template
        self.warm_statistics_ = warm_statistics(X, times=times, recent_threshold=threshold)
        if item_side is None:
            self.item_side_ = self.item_side_names_ = self.item_side_categorical_ = None
        else:
            self.item_side_ = item_side[0]
            self.item_side_names_ = np.asarray(item_side[1], dtype=str)
            self.item_side_categorical_ = item_side[2]
        if user_spec is None:
            self.user_side_names_ = self.user_side_categories_ = None
        else:
            self.user_side_names_ = np.asarray(user_spec.names, dtype=str)
            self.user_side_categories_ = user_spec.categories
        self._rebuild()
        return self

    def _episodes(
        self,
        X,
        rng,
        *,
        times=None,
        threshold=None,
        item_side=None,
        user_spec=None,
        user_values=None,
    ):
        """Cross-fitted training episodes: features and labels, fold by fold.

        The users of fold k are split into shots and held-back items; their
        candidates and features come from an adapter and warm statistics fitted
        on the other folds only.

        Returns
        -------
        parts : list of tuple
            Per fold: features ``(n_episodes * n_cand, n_features)``, labels,
            mask of non-empty candidate slots, the X row of each episode, and
            ``n_cand``. Rows of an episode are its candidates in adapter order.
        builder : FeatureBuilder
            The last fold's builder (for the feature names).
        """
        n_users, n_items = X.shape
        low, high = check_shots_range(self.n_shots_range)
        fold = rng.permutation(n_users) % self.cv
        n_cand = min(self.n_candidates, n_items)
        parts, builder = [], None
        for k in range(self.cv):
            test = np.flatnonzero(fold == k)
            train = np.flatnonzero(fold != k)
            _logger.info(
                "fold %d/%d: candidate adapter on %d users, episodes of %d",
                k + 1,
                self.cv,
                train.size,
                test.size,
            )
            adapter = self._fit_adapter(X[train])
            stats = warm_statistics(
                X[train],
                times=None if times is None else times[train],
                recent_threshold=threshold,
            )
            builder = FeatureBuilder(
                getattr(adapter, "item_factors_", None),
                stats,
                item_side,
                user_spec,
                fold_in=_plain_fold_in(adapter),
            )
            S, Q, owner = sample_episodes(X[test], low, high, self.n_episodes, rng)
            if owner.size == 0:
                continue
            cand, scores = adapter.recommend(S, k=n_cand, filter_seen=True)
            U = None if user_values is None else user_values[test][owner]
            with blas_limits(effective_n_jobs(self.n_jobs)):
                F = builder.build(S, cand, scores, U)
            parts.append((F, _labels(Q, cand).ravel(), (cand >= 0).ravel(), test[owner], n_cand))
        return parts, builder

    def _train_ranker(self, parts, in_validation, builder, rng, n_users, n_items):
        """Fit LGBMRanker on the episodes: one group per episode, validation by user."""
        from lightgbm import LGBMRanker, early_stopping

        if not parts:
            raise ValueError(
                "No training episode: every warm user needs at least "
                f"{self.n_shots_range[0] + 1} interactions (the shots and one "
                f"held-back item); X has {n_users} sample(s) and {n_items} feature(s) (items)."
            )
        F = np.concatenate([p[0] for p in parts])
        label = np.concatenate([p[1] for p in parts])
        valid = np.concatenate([p[2] for p in parts])
        episode_user = np.concatenate([p[3] for p in parts])
        n_cand = parts[0][4]
        n_episodes = episode_user.size
        episode = np.repeat(np.arange(n_episodes), n_cand)
        # groups without a held-back item among their candidates carry no gradient
        positives = np.bincount(episode, weights=label, minlength=n_episodes)
        keep_episode = positives > 0
        if not keep_episode.any():
            raise ValueError(
                "No training episode has a held-back item among its candidates, so there is "
                f"nothing to learn; X has {n_users} sample(s) and {n_items} feature(s) "
                "(items). Pass more warm users, or raise n_candidates."
            )
        val_episode = in_validation[episode_user] & keep_episode
        fit_episode = ~in_validation[episode_user] & keep_episode
        if not fit_episode.any():  # tiny data: train on the validation users too
            fit_episode, val_episode = keep_episode, np.zeros_like(keep_episode)

        margin = np.tile(_base_margin(n_cand) * self._boost_from_adapter, n_episodes)

        def select(mask):
            rows = mask[episode] & valid
            groups = np.bincount(episode[rows], minlength=n_episodes)[mask]
            return F[rows], label[rows], groups, margin[rows]

        X_fit, y_fit, g_fit, m_fit = select(fit_episode)
        ranker = LGBMRanker(
            objective="lambdarank",
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            random_state=int(rng.randint(np.iinfo(np.int32).max)),
            n_jobs=effective_n_jobs(self.n_jobs),
            importance_type="gain",
            deterministic=True,
            force_col_wise=True,
            verbose=-1,
        )
        fit_params = {
            "group": g_fit,
            "init_score": m_fit,
            "feature_name": [_lgb_name(n) for n in builder.feature_names],
            "categorical_feature": builder.categorical_features,
        }
        if val_episode.any():
            X_val, y_val, g_val, m_val = select(val_episode)
            fit_params.update(
                eval_X=(X_val,),
                eval_y=(y_val,),
                eval_group=[g_val],
                eval_init_score=[m_val],
                eval_at=[min(_EVAL_AT, n_cand)],
                callbacks=[early_stopping(self.early_stopping_rounds, verbose=False)],
            )
        with warnings.catch_warnings():
            # LightGBM warns when tiny data leaves no split to make
            warnings.filterwarnings("ignore", category=UserWarning, module="lightgbm")
            ranker.fit(X_fit, y_fit, **fit_params)
        booster = ranker.booster_
        best = ranker.best_iteration_ or booster.current_iteration()
        self.model_text_ = booster.model_to_string(num_iteration=best)
        self.best_iteration_ = int(best)
        gain = booster.feature_importance("gain", iteration=best).astype(np.float64)
        self.feature_importances_ = gain / gain.sum() if gain.sum() > 0 else gain
        self.n_training_groups_ = int(g_fit.size)

    # ------------------------------------------------------------------ state
    def _rebuild(self):
        """Recompute the private caches (booster, feature builder) from the fitted state."""
        from lightgbm import Booster

        self._booster = Booster(model_str=self.model_text_)
        legacy = {
            key: vars(self).pop(attr)
            for attr, key in _LEGACY_STATISTICS.items()
            if attr in vars(self)
        }
        if legacy:  # a bundle saved by skfewrec 0.1.0: its statistics as attributes
            self.warm_statistics_ = legacy
        item_side = None
        if self.item_side_ is not None:
            item_side = (self.item_side_, list(self.item_side_names_), self.item_side_categorical_)
        self._user_table = None
        if self.user_side_names_ is not None:
            self._user_table = UserTable(self.user_side_names_, self.user_side_categories_)
        self._builder = FeatureBuilder(
            getattr(self.candidates_, "item_factors_", None),
            self.warm_statistics_,
            item_side,
            self._user_table,
            fold_in=_plain_fold_in(self.candidates_),
        )
        if len(self._builder.features) != self._booster.num_feature():
            raise ValueError(
                f"The ranker was trained on {self._booster.num_feature()} features but the "
                f"fitted state describes {len(self._builder.features)}; the model is "
                "inconsistent (refit it)."
            )
        # named by the registry that builds the columns (this also corrects the labels
        # of bundles saved by 0.1.0, whose names were two columns off)
        self.feature_names_ = np.asarray(self._builder.feature_names, dtype=str)

    @property
    def booster_(self):
        """The fitted LightGBM booster (rebuilt from ``model_text_``)."""
        check_is_fitted(self)
        return self._booster

    # ------------------------------------------------------------------ serving
    def _user_values(self, user_features, n_rows):
        if self._user_table is None:
            if user_features is not None:
                raise ValueError(
                    "user_features were given but this LightGBMReranker was fitted without "
                    "them; refit with fit(X, user_features=...) to use them."
                )
            return None
        if user_features is None:
            raise ValueError(
                "This LightGBMReranker was fitted with user_features, so it needs them for "
                f"the users being served: pass user_features with one row per row of X "
                f"(columns {list(self.user_side_names_)})."
            )
        return self._user_table.transform(user_features, n_rows)

    def _rerank(self, X, candidates, scores, user_values):
        """The ranker's scores of the candidates (-inf for empty slots), by user blocks."""
        n, n_cand = candidates.shape
        out = np.full((n, n_cand), -np.inf, dtype=np.float32)
        threads = effective_n_jobs(self.n_jobs)
        for start in range(0, n, _USERS_PER_BLOCK):
            stop = min(start + _USERS_PER_BLOCK, n)
            cand = candidates[start:stop]
            valid = cand >= 0
            if not valid.any():
                continue
            U = None if user_values is None else user_values[start:stop]
            with blas_limits(threads):
                F = self._builder.build(X[start:stop], cand, scores[start:stop], U)
            rows = F if valid.all() else F[valid.ravel()]
            pred = self._booster.predict(rows, num_threads=threads)
            pred += np.broadcast_to(_base_margin(n_cand) * self._boost_from_adapter, cand.shape)[
                valid
            ]
            block = out[start:stop]
            block[valid] = pred
        return out

    def recommend(self, X, k=10, *, filter_seen=True, items=None, exclude=None, user_features=None):
        """Top-k items for each user: the adapter's candidates, re-ranked.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            The users' shots.
        k : int, default=10
            Number of items per user. Beyond ``n_candidates``, the adapter's next
            items follow in the adapter's order.
        filter_seen : bool, default=True
            Never recommend an item the user already has in ``X``.
        items : array-like of int, default=None
            Allow-list: rank only these item indices.
        exclude : array-like of int, default=None
            Deny-list: never recommend these item indices.
        user_features : pandas.DataFrame, default=None
            The users' side table (one row per row of X); required if and only if
            the model was fitted with one.

        Returns
        -------
        ids : ndarray of shape (n_users, k), int64
            Item indices, best first; -1 where fewer than k items remain.
        scores : ndarray of shape (n_users, k), float32
            The ranker's scores (items beyond the candidates score lower);
            -inf for empty slots.
        """
        filter_seen = check_flag(filter_seen, "filter_seen")
        X = self._validate_users(X)
        user_values = self._user_values(user_features, X.shape[0])
        columns, _, _ = restrict_items(None, items, exclude, X.shape[1])
        n_cols = X.shape[1] if columns is None else columns.size
        k = check_k(k, n_cols)
        n_cand = min(self.n_candidates, n_cols)
        ids, scores = self.candidates_.recommend(
            X, k=max(n_cand, k), filter_seen=filter_seen, items=items, exclude=exclude
        )
        head = self._rerank(X, ids[:, :n_cand], scores[:, :n_cand], user_values)
        order = np.argsort(-head, axis=1, kind="stable")
        head_ids = np.take_along_axis(ids[:, :n_cand], order, axis=1)
        head = np.take_along_axis(head, order, axis=1)
        head_ids[~np.isfinite(head)] = -1
        out_ids = np.concatenate([head_ids, ids[:, n_cand:]], axis=1)[:, :k]
        out_scores = np.concatenate([head, _below(head, scores[:, n_cand:])], axis=1)[:, :k]
        return out_ids, out_scores

    def decision_function(self, X, *, user_features=None):
        """Scores of every item: re-ranked candidates first, then the adapter's order.

        The candidates are the adapter's top ``n_candidates`` items (seen items
        included) and get the ranker's scores; every other item scores below
        them, in the adapter's order. So the row's order is that of
        ``recommend(X, filter_seen=False)``, extended to the whole catalogue.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            The users' shots.
        user_features : pandas.DataFrame, default=None
            The users' side table, as for :meth:`recommend`.

        Returns
        -------
        scores : ndarray of shape (n_users, n_items), float32
            Higher is better.
        """
        X = self._validate_users(X)
        user_values = self._user_values(user_features, X.shape[0])
        n, n_items = X.shape
        A = np.asarray(self.candidates_.decision_function(X), dtype=np.float32)
        n_cand = min(self.n_candidates, n_items)
        # every item in adapter order (the first n_cand are the candidates)
        order, ordered = chunked_topk(lambda a, b: A[a:b].copy(), n, n_items, n_items)
        head = self._rerank(X, order[:, :n_cand], ordered[:, :n_cand], user_values)
        out = np.empty((n, n_items), dtype=np.float32)
        np.put_along_axis(out, order[:, :n_cand], head, axis=1)
        np.put_along_axis(out, order[:, n_cand:], _below(head, ordered[:, n_cand:]), axis=1)
        return out


def _plain_fold_in(adapter):
    """The plain iALS fold-in of the adapter's factor source (its ``transform``), or None.

    A second opinion on the user: without the adapter's prior, from the same factors.
    """
    factors = getattr(adapter, "factors_", None)
    return getattr(factors, "transform", None)


def _base_margin(n_candidates):
    """The ranker's starting score of the adapter's j-th candidate: ``-log(1 + j)``.

    Boosting starts from the adapter's own order (LightGBM's ``init_score``), so
    the trees learn corrections to it; they need not rebuild the adapter's fine
    ordering from splits on its rank.
    """
    return -np.log1p(np.arange(n_candidates, dtype=np.float64))


def _lgb_name(name):
    """LightGBM refuses JSON's special characters (``:``, ``,``, quotes...) in names."""
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in name)
