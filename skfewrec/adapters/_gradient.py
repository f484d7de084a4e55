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
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state

from .._core.compat import HasMethods, Interval, StrOptions, _fit_context
from .._core.conventions import confidence_coefficients, ridge_per_user
from .._core.solvers import _gather_padded, _padded_batches, shared_system, solve_users
from .._core.threads import blas_limits, effective_n_jobs
from ..base import (
    DerivedCachesMixin,
    FactorRecommenderMixin,
    fit_factor_source,
    validate_interactions,
)
from ..factors._als import ALSFactors
from ._priors import warm_prior

LOSSES = ("bpr", "logistic", "wmse")
INITS = ("zero", "mean", "closed_form", "meta")
META_ALGORITHMS = ("metasgd", "fomaml", "reptile")

#: score given to padded shots (+) and to negatives that are a user's own shots
#: (-): their sigmoid weights underflow to 0, which masks them for free
_BIG = np.float32(1e4)
#: scores are clipped to +-_CLIP before exponentiation (e^80 and e^-80 are finite)
_CLIP = np.float32(80)
#: meta-iterations between two evaluations on the validation episodes
_EVAL_EVERY = 10
#: most query items of an episode (a random subset of the held-back items)
_MAX_QUERY = 64
#: most validation episodes (each scores the whole catalogue)
_MAX_VALIDATION = 2048
#: cut-off of the validation NDCG
_VALIDATION_K = 20
#: padded (user, shot, negative) triples a transform batch may hold
_BATCH_TRIPLES = 1 << 18
#: Adam's moment decay rates
_BETAS = (0.9, 0.999)


# ------------------------------------------------------------------ numerics
def _sigmoid(z):
    """1 / (1 + exp(-z)) in float32 (overflow to exactly 0 or 1 is intended)."""
    return _sigmoid_neg_(np.negative(z))


def _sigmoid_neg_(z):
    """``sigmoid(-z)`` computed in place in z, which it returns."""
    with np.errstate(over="ignore"):
        np.exp(z, out=z)
    z += 1
    return np.reciprocal(z, out=z)


def _softplus(z):
    """log(1 + exp(z)), stable."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _rowdot(P, x):
    """``P[u] @ x[u]`` for every user: (b, k, f), (b, f) -> (b, k)."""
    return np.matmul(P, x[:, :, None])[:, :, 0]


def _weighted_rows(w, P):
    """``w[u] @ P[u]`` for every user: (b, k), (b, k, f) -> (b, f)."""
    return np.matmul(w[:, None, :], P)[:, 0, :]


class _Support:
    """Padded shots of a batch of users: what every gradient step reads.

    ``P`` holds the shots' item factors (zero rows at padding), ``valid`` marks
    real shots, ``d`` and ``t`` are their confidence terms (for ``wmse``).
    """

    def __init__(self, idx, d, t, Yp, n_items):
        self.idx = idx
        self.valid = idx < n_items
        self.P = Yp[idx]
        self.d = d.astype(np.float32)
        self.t = t.astype(np.float32)
        self.count = self.valid.sum(axis=1).astype(np.float32)
        self.inv_count = 1.0 / np.maximum(self.count, 1)
        self.n_items = n_items
        self.ones = np.ones((1, 1, idx.shape[1]), dtype=np.float32)
        self._work = None

    def workspace(self, m, keep=False):
        """A (b, k, m) float32 buffer, reused across steps unless kept for backprop."""
        shape = (self.idx.shape[0], self.idx.shape[1], m)
        if keep:
            return np.empty(shape, dtype=np.float32)
        if self._work is None or self._work.shape != shape:
            self._work = np.empty(shape, dtype=np.float32)
        return self._work

    def negatives(self, items, Yn):
        """A step's shared negatives, with each user's own shots among them masked."""
        return _Negatives(items, Yn, self.idx, self.n_items)


class _Negatives:
    """A set of negative items shared by a batch, and each user's collisions with it."""

    def __init__(self, items, Yn, idx, n_items):
        self.Yn = Yn
        m = items.size
        where = np.full(n_items + 1, -1, dtype=np.int64)
        where[items] = np.arange(m)
        hit = where[idx]
        rows, cols = np.nonzero(hit >= 0)
        self.collide = (rows, hit[rows, cols])
        n_hits = np.bincount(rows, minlength=idx.shape[0])
        self.inv_count = 1.0 / np.maximum(m - n_hits, 1).astype(np.float32)


# ------------------------------------------------------------------ losses
# Each loss gives, for a batch of users, its value, its gradient (and a cache)
# and Hessian-vector products, all per user; the meta-gradient needs all three.
class _BPR:
    """Mean over (shot, negative) pairs of ``-log sigmoid(s_shot - s_neg)``."""

    uses_negatives = True

    def _margins(self, x, S, N):
        s_pos = _rowdot(S.P, x)
        s_pos[~S.valid] = _BIG
        s_neg = x @ N.Yn.T
        s_neg[N.collide] = -_BIG
        return s_pos[:, :, None] - s_neg[:, None, :]

    def value(self, x, S, N):
        z = self._margins(x, S, N)
        return _softplus(-z).sum(axis=(1, 2)) * S.inv_count * N.inv_count

    def grad(self, x, S, N, keep=False):
        # -dL/dz = sigmoid(s_neg - s_pos) = 1 / (1 + e^s_pos e^-s_neg): the exponentials
        # of the (b, k) and (b, m) scores, not of the (b, k, m) margins; masked
        # pairs get an infinite product, hence weight 0
        e_pos = np.exp(np.clip(_rowdot(S.P, x), -_CLIP, _CLIP))
        e_pos[~S.valid] = np.inf
        e_neg = np.exp(np.clip(-(x @ N.Yn.T), -_CLIP, _CLIP))
        e_neg[N.collide] = np.inf
        w = S.workspace(e_neg.shape[1], keep)
        with np.errstate(over="ignore"):
            np.multiply(e_pos[:, :, None], e_neg[:, None, :], out=w)
        w += 1
        np.reciprocal(w, out=w)
        scale = (S.inv_count * N.inv_count)[:, None]
        # the sum over shots as a (1, k) x (k, m) product per user: faster than .sum(axis=1)
        w_neg = np.matmul(S.ones, w)[:, 0, :]
        g = (w_neg @ N.Yn) * scale - _weighted_rows(w.sum(axis=2) * scale, S.P)
        return g, (w, scale)

    def hvp(self, v, S, N, cache):
        w, scale = cache
        u = _rowdot(S.P, v)[:, :, None] - (v @ N.Yn.T)[:, None, :]
        c = w * (1 - w) * u
        return _weighted_rows(c.sum(axis=2) * scale, S.P) - (c.sum(axis=1) @ N.Yn) * scale


class _Logistic:
    """Mean ``-log sigmoid(s)`` over shots plus mean ``-log sigmoid(-s)`` over negatives."""

    uses_negatives = True

    def _scores(self, x, S, N):
        s_pos = _rowdot(S.P, x)
        s_pos[~S.valid] = _BIG
        s_neg = x @ N.Yn.T
        s_neg[N.collide] = -_BIG
        return s_pos, s_neg

    def value(self, x, S, N):
        s_pos, s_neg = self._scores(x, S, N)
        return (
            _softplus(-s_pos).sum(axis=1) * S.inv_count + _softplus(s_neg).sum(axis=1) * N.inv_count
        )

    def grad(self, x, S, N, keep=False):
        s_pos, s_neg = self._scores(x, S, N)
        wp = _sigmoid(-s_pos) * S.inv_count[:, None]
        wn = _sigmoid(s_neg) * N.inv_count[:, None]
        g = wn @ N.Yn - _weighted_rows(wp, S.P)
        return g, (s_pos, s_neg)

    def hvp(self, v, S, N, cache):
        s_pos, s_neg = cache
        hp = _sigmoid(s_pos) * _sigmoid(-s_pos) * S.inv_count[:, None]
        hn = _sigmoid(s_neg) * _sigmoid(-s_neg) * N.inv_count[:, None]
        return _weighted_rows(hp * _rowdot(S.P, v), S.P) + (hn * (v @ N.Yn.T)) @ N.Yn


class _WMSE:
    """The factor source's iALS loss over the whole catalogue, divided by n_items.

    The unobserved items enter exactly through the Gram matrix ``Y^T Y``, so no
    negatives are sampled; its minimiser is the plain closed-form fold-in.
    """

    uses_negatives = False

    def __init__(self, gram, n_items, extra_ridge=None):
        self.gram = gram  # (Y^T Y + ridge) / n_items, float32
        self.n_items = np.float32(n_items)
        self.extra = extra_ridge  # per-user extra ridge / n_items (Spark), or None

    def _quad(self, x):
        q = x @ self.gram
        if self.extra is not None:
            q += self.extra[:, None] * x
        return q

    def value(self, x, S, N):
        s_pos = _rowdot(S.P, x)
        fit = ((0.5 * S.d * s_pos - S.t) * s_pos).sum(axis=1) / self.n_items
        return 0.5 * (x * self._quad(x)).sum(axis=1) + fit

    def grad(self, x, S, N, keep=False):
        s_pos = _rowdot(S.P, x)
        return self._quad(x) + _weighted_rows((S.d * s_pos - S.t) / self.n_items, S.P), None

    def hvp(self, v, S, N, cache):
        return self._quad(v) + _weighted_rows(S.d * _rowdot(S.P, v) / self.n_items, S.P)


def _uniform_negatives(rng, n_sets, n_negatives, n_items):
    """``n_sets`` sorted sets of ``min(n_negatives, n_items)`` distinct items, uniform."""
    m = min(n_negatives, n_items)
    if m == n_items:
        return np.broadcast_to(np.arange(n_items, dtype=np.int64), (n_sets, n_items)).copy()
    keys = rng.random((n_sets, n_items))
    return np.sort(np.argpartition(keys, m - 1, axis=1)[:, :m], axis=1).astype(np.int64)


# ------------------------------------------------------------------ the estimator
class GradientFoldIn(DerivedCachesMixin, FactorRecommenderMixin, TransformerMixin, BaseEstimator):
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

    Parameters
    ----------
    factors : estimator, default=None
        The factor source: an :class:`ALSFactors` (fitted on ``X`` by ``fit``), or a
        :class:`~sklearn.frozen.FrozenEstimator` wrapping a fitted one (used as is,
        kept by ``clone``). None means ``ALSFactors()``.
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
        The prior of the closed-form start (``init="closed_form"``), as in
        :class:`ClosedFormFoldIn`.
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
    random_state : int, RandomState instance or None, default=None
        Seeds the negatives, the episodes and the validation split.
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
        self.factors_ = fit_factor_source(self.factors, X, ALSFactors())
        self.item_factors_ = np.ascontiguousarray(self.factors_.item_factors_, dtype=np.float32)
        self.regularization_ = float(self.factors_.regularization)
        self.confidence_scale_ = float(self.factors_.confidence_scale)
        self.convention_ = getattr(self.factors_, "convention_", "implicit")
        n_items, f = self.item_factors_.shape

        with blas_limits(self._blas_threads()):
            shared, _ = ridge_per_user(X.indptr, self.regularization_, self.convention_)
            warm = self._closed_form(X, shared_system(self.item_factors_, shared))
            self.mean_, self.covariance_ = warm_prior(warm)
            self.negatives_ = _uniform_negatives(rng, self.n_steps, self.n_negatives, n_items)
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
            if self.meta_algorithm is not None:
                self._meta_learn(X, rng)
        return self

    def _blas_threads(self):
        return effective_n_jobs(self.n_jobs)

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
            shared, _ = ridge_per_user(np.zeros(1), self.regularization_, self.convention_)
            precision = mean = None
            if self.prior == "mean":
                precision, mean = self.prior_strength * np.eye(f), self.mean_
            elif self.prior == "gaussian":
                precision = self.prior_strength * np.linalg.inv(self.covariance_)
                mean = self.mean_
            self._system = shared_system(self.item_factors_, shared, precision, mean)
            # a user without shots: the prior's answer, or the warm mean (as ClosedFormFoldIn)
            self._empty_start = self.mean_ if self.prior == "none" else self._system.x0
        if self.loss == "wmse":
            shared, _ = ridge_per_user(np.zeros(1), self.regularization_, self.convention_)
            Yw64 = Yw.astype(np.float64)
            gram = (Yw64.T @ Yw64 + shared / float(self._scale) ** 2 * np.eye(f)) / n_items
            self._objective = _WMSE(gram.astype(np.float32), n_items)
        elif self.loss == "logistic":
            self._objective = _Logistic()
        else:
            self._objective = _BPR()

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
        return _Support(idx, dd, tt, self._Yp, n_items)

    def _objective_for(self, X, rows):
        """The loss of these users: wmse adds Spark's per-user ridge."""
        obj = self._objective
        if self.loss == "wmse" and self.convention_ == "spark":
            _, extra = ridge_per_user(X.indptr, self.regularization_, self.convention_)
            extra = extra[rows] / (obj.n_items * float(self._scale) ** 2)
            obj = _WMSE(obj.gram, obj.n_items, extra.astype(np.float32))
        return obj

    def _shot_feature(self, counts):
        """log of the number of shots, clipped to n_shots_range."""
        low, high = self.n_shots_range
        return np.log(np.clip(counts, low, high)).astype(np.float32)

    def _user_steps(self, log_steps, exponents, counts):
        """Step sizes of every step, user and dimension, (T, b, f)."""
        ell = self._shot_feature(counts)
        log_a = log_steps[:, None, :] + exponents[:, None, :] * ell[None, :, None]
        return np.exp(log_a).astype(np.float32)

    def _steps(self, x0, S, obj, negatives, neg_factors, step_sizes, keep=False):
        """Run the gradient steps from x0; with keep, also return what backprop needs."""
        x = x0.copy()
        l2 = np.float32(self.l2)
        trace = []
        for s in range(step_sizes.shape[0]):
            N = S.negatives(negatives[s], neg_factors[s]) if obj.uses_negatives else None
            g, cache = obj.grad(x, S, N, keep)
            if l2:
                g += l2 * (x - x0)
            if keep:
                trace.append((g, N, cache))
            x = x - step_sizes[s] * g
        return (x, trace) if keep else x

    def _user_vectors(self, X):
        f = self.item_factors_.shape[1]
        U = np.empty((X.shape[0], f), dtype=np.float32)
        budget = max(1, _BATCH_TRIPLES // max(1, self.negatives_.shape[1]))
        log_steps = np.log(self.step_sizes_)
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
            steps = self._user_steps(log_steps, self.step_size_exponents_, S.count)
            obj = self._objective_for(X, rows)
            U[rows] = self._steps(X0[rows], S, obj, self.negatives_, self._neg_factors, steps)

        batches = list(_padded_batches(X.indptr, budget))
        workers = min(n_jobs, len(batches))
        # batches on threads: numpy releases the GIL in the elementwise work and
        # GEMMs, which then run single-threaded each
        with blas_limits(1 if workers > 1 else n_jobs):
            if workers > 1:
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(adapt, batches))
            else:
                for batch in batches:
                    adapt(batch)
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

    # -------------------------------------------------------------- episodes
    def _episode_users(self, X, rng):
        """Training and validation warm users: those with more than low interactions."""
        low = self.n_shots_range[0]
        eligible = rng.permutation(np.flatnonzero(np.diff(X.indptr) >= low + 1))
        n_val = 0
        if self.validation_fraction > 0 and eligible.size >= 2:
            n_val = round(self.validation_fraction * eligible.size)
            n_val = min(eligible.size - 1, _MAX_VALIDATION, max(1, n_val))
        return eligible[n_val:], eligible[:n_val]

    def _validation_shots(self, X, users):
        """Validation episodes: every validation user at each of 5 shot counts."""
        low, high = self.n_shots_range
        grid = np.unique(np.round(np.geomspace(low, high, 5)).astype(int))
        counts = np.diff(X.indptr)[users]
        who, which = np.nonzero(counts[:, None] >= grid[None, :] + 1)
        return users[who][:_MAX_VALIDATION], grid[which][:_MAX_VALIDATION]

    def _episodes(self, X, users, rng, n=None, whole=False):
        """Cut each user's row at random into a support of n shots and a query.

        n is drawn log-uniformly in n_shots_range (at most the user's count minus
        one) unless given. Returns the support and query as CSR matrices; with
        ``whole``, the support is the whole episode (Reptile's task data).
        """
        sub = X[users]
        counts = np.diff(sub.indptr)
        if n is None:
            low, high = self.n_shots_range
            high = np.minimum(high, counts - 1)
            u = rng.random(users.size)
            n = np.floor(np.exp(np.log(low) + u * (np.log(high + 1) - np.log(low))))
            n = np.clip(n.astype(np.int64), low, high)
        rows = np.repeat(np.arange(users.size), counts)
        order = np.lexsort((rng.random(sub.nnz), rows))
        rank = np.empty(sub.nnz, dtype=np.int64)
        rank[order] = np.arange(sub.nnz) - sub.indptr[rows[order]]
        end = n[rows] + _MAX_QUERY
        in_query = (rank >= n[rows]) & (rank < end)
        in_support = (rank < end) if whole else (rank < n[rows])

        def part(mask):
            indptr = np.concatenate(([0], np.cumsum(np.bincount(rows[mask], minlength=users.size))))
            return sp.csr_matrix(
                (sub.data[mask], sub.indices[mask], indptr), shape=(users.size, X.shape[1])
            )

        return part(in_support), part(in_query)

    def _episode_batch(self, X, users, rng, n=None, whole=False):
        """(support, padded query items, starts or None, loss) of a batch of episodes."""
        S_csr, Q_csr = self._episodes(X, users, rng, n, whole)
        rows = np.arange(users.size)
        support = self._support(S_csr, rows, int(np.diff(S_csr.indptr).max()))
        q = Q_csr.indptr
        query, _, _ = _gather_padded(
            rows, int(np.diff(q).max()), q, Q_csr.indices, Q_csr.data, Q_csr.data,
            self.item_factors_.shape[0],
        )  # fmt: skip
        x0 = self._starts(S_csr) if self.init == "closed_form" else None
        return support, query, x0, self._objective_for(S_csr, rows)

    # -------------------------------------------------------------- meta-objective
    def _catalogue_scores(self, x, support):
        """Scores of every item (and the padding column), shots at -inf."""
        scores = x @ self._Yp.T
        scores[:, -1] = -np.inf
        scores[np.arange(x.shape[0])[:, None], support.idx] = -np.inf
        return scores

    def _query_loss(self, x, support, query, log_tau):
        """The meta-objective: minus the log of the query's share of a softmax.

        ``-log sum_{q in query} softmax(tau * scores)_q``, the softmax over every
        item but the user's shots: low when query items lead the ranking. ``tau``
        (learned) sets how far down the ranking the loss looks. Returns the mean
        over users and its gradients with respect to x (per user) and log tau.
        """
        b = x.shape[0]
        tau = np.float32(np.exp(log_tau))
        scores = self._catalogue_scores(x, support)
        valid = query < self.item_factors_.shape[0]
        z = tau * scores
        top = z.max(axis=1, keepdims=True)
        p = np.exp(z - top)
        total = p.sum(axis=1, keepdims=True)
        p /= total
        lse = (np.log(total) + top)[:, 0]
        # the query's share in log space: it underflows when the softmax is peaked
        z_q = np.where(valid, np.take_along_axis(z, query, axis=1), -np.inf)
        top_q = z_q.max(axis=1, keepdims=True)
        top_q[~np.isfinite(top_q)] = 0
        e_q = np.exp(z_q - top_q)
        mass = np.maximum(e_q.sum(axis=1, keepdims=True), 1e-30)
        w = (e_q / mass).astype(np.float32)
        loss = lse - (np.log(mass) + top_q)[:, 0]
        s_q = (np.where(valid, np.take_along_axis(scores, query, axis=1), 0) * w).sum(axis=1)
        expected = p @ self._Yp
        g_x = tau * (expected - _weighted_rows(w, self._Yp[query])) / np.float32(b)
        g_log_tau = float(tau * ((expected * x).sum(axis=1) - s_q).mean())
        return float(loss.mean()), g_x, g_log_tau

    def _best_log_tau(self, x, support, query):
        """The temperature minimising the query loss, on a grid."""
        grid = np.linspace(np.log(0.1), np.log(1000.0), 41)
        losses = [self._query_loss(x, support, query, log_tau)[0] for log_tau in grid]
        return float(grid[int(np.argmin(losses))])

    def _ndcg(self, x, support, query):
        """Mean NDCG@20 of the query items over the catalogue, shots filtered."""
        b = x.shape[0]
        n_items = self.item_factors_.shape[0]
        k = min(_VALIDATION_K, n_items)
        scores = self._catalogue_scores(x, support)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        relevant = np.zeros((b, n_items + 1), dtype=bool)
        relevant[np.arange(b)[:, None], query] = True
        relevant[:, -1] = False
        discount = 1.0 / np.log2(np.arange(2, k + 2))
        dcg = (relevant[np.arange(b)[:, None], top] * discount).sum(axis=1)
        n_rel = np.minimum((query < n_items).sum(axis=1), k)
        idcg = np.cumsum(discount)[np.maximum(n_rel, 1) - 1]
        return float(np.mean(np.where(n_rel > 0, dcg / idcg, 0.0)))

    # -------------------------------------------------------------- meta-learning
    def _unroll(self, episode, params, negatives, keep=False):
        support, _, x0, obj = episode
        if x0 is None:
            theta = params["theta"].astype(np.float32)
            x0 = np.broadcast_to(theta, (support.idx.shape[0], theta.size)).copy()
        steps = self._user_steps(params["log_steps"], params["exponents"], support.count)
        neg_factors = self._Yp[negatives]
        return x0, steps, self._steps(x0, support, obj, negatives, neg_factors, steps, keep)

    def _meta_gradient(self, episode, params, negatives):
        """Query loss and its gradient with respect to every meta-parameter.

        Reverse mode through the unrolled steps ``x_{s+1} = x_s - a_s g_s``: a
        step's Jacobian is ``I - diag(a_s)(H_s + l2 I)``, ``H_s`` the Hessian of
        the support loss, applied as a Hessian-vector product; "fomaml" drops it.
        """
        support, query, _, obj = episode
        x0, steps, (x, trace) = self._unroll(episode, params, negatives, keep=True)
        loss, a, g_log_tau = self._query_loss(x, support, query, params["log_tau"][0])
        second_order = self.meta_algorithm == "metasgd"
        l2 = np.float32(self.l2)
        ell = self._shot_feature(support.count)[:, None]
        g_log_steps = np.zeros(params["log_steps"].shape)
        g_exponents = np.zeros(params["exponents"].shape)
        a_x0 = np.zeros_like(x0)
        for s in range(steps.shape[0] - 1, -1, -1):
            g_s, N_s, cache = trace[s]
            # through steps = exp(log_steps + exponents * log n)
            d_log = -(a * g_s) * steps[s]
            g_log_steps[s] = d_log.sum(axis=0)
            g_exponents[s] = (d_log * ell).sum(axis=0)
            if second_order:
                v = steps[s] * a
                hv = obj.hvp(v, support, N_s, cache)
                if l2:
                    a_x0 += l2 * v
                    hv += l2 * v
                a = a - hv
        a_x0 += a
        grads = {
            "theta": a_x0.sum(axis=0).astype(np.float64),
            "log_steps": g_log_steps,
            "exponents": g_exponents,
            "log_tau": np.array([g_log_tau]),
        }
        return loss, grads

    def _reptile_direction(self, episode, params, negatives):
        """Reptile's update direction: from the mean adapted vector back to the start."""
        _, _, x = self._unroll(episode, params, negatives)
        return {"theta": params["theta"] - x.mean(axis=0).astype(np.float64)}

    def _validation_score(self, episode, params, negatives):
        support, query, _, _ = episode
        _, _, x = self._unroll(episode, params, negatives)
        return self._ndcg(x, support, query)

    def _meta_learn(self, X, rng):
        """Adam on the meta-parameters over batches of episodes, with early stopping."""
        from tqdm.auto import tqdm

        train, val = self._episode_users(X, rng)
        if train.size == 0:
            warnings.warn(
                f"No warm user has more than n_shots_range[0] = {self.n_shots_range[0]} "
                "interactions, so no few-shot episode can be drawn and nothing is "
                "meta-learned; the step sizes stay at learning_rate.",
                UserWarning,
                stacklevel=3,
            )
            return
        T, f = self.step_sizes_.shape
        n_items = self.item_factors_.shape[0]
        reptile = self.meta_algorithm == "reptile"
        params = {
            "theta": self.init_.astype(np.float64) * float(self._scale),
            "log_steps": np.log(self.step_sizes_.astype(np.float64)),
            "exponents": np.zeros((T, f)),
            "log_tau": np.zeros(1),
        }
        learned = ["theta"] if self.init == "meta" else []
        if not reptile:
            learned += ["log_steps", "exponents", "log_tau"]
        # Adam moves each parameter by about its rate per iteration; the start's
        # rate is in units of the warm users' spread along each dimension
        rates = dict.fromkeys(learned, self.meta_learning_rate)
        spread = np.sqrt(np.diag(self.covariance_)) * float(self._scale)
        rates["theta"] = self.meta_learning_rate * spread
        moments = {key: (np.zeros_like(params[key]), np.zeros_like(params[key])) for key in learned}

        val_episode = val_negatives = None
        if val.size:
            users, shots = self._validation_shots(X, val)
            val_episode = self._episode_batch(X, users, rng, n=shots)
            val_negatives = _uniform_negatives(rng, T, self.n_negatives, n_items)
        best = None
        scores = []
        if val_episode is not None:
            scores.append(self._validation_score(val_episode, params, val_negatives))
            best = (scores[0], {key: value.copy() for key, value in params.items()})

        stale = it = 0
        batch = min(self.meta_batch_size, train.size)
        bar = tqdm(total=self.meta_iter, disable=not self.show_progress, desc="meta-learning")
        for it in range(1, self.meta_iter + 1):
            users = rng.choice(train, size=batch, replace=False)
            negatives = _uniform_negatives(rng, T, self.n_negatives, n_items)
            episode = self._episode_batch(X, users, rng, whole=reptile)
            if reptile:
                grads = self._reptile_direction(episode, params, negatives)
            else:
                if it == 1:
                    # start the temperature where the loss of the first batch is lowest
                    _, _, x = self._unroll(episode, params, negatives)
                    params["log_tau"][0] = self._best_log_tau(x, episode[0], episode[1])
                _, grads = self._meta_gradient(episode, params, negatives)
            for key in learned:
                m1, m2 = moments[key]
                m1 *= _BETAS[0]
                m1 += (1 - _BETAS[0]) * grads[key]
                m2 *= _BETAS[1]
                m2 += (1 - _BETAS[1]) * grads[key] ** 2
                m_hat = m1 / (1 - _BETAS[0] ** it)
                v_hat = m2 / (1 - _BETAS[1] ** it)
                params[key] -= rates[key] * m_hat / (np.sqrt(v_hat) + 1e-8)
            np.clip(params["log_steps"], -12.0, 3.0, out=params["log_steps"])
            bar.update()
            if val_episode is not None and (it % _EVAL_EVERY == 0 or it == self.meta_iter):
                scores.append(self._validation_score(val_episode, params, val_negatives))
                bar.set_postfix(validation_ndcg=f"{scores[-1]:.4f}")
                if scores[-1] > best[0]:
                    best = (scores[-1], {key: value.copy() for key, value in params.items()})
                    stale = 0
                else:
                    stale += 1
                    if stale >= self.n_iter_no_change:
                        break
        bar.close()
        if best is not None:
            params = best[1]
        self.n_iter_ = it
        self.validation_scores_ = np.asarray(scores)
        if self.init == "meta":
            self.init_ = (params["theta"] / float(self._scale)).astype(np.float32)
        self.step_sizes_ = np.exp(params["log_steps"]).astype(np.float32)
        self.step_size_exponents_ = params["exponents"].astype(np.float32)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
