"""The losses of GradientFoldIn's steps: value, gradient and Hessian-vector product.

Each loss is evaluated for a batch of users at once on their padded shots
(:class:`Support`) and, for "bpr" and "logistic", on a set of negative items
shared by the batch (:class:`Negatives`). The meta-gradient of
:mod:`skfewrec.adapters._meta` needs all three of value, gradient and
Hessian-vector product; the item factors being fixed, each has a closed form.
"""

import numpy as np

#: score given to padded shots (+) and to negatives that are a user's own shots
#: (-): their sigmoid weights underflow to 0, which masks them for free
_BIG = np.float32(1e4)
#: scores are clipped to +-_CLIP before exponentiation (e^80 and e^-80 are finite)
_CLIP = np.float32(80)


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


def rowdot(P, x):
    """``P[u] @ x[u]`` for every user: (b, k, f), (b, f) -> (b, k)."""
    return np.matmul(P, x[:, :, None])[:, :, 0]


def weighted_rows(w, P):
    """``w[u] @ P[u]`` for every user: (b, k), (b, k, f) -> (b, f)."""
    return np.matmul(w[:, None, :], P)[:, 0, :]


class Support:
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
        return Negatives(items, Yn, self.idx, self.n_items)


class Negatives:
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
def _masked_scores(x, S, N):
    """Scores of the shots (padding at +_BIG) and of the negatives (own shots at -_BIG)."""
    s_pos = rowdot(S.P, x)
    s_pos[~S.valid] = _BIG
    s_neg = x @ N.Yn.T
    s_neg[N.collide] = -_BIG
    return s_pos, s_neg


class BPR:
    """Mean over (shot, negative) pairs of ``-log sigmoid(s_shot - s_neg)``."""

    uses_negatives = True

    def value(self, x, S, N):
        s_pos, s_neg = _masked_scores(x, S, N)
        z = s_pos[:, :, None] - s_neg[:, None, :]
        return _softplus(-z).sum(axis=(1, 2)) * S.inv_count * N.inv_count

    def grad(self, x, S, N, keep=False):
        # -dL/dz = sigmoid(s_neg - s_pos) = 1 / (1 + e^s_pos e^-s_neg): the exponentials
        # of the (b, k) and (b, m) scores, not of the (b, k, m) margins; masked
        # pairs get an infinite product, hence weight 0
        e_pos = np.exp(np.clip(rowdot(S.P, x), -_CLIP, _CLIP))
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
        g = (w_neg @ N.Yn) * scale - weighted_rows(w.sum(axis=2) * scale, S.P)
        return g, (w, scale)

    def hvp(self, v, S, N, cache):
        w, scale = cache
        u = rowdot(S.P, v)[:, :, None] - (v @ N.Yn.T)[:, None, :]
        c = w * (1 - w) * u
        return weighted_rows(c.sum(axis=2) * scale, S.P) - (c.sum(axis=1) @ N.Yn) * scale


class Logistic:
    """Mean ``-log sigmoid(s)`` over shots plus mean ``-log sigmoid(-s)`` over negatives."""

    uses_negatives = True

    def value(self, x, S, N):
        s_pos, s_neg = _masked_scores(x, S, N)
        return (
            _softplus(-s_pos).sum(axis=1) * S.inv_count + _softplus(s_neg).sum(axis=1) * N.inv_count
        )

    def grad(self, x, S, N, keep=False):
        s_pos, s_neg = _masked_scores(x, S, N)
        wp = _sigmoid(-s_pos) * S.inv_count[:, None]
        wn = _sigmoid(s_neg) * N.inv_count[:, None]
        g = wn @ N.Yn - weighted_rows(wp, S.P)
        return g, (s_pos, s_neg)

    def hvp(self, v, S, N, cache):
        s_pos, s_neg = cache
        hp = _sigmoid(s_pos) * _sigmoid(-s_pos) * S.inv_count[:, None]
        hn = _sigmoid(s_neg) * _sigmoid(-s_neg) * N.inv_count[:, None]
        return weighted_rows(hp * rowdot(S.P, v), S.P) + (hn * (v @ N.Yn.T)) @ N.Yn


class WMSE:
    """The factor source's iALS loss over the whole catalogue, divided by n_items.

    The unobserved items enter exactly through the Gram matrix ``Y^T Y``, so no
    negatives are sampled; its minimiser is the plain closed-form fold-in.
    """

    uses_negatives = False

    def __init__(self, gram, n_items, extra_ridge=None):
        self.gram = gram  # (Y^T Y + ridge) / n_items, float32
        self.n_items = np.float32(n_items)
        self.extra = extra_ridge  # per-user extra ridge / n_items (Spark), or None
        self._gram_norm = float(np.linalg.eigvalsh(gram.astype(np.float64)).max(initial=0.0))

    def curvature_bound(self, S):
        """An upper bound of each user's largest Hessian eigenvalue, (b,).

        ``H = gram + extra + sum_i d_i y_i y_i^T / n``: its norm is at most the
        gram's plus ``sum_i max(d_i, 0) |y_i|^2 / n``. Large confidences make it
        large, and fixed step sizes would then diverge (see ``Stepper.stable``).
        """
        shots = (np.maximum(S.d, 0) * np.einsum("bkf,bkf->bk", S.P, S.P)).sum(axis=1)
        bound = self._gram_norm + shots.astype(np.float64) / float(self.n_items)
        return bound if self.extra is None else bound + self.extra

    def _quad(self, x):
        q = x @ self.gram
        if self.extra is not None:
            q += self.extra[:, None] * x
        return q

    def value(self, x, S, N):
        s_pos = rowdot(S.P, x)
        fit = ((0.5 * S.d * s_pos - S.t) * s_pos).sum(axis=1) / self.n_items
        return 0.5 * (x * self._quad(x)).sum(axis=1) + fit

    def grad(self, x, S, N, keep=False):
        s_pos = rowdot(S.P, x)
        return self._quad(x) + weighted_rows((S.d * s_pos - S.t) / self.n_items, S.P), None

    def hvp(self, v, S, N, cache):
        return self._quad(v) + weighted_rows(S.d * rowdot(S.P, v) / self.n_items, S.P)


def uniform_negatives(rng, n_sets, n_negatives, n_items):
    """``n_sets`` sorted sets of ``min(n_negatives, n_items)`` distinct items, uniform."""
    m = min(n_negatives, n_items)
    if m == n_items:
        return np.broadcast_to(np.arange(n_items, dtype=np.int64), (n_sets, n_items)).copy()
    keys = rng.random((n_sets, n_items))
    return np.sort(np.argpartition(keys, m - 1, axis=1)[:, :m], axis=1).astype(np.int64)
