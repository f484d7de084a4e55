"""The core fold-in: exact against implicit, solvers against each other, the prefit idiom.

Exactness is asserted as the largest per-user relative error ``|x - x_ref| / |x_ref|``:
below ``EXACT`` against a float64 numpy solve (measured: 1.5e-7 synthetic, 8e-8 on
ml-100k), below ``AS_IMPLICIT`` against implicit's ``recalculate_user``, whose own
float32 solve is off the float64 answer by about 1e-6 (measured 6e-7 synthetic,
1.4e-6 to 2.5e-6 on ml-100k).
"""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, KFold

from skfewrec import ALSFactors, ClosedFormFoldIn, ImplicitFoldIn
from skfewrec._core.solvers import shared_system, solve_users
from skfewrec.model_selection import make_fewshot_scorer, support_query_split

#: asserted bounds of the largest per-user relative error (see the module docstring)
EXACT = 1e-6
AS_IMPLICIT = 1e-5


def relative_error(got, ref):
    """Largest per-user relative error ``|got - ref| / |ref|`` (rows of zeros: absolute)."""
    ref = np.asarray(ref, dtype=np.float64)
    norms = np.maximum(np.linalg.norm(ref, axis=1), 1e-12)
    return float((np.linalg.norm(np.asarray(got, dtype=np.float64) - ref, axis=1) / norms).max())


def naive_foldin(Y, X, regularization, scale, precision=None, mean=None):
    """One numpy solve per user of implicit's normal equations (the reference)."""
    Y = Y.astype(np.float64)
    f = Y.shape[1]
    out = np.zeros((X.shape[0], f))
    for u in range(X.shape[0]):
        idx, r = X[u].indices, X[u].data.astype(np.float64)
        c = scale * r
        A = Y.T @ Y + regularization * np.eye(f) + (Y[idx].T * (c - 1)) @ Y[idx]
        b = Y[idx].T @ c
        if precision is not None:
            A += precision
            b += precision @ mean
        out[u] = np.linalg.solve(A, b)
    return out


@pytest.fixture(scope="module")
def factors():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((400, 16)) * 0.3).astype(np.float32)


@pytest.fixture(scope="module")
def users():
    rng = np.random.default_rng(1)
    X = sp.random(60, 400, density=0.03, random_state=2, format="csr", dtype=np.float32)
    X.data = rng.integers(1, 5, size=X.nnz).astype(np.float32)
    X[3] = 0  # a user without shots
    X.eliminate_zeros()
    return X


@pytest.mark.parametrize("solver", ["woodbury", "direct", "auto"])
def test_solvers_match_the_naive_solve(factors, users, solver):
    system = shared_system(factors, 0.1)
    c = 3.0 * users.data.astype(np.float64)
    U = solve_users(users.indptr, users.indices, c - 1, c, system, solver=solver)
    assert relative_error(U, naive_foldin(factors, users, 0.1, 3.0)) < EXACT


def test_prior_solve_matches_the_naive_map(factors, users):
    rng = np.random.default_rng(3)
    A = rng.standard_normal((16, 16))
    precision, mean = A @ A.T / 16 + np.eye(16), rng.standard_normal(16)
    system = shared_system(factors, 0.1, precision, mean)
    c = 2.0 * users.data.astype(np.float64)
    ref = naive_foldin(factors, users, 0.1, 2.0, precision, mean)
    for solver in ("woodbury", "direct"):
        U = solve_users(users.indptr, users.indices, c - 1, c, system, solver=solver)
        assert relative_error(U, ref) < EXACT


@pytest.mark.parametrize("solver", ["woodbury", "direct", "auto"])
def test_matches_implicit_recalculate_user(factors, users, solver):
    als = ALSFactors.from_arrays(factors, regularization=0.05, confidence_scale=4.0)
    ours = ClosedFormFoldIn(FrozenEstimator(als), prior="none", solver=solver)
    ours = ours.fit(users).transform(users)
    theirs = als.to_implicit().recalculate_user(np.arange(users.shape[0]), users)
    # a user without shots gets the warm mean here, 0 in implicit: compare the others
    has = users.getnnz(axis=1) > 0
    assert relative_error(ours[has], naive_foldin(factors, users[has], 0.05, 4.0)) < EXACT
    assert relative_error(ours[has], theirs[has]) < AS_IMPLICIT
    assert relative_error(als.transform(users)[has], theirs[has]) < AS_IMPLICIT


def test_training_rows_fold_in_to_their_stored_vectors(small_interactions):
    als = ALSFactors(n_components=8, max_iter=5, random_state=0).fit(small_interactions)
    np.testing.assert_allclose(als.transform(small_interactions), als.user_factors_, atol=1e-6)


def test_from_implicit_keeps_factors_and_settings(factors):
    als = ALSFactors.from_arrays(factors, regularization=0.3, confidence_scale=7.0)
    back = ALSFactors.from_implicit(als.to_implicit())
    np.testing.assert_array_equal(back.item_factors_, factors)
    assert (back.regularization, back.confidence_scale) == (0.3, 7.0)


def test_from_arrays_rejects_bad_factors():
    with pytest.raises(ValueError, match="item_factors must be a non-empty 2-d"):
        ALSFactors.from_arrays(np.ones(3))
    with pytest.raises(ValueError, match="finite"):
        ALSFactors.from_arrays(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="user_factors must have shape"):
        ALSFactors.from_arrays(np.ones((3, 2)), np.ones((4, 3)))


def test_zero_shot_users_get_the_warm_mean_not_nan(small_interactions):
    rec = ClosedFormFoldIn(ALSFactors(n_components=8, random_state=0), prior="none")
    rec.fit(small_interactions)
    empty = sp.csr_matrix((2, small_interactions.shape[1]))
    U = rec.transform(empty)
    np.testing.assert_allclose(U, np.tile(rec.mean_, (2, 1)), rtol=1e-5)
    ids, _ = rec.recommend(empty, k=5)
    assert (ids >= 0).all()


def test_frozen_factors_are_not_refitted_by_clone_or_grid_search(small_interactions):
    als = ALSFactors(n_components=8, random_state=0).fit(small_interactions)
    frozen = FrozenEstimator(als)
    rec = ClosedFormFoldIn(factors=frozen)
    assert clone(rec).factors is frozen
    search = GridSearchCV(
        rec,
        {"prior": ["none", "gaussian"]},
        scoring=make_fewshot_scorer("ndcg", k=10, n_shots=3),
        cv=KFold(3),
    ).fit(small_interactions)
    assert search.best_estimator_.factors_ is als
    assert np.isfinite(search.best_score_)


def test_recommend_agrees_with_decision_function(small_interactions):
    rec = ClosedFormFoldIn(ALSFactors(n_components=8, random_state=0)).fit(small_interactions)
    S = small_interactions[:20]
    scores = rec.decision_function(S)
    scores[S.toarray() > 0] = -np.inf
    ids, top = rec.recommend(S, k=7)
    np.testing.assert_allclose(top, -np.sort(-scores, axis=1)[:, :7], rtol=1e-5)


@pytest.mark.realdata
def test_same_answers_as_implicit_on_ml100k(ml100k_path):
    """Exactness on real data: ClosedFormFoldIn reproduces implicit's fold-in vectors."""
    from skfewrec.datasets import load_movielens
    from skfewrec.model_selection import train_test_split_users

    X = load_movielens(ml100k_path, min_rating=4, binarize=True).X
    X_warm, X_new = train_test_split_users(X, test_size=0.2, random_state=0)
    als = ALSFactors(
        n_components=32, regularization=1.0, confidence_scale=10.0, random_state=0
    ).fit(X_warm)
    S, _ = support_query_split(X_new, 5, random_state=0)
    ours = ClosedFormFoldIn(factors=FrozenEstimator(als), prior="none")
    ours = ours.fit(X_warm).transform(S)
    theirs = ImplicitFoldIn(factors=FrozenEstimator(als)).fit(X_warm).transform(S)
    assert relative_error(ours, naive_foldin(als.item_factors_, S, 1.0, 10.0)) < EXACT
    assert relative_error(ours, theirs) < AS_IMPLICIT


@pytest.mark.parametrize("adapter", [ClosedFormFoldIn, ImplicitFoldIn])
def test_random_state_reaches_the_factor_source(adapter, small_interactions):
    X = small_interactions[:100]
    small = dict(n_components=4, max_iter=2)
    # the default source is seeded by the adapter
    first = adapter(random_state=0).fit(X)
    assert first.factors_.random_state == 0
    np.testing.assert_array_equal(first.item_factors_, adapter(random_state=0).fit(X).item_factors_)
    # a passed unfitted source: None keeps its seed, a seed replaces it
    assert adapter(ALSFactors(random_state=3, **small)).fit(X).factors_.random_state == 3
    assert (
        adapter(ALSFactors(random_state=3, **small), random_state=5).fit(X).factors_.random_state
        == 5
    )
    np.testing.assert_array_equal(
        adapter(ALSFactors(random_state=3, **small), random_state=5).fit(X).item_factors_,
        ALSFactors(random_state=5, **small).fit(X).item_factors_,
    )
    # a frozen source is never refitted
    prefit = ALSFactors(random_state=3, **small).fit(X)
    assert adapter(FrozenEstimator(prefit), random_state=5).fit(X).factors_ is prefit


def test_hybrid_ranking_matches_its_scores_and_round_trips(tmp_path):
    import skfewrec
    from skfewrec import ALSFactors, ClosedFormFoldIn
    from skfewrec.datasets import make_interactions

    X = make_interactions(n_users=300, n_items=80, random_state=0).X
    est = ClosedFormFoldIn(
        ALSFactors(4, regularization=1.0, confidence_scale=10.0, random_state=0),
        prior_strength=0.1,
        shrinkage=3.0,
        knn_weight=0.5,
    ).fit(X[:250])
    assert est.knn_similarity_.shape == (80, 80)
    ids, scores = est.recommend(X[250:], k=5)
    D = est.decision_function(X[250:])
    D[X[250:].toarray() > 0] = -np.inf
    np.testing.assert_allclose(np.take_along_axis(D, ids, axis=1), scores, rtol=1e-5)
    np.testing.assert_allclose(np.sort(D, axis=1)[:, ::-1][:, :5], scores, rtol=1e-5)
    # the blend moves the ranking away from the pure factor model
    plain = ClosedFormFoldIn(
        ALSFactors(4, regularization=1.0, confidence_scale=10.0, random_state=0),
        prior_strength=0.1,
        shrinkage=3.0,
        knn_weight=0.0,
    ).fit(X[:250])
    assert plain.knn_similarity_ is None
    assert (plain.recommend(X[250:], k=5)[0] != ids).any()
    skfewrec.save(est, tmp_path / "hybrid")
    loaded = skfewrec.load(tmp_path / "hybrid")
    np.testing.assert_array_equal(loaded.recommend(X[250:], k=5)[0], ids)
