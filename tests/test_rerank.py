"""LightGBMReranker: leak-free episodes, features, side tables, serving, sklearn integration."""

import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import check_fit_idempotent, check_pipeline_consistency

import skfewrec.rerank._features as features_module
import skfewrec.rerank._reranker as rerank_module
from skfewrec import ALSFactors, ClosedFormFoldIn, LightGBMReranker
from skfewrec.datasets import make_interactions
from skfewrec.model_selection import make_fewshot_scorer, support_query_split
from skfewrec.rerank._reranker import sample_episodes
from skfewrec.rerank._warm import pruned_cooccurrence, warm_statistics


def _adapter(n_components=8, **kwargs):
    # fixed settings (the 0.1.0 defaults): these tests are about the re-ranker, and their
    # thresholds were set over this adapter, not over the "auto" defaults
    factors = ALSFactors(
        n_components=n_components,
        regularization=0.01,
        confidence_scale=1.0,
        max_iter=5,
        random_state=0,
    )
    fixed = {"prior": "none", "prior_strength": 1.0, "shrinkage": 0.0}
    return ClosedFormFoldIn(factors=factors, **{**fixed, **kwargs})


def _reranker(**kwargs):
    params = {
        "n_candidates": 40,
        "n_estimators": 40,
        "n_episodes": 2,
        "cv": 3,
        "random_state": 0,
    }
    params.update(kwargs)
    return LightGBMReranker(_adapter(), **params)


@pytest.fixture(scope="module")
def data():
    return make_interactions(n_users=500, n_items=150, density=0.08, random_state=0)


@pytest.fixture(scope="module")
def fitted(data):
    return _reranker().fit(data.X[:400])


# ------------------------------------------------------------------ episodes and leakage
def test_sample_episodes_split_rows_into_shots_and_held_back_items():
    X = make_interactions(n_users=60, n_items=40, random_state=1).X
    S, Q, owner = sample_episodes(X, 2, 6, 3, np.random.RandomState(0))
    counts = np.diff(X.indptr)
    assert np.array_equal(owner, np.repeat(np.flatnonzero(counts >= 3), 3))
    shots = np.diff(S.indptr)
    assert shots.min() >= 2 and shots.max() <= 6
    assert (np.diff(Q.indptr) >= 1).all()  # something is always held back
    np.testing.assert_array_equal((S + Q).toarray(), X[owner].toarray())
    assert S.multiply(Q).nnz == 0


def _distinct_rows(n_users=90, n_items=60):
    """Interactions whose rows are all different (user u alone has item u)."""
    X = make_interactions(n_users=n_users, n_items=n_items, random_state=2).X.tolil()
    X = sp.hstack([X, sp.eye(n_users, format="csr")], format="csr")
    return sp.csr_matrix(X, dtype=np.float32)


def test_episodes_are_scored_by_adapters_and_statistics_that_never_saw_their_users(
    monkeypatch,
):
    """Whatever scores a fold's episodes was fitted without that fold's users."""
    X = _distinct_rows()
    as_set = lambda M: {M[i].toarray().tobytes() for i in range(M.shape[0])}  # noqa: E731
    calls = []
    fit_adapter = LightGBMReranker._fit_adapter
    stats = rerank_module.warm_statistics
    sample = rerank_module.sample_episodes

    def spy_fit(self, rows):
        calls.append(("adapter", as_set(rows)))
        return fit_adapter(self, rows)

    def spy_stats(rows, **kwargs):
        calls.append(("stats", as_set(rows)))
        return stats(rows, **kwargs)

    def spy_sample(rows, *args):
        calls.append(("episodes", as_set(rows)))
        return sample(rows, *args)

    monkeypatch.setattr(LightGBMReranker, "_fit_adapter", spy_fit)
    monkeypatch.setattr(rerank_module, "warm_statistics", spy_stats)
    monkeypatch.setattr(rerank_module, "sample_episodes", spy_sample)
    _reranker(cv=3, n_estimators=5).fit(X)

    kinds = [kind for kind, _ in calls]
    assert kinds == ["adapter", "stats", "episodes"] * 3 + ["adapter", "stats"]
    everyone = as_set(X)
    seen_by_episodes = set()
    for fold in range(3):
        (_, adapter_rows), (_, stats_rows), (_, episode_rows) = calls[3 * fold : 3 * fold + 3]
        assert not adapter_rows & episode_rows
        assert not stats_rows & episode_rows
        assert adapter_rows | episode_rows == everyone
        seen_by_episodes |= episode_rows
    assert seen_by_episodes == everyone  # every warm user trains the ranker
    assert calls[-2][1] == everyone  # the serving adapter sees every warm user


def _best_single_feature_ndcg(parts, k=10):
    """NDCG@k of the best ranking by one feature: how much label information the
    features carry (empty slots and episodes without a held-back item dropped)."""
    n_cand = parts[0][4]
    F = np.concatenate([p[0] for p in parts]).reshape(-1, n_cand, parts[0][0].shape[1])
    labels = np.concatenate([p[1] for p in parts]).reshape(-1, n_cand)
    valid = np.concatenate([p[2] for p in parts]).reshape(-1, n_cand)
    keep = labels.sum(axis=1) > 0
    F, labels, valid = F[keep], labels[keep], valid[keep]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.sort(labels, axis=1)[:, ::-1][:, :k] @ discounts
    best = 0.0
    for sign in (1, -1):
        for j in range(F.shape[2]):
            key = np.where(valid, np.nan_to_num(sign * F[:, :, j], nan=-np.inf), -np.inf)
            order = np.argsort(-key, axis=1, kind="stable")[:, :k]
            dcg = np.take_along_axis(labels, order, axis=1) @ discounts
            best = max(best, float(np.mean(dcg / ideal)))
    return best


def test_a_leaky_episode_scheme_would_be_caught(monkeypatch):
    """Honest episodes carry new-user information; leaky ones carry the labels.

    Without cross-fitting, the adapter and the warm statistics (co-occurrence,
    the user-kNN pool) are fitted on the very users whose held-back items the
    episodes hide: some feature then all but reads the labels. The deliberately
    leaky variant shows it; the cross-fitted episodes must look like new users.
    """
    # a long tail: many held-back items co-occur with the shots only in their own user
    data = make_interactions(
        n_users=500, n_items=2000, density=0.01, popularity_exponent=0.3, random_state=3
    )
    X_warm, X_new = data.X[:400], data.X[400:]
    rr = LightGBMReranker(
        _adapter(), n_candidates=40, n_shots_range=(3, 3), n_episodes=1, cv=3, random_state=0
    )
    rr._validate_params()
    X_warm = rerank_module.validate_interactions(rr, X_warm, reset=True)
    honest, _ = rr._episodes(X_warm, np.random.RandomState(0))

    full_adapter = rr._fit_adapter(X_warm)
    full_stats = warm_statistics(X_warm)
    monkeypatch.setattr(LightGBMReranker, "_fit_adapter", lambda self, rows: full_adapter)
    monkeypatch.setattr(rerank_module, "warm_statistics", lambda rows, **kw: full_stats)
    leaky, _ = rr._episodes(X_warm, np.random.RandomState(0))

    # new users, measured the same way, with everything fitted on the warm users
    S, Q = support_query_split(X_new, 3, random_state=0)
    cand, scores = full_adapter.recommend(S, k=40)
    builder = rerank_module.FeatureBuilder(full_adapter.item_factors_, full_stats)
    F = builder.build(S, cand, scores)
    new = [(F, rerank_module._labels(Q, cand).ravel(), (cand >= 0).ravel(), None, 40)]

    honest, leaky, new = (_best_single_feature_ndcg(p) for p in (honest, leaky, new))
    assert 0.85 < honest / new < 1.15
    assert leaky > 1.6 * new


def test_a_frozen_factor_source_warns_that_it_cannot_be_cross_fitted(data):
    als = ALSFactors(n_components=4, max_iter=2, random_state=0).fit(data.X[:200])
    rr = LightGBMReranker(
        ClosedFormFoldIn(factors=FrozenEstimator(als)), n_estimators=3, random_state=0
    )
    with pytest.warns(UserWarning, match="cannot refit without each fold's users"):
        rr.fit(data.X[:200])


# ------------------------------------------------------------------ fitted state
def test_fitted_state_names_its_features_and_keeps_the_model_text(fitted):
    names = fitted.feature_names_.tolist()
    for name in (
        "adapter_score",
        "adapter_rank",
        "item_log_popularity",
        "item_factor_norm",
        "support_size",
        "factor_cosine_max",
        "factor_cosine_mean",
        "cooc_cosine_max",
        "cooc_conditional_mean",
        "similar_users_score",
        "plain_score",
    ):
        assert name in names
    assert fitted.feature_importances_.shape == (len(names),)
    assert fitted.feature_importances_.sum() == pytest.approx(1.0)
    assert fitted.booster_.num_feature() == len(names)
    assert fitted.model_text_.startswith("tree")
    assert 1 <= fitted.best_iteration_ <= 40
    assert fitted.booster_.num_trees() == fitted.best_iteration_


def test_the_fitted_state_does_not_grow_with_the_warm_users(data):
    """No array of the re-ranker's own state (its candidate adapter aside) has a
    dimension that counts warm users; the co-occurrence table is bounded per item."""
    from skfewrec.rerank._warm import COOC_NEIGHBORS

    rr = _reranker(n_estimators=5, cv=2).fit(data.X[:157])
    state = {k: v for k, v in vars(rr).items() if k.endswith("_") and k != "candidates_"}
    values = list(state.values()) + list(rr.warm_statistics_.values())
    shapes = [v.shape for v in values if isinstance(v, np.ndarray) or sp.issparse(v)]
    assert shapes and all(157 not in shape for shape in shapes), shapes
    assert set(rr.warm_statistics_) == {
        "item_counts",
        "n_users",
        "recent_counts",
        "n_recent",
        "item_time",
        "cooccurrence",
    }
    assert rr.warm_statistics_["cooccurrence"].getnnz(axis=1).max() <= COOC_NEIGHBORS


def test_a_bundle_saved_by_0_1_0_keeps_its_user_knn_and_gets_true_names():
    """The legacy warm matrix is converted in _rebuild; the names follow the columns."""
    import skfewrec

    legacy = Path(__file__).resolve().parent / "data" / "legacy_v0_1" / "reranker.zip"
    rr = skfewrec.load(legacy)
    assert not hasattr(rr, "warm_interactions_") and not hasattr(rr, "cooccurrence_")
    assert rr.warm_statistics_["warm"].shape == (rr.warm_statistics_["n_users"], 60)
    names = rr.feature_names_.tolist()
    assert names.index("user_knn_score") == names.index("cooc_conditional_mean") + 1
    assert names[-2:] == ["plain_score", "plain_rank"]  # the columns 0.1.0 wrote last
    assert "similar_users_score" not in names
    X = sp.csr_matrix(np.eye(60, dtype=np.float32)[:8] + np.eye(60, k=3, dtype=np.float32)[:8])
    again = skfewrec.loads(skfewrec.dumps(rr))
    np.testing.assert_array_equal(again.recommend(X, k=5)[0], rr.recommend(X, k=5)[0])


def test_rebuild_restores_the_booster_from_model_text(fitted, data):
    S = data.X[400:]
    clone_state = pickle.loads(pickle.dumps(fitted))
    del clone_state._booster, clone_state._builder
    clone_state._rebuild()
    np.testing.assert_array_equal(fitted.recommend(S, k=10)[0], clone_state.recommend(S, k=10)[0])
    state = fitted.__getstate__()
    assert "_booster" not in state and "_builder" not in state
    assert hasattr(fitted, "_booster")  # the live object keeps its caches


def test_same_random_state_same_model(data):
    X = data.X[:150]
    a = _reranker(n_estimators=10, cv=2).fit(X)
    b = _reranker(n_estimators=10, cv=2).fit(X)
    assert a.model_text_ == b.model_text_


def test_random_state_seeds_the_default_candidate_adapter():
    for seed in (None, 3):
        template = LightGBMReranker(random_state=seed)._candidate_template()
        assert isinstance(template, ClosedFormFoldIn)
        assert template.factors.get_params()["random_state"] == seed
    given = _adapter()
    assert LightGBMReranker(given, random_state=3)._candidate_template() is given


@pytest.mark.slow
@pytest.mark.parametrize("check", [check_fit_idempotent, check_pipeline_consistency])
def test_default_reranker_is_reproducible_under_sklearn_checks(check):
    """sklearn seeds ``random_state``; it must reach the default ALS factors."""
    check("LightGBMReranker", LightGBMReranker())


def test_pruned_cooccurrence_matches_the_dense_product():
    X = make_interactions(n_users=80, n_items=30, random_state=4).X
    B = (X.toarray() > 0).astype(np.float32)
    full = B.T @ B
    np.fill_diagonal(full, 0)
    np.testing.assert_array_equal(pruned_cooccurrence(X, n_neighbors=30).toarray(), full)
    pruned = pruned_cooccurrence(X, n_neighbors=5, block_elements=64).toarray()
    assert ((pruned > 0).sum(axis=1) <= 5).all()
    np.testing.assert_array_equal(pruned[pruned > 0], full[pruned > 0])


def test_features_on_a_hand_made_case():
    """Cosines, co-occurrence and support features, checked by hand."""
    # items 0 and 1 always together; item 2 alone; item 3 with 0 once
    X = sp.csr_matrix(
        np.array([[1, 1, 0, 0], [1, 1, 0, 1], [0, 0, 1, 0], [1, 1, 0, 0]], dtype=np.float32)
    )
    V = np.array([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32)
    builder = rerank_module.FeatureBuilder(V, warm_statistics(X))
    S = sp.csr_matrix(np.array([[1, 0, 0, 0]], dtype=np.float32))  # one shot: item 0
    cand = np.array([[1, 3, 2, -1]])
    F = builder.build(S, cand, np.array([[3.0, 2.0, 1.0, -np.inf]]))
    f = pd.DataFrame(F[:3], columns=builder.feature_names)
    np.testing.assert_allclose(f["factor_cosine_max"], [1, np.sqrt(0.5), 0], atol=1e-6)
    np.testing.assert_allclose(f["cooc_conditional_max"], [1, 1 / 3, 0], atol=1e-6)
    np.testing.assert_allclose(f["cooc_cosine_mean"], [1, 1 / np.sqrt(3), 0], atol=1e-6)
    np.testing.assert_allclose(f["adapter_score"], [1, 2 / 3, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(f["adapter_score_gap"], [0, 0.5, 1])
    np.testing.assert_allclose(f["item_factor_norm"], np.array([1, np.sqrt(2), 1]) / 1.1035534)
    np.testing.assert_allclose(f["support_size"], 1)
    np.testing.assert_allclose(f["item_log_popularity"], np.log(np.array([4, 2, 2]) / 5))
    # the warm users sharing the shot (rows 0, 1, 3) all hold item 1, one of them item 3
    np.testing.assert_allclose(f["similar_users_score"], [1, 1 / 3, 0], rtol=1e-6)


# ------------------------------------------------------------------ every column, independently
@pytest.fixture(scope="module")
def all_options():
    """A re-ranker with every option on, and a small case to build features for.

    Fold-in candidate adapter (factor and plain fold-in features), timestamps,
    an item table (numeric, boolean and categorical columns) and a user table
    (numeric and categorical); new users with 0 to 6 shots.
    """
    rng = np.random.RandomState(5)
    data = make_interactions(n_users=110, n_items=24, density=0.25, random_state=5)
    X = data.X
    T = np.where(X.toarray() > 0, rng.uniform(1e9, 2e9, X.shape), 0.0)
    items = pd.DataFrame(
        {
            "year": rng.randint(1950, 2020, 24).astype(float),
            "drama": rng.rand(24) < 0.5,
            "kind": pd.Categorical(rng.choice(["a", "b", "c"], 24)),
        }
    )
    users = pd.DataFrame(
        {"age": rng.randint(18, 70, 110), "group": pd.Categorical(rng.choice(["x", "y"], 110))}
    )
    rr = LightGBMReranker(
        _adapter(n_components=4), n_candidates=10, n_estimators=5, cv=2, random_state=0
    )
    rr.set_params(item_features=items)
    rr.fit(X[:90], user_features=users.iloc[:90], timestamps=T[:90])
    S = X[90:].tolil()
    for u, n_shots in enumerate([0, 1, 2, 3, 6] * 4):
        S.rows[u], S.data[u] = S.rows[u][:n_shots], S.data[u][:n_shots]
    S = sp.csr_matrix(S)
    cand, scores = rr.candidates_.recommend(S, k=10)
    user_values = rr._user_table.transform(users.iloc[90:], 20)
    return {
        "rr": rr,
        "X": X[:90].toarray() > 0,
        "T": T[:90],
        "items": items,
        "users": users.iloc[90:].reset_index(drop=True),
        "S": S,
        "cand": cand,
        "scores": scores,
        "user_values": user_values,
    }


def _rank(values):
    """0 for the largest; ties in slot order (as a stable sort)."""
    return np.array(
        [np.sum(values > v) + np.sum(values[:j] == v) for j, v in enumerate(values)], float
    )


def _reference_features(case):
    """Every feature of every (user, candidate) pair, computed the slow, obvious way
    from the raw inputs: no code of the feature builder is used."""
    rr, X, S, cand, scores = case["rr"], case["X"], case["S"], case["cand"], case["scores"]
    n_warm, n_items = X.shape
    count = X.sum(axis=0).astype(float)
    log_pop = np.log((count + 1) / (n_warm + 1))
    times = case["T"][X]
    scaled = np.zeros(X.shape)
    scaled[X] = (times - times.min()) / np.ptp(times)
    recent = X & (scaled >= np.quantile(scaled[X], 0.9))
    recent_pop = np.log((recent.sum(axis=0) + 1) / (recent.sum() + 1))
    with np.errstate(invalid="ignore"):
        item_time = (scaled * X).sum(axis=0) / count
    V = rr.candidates_.item_factors_.astype(float)
    norm = np.linalg.norm(V, axis=1)
    cosine = (V @ V.T) / np.outer(norm, norm)
    co = (X.T.astype(float) @ X).astype(float)  # 24 items: no neighbour is pruned
    plain = rr.candidates_.factors_.transform(S) @ V.T
    numeric = case["items"][["year", "drama"]].to_numpy(float)
    profile = numeric / np.abs(numeric).max(axis=0)
    kind = case["items"]["kind"].cat.codes.to_numpy()
    users = case["users"]
    rows = []
    for u in range(S.shape[0]):
        shots = S[u].indices
        n = len(shots)
        valid = cand[u] >= 0
        c_u, s_u = cand[u][valid], scores[u][valid]
        overlap = X[:, shots].sum(axis=1).astype(float)  # warm users' shared shots
        with np.errstate(invalid="ignore", divide="ignore"):
            t_shots = np.nanmean(item_time[shots]) if n else np.nan
            cooc = {
                "cos": [co[shots, c] / np.sqrt(count[shots] * count[c]) for c in c_u],
                "cond": [co[shots, c] / count[shots] for c in c_u],
            }
        user_profile = profile[shots].mean(axis=0) if n else np.zeros(2)
        cos_mean = np.array([cosine[c, shots].mean() if n else 0.0 for c in c_u])
        cond_mean = np.array([v.sum() / max(n, 1) for v in cooc["cond"]])
        plain_u = plain[u, c_u]
        for j, c in enumerate(c_u):
            dot = profile[c] @ user_profile
            denominator = np.linalg.norm(profile[c]) * np.linalg.norm(user_profile)
            rows.append(
                {
                    "adapter_score": s_u[j] / abs(s_u[0]),
                    "adapter_rank": j,
                    "adapter_score_gap": (s_u[0] - s_u[j]) / (s_u[0] - s_u.min()),
                    "item_log_popularity": log_pop[c],
                    "item_recent_log_popularity": recent_pop[c],
                    "item_time": item_time[c],
                    "item_time_gap": item_time[c] - t_shots,
                    "support_size": n,
                    "support_log_popularity": log_pop[shots].mean() if n else 0.0,
                    "item_factor_norm": norm[c] / norm.mean(),
                    "factor_cosine_max": cosine[c, shots].max() if n else 0.0,
                    "factor_cosine_mean": cos_mean[j],
                    "cooc_cosine_max": max(cooc["cos"][j].max(initial=0), 0),
                    "cooc_cosine_mean": cooc["cos"][j].sum() / max(n, 1),
                    "cooc_conditional_max": max(cooc["cond"][j].max(initial=0), 0),
                    "cooc_conditional_mean": cond_mean[j],
                    "similar_users_score": overlap @ X[:, c] / max(overlap.sum(), 1e-12),
                    "popularity_rank": _rank(log_pop[c_u])[j],
                    "cooc_rank": _rank(cond_mean)[j],
                    "factor_cosine_rank": _rank(cos_mean)[j],
                    "plain_score": plain_u[j] / max(abs(plain_u.max()), 1e-12),
                    "plain_rank": _rank(plain_u)[j],
                    "item:year": case["items"]["year"][c],
                    "item:drama": float(case["items"]["drama"][c]),
                    "item:kind": kind[c],
                    "item_profile_dot": dot,
                    "item_profile_cosine": dot / denominator if denominator > 0 else 0.0,
                    "item_same:kind": np.mean(kind[shots] == kind[c]) if n else 0.0,
                    "user:age": users["age"][u],
                    "user:group": users["group"].cat.codes[u],
                }
            )
    return pd.DataFrame(rows)


def _built_features(case, builder):
    F = builder.build(case["S"], case["cand"], case["scores"], case["user_values"])
    return pd.DataFrame(F[(case["cand"] >= 0).ravel()], columns=builder.feature_names)


def _assert_each_column_is_its_feature(built, reference):
    assert list(built.columns) == list(reference.columns)
    for name in reference.columns:
        np.testing.assert_allclose(built[name], reference[name], rtol=2e-5, atol=2e-6, err_msg=name)


def test_every_named_column_is_that_feature_with_every_option_on(all_options):
    """Each column named in feature_names_ equals an independent computation of it."""
    rr = all_options["rr"]
    reference = _reference_features(all_options)
    assert rr.feature_names_.tolist() == list(reference.columns)
    assert len(reference) > 150 and reference["support_size"].min() == 0
    _assert_each_column_is_its_feature(_built_features(all_options, rr._builder), reference)
    # the ranker reads the categorical features where they are
    categorical = [rr.feature_names_[j] for j in rr._builder.categorical_features]
    assert categorical == ["item:kind", "user:group"]


def test_two_swapped_computations_are_caught(all_options, monkeypatch):
    """The check above fails when two features' columns trade places."""
    rr = all_options["rr"]
    registry = list(features_module.FEATURES)
    i, j = ([entry.name for entry in registry].index(name) for name in ("plain_score", "cooc_rank"))
    registry[i], registry[j] = (
        registry[i]._replace(compute=registry[j].compute),
        registry[j]._replace(compute=registry[i].compute),
    )
    monkeypatch.setattr(features_module, "FEATURES", tuple(registry))
    swapped = features_module.FeatureBuilder(
        rr.candidates_.item_factors_,
        rr.warm_statistics_,
        (rr.item_side_, list(rr.item_side_names_), rr.item_side_categorical_),
        rr._user_table,
        fold_in=rr.candidates_.factors_.transform,
    )
    with pytest.raises(AssertionError, match="plain_score|cooc_rank"):
        _assert_each_column_is_its_feature(
            _built_features(all_options, swapped), _reference_features(all_options)
        )


def test_docs_list_every_feature_of_the_registry():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "reranker.rst").read_text()
    assert features_module.feature_list() in docs


# ------------------------------------------------------------------ serving
def test_reranking_beats_its_own_adapter_on_new_users(data):
    X_warm, X_new = data.X[:400], data.X[400:]
    rr = _reranker(n_estimators=100, n_episodes=5).fit(X_warm)
    ratios = []
    for n_shots in (1, 3, 5):
        scorer = make_fewshot_scorer("ndcg", k=10, n_shots=n_shots)
        ratios.append(scorer(rr, X_new) / scorer(rr.candidates_, X_new))
    assert min(ratios) > 1.0 and np.mean(ratios) > 1.02, ratios


def test_recommend_reorders_the_adapters_candidates_and_pads_beyond_them(fitted, data):
    S = data.X[400:420]
    ids, scores = fitted.recommend(S, k=60)  # n_candidates=40
    adapter_ids, _ = fitted.candidates_.recommend(S, k=60)
    np.testing.assert_array_equal(
        np.sort(ids[:, :40], axis=1), np.sort(adapter_ids[:, :40], axis=1)
    )
    np.testing.assert_array_equal(ids[:, 40:], adapter_ids[:, 40:])
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert np.all(scores[:, 39] > scores[:, 40])
    top, _ = fitted.recommend(S, k=5)
    np.testing.assert_array_equal(top, ids[:, :5])


def test_decision_function_orders_items_as_recommend_without_filtering(fitted, data):
    S = data.X[400:420]
    scores = fitted.decision_function(S)
    assert scores.shape == (20, 150) and np.isfinite(scores).all()
    ids, top = fitted.recommend(S, k=50, filter_seen=False)
    np.testing.assert_allclose(np.take_along_axis(scores, ids, axis=1), top, rtol=1e-6)
    np.testing.assert_allclose(-np.sort(-scores, axis=1)[:, :50], top, rtol=1e-6)


def test_users_without_shots_get_a_defined_answer(data):
    rr = _reranker(n_shots_range=(0, 5), n_estimators=10).fit(data.X[:300])
    empty = sp.csr_matrix((4, data.X.shape[1]), dtype=np.float32)
    ids, scores = rr.recommend(empty, k=10)
    assert (ids >= 0).all() and np.isfinite(scores).all()
    assert (ids == ids[0]).all()  # no shots, no information: the same list for all


def test_candidates_fewer_than_k_after_filtering(fitted):
    X = sp.csr_matrix(np.ones((2, 150), dtype=np.float32))
    X[0, :5] = 0
    X.eliminate_zeros()
    ids, scores = fitted.recommend(X, k=10)
    assert set(ids[0, :5]) == set(range(5)) and (ids[0, 5:] == -1).all()
    assert (ids[1] == -1).all() and np.isneginf(scores[1]).all()


# ------------------------------------------------------------------ side tables
def _side_tables(data):
    items = data.item_features.assign(
        category=pd.Categorical(data.item_features["category"]),
        weight=np.linspace(0, 1, len(data.item_features)),
    )
    users = data.user_features.assign(age=np.arange(len(data.user_features)) % 50)
    return items, users


def test_side_features_are_used(data):
    items, users = _side_tables(data)
    rr = _reranker(item_features=items, n_estimators=30)
    rr.fit(data.X[:400], user_features=users.iloc[:400])
    names = rr.feature_names_.tolist()
    for name in ("item:category", "item:weight", "item_same:category", "user:cluster", "user:age"):
        assert name in names
    assert "item_profile_cosine" in names
    ids, _ = rr.recommend(data.X[400:], k=10, user_features=users.iloc[400:])
    assert ids.shape == (100, 10)
    # an unseen category of a new user counts as missing
    new_users = users.iloc[400:].assign(cluster=pd.Categorical(["never seen"] * 100))
    ids2, _ = rr.recommend(data.X[400:], k=10, user_features=new_users)
    assert ids2.shape == (100, 10)
    with pytest.raises(ValueError, match="needs them for the users being served"):
        rr.recommend(data.X[400:], k=10)
    with pytest.raises(ValueError, match="columns it had at fit time"):
        rr.recommend(data.X[400:], k=10, user_features=users.iloc[400:, :1])
    with pytest.raises(ValueError, match="100 users"):
        rr.recommend(data.X[400:], k=10, user_features=users.iloc[:5])


def test_timestamps_add_recency_features(data):
    rr = _reranker(n_estimators=10).fit(data.X[:300], timestamps=data.timestamps[:300])
    assert {"item_recent_log_popularity", "item_time", "item_time_gap"} <= set(rr.feature_names_)
    recent = rr.warm_statistics_["recent_counts"]
    assert recent.sum() == pytest.approx(0.1 * data.X[:300].nnz, rel=0.05)
    with pytest.raises(ValueError, match="timestamps has shape"):
        _reranker().fit(data.X[:300], timestamps=data.timestamps[:200])


@pytest.mark.parametrize(
    ("table", "error", "match"),
    [
        (lambda t: t.iloc[1:], ValueError, "no row for 1 item"),
        (lambda t: t.set_axis(t.index + 1), ValueError, "outside the catalogue"),
        (lambda t: t.set_axis(np.r_[0, 0, np.arange(2, len(t))]), ValueError, "duplicate"),
        (lambda t: t.set_axis(t.index.astype(str)), TypeError, "indexed by item index"),
        (lambda t: t.assign(title="x"), TypeError, "column 'title' has dtype"),
        (lambda t: t.assign(weight=np.nan), ValueError, "column 'weight' has 150 NaN"),
        (lambda t: t.to_numpy(), TypeError, "pandas.DataFrame"),
        (lambda t: t.iloc[:, :0], ValueError, "no columns"),
    ],
)
def test_bad_item_tables_are_refused(data, table, error, match):
    items, _ = _side_tables(data)
    with pytest.raises(error, match=match):
        _reranker(item_features=table(items)).fit(data.X[:100])


@pytest.mark.parametrize(
    ("table", "error", "match"),
    [
        (lambda t: t.iloc[:50], ValueError, "has 50 rows but X has 100 users"),
        (lambda t: t.assign(age=np.nan), ValueError, "column 'age' has 100 NaN"),
        (lambda t: t.assign(city="Paris"), TypeError, "column 'city' has dtype"),
        (
            lambda t: t.assign(
                cluster=t["cluster"].cat.add_categories("x").where(np.arange(len(t)) > 0, np.nan)
            ),
            ValueError,
            "column 'cluster' has 1 NaN",
        ),
    ],
)
def test_bad_user_tables_are_refused(data, table, error, match):
    _, users = _side_tables(data)
    with pytest.raises(error, match=match):
        _reranker().fit(data.X[:100], user_features=table(users.iloc[:100]))


def test_user_features_only_where_fitted_with_them(fitted, data):
    _, users = _side_tables(data)
    with pytest.raises(ValueError, match="fitted without them"):
        fitted.recommend(data.X[400:], k=5, user_features=users.iloc[400:])


# ------------------------------------------------------------------ parameters
@pytest.mark.parametrize("value", [(3, 1), (1,), (-1, 2), (1.5, 3), "1-20"])
def test_bad_n_shots_range(data, value):
    with pytest.raises((ValueError, TypeError), match="n_shots_range"):
        _reranker(n_shots_range=value).fit(data.X[:50])


def test_too_few_users_or_episodes(data):
    with pytest.raises(ValueError, match="cv=3 cross-fitting folds need at least 3 warm users"):
        _reranker().fit(data.X[:2])
    one_each = sp.csr_matrix(np.eye(10, dtype=np.float32))
    with pytest.raises(ValueError, match="No training episode"):
        _reranker().fit(one_each)


# ------------------------------------------------------------------ sklearn integration
def test_last_step_of_a_pipeline_and_nested_grid_search(data):
    from skfewrec.preprocessing import LogConfidence

    X = data.X[:200]
    pipe = Pipeline([("weight", LogConfidence()), ("rec", _reranker(n_estimators=10, cv=2))])
    pipe.fit(X)
    assert 0 < pipe.score(data.X[400:]) <= 1
    assert pipe.decision_function(data.X[400:410]).shape == (10, 150)

    search = GridSearchCV(
        _reranker(n_estimators=10, cv=2),
        {"candidates__prior": ["none", "gaussian"], "n_estimators": [5]},
        scoring=make_fewshot_scorer("ndcg", k=10, n_shots=3),
        cv=KFold(2, shuffle=True, random_state=0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        search.fit(X)
    assert set(search.best_params_) == {"candidates__prior", "n_estimators"}
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


# ------------------------------------------------------------------ real data
@pytest.mark.realdata
@pytest.mark.slow
def test_reranker_beats_its_adapter_on_ml100k(ml100k_path):
    from skfewrec.datasets import load_movielens
    from skfewrec.model_selection import fewshot_curve, train_test_split_users

    X = load_movielens(ml100k_path, min_rating=4, binarize=True).X
    X_warm, X_new = train_test_split_users(X, test_size=0.2, random_state=0)
    adapter = ClosedFormFoldIn(
        factors=ALSFactors(
            n_components=32, regularization=1.0, confidence_scale=2.0, random_state=0
        ),
        prior="gaussian",
        prior_strength=0.3,
        shrinkage=0.0,  # 0.1.0's adapter: the margin below is measured against it
    )
    rr = LightGBMReranker(adapter, n_episodes=2, random_state=0).fit(X_warm)
    curve = lambda est: fewshot_curve(  # noqa: E731
        est, X_new, n_shots=(1, 5), k=20, min_query=5, metrics=("ndcg",)
    )["ndcg"]
    ratio = curve(rr) / curve(rr.candidates_)
    assert (ratio > 1.05).all(), ratio.tolist()


def test_pickle_free_round_trip_with_side_tables(data, tmp_path):
    import skfewrec

    items, users = _side_tables(data)
    users = users.assign(gender=pd.Categorical(np.where(np.arange(len(users)) % 2, "F", "M")))
    rr = _reranker(item_features=items, n_estimators=10).fit(
        data.X[:300], user_features=users.iloc[:300], timestamps=data.timestamps[:300]
    )
    skfewrec.save(rr, tmp_path / "model.zip")
    loaded = skfewrec.load(tmp_path / "model.zip")
    new = {"user_features": users.iloc[400:]}
    ids, scores = rr.recommend(data.X[400:], k=10, **new)
    ids2, scores2 = loaded.recommend(data.X[400:], k=10, **new)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_allclose(scores, scores2, rtol=1e-6)
