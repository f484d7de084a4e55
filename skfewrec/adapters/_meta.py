"""GradientFoldIn's algorithms: the unrolled steps, few-shot episodes and meta-learning.

The adaptation of a batch of users is ``n_steps`` gradient steps from their
starts ``x_0``::

    x_{s+1} = x_s - a_s(n) * (grad L_S(x_s) + l2 (x_s - x_0))
    a_s(n) = exp(log_steps[s] + exponents[s] * log n)

(:class:`Stepper`). Meta-learning (:func:`meta_learn`) draws few-shot episodes
from warm users (:func:`split_episodes`), runs the steps on their supports and
moves the meta-parameters (the start ``theta``, ``log_steps``, ``exponents``
and the temperature ``log_tau`` of the query loss) with Adam along the exact
gradient of a listwise query loss through the unrolled steps
(:func:`meta_gradient`), or Reptile's direction (:func:`reptile_direction`),
keeping the meta-parameters of the best validation NDCG. The episodes of a
user are played by a :class:`MetaTask`: the estimator's own factors, or, when
the meta-learning is cross-fitted, the factors of the user's fold (fitted
without that fold's users), with the start ``theta`` relative to the task's
``base``.

All the numbers are in the estimator's rescaled units (item factors of unit
mean squared norm); nothing here knows about estimators.
"""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._core.csr import split_rows
from ..metrics import binary_ndcg
from ._losses import uniform_negatives, weighted_rows

#: meta-iterations between two evaluations on the validation episodes
_EVAL_EVERY = 10
#: most query items of an episode (a random subset of the held-back items)
MAX_QUERY = 64
#: most validation episodes (each scores the whole catalogue)
_MAX_VALIDATION = 2048
#: cut-off of the validation NDCG
VALIDATION_K = 20
#: Adam's moment decay rates
_BETAS = (0.9, 0.999)


# ------------------------------------------------------------------ the steps
@dataclass(frozen=True)
class Stepper:
    """The gradient steps of a batch of users, with their meta-parameters as arrays.

    Parameters
    ----------
    Yp : ndarray of shape (n_items + 1, f), float32
        The rescaled item factors and a zero row (the padding).
    l2 : float
        The pull toward the start.
    n_shots_range : tuple of (int, int)
        Shot counts outside it use the nearest bound in the step sizes.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.adapters._meta import Stepper
    >>> stepper = Stepper(np.zeros((4, 2), np.float32), 0.1, (1, 20))
    >>> stepper.user_steps(np.zeros((3, 2)), np.ones((3, 2)), np.array([1.0, 5.0])).shape
    (3, 2, 2)
    """

    Yp: np.ndarray
    l2: float
    n_shots_range: tuple

    def shot_feature(self, counts):
        """log of the number of shots, clipped to n_shots_range."""
        low, high = self.n_shots_range
        return np.log(np.clip(counts, low, high)).astype(np.float32)

    def user_steps(self, log_steps, exponents, counts):
        """Step sizes of every step, user and dimension, (T, b, f)."""
        ell = self.shot_feature(counts)
        log_a = log_steps[:, None, :] + exponents[:, None, :] * ell[None, :, None]
        return np.exp(log_a).astype(np.float32)

    def stable(self, step_sizes, S, obj):
        """``step_sizes`` (T, b, f), shrunk per user where they would diverge.

        Gradient descent on a quadratic with Hessian ``H`` (plus the ``l2`` pull)
        converges only while ``step * lambda_max(H + l2 I) < 2``. A loss with
        unbounded curvature (the weighted squared error with a huge confidence)
        reports a bound of ``lambda_max``; a user's steps are scaled down to stay
        at 1.9 of it. Bounded losses (BPR, logistic) are left as they are;
        :func:`meta_gradient` differentiates through the shrinking.
        """
        bound = getattr(obj, "curvature_bound", None)
        if bound is None:
            return step_sizes
        limit = 1.9 / (bound(S) + self.l2)  # (b,)
        largest = step_sizes.max(axis=2)  # (T, b)
        scale = np.minimum(1.0, limit[None, :] / np.maximum(largest, 1e-30))
        return (step_sizes * scale[:, :, None]).astype(np.float32)

    def run(self, x0, S, obj, negatives, neg_factors, step_sizes, keep=False):
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

    def unroll(self, episode, params, negatives, keep=False):
        """(starts, step sizes, steps' result) of an episode under ``params``."""
        x0 = episode.x0
        if x0 is None:
            theta = params["theta"].astype(np.float32)
            x0 = np.broadcast_to(theta, (episode.support.idx.shape[0], theta.size)).copy()
        support, objective = episode.support, episode.objective
        steps = self.user_steps(params["log_steps"], params["exponents"], support.count)
        steps = self.stable(steps, support, objective)
        result = self.run(x0, support, objective, negatives, self.Yp[negatives], steps, keep)
        return x0, steps, result


# ------------------------------------------------------------------ episodes
class Episode(NamedTuple):
    """A batch of few-shot episodes, ready for the steps."""

    support: object  # the padded shots (a _losses.Support)
    query: np.ndarray  # (b, q) held-back items, padded with n_items
    x0: np.ndarray | None  # per-user starts, or None for the meta-learned theta
    objective: object  # the loss of the steps


class MetaTask(NamedTuple):
    """What plays the episodes of some warm users during meta-learning.

    Without cross-fitting there is one task (the estimator's own factors); with
    it, one per fold: the fold's users' episodes are played against factors
    fitted without them.
    """

    make_episode: object  # make_episode(users, rng, n=None, whole=False) -> Episode
    stepper: Stepper  # the steps over this task's (rescaled) item factors
    base: np.ndarray | None = None  # added to theta: the start theta is relative to


def _shifted(params, task):
    """``params`` with the task's base added to the start theta."""
    if task.base is None:
        return params
    return {**params, "theta": params["theta"] + task.base}


def _by_task(users, task_of):
    """(task, positions in ``users``) for every task among these users, in task order."""
    if task_of is None:
        return [(0, np.arange(users.size))]
    which = task_of[users]
    return [(k, np.flatnonzero(which == k)) for k in np.unique(which)]


def episode_users(X, low, validation_fraction, rng):
    """Training and validation warm users: those with more than ``low`` interactions."""
    eligible = rng.permutation(np.flatnonzero(np.diff(X.indptr) >= low + 1))
    n_val = 0
    if validation_fraction > 0 and eligible.size >= 2:
        n_val = round(validation_fraction * eligible.size)
        n_val = min(eligible.size - 1, _MAX_VALIDATION, max(1, n_val))
    return eligible[n_val:], eligible[:n_val]


def validation_shots(X, users, n_shots_range):
    """Validation episodes: every validation user at each of 5 shot counts."""
    low, high = n_shots_range
    grid = np.unique(np.round(np.geomspace(low, high, 5)).astype(int))
    counts = np.diff(X.indptr)[users]
    who, which = np.nonzero(counts[:, None] >= grid[None, :] + 1)
    return users[who][:_MAX_VALIDATION], grid[which][:_MAX_VALIDATION]


def split_episodes(X, users, n_shots_range, rng, n=None, whole=False):
    """Cut each user's row at random into a support of n shots and a query.

    n is drawn log-uniformly in n_shots_range (at most the user's count minus
    one) unless given; the query keeps at most ``MAX_QUERY`` held-back items.
    Returns the support and query as CSR matrices; with ``whole``, the support
    is the whole episode (Reptile's task data).
    """
    sub = X[users]
    counts = np.diff(sub.indptr)
    if n is None:
        low, high = n_shots_range
        high = np.minimum(high, counts - 1)
        u = rng.random(users.size)
        n = np.floor(np.exp(np.log(low) + u * (np.log(high + 1) - np.log(low))))
        n = np.clip(n.astype(np.int64), low, high)
    order = np.argsort(rng.random(sub.nnz), kind="stable")
    S, Q = split_rows(sub, n, order, max_query=MAX_QUERY)
    return (S + Q if whole else S), Q


# ------------------------------------------------------------------ meta-objective
def catalogue_scores(x, support, Yp):
    """Scores of every item (and the padding column), shots at -inf."""
    scores = x @ Yp.T
    scores[:, -1] = -np.inf
    scores[np.arange(x.shape[0])[:, None], support.idx] = -np.inf
    return scores


def query_loss(x, support, query, log_tau, Yp):
    """The meta-objective: minus the log of the query's share of a softmax.

    ``-log sum_{q in query} softmax(tau * scores)_q``, the softmax over every
    item but the user's shots: low when query items lead the ranking. ``tau``
    (learned) sets how far down the ranking the loss looks. Returns the mean
    over users and its gradients with respect to x (per user) and log tau.
    """
    b = x.shape[0]
    tau = np.float32(np.exp(log_tau))
    scores = catalogue_scores(x, support, Yp)
    valid = query < Yp.shape[0] - 1
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
    expected = p @ Yp
    g_x = tau * (expected - weighted_rows(w, Yp[query])) / np.float32(b)
    g_log_tau = float(tau * ((expected * x).sum(axis=1) - s_q).mean())
    return float(loss.mean()), g_x, g_log_tau


def best_log_tau(x, support, query, Yp):
    """The temperature minimising the query loss, on a grid."""
    grid = np.linspace(np.log(0.1), np.log(1000.0), 41)
    losses = [query_loss(x, support, query, log_tau, Yp)[0] for log_tau in grid]
    return float(grid[int(np.argmin(losses))])


def validation_ndcg(x, support, query, Yp):
    """Mean NDCG@20 of the query items over the catalogue, shots filtered."""
    b = x.shape[0]
    n_items = Yp.shape[0] - 1
    k = min(VALIDATION_K, n_items)
    scores = catalogue_scores(x, support, Yp)
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    relevant = np.zeros((b, n_items + 1), dtype=bool)
    relevant[np.arange(b)[:, None], query] = True
    relevant[:, -1] = False
    n_relevant = (query < n_items).sum(axis=1)
    ndcg = binary_ndcg(relevant[np.arange(b)[:, None], top], n_relevant)
    # a user without query items scores 0 (validation episodes always have some)
    return float(np.mean(np.where(n_relevant > 0, ndcg, 0.0)))


# ------------------------------------------------------------------ meta-gradients
def meta_gradient(episode, params, negatives, stepper, second_order=True):
    """Query loss and its gradient with respect to every meta-parameter.

    Reverse mode through the unrolled steps ``x_{s+1} = x_s - a_s g_s``: a
    step's Jacobian is ``I - diag(a_s)(H_s + l2 I)``, ``H_s`` the Hessian of
    the support loss, applied as a Hessian-vector product; without
    ``second_order`` (first-order MAML) it is dropped.
    """
    support, query, _, obj = episode
    x0, steps, (x, trace) = stepper.unroll(episode, params, negatives, keep=True)
    loss, a, g_log_tau = query_loss(x, support, query, params["log_tau"][0], stepper.Yp)
    l2 = np.float32(stepper.l2)
    ell = stepper.shot_feature(support.count)[:, None]
    g_log_steps = np.zeros(params["log_steps"].shape)
    g_exponents = np.zeros(params["exponents"].shape)
    a_x0 = np.zeros_like(x0)
    # where Stepper.stable shrank a user's steps to c / max_j(a_j) * a, a step's
    # derivative by log a_k also flows through the largest one, j*
    raw = stepper.user_steps(params["log_steps"], params["exponents"], support.count)
    shrunk = steps.max(axis=2) < raw.max(axis=2) * (1 - 1e-6)  # (T, b)
    largest = raw.argmax(axis=2)  # (T, b)
    for s in range(steps.shape[0] - 1, -1, -1):
        g_s, N_s, cache = trace[s]
        # through steps = exp(log_steps + exponents * log n)
        d_log = -(a * g_s) * steps[s]
        users = np.flatnonzero(shrunk[s])
        if users.size:
            d_log[users, largest[s, users]] -= d_log[users].sum(axis=1)
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


def reptile_direction(episode, params, negatives, stepper):
    """Reptile's update direction: from the mean adapted vector back to the start."""
    _, _, x = stepper.unroll(episode, params, negatives)
    return {"theta": params["theta"] - x.mean(axis=0).astype(np.float64)}


def _validation_score(episodes, params, negatives):
    """Mean validation NDCG over (task, episode, users) parts, weighted by users."""
    scores, sizes = [], []
    for task, episode, size in episodes:
        _, _, x = task.stepper.unroll(episode, _shifted(params, task), negatives)
        scores.append(validation_ndcg(x, episode.support, episode.query, task.stepper.Yp))
        sizes.append(size)
    return scores[0] if len(scores) == 1 else float(np.average(scores, weights=sizes))


# ------------------------------------------------------------------ the optimiser
def meta_learn(
    X,
    params,
    rates,
    rng,
    *,
    tasks,
    meta_algorithm,
    meta_iter,
    meta_batch_size,
    n_negatives,
    validation_fraction,
    n_iter_no_change,
    task_of=None,
    show_progress=False,
):
    """Adam on the meta-parameters over batches of episodes, with early stopping.

    Parameters
    ----------
    X : csr_matrix of shape (n_users, n_items)
        The warm users.
    params : dict of str to ndarray
        The initial ``theta``, ``log_steps``, ``exponents`` and ``log_tau``.
    rates : dict of str to float or ndarray
        Adam's step size of each meta-parameter to learn (the others stay put).
    rng : numpy.random.Generator
    tasks : list of MetaTask
        What plays the episodes: one task, or one per cross-fitting fold.
    meta_algorithm : {"metasgd", "fomaml", "reptile"}
    meta_iter, meta_batch_size, n_negatives, validation_fraction, n_iter_no_change : numbers
        As the estimator's parameters.
    task_of : ndarray of shape (n_users,), int, default=None
        The task of each warm user (None: every user plays ``tasks[0]``). A batch
        of episodes is split by task; the meta-gradient is the users' mean over
        the whole batch, and the validation NDCG the users' mean over every task.
    show_progress : bool, default=False

    Returns
    -------
    params : dict or None
        The best meta-parameters (None when no warm user can make an episode).
    n_iter : int
        Meta-iterations run.
    scores : ndarray
        The validation NDCG at each evaluation, the first before meta-learning.
    """
    from tqdm.auto import tqdm

    stepper = tasks[0].stepper
    train, val = episode_users(X, stepper.n_shots_range[0], validation_fraction, rng)
    if train.size == 0:
        return None, 0, np.zeros(0)
    T = params["log_steps"].shape[0]
    n_items = stepper.Yp.shape[0] - 1
    reptile = meta_algorithm == "reptile"
    learned = list(rates)
    moments = {key: (np.zeros_like(params[key]), np.zeros_like(params[key])) for key in learned}

    val_episodes = val_negatives = None
    if val.size:
        users, shots = validation_shots(X, val, stepper.n_shots_range)
        val_episodes = [
            (tasks[k], tasks[k].make_episode(users[pos], rng, n=shots[pos]), pos.size)
            for k, pos in _by_task(users, task_of)
        ]
        val_negatives = uniform_negatives(rng, T, n_negatives, n_items)
    best = None
    scores = []
    if val_episodes is not None:
        scores.append(_validation_score(val_episodes, params, val_negatives))
        best = (scores[0], {key: value.copy() for key, value in params.items()})

    stale = it = 0
    batch = min(meta_batch_size, train.size)
    bar = tqdm(total=meta_iter, disable=not show_progress, desc="meta-learning")
    for it in range(1, meta_iter + 1):
        users = rng.choice(train, size=batch, replace=False)
        negatives = uniform_negatives(rng, T, n_negatives, n_items)
        parts = [
            (tasks[k], tasks[k].make_episode(users[pos], rng, whole=reptile), pos.size / batch)
            for k, pos in _by_task(users, task_of)
        ]
        if not reptile and it == 1:
            # start the temperature where the loss of the first batch is lowest
            task, episode, _ = parts[0]
            _, _, x = task.stepper.unroll(episode, _shifted(params, task), negatives)
            params["log_tau"][0] = best_log_tau(x, episode.support, episode.query, task.stepper.Yp)
        grads = None
        for task, episode, weight in parts:
            shifted = _shifted(params, task)
            if reptile:
                part = reptile_direction(episode, shifted, negatives, task.stepper)
            else:
                second_order = meta_algorithm == "metasgd"
                _, part = meta_gradient(episode, shifted, negatives, task.stepper, second_order)
            if len(parts) == 1:
                grads = part
            elif grads is None:
                grads = {key: weight * value for key, value in part.items()}
            else:
                for key, value in part.items():
                    grads[key] += weight * value
        _adam_step(params, grads, moments, rates, it)
        np.clip(params["log_steps"], -12.0, 3.0, out=params["log_steps"])
        bar.update()
        if val_episodes is not None and (it % _EVAL_EVERY == 0 or it == meta_iter):
            scores.append(_validation_score(val_episodes, params, val_negatives))
            bar.set_postfix(validation_ndcg=f"{scores[-1]:.4f}")
            if scores[-1] > best[0]:
                best = (scores[-1], {key: value.copy() for key, value in params.items()})
                stale = 0
            else:
                stale += 1
                if stale >= n_iter_no_change:
                    break
    bar.close()
    if best is not None:
        params = best[1]
    return params, it, np.asarray(scores)


def _adam_step(params, grads, moments, rates, it):
    """One Adam update, in place, of the parameters that have a rate."""
    for key, rate in rates.items():
        m1, m2 = moments[key]
        m1 *= _BETAS[0]
        m1 += (1 - _BETAS[0]) * grads[key]
        m2 *= _BETAS[1]
        m2 += (1 - _BETAS[1]) * grads[key] ** 2
        m_hat = m1 / (1 - _BETAS[0] ** it)
        v_hat = m2 / (1 - _BETAS[1] ** it)
        params[key] -= rate * m_hat / (np.sqrt(v_hat) + 1e-8)
