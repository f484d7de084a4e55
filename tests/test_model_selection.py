import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from skfewrec._core.validation import check_interactions, check_k
from skfewrec.metrics import evaluate, ndcg_at_k, recall_at_k
from skfewrec.model_selection import (
    fewshot_curve,
    filter_users,
    make_fewshot_scorer,
    support_query_split,
    train_test_split_users,
)


class PopularityRecommender(BaseEstimator):
    """Test double: ranks items by training popularity (or its reverse)."""

    n_fits = 0

    def __init__(self, reverse=False):
        self.reverse = reverse

    def fit(self, X, y=None):
        X = check_interactions(X)
        type(self).n_fits += 1
        popularity = np.asarray((X > 0).sum(axis=0), dtype=float).ravel()
        self.popularity_ = -popularity if self.reverse else popularity
        self.n_features_in_ = X.shape[1]
        return self

    def recommend(self, X, k=10, *, filter_seen=True, items=None, exclude=None):
        X = check_interactions(X, n_items=self.n_features_in_)
        k = check_k(k, self.n_features_in_)
        self.last_call_ = {"n_users": X.shape[0], "k": k, "filter_seen": filter_seen}
        scores = np.tile(self.popularity_, (X.shape[0], 1))
        if filter_seen:
            scores[X.nonzero()] = -np.inf
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(scores, ids, axis=1)
        ids[np.isneginf(top)] = -1
        return ids, top


def _popularity_data(n_users=300, n_items=40, seed=0):
    """Implicit data whose item popularity decreases with the column index."""
    rng = np.random.RandomState(seed)
    p = np.linspace(0.6, 0.02, n_items)
    return sp.csr_matrix((rng.rand(n_users, n_items) < p).astype(np.float32))


def _random_matrix(n_users=500, n_items=60, seed=0, dtype=np.float64):
    rng = np.random.RandomState(seed)
    density = rng.uniform(0, 0.3, size=(n_users, 1))
    X = np.where(rng.rand(n_users, n_items) < density, rng.rand(n_users, n_items) * 5 + 0.1, 0)
    return sp.csr_matrix(X.astype(dtype))


# -------------------------------------------------------------- train_test_split_users


def test_train_test_split_users_keeps_rows_aligned_and_csr():
    X = _random_matrix(100, 20)
    T = X.copy()
    T.data = np.arange(T.nnz, dtype=float)
    users = np.arange(100)
    X_tr, X_te, T_tr, T_te, u_tr, u_te = train_test_split_users(X, T, users, random_state=0)
    assert X_tr.shape == (80, 20) and X_te.shape == (20, 20)
    assert X_tr.format == X_te.format == T_te.format == "csr"
    assert np.intersect1d(u_tr, u_te).size == 0
    assert (X_te != X[u_te]).nnz == 0 and (T_tr != T[u_tr]).nnz == 0
    again = train_test_split_users(X, T, users, random_state=0)
    np.testing.assert_array_equal(again[5], u_te)
    other = train_test_split_users(users, random_state=1)
    assert not np.array_equal(np.sort(other[1]), np.sort(u_te))


def test_train_test_split_users_sizes_and_formats():
    users = np.arange(50)
    assert len(train_test_split_users(users, test_size=10)[1]) == 10
    warm, new = train_test_split_users(users, train_size=0.6, random_state=0)
    assert (len(warm), len(new)) == (30, 20)
    warm, new = train_test_split_users(users, shuffle=False)
    np.testing.assert_array_equal(new, np.arange(40, 50))
    coo = sp.coo_matrix(np.eye(50))
    assert train_test_split_users(coo, random_state=0)[0].format == "csr"


def test_train_test_split_users_errors():
    with pytest.raises(ValueError, match="at least one array"):
        train_test_split_users()
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        train_test_split_users(np.eye(5), np.arange(4))


# ---------------------------------------------------------------- support_query_split


@pytest.mark.parametrize("n_shots", [0, 1, 3, 7, 1000])
def test_support_query_invariants(n_shots):
    X = _random_matrix()
    S, Q = support_query_split(X, n_shots, random_state=0)
    assert S.format == Q.format == "csr" and S.shape == Q.shape == X.shape
    assert S.dtype == Q.dtype == X.dtype
    # Exactly X, values preserved, no interaction in both parts.
    assert ((S + Q) != X).nnz == 0
    assert S.multiply(Q).nnz == 0
    nnz = np.diff(X.indptr)
    np.testing.assert_array_equal(np.diff(S.indptr), np.minimum(n_shots, nnz))
    np.testing.assert_array_equal(np.diff(Q.indptr), nnz - np.minimum(n_shots, nnz))
    assert S.has_canonical_format and Q.has_canonical_format


def test_support_query_zero_shots_and_dense_input():
    X = np.array([[0, 2, 0, 5], [1, 0, 0, 0]])
    S, Q = support_query_split(X, 0)
    assert S.nnz == 0
    np.testing.assert_array_equal(Q.toarray(), X)
    assert Q.dtype == X.dtype
    S, Q = support_query_split(X.tolist(), 5)
    np.testing.assert_array_equal(S.toarray(), X)
    assert Q.nnz == 0


def test_support_query_keeps_csr_array_and_canonicalises():
    X = sp.csr_array(_random_matrix(20, 10))
    S, Q = support_query_split(X, 2, random_state=0)
    assert isinstance(S, sp.csr_array) and isinstance(Q, sp.csr_array)
    # Duplicates are summed and explicit zeros dropped, as everywhere in skfewrec.
    X = sp.csr_matrix(
        (np.array([1.0, 2.0, 0.0]), np.array([1, 1, 0]), np.array([0, 3])), shape=(1, 3)
    )
    S, Q = support_query_split(X, 1, random_state=0)
    np.testing.assert_array_equal(S.toarray(), [[0, 3.0, 0]])
    assert Q.nnz == 0


def test_support_query_is_deterministic_per_seed_and_seeds_differ():
    X = _random_matrix()
    S1, Q1 = support_query_split(X, 3, random_state=42)
    S2, Q2 = support_query_split(X, 3, random_state=42)
    assert (S1 != S2).nnz == 0 and (Q1 != Q2).nnz == 0
    S3, _ = support_query_split(X, 3, random_state=43)
    assert (S1 != S3).nnz > 0
    rng = np.random.RandomState(0)
    Sa, _ = support_query_split(X, 3, random_state=rng)
    Sb, _ = support_query_split(X, 3, random_state=rng)
    assert (Sa != Sb).nnz > 0


def test_support_is_a_uniform_draw():
    # 4000 copies of a row with 4 items and 1 shot: each item is the shot ~1/4 of the time.
    X = sp.csr_matrix(np.tile([1.0, 2.0, 3.0, 4.0, 0.0], (4000, 1)))
    S, _ = support_query_split(X, 1, random_state=0)
    counts = np.asarray((S > 0).sum(axis=0)).ravel()
    assert counts[4] == 0
    np.testing.assert_allclose(counts[:4] / 4000, 0.25, atol=0.03)


def _timestamps(X, seed=0, n_distinct=None):
    rng = np.random.RandomState(seed)
    T = X.copy()
    T.data = (
        rng.permutation(T.nnz).astype(float)
        if n_distinct is None
        else rng.randint(0, n_distinct, T.nnz).astype(float)
    )
    return T


@pytest.mark.parametrize("n_shots", [1, 3, 10])
def test_support_is_the_earliest_by_time(n_shots):
    X = _random_matrix(seed=1)
    T = _timestamps(X)
    S, Q = support_query_split(X, n_shots, timestamps=T, random_state=0)
    assert ((S + Q) != X).nnz == 0
    for u in range(X.shape[0]):
        lo, hi = X.indptr[u], X.indptr[u + 1]
        times = T.data[lo:hi]
        earliest = X.indices[lo:hi][np.argsort(times)[:n_shots]]
        np.testing.assert_array_equal(S[[u]].indices, np.sort(earliest))
    # Times are distinct, so the seed does not matter.
    S_other, _ = support_query_split(X, n_shots, timestamps=T, random_state=1)
    assert (S_other != S).nnz == 0


def test_time_ties_are_broken_at_random():
    X = _random_matrix(seed=2)
    T = _timestamps(X, n_distinct=3)
    S, Q = support_query_split(X, 4, timestamps=T, random_state=0)
    # Every support time is <= every query time of the same user.
    S_time = T.multiply(S > 0).tocsr()
    Q_time = T.multiply(Q > 0).tocsr()
    for u in range(X.shape[0]):
        if S_time[[u]].nnz and Q_time[[u]].nnz:
            assert S_time[[u]].data.max() <= Q_time[[u]].data.min()
    S_again, _ = support_query_split(X, 4, timestamps=T, random_state=0)
    S_other, _ = support_query_split(X, 4, timestamps=T, random_state=1)
    assert (S_again != S).nnz == 0
    assert (S_other != S).nnz > 0


def test_timestamps_of_zero_and_dense_timestamps():
    X = np.array([[1.0, 1.0, 1.0, 0.0]])
    # A stored time of 0 is the earliest time, not a missing entry.
    T = sp.csr_matrix(
        (np.array([5.0, 0.0, 9.0]), np.array([0, 1, 2]), np.array([0, 3])), shape=(1, 4)
    )
    S, _ = support_query_split(X, 1, timestamps=T)
    np.testing.assert_array_equal(S.indices, [1])
    dense = np.array([[5, 0, 9, 1]])
    S, _ = support_query_split(X, 2, timestamps=dense)
    np.testing.assert_array_equal(S.indices, [0, 1])
    dates = np.array(
        [["2024-03-01", "2024-01-01", "2024-02-01", "2000-01-01"]], dtype="datetime64[D]"
    )
    S, _ = support_query_split(X, 2, timestamps=dates)
    np.testing.assert_array_equal(S.indices, [1, 2])


def test_timestamps_in_another_order_or_format():
    X = _random_matrix(50, 12, seed=3)
    T = _timestamps(X)
    S_ref, _ = support_query_split(X, 2, timestamps=T)
    for T_other in (T.tocsc(), T.tocoo(), sp.csr_array(T)):
        S, _ = support_query_split(X, 2, timestamps=T_other)
        assert (S_ref != S).nnz == 0


def test_timestamps_pattern_mismatch():
    X = sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]))
    missing = sp.csr_matrix(np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 0.0]]))
    with pytest.raises(
        ValueError, match=r"no time for 1 interaction\(s\) of X \(first at row 1, column 2\)"
    ):
        support_query_split(X, 1, timestamps=missing)
    extra = sp.csr_matrix(np.array([[3.0, 1.0, 4.0], [0.0, 2.0, 1.0]]))
    with pytest.raises(
        ValueError, match=r"1 entry\(ies\) where X has no interaction \(first at row 0, column 2\)"
    ):
        support_query_split(X, 1, timestamps=extra)
    with pytest.raises(ValueError, match=r"timestamps has shape \(2, 2\) but X has shape \(2, 3\)"):
        support_query_split(X, 1, timestamps=np.ones((2, 2)))
    duplicated = sp.csr_matrix(
        (np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([0, 1, 1, 1, 2]), np.array([0, 2, 5])),
        shape=(2, 3),
    )
    with pytest.raises(ValueError, match="stores some .* entry twice"):
        support_query_split(X, 1, timestamps=duplicated)


def test_timestamps_bad_values():
    X = np.array([[1.0, 1.0]])
    with pytest.raises(ValueError, match="NaN or infinite"):
        support_query_split(X, 1, timestamps=np.array([[np.nan, 1.0]]))
    with pytest.raises(TypeError, match="timestamps has dtype"):
        support_query_split(X, 1, timestamps=np.array([["a", "b"]]))


@pytest.mark.parametrize(
    ("n_shots", "error", "match"),
    [
        (-1, ValueError, "n_shots must be >= 0"),
        (2.0, TypeError, "n_shots must be an integer"),
        (True, TypeError, "n_shots must be an integer"),
        (None, TypeError, "n_shots"),
    ],
)
def test_support_query_bad_n_shots(n_shots, error, match):
    with pytest.raises(error, match=match):
        support_query_split(np.eye(3), n_shots)


def test_support_query_bad_X():
    with pytest.raises(ValueError, match="X has 1 negative"):
        support_query_split(np.array([[-1.0, 1.0]]), 1)
    with pytest.raises(ValueError, match="X is None"):
        support_query_split(None, 1)


def test_support_query_split_of_many_users_keeps_the_earliest_shots():
    # (the speed of this split is measured in benchmarks/split_speed.py)
    rng = np.random.RandomState(0)
    n_users, n_items, nnz = 5_000, 2_000, 50_000
    X = sp.csr_matrix(
        (np.ones(nnz, np.float32), (rng.randint(0, n_users, nnz), rng.randint(0, n_items, nnz))),
        shape=(n_users, n_items),
    )
    T = X.copy()
    T.data = rng.randint(0, 1000, T.nnz).astype(np.float64)
    S, Q = support_query_split(X, 5, timestamps=T, random_state=0)
    assert S.nnz == np.minimum(np.diff(X.indptr), 5).sum()
    assert (S + Q - X).nnz == 0
    # every shot is no later than every query interaction of its user
    rows = np.repeat(np.arange(n_users), np.diff(X.indptr))
    in_support = np.asarray(S[rows, X.indices]).ravel() != 0
    latest_shot = np.full(n_users, -np.inf)
    np.maximum.at(latest_shot, rows[in_support], T.data[in_support])
    earliest_query = np.full(n_users, np.inf)
    np.minimum.at(earliest_query, rows[~in_support], T.data[~in_support])
    assert np.isfinite(latest_shot + earliest_query).sum() > 1000  # users with both parts
    assert np.all(latest_shot <= earliest_query)


# ------------------------------------------------------------------------ filter_users


def test_filter_users():
    X = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]]))
    np.testing.assert_array_equal(filter_users(X, 2), [True, False, True, False])
    np.testing.assert_array_equal(filter_users(X, 2, return_indices=True), [0, 2])
    assert filter_users(X, 0).all()
    assert not filter_users(X, 4).any()
    # Explicit zeros are not interactions.
    X_zeros = sp.csr_matrix(
        (np.array([1.0, 0.0]), np.array([0, 1]), np.array([0, 2])), shape=(1, 3)
    )
    assert not filter_users(X_zeros, 2)[0]
    with pytest.raises(ValueError, match="min_interactions must be >= 0"):
        filter_users(X, -1)
    with pytest.raises(TypeError, match="min_interactions must be an integer"):
        filter_users(X, 1.5)


# ----------------------------------------------------------------- make_fewshot_scorer


def test_scorer_repr_and_parameter_errors():
    scorer = make_fewshot_scorer("recall", k=10, n_shots=3)
    assert (
        repr(scorer)
        == "make_fewshot_scorer(metric='recall', k=10, n_shots=3, min_query=1, random_state=0)"
    )
    with pytest.raises(
        ValueError,
        match=r"Unknown metric 'auc'; choose among "
        r"\['ndcg', 'recall', 'precision', 'map', 'mrr', 'hit_rate'\]",
    ):
        make_fewshot_scorer("auc")
    with pytest.raises(ValueError, match="Unknown metric"):
        make_fewshot_scorer(ndcg_at_k)
    with pytest.raises(ValueError, match="k must be >= 1"):
        make_fewshot_scorer(k=0)
    with pytest.raises(ValueError, match="n_shots must be >= 0"):
        make_fewshot_scorer(n_shots=-1)
    with pytest.raises(ValueError, match="min_query must be >= 1"):
        make_fewshot_scorer(min_query=0)
    with pytest.raises(TypeError, match="k must be an integer"):
        make_fewshot_scorer(k=2.5)


def test_scorer_without_y_splits_qualifying_users():
    X = _popularity_data()
    model = PopularityRecommender().fit(X)
    scorer = make_fewshot_scorer("ndcg", k=5, n_shots=3, min_query=4, random_state=7)
    score = scorer(model, X)
    keep = filter_users(X, 7)
    assert 0 < keep.sum() < X.shape[0]
    assert model.last_call_ == {"n_users": keep.sum(), "k": 5, "filter_seen": True}
    S, Q = support_query_split(X[keep], 3, random_state=7)
    ids, _ = model.recommend(S, k=5)
    assert score == pytest.approx(ndcg_at_k(Q, ids))
    assert scorer(model, X) == score  # same seed, same split


def test_scorer_with_y_uses_x_as_support():
    X = _popularity_data()
    model = PopularityRecommender().fit(X)
    S, Q = support_query_split(X, 2, random_state=0)
    scorer = make_fewshot_scorer("recall", k=8)
    ids, _ = model.recommend(S, k=8)
    assert scorer(model, S, Q) == pytest.approx(recall_at_k(Q, ids))
    assert model.last_call_["n_users"] == X.shape[0]
    with pytest.raises(
        ValueError,
        match=r"X \(the support\) has shape \(300, 40\) but y \(the query\) has shape \(300, 39\)",
    ):
        scorer(model, S, Q[:, :39])


def test_scorer_errors():
    X = _popularity_data(n_users=20, n_items=10)
    model = PopularityRecommender().fit(X)
    with pytest.raises(
        ValueError, match=r"No user in X has the n_shots \+ min_query = 20 \+ 1 = 21 interactions"
    ):
        make_fewshot_scorer(k=3, n_shots=20)(model, X)
    with pytest.raises(TypeError, match="has no recommend method"):
        make_fewshot_scorer(k=3)(object(), X)


def test_scorer_in_grid_search_and_cross_val_score():
    X = _popularity_data(n_users=240)
    scorer = make_fewshot_scorer("ndcg", k=10, n_shots=3)
    search = GridSearchCV(
        PopularityRecommender(),
        {"reverse": [False, True]},
        cv=KFold(3),
        scoring=scorer,
        error_score="raise",
    )
    search.fit(X)
    assert search.best_params_ == {"reverse": False}
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores)) and scores[0] > scores[1] + 0.1
    cv_scores = cross_val_score(
        PopularityRecommender(),
        X,
        cv=KFold(3, shuffle=True, random_state=0),
        scoring=scorer,
        error_score="raise",
    )
    assert cv_scores.shape == (3,) and np.all((cv_scores > 0) & (cv_scores <= 1))


# ----------------------------------------------------------------------- fewshot_curve


def test_fewshot_curve_values_and_shape():
    X = _popularity_data()
    model = PopularityRecommender().fit(X)
    n_fits = PopularityRecommender.n_fits
    curve = fewshot_curve(
        model,
        X,
        n_shots=(1, 5, 10),
        k=10,
        min_query=3,
        metrics=("ndcg", "recall", "coverage"),
        random_state=3,
    )
    assert PopularityRecommender.n_fits == n_fits  # the curve does not fit
    assert isinstance(curve, pd.DataFrame)
    assert curve.index.name == "n_shots" and curve.index.tolist() == [1, 5, 10]
    assert curve.columns.tolist() == ["ndcg", "recall", "coverage", "n_users"]
    nnz = np.diff(X.indptr)
    assert curve["n_users"].tolist() == [int((nnz >= n + 3).sum()) for n in (1, 5, 10)]
    keep = nnz >= 5 + 3
    S, Q = support_query_split(X[keep], 5, random_state=3)
    ids, _ = model.recommend(S, k=10)
    expected = evaluate(Q, ids, k=10, metrics=("ndcg", "recall", "coverage"))
    for name, value in expected.items():
        assert curve.loc[5, name] == pytest.approx(value)


def test_fewshot_curve_defaults_and_single_values():
    X = _popularity_data(n_items=60)
    model = PopularityRecommender().fit(X)
    curve = fewshot_curve(model, X)
    assert curve.index.tolist() == [1, 3, 5, 10, 20]
    assert curve.columns.tolist() == ["ndcg", "recall", "n_users"]
    assert curve.notna().all().all()
    single = fewshot_curve(model, X, n_shots=3, metrics="map")
    assert single.shape == (1, 2)


def test_fewshot_curve_without_users_for_some_or_all_n():
    X = _popularity_data(n_users=30, n_items=10)
    model = PopularityRecommender().fit(X)
    with pytest.warns(UserWarning, match=r"n_shots in \[20\]"):
        curve = fewshot_curve(model, X, n_shots=(1, 20), k=3, min_query=1)
    assert curve.loc[20, "n_users"] == 0 and np.isnan(curve.loc[20, "ndcg"])
    assert curve.loc[1, "n_users"] > 0
    with pytest.raises(ValueError, match="No user in X"):
        fewshot_curve(model, X, n_shots=(20, 30), k=3)


def test_fewshot_curve_errors():
    X = _popularity_data(n_users=30, n_items=10)
    model = PopularityRecommender().fit(X)
    with pytest.raises(ValueError, match="Unknown metric 'auc'"):
        fewshot_curve(model, X, metrics=("auc",))
    with pytest.raises(ValueError, match="n_shots is empty"):
        fewshot_curve(model, X, n_shots=())
    with pytest.raises(ValueError, match="twice"):
        fewshot_curve(model, X, n_shots=(1, 1))
    with pytest.raises(ValueError, match="each n_shots must be >= 0"):
        fewshot_curve(model, X, n_shots=(1, -1))
    with pytest.raises(ValueError, match="min_query must be >= 1"):
        fewshot_curve(model, X, min_query=0)
    with pytest.raises(TypeError, match="has no recommend method"):
        fewshot_curve(object(), X)


def test_scorer_pickles_for_parallel_search():
    scorer = make_fewshot_scorer("map", k=7, n_shots=2, random_state=3)
    restored = pickle.loads(pickle.dumps(scorer))
    assert repr(restored) == repr(scorer)
    X = _popularity_data(n_users=60)
    model = PopularityRecommender().fit(X)
    assert restored(model, X) == scorer(model, X)


def test_scorer_scores_a_pipeline_ending_in_a_recommender(small_interactions):
    """GridSearchCV over a Pipeline (weighting -> recommender) with the few-shot scorer."""
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.pipeline import Pipeline

    from skfewrec import ALSFactors, ClosedFormFoldIn
    from skfewrec.preprocessing import LogConfidence

    pipe = Pipeline(
        [
            ("weight", LogConfidence()),
            ("rec", ClosedFormFoldIn(ALSFactors(n_components=4, max_iter=3, random_state=0))),
        ]
    )
    scorer = make_fewshot_scorer("ndcg", k=10, n_shots=3)
    search = GridSearchCV(
        pipe, {"rec__prior": ["none", "gaussian"]}, scoring=scorer, cv=KFold(3)
    ).fit(small_interactions)
    assert np.isfinite(search.best_score_) and 0 < search.best_score_ <= 1
    fitted = search.best_estimator_
    S, Q = support_query_split(small_interactions[:40], 3, random_state=0)
    ids, _ = fitted[-1].recommend(fitted[:-1].transform(S), k=10)
    assert scorer(fitted, S, Q) == pytest.approx(ndcg_at_k(Q, ids, k=10))
    curve = fewshot_curve(fitted, small_interactions, n_shots=(1, 3), k=10, min_query=1)
    assert curve["ndcg"].notna().all()


def test_scorer_refuses_a_pipeline_without_a_recommender(small_interactions):
    from sklearn.pipeline import Pipeline

    from skfewrec.preprocessing import LogConfidence

    pipe = Pipeline([("weight", LogConfidence()), ("weight2", LogConfidence())]).fit(
        small_interactions
    )
    with pytest.raises(TypeError, match="Pipeline whose last step"):
        make_fewshot_scorer("ndcg", k=5, n_shots=1)(pipe, small_interactions)
