"""GradientFoldIn: a few gradient steps on a ranking loss from a meta-learned start.

A new user's vector starts from an initialisation (the warm users' mean, a
meta-learned vector, the closed-form fold-in, or zero) and takes ``n_steps``
gradient steps on a loss over their support set, item factors fixed::

    x_{s+1} = x_s - a_s(n) * (grad L_S(x_s) + l2 (x_s - x_0))

``a_s(n)`` is a per-step, per-dimension step size that may depend on the number
of shots n. With ``meta_algorithm="metasgd"`` (Meta-SGD, Li et al. 2017), ``fit``
learns the step sizes (and, with ``init="meta"``, ``x_0``) by differentiating a
ranking loss of held-back query items through the unrolled steps, on few-shot
episodes simulated from warm users. The item factors being fixed, the Hessian of
the support loss has a closed form, so the exact second-order meta-gradient costs
about as much as the forward steps (reverse mode with Hessian-vector products,
no autodiff library).

Every step is vectorised over users: supports are padded per batch of users
with similar counts, and each step's negatives are one set of items shared by
all users (``negatives_``, drawn at fit time), so their scores are one GEMM and
a user's vector does not depend on which other users are transformed with it.
"""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils import check_random_state

from .._core.compat import HasMethods, Interval, StrOptions, _fit_context
from .._core.conventions import confidence_coefficients, ridge_per_user
from .._core.csr import user_folds
from .._core.solvers import _gather_padded, _padded_batches, shared_system, solve_users
from .._core.threads import blas_limits, effective_n_jobs, run_threaded
from ..base import (
    DerivedCachesMixin,
    FactorRecommenderMixin,
    SparseFloat32TransformerMixin,
    fit_factor_source,
    validate_interactions,
)
from ..factors._als import ALSFactors
from ._losses import BPR, WMSE, Logistic, Support, uniform_negatives
from ._meta import Episode, MetaTask, Stepper, meta_learn, split_episodes
from ._priors import prior_terms, warm_prior

LOSSES = ("bpr", "logistic", "wmse")
INITS = ("zero", "mean", "closed_form", "meta")
META_ALGORITHMS = ("metasgd", "fomaml", "reptile")

#: padded (user, shot, negative) triples a transform batch may hold
_BATCH_TRIPLES = 1 << 18
#: cross-fitting folds of meta_cv="auto"
_AUTO_FOLDS = 5
#: meta_cv="auto" cross-fits only with at least this many warm users per fold
_MIN_FOLD_USERS = 20


# ------------------------------------------------------------------ the estimator
class GradientFoldIn(
    DerivedCachesMixin,
    SparseFloat32TransformerMixin,
    FactorRecommenderMixin,
    TransformerMixin,
    BaseEstimator,
):
    """Recommend to new users by a few gradient steps on a ranking loss.

    The item factors are pretrained once (``factors``) and kept fixed. A new
    user's vector starts at ``x_0`` (see ``init``) and takes ``n_steps`` steps
    of gradient descent on a loss over their shots, with an L2 pull back
    toward the start and per-step, per-dimension step sizes ``a_s(n)`` that
    may depend on the number of shots ``n``::

        x_{s+1} = x_s - a_s(n) * (grad L(x_s) + l2 (x_s - x_0))
        a_s(n) = step_sizes_[s] * n ** step_size_exponents_[s]

    ``fit`` pretrains the factors, then, with ``meta_algorithm``, meta-learns
    the step sizes (and with ``init="meta"`` the start) on few-shot episodes
    drawn from the warm users: a warm user's row is cut into a support of n
    shots (n drawn log-uniformly from ``n_shots_range``) and a query of
    held-back items; the steps run on the support, and the meta-parameters
    follow the gradient of a listwise loss of the query items over the whole
    catalogue. Meta-learning stops early when the NDCG@20 of held-out warm
    users' episodes stops improving, and keeps the best meta-parameters
    (which may be the initial ones).

    **Cross-fitted meta-learning** (``meta_cv``). Item factors trained on a warm
    user's whole row already know the items an episode holds back from that
    user, so episodes played against them are easier than a new user's, and
    the meta-learning learns to trust the shots too much. With ``meta_cv=k``
    the warm users are split into k folds; fold f's episodes are played against
    factors refitted without fold f's users (the same settings: an "auto"
    search is not run again), rotated onto the serving factors. The serving
    factors are then fitted on every warm user, and the meta-learned step sizes
    and start carry over to them: the steps run on item factors of unit mean
    squared norm with aligned axes, and the start is learned as an offset from
    each factor set's own warm mean.

    Parameters
    ----------
    factors : estimator, default=None
        The factor source: an :class:`ALSFactors` (fitted on ``X`` by ``fit``), or a
        :class:`~sklearn.frozen.FrozenEstimator` wrapping a fitted one (used as is,
        kept by ``clone``). None means ``ALSFactors(random_state=random_state)``.
    loss : {"bpr", "logistic", "wmse"}, default="bpr"
        The loss of the steps. "bpr": mean over (shot, negative) pairs of
        ``-log sigmoid(s_shot - s_neg)``; "logistic": binary cross-entropy of
        the shots (label 1) and the negatives (label 0); "wmse": the factor
        source's own iALS loss over the whole catalogue (exact, through the
        Gram matrix; no negatives) divided by the number of items, whose
        minimiser is the plain closed-form fold-in. Interaction values
        (confidences) weigh the shots in "wmse" only; "bpr" and "logistic"
        treat every shot alike.
    n_steps : int, default=10
        Gradient steps per user; 0 returns the start.
    learning_rate : float, default=0.2
        The step size of every step and dimension without meta-learning, and
        the initial one with it. Steps are taken on item factors rescaled to
        unit mean squared norm (user vectors inversely), so the value does not
        depend on the factors' scale.
    l2 : float, default=0.1
        Strength of the pull toward the start (in the same rescaled units).
    n_negatives : int, default=64
        Negative items per step ("bpr", "logistic"): one set per step, drawn
        uniformly at fit time and shared by every user (a user's own shots
        among them are left out for that user). At most the catalogue size.
    init : {"zero", "mean", "closed_form", "meta"}, default="meta"
        The start ``x_0``: zero; the warm users' mean vector (a popularity-like
        answer); the closed-form fold-in of the user with the prior ``prior``;
        or a vector meta-learned by ``meta_algorithm``, from the warm mean.
    prior : {"none", "mean", "gaussian"}, default="gaussian"
        The prior of the closed-form start (``init="closed_form"``), with the
        same precision as in :class:`ClosedFormFoldIn` (``"mean"``:
        ``prior_strength / average variance * I``), so that with ``n_steps=0``
        the start is ClosedFormFoldIn's answer.
    prior_strength : float, default=1.0
        Its strength.
    meta_algorithm : {"metasgd", "fomaml", "reptile"} or None, default="metasgd"
        How ``fit`` meta-learns. "metasgd": exact gradients through the unrolled
        steps, of the step sizes, their dependence on the number of shots, and
        the start (``init="meta"``); "fomaml": the same, dropping the second
        derivatives (first-order MAML); "reptile": moves the start toward the
        vectors adapted on whole episodes (the start only: ``init="meta"``).
        None: no meta-learning; every step size is ``learning_rate``.
    meta_iter : int, default=200
        Most meta-iterations (batches of episodes).
    meta_batch_size : int, default=256
        Episodes (warm users) per meta-iteration.
    meta_learning_rate : float, default=0.02
        Adam's step size on the meta-parameters: the logarithm of the step
        sizes, and the start in units of the warm users' spread per dimension.
    n_shots_range : tuple of (int, int), default=(1, 20)
        The smallest and largest number of shots of an episode. Outside it, the
        step sizes use the nearest bound.
    validation_fraction : float, default=0.2
        Share of the warm users whose episodes (each user at 5 shot counts
        spread over ``n_shots_range``) are held out for early stopping. 0
        disables early stopping: the last meta-parameters are kept.
    n_iter_no_change : int, default=5
        Stop after this many evaluations (one every 10 meta-iterations) without
        a better validation NDCG@20.
    meta_cv : int >= 2, "auto" or None, default="auto"
        Cross-fitting folds of the meta-learning (see above); each costs one more
        fit of the factor source. "auto": 5 folds when the factor source can be
        refitted (not a :class:`~sklearn.frozen.FrozenEstimator`) and X has at
        least 100 warm users, else none. None: the episodes are played against
        the serving factors. A prefit source cannot be refitted without a
        fold's users: an explicit ``meta_cv`` then warns and does not cross-fit.
    random_state : int, RandomState instance or None, default=None
        Seeds the negatives, the episodes, the validation split and the
        default factor source (``factors=None``).
    n_jobs : int, default=None
        BLAS threads while adapting, and threads while ranking. None: 1.
    show_progress : bool, default=False
        Show a progress bar while meta-learning.

    Attributes
    ----------
    factors_ : ALSFactors
        The fitted factor source.
    item_factors_ : ndarray of shape (n_items, n_components), float32
    regularization_, confidence_scale_ : float
        The factor source's ridge and confidence scale (of the closed-form start
        and of ``loss="wmse"``).
    convention_ : str
        The factor source's confidence convention.
    mean_ : ndarray of shape (n_components,)
        Mean of the warm users' closed-form vectors.
    covariance_ : ndarray of shape (n_components, n_components)
        Their shrunk covariance (the Gaussian prior of the closed-form start).
    init_ : ndarray of shape (n_components,), float32
        The start of a user without shots, who takes no step: zero, the warm
        mean, the closed form's answer for an empty user, or the meta-learned
        start.
    step_sizes_ : ndarray of shape (n_steps, n_components), float32
        The step sizes for one shot.
    step_size_exponents_ : ndarray of shape (n_steps, n_components), float32
        How the step sizes grow (or shrink) with the number of shots.
    negatives_ : ndarray of shape (n_steps, min(n_negatives, n_items)), int64
        The negative items of every step.
    n_iter_ : int
        Meta-iterations run.
    meta_cv_ : int
        Cross-fitting folds the meta-learning used (0: none).
    validation_scores_ : ndarray of shape (n_evaluations,)
        NDCG@20 of the validation episodes at each evaluation, the first
        before meta-learning.
    n_features_in_ : int
        The catalogue size.

    See Also
    --------
    ClosedFormFoldIn : The exact least-squares fold-in, with priors.

    Notes
    -----
    All users take their steps together, batched by number of shots and
    padded: a step costs one GEMM against the step's negatives plus
    O(shots x n_negatives) elementwise work per user, with no Python loop over
    users. Because the negatives are drawn once at fit time, ``transform`` is
    deterministic and a user's vector does not depend on the other rows.

    Examples
    --------
    >>> from skfewrec import ALSFactors, GradientFoldIn
    >>> from skfewrec.datasets import make_interactions
    >>> X = make_interactions(n_users=300, n_items=100, random_state=0).X
    >>> rec = GradientFoldIn(factors=ALSFactors(n_components=8, random_state=0),
    ...                      meta_iter=20, random_state=0).fit(X[:250])
    >>> rec.transform(X[250:]).shape
    (50, 8)
    >>> ids, scores = rec.recommend(X[250:], k=5)
    >>> ids.shape
    (50, 5)
    """

    _derived_caches = ("_scale", "_Yp", "_neg_factors", "_system", "_empty_start", "_objective")

    _parameter_constraints = {
        "factors": [HasMethods(["fit"]), None],
        "loss": [StrOptions(set(LOSSES))],
        "n_steps": [Interval(Integral, 0, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "l2": [Interval(Real, 0, None, closed="left")],
        "n_negatives": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions(set(INITS))],
        "prior": [StrOptions({"none", "mean", "gaussian"})],
        "prior_strength": [Interval(Real, 0, None, closed="left")],
        "meta_algorithm": [StrOptions(set(META_ALGORITHMS)), None],
        "meta_iter": [Interval(Integral, 0, None, closed="left")],
        "meta_batch_size": [Interval(Integral, 1, None, closed="left")],
        "meta_learning_rate": [Interval(Real, 0, None, closed="neither")],
        "n_shots_range": [tuple, list],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "meta_cv": [Interval(Integral, 2, None, closed="left"), StrOptions({"auto"}), None],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "show_progress": ["boolean"],
    }

    def __init__(
        self,
        factors=None,
        *,
        loss="bpr",
        n_steps=10,
        learning_rate=0.2,
        l2=0.1,
        n_negatives=64,
        init="meta",
        prior="gaussian",
        prior_strength=1.0,
        meta_algorithm="metasgd",
        meta_iter=200,
        meta_batch_size=256,
        meta_learning_rate=0.02,
        n_shots_range=(1, 20),
        validation_fraction=0.2,
        n_iter_no_change=5,
        meta_cv="auto",
        random_state=None,
        n_jobs=None,
        show_progress=False,
    ):
        self.factors = factors
        self.loss = loss
        self.n_steps = n_steps
        self.learning_rate = learning_rate
        self.l2 = l2
        self.n_negatives = n_negatives
        self.init = init
        self.prior = prior
        self.prior_strength = prior_strength
        self.meta_algorithm = meta_algorithm
        self.meta_iter = meta_iter
        self.meta_batch_size = meta_batch_size
        self.meta_learning_rate = meta_learning_rate
        self.n_shots_range = n_shots_range
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.meta_cv = meta_cv
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.show_progress = show_progress

    def _check_settings(self):
        """The checks _parameter_constraints cannot express."""
        shots = self.n_shots_range
        if (
            len(shots) != 2
            or not all(isinstance(n, Integral) and not isinstance(n, bool) for n in shots)
            or not 1 <= shots[0] <= shots[1]
        ):
            raise ValueError(
                "n_shots_range must be a pair of integers (low, high) with 1 <= low <= high, "
                f"e.g. (1, 20); got {shots!r}."
            )
        if self.meta_algorithm is None and self.init == "meta":
            raise ValueError(
                "init='meta' needs a meta_algorithm to learn the start; pass "
                "meta_algorithm='metasgd' (or 'fomaml', 'reptile'), or another init."
            )
        if self.meta_algorithm == "reptile" and self.init != "meta":
            raise ValueError(
                f"meta_algorithm='reptile' learns only the start, so it needs init='meta' "
                f"(got init={self.init!r}); use meta_algorithm='metasgd' to learn the step "
                "sizes of another start."
            )

    # -------------------------------------------------------------- fitting
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Pretrain (or take) the item factors and meta-learn the adaptation.

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
        self._check_settings()
        X = validate_interactions(self, X, reset=True)
        rng = np.random.default_rng(
            check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        )
        self.factors_ = fit_factor_source(
            self.factors, X, ALSFactors(random_state=self.random_state)
        )
        self.item_factors_ = np.ascontiguousarray(self.factors_.item_factors_, dtype=np.float32)
        # the factors' settings as resolved at their fit ("auto" chooses them there)
        settings = self.factors_.fold_in_params()
        self.regularization_ = settings["regularization"]
        self.confidence_scale_ = settings["confidence_scale"]
        self.convention_ = getattr(self.factors_, "convention_", "implicit")
        n_items, f = self.item_factors_.shape

        with blas_limits(self._blas_threads()):
            warm = self._closed_form(X, self._shared_system(None, None))
            self.mean_, self.covariance_ = warm_prior(warm)
            self.negatives_ = uniform_negatives(rng, self.n_steps, self.n_negatives, n_items)
            self.step_sizes_ = np.full((self.n_steps, f), self.learning_rate, dtype=np.float32)
            self.step_size_exponents_ = np.zeros((self.n_steps, f), dtype=np.float32)
            self.init_ = np.zeros(f, dtype=np.float32)
            if self.init in ("mean", "meta"):
                self.init_ = self.mean_.astype(np.float32)
            self._rebuild()
            if self.init == "closed_form":
                self.init_ = np.asarray(self._empty_start, dtype=np.float32)
            self.n_iter_ = 0
            self.validation_scores_ = np.zeros(0)
            self.meta_cv_ = 0
            if self.meta_algorithm is not None:
                self.meta_cv_ = self._n_meta_folds(X)
                self._meta_learn(X, rng)
        return self

    def _n_meta_folds(self, X):
        """The cross-fitting folds of the meta-learning (0: none), from ``meta_cv``."""
        if self.meta_cv is None:
            return 0
        n_users = X.shape[0]
        frozen = isinstance(self.factors, FrozenEstimator)
        if self.meta_cv == "auto":
            enough = n_users >= _AUTO_FOLDS * _MIN_FOLD_USERS
            return _AUTO_FOLDS if enough and not frozen else 0
        if frozen:
            warnings.warn(
                f"meta_cv={self.meta_cv} cannot cross-fit the meta-learning with a prefit "
                "(FrozenEstimator) factor source, which cannot be refitted without each "
                "fold's users: the episodes are played against the prefit factors. If they "
                "were trained on the users of X, the meta-learning sees factors that know "
                "the held-back items. Pass an unfitted factor source to cross-fit, or "
                "meta_cv=None to silence this.",
                UserWarning,
                stacklevel=4,
            )
            return 0
        if n_users < self.meta_cv:
            raise ValueError(
                f"meta_cv={self.meta_cv} cross-fitting folds need at least {self.meta_cv} "
                f"warm users; X has {n_users}. Pass more users, a smaller meta_cv, or None."
            )
        return int(self.meta_cv)

    def _blas_threads(self):
        return effective_n_jobs(self.n_jobs)

    def _shared_system(self, precision, mean):
        """The closed form's fold-in system (the warm users' solve, and the start)."""
        shared, _ = ridge_per_user(np.zeros(1), self.regularization_, self.convention_)
        return shared_system(self.item_factors_, shared, precision, mean)

    def _rebuild(self):
        """Recompute the private caches derived from the public fitted state."""
        n_items, f = self.item_factors_.shape
        Y = self.item_factors_.astype(np.float64)
        # the steps run on item factors of unit mean squared norm (user vectors
        # scaled inversely, scores unchanged), so that learning_rate and l2 do not
        # depend on the factors' overall scale
        self._scale = np.float32(np.sqrt(max(float((Y**2).sum(axis=1).mean()), 1e-12)))
        Yw = (Y / self._scale).astype(np.float32)
        self._Yp = np.vstack([Yw, np.zeros((1, f), dtype=np.float32)])
        self._neg_factors = self._Yp[self.negatives_]
        self._system = self._empty_start = None
        if self.init == "closed_form":
            terms = prior_terms(self.prior, self.prior_strength, self.mean_, self.covariance_)
            self._system = self._shared_system(*terms)
            # a user without shots: the prior's answer, or the warm mean (as ClosedFormFoldIn)
            self._empty_start = self.mean_ if self.prior == "none" else self._system.x0
        if self.loss == "wmse":
            shared, _ = ridge_per_user(np.zeros(1), self.regularization_, self.convention_)
            Yw64 = Yw.astype(np.float64)
            gram = (Yw64.T @ Yw64 + shared / float(self._scale) ** 2 * np.eye(f)) / n_items
            self._objective = WMSE(gram.astype(np.float32), n_items)
        elif self.loss == "logistic":
            self._objective = Logistic()
        else:
            self._objective = BPR()

    def _stepper(self):
        return Stepper(self._Yp, self.l2, tuple(self.n_shots_range))

    # -------------------------------------------------------------- adaptation
    def _closed_form(self, X, system):
        d, t = confidence_coefficients(X.data, self.confidence_scale_, self.convention_)
        _, extra = ridge_per_user(X.indptr, self.regularization_, self.convention_)
        return solve_users(X.indptr, X.indices, d, t, system, extra_ridge=extra)

    def _starts(self, X):
        """The start of every user (rows of X), in the rescaled units of the steps."""
        if self.init == "closed_form":
            X0 = self._closed_form(X, self._system).astype(np.float32)
            X0[np.diff(X.indptr) == 0] = self.init_
            return X0 * self._scale
        return np.broadcast_to(self.init_ * self._scale, (X.shape[0], self.init_.size)).copy()

    def _support(self, X, rows, width, coefficients=None):
        """The padded shots of rows of X; ``coefficients``: X's (d, t), if computed."""
        if coefficients is None:
            coefficients = confidence_coefficients(X.data, self.confidence_scale_, self.convention_)
        d, t = coefficients
        n_items = self.item_factors_.shape[0]
        idx, dd, tt = _gather_padded(rows, width, X.indptr, X.indices, d, t, n_items)
        return Support(idx, dd, tt, self._Yp, n_items)

    def _objective_for(self, X, rows):
        """The loss of these users: wmse adds Spark's per-user ridge."""
        obj = self._objective
        if self.loss == "wmse" and self.convention_ == "spark":
            _, extra = ridge_per_user(X.indptr, self.regularization_, self.convention_)
            extra = extra[rows] / (obj.n_items * float(self._scale) ** 2)
            obj = WMSE(obj.gram, obj.n_items, extra.astype(np.float32))
        return obj

    def _user_vectors(self, X):
        f = self.item_factors_.shape[1]
        U = np.empty((X.shape[0], f), dtype=np.float32)
        budget = max(1, _BATCH_TRIPLES // max(1, self.negatives_.shape[1]))
        log_steps = np.log(self.step_sizes_)
        stepper = self._stepper()
        n_jobs = self._blas_threads()
        with blas_limits(n_jobs):
            X0 = self._starts(X)
        coefficients = confidence_coefficients(X.data, self.confidence_scale_, self.convention_)

        def adapt(batch):
            rows, width = batch
            if width == 0 or self.step_sizes_.shape[0] == 0:
                U[rows] = X0[rows]
                return
            S = self._support(X, rows, width, coefficients)
            obj = self._objective_for(X, rows)
            steps = stepper.stable(
                stepper.user_steps(log_steps, self.step_size_exponents_, S.count), S, obj
            )
            U[rows] = stepper.run(X0[rows], S, obj, self.negatives_, self._neg_factors, steps)

        batches = list(_padded_batches(X.indptr, budget))
        workers = min(n_jobs, len(batches))
        # batches on threads: numpy releases the GIL in the elementwise work and
        # GEMMs, which then run single-threaded each
        with blas_limits(1 if workers > 1 else n_jobs):
            run_threaded(adapt, batches, workers)
        U /= self._scale
        # exactly the start for users without shots (no round trip through the scale)
        U[np.diff(X.indptr) == 0] = self.init_
        return U

    def transform(self, X):
        """Adapt users: their vectors after the gradient steps on their shots.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            The users' interactions (shots).

        Returns
        -------
        U : ndarray of shape (n_users, n_components), float32
            One vector per user; users without interactions get ``init_``.
        """
        X = self._validate_users(X)
        return self._user_vectors(X)

    # -------------------------------------------------------------- meta-learning
    def _episode_batch(self, X, users, rng, n=None, whole=False):
        """The :class:`~._meta.Episode` of these warm users (rows of X)."""
        S_csr, Q_csr = split_episodes(X, users, self.n_shots_range, rng, n, whole)
        rows = np.arange(users.size)
        support = self._support(S_csr, rows, int(np.diff(S_csr.indptr).max()))
        q = Q_csr.indptr
        query, _, _ = _gather_padded(
            rows, int(np.diff(q).max()), q, Q_csr.indices, Q_csr.data, Q_csr.data,
            self.item_factors_.shape[0],
        )  # fmt: skip
        x0 = self._starts(S_csr) if self.init == "closed_form" else None
        return Episode(support, query, x0, self._objective_for(S_csr, rows))

    def _task(self, X, base=None):
        """The :class:`~._meta.MetaTask` of these factors: episodes of rows of X."""

        def make_episode(users, rng, n=None, whole=False):
            return self._episode_batch(X, users, rng, n, whole)

        return MetaTask(make_episode, self._stepper(), base)

    def _fold_models(self, X, fold):
        """One copy of this estimator per fold, its factors fitted without the fold.

        Each copy's factor source is refitted on the other folds' users with the
        settings the full fit resolved (an "auto" search is not run again), and
        rotated onto the full fit's factors (orthogonal Procrustes: ALS factors
        are defined up to a rotation, and the step sizes are per dimension); its
        warm mean and covariance come from the other folds' users.
        """
        from .._auto import fix_auto_settings

        source = fix_auto_settings(self, self).factors
        if source is None:  # a factor source without settings to fix
            source = self.factors_
        Y = self.item_factors_.astype(np.float64)
        models = []
        for k in range(self.meta_cv_):
            rest = X[fold != k]
            Yk = clone(source).fit(rest).item_factors_.astype(np.float64)
            u, _, vt = np.linalg.svd(Yk.T @ Y)
            Yk = (Yk @ (u @ vt)).astype(np.float32)
            shared, _ = ridge_per_user(np.zeros(1), self.regularization_, self.convention_)
            mean, covariance = warm_prior(
                self._closed_form(rest, shared_system(Yk, shared, None, None))
            )
            models.append(self._replace(item_factors_=Yk, mean_=mean, covariance_=covariance))
        return models

    def _start_offset_base(self):
        """The start meta-learning begins from (rescaled units); the learned start is
        kept relative to it, so that it can move to other factors."""
        if self.init == "zero":
            return np.zeros(self.init_.size)
        return self.mean_.astype(np.float64) * float(self._scale)

    def _meta_learn(self, X, rng):
        """Dispatch to :func:`~._meta.meta_learn` and keep what it learned.

        With cross-fitting (``meta_cv_`` folds), the users of fold k play their
        episodes against a copy whose factors were fitted without them; the start
        ``theta`` is then learned as an offset from each copy's own warm mean (or
        zero), and the final start is that offset from this estimator's.
        """
        T, f = self.step_sizes_.shape
        scale = float(self._scale)
        task_of = None
        if self.meta_cv_:
            task_of = user_folds(X.shape[0], self.meta_cv_, rng)
            models = self._fold_models(X, task_of)
            fixed_start = self.init == "closed_form"
            tasks = [m._task(X, None if fixed_start else m._start_offset_base()) for m in models]
            theta = np.zeros(f)
        else:
            tasks = [self._task(X)]
            theta = self.init_.astype(np.float64) * scale
        params = {
            "theta": theta,
            "log_steps": np.log(self.step_sizes_.astype(np.float64)),
            "exponents": np.zeros((T, f)),
            "log_tau": np.zeros(1),
        }
        # Adam moves each parameter by about its rate per iteration; the start's
        # rate is in units of the warm users' spread along each dimension
        rates = {}
        if self.init == "meta":
            rates["theta"] = self.meta_learning_rate * np.sqrt(np.diag(self.covariance_)) * scale
        if self.meta_algorithm != "reptile":
            rates.update(
                dict.fromkeys(["log_steps", "exponents", "log_tau"], self.meta_learning_rate)
            )
        params, self.n_iter_, self.validation_scores_ = meta_learn(
            X,
            params,
            rates,
            rng,
            tasks=tasks,
            task_of=task_of,
            meta_algorithm=self.meta_algorithm,
            meta_iter=self.meta_iter,
            meta_batch_size=self.meta_batch_size,
            n_negatives=self.n_negatives,
            validation_fraction=self.validation_fraction,
            n_iter_no_change=self.n_iter_no_change,
            show_progress=self.show_progress,
        )
        if params is None:
            warnings.warn(
                f"No warm user has more than n_shots_range[0] = {self.n_shots_range[0]} "
                "interactions, so no few-shot episode can be drawn and nothing is "
                "meta-learned; the step sizes stay at learning_rate.",
                UserWarning,
                stacklevel=3,
            )
            return
        if self.init == "meta":
            theta = params["theta"]
            if self.meta_cv_:
                theta = theta + self._start_offset_base()
            self.init_ = (theta / scale).astype(np.float32)
        self.step_sizes_ = np.exp(params["log_steps"]).astype(np.float32)
        self.step_size_exponents_ = params["exponents"].astype(np.float32)
