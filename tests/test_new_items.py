"""New items folded in after pretraining: the symmetric closed form, and what follows from it.

The factor source owns the items: it folds them in (``fold_in_items``) and grows a
copy of itself (``extend_items``); adapters read ``item_factors_`` from it.
"""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator

import skfewrec
from skfewrec import ALSFactors, ClosedFormFoldIn
from skfewrec.factors._explicit import ExplicitALSFactors

F = 6


@pytest.fixture(scope="module")
def split(small_interactions):
    """Warm users x (old items, new items)."""
    X = small_interactions[:250]
    return X[:, :100].tocsr(), X[:, 100:].tocsr()


@pytest.fixture(scope="module")
def factors(split):
    old, _ = split
    return ALSFactors(
        n_components=F, regularization=0.5, confidence_scale=3.0, max_iter=5, random_state=0
    ).fit(old)


@pytest.fixture(scope="module")
def explicit(split):
    old, _ = split
    return ExplicitALSFactors(
        n_components=4, regularization=2.0, bias_regularization=1.0, max_iter=5, random_state=0
    ).fit(old)


def naive_item_solve(U, X_new, reg, scale):
    """(U^T C_i U + lambda I) y = U^T C_i p_i per new item (implicit's convention)."""
    U = U.astype(np.float64)
    out = []
    for col in X_new.toarray().T:
        obs = col > 0
        c = np.where(obs, scale * col, 1.0)
        A = U.T @ (c[:, None] * U) + reg * np.eye(U.shape[1])
        out.append(np.linalg.solve(A, U.T @ (c * obs)))
    return np.array(out)


def test_add_items_is_the_exact_item_half_step(factors, split):
    old, new = split
    rec = ClosedFormFoldIn(FrozenEstimator(factors), prior="gaussian").fit(old)
    before = rec.item_factors_.copy()
    assert rec.add_items(new, method="fold_in") is rec
    expected = naive_item_solve(factors.user_factors_, new, 0.5, 3.0)
    np.testing.assert_allclose(rec.item_factors_[100:], expected, rtol=2e-3, atol=2e-4)
    np.testing.assert_array_equal(rec.item_factors_[:100], before)
    assert rec.n_features_in_ == 120 and rec.item_factors_.shape == (120, F)
    np.testing.assert_array_equal(rec.item_counts_[100:], new.getnnz(axis=0))
    # the frozen factor source is left alone
    assert factors.item_factors_.shape == (100, F)


def test_new_users_are_folded_in_against_the_grown_catalogue(factors, split, small_interactions):
    old, new = split
    rec = ClosedFormFoldIn(FrozenEstimator(factors), prior="none").fit(old).add_items(new)
    S = small_interactions[250:]
    Y = rec.item_factors_.astype(np.float64)
    # a new user's system now counts the new items in Y^T Y
    row = S[0].toarray().ravel()
    obs = row > 0
    c = np.where(obs, 3.0 * row, 1.0)
    x = np.linalg.solve(Y.T @ (c[:, None] * Y) + 0.5 * np.eye(F), Y.T @ (c * obs))
    np.testing.assert_allclose(rec.transform(S[:1])[0], x, rtol=2e-3, atol=2e-4)
    ids, _ = rec.recommend(S, k=30)
    assert (ids >= 100).any()  # new items are ranked
    assert rec.decision_function(S).shape == (S.shape[0], 120)
    with pytest.raises(ValueError, match="120 features"):
        rec.recommend(S[:, :100], k=5)


def test_a_new_item_is_recommended_to_the_block_that_uses_it():
    """Checkerboard: each block's held-out item, folded in, is recommended to that block."""
    n, n_blocks = 48, 4
    block = np.arange(n) * n_blocks // n
    X = (block[:, None] == block[None, :]).astype(np.float32)
    held_out = np.array([np.flatnonzero(block == b)[0] for b in range(n_blocks)])
    kept = np.setdiff1d(np.arange(n), held_out)
    rec = ClosedFormFoldIn(ALSFactors(n_components=8, random_state=0)).fit(X[:, kept])
    rec.add_items(X[:, held_out])
    new_cols = len(kept) + np.arange(n_blocks)
    # one shot on an old item of the block: the block's new item is in the top 11
    shots = np.zeros((n_blocks, len(kept) + n_blocks), dtype=np.float32)
    for b in range(n_blocks):
        shots[b, np.flatnonzero(block[kept] == b)[0]] = 1
    ids, _ = rec.recommend(shots, k=11)
    for b in range(n_blocks):
        assert new_cols[b] in ids[b]
        assert not np.isin(np.delete(new_cols, b), ids[b]).any()


def test_an_item_without_warm_users_gets_a_zero_vector_and_a_warning(factors, split):
    old, new = split
    new = new.tolil()
    new[:, 3] = 0
    new = new.tocsr()
    new.eliminate_zeros()
    rec = ClosedFormFoldIn(FrozenEstimator(factors), prior="mean").fit(old)
    with pytest.warns(UserWarning, match="1 of the 20 new items have no interaction"):
        rec.add_items(new)
    np.testing.assert_array_equal(rec.item_factors_[103], 0)
    assert rec.item_counts_[103] == 0
    # a user whose only shot is that item is a user without shots
    only = np.zeros((1, 120), dtype=np.float32)
    only[0, 103] = 1
    np.testing.assert_allclose(rec.transform(only), rec.transform(np.zeros_like(only)))


def test_bad_new_items_are_refused(factors, split):
    old, new = split
    rec = ClosedFormFoldIn(FrozenEstimator(factors)).fit(old)
    with pytest.raises(ValueError, match="X_new_items has 249 rows but the factor source holds"):
        rec.add_items(new[:-1])
    bad = new.toarray()
    bad[0, 0] = -2
    with pytest.raises(ValueError, match="X_new_items.*1 negative value"):
        rec.add_items(bad)
    with pytest.raises(ValueError, match="rating_scale"):
        ClosedFormFoldIn(FrozenEstimator(factors), rating_scale=(1, 2)).fit(old).add_items(new * 5)
    assert rec.n_features_in_ == 100  # nothing half-added
    no_users = ALSFactors.from_arrays(factors.item_factors_, regularization=0.5)
    rec = ClosedFormFoldIn(FrozenEstimator(no_users)).fit(old)
    with pytest.raises(ValueError, match="user_factors_ is empty"):
        rec.add_items(new)
    with pytest.raises(Exception, match="not fitted"):
        ClosedFormFoldIn().add_items(new)


def test_explicit_add_items_is_the_ridge_item_step(split):
    old, new = split
    source = ExplicitALSFactors(
        n_components=4, regularization=2.0, bias_regularization=1.0, max_iter=5, random_state=0
    ).fit(old)
    rec = ClosedFormFoldIn(FrozenEstimator(source), objective="explicit").fit(old).add_items(new)
    Z = np.hstack([source.user_factors_, np.ones((250, 1))]).astype(np.float64)
    ridge = np.diag([2.0] * 4 + [1.0])
    for j, col in enumerate(new.toarray().T):
        obs = col > 0
        r = col[obs] - source.global_mean_ - source.user_biases_[obs]
        w = np.linalg.solve(Z[obs].T @ Z[obs] + ridge, Z[obs].T @ r)
        np.testing.assert_allclose(rec.item_factors_[100 + j], w[:4], rtol=2e-3, atol=2e-4)
        np.testing.assert_allclose(rec.item_biases_[100 + j], w[4], rtol=2e-3, atol=2e-4)
    assert rec.decision_function(new[:3].toarray() @ np.zeros((20, 120))).shape == (3, 120)


def test_added_items_survive_a_pickle_free_round_trip(factors, split, small_interactions, tmp_path):
    old, new = split
    rec = ClosedFormFoldIn(FrozenEstimator(factors), prior="gaussian").fit(old).add_items(new)
    skfewrec.save(rec, tmp_path / "model")
    loaded = skfewrec.load(tmp_path / "model")
    S = small_interactions[250:]
    np.testing.assert_array_equal(loaded.recommend(S, k=10)[0], rec.recommend(S, k=10)[0])


@pytest.mark.realdata
@pytest.mark.slow
def test_folded_in_items_are_found_on_movielens(ml100k_path):
    """ml-100k: 10% of items held out of pretraining, folded in from half their users;
    the other half of their users find them about as often as with a retrained model."""
    from skfewrec.datasets import load_movielens

    X = load_movielens(ml100k_path, min_rating=4, binarize=True).X.tocsc()
    rng = np.random.default_rng(0)
    n_items = X.shape[1]
    new = np.sort(rng.choice(n_items, size=n_items // 10, replace=False))
    old = np.setdiff1d(np.arange(n_items), new)
    Xn = X[:, new].tocoo()
    later = rng.random(Xn.nnz) < 0.5  # the users who interact later: the query
    support = sp.csr_matrix((Xn.data[~later], (Xn.row[~later], Xn.col[~later])), shape=Xn.shape)
    query = sp.csr_matrix((Xn.data[later], (Xn.row[later], Xn.col[later])), shape=Xn.shape)
    X_old = X[:, old].tocsr()
    known = sp.hstack([X_old, support]).tocsr()
    als = dict(n_components=32, regularization=1.0, confidence_scale=5.0, random_state=0)
    folded = ClosedFormFoldIn(ALSFactors(**als)).fit(X_old)
    with pytest.warns(UserWarning, match="have no interaction from a warm user"):
        folded.add_items(support)  # some new items have all their users in the query
    retrained = ClosedFormFoldIn(ALSFactors(**als)).fit(known)
    cols = old.size + np.arange(new.size)
    users = np.flatnonzero(query.getnnz(axis=1))
    recall = {}
    for name, rec in (("folded", folded), ("retrained", retrained)):
        ids, _ = rec.recommend(known[users], k=20, items=cols)
        hits = query[users].toarray()[np.arange(users.size)[:, None], ids - old.size] > 0
        recall[name] = hits.sum() / np.minimum(query[users].getnnz(axis=1), 20).sum()
    assert recall["folded"] > 0.8 * recall["retrained"]
    assert recall["folded"] > 0.1


def test_extend_items_returns_a_grown_copy_and_leaves_the_source_alone(factors, split):
    _, new = split
    before = factors.item_factors_.copy()
    grown = factors.extend_items(new)
    assert grown is not factors and type(grown) is ALSFactors
    np.testing.assert_array_equal(factors.item_factors_, before)
    assert factors.n_features_in_ == 100 and factors.item_counts_.shape == (100,)
    assert grown.n_features_in_ == 120 and grown.item_factors_.shape == (120, F)
    np.testing.assert_array_equal(grown.item_factors_[:100], before)
    np.testing.assert_array_equal(grown.item_factors_[100:], factors.fold_in_items(new))
    np.testing.assert_array_equal(grown.item_counts_[100:], new.getnnz(axis=0))
    assert grown.get_params() == factors.get_params()
    # the grown source's caches were rebuilt: it folds in users over 120 items
    row = np.zeros((1, 120), dtype=np.float32)
    row[0, [3, 110]] = 1
    Y = grown.item_factors_.astype(np.float64)
    c = np.where(row[0] > 0, 3.0, 1.0)
    x = np.linalg.solve(Y.T @ (c[:, None] * Y) + 0.5 * np.eye(F), Y.T @ (c * (row[0] > 0)))
    np.testing.assert_allclose(grown.transform(row)[0], x, rtol=1e-4, atol=1e-5)


def test_the_adapter_reads_its_items_from_its_factor_source(factors, split, small_interactions):
    old, new = split
    rec = ClosedFormFoldIn(FrozenEstimator(factors), prior="gaussian").fit(old)
    assert "item_factors_" not in vars(rec)
    assert np.shares_memory(rec.item_factors_, rec.factors_.item_factors_)
    rec.add_items(new)
    # factors_ grew (a copy: the frozen source is untouched), so it is never stale
    assert rec.factors_ is not factors and factors.n_features_in_ == 100
    assert rec.factors_.item_factors_.shape == (120, F)
    assert np.shares_memory(rec.item_factors_, rec.factors_.item_factors_)
    # the adapter's fold-in and its grown source's agree over the 120 items
    plain = ClosedFormFoldIn(FrozenEstimator(factors), prior="none").fit(old).add_items(new)
    S = small_interactions[250:]
    S = S[S.getnnz(axis=1) > 0]
    np.testing.assert_allclose(
        plain.transform(S), plain.factors_.transform(S), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="item_factors_ differs from factors_"):
        rec.item_factors_ = np.zeros_like(rec.item_factors_)


def _legacy_state(adapter, source):
    """The fitted state skfewrec 0.1.0 saved: its own copies of the item parameters."""
    state = {k: v for k, v in vars(adapter).items() if k.endswith("_") and not k.startswith("_")}
    state["factors_"] = source
    for name in ("item_factors_", "item_biases_", "global_mean_"):
        if hasattr(adapter, name):
            state[name] = getattr(adapter, name)
    return state


@pytest.mark.parametrize("objective", ["implicit", "explicit"])
def test_a_legacy_model_saved_after_add_items_is_restored(
    factors, explicit, split, small_interactions, objective
):
    """0.1.0's add_items grew the adapter's copy only; loading adopts it into factors_."""
    old, new = split
    source = factors if objective == "implicit" else explicit
    rec = ClosedFormFoldIn(FrozenEstimator(source), objective=objective, prior="gaussian")
    rec.fit(old).add_items(new)
    restored = ClosedFormFoldIn(FrozenEstimator(source), objective=objective, prior="gaussian")
    for key, value in sorted(_legacy_state(rec, source).items()):  # as the loader does
        setattr(restored, key, value)
    restored._rebuild()
    assert restored.factors_ is not source and source.n_features_in_ == 100
    S = small_interactions[250:]
    np.testing.assert_array_equal(restored.recommend(S, k=10)[0], rec.recommend(S, k=10)[0])
    # and through a pickle holding the same legacy state
    state = rec.__getstate__()
    state.update(_legacy_state(rec, source))
    unpickled = ClosedFormFoldIn.__new__(ClosedFormFoldIn)
    unpickled.__setstate__(state)
    np.testing.assert_array_equal(unpickled.recommend(S, k=10)[0], rec.recommend(S, k=10)[0])
    assert "item_factors_" not in vars(unpickled)


def test_adapters_pickle_without_a_copy_of_the_items(factors, split, small_interactions):
    old, new = split
    rec = ClosedFormFoldIn(FrozenEstimator(factors)).fit(old).add_items(new)
    back = pickle.loads(pickle.dumps(rec))
    assert "item_factors_" not in vars(back)
    S = small_interactions[250:]
    np.testing.assert_array_equal(back.recommend(S, k=10)[0], rec.recommend(S, k=10)[0])


def test_explicit_fold_in_items_and_extend_items_agree(explicit, split):
    _, new = split
    grown = explicit.extend_items(new)
    np.testing.assert_array_equal(grown.item_factors_[100:], explicit.fold_in_items(new))
    assert grown.item_biases_.shape == (120,) and explicit.item_biases_.shape == (100,)
    assert grown.global_mean_ == explicit.global_mean_


# --- the support placement (ClosedFormFoldIn's default), and growing loaded models ----------


def test_default_add_items_places_items_from_activity_weighted_support(factors, split):
    from skfewrec.adapters._items import support_item_factors

    old, new = split
    rec = ClosedFormFoldIn(FrozenEstimator(factors)).fit(old)
    np.testing.assert_array_equal(rec.user_activity_, old.getnnz(axis=1))
    rec.add_items(new)
    U, V = factors.user_factors_.astype(np.float64), factors.item_factors_.astype(np.float64)
    w = 1.0 / (old.getnnz(axis=1) + 1.0)
    Y = (new.T.toarray() > 0) @ (w[:, None] * U) @ (V.T @ V)
    # one scale for the call: the new items' score spread is the warm items'
    cosine = (Y * rec.item_factors_[100:]).sum(1) / (
        np.linalg.norm(Y, axis=1) * np.linalg.norm(rec.item_factors_[100:], axis=1)
    )
    np.testing.assert_allclose(cosine, 1.0, rtol=1e-4)
    ratio = np.linalg.norm(rec.item_factors_[100:], axis=1) / np.linalg.norm(Y, axis=1)
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)
    assert np.std(U @ rec.item_factors_[100:].T) == pytest.approx(np.std(U @ V.T), rel=0.05)
    np.testing.assert_allclose(
        rec.item_factors_[100:], support_item_factors(U, V, new, old.getnnz(axis=1)), rtol=1e-5
    )
    np.testing.assert_array_equal(rec.item_counts_[100:], new.getnnz(axis=0))
    assert factors.item_factors_.shape == (100, F)  # the frozen source is left alone


def test_add_items_method_is_checked_and_falls_back_without_activity(factors, split):
    old, new = split
    rec = ClosedFormFoldIn(FrozenEstimator(factors)).fit(old)
    with pytest.raises(ValueError, match='method must be "support" or "fold_in"'):
        rec.add_items(new, method="symmetric")
    # fit on other rows than the source's users: no activity, so the exact fold-in
    other = ClosedFormFoldIn(FrozenEstimator(factors)).fit(old[:200])
    assert other.user_activity_ is None
    other.add_items(new)
    exact = ClosedFormFoldIn(FrozenEstimator(factors)).fit(old).add_items(new, method="fold_in")
    np.testing.assert_allclose(other.item_factors_, exact.item_factors_)


def test_support_placement_finds_held_out_items_and_ranks_them_among_warm_items():
    """Clustered users and items: both placements find 3-shot items; support's reach full lists."""
    from skfewrec.model_selection import evaluate_item_kshot, item_kshot_split

    rng = np.random.default_rng(0)
    uc, ic = rng.integers(8, size=600), np.arange(400) % 8
    X = sp.csr_matrix((rng.random((600, 400)) < np.where(uc[:, None] == ic, 0.15, 0.005)) * 1.0)
    split = item_kshot_split(X, 3, test_size=0.25, random_state=0)
    base = ClosedFormFoldIn(ALSFactors(n_components=8, max_iter=10, random_state=0))
    recall = {}
    for method in ("support", "fold_in"):
        model = clone(base).fit(split.X_warm).add_items(split.support, method=method)
        recall[method] = evaluate_item_kshot(model, split, k=10, directions=("items",))
    n_new = split.support.shape[1]
    assert recall["fold_in"]["new_recall"] > 3 * 10 / n_new  # far better than a random order
    assert recall["support"]["new_recall"] >= 0.9 * recall["fold_in"]["new_recall"]
    # scaled to the warm scores, the placed items also make whole-catalogue lists
    assert recall["support"]["full_recall"] > recall["fold_in"]["full_recall"] + 0.2


@pytest.mark.parametrize("kind", ["new_item", "closed_form"])
def test_a_loaded_model_takes_new_items_and_round_trips(kind, split, small_interactions, tmp_path):
    from skfewrec.adapters import NewItemRecommender

    old, new = split
    base = ClosedFormFoldIn(ALSFactors(n_components=F, max_iter=5, random_state=0))
    model = NewItemRecommender(base, random_state=0) if kind == "new_item" else base
    model.fit(old)
    skfewrec.save(model, tmp_path / "warm")
    loaded = skfewrec.load(tmp_path / "warm")
    loaded.add_items(new[:, :10]).add_items(new[:, 10:])
    model.add_items(new[:, :10]).add_items(new[:, 10:])
    S = small_interactions[250:]
    ids, scores = loaded.recommend(S, k=10)
    assert loaded.n_features_in_ == 120 and (ids >= 100).any()
    np.testing.assert_array_equal(ids, model.recommend(S, k=10)[0])
    skfewrec.save(loaded, tmp_path / "grown")
    again = skfewrec.load(tmp_path / "grown")
    np.testing.assert_array_equal(again.recommend(S, k=10)[0], ids)
    np.testing.assert_allclose(again.recommend(S, k=10)[1], scores, rtol=1e-6)


def test_repeated_add_items_grow_in_place_and_leave_old_arrays_alone(split):
    from skfewrec.adapters import NewItemRecommender

    old, new = split
    base = ClosedFormFoldIn(ALSFactors(n_components=F, max_iter=5, random_state=0))
    rec = NewItemRecommender(base, random_state=0).fit(old)
    rec.add_items(new[:, :1])
    first_factors, first_profiles = rec.item_factors_, rec.item_profiles_
    kept, kept_profiles = first_factors.copy(), first_profiles.copy()
    buffers = set()
    for j in range(1, 20):
        rec.add_items(new[:, j : j + 1])
        # the per-item arrays are views of one buffer: an add copies its own rows only
        assert np.shares_memory(rec.item_factors_, first_factors)
        buffers.add(rec.item_profiles_.data.ctypes.data)
    assert len(buffers) <= 5  # the profiles' buffer doubles: a few moves for 19 adds
    assert abs(first_profiles - kept_profiles).max() == 0
    np.testing.assert_array_equal(first_factors, kept)  # an old reference keeps its values
    assert first_factors.shape == (101, F) and rec.item_factors_.shape == (120, F)
    assert rec.item_profiles_.shape == (120, 100)
    assert rec.support_counts_[100:].tolist() == new.getnnz(axis=0).tolist()
    # and the grown matrices are what one call per item computes
    one_by_one = NewItemRecommender(base, random_state=0).fit(old)
    for j in range(20):
        one_by_one.item_profiles_ = one_by_one.item_profiles_.copy()  # no shared buffer
        one_by_one.add_items(new[:, j : j + 1])
    np.testing.assert_allclose(one_by_one.item_factors_, rec.item_factors_, rtol=1e-6)
    assert abs(one_by_one.item_profiles_ - rec.item_profiles_).max() < 1e-9


def test_a_tampered_new_item_bundle_is_refused(split, tmp_path):
    from skfewrec.adapters import NewItemRecommender
    from skfewrec.persistence import BundleError

    old, new = split
    base = ClosedFormFoldIn(ALSFactors(n_components=F, max_iter=5, random_state=0))
    rec = NewItemRecommender(base, random_state=0).fit(old)
    rec.scale_users_ = rec.scale_users_ + 10_000
    skfewrec.save(rec, tmp_path / "bad")
    with pytest.raises(BundleError, match="scale_users_"):
        skfewrec.load(tmp_path / "bad")
