"""The "auto" choosers land near a known optimum on synthetic data."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.frozen import FrozenEstimator

from skfewrec import ALSFactors, ClosedFormFoldIn
from skfewrec._auto import (
    FALLBACK,
    choose_als_settings,
    choose_prior,
    episode_scores,
    holdout_users,
)

STRENGTHS = (0.0, 0.1, 1.0, 10.0, 100.0)


def _blocks(n_users, n_items, n_blocks, p_in, p_out, seed):
    """Users and items in ``n_blocks`` tastes: a user takes items of their own block
    with probability ``p_in``, any other item with ``p_out``."""
    rng = np.random.default_rng(seed)
    user_block = rng.integers(n_blocks, size=n_users)
    item_block = np.arange(n_items) % n_blocks
    prob = np.where(user_block[:, None] == item_block[None, :], p_in, p_out)
    dense = rng.random((n_users, n_items)) < prob
    dense[np.arange(n_users), rng.integers(n_items, size=n_users)] = True
    return sp.csr_matrix(dense.astype(np.float32))


def _popularity_only(n_users, n_items, seed):
    """Every user draws from one Zipf popularity: no taste at all."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1) ** 0.8
    dense = rng.random((n_users, n_items)) < 0.6 * p / p.max()
    dense[:, 0] = True
    return sp.csr_matrix(dense.astype(np.float32))


def _strength_for(X):
    X_fit, X_val = holdout_users(X, random_state=0)
    als = FrozenEstimator(
        ALSFactors(8, regularization=1.0, confidence_scale=10.0, random_state=0).fit(X_fit)
    )
    adapter = ClosedFormFoldIn(als, prior="gaussian")
    chosen, report = choose_prior(
        adapter, X_fit, X_val, strengths=STRENGTHS, shrinkages=(0.0,), n_shots=(1, 3)
    )
    report["scores"] = [row[0] for row in report["scores"]]
    return chosen["prior_strength"], report


def test_prior_strength_strong_when_users_share_one_taste():
    # with no personal taste the population (the prior's mean) is the right answer:
    # the best strength is at the top of the grid
    strength, report = _strength_for(_popularity_only(600, 80, seed=0))
    scores = np.nanmean(np.array(report["scores"]), axis=1)
    assert strength >= 10.0, report
    # and the choice matters: no prior is clearly worse on these episodes
    assert scores[STRENGTHS.index(strength)] > scores[0] + 0.02


def test_prior_strength_weak_when_one_shot_reveals_the_taste():
    # disjoint tastes: one shot tells the user's block, pulling toward the population
    # mean (a mix of every block) only hurts
    strength, report = _strength_for(_blocks(600, 80, 4, 0.5, 0.0, seed=0))
    scores = np.nanmean(np.array(report["scores"]), axis=1)
    # (1 and 10 score within 0.001 of each other here: the grid's top is what must lose)
    assert strength < STRENGTHS[-1], report
    assert scores[STRENGTHS.index(strength)] > scores[-1] + 0.02


@pytest.mark.parametrize(
    "start, warm_iter",
    [
        # from a poor start, every point fitted from scratch
        ((100.0, 0.1), None),
        # the default: points warm-started from their centre (with fewer sweeps)
        ((1.0, 10.0), 5),
    ],
)
def test_als_search_lands_near_the_grid_optimum(start, warm_iter, monkeypatch):
    """The coordinate search ends within 2% of the full grid's best (cold fits)."""
    import skfewrec._auto

    monkeypatch.setattr(skfewrec._auto, "WARM_START_NNZ", 0)  # warm starts on small data too
    X = _blocks(500, 90, 6, 0.25, 0.02, seed=1)
    kwargs = dict(
        n_components=8, max_iter=8, n_shots=(1, 3, 5), strengths=(0.0, 1.0), shrinkages=(0.0,)
    )
    settings, report = choose_als_settings(
        X, start=start, step=10.0, max_moves=4, warm_iter=warm_iter, random_state=0, **kwargs
    )
    # the exhaustive grid around it, scored on the same hold-out and episodes
    grid = [(r, c) for r in (0.1, 1.0, 10.0, 100.0) for c in (0.1, 1.0, 10.0, 100.0)]
    best = -np.inf
    for reg, conf in grid:
        _, one = choose_als_settings(X, start=(reg, conf), max_moves=0, random_state=0, **kwargs)
        best = max(best, one["points"][0]["mean"])
    chosen = next(
        p["mean"]
        for p in report["points"]
        if (p["regularization"], p["confidence_scale"])
        == (settings["regularization"], settings["confidence_scale"])
    )
    assert chosen >= 0.98 * best, (settings, chosen, best)
    assert report["points"][0]["mean"] < chosen  # it moved

    assert [p["warm_start"] for p in report["points"][1:]] == [warm_iter is not None] * (
        len(report["points"]) - 1
    )
    # the full prior grid and every n were scored at the chosen point
    assert report["refined"]["n_shots"] == [1, 3, 5]


def test_small_data_fits_every_point_from_scratch():
    X = _blocks(300, 60, 4, 0.3, 0.02, seed=2)
    _, report = choose_als_settings(
        X, n_components=4, max_iter=4, max_moves=1, n_shots=(1,), random_state=0
    )
    assert not any(p["warm_start"] for p in report["points"])


def test_episode_scores_match_a_known_ranking():
    # every held-out user has items 0..9; a recommender that ranks them first is perfect
    class Oracle:
        def recommend(self, X, k, filter_seen=True):
            order = np.tile(np.arange(X.shape[1]), (X.shape[0], 1))
            seen = X.toarray() > 0
            ranked = np.array([row[~s[row]][:k] for row, s in zip(order, seen)])
            return ranked, np.zeros(ranked.shape)

    X = sp.csr_matrix(np.hstack([np.ones((40, 10)), np.zeros((40, 20))]))
    np.testing.assert_allclose(episode_scores(Oracle(), X, n_shots=(1, 3), k=5), 1.0)


def test_tiny_data_falls_back_with_a_reason():
    X = _blocks(20, 12, 2, 0.5, 0.0, seed=0)
    settings, report = choose_als_settings(X, n_components=2, random_state=0)
    assert settings == FALLBACK
    assert "held out" in report["fallback"]
    assert report["points"] == []


@pytest.mark.parametrize("fraction, max_users, expected", [(0.2, 1000, 40), (0.5, 30, 30)])
def test_holdout_users_sizes(fraction, max_users, expected):
    X = _blocks(200, 20, 2, 0.5, 0.0, seed=0)
    X_fit, X_val = holdout_users(X, fraction=fraction, max_users=max_users, random_state=0)
    assert X_val.shape[0] == expected
    assert X_fit.shape[0] + X_val.shape[0] == 200


def test_a_fixed_axis_stays_fixed():
    X = _blocks(300, 60, 4, 0.3, 0.02, seed=2)
    settings, report = choose_als_settings(
        X,
        n_components=4,
        max_iter=4,
        confidence_scale=7.0,
        max_moves=1,
        n_shots=(1,),
        strengths=(0.0,),
        shrinkages=(0.0,),
        random_state=0,
    )
    assert settings["confidence_scale"] == 7.0
    assert {p["confidence_scale"] for p in report["points"]} == {7.0}
    assert len({p["regularization"] for p in report["points"]}) == 3


def _pairs(n_users, n_pairs, per_user, seed):
    """Items come in pairs always taken together; each user takes ``per_user`` random
    pairs: an item-item signal that a 2-factor model cannot hold."""
    rng = np.random.default_rng(seed)
    dense = np.zeros((n_users, 2 * n_pairs), dtype=np.float32)
    for u in range(n_users):
        pairs = rng.choice(n_pairs, per_user, replace=False)
        dense[u, 2 * pairs] = dense[u, 2 * pairs + 1] = 1.0
    return sp.csr_matrix(dense)


def _knn_choice(X, weights):
    from skfewrec._core.knn import conditional_neighbors

    X_fit, X_val = holdout_users(X, random_state=0)
    als = FrozenEstimator(
        ALSFactors(2, regularization=1.0, confidence_scale=10.0, random_state=0).fit(X_fit)
    )
    return choose_prior(
        ClosedFormFoldIn(als, prior="gaussian"),
        X_fit,
        X_val,
        strengths=(0.0,),
        shrinkages=(0.0,),
        knn_weights=weights,
        similarity=conditional_neighbors(X_fit, 20, 0.0),
        n_shots=(1, 3),
    )


def test_knn_weight_chosen_where_item_pairs_carry_the_signal():
    weights = (0.0, 0.1, 1.0, 10.0)
    chosen, report = _knn_choice(_pairs(400, 40, 5, seed=0), weights)
    scores = np.nanmean(np.array(report["knn_scores"]), axis=1)
    assert chosen["knn_weight"] >= 1.0, report
    assert scores.max() > scores[0] + 0.1  # the blend clearly beats the factors alone


def test_knn_weight_stays_zero_when_only_zero_is_offered():
    chosen, report = _knn_choice(_pairs(400, 40, 5, seed=0), (0.0,))
    assert chosen["knn_weight"] == 0.0
    assert len(report["knn_scores"]) == 1


def test_search_reports_the_knn_weight_it_chose():
    X = _pairs(500, 30, 4, seed=1)
    settings, report = choose_als_settings(
        X, n_components=2, max_iter=5, max_moves=0, n_shots=(1, 3), random_state=0
    )
    assert settings["knn_weight"] in report["refined"]["knn_weights"]
    assert settings["knn_weight"] > 0  # the pairs are item-item signal
