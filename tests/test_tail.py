"""Tail metrics on hand-computed cases, and the popularity-bias knob."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone

from skfewrec import ALSFactors, ClosedFormFoldIn
from skfewrec.metrics import (
    catalogue_coverage,
    gini_exposure,
    item_popularity,
    ndcg_at_k,
    ndcg_by_popularity,
    novelty,
    popularity_buckets,
    tail_items,
    tail_share,
)
from skfewrec.tail import PopularityPenalty


def test_item_popularity_counts_users_not_values():
    X = sp.csr_matrix(np.array([[5, 0, 1], [2, 0, 0], [1, 0, 0]]))
    assert item_popularity(X).tolist() == [3, 0, 1]


@pytest.mark.parametrize(
    "head_share, expected",
    [
        (0.5, [False, True, True, True, True]),  # 50 alone holds half
        (0.8, [False, False, True, True, True]),  # 50 + 30 = 80
        (0.81, [False, False, False, True, True]),
        (1.0, [False, False, False, False, False]),
    ],
)
def test_tail_items_is_outside_the_smallest_head_holding_the_share(head_share, expected):
    assert tail_items([50, 30, 10, 5, 5], head_share=head_share).tolist() == expected


def test_tail_items_head_is_by_popularity_not_position():
    assert tail_items([5, 50, 10, 30, 5], head_share=0.8).tolist() == [
        True,
        False,
        True,
        False,
        True,
    ]


def test_gini_exposure_hand_computed():
    # exposures 0, 1, 3 over 3 items: sum (2i - n - 1) x_(i) / (n sum x) = (0*... ) by hand
    ids = np.array([[2, 1], [2, -1], [2, -1]])
    expected = ((2 * 1 - 4) * 0 + (2 * 2 - 4) * 1 + (2 * 3 - 4) * 3) / (3 * 4)
    assert gini_exposure(ids, n_items=3) == pytest.approx(expected) == pytest.approx(0.5)
    assert gini_exposure(np.array([[0, 1, 2]]), n_items=3) == 0.0
    # one item in every slot of a catalogue of n: (n - 1) / n
    assert gini_exposure(np.zeros((4, 1), dtype=int), n_items=5) == pytest.approx(0.8)


def test_gini_exposure_respects_k():
    ids = np.array([[0, 1], [0, 1]])
    assert gini_exposure(ids, n_items=2, k=1) == pytest.approx(0.5)
    assert gini_exposure(ids, n_items=2) == 0.0


def test_tail_share_hand_computed_and_ignores_padding():
    pop = [50, 30, 10, 10]  # tail at 0.8: items 2 and 3
    assert tail_share(np.array([[0, 2], [3, -1]]), pop) == pytest.approx(2 / 3)
    assert tail_share(np.array([[0, 2], [3, -1]]), pop, k=1) == pytest.approx(1 / 2)


def test_novelty_hand_computed():
    # p = (pop + 1) / (n_users + 1): item 0 -> 1 (0 bits), item 1 -> 1/4 (2 bits)
    assert novelty(np.array([[0, 1], [1, 1]]), [3, 0], n_users=3) == pytest.approx(6 / 4)


def test_novelty_rejects_popularity_above_the_users():
    with pytest.raises(ValueError, match="n_users=2"):
        novelty(np.array([[0]]), [3], n_users=2)


def test_popularity_buckets_split_interactions_evenly():
    assert popularity_buckets([10, 40, 20, 30], n_buckets=2).tolist() == [1, 0, 1, 0]
    assert popularity_buckets([10, 40, 20, 30], n_buckets=1).tolist() == [0, 0, 0, 0]
    b = popularity_buckets(np.r_[1000, np.ones(1000)], n_buckets=2)
    assert b[0] == 0 and np.all(b[1:] == 1)


def test_ndcg_by_popularity_equals_ndcg_on_each_buckets_query():
    rng = np.random.default_rng(0)
    Y = sp.csr_matrix((rng.random((30, 12)) < 0.3).astype(float))
    ids = np.argsort(rng.random((30, 12)), axis=1)[:, :5]
    pop = rng.integers(1, 100, size=12)
    got = ndcg_by_popularity(Y, ids, pop, n_buckets=3)
    buckets = popularity_buckets(pop, n_buckets=3)
    for b in range(3):
        Yb = Y.multiply((buckets == b)[None, :]).tocsr()
        Yb.eliminate_zeros()
        assert got[b] == pytest.approx(ndcg_at_k(Yb, ids))


def test_ndcg_by_popularity_nan_for_an_empty_bucket():
    Y = np.array([[1, 0, 0, 0]])
    got = ndcg_by_popularity(Y, np.array([[0, 1]]), [40, 30, 20, 10], n_buckets=2)
    assert got[0] == 1.0 and np.isnan(got[1])


def test_popularity_of_the_wrong_length_names_the_fix():
    with pytest.raises(ValueError, match="item_popularity"):
        ndcg_by_popularity(np.eye(3), np.array([[0], [1], [2]]), [1, 2])


@pytest.fixture(scope="module")
def knob_data(small_interactions):
    X = small_interactions
    base = ClosedFormFoldIn(ALSFactors(n_components=8, max_iter=5, random_state=0))
    return X, base


def test_strength_zero_is_the_wrapped_recommender(knob_data):
    X, base = knob_data
    plain = clone(base).fit(X)
    knob = PopularityPenalty(base, strength=0.0, random_state=0).fit(X)
    assert np.array_equal(knob.recommend(X, k=10)[0], plain.recommend(X, k=10)[0])


def test_stronger_penalty_moves_exposure_to_the_tail(knob_data):
    X, base = knob_data
    pop = item_popularity(X)
    shares, ginis, covs = [], [], []
    for strength in (0.0, 0.1, 1.0):
        ids = (
            PopularityPenalty(base, strength=strength, random_state=0).fit(X).recommend(X, k=10)[0]
        )
        shares.append(tail_share(ids, pop))
        ginis.append(gini_exposure(ids, X.shape[1]))
        covs.append(catalogue_coverage(ids, X.shape[1]))
    assert shares[0] < shares[1] < shares[2]
    # a mild penalty spreads exposure; a strong one gives everyone the same tail items
    assert ginis[1] < ginis[0] < ginis[2]
    assert covs[2] < covs[0]


def test_penalty_is_calibrated_and_increasing_in_popularity(knob_data):
    X, base = knob_data
    knob = PopularityPenalty(base, random_state=0).fit(X)
    order = np.argsort(item_popularity(X), kind="stable")
    assert np.all(np.diff(knob.penalty_[order]) >= -1e-12)
    assert knob.penalty_.mean() == pytest.approx(0.0, abs=1e-9)
    assert knob.penalty_.std() == pytest.approx(knob.score_spread_)


def test_add_items_passes_through_and_counts_support(knob_data):
    X, base = knob_data
    knob = PopularityPenalty(base, random_state=0).fit(X[:, :100])
    knob.add_items(X[:, 100:])
    assert knob.n_features_in_ == X.shape[1] == knob.penalty_.size
    ids, _ = knob.recommend(X, k=5, items=np.arange(100, X.shape[1]))
    assert ids.min() >= 100


def test_a_loaded_knob_takes_new_items_like_the_original(knob_data, tmp_path):
    import skfewrec

    X, base = knob_data
    knob = PopularityPenalty(base, strength=0.3, random_state=0).fit(X[:, :100])
    skfewrec.save(knob, tmp_path / "knob")
    loaded = skfewrec.load(tmp_path / "knob")
    np.testing.assert_array_equal(loaded.item_popularity_, item_popularity(X[:, :100]))
    knob.add_items(X[:, 100:])
    loaded.add_items(X[:, 100:])
    np.testing.assert_allclose(loaded.penalty_, knob.penalty_)
    np.testing.assert_array_equal(loaded.recommend(X, k=10)[0], knob.recommend(X, k=10)[0])


def _cliff_data(n_cold, n_users=1200, n_head=30, n_tail=60):
    """Every user takes all head items and one tail item; ``n_cold`` items nobody takes.

    The held-out queries are then mostly head items, and MostPopular ranks the head
    first: NDCG stays flat under the penalty until the first non-head item overtakes
    the head (the "cliff"), then collapses. The right "auto" strength is the largest
    grid point below the cliff.
    """
    rows = np.repeat(np.arange(n_users), n_head + 1)
    cols = np.column_stack(
        [np.tile(np.arange(n_head), (n_users, 1)), n_head + np.arange(n_users) % n_tail]
    ).ravel()
    shape = (n_users, n_head + n_tail + n_cold)
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=shape), n_head


@pytest.mark.parametrize("n_cold", [1, 10])
def test_auto_picks_the_largest_strength_below_the_known_cliff(n_cold):
    from skfewrec import MostPopular
    from skfewrec.tail import AUTO_STRENGTHS

    X, n_head = _cliff_data(n_cold)
    knob = PopularityPenalty(MostPopular(), random_state=0).fit(X)
    scores, penalty = knob.recommender_.item_popularity_, knob.penalty_
    cliff = np.min((scores[0] - scores[n_head:]) / (penalty[0] - penalty[n_head:]))
    below = [s for s in AUTO_STRENGTHS if s < cliff]
    assert knob.strength_ == below[-1] > 0
    report = knob.auto_report_
    assert report["chosen"] == knob.strength_ and report["tolerance"] == 0.02
    ratio = np.array(report["ratio"])
    assert ratio[report["strengths"].index(knob.strength_)] >= 0.98
    assert np.all(ratio[np.array(report["strengths"]) > cliff] < 0.98)
    # the penalty at the chosen strength moves exposure; past the cliff the lists are tail
    ids = knob.recommend(X, k=5, filter_seen=False)[0]
    assert np.all(ids < n_head)


def test_auto_tolerance_trades_more_accuracy_for_more_tail():
    from skfewrec import MostPopular

    X, _ = _cliff_data(1)
    strict = PopularityPenalty(MostPopular(), tolerance=0.0, random_state=0).fit(X)
    loose = PopularityPenalty(MostPopular(), tolerance=0.2, random_state=0).fit(X)
    assert strict.strength_ < loose.strength_
    # both searches scored the same episodes
    assert strict.auto_report_["ndcg"] == loose.auto_report_["ndcg"]
    pop = item_popularity(X)
    shares = [tail_share(m.recommend(X, k=10, filter_seen=False)[0], pop) for m in (strict, loose)]
    assert shares[0] < shares[1]


def test_auto_is_deterministic_and_an_explicit_strength_wins(knob_data):
    X, base = knob_data
    a = PopularityPenalty(base, random_state=0).fit(X)
    b = PopularityPenalty(base, random_state=0).fit(X)
    assert a.strength_ == b.strength_ and a.auto_report_["ndcg"] == b.auto_report_["ndcg"]
    np.testing.assert_array_equal(a.recommend(X, k=10)[0], b.recommend(X, k=10)[0])
    fixed = PopularityPenalty(base, strength=0.3, random_state=0).fit(X)
    assert fixed.strength_ == 0.3 and fixed.auto_report_ is None
    # "auto" ranks exactly as its chosen strength given explicitly
    same = PopularityPenalty(base, strength=a.strength_, random_state=0).fit(X)
    np.testing.assert_array_equal(same.recommend(X, k=10)[0], a.recommend(X, k=10)[0])


def test_auto_falls_back_to_zero_on_too_few_users():
    from skfewrec import MostPopular

    X = sp.csr_matrix((np.random.default_rng(0).random((20, 15)) < 0.4).astype(float))
    knob = PopularityPenalty(MostPopular(), random_state=0).fit(X)
    assert knob.strength_ == 0.0 and "fallback" in knob.auto_report_


@pytest.mark.parametrize(
    "params, match",
    [
        ({"strength": "max"}, "strength"),
        ({"strength": -1.0}, "strength"),
        ({"tolerance": 1.0}, "tolerance"),
    ],
)
def test_bad_knob_settings_name_the_parameter(params, match):
    from skfewrec import MostPopular

    with pytest.raises(ValueError, match=match):
        PopularityPenalty(MostPopular(), **params).fit(np.eye(5))


def test_an_auto_knob_round_trips_and_a_crafted_one_is_refused(knob_data, tmp_path):
    import skfewrec
    from skfewrec.persistence import BundleError

    X, base = knob_data
    knob = PopularityPenalty(base, random_state=0).fit(X)
    skfewrec.save(knob, tmp_path / "knob")
    loaded = skfewrec.load(tmp_path / "knob")
    assert loaded.strength == "auto" and loaded.strength_ == knob.strength_
    assert loaded.auto_report_ == knob.auto_report_
    np.testing.assert_array_equal(loaded.recommend(X, k=10)[0], knob.recommend(X, k=10)[0])
    for name, value in (("strength_", float("nan")), ("penalty_", knob.penalty_[:-1])):
        bad = clone(knob)
        bad.__dict__.update(knob.__dict__)
        setattr(bad, name, value)
        skfewrec.save(bad, tmp_path / name)
        with pytest.raises(BundleError, match=name):
            skfewrec.load(tmp_path / name)


def test_the_default_recommender_and_its_auto_settings_are_seeded():
    # an unseeded adapter holds out a random slice for its own "auto" prior and
    # shrinkage, so the knob's choice (made on top of it) would vary between fits
    rec = PopularityPenalty(random_state=3)._template()
    assert rec.random_state == 3 and rec.factors.random_state == 3
