"""GradientFoldIn: derivatives, meta-gradient, adaptation and meta-learning."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import InvalidParameterError

from skfewrec import ALSFactors, ClosedFormFoldIn, GradientFoldIn
from skfewrec.adapters._losses import BPR, WMSE, Logistic, Support, uniform_negatives
from skfewrec.adapters._meta import meta_gradient, query_loss, validation_ndcg
from skfewrec.datasets import make_interactions
from skfewrec.metrics import ndcg_at_k

F = 8


@pytest.fixture(scope="module")
def data():
    """A synthetic catalogue with taste clusters: 600 warm users, 200 new ones."""
    X = make_interactions(n_users=800, n_items=150, density=0.1, random_state=0).X
    return X[:600], X[600:]


@pytest.fixture(scope="module")
def factors(data):
    warm, _ = data
    als = ALSFactors(n_components=F, regularization=0.5, confidence_scale=2.0, random_state=0)
    return FrozenEstimator(als.fit(warm))


def shots(X, n, seed=0):
    """Each row of X cut to (at most) n random interactions."""
    rng = np.random.default_rng(seed)
    X = sp.csr_matrix(X)
    rows, cols = X.nonzero()
    keep = np.zeros(rows.size, dtype=bool)
    for r in range(X.shape[0]):
        idx = np.flatnonzero(rows == r)
        keep[rng.permutation(idx)[:n]] = True
    return sp.csr_matrix(
        (np.asarray(X[rows[keep], cols[keep]]).ravel(), (rows[keep], cols[keep])), shape=X.shape
    )


def fast(factors, **params):
    """A GradientFoldIn that fits in well under a second."""
    settings = dict(n_steps=5, meta_iter=30, meta_batch_size=64, random_state=0)
    settings.update(params)
    return GradientFoldIn(factors, **settings)


# ---------------------------------------------------------------- derivatives
def _batch(seed=0, n=40, f=5, b=6, k=4, m=9):
    rng = np.random.default_rng(seed)
    Y = (rng.normal(size=(n, f)) * 0.5).astype(np.float32)
    Yp = np.vstack([Y, np.zeros((1, f), np.float32)])
    idx = rng.integers(0, n, size=(b, k))
    idx[0, 2:] = n  # padding
    neg = np.sort(rng.choice(n, size=m, replace=False))
    idx[1, 0] = neg[0]  # a shot that is also a negative: masked for that user
    S = Support(idx, rng.random((b, k)), rng.random((b, k)) + 1, Yp, n)
    x = rng.normal(size=(b, f)).astype(np.float32)
    v = rng.normal(size=(b, f)).astype(np.float32)
    gram = ((Y.T.astype(np.float64) @ Y + 0.1 * np.eye(f)) / n).astype(np.float32)
    return S, S.negatives(neg, Y[neg]), x, v, gram, Y, neg


@pytest.mark.parametrize("loss", ["bpr", "logistic", "wmse"])
def test_gradients_and_hessian_products_match_finite_differences(loss):
    S, N, x, v, gram, Y, _ = _batch()
    obj = {"bpr": BPR(), "logistic": Logistic(), "wmse": WMSE(gram, Y.shape[0])}[loss]
    g, cache = obj.grad(x, S, N, keep=True)
    eps = 1e-2
    fd = np.stack(
        [
            (obj.value(x + eps * e, S, N) - obj.value(x - eps * e, S, N)) / (2 * eps)
            for e in np.eye(x.shape[1], dtype=np.float32)
        ],
        axis=1,
    )
    np.testing.assert_allclose(g, fd, atol=3e-4)
    hv = obj.hvp(v, S, N, cache)
    fd_hv = (obj.grad(x + eps * v, S, N)[0] - obj.grad(x - eps * v, S, N)[0]) / (2 * eps)
    np.testing.assert_allclose(hv, fd_hv, atol=3e-4)


@pytest.mark.parametrize("loss", [BPR(), Logistic()], ids=["bpr", "logistic"])
def test_a_negative_among_a_users_shots_does_not_count_for_him(loss):
    S, N, x, _, _, Y, neg = _batch()
    g = loss.grad(x, S, N)[0]
    # user 1's first shot is the first negative: without that negative nothing
    # changes for user 1 (it was left out for him), but it does for the others
    g2 = loss.grad(x, S, S.negatives(neg[1:], Y[neg[1:]]))[0]
    np.testing.assert_allclose(g[1], g2[1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(g[2], g2[2])


@pytest.mark.parametrize("meta_algorithm", ["metasgd", "fomaml"])
@pytest.mark.parametrize("loss", ["bpr", "wmse"])
def test_meta_gradient_matches_finite_differences(factors, data, loss, meta_algorithm):
    warm, _ = data
    est = fast(factors, loss=loss, init="meta", meta_iter=0, l2=0.3).fit(warm)
    rng = np.random.default_rng(1)
    episode = est._episode_batch(est._validate_users(warm), np.arange(60), rng)
    negatives = uniform_negatives(rng, 5, 20, warm.shape[1])
    params = {
        "theta": est.init_ * est._scale + rng.normal(size=F) * 0.05,
        "log_steps": np.log(est.step_sizes_.astype(np.float64)),
        "exponents": rng.normal(size=(5, F)) * 0.3,
        "log_tau": np.array([1.5]),
    }

    stepper = est._stepper()

    def loss_at(p):
        _, _, x = stepper.unroll(episode, p, negatives)
        return query_loss(x, episode.support, episode.query, p["log_tau"][0], stepper.Yp)[0]

    # the exact gradient, to compare with
    _, exact = meta_gradient(episode, params, negatives, stepper, second_order=True)
    second_order = meta_algorithm == "metasgd"
    _, grads = meta_gradient(episode, params, negatives, stepper, second_order=second_order)
    for key in params:
        direction = rng.normal(size=params[key].shape)
        eps = 3e-3 if key == "theta" else 3e-2
        plus = {**params, key: params[key] + eps * direction}
        minus = {**params, key: params[key] - eps * direction}
        fd = (loss_at(plus) - loss_at(minus)) / (2 * eps)
        if meta_algorithm == "metasgd":
            assert (grads[key] * direction).sum() == pytest.approx(fd, rel=0.02, abs=1e-4)
    if meta_algorithm == "fomaml":
        # first order: the same loss, another gradient, that still points downhill
        for key in ("theta", "log_steps"):
            assert (grads[key] * exact[key]).sum() > 0
            assert not np.allclose(grads[key], exact[key])


# ---------------------------------------------------------------- adaptation
@pytest.mark.parametrize("loss", ["bpr", "logistic", "wmse"])
def test_the_steps_lower_the_loss_on_the_shots(factors, data, loss):
    warm, new = data
    est = fast(factors, loss=loss, init="mean", meta_algorithm=None, l2=0.0).fit(warm)
    S_csr = est._validate_users(shots(new, 5))
    rows = np.arange(S_csr.shape[0])
    support = est._support(S_csr, rows, 5)
    obj = est._objective_for(S_csr, rows)
    x0 = est._starts(S_csr)
    x = est.transform(S_csr) * est._scale
    losses = []
    for s in range(est.n_steps):
        N = (
            support.negatives(est.negatives_[s], est._neg_factors[s])
            if obj.uses_negatives
            else None
        )
        losses.append((obj.value(x0, support, N).mean(), obj.value(x, support, N).mean()))
    before, after = np.array(losses).T
    assert np.all(after < before)
    assert after.mean() < 0.95 * before.mean()


def test_wmse_steps_converge_to_the_plain_closed_form(factors, data):
    warm, new = data
    S = shots(new, 4)
    exact = ClosedFormFoldIn(factors, prior="none").fit(warm).transform(S)
    est = fast(
        factors, loss="wmse", init="zero", meta_algorithm=None, l2=0.0, n_steps=600,
        learning_rate=1.0,
    ).fit(warm)  # fmt: skip
    np.testing.assert_allclose(est.transform(S), exact, rtol=1e-4, atol=1e-5)


def test_spark_convention_wmse_converges_to_its_closed_form(data):
    warm, new = data
    Y = np.random.default_rng(0).normal(scale=0.3, size=(warm.shape[1], F))
    spark = FrozenEstimator(
        ALSFactors.from_arrays(Y, regularization=0.05, confidence_scale=2.0, convention="spark")
    )
    S = shots(new, 4)
    exact = ClosedFormFoldIn(spark, prior="none").fit(warm).transform(S)
    est = fast(
        spark, loss="wmse", init="zero", meta_algorithm=None, l2=0.0, n_steps=600,
        learning_rate=1.0,
    ).fit(warm)  # fmt: skip
    np.testing.assert_allclose(est.transform(S), exact, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("init", ["zero", "mean", "closed_form", "meta"])
def test_users_without_shots_get_the_start(factors, data, init):
    warm, new = data
    meta = "metasgd" if init == "meta" else None
    est = fast(factors, init=init, meta_algorithm=meta).fit(warm)
    S = shots(new[:20], 3).tolil()
    S[[0, 5, 19]] = 0
    U = est.transform(S.tocsr())
    for row in (0, 5, 19):
        np.testing.assert_array_equal(U[row], est.init_)
    assert not np.allclose(U[1], est.init_)
    expected = {
        "zero": np.zeros(F),
        "mean": est.mean_,
        "closed_form": ClosedFormFoldIn(factors, prior="gaussian", prior_strength=1.0)
        .fit(warm)
        .transform(S[:1] * 0)[0],
    }
    if init in expected:
        np.testing.assert_allclose(est.init_, expected[init], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("prior", ["none", "mean", "gaussian"])
@pytest.mark.parametrize("prior_strength", [1.0, 20.0])
def test_zero_steps_from_the_closed_form_are_closed_form_fold_in(
    factors, data, prior, prior_strength
):
    """Every prior means the same in both adapters (one prior_terms)."""
    warm, new = data
    S = shots(new, 3).tolil()
    S[[0, 7]] = 0  # users without shots get the prior's answer (or the warm mean) in both
    S = S.tocsr()
    priors = dict(prior=prior, prior_strength=prior_strength)
    est = fast(factors, init="closed_form", n_steps=0, meta_algorithm=None, **priors).fit(warm)
    expected = ClosedFormFoldIn(factors, **priors).fit(warm).transform(S)
    np.testing.assert_allclose(est.transform(S), expected, rtol=1e-4, atol=1e-5)
    assert est.step_sizes_.shape == (0, F) and est.negatives_.shape[0] == 0


def test_the_mean_prior_scales_with_the_warm_users_variance(factors, data):
    """prior="mean" pulls with precision prior_strength / average variance, not prior_strength."""
    warm, new = data
    S = shots(new, 3)
    est = fast(factors, init="closed_form", prior="mean", n_steps=0, meta_algorithm=None)
    est.fit(warm)
    average_variance = np.trace(est.covariance_) / F
    assert not np.isclose(average_variance, 1.0, rtol=0.1)
    # the old meaning (precision prior_strength * I) is the same answer at a rescaled strength
    other = ClosedFormFoldIn(factors, prior="mean", prior_strength=average_variance).fit(warm)
    np.testing.assert_allclose(
        other.transform(S),
        fast(factors, init="closed_form", prior="mean", prior_strength=average_variance,
             n_steps=0, meta_algorithm=None).fit(warm).transform(S),
        rtol=1e-4, atol=1e-5,
    )  # fmt: skip
    assert not np.allclose(est.transform(S), other.transform(S), rtol=1e-3)


def test_transform_is_deterministic_and_independent_of_the_other_rows(factors, data):
    warm, new = data
    S = shots(new, 6)
    est = fast(factors).fit(warm)
    U = est.transform(S)
    again = fast(factors).fit(warm).transform(S)
    np.testing.assert_array_equal(U, again)
    order = np.random.default_rng(0).permutation(S.shape[0])
    np.testing.assert_allclose(est.transform(S[order]), U[order], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(est.transform(S[:7]), U[:7], rtol=1e-6, atol=1e-7)
    est.set_params(n_jobs=2)
    np.testing.assert_allclose(est.transform(S), U, rtol=1e-6, atol=1e-7)
    other = fast(factors, random_state=1).fit(warm)
    assert not np.array_equal(other.negatives_, est.negatives_)


def test_random_state_reaches_the_default_factor_source(data):
    """factors=None: the ALSFactors built by default is seeded from random_state."""
    warm, new = data
    warm, S = warm[:300], shots(new[:50], 3)
    # (cross-fitting's own determinism: test_crossfit_is_deterministic_and_round_trips)
    settings = dict(n_steps=2, meta_iter=3, meta_batch_size=32, meta_cv=None)
    first = GradientFoldIn(**settings, random_state=0).fit(warm)
    again = GradientFoldIn(**settings, random_state=0).fit(warm)
    assert first.factors_.random_state == 0
    np.testing.assert_array_equal(first.item_factors_, again.item_factors_)
    np.testing.assert_array_equal(first.transform(S), again.transform(S))
    other = GradientFoldIn(**settings, random_state=1).fit(warm)
    assert not np.allclose(other.item_factors_, first.item_factors_)


def test_negatives_are_distinct_items_per_step(factors, data):
    warm, _ = data
    est = fast(factors, n_negatives=30, n_steps=4).fit(warm)
    assert est.negatives_.shape == (4, 30)
    assert all(np.unique(row).size == 30 for row in est.negatives_)
    assert est.negatives_.max() < warm.shape[1]
    small = fast(factors, n_negatives=10_000, n_steps=2).fit(warm)
    assert small.negatives_.shape == (2, warm.shape[1])


# ---------------------------------------------------------------- meta-learning
def _episode_ndcg(est, X, seed=5):
    """NDCG@20 of held-out users' episodes (1 to 10 shots), as fit validates."""
    rng = np.random.default_rng(seed)
    X = est._validate_users(X)
    users = np.flatnonzero(np.diff(X.indptr) >= 11)
    n = rng.integers(1, 11, size=users.size)
    episode = est._episode_batch(X, users, rng, n=n)
    support, query, _, _ = episode
    x = est._user_vectors(sp.csr_matrix(_support_matrix(support, X.shape[1]))) * est._scale
    return validation_ndcg(x, support, query, est._Yp)


def _support_matrix(support, n_items):
    rows, cols = np.nonzero(support.valid)
    return sp.csr_matrix(
        (np.ones(rows.size), (rows, support.idx[rows, cols])), shape=(support.idx.shape[0], n_items)
    )


def test_the_validation_ndcg_is_the_metrics_ndcg(factors, data):
    """One NDCG: early stopping scores episodes as ndcg_at_k scores recommend's lists."""
    warm, new = data
    est = fast(factors).fit(warm)
    X = est._validate_users(new)
    users = np.flatnonzero(np.diff(X.indptr) >= 6)
    episode = est._episode_batch(X, users, np.random.default_rng(3), n=np.full(users.size, 5))
    S = _support_matrix(episode.support, X.shape[1])
    x = est.transform(S) * est._scale
    rows, cols = np.nonzero(episode.query < X.shape[1])
    Q = sp.csr_matrix(
        (np.ones(rows.size), (rows, episode.query[rows, cols])), shape=(users.size, X.shape[1])
    )
    ids, _ = est.recommend(S, k=20)
    assert validation_ndcg(x, episode.support, episode.query, est._Yp) == pytest.approx(
        ndcg_at_k(Q, ids, k=20), rel=1e-12
    )


def test_meta_learned_start_beats_zero_start_on_held_out_episodes(factors, data):
    warm, new = data
    # two steps: how far a user gets from the start depends on where it is
    zero = fast(factors, init="zero", meta_algorithm=None, n_steps=2).fit(warm)
    meta = fast(factors, init="meta", meta_iter=60, n_steps=2).fit(warm)
    assert _episode_ndcg(meta, new) > _episode_ndcg(zero, new) + 0.02
    assert not np.allclose(meta.init_, meta.mean_)  # the start moved from where it began


def test_meta_learning_improves_validation_and_keeps_the_best(factors, data):
    warm, _ = data
    est = fast(factors, init="meta", meta_iter=80, n_iter_no_change=20).fit(warm)
    scores = est.validation_scores_
    assert scores.size == 1 + est.n_iter_ // 10
    assert scores.max() > scores[0]
    assert est.step_sizes_.shape == (5, F) and est.step_size_exponents_.shape == (5, F)
    assert not np.allclose(est.step_sizes_, est.learning_rate)
    assert not np.allclose(est.init_, est.mean_)


def test_early_stopping_stops_before_meta_iter(factors, data):
    warm, _ = data
    est = fast(factors, init="meta", meta_iter=400, n_iter_no_change=1, meta_learning_rate=0.5)
    est.fit(warm)
    assert est.n_iter_ < 400
    no_validation = fast(factors, meta_iter=25, validation_fraction=0.0).fit(warm)
    assert no_validation.n_iter_ == 25 and no_validation.validation_scores_.size == 0


@pytest.mark.parametrize("meta_algorithm", ["reptile", "fomaml"])
def test_other_meta_algorithms_learn_the_start(factors, data, meta_algorithm):
    warm, new = data
    est = fast(factors, init="meta", meta_algorithm=meta_algorithm, validation_fraction=0.0)
    est.fit(warm)
    assert not np.allclose(est.init_, est.mean_)
    if meta_algorithm == "reptile":  # reptile learns the start only
        np.testing.assert_allclose(est.step_sizes_, est.learning_rate, rtol=1e-6)
    assert np.isfinite(est.transform(shots(new, 3))).all()


def test_closed_form_start_meta_learns_the_step_sizes_only(factors, data):
    warm, _ = data
    est = fast(factors, init="closed_form", validation_fraction=0.0).fit(warm)
    start = ClosedFormFoldIn(factors, prior="gaussian", prior_strength=1.0).fit(warm)
    np.testing.assert_allclose(
        est.init_, start.transform(sp.csr_matrix((1, warm.shape[1])))[0], rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(est.step_sizes_, est.learning_rate)


def test_without_episodes_nothing_is_meta_learned(factors):
    X = sp.csr_matrix(np.eye(30, 150, dtype=np.float32))  # one interaction per user
    als = ALSFactors(n_components=F, random_state=0)
    with pytest.warns(UserWarning, match="no few-shot episode"):
        est = fast(als, init="meta").fit(X)
    assert est.n_iter_ == 0
    np.testing.assert_allclose(est.step_sizes_, est.learning_rate, rtol=1e-6)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"n_shots_range": (0, 5)}, ValueError, "n_shots_range must be a pair"),
        ({"n_shots_range": (5, 2)}, ValueError, "1 <= low <= high"),
        ({"n_shots_range": (1, 2, 3)}, ValueError, "n_shots_range"),
        ({"n_shots_range": (1.0, 3)}, ValueError, "integers"),
        ({"init": "meta", "meta_algorithm": None}, ValueError, "needs a meta_algorithm"),
        ({"init": "mean", "meta_algorithm": "reptile"}, ValueError, "needs init='meta'"),
        ({"loss": "hinge"}, InvalidParameterError, "'loss' parameter"),
        ({"learning_rate": 0.0}, InvalidParameterError, "'learning_rate' parameter"),
        ({"n_negatives": 0}, InvalidParameterError, "'n_negatives' parameter"),
        ({"validation_fraction": 1.0}, InvalidParameterError, "'validation_fraction'"),
        ({"init": "random"}, InvalidParameterError, "'init' parameter"),
        ({"n_shots_range": 5}, InvalidParameterError, "'n_shots_range' parameter"),
    ],
)
def test_bad_parameters_are_refused_with_a_clear_message(factors, data, params, error, match):
    warm, _ = data
    with pytest.raises(error, match=match):
        fast(factors, **params).fit(warm)


def test_transform_checks_the_catalogue(factors, data):
    warm, new = data
    est = fast(factors, meta_iter=0).fit(warm)
    with pytest.raises(ValueError, match="features"):
        est.transform(new[:, :-1])
    with pytest.raises(ValueError, match="negative"):
        est.transform(-new[:3].toarray())


# ---------------------------------------------------------------- real data
@pytest.mark.realdata
@pytest.mark.slow
def test_on_ml100k_gradient_steps_beat_the_plain_closed_form_for_one_shot(ml100k_path):
    from skfewrec.datasets import load_movielens
    from skfewrec.model_selection import fewshot_curve, train_test_split_users

    X = load_movielens(ml100k_path, min_rating=4, binarize=True).X
    warm, new = train_test_split_users(X, test_size=0.2, random_state=0)
    als = ALSFactors(32, regularization=1.0, confidence_scale=2.0, random_state=0).fit(warm)
    factors = FrozenEstimator(als)
    # the plain closed form: no prior, no support shrinkage, no item-kNN blend
    closed = ClosedFormFoldIn(factors, prior="none", shrinkage=0.0, knn_weight=0.0).fit(warm)
    gradient = GradientFoldIn(factors, random_state=0).fit(warm)
    kw = dict(n_shots=(1, 3), k=20, metrics=("ndcg",))
    base = fewshot_curve(closed, new, **kw)["ndcg"]
    ours = fewshot_curve(gradient, new, **kw)["ndcg"]
    # measured: 0.33 -> 0.42 at one shot, 0.38 -> 0.47 at three
    assert (ours > base + 0.04).all()


# ---------------------------------------------------------------- cross-fitting
class _SpyALS(ALSFactors):
    """ALSFactors that records the rows and settings of every fit."""

    fits = []

    def fit(self, X, y=None):
        rows = {tuple(row.indices) for row in sp.csr_matrix(X)}
        _SpyALS.fits.append((X.shape[0], rows, self.regularization, self.confidence_scale))
        return super().fit(X, y)


def _rows(X):
    return [tuple(row.indices) for row in sp.csr_matrix(X)]


def test_crossfit_plays_each_fold_against_factors_fitted_without_it(data):
    """meta_cv=k: k extra factor fits, each without one fold's users, the "auto"
    settings resolved once (the fold fits get numbers), then serving factors on all."""
    warm, _ = data
    warm = warm[:300]
    _SpyALS.fits = []
    spy = _SpyALS(n_components=F, regularization="auto", confidence_scale=2.0, random_state=0)
    est = fast(spy, meta_cv=3).fit(warm)
    assert est.meta_cv_ == 3
    full, *folds = _SpyALS.fits
    assert len(folds) == 3 and full[0] == warm.shape[0] and full[2] == "auto"
    assert [f[2] for f in folds] == [est.regularization_] * 3  # no second search
    # every warm user is left out of exactly one fold's fit
    assert sorted(f[0] for f in folds) == sorted(
        warm.shape[0] - size for size in np.bincount([0, 1, 2] * 100)
    )
    assert sum(warm.shape[0] - f[0] for f in folds) == warm.shape[0]
    all_rows = set(_rows(warm))
    assert all(f[1] < all_rows for f in folds)
    # the serving factors are the full fit's
    plain = fast(ALSFactors(F, regularization=est.regularization_, confidence_scale=2.0,
                            random_state=0), meta_cv=None).fit(warm)  # fmt: skip
    np.testing.assert_array_equal(est.item_factors_, plain.item_factors_)
    assert plain.meta_cv_ == 0
    assert not np.allclose(est.step_sizes_, plain.step_sizes_)


def test_fold_factors_are_rotated_onto_the_serving_factors(data):
    warm, _ = data
    est = fast(ALSFactors(F, regularization=0.5, confidence_scale=2.0, random_state=0),
               meta_cv=3).fit(warm)  # fmt: skip
    fold = np.arange(warm.shape[0]) % 3
    Y = est.item_factors_
    for model in est._fold_models(warm, fold):
        Yk = model.item_factors_
        assert Yk.shape == Y.shape and not np.allclose(Yk, Y)
        # the best rotation of Yk onto Y: Procrustes leaves nothing to gain
        u, _, vt = np.linalg.svd(Yk.T.astype(np.float64) @ Y)
        np.testing.assert_allclose(u @ vt, np.eye(F), atol=1e-4)
        assert np.linalg.norm(Yk - Y) < 0.5 * np.linalg.norm(Y)
        assert not np.allclose(model.mean_, est.mean_)


@pytest.mark.parametrize("init", ["meta", "closed_form", "mean"])
def test_crossfit_is_deterministic_and_round_trips(data, tmp_path, init):
    import skfewrec

    warm, new = data
    S = shots(new, 4)
    als = ALSFactors(F, regularization=0.5, confidence_scale=2.0, random_state=0)
    est = fast(als, meta_cv=3, init=init).fit(warm)
    again = fast(als, meta_cv=3, init=init).fit(warm)
    np.testing.assert_array_equal(est.transform(S), again.transform(S))
    np.testing.assert_array_equal(est.init_, again.init_)
    plain = fast(als, meta_cv=None, init=init).fit(warm)
    assert not np.allclose(est.step_sizes_, plain.step_sizes_)
    if init == "meta":  # the learned start moved from the warm mean
        assert not np.allclose(est.init_, est.mean_)
    else:  # the start is not meta-learned: the full fit's
        np.testing.assert_array_equal(est.init_, plain.init_)
    loaded = skfewrec.load(skfewrec.save(est, tmp_path / "m.zip"))
    assert loaded.meta_cv == 3 and loaded.meta_cv_ == 3
    np.testing.assert_array_equal(loaded.transform(S), est.transform(S))
    ids, scores = est.recommend(S, k=10)
    ids2, scores2 = loaded.recommend(S, k=10)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(scores, scores2)


def test_a_bundle_with_a_bad_meta_cv_is_refused(data, tmp_path):
    import json

    import skfewrec
    from skfewrec.persistence import BundleError

    warm, _ = data
    als = ALSFactors(F, regularization=0.5, confidence_scale=2.0, random_state=0)
    path = skfewrec.save(fast(als, meta_cv=2, meta_iter=5).fit(warm[:200]), tmp_path / "m")
    meta = json.loads((path / "meta.json").read_text())
    text = json.dumps(meta)
    assert '"meta_cv": 2' in text
    (path / "meta.json").write_text(text.replace('"meta_cv": 2', '"meta_cv": 1'))
    manifest = json.loads((path / "manifest.json").read_text())
    data_ = (path / "meta.json").read_bytes()
    from skfewrec.persistence._writer import _sha256

    manifest["members"]["meta.json"] = {"sha256": _sha256(data_), "size": len(data_)}
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="meta_cv"):
        skfewrec.load(path)


def test_meta_cv_auto_and_prefit_factors(factors, data):
    warm, _ = data
    # a prefit source cannot be refitted per fold: "auto" does not cross-fit...
    assert fast(factors).fit(warm).meta_cv_ == 0
    # ... and an explicit meta_cv says why it cannot
    with pytest.warns(UserWarning, match="cannot cross-fit"):
        est = fast(factors, meta_cv=3).fit(warm)
    assert est.meta_cv_ == 0
    als = ALSFactors(F, regularization=0.5, confidence_scale=2.0, random_state=0)
    assert fast(als).fit(warm).meta_cv_ == 5  # "auto": 5 folds with enough users
    assert fast(als).fit(warm[:60]).meta_cv_ == 0  # too few users for 5 folds of 20
    assert fast(als, meta_algorithm=None, init="mean").fit(warm).meta_cv_ == 0


@pytest.mark.parametrize(
    "meta_cv, error, match",
    [
        (1, InvalidParameterError, "'meta_cv' parameter"),
        ("5", InvalidParameterError, "'meta_cv' parameter"),
        (2.0, InvalidParameterError, "'meta_cv' parameter"),
        (1000, ValueError, "meta_cv=1000 cross-fitting folds need at least 1000 warm users"),
    ],
)
def test_bad_meta_cv_is_refused(data, meta_cv, error, match):
    warm, _ = data
    als = ALSFactors(F, regularization=0.5, confidence_scale=2.0, random_state=0)
    with pytest.raises(error, match=match):
        fast(als, meta_cv=meta_cv).fit(warm)
