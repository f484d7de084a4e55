"""RecommenderPipeline: pipelines of skfewrec steps that recommend, score, tune, save and load."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold
from sklearn.pipeline import Pipeline
from sklearn.pipeline import make_pipeline as sklearn_make_pipeline

import skfewrec
from skfewrec import ALSFactors, ClosedFormFoldIn, LightGBMReranker, MostPopular
from skfewrec.model_selection import make_fewshot_scorer
from skfewrec.pipeline import RecommenderPipeline, make_pipeline
from skfewrec.preprocessing import BM25Weighting, InteractionEncoder, LogConfidence


@pytest.fixture(scope="module")
def factors(small_interactions):
    return FrozenEstimator(
        ALSFactors(n_components=8, regularization=1.0, confidence_scale=2.0, random_state=0).fit(
            small_interactions[:250]
        )
    )


def _log(X, seed=0):
    """The long log of a count matrix: one row per event, shuffled, with string ids."""
    X = sp.coo_matrix(X)
    counts = X.data.astype(int)
    users = np.repeat(X.row, counts)
    items = np.repeat(X.col, counts)
    order = np.random.default_rng(seed).permutation(users.size)
    return pd.DataFrame({"user": users[order] + 10_000, "item": [f"i{j}" for j in items[order]]})


def test_make_pipeline_builds_a_recommender_pipeline():
    pipe = make_pipeline(LogConfidence(), MostPopular())
    assert isinstance(pipe, RecommenderPipeline) and isinstance(pipe, Pipeline)
    assert [name for name, _ in pipe.steps] == ["logconfidence", "mostpopular"]
    assert skfewrec.make_pipeline is make_pipeline
    assert skfewrec.RecommenderPipeline is RecommenderPipeline
    assert isinstance(clone(pipe), RecommenderPipeline)
    assert (
        clone(pipe).get_params()["logconfidence__scale"]
        == pipe.get_params()["logconfidence__scale"]
    )
    # no recommend without a recommender last
    assert not hasattr(make_pipeline(LogConfidence(), BM25Weighting()), "recommend")


def test_recommend_goes_through_the_steps(small_interactions, factors):
    X = small_interactions
    pipe = make_pipeline(
        LogConfidence(), ClosedFormFoldIn(prior_strength=1.0, shrinkage=0.0, factors=factors)
    ).fit(X[:250])
    ids, scores = pipe.recommend(X[250:], k=10)
    expected = pipe[-1].recommend(pipe[0].transform(X[250:]), k=10)
    np.testing.assert_array_equal(ids, expected[0])
    np.testing.assert_allclose(scores, expected[1])
    np.testing.assert_allclose(
        pipe.decision_function(X[250:]), pipe[-1].decision_function(pipe[0].transform(X[250:]))
    )
    # the allow- and deny-lists reach the last step
    ids, _ = pipe.recommend(X[250:], k=5, items=np.arange(0, 60), exclude=[0, 1])
    assert np.isin(ids, np.arange(2, 60)).all()
    with pytest.raises(ValueError, match="larger than"):
        pipe.recommend(X[250:], k=X.shape[1] + 1)


def test_filter_seen_uses_the_raw_input(small_interactions, factors):
    X = small_interactions

    from sklearn.base import BaseEstimator, TransformerMixin

    class DropOnes(TransformerMixin, BaseEstimator):
        """Keep only the cells above 1 (a transform that removes items from X)."""

        def fit(self, X, y=None):
            self.n_features_in_ = X.shape[1]
            return self

        def transform(self, X):
            X = sp.csr_matrix(X, dtype=np.float32, copy=True)
            X.data[X.data <= 1] = 0
            X.eliminate_zeros()
            return X

    for last in (
        ClosedFormFoldIn(prior_strength=1.0, shrinkage=0.0, factors=factors),
        _reranker(factors),
    ):
        pipe = Pipeline([("drop", DropOnes()), ("rec", last)]).fit(X[:250])
        pipe = RecommenderPipeline(pipe.steps)
        S = X[250:]
        before = S.copy()
        assert (DropOnes().transform(S) != S).nnz > 0  # items vanish from the model input
        ids, scores = pipe.recommend(S, k=15)
        assert (before != S).nnz == 0  # the input is left as it was
        seen = S.toarray() > 0
        assert not seen[np.arange(S.shape[0])[:, None], ids].any()
        assert (ids >= 0).all() and np.all(np.diff(scores, axis=1) <= 0)
        # the same ranking as the last step's, minus the raw seen items
        full, _ = pipe[-1].recommend(pipe[0].transform(S), k=60)
        for row in range(S.shape[0]):
            expected = [j for j in full[row] if not seen[row, j]][:15]
            np.testing.assert_array_equal(ids[row], expected)


def _reranker(factors):
    return LightGBMReranker(
        candidates=ClosedFormFoldIn(prior_strength=1.0, shrinkage=0.0, factors=factors),
        n_estimators=5,
        cv=2,
        random_state=0,
    )


def test_score_is_the_few_shot_score(small_interactions, factors):
    X = small_interactions
    pipe = make_pipeline(
        LogConfidence(), ClosedFormFoldIn(prior_strength=1.0, shrinkage=0.0, factors=factors)
    ).fit(X[:250])
    scorer = make_fewshot_scorer("ndcg", k=20, n_shots=5)
    assert pipe.score(X[250:]) == pytest.approx(scorer(pipe, X[250:]))
    assert 0 < pipe.score(X[250:]) <= 1
    # a plain sklearn Pipeline is scored the same way by the scorer
    plain = Pipeline(pipe.steps)
    assert scorer(plain, X[250:]) == pytest.approx(scorer(pipe, X[250:]))


def test_grid_search_over_any_step(small_interactions, factors):
    X = small_interactions[:250]
    pipe = RecommenderPipeline(
        [
            ("weight", LogConfidence()),
            ("rec", ClosedFormFoldIn(prior_strength=1.0, shrinkage=0.0, factors=factors)),
        ]
    )
    search = GridSearchCV(
        pipe,
        {
            "weight": [LogConfidence(), BM25Weighting()],
            "rec__prior_strength": [0.1, 10.0],
        },
        scoring=make_fewshot_scorer("ndcg", k=10, n_shots=3),
        cv=KFold(2, shuffle=True, random_state=0),
    ).fit(X)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert isinstance(search.best_estimator_, RecommenderPipeline)
    ids, _ = search.best_estimator_.recommend(small_interactions[250:], k=5)
    assert ids.shape == (50, 5)
    # score=None: the pipeline's own few-shot score
    search = GridSearchCV(pipe, {"weight__scale": [1.0, 2.0]}, cv=KFold(2)).fit(X)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_encoder_first_pipeline_takes_a_log_and_answers_raw_ids(small_interactions, factors):
    X = small_interactions
    log = _log(X[:250])
    pipe = make_pipeline(
        InteractionEncoder(handle_unknown="ignore"),
        LogConfidence(),
        ClosedFormFoldIn(
            prior_strength=1.0,
            shrinkage=0.0,
            factors=ALSFactors(
                n_components=8, regularization=1.0, confidence_scale=2.0, random_state=0
            ),
        ),
    ).fit(log)
    new = _log(X[250:260], seed=1)
    out = pipe.recommend(new, k=5)
    assert list(out.columns) == ["user", "item", "score", "rank"]
    # users in the order they first appear in the log, ranks 1..k
    assert out["user"].unique().tolist() == pd.unique(new["user"]).tolist()
    assert (
        out.groupby("user", sort=False)["rank"]
        .apply(list)
        .map(lambda r: r == [1, 2, 3, 4, 5])
        .all()
    )
    # the same as encoding by hand and asking the rest of the pipeline
    enc = pipe[0]
    Xn, users = enc.encode(new)
    ids, scores = pipe[1:].recommend(Xn, k=5)
    order = pd.Index(users).get_indexer(pd.unique(new["user"]))
    np.testing.assert_array_equal(
        out["item"].to_numpy().reshape(-1, 5), enc.inverse_items(ids[order])
    )
    np.testing.assert_allclose(out["score"].to_numpy().reshape(-1, 5), scores[order], rtol=1e-6)
    with pytest.raises(TypeError, match="starts with an InteractionEncoder"):
        pipe.recommend(Xn, k=5)
    # decision_function and score take the log too
    assert pipe.decision_function(new).shape == (10, enc.n_items_)
    assert 0 < pipe.score(_log(X[250:], seed=2), n_shots=3) <= 1


def test_tune_an_encoder_first_pipeline_on_a_log(small_interactions):
    log = _log(small_interactions[:250])
    pipe = make_pipeline(
        InteractionEncoder(handle_unknown="ignore"),
        MostPopular(),
    )
    search = GridSearchCV(
        pipe,
        {
            "interactionencoder__binarize": [False, True],
            "mostpopular__weighting": ["users", "values"],
        },
        scoring=make_fewshot_scorer("ndcg", k=10, n_shots=3),
        cv=GroupKFold(2),
    ).fit(log, groups=log["user"])
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert set(search.best_params_) == {"interactionencoder__binarize", "mostpopular__weighting"}


def test_pipelines_save_and_load(small_interactions, factors, tmp_path):
    X = small_interactions
    pipe = make_pipeline(
        BM25Weighting(), ClosedFormFoldIn(prior_strength=1.0, shrinkage=0.0, factors=factors)
    ).fit(X[:250])
    loaded = skfewrec.load(skfewrec.save(pipe, tmp_path / "pipe.zip"))
    assert isinstance(loaded, RecommenderPipeline)
    np.testing.assert_array_equal(
        loaded.recommend(X[250:], k=10)[0], pipe.recommend(X[250:], k=10)[0]
    )
    # a plain sklearn Pipeline comes back as a RecommenderPipeline
    plain = sklearn_make_pipeline(LogConfidence(), MostPopular()).fit(X[:250])
    loaded = skfewrec.load(skfewrec.save(plain, tmp_path / "plain"))
    assert type(loaded) is RecommenderPipeline
    np.testing.assert_array_equal(
        loaded.recommend(X[250:], k=5)[0], plain[-1].recommend(plain[0].transform(X[250:]), k=5)[0]
    )


def test_encoder_first_pipeline_round_trips_with_its_encoder(small_interactions, tmp_path):
    X = small_interactions
    log = _log(X[:250])
    pipe = make_pipeline(
        InteractionEncoder(binarize=True, handle_unknown="ignore"),
        ClosedFormFoldIn(
            prior_strength=1.0,
            shrinkage=0.0,
            factors=ALSFactors(
                n_components=8, regularization=1.0, confidence_scale=2.0, random_state=0
            ),
        ),
    ).fit(log)
    path = skfewrec.save(pipe, tmp_path / "pipe.zip")
    loaded, encoder = skfewrec.load(path, return_encoder=True)
    assert encoder is loaded[0] and encoder.binarize is True
    new = _log(X[250:], seed=3)
    pd.testing.assert_frame_equal(loaded.recommend(new, k=7), pipe.recommend(new, k=7))


def test_legacy_pipeline_bundle_loads_as_a_recommender_pipeline():
    from pathlib import Path

    legacy = Path(__file__).resolve().parent / "data" / "legacy_v0_1"
    golden = np.load(legacy / "golden.npz")
    model = skfewrec.load(legacy / "pipeline_bm25.zip")
    assert isinstance(model, RecommenderPipeline)
    X_new = sp.csr_matrix(
        (golden["X_new_data"], golden["X_new_indices"], golden["X_new_indptr"]), shape=(30, 60)
    )
    ids, scores = model.recommend(X_new, k=5)
    np.testing.assert_array_equal(ids, golden["pipeline_bm25_ids"])
    np.testing.assert_allclose(scores, golden["pipeline_bm25_scores"], rtol=1e-5, atol=1e-6)
