"""The factor source owns the items: item fold-in, copy-on-write growth, one owner of
``item_factors_``, the seeds adapters pass down, and what explicit ratings refuse."""

import pickle

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator

from skfewrec import ALSFactors, ClosedFormFoldIn, ImplicitFoldIn
from skfewrec.factors import ExplicitALSFactors

F = 6


@pytest.fixture(scope="module")
def split(small_interactions):
    X = small_interactions[:250]
    return X[:, :100].tocsr(), X[:, 100:].tocsr()


@pytest.fixture(scope="module")
def als(split):
    return ALSFactors(
        n_components=F, regularization=0.5, confidence_scale=3.0, max_iter=5, random_state=0
    ).fit(split[0])


@pytest.fixture(scope="module")
def explicit(split):
    old, _ = split
    return ExplicitALSFactors(
        n_components=4, regularization=2.0, bias_regularization=1.0, max_iter=5, random_state=0
    ).fit(old)


def test_extend_items_returns_a_grown_copy_and_leaves_the_source_alone(als, split):
    _, new = split
    before = als.item_factors_.copy()
    grown = als.extend_items(new)
    assert grown is not als and type(grown) is ALSFactors
    np.testing.assert_array_equal(als.item_factors_, before)
    assert als.n_features_in_ == 100 and als.item_counts_.shape == (100,)
    assert grown.n_features_in_ == 120 and grown.item_factors_.shape == (120, F)
    np.testing.assert_array_equal(grown.item_factors_[:100], before)
    np.testing.assert_array_equal(grown.item_factors_[100:], als.fold_in_items(new))
    np.testing.assert_array_equal(grown.item_counts_[100:], new.getnnz(axis=0))
    assert grown.get_params() == als.get_params()
    # the grown source's caches were rebuilt: it folds in users over 120 items
    row = np.zeros((1, 120), dtype=np.float32)
    row[0, [3, 110]] = 1
    Y = grown.item_factors_.astype(np.float64)
    c = np.where(row[0] > 0, 3.0, 1.0)
    x = np.linalg.solve(Y.T @ (c[:, None] * Y) + 0.5 * np.eye(F), Y.T @ (c * (row[0] > 0)))
    np.testing.assert_allclose(grown.transform(row)[0], x, rtol=1e-4, atol=1e-5)


def test_the_adapter_reads_its_items_from_its_factor_source(als, split, small_interactions):
    old, new = split
    rec = ClosedFormFoldIn(FrozenEstimator(als), prior="gaussian").fit(old)
    assert "item_factors_" not in vars(rec)
    assert np.shares_memory(rec.item_factors_, rec.factors_.item_factors_)
    rec.add_items(new)
    # factors_ grew (a copy: the frozen source is untouched), so it is never stale
    assert rec.factors_ is not als and als.n_features_in_ == 100
    assert rec.factors_.item_factors_.shape == (120, F)
    assert np.shares_memory(rec.item_factors_, rec.factors_.item_factors_)
    # the adapter's fold-in and its grown source's agree over the 120 items
    plain = ClosedFormFoldIn(FrozenEstimator(als)).fit(old).add_items(new)
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
    als, explicit, split, small_interactions, objective
):
    """0.1.0's add_items grew the adapter's copy only; loading adopts it into factors_."""
    old, new = split
    source = als if objective == "implicit" else explicit
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


def test_adapters_pickle_without_a_copy_of_the_items(als, split, small_interactions):
    old, new = split
    rec = ClosedFormFoldIn(FrozenEstimator(als)).fit(old).add_items(new)
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


def test_explicit_default_source_is_seeded(small_interactions):
    X = small_interactions[:100]
    rec = ClosedFormFoldIn(objective="explicit", random_state=1).fit(X)
    assert isinstance(rec.factors_, ExplicitALSFactors) and rec.factors_.random_state == 1


@pytest.mark.parametrize(("param", "value"), [("confidence_scale", 2.0), ("convention", "spark")])
def test_implicit_settings_are_refused_for_explicit_ratings(explicit, split, param, value):
    rec = ClosedFormFoldIn(FrozenEstimator(explicit), objective="explicit", **{param: value})
    with pytest.raises(ValueError, match=f"{param}=.* does nothing for explicit ratings"):
        rec.fit(split[0])
