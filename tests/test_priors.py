"""The prior-regularised closed form: the MAP solve against a naive per-user numpy solve.

The references are independent of the library: the warm users' vectors come from
a naive float64 solve per user, their covariance from scikit-learn's
``LedoitWolf`` estimator, and the MAP references are built from those (not from
the fitted ``mean_``/``covariance_``), so a wrong prior estimate fails here.
"""

import functools

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.covariance import LedoitWolf
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import InvalidParameterError

import skfewrec
from skfewrec import ALSFactors, ClosedFormFoldIn

F = 6


@pytest.fixture(scope="module")
def factors(small_interactions):
    return ALSFactors(
        n_components=F, regularization=0.5, confidence_scale=3.0, max_iter=5, random_state=0
    ).fit(small_interactions[:250])


@pytest.fixture(scope="module")
def new_users(small_interactions):
    """Users with 1 to 12 shots: both sides of the Woodbury / direct switch at F."""
    rng = np.random.default_rng(1)
    n_users, n_items = 50, small_interactions.shape[1]
    rows = []
    for n in np.resize(np.arange(1, 13), n_users):
        row = np.zeros(n_items, dtype=np.float32)
        items = rng.choice(n_items, size=n, replace=False)
        row[items] = rng.integers(1, 4, size=n)
        rows.append(row)
    return sp.csr_matrix(np.array(rows))


def naive_map(Y, X, reg, scale, precision, mean, convention="implicit"):
    """(Y^T C_u Y + lambda_u I + s P) x = Y^T C_u p_u + s P mu, one dense solve per user."""
    Y = Y.astype(np.float64)
    f = Y.shape[1]
    out = []
    for row in X.toarray():
        obs = row > 0
        if convention == "implicit":
            c = np.where(obs, scale * row, 1.0)
            ridge = reg
        else:  # Spark: c = 1 + scale * r, ridge lambda * n_u
            c = 1.0 + scale * row
            ridge = reg * obs.sum()
        p = obs.astype(np.float64)
        A = Y.T @ (c[:, None] * Y) + ridge * np.eye(f)
        b = Y.T @ (c * p)
        if precision is not None:
            A = A + precision
            b = b + precision @ mean
        out.append(np.linalg.solve(A, b))
    return np.array(out)


@pytest.fixture(scope="module")
def reference_prior(factors, small_interactions):
    """convention -> mean and covariance of the warm users' vectors, without the library.

    The warm users (the rows ``fit`` sees) folded in by :func:`naive_map`; their
    covariance is scikit-learn's Ledoit-Wolf estimate plus the documented ridge of
    1e-3 of the average variance.
    """

    @functools.cache
    def estimate(convention="implicit"):
        warm = naive_map(
            factors.item_factors_, small_interactions[:250], 0.5, 3.0, None, None, convention
        )
        cov = LedoitWolf().fit(warm).covariance_
        cov = cov + max(1e-6, 1e-3 * np.trace(cov) / F) * np.eye(F)
        return warm.mean(axis=0), cov

    return estimate


def prior_terms(reference, prior, strength):
    """``s P`` and ``mu`` of a prior, from an independently estimated (mean, covariance)."""
    mean, cov = reference
    if prior == "mean":  # isotropic at the warm users' average variance
        return strength * F / np.trace(cov) * np.eye(F), mean
    if prior == "gaussian":
        return strength * np.linalg.inv(cov), mean
    return None, None


@pytest.mark.parametrize("prior", ["none", "mean", "gaussian"])
@pytest.mark.parametrize("solver", ["auto", "woodbury", "direct"])
@pytest.mark.parametrize("convention", ["implicit", "spark"])
def test_map_solve_matches_a_naive_per_user_solve(
    factors, small_interactions, new_users, reference_prior, prior, solver, convention
):
    strength = 2.5
    rec = ClosedFormFoldIn(
        FrozenEstimator(factors),
        prior=prior,
        prior_strength=strength,
        solver=solver,
        convention=convention,
    ).fit(small_interactions[:250])
    precision, mean = prior_terms(reference_prior(convention), prior, strength)
    expected = naive_map(factors.item_factors_, new_users, 0.5, 3.0, precision, mean, convention)
    got = rec.transform(new_users)
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("prior", ["mean", "gaussian"])
def test_woodbury_and_direct_agree_with_a_prior(factors, small_interactions, new_users, prior):
    kwargs = dict(prior=prior, prior_strength=0.7)
    wood = ClosedFormFoldIn(FrozenEstimator(factors), solver="woodbury", **kwargs)
    direct = ClosedFormFoldIn(FrozenEstimator(factors), solver="direct", **kwargs)
    U_w = wood.fit(small_interactions[:250]).transform(new_users)
    U_d = direct.fit(small_interactions[:250]).transform(new_users)
    np.testing.assert_allclose(U_w, U_d, rtol=1e-3, atol=1e-4)
    # the prior changes the answer, so the agreement is not that of two plain solves
    plain = ClosedFormFoldIn(FrozenEstimator(factors)).fit(small_interactions[:250])
    assert np.abs(plain.transform(new_users) - U_w).max() > 1e-2


@pytest.mark.parametrize("prior", ["none", "mean", "gaussian"])
def test_a_user_without_shots_gets_the_prior_answer(
    factors, small_interactions, reference_prior, prior
):
    rec = ClosedFormFoldIn(FrozenEstimator(factors), prior=prior, prior_strength=3.0)
    rec.fit(small_interactions[:250])
    U = rec.transform(sp.csr_matrix((2, small_interactions.shape[1]), dtype=np.float32))
    if prior == "none":
        expected = rec.mean_
    else:
        precision, mean = prior_terms(reference_prior(), prior, 3.0)
        Y = factors.item_factors_.astype(np.float64)
        expected = np.linalg.solve(Y.T @ Y + 0.5 * np.eye(F) + precision, precision @ mean)
    np.testing.assert_allclose(U, np.tile(expected, (2, 1)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("convention", ["implicit", "spark"])
def test_the_prior_is_the_warm_users_mean_and_covariance(
    factors, small_interactions, reference_prior, convention
):
    rec = ClosedFormFoldIn(FrozenEstimator(factors), prior="gaussian", convention=convention)
    rec.fit(small_interactions[:250])
    mean, cov = reference_prior(convention)
    np.testing.assert_allclose(rec.mean_, mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rec.covariance_, cov, rtol=1e-3, atol=1e-6)
    assert np.all(np.linalg.eigvalsh(rec.covariance_) > 0)


def test_prior_strength_interpolates_between_plain_and_the_mean(
    factors, small_interactions, new_users
):
    X = small_interactions[:250]
    plain = ClosedFormFoldIn(FrozenEstimator(factors), prior="none").fit(X).transform(new_users)
    zero = ClosedFormFoldIn(FrozenEstimator(factors), prior="gaussian", prior_strength=0.0)
    np.testing.assert_allclose(zero.fit(X).transform(new_users), plain, rtol=1e-4, atol=1e-5)
    strong = ClosedFormFoldIn(FrozenEstimator(factors), prior="mean", prior_strength=1e6).fit(X)
    np.testing.assert_allclose(
        strong.transform(new_users), np.tile(strong.mean_, (new_users.shape[0], 1)), atol=1e-3
    )
    # distance to the mean shrinks monotonically with the strength
    dists = [
        np.linalg.norm(
            ClosedFormFoldIn(FrozenEstimator(factors), prior="mean", prior_strength=s)
            .fit(X)
            .transform(new_users)
            - strong.mean_,
            axis=1,
        ).mean()
        for s in (0.1, 1.0, 10.0, 100.0)
    ]
    assert np.all(np.diff(dists) < 0)


def test_a_user_whose_every_shot_is_unknown_gets_the_prior_answer(small_interactions):
    X = small_interactions[:250].tolil()
    X[:, [7, 9]] = 0  # items no warm user touched
    X = X.tocsr()
    X.eliminate_zeros()
    factors = ALSFactors(n_components=8, random_state=0).fit(X)
    rec = ClosedFormFoldIn(FrozenEstimator(factors), prior="gaussian").fit(X)
    assert rec.item_counts_[7] == 0 and rec.item_counts_[9] == 0
    S = np.zeros((3, X.shape[1]), dtype=np.float32)
    S[0, [7, 9]] = 1  # every shot unknown
    S[1, [7, 3]] = 1  # one known shot, one unknown
    S[2, 3] = 1  # the known shot alone
    U = rec.transform(S)
    empty = rec.transform(np.zeros((1, X.shape[1]), dtype=np.float32))
    np.testing.assert_allclose(U[0], empty[0])
    np.testing.assert_allclose(U[1], U[2])  # the unknown shot is ignored


def test_bad_prior_settings_are_refused(small_interactions):
    X = small_interactions[:50]
    with pytest.raises(InvalidParameterError, match="prior"):
        ClosedFormFoldIn(ALSFactors(n_components=2), prior="normal").fit(X)
    with pytest.raises(InvalidParameterError, match="prior_strength"):
        ClosedFormFoldIn(ALSFactors(n_components=2), prior="mean", prior_strength=-1).fit(X)


@pytest.mark.parametrize("prior", ["mean", "gaussian"])
def test_prior_survives_a_pickle_free_round_trip(
    factors, small_interactions, new_users, prior, tmp_path
):
    rec = ClosedFormFoldIn(FrozenEstimator(factors), prior=prior, prior_strength=0.5)
    rec.fit(small_interactions[:250])
    skfewrec.save(rec, tmp_path / "model")
    loaded = skfewrec.load(tmp_path / "model")
    np.testing.assert_allclose(loaded.transform(new_users), rec.transform(new_users), rtol=1e-6)


def test_unknown_items_are_those_the_factors_never_saw(factors, small_interactions):
    """Prefit factors know every item they were trained on, whatever X ``fit`` gets."""
    rec = ClosedFormFoldIn(FrozenEstimator(factors), prior="none").fit(small_interactions[:2])
    np.testing.assert_array_equal(rec.item_counts_, factors.item_counts_)
    S = small_interactions[250:]
    np.testing.assert_allclose(rec.transform(S), factors.transform(S), rtol=1e-5, atol=1e-6)
