"""Every skfewrec estimator, discovered by walking the package, through two layers of checks.

1. scikit-learn's own ``parametrize_with_checks``;
2. skfewrec's domain checks for recommenders: checkerboard recovery, ``filter_seen``
   never returns a seen item, ``transform`` leaves the estimator unchanged, a
   user without interactions gets finite scores, recommendations are
   deterministic, and a round trip through a pickle-free bundle changes nothing.
"""

import importlib
import inspect
import pkgutil
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import BaseEstimator, clone
from sklearn.utils.estimator_checks import parametrize_with_checks

import skfewrec

#: modules of skfewrec that failed to import while walking the package (name -> error);
#: a broken module must fail the suite, not silently drop out of every check below
IMPORT_ERRORS = {}


def _walk_error(name):
    IMPORT_ERRORS[name] = repr(sys.exc_info()[1])


def all_estimators():
    """(name, class) of every public estimator class defined in skfewrec."""
    found = {}
    for module_info in pkgutil.walk_packages(skfewrec.__path__, "skfewrec.", onerror=_walk_error):
        if any(part.startswith("test") for part in module_info.name.split(".")):
            continue
        try:
            module = importlib.import_module(module_info.name)
        except Exception as exc:  # recorded, and test_every_module_imports fails
            IMPORT_ERRORS[module_info.name] = repr(exc)
            continue
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, BaseEstimator)
                and cls.__module__.startswith("skfewrec")
                and not name.startswith("_")
                and not inspect.isabstract(cls)
                and not getattr(cls, "_skfewrec_skip_common_checks", False)
            ):
                found[name] = cls
    return sorted(found.items())


def _small_factors():
    return skfewrec.ALSFactors(n_components=4, max_iter=3, random_state=0)


#: small, fast constructor settings per estimator (name -> factory)
INIT_PARAMS = {
    "ALSFactors": lambda cls: cls(n_components=4, max_iter=3, random_state=0),
    "ClosedFormFoldIn": lambda cls: cls(factors=_small_factors()),
    "ExplicitALSFactors": lambda cls: cls(n_components=4, max_iter=3, random_state=0),
    "ImplicitFoldIn": lambda cls: cls(factors=_small_factors()),
    "GradientFoldIn": lambda cls: cls(
        factors=_small_factors(), n_steps=3, meta_iter=10, meta_batch_size=32, random_state=0
    ),
    "LightGBMReranker": lambda cls: cls(
        candidates=skfewrec.ClosedFormFoldIn(factors=_small_factors()),
        n_estimators=5,
        cv=2,
        random_state=0,
    ),
    "NewItemRecommender": lambda cls: cls(
        recommender=skfewrec.ClosedFormFoldIn(factors=_small_factors()), random_state=0
    ),
    "PopularityPenalty": lambda cls: cls(
        recommender=skfewrec.ClosedFormFoldIn(factors=_small_factors()), random_state=0
    ),
}

#: expected failures of sklearn's checks: (estimator name -> {check name: reason})
EXPECTED_FAILED_CHECKS = {}


def _instances():
    for name, cls in all_estimators():
        factory = INIT_PARAMS.get(name, lambda cls: cls())
        yield factory(cls)


ESTIMATORS = list(_instances())

#: every public estimator, constructed with no arguments: sklearn's checks must be
#: able to seed whatever each one builds by default (its top-level random_state)
DEFAULT_ESTIMATORS = [cls() for _, cls in all_estimators()]

#: the public estimators, by name: a new one is added here on purpose, and one that
#: vanishes (a module that no longer imports, a renamed class) fails this test
PUBLIC_ESTIMATORS = {
    "ALSFactors",
    "BM25Weighting",
    "ClosedFormFoldIn",
    "EASE",
    "ExplicitALSFactors",
    "GradientFoldIn",
    "ImplicitFoldIn",
    "ItemKNN",
    "LightGBMReranker",
    "LogConfidence",
    "MostPopular",
    "NewItemRecommender",
    "PopularityPenalty",
    "TFIDFWeighting",
}


def test_every_module_imports():
    assert not IMPORT_ERRORS, f"skfewrec modules that fail to import: {IMPORT_ERRORS}"


def test_discovery_finds_every_public_estimator():
    assert {name for name, _ in all_estimators()} == PUBLIC_ESTIMATORS
    assert {type(est).__name__ for est in DEFAULT_ESTIMATORS} == PUBLIC_ESTIMATORS


@parametrize_with_checks(
    ESTIMATORS,
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS.get(type(est).__name__, {}),
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@parametrize_with_checks(DEFAULT_ESTIMATORS)
def test_sklearn_compatible_default_estimator(estimator, check):
    check(estimator)


# ---------------------------------------------------------------- domain checks
RECOMMENDERS = [est for est in ESTIMATORS if hasattr(est, "recommend")]


def _ids(estimators):
    return [type(est).__name__ for est in estimators]


def checkerboard(n=40, n_blocks=4, rng=0):
    """Block-diagonal interactions: users of block b like exactly the items of block b."""
    block = np.arange(n) * n_blocks // n
    X = (block[:, None] == block[None, :]).astype(np.float32)
    return sp.csr_matrix(X), block


@pytest.fixture(scope="module")
def fitted(small_interactions):
    return {type(est).__name__: clone(est).fit(small_interactions[:250]) for est in RECOMMENDERS}


@pytest.mark.parametrize("estimator", RECOMMENDERS, ids=_ids(RECOMMENDERS))
def test_checkerboard_recovery(estimator):
    """One shot from a block is enough to recommend the rest of that block."""
    if not getattr(estimator, "_personalized", True):
        pytest.skip(f"{type(estimator).__name__} ranks every user the same way")
    X, block = checkerboard()
    est = clone(estimator).fit(X)
    rng = np.random.default_rng(0)
    shots = sp.csr_matrix(
        (
            np.ones(X.shape[0]),
            (np.arange(X.shape[0]), [rng.choice(np.flatnonzero(block == b)) for b in block]),
        ),
        shape=X.shape,
    )
    ids, _ = est.recommend(shots, k=5)
    assert np.mean(block[ids] == block[:, None]) > 0.95


@pytest.mark.parametrize("estimator", RECOMMENDERS, ids=_ids(RECOMMENDERS))
def test_filter_seen_never_returns_a_seen_item(estimator, fitted, small_interactions):
    est = fitted[type(estimator).__name__]
    S = small_interactions[250:]
    ids, scores = est.recommend(S, k=20)
    seen = S.toarray() > 0
    assert not seen[np.arange(S.shape[0])[:, None], ids].any()
    assert np.all(np.diff(scores, axis=1) <= 0)
    ids_all, _ = est.recommend(S, k=20, filter_seen=False)
    assert seen[np.arange(S.shape[0])[:, None], ids_all].any()


@pytest.mark.parametrize("estimator", RECOMMENDERS, ids=_ids(RECOMMENDERS))
def test_allow_and_deny_lists(estimator, fitted, small_interactions):
    est = fitted[type(estimator).__name__]
    S = small_interactions[250:]
    items = np.arange(0, 120, 3)
    exclude = items[:5]
    ids, _ = est.recommend(S, k=10, items=items, exclude=exclude)
    valid = ids[ids >= 0]
    assert np.isin(valid, items).all() and not np.isin(valid, exclude).any()


@pytest.mark.parametrize("estimator", RECOMMENDERS, ids=_ids(RECOMMENDERS))
def test_user_without_shots_gets_a_finite_answer(estimator, fitted):
    est = fitted[type(estimator).__name__]
    empty = sp.csr_matrix((3, est.n_features_in_), dtype=np.float32)
    ids, scores = est.recommend(empty, k=10)
    assert np.isfinite(scores).all() and (ids >= 0).all()
    assert np.isfinite(est.decision_function(empty)).all()


@pytest.mark.parametrize("estimator", RECOMMENDERS, ids=_ids(RECOMMENDERS))
def test_recommend_leaves_the_estimator_unchanged_and_is_deterministic(
    estimator, fitted, small_interactions
):
    est = fitted[type(estimator).__name__]
    before = {
        key: (val.copy() if isinstance(val, np.ndarray) else val) for key, val in vars(est).items()
    }
    first = est.recommend(small_interactions[250:], k=10)
    second = est.recommend(small_interactions[250:], k=10)
    np.testing.assert_array_equal(first[0], second[0])
    for key, val in before.items():
        if isinstance(val, np.ndarray):
            np.testing.assert_array_equal(val, vars(est)[key])
    again = clone(estimator).fit(small_interactions[:250]).recommend(small_interactions[250:], k=10)
    np.testing.assert_array_equal(first[0], again[0])


@pytest.mark.parametrize("estimator", RECOMMENDERS, ids=_ids(RECOMMENDERS))
def test_bad_input_is_refused_with_a_clear_message(estimator, fitted, small_interactions):
    est = fitted[type(estimator).__name__]
    S = small_interactions[250:260]
    with pytest.raises(ValueError, match="features"):
        est.recommend(S[:, :-1], k=5)
    bad = S.toarray()
    bad[0, 0] = -1
    with pytest.raises(ValueError, match="negative"):
        est.recommend(bad, k=5)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.recommend(bad, k=5)
    with pytest.raises(ValueError, match="larger than"):
        est.recommend(S, k=est.n_features_in_ + 1)
    with pytest.raises(ValueError, match="k must be >= 1"):
        est.recommend(S, k=0)
    with pytest.raises(TypeError, match="non-numeric|dtype"):
        est.recommend(np.full(S.shape, "a"), k=5)
    with pytest.raises(ValueError, match="exclude"):
        est.recommend(S, k=5, exclude=[est.n_features_in_])


@pytest.mark.parametrize("estimator", RECOMMENDERS, ids=_ids(RECOMMENDERS))
def test_pickle_free_round_trip(estimator, fitted, small_interactions, tmp_path):
    est = fitted[type(estimator).__name__]
    path = tmp_path / "model.skfewrec"
    skfewrec.save(est, path)
    loaded = skfewrec.load(path)
    ids, scores = est.recommend(small_interactions[250:], k=10)
    ids2, scores2 = loaded.recommend(small_interactions[250:], k=10)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_allclose(scores, scores2, rtol=1e-6)


@pytest.mark.parametrize("estimator", RECOMMENDERS, ids=_ids(RECOMMENDERS))
def test_filter_seen_of_a_separate_seen_matrix(estimator, fitted, small_interactions):
    """Seen items given apart from X (a raw log's) are never returned; the rest keeps its order."""
    from skfewrec.base import recommend_with_seen

    est = fitted[type(estimator).__name__]
    S = small_interactions[250:]
    rng = np.random.default_rng(0)
    extra = sp.random(S.shape[0], S.shape[1], density=0.05, random_state=rng, format="csr")
    seen = ((S + extra) > 0).astype(np.float32)
    ids, scores = recommend_with_seen(est, S, 20, seen=seen)
    assert not seen.toarray()[np.arange(S.shape[0])[:, None], ids].any()
    assert (ids >= 0).all() and np.all(np.diff(scores, axis=1) <= 0)
    full, full_scores = est.recommend(S, k=60)
    dense_seen = seen.toarray() > 0
    for row in range(S.shape[0]):
        # the same scores in the same order (ids may differ between tied scores)
        expected = full_scores[row][~dense_seen[row, full[row]]][:20]
        np.testing.assert_allclose(scores[row], expected, rtol=1e-6)
    # seen=X's own items is plain recommend
    np.testing.assert_array_equal(recommend_with_seen(est, S, 10, seen=S)[0], est.recommend(S)[0])
