"""The batched fold-in solvers against a naive per-user solve, every path against the others.

Spark's convention gives each user their own ridge ``lambda * n_u``; its Woodbury
path works in the eigenbasis of the shared matrix, and must agree with the direct
f x f solve and with ``np.linalg.solve`` on each user's full system.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from skfewrec._core.conventions import confidence_coefficients, ridge_per_user
from skfewrec._core.solvers import shared_system, solve_users


def _naive(Y, X, regularization, scale, convention, precision=None, mean=None):
    """Each user's normal equations built and solved one at a time."""
    Y = Y.astype(np.float64)
    f = Y.shape[1]
    shared, extra = ridge_per_user(X.indptr, regularization, convention)
    out = np.zeros((X.shape[0], f))
    for u in range(X.shape[0]):
        row = X[u]
        d, t = confidence_coefficients(row.data, scale, convention)
        Ys = Y[row.indices]
        A = Y.T @ Y + shared * np.eye(f) + Ys.T @ (d[:, None] * Ys)
        b = Ys.T @ t
        if precision is not None:
            A += precision
            b += precision @ mean
        if extra is not None:
            A += extra[u] * np.eye(f)
        out[u] = np.linalg.solve(A, b)
    return out


def _users(n_users, n_items, max_shots, rng):
    counts = rng.integers(1, max_shots + 1, size=n_users)
    rows = np.repeat(np.arange(n_users), counts)
    cols = np.concatenate([rng.choice(n_items, c, replace=False) for c in counts])
    vals = rng.integers(1, 5, size=cols.size).astype(np.float32)
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_users, n_items))


@pytest.mark.parametrize("convention", ["implicit", "spark"])
@pytest.mark.parametrize("with_prior", [False, True])
def test_every_path_matches_the_naive_solve(convention, with_prior):
    rng = np.random.default_rng(0)
    n_items, f = 40, 6
    Y = rng.normal(scale=0.5, size=(n_items, f)).astype(np.float32)
    # users from 1 shot to more shots than factors, so "auto" uses both paths
    X = _users(60, n_items, 12, rng)
    reg, scale = 0.3, 2.0
    precision = mean = None
    if with_prior:
        B = rng.normal(size=(f, f))
        precision, mean = B @ B.T / f + 0.1 * np.eye(f), rng.normal(size=f)
    shared, extra = ridge_per_user(X.indptr, reg, convention)
    system = shared_system(Y, shared, precision, mean)
    d, t = confidence_coefficients(X.data, scale, convention)
    expected = _naive(Y, X, reg, scale, convention, precision, mean)
    for solver in ("woodbury", "direct", "auto"):
        got = solve_users(X.indptr, X.indices, d, t, system, solver=solver, extra_ridge=extra)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=solver)


def test_per_user_ridge_woodbury_on_a_singular_shared_matrix():
    # Spark puts the whole ridge per user: with fewer items than factors Y^T Y is
    # singular, yet every user's own system is regular
    rng = np.random.default_rng(1)
    Y = rng.normal(size=(3, 5)).astype(np.float32)
    X = sp.csr_matrix(np.array([[1.0, 0, 2.0], [0, 3.0, 0], [0, 0, 0]], dtype=np.float32))
    shared, extra = ridge_per_user(X.indptr, 0.5, "spark")
    system = shared_system(Y, shared)
    d, t = confidence_coefficients(X.data, 1.5, "spark")
    wood = solve_users(X.indptr, X.indices, d, t, system, solver="woodbury", extra_ridge=extra)
    direct = solve_users(X.indptr, X.indices, d, t, system, solver="direct", extra_ridge=extra)
    expected = _naive(Y, X[:2], 0.5, 1.5, "spark")
    np.testing.assert_allclose(wood[:2], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(direct[:2], expected, rtol=1e-6, atol=1e-6)
    # no shots, no prior: the zero vector, not NaN from inverting a singular matrix
    np.testing.assert_array_equal(wood[2], 0.0)
    assert np.isfinite(system.Zp).all()


def test_mixed_zero_and_positive_extra_ridge_in_one_batch():
    # users with and without a per-user ridge share a padded batch: each must get
    # the path that matches their own system
    rng = np.random.default_rng(2)
    Y = rng.normal(size=(20, 4)).astype(np.float32)
    X = _users(10, 20, 3, rng)
    d, t = confidence_coefficients(X.data, 1.0, "implicit")
    system = shared_system(Y, 0.2)
    extra = np.where(np.arange(10) % 2 == 0, 0.0, 0.7)
    got = solve_users(X.indptr, X.indices, d, t, system, extra_ridge=extra)
    direct = solve_users(X.indptr, X.indices, d, t, system, solver="direct", extra_ridge=extra)
    np.testing.assert_allclose(got, direct, rtol=1e-4, atol=1e-5)
    plain = solve_users(X.indptr, X.indices, d, t, system)
    np.testing.assert_allclose(got[::2], plain[::2], rtol=1e-6)
    assert not np.allclose(got[1::2], plain[1::2], rtol=1e-3)
