"""The k-shot item protocol and the new-item recommender."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.model_selection import GridSearchCV

from skfewrec import ALSFactors, ClosedFormFoldIn
from skfewrec._item_protocol import ItemKShotSplit, _top_users
from skfewrec.adapters._item_prior import NewItemRecommender, feature_map
from skfewrec.base import RecommenderMixin
from skfewrec.model_selection import (
    evaluate_item_kshot,
    item_kshot_curve,
    item_kshot_split,
    make_item_kshot_scorer,
)


def base_model():
    return ClosedFormFoldIn(ALSFactors(n_components=8, max_iter=5, random_state=0))


@pytest.fixture(scope="module")
def X(small_interactions):
    return small_interactions


@pytest.mark.parametrize("n_shots", [0, 1, 3])
def test_split_reveals_n_users_per_new_item_and_keeps_the_rest(X, n_shots):
    split = item_kshot_split(X, n_shots, test_size=0.25, min_query=2, random_state=0)
    assert np.all(split.support.getnnz(axis=0) == n_shots)
    assert np.all(split.query.getnnz(axis=0) >= 2)
    assert np.array_equal((split.support + split.query).toarray(), X[:, split.new_items].toarray())
    assert np.array_equal(split.X_warm.toarray(), X[:, split.warm_items].toarray())
    assert not np.isin(split.new_items, split.warm_items).any()
    assert split.known.shape == (X.shape[0], split.warm_items.size + split.new_items.size)


def test_split_holds_out_the_same_items_for_every_n(X):
    a = item_kshot_split(X, 1, test_size=0.25, random_state=3)
    b = item_kshot_split(X, 5, test_size=0.25, random_state=3)
    assert np.array_equal(a.warm_items, b.warm_items)
    assert set(b.new_items) <= set(a.new_items)


def test_split_reveals_the_earliest_users_when_timed():
    X = np.ones((4, 10))
    T = np.tile(np.array([[40], [10], [30], [20]]), (1, 10))
    split = item_kshot_split(X, 2, test_size=0.3, timestamps=T, random_state=0)
    rows = np.unique(split.support.nonzero()[0])
    assert rows.tolist() == [1, 3]


def test_split_errors_name_the_fix(X):
    with pytest.raises(ValueError, match="lower n_shots or min_query"):
        item_kshot_split(X, 10_000, random_state=0)
    with pytest.raises(ValueError, match="test_size"):
        item_kshot_split(X, 1, test_size=1.5)


class Oracle(RecommenderMixin):
    """Scores the new items by the query itself; a user is known by their one warm item."""

    def __init__(self, split):
        self.query = split.query.toarray()
        self.n_warm = split.X_warm.shape[1]
        self.n_features_in_ = self.n_warm + self.query.shape[1]

    def __sklearn_is_fitted__(self):
        return True

    def _validate_users(self, X):
        return sp.csr_matrix(X)

    def _scorer(self, X, columns):
        user = np.asarray(X[:, : self.n_warm].argmax(axis=1)).ravel()
        full = np.c_[np.full((X.shape[0], self.n_warm), -1.0), self.query[user]]
        full = full if columns is None else full[:, columns]
        return lambda start, stop: full[start:stop]


def test_evaluation_of_a_perfect_ranking_is_one():
    rng = np.random.default_rng(0)
    n_users, n_new = 60, 15
    support = sp.csr_matrix((rng.random((n_users, n_new)) < 0.1) * 1.0)
    query = sp.csr_matrix((rng.random((n_users, n_new)) < 0.2) * (support.toarray() == 0) * 1.0)
    split = ItemKShotSplit(
        np.arange(n_users),
        np.arange(n_users, n_users + n_new),
        sp.eye(n_users, format="csr"),
        support,
        query,
    )
    got = evaluate_item_kshot(Oracle(split), split, k=10, batch=7)
    for key in ("new_recall", "new_ndcg", "full_recall", "users_recall", "users_ndcg"):
        assert got[key] == pytest.approx(1.0), key


def test_top_users_batching_does_not_change_the_answer():
    rng = np.random.default_rng(0)
    scores = rng.random((50, 7))
    support = sp.csr_matrix((rng.random((50, 7)) < 0.1).astype(float))

    def block(start, stop):
        return scores[start:stop]

    a = _top_users(block, 50, 7, support, 5, batch=50)
    b = _top_users(block, 50, 7, support, 5, batch=3)
    assert np.array_equal(a, b)
    masked = np.where(support.toarray() > 0, -np.inf, scores)
    assert np.array_equal(a, np.argsort(-masked, axis=0)[:5].T)


def test_curve_and_scorer_run_a_recommender_with_add_items(X):
    curve = item_kshot_curve(base_model(), X, n_shots=(1, 3), k=10, test_size=0.25)
    assert curve.index.tolist() == [1, 3]
    assert {"new_recall", "full_recall", "users_recall", "n_new_items"} <= set(curve.columns)
    assert (curve["new_recall"] > 0).all()
    rows = np.arange(X.shape[0])
    search = GridSearchCV(
        NewItemRecommender(base_model(), random_state=0),
        {"neighbour_weight": [0.0, 1.0]},
        cv=[(rows, rows)],
        scoring=make_item_kshot_scorer("recall", n_shots=3, test_size=0.25, k=10),
    ).fit(X)
    assert np.all(search.cv_results_["mean_test_score"] > 0)


def test_scorer_rejects_unknown_direction():
    with pytest.raises(ValueError, match="direction"):
        make_item_kshot_scorer(direction="sideways")


# --- NewItemRecommender ---------------------------------------------------------------


@pytest.fixture(scope="module")
def clustered():
    """Users and items in 4 clusters; a user touches items of their cluster."""
    rng = np.random.default_rng(1)
    n_users, n_items = 400, 100
    uc = rng.integers(4, size=n_users)
    ic = np.arange(n_items) % 4
    X = (rng.random((n_users, n_items)) < np.where(uc[:, None] == ic[None, :], 0.3, 0.01)) * 1.0
    return sp.csr_matrix(X), uc, ic


def test_one_shot_new_item_goes_to_its_users_cluster(clustered):
    X, uc, ic = clustered
    rec = NewItemRecommender(base_model(), random_state=0).fit(X[:, :80])
    # new items 80..99, each revealed by one user of the item's cluster
    S = np.zeros((X.shape[0], 20))
    for j in range(20):
        S[np.flatnonzero(uc == ic[80 + j])[0], j] = 1
    rec.add_items(S)
    scores = rec.decision_function(sp.hstack([X[:, :80], sp.csr_matrix(S)]))
    new = scores[:, 80:]
    same = uc[:, None] == ic[None, 80:]
    assert new[same].mean() > new[~same].mean()
    top = np.argmax(new, axis=1)
    assert np.mean(ic[80 + top] == uc) > 0.8


def test_features_place_a_zero_shot_item(clustered):
    X, uc, ic = clustered
    F = np.eye(4)[ic]  # one-hot cluster as the side feature
    rec = NewItemRecommender(base_model(), random_state=0).fit(X[:, :80], item_features=F[:80])
    rec.add_items(sp.csr_matrix((X.shape[0], 20)), item_features=F[80:])
    new = rec.decision_function(sp.hstack([X[:, :80], sp.csr_matrix((X.shape[0], 20))]))[:, 80:]
    assert np.mean(ic[80 + np.argmax(new, axis=1)] == uc) > 0.8


def test_neighbour_weight_zero_keeps_no_profiles(clustered):
    X, _, _ = clustered
    rec = NewItemRecommender(base_model(), neighbour_weight=0.0, random_state=0).fit(X[:, :80])
    rec.add_items(X[:, 80:])
    assert rec.item_profiles_.nnz == 0
    assert rec.item_factors_.shape == (100, 8)
    assert rec.support_counts_[80:].tolist() == X[:, 80:].getnnz(axis=0).tolist()


def test_add_items_errors_name_the_fix(clustered):
    X, _, _ = clustered
    rec = NewItemRecommender(base_model(), random_state=0).fit(X[:, :80])
    with pytest.raises(ValueError, match="one row per warm user"):
        rec.add_items(X[:10, 80:])
    with pytest.raises(ValueError, match="fit\\(X, item_features"):
        rec.add_items(X[:, 80:], item_features=np.ones((20, 2)))


def test_feature_map_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    F = rng.random((200, 3))
    W = rng.normal(size=(3, 5))
    coef = feature_map(F, F @ W + 2.0, regularization=1e-8)
    assert np.allclose(coef[:3], W, atol=1e-6)
    assert np.allclose(coef[3], 2.0, atol=1e-6)


def test_new_items_are_servable_after_a_pickle_round_trip(clustered):
    import pickle

    X, _, _ = clustered
    rec = NewItemRecommender(base_model(), random_state=0).fit(X[:, :80])
    loaded = pickle.loads(pickle.dumps(rec))
    rec.add_items(X[:, 80:])
    loaded.add_items(X[:, 80:])
    assert np.array_equal(rec.recommend(X[:50], k=10)[0], loaded.recommend(X[:50], k=10)[0])


def test_wrapped_popularity_penalty_adds_new_items(clustered):
    from skfewrec.tail import PopularityPenalty

    X, _, _ = clustered
    knob = PopularityPenalty(NewItemRecommender(base_model(), random_state=0), random_state=0)
    knob.fit(X[:, :80]).add_items(X[:, 80:])
    ids, _ = knob.recommend(X[:20], k=5, items=np.arange(80, 100))
    assert ids.min() >= 80 and knob.n_features_in_ == 100


def test_integer_settings_are_checked_like_the_user_protocol():
    X = sp.random(40, 30, density=0.3, format="csr", random_state=0)
    with pytest.raises(TypeError, match="n_shots must be an integer >= 0, got 1.5"):
        item_kshot_split(X, 1.5)
    with pytest.raises(ValueError, match="min_query must be >= 1, got 0"):
        item_kshot_split(X, 1, min_query=0)
