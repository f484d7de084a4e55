"""Batched closed-form fold-in: the exact iALS least-squares solve, item factors fixed.

For one user with support set S (k items), the iALS normal equations are::

    (M + Y_S^T D Y_S) x = Y_S^T t + m

with ``M = Y^T Y + lambda I (+ s P)`` shared by every user, ``D = diag(d_i)`` the
extra confidence of each shot (``c_i - 1`` in implicit's convention), ``t_i`` the
target coefficient of each shot (``c_i p_i``), and ``m`` the prior's pull
(``s P mu``; zero without a prior). Writing ``x0 = M^-1 m`` (the 0-shot answer),
``Z = Y M^-1`` and ``G = Y_S Z_S^T`` (k x k), the Woodbury identity collapses to::

    x = x0 + Z_S^T (I + D G)^-1 (t - D Y_S x0)

a k x k solve per user: O(k^2 f + k^3) instead of O(k f^2 + f^3). Both paths are
batched over users (users sorted by number of shots and padded per batch), so no
Python loop runs per user.

Spark's convention adds a per-user ridge ``mu_u = lambda * n_u``, so each user has
their own ``M + mu_u I``. With the eigendecomposition ``M = Q diag(L) Q^T`` computed
once, ``(M + mu_u I)^-1 = Q diag(1 / (L + mu_u)) Q^T``: in the eigenbasis
(``W = Y Q``) the user's ``G = W_S diag(1 / (L + mu_u)) W_S^T`` is again k x k, and
the Woodbury path stays O(k^2 f + k^3 + f^2) per user instead of a direct f x f solve.
"""

from dataclasses import dataclass

import numpy as np

from .conventions import confidence_coefficients, ridge_per_user, shared_ridge
from .threads import run_threaded


@dataclass(frozen=True, eq=False)
class FoldInSystem:
    """What every user's solve shares: built once, never modified, safe to share.

    Build one with :func:`shared_system` (implicit feedback) or
    :func:`fold_in_system` (any observation rows, shared matrix and pull).
    Every array is read-only, so threads may share one system freely.

    Attributes
    ----------
    M : ndarray of shape (f, f), float64
        The shared matrix (``Y^T Y + lambda I + s P`` for implicit feedback).
    L, Q : ndarray
        Its eigendecomposition ``M = Q diag(L) Q^T``.
    m : ndarray of shape (f,)
        The prior's pull ``s P mu`` (zero without a prior).
    x0 : ndarray of shape (f,)
        ``M^-1 m``: the answer for a user without shots.
    Yp, Zp : ndarray of shape (n_rows + 1, f), float32
        The observation rows ``Y`` and ``Y M^-1``, padded with one zero row (the
        target of padded shots).
    Yx0 : ndarray of shape (n_rows + 1,), float32
        ``Yp x0``.
    Wp : ndarray of shape (n_rows + 1, f), float32
        ``Yp Q``: the rows in the eigenbasis of ``M`` (the per-user-ridge path).
    Qm : ndarray of shape (f,)
        ``Q^T m``.
    """

    M: np.ndarray
    L: np.ndarray
    Q: np.ndarray
    m: np.ndarray
    x0: np.ndarray
    Yp: np.ndarray
    Zp: np.ndarray
    Yx0: np.ndarray
    Wp: np.ndarray
    Qm: np.ndarray

    def __post_init__(self):
        for value in vars(self).values():
            value.flags.writeable = False


def fold_in_system(rows, M, m=None):
    """A :class:`FoldInSystem` from its observation rows, shared matrix and pull.

    Parameters
    ----------
    rows : ndarray of shape (n_rows, f)
        ``Y``: the fixed vectors a shot points at (item factors, or the rated
        items' features of an explicit model).
    M : ndarray of shape (f, f)
        The shared, positive semi-definite matrix.
    m : ndarray of shape (f,), default=None
        The prior's pull; None for zero.

    Returns
    -------
    system : FoldInSystem
        ``M`` may be singular (Spark's convention puts the whole ridge per
        user): its inverse is then the pseudo-inverse, used only by users
        without a per-user ridge.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._core.solvers import fold_in_system
    >>> fold_in_system(np.ones((3, 2)), 2.0 * np.eye(2), np.ones(2)).x0
    array([0.5, 0.5])
    """
    Y = np.asarray(rows, dtype=np.float64)
    f = Y.shape[1]
    M = np.asarray(M, dtype=np.float64)
    M = 0.5 * (M + M.T)
    m = np.zeros(f) if m is None else np.asarray(m, dtype=np.float64)
    eigvals, Q = np.linalg.eigh(M)
    # M is positive semi-definite: clip round-off below zero, and invert only the
    # eigenvalues that are not round-off (pseudo-inverse when M is singular)
    eigvals = np.maximum(eigvals, 0.0)
    tol = eigvals.max(initial=0.0) * f * np.finfo(np.float64).eps
    keep = eigvals > tol
    inv_L = np.divide(1.0, eigvals, out=np.zeros_like(eigvals), where=keep)
    M_inv = (Q * inv_L) @ Q.T
    M_inv = 0.5 * (M_inv + M_inv.T)
    x0 = M_inv @ m
    # float32 copies with one extra all-zero row, the target of padded shots;
    # gathering these rows is the hot path, and float32 halves its memory traffic
    pad = np.zeros((1, f))
    Yp = np.vstack([Y, pad]).astype(np.float32)
    return FoldInSystem(
        M=M,
        L=eigvals,
        Q=Q,
        m=m,
        x0=x0,
        Yp=Yp,
        Zp=np.vstack([Y @ M_inv, pad]).astype(np.float32),
        Yx0=Yp @ x0.astype(np.float32),
        Wp=(np.vstack([Y, pad]) @ Q).astype(np.float32),
        Qm=Q.T @ m,
    )


def shared_system(item_factors, regularization, prior_precision=None, prior_mean=None):
    """The :class:`FoldInSystem` of implicit feedback: ``M = Y^T Y + lambda I (+ s P)``.

    Parameters
    ----------
    item_factors : ndarray of shape (n_items, n_components)
        The fixed item factors ``Y``.
    regularization : float
        The ridge ``lambda`` shared by every user (0 for Spark's convention,
        whose ridge is per user).
    prior_precision : ndarray of shape (n_components, n_components), default=None
        ``s P``, already scaled by the prior strength; None for no prior.
    prior_mean : ndarray of shape (n_components,), default=None
        ``mu``; None for a zero mean.

    Returns
    -------
    system : FoldInSystem

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._core.solvers import shared_system
    >>> system = shared_system(np.eye(3, 2), 0.5)
    >>> system.M
    array([[1.5, 0. ],
           [0. , 1.5]])
    """
    Y = np.asarray(item_factors, dtype=np.float64)
    f = Y.shape[1]
    M = Y.T @ Y + regularization * np.eye(f)
    return system_with_prior(Y, M, prior_precision, prior_mean)


def system_with_prior(rows, M, prior_precision=None, prior_mean=None):
    """A :class:`FoldInSystem` whose shared matrix ``M`` gains a gaussian prior.

    The prior ``N(mu, (s P)^-1)`` adds ``s P`` to ``M`` and pulls the solution
    with ``m = s P mu``: the one place every system (implicit and explicit)
    adds its prior.

    Parameters
    ----------
    rows : ndarray of shape (n_rows, f)
        ``Y``: the fixed vectors a shot points at.
    M : ndarray of shape (f, f)
        The shared matrix without the prior.
    prior_precision : ndarray of shape (f, f), default=None
        ``s P``, already scaled by the prior strength; None for no prior.
    prior_mean : ndarray of shape (f,), default=None
        ``mu``; None for a zero mean.

    Returns
    -------
    system : FoldInSystem

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._core.solvers import system_with_prior
    >>> system = system_with_prior(np.eye(2), np.eye(2), 2 * np.eye(2), np.ones(2))
    >>> system.M
    array([[3., 0.],
           [0., 3.]])
    >>> system.m
    array([2., 2.])
    """
    m = None
    if prior_precision is not None:
        M = M + prior_precision
        if prior_mean is not None:
            m = prior_precision @ prior_mean
    return fold_in_system(rows, M, m)


def implicit_system(
    item_factors,
    regularization,
    convention="implicit",
    prior_precision=None,
    prior_mean=None,
):
    """The :class:`FoldInSystem` of implicit feedback under a confidence convention.

    :func:`shared_system` with the ridge the convention shares between users
    (:func:`~skfewrec._core.conventions.shared_ridge`): the one system
    :func:`fold_in` solves against.

    Parameters
    ----------
    item_factors : ndarray of shape (n_items, n_components)
        The fixed vectors ``Y`` (the warm users' vectors to fold in items).
    regularization : float
        The ridge ``lambda`` of the factors.
    convention : {"implicit", "spark"}, default="implicit"
        The confidence convention.
    prior_precision, prior_mean : ndarray, default=None
        As in :func:`shared_system`.

    Returns
    -------
    system : FoldInSystem

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._core.solvers import implicit_system
    >>> implicit_system(np.eye(3, 2), 0.5, "spark").M
    array([[1., 0.],
           [0., 1.]])
    """
    ridge = shared_ridge(regularization, convention)
    return shared_system(item_factors, ridge, prior_precision, prior_mean)


def fold_in(
    X,
    system,
    *,
    confidence_scale,
    regularization,
    convention="implicit",
    solver="auto",
    n_jobs=None,
):
    """Fold in the rows of ``X``: confidences, per-row ridge, then the batched solve.

    The whole implicit-feedback fold-in chain, written once: it folds in users
    against item factors and, transposed, items against warm users' vectors.

    Parameters
    ----------
    X : csr_matrix of shape (n_rows, n_columns)
        Interaction values; each row is folded in against the columns' vectors.
    system : FoldInSystem
        From :func:`implicit_system` with the same ``regularization`` and
        ``convention``.
    confidence_scale : float
        Scales the values into confidences
        (:func:`~skfewrec._core.conventions.confidence_coefficients`).
    regularization : float
        The ridge ``lambda`` (per row under Spark's convention).
    convention : {"implicit", "spark"}, default="implicit"
        The confidence convention.
    solver : {"auto", "woodbury", "direct"}, default="auto"
        As in :func:`solve_users`.
    n_jobs : int, default=None
        Threads solving batches of rows (None: 1).

    Returns
    -------
    X_folded : ndarray of shape (n_rows, n_components), float64

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from skfewrec._core.solvers import fold_in, implicit_system
    >>> Y = np.random.default_rng(0).normal(size=(5, 2))
    >>> X = sp.csr_matrix(np.array([[1.0, 0, 0, 2.0, 0]]))
    >>> x = fold_in(X, implicit_system(Y, 0.1), confidence_scale=3.0, regularization=0.1)
    >>> c = np.array([3.0, 1, 1, 6.0, 1])  # confidences: scale * value, 1 elsewhere
    >>> p = (X.toarray()[0] > 0).astype(float)  # preferences
    >>> naive = np.linalg.solve(Y.T @ (c[:, None] * Y) + 0.1 * np.eye(2), Y.T @ (c * p))
    >>> bool(np.allclose(x[0], naive, atol=1e-5))
    True
    """
    d, t = confidence_coefficients(X.data, confidence_scale, convention)
    _, extra = ridge_per_user(X.indptr, regularization, convention)
    return solve_users(
        X.indptr,
        X.indices,
        d,
        t,
        system,
        solver=solver,
        extra_ridge=extra,
        n_jobs=n_jobs,
    )


def _padded_batches(indptr, max_batch_elements):
    """Yield (rows, width) batches of users sorted by number of shots.

    Sorting by the number of shots keeps padding small; a batch holds at most
    ``max_batch_elements`` padded shots.
    """
    counts = np.diff(indptr)
    order = np.argsort(counts, kind="stable")
    start = 0
    n = order.size
    while start < n:
        width = int(counts[order[start]])
        # grow the batch while the padded size stays within budget
        stop = start + 1
        step = max(1, max_batch_elements // max(width, 1))
        stop = min(n, start + step)
        width = int(counts[order[stop - 1]])
        while stop - start > 1 and (stop - start) * max(width, 1) > max_batch_elements:
            stop = start + max(1, (stop - start) // 2)
            width = int(counts[order[stop - 1]])
        yield order[start:stop], width
        start = stop


def _gather_padded(rows, width, indptr, indices, d, t, n_items):
    """Padded (b, width) item indices and coefficients for a batch of rows.

    Padding points at the extra all-zero item row ``n_items`` with d = t = 0, which
    leaves every solve unchanged.
    """
    b = rows.size
    idx = np.full((b, width), n_items, dtype=np.int64)
    dd = np.zeros((b, width))
    tt = np.zeros((b, width))
    if width:
        starts = indptr[rows]
        lengths = indptr[rows + 1] - starts
        pos = np.arange(width)
        mask = pos[None, :] < lengths[:, None]
        src = (starts[:, None] + pos[None, :])[mask]
        idx[mask] = indices[src]
        dd[mask] = d[src]
        tt[mask] = t[src]
    return idx, dd, tt


def solve_users(
    indptr,
    indices,
    d,
    t,
    system,
    *,
    solver="auto",
    extra_ridge=None,
    max_batch_elements=1 << 13,
    n_jobs=None,
):
    """Fold in a batch of users: exact closed-form solve, batched.

    Parameters
    ----------
    indptr, indices : ndarray
        CSR structure of the users' support sets (rows = users).
    d : ndarray of shape (nnz,)
        Extra confidence of each shot (``c_i - 1`` for implicit's convention).
    t : ndarray of shape (nnz,)
        Target coefficient of each shot (``c_i`` for implicit's convention).
    system : FoldInSystem
        From :func:`shared_system` or :func:`fold_in_system`.
    solver : {"auto", "woodbury", "direct"}, default="auto"
        "woodbury": the k x k solve; "direct": the f x f solve of the full
        system; "auto": woodbury for users with fewer shots than factors.
    extra_ridge : ndarray of shape (n_users,), default=None
        A per-user addition ``mu_u`` to the ridge (Spark's ``lambda * n_u``
        convention). The Woodbury path then works in the eigenbasis of ``M``.
    max_batch_elements : int
        Padded shots per batch; bounds memory.
    n_jobs : int, default=None
        Threads solving batches in parallel (None: 1). Run them under a
        one-thread BLAS limit.

    Returns
    -------
    X : ndarray of shape (n_users, n_components), float64

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._core.solvers import shared_system, solve_users
    >>> Y = np.random.default_rng(0).normal(size=(6, 3))
    >>> system = shared_system(Y, 0.0)
    >>> indptr, indices = np.array([0, 2]), np.array([1, 4])
    >>> d, t = np.array([2.0, 2.0]), np.array([3.0, 3.0])
    >>> wood = solve_users(indptr, indices, d, t, system, extra_ridge=np.array([0.2]))
    >>> direct = solve_users(indptr, indices, d, t, system, solver="direct",
    ...                      extra_ridge=np.array([0.2]))
    >>> bool(np.allclose(wood, direct, atol=1e-5))
    True
    """
    M, x0, Yp, Zp, Yx0 = system.M, system.x0, system.Yp, system.Zp, system.Yx0
    n_items, f = Yp.shape[0] - 1, Yp.shape[1]
    n_users = indptr.size - 1
    out = np.empty((n_users, f))
    d = np.asarray(d, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if extra_ridge is not None:
        extra_ridge = np.asarray(extra_ridge, dtype=np.float64)

    def solve_batch(batch):
        rows, width = batch
        if width == 0:
            out[rows] = x0
            return
        idx, dd, tt = _gather_padded(rows, width, indptr, indices, d, t, n_items)
        if solver == "direct":
            use_direct = np.ones(rows.size, dtype=bool)
        elif solver == "auto":
            use_direct = np.full(rows.size, width >= f)
        else:
            use_direct = np.zeros(rows.size, dtype=bool)
        ridge = None if extra_ridge is None else extra_ridge[rows]
        per_user = np.zeros(rows.size, dtype=bool) if ridge is None else ridge != 0
        # users without shots padded into this batch: the 0-shot answer, whatever
        # the path (their own system may be singular, e.g. Spark's ridge lambda * 0)
        empty = indptr[rows + 1] == indptr[rows]
        out[rows[empty]] = x0
        use_direct &= ~empty
        wood = ~use_direct & ~per_user & ~empty
        if wood.any():
            i_w = idx[wood]
            Zs = Zp[i_w]  # (b, k, f)
            Ys = Yp[i_w]
            G = np.matmul(Ys, Zs.transpose(0, 2, 1)).astype(np.float64)  # (b, k, k)
            w = _woodbury_weights(G, dd[wood], tt[wood] - dd[wood] * Yx0[i_w])
            out[rows[wood]] = x0 + np.matmul(w[:, None, :].astype(np.float32), Zs)[:, 0, :]
        eig = ~use_direct & per_user & ~empty
        if eig.any():
            out[rows[eig]] = _solve_eigenbasis(idx[eig], dd[eig], tt[eig], ridge[eig], system)
        if use_direct.any():
            i_d = idx[use_direct]
            Ys = Yp[i_d].astype(np.float64)
            A = np.matmul(Ys.transpose(0, 2, 1) * dd[use_direct][:, None, :], Ys)
            A += M
            if ridge is not None:
                A[:, np.arange(f), np.arange(f)] += ridge[use_direct][:, None]
            rhs = np.matmul(tt[use_direct][:, None, :], Ys)[:, 0, :] + system.m
            out[rows[use_direct]] = np.linalg.solve(A, rhs[:, :, None])[:, :, 0]

    batches = list(_padded_batches(indptr, max_batch_elements))
    # batches write disjoint rows; numpy releases the GIL in their matmuls and solves
    run_threaded(solve_batch, batches, n_jobs or 1)
    return out


def _woodbury_weights(G, dd, rhs):
    """``w = (I + D G)^-1 rhs`` for a batch of k x k systems."""
    width = G.shape[1]
    A = G * dd[:, :, None]
    A[:, np.arange(width), np.arange(width)] += 1.0
    return np.linalg.solve(A, rhs[:, :, None])[:, :, 0]


def _solve_eigenbasis(idx, dd, tt, ridge, system):
    """Woodbury with a per-user ridge ``mu_u``, in the eigenbasis of ``M``.

    With ``S_u = diag(1 / (L + mu_u))`` and ``W = Y Q``: ``x0_u = Q S_u Q^T m``,
    ``Z_S = W_S S_u Q^T``, ``G = W_S S_u W_S^T``, and the user's vector is
    ``Q (S_u Q^T m + S_u W_S^T w)`` with ``w`` the usual k x k solve.
    """
    Wp, Qm = system.Wp, system.Qm
    inv = (1.0 / (system.L[None, :] + ridge[:, None])).astype(np.float32)  # (b, f)
    Ws = Wp[idx]  # (b, k, f)
    Vs = Ws * inv[:, None, :]  # rows of Z_S in the eigenbasis
    G = np.matmul(Ws, Vs.transpose(0, 2, 1)).astype(np.float64)  # (b, k, k)
    x0q = inv.astype(np.float64) * Qm  # (b, f): x0_u in the eigenbasis
    rhs = tt - dd * np.matmul(Ws.astype(np.float64), x0q[:, :, None])[:, :, 0]
    w = _woodbury_weights(G, dd, rhs)
    xq = x0q + np.matmul(w[:, None, :].astype(np.float32), Vs)[:, 0, :]
    return xq @ system.Q.T
