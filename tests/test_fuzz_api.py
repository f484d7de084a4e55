"""Hostile input at the doors: every public estimator, the encoder and the HTTP service.

The rule, for every random input: a clean exception (``ValueError`` or
``TypeError`` with a message) or a valid answer (finite scores, item ids inside
the catalogue, -1 only where fewer than k items remain); never a signal, a hang,
NaN, or an out-of-range id. Inputs mix odd values (0, tiny, the 1e6 limit and
beyond, NaN, inf, negative), odd dtypes (bool, int, object, complex, strings) and
odd shapes. A fast profile runs with the test suite; ``pytest -m fuzz`` runs the
long one.
"""

import json
import signal
import warnings
from collections import Counter
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.frozen import FrozenEstimator

from skfewrec import (
    EASE,
    ALSFactors,
    ClosedFormFoldIn,
    GradientFoldIn,
    ImplicitFoldIn,
    ItemKNN,
    LightGBMReranker,
    MostPopular,
)
from skfewrec.apps._answer import _n_rankable
from skfewrec.datasets import make_interactions
from skfewrec.preprocessing import InteractionEncoder

N_USERS, N_ITEMS = 120, 30
#: seconds one example may take before it counts as a hang
HANG = 60

#: values the models must take (down to subnormals, up to the 1e6 limit) and values they refuse
GOOD_VALUES = [0.0, -0.0, 5e-324, 1e-30, 0.5, 1.0, 3.0, 1e3, 1e6]
ODD_VALUES = GOOD_VALUES + [1e6 + 1, 1e30, 1e300, np.nan, np.inf, -np.inf, -1.0, -1e-30]


#: one fast and one long profile of every door; the long one runs with ``pytest -m fuzz``
PROFILES = ["fast", pytest.param("long", marks=pytest.mark.fuzz)]


def _fuzz(request, profile, prop, inputs, n_examples, **fixed):
    """Run ``prop(**fixed, **drawn)`` on ``n_examples[profile]`` hypothesis draws of ``inputs``."""
    if profile == "long" and "fuzz" not in (request.config.option.markexpr or ""):
        pytest.skip("long fuzz profile: run with `pytest -m fuzz`")

    def example(**drawn):
        prop(**fixed, **drawn)

    settings(
        max_examples=n_examples[profile],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )(given(**inputs)(example))()


@contextmanager
def _no_hang(seconds=HANG):
    def hang(signum, frame):
        raise AssertionError(f"no answer within {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


#: (door, outcome) -> count over this session: the fuzz must reach valid answers too
OUTCOMES = Counter()


def _clean(call, door):
    """The answer of ``call``, or None when it refused cleanly; anything else fails."""
    with _no_hang(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            answer = call()
        except (ValueError, TypeError) as exc:
            assert str(exc).strip(), f"{type(exc).__name__} without a message"
            OUTCOMES[door, "refused"] += 1
            return None
    OUTCOMES[door, "answered"] += 1
    return answer


# ------------------------------------------------------------------ inputs
@st.composite
def matrices(draw, n_items=None):
    """Interaction matrices as users pass them: dense, sparse or lists; odd values and dtypes."""
    n_rows = draw(st.integers(1, 5))
    n_cols = n_items if n_items is not None else draw(st.integers(1, 12))
    pool = draw(st.sampled_from([GOOD_VALUES, GOOD_VALUES, ODD_VALUES]))
    cells = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=8))
    dense = np.zeros((n_rows, n_cols))
    # three in four are well-formed (odd values only), so the models' arithmetic is reached
    odd_form = draw(st.sampled_from([False, False, False, True]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if n_cols:
        dense[rng.integers(n_rows, size=len(cells)), rng.integers(n_cols, size=len(cells))] = cells
    if not odd_form:
        return draw(st.sampled_from([sp.csr_matrix, np.asarray]))(dense.astype(np.float64))
    dense = dense[:, : draw(st.sampled_from([n_cols, max(n_cols - 1, 0)]))]
    dense = np.hstack([dense, np.zeros((n_rows, draw(st.integers(0, 1))))])
    dtype = draw(st.sampled_from(["float32", "float64", "int64", "bool", "object", "complex"]))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dtype in ("int64", "bool"):
            dense = np.nan_to_num(dense, posinf=1e18, neginf=-1e18).astype(dtype)
        else:
            dense = dense.astype(dtype)
    shape = draw(st.sampled_from(["2d", "2d", "2d", "1d", "3d", "empty"]))
    if shape == "1d":
        dense = dense.ravel()
    elif shape == "3d":
        dense = dense[None]
    elif shape == "empty":
        dense = dense[:0]
    container = draw(st.sampled_from(["dense", "csr", "coo", "list", "strings"]))
    if container == "strings":
        return dense.astype(str)
    if container == "list":
        return dense.tolist()
    if container in ("csr", "coo") and dense.ndim == 2 and dtype not in ("object",):
        return sp.csr_matrix(dense) if container == "csr" else sp.coo_matrix(dense)
    return dense


def _warm():
    X = make_interactions(n_users=N_USERS, n_items=N_ITEMS, random_state=0).X
    return sp.csr_matrix(X, dtype=np.float32)


@pytest.fixture(scope="module")
def fitted():
    """Every public recommender, fitted once on clean data: the fuzz is at predict time."""
    X = _warm()
    factors = FrozenEstimator(ALSFactors(n_components=4, max_iter=3, random_state=0).fit(X))
    models = {
        "closed_form": ClosedFormFoldIn(factors, prior="gaussian"),
        "closed_form_mean": ClosedFormFoldIn(factors, prior="mean"),
        "gradient_bpr": GradientFoldIn(factors, meta_iter=5, random_state=0),
        "gradient_wmse": GradientFoldIn(factors, loss="wmse", meta_iter=5, random_state=0),
        "implicit": ImplicitFoldIn(factors),
        "ease": EASE(l2=10.0),
        "item_knn": ItemKNN(n_neighbors=10),
        "most_popular": MostPopular(),
        "rerank": LightGBMReranker(
            candidates=ClosedFormFoldIn(factors),
            n_candidates=10,
            n_estimators=5,
            min_child_samples=5,
            n_episodes=2,
            cv=2,
            random_state=0,
        ),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {name: est.fit(X) for name, est in models.items()}


def _check_recommendation(est, X, k, answer, *, filter_seen=True, items=None, exclude=None):
    ids, scores = answer
    n_rows = np.shape(X)[0]
    assert ids.shape == scores.shape == (n_rows, k)
    assert ids.dtype.kind == "i" and ((ids >= -1) & (ids < N_ITEMS)).all(), ids
    filled = ids >= 0
    assert np.isfinite(scores[filled]).all(), scores
    X = sp.csr_matrix(np.asarray(X, dtype=np.float64) if not sp.issparse(X) else X)
    rankable = _n_rankable(X, N_ITEMS, filter_seen, items, exclude)
    assert (filled.sum(axis=1) >= np.minimum(k, rankable)).all(), (ids, rankable)
    if filter_seen:
        seen = X.toarray() != 0
        assert not np.take_along_axis(seen, np.maximum(ids, 0), axis=1)[filled].any()


def _largest(X):
    try:
        data = X.data if sp.issparse(X) else np.asarray(X, dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an all-NaN input
            return float(np.nanmax(np.abs(data))) if data.size else 0.0
    except (TypeError, ValueError):
        return 0.0


def _recommend_property(fitted, X, *, k, filter_seen, items, exclude, name):
    est = fitted[name]
    answer = _clean(
        lambda: est.recommend(X, k=k, filter_seen=filter_seen, items=items, exclude=exclude),
        "recommend",
    )
    if answer is not None:
        _check_recommendation(
            est, X, k, answer, filter_seen=filter_seen, items=items, exclude=exclude
        )
    for method in ("transform", "decision_function"):
        if hasattr(est, method):
            out = _clean(lambda method=method: getattr(est, method)(X), method)
            if out is not None:
                assert np.isfinite(out).all(), (name, method, out)
                assert out.shape[0] == np.shape(X)[0]


NAMES = [
    "closed_form",
    "closed_form_mean",
    "gradient_bpr",
    "gradient_wmse",
    "implicit",
    "ease",
    "item_knn",
    "most_popular",
    "rerank",
]
# mostly valid options (so the scoring runs), sometimes odd ones
valid_k = st.integers(1, 8)
valid_items = st.one_of(st.none(), st.lists(st.integers(0, N_ITEMS - 1), min_size=1, max_size=12))
odd_items = st.one_of(
    st.none(),
    st.lists(st.integers(-3, N_ITEMS + 2), max_size=6),
    st.lists(st.sampled_from([0.0, 1.5, np.nan, "3"]), max_size=3),
)
valid_options = st.fixed_dictionaries(
    {"k": valid_k, "filter_seen": st.booleans(), "items": valid_items, "exclude": valid_items}
)
odd_options = st.fixed_dictionaries(
    {
        "k": st.one_of(valid_k, st.integers(-1, N_ITEMS + 2), st.sampled_from([2.0, "3", None])),
        "filter_seen": st.sampled_from([True, False, "no", 0, None, np.True_]),
        "items": odd_items,
        "exclude": odd_items,
    }
)
recommend_inputs = {
    "X": matrices(n_items=N_ITEMS),
    "options": st.one_of(valid_options, valid_options, valid_options, odd_options),
    "name": st.sampled_from(NAMES),
}


@pytest.mark.parametrize("profile", PROFILES)
def test_recommend_transform_fuzz(request, profile, fitted):
    def prop(fitted, X, options, name):
        _recommend_property(fitted, X, name=name, **options)

    _fuzz(request, profile, prop, recommend_inputs, {"fast": 150, "long": 3000}, fitted=fitted)


# ------------------------------------------------------------------ fit
FITTERS = {
    "als": lambda: ALSFactors(n_components=2, max_iter=1, random_state=0),
    "closed_form": lambda: ClosedFormFoldIn(ALSFactors(n_components=2, max_iter=1)),
    "ease": lambda: EASE(l2=1.0),
    "item_knn": lambda: ItemKNN(n_neighbors=3),
    "most_popular": lambda: MostPopular(weighting="values"),
}


def _fit_property(X, name):
    est = _clean(lambda: FITTERS[name]().fit(X), "fit")
    if est is None:
        return
    n_items = est.n_features_in_
    if hasattr(est, "item_factors_"):
        assert np.isfinite(est.item_factors_).all()
    if hasattr(est, "recommend"):
        user = sp.csr_matrix((1, n_items), dtype=np.float32)
        ids, scores = est.recommend(user, k=1)
        assert 0 <= ids[0, 0] < n_items and np.isfinite(scores).all()


fit_inputs = {"X": matrices(), "name": st.sampled_from(sorted(FITTERS))}


@pytest.mark.parametrize("profile", PROFILES)
def test_fit_fuzz(request, profile):
    _fuzz(request, profile, _fit_property, fit_inputs, {"fast": 60, "long": 1500})


# ------------------------------------------------------------------ the encoder
odd_ids = st.one_of(
    st.integers(-(2**70), 2**70),
    st.text(max_size=4),
    st.sampled_from([None, np.nan, 1.5, (1, 2), True, b"x"]),
)
odd_numbers = st.one_of(
    st.sampled_from(ODD_VALUES), st.integers(-(2**70), 2**70), st.sampled_from(["3", None])
)


def _encoder_property(rows, value_col):
    df = pd.DataFrame(rows, columns=["user", "item", "n"]) if rows else pd.DataFrame()
    enc = InteractionEncoder(value_col="n" if value_col else None, handle_unknown="ignore")
    X = _clean(lambda: enc.fit_transform(df), "encoder")
    if X is None:
        return
    assert X.shape == (
        len(enc.user_ids_) if hasattr(enc, "user_ids_") else X.shape[0],
        enc.n_items_,
    )
    assert np.isfinite(X.data).all() and (X.data > 0).all() and (X.data <= 1e6).all()
    again = _clean(lambda: enc.transform(df), "encoder")
    assert again is not None and (again != X).nnz == 0


encoder_inputs = {
    "rows": st.lists(st.tuples(odd_ids, odd_ids, odd_numbers), max_size=8),
    "value_col": st.booleans(),
}


@pytest.mark.parametrize("profile", PROFILES)
def test_encoder_fuzz(request, profile):
    _fuzz(request, profile, _encoder_property, encoder_inputs, {"fast": 80, "long": 3000})


# ------------------------------------------------------------------ the HTTP service
@pytest.fixture(scope="module")
def service(fitted):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    from skfewrec.apps.serve import create_app, serve_in_thread

    log = pd.DataFrame({"user": [0] * N_ITEMS, "item": [f"i{j}" for j in range(N_ITEMS)]})
    enc = InteractionEncoder(handle_unknown="ignore").fit(log)
    apps = {
        "ids": create_app(fitted["rerank"], encoder=enc, max_k=20, max_body_bytes=1 << 16),
        "plain": create_app(fitted["closed_form"], max_k=20, max_body_bytes=1 << 16),
    }
    servers = {name: serve_in_thread(app) for name, app in apps.items()}
    with httpx.Client(timeout=HANG) as client:
        yield client, {name: url for name, (_, url) in servers.items()}
    for server, _ in servers.values():
        server.should_exit = True


json_atoms = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["i1", "i3", "i29", "zz", "", "7"]),
    st.integers(-2, N_ITEMS + 2),
)
json_values = st.recursive(
    json_atoms,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)
request_bodies = st.fixed_dictionaries(
    {},
    optional={
        "items": st.one_of(st.lists(json_atoms, max_size=6), json_values),
        "values": st.one_of(st.lists(json_atoms, max_size=6), json_values),
        "k": json_atoms,
        "exclude": st.one_of(st.lists(json_atoms, max_size=4), json_values),
        "filter_seen": json_atoms,
        "other": json_atoms,
    },
)


def _service_property(service, body, batch, which):
    client, urls = service
    path = "/recommend/batch" if batch else "/recommend"
    payload = {"users": [body, body]} if batch else body
    with _no_hang():
        answer = client.post(
            urls[which] + path,
            content=json.dumps(payload),  # NaN and Infinity as Python writes them
            headers={"Content-Type": "application/json"},
        )
    assert answer.status_code < 500, answer.text
    data = answer.json()
    OUTCOMES["service", "refused" if answer.status_code >= 400 else "answered"] += 1
    if answer.status_code >= 400:
        assert isinstance(data["detail"], str) and data["detail"]
        return
    for result in data["results"] if batch else [data]:
        assert len(result["items"]) <= body.get("k", 10)
        assert all(np.isfinite(result["scores"]))
        assert result["scores"] == sorted(result["scores"], reverse=True) or which == "ids"


known_ids = st.sampled_from(["i1", "i3", "i29", 0, 3, 29])
valid_bodies = st.fixed_dictionaries(
    {"items": st.lists(known_ids, max_size=6)},
    optional={
        "k": st.integers(1, 20),
        "exclude": st.lists(known_ids, max_size=3),
        "filter_seen": st.booleans(),
    },
)
service_inputs = {
    "body": st.one_of(request_bodies, json_values, valid_bodies, valid_bodies),
    "batch": st.booleans(),
    "which": st.sampled_from(["ids", "plain"]),
}


@pytest.mark.server
@pytest.mark.parametrize("profile", PROFILES)
def test_service_fuzz(request, profile, service):
    _fuzz(request, profile, _service_property, service_inputs, {"fast": 80, "long": 3000},
          service=service)  # fmt: skip


def _raw_bytes_property(service, content, batch):
    client, urls = service
    path = "/recommend/batch" if batch else "/recommend"
    with _no_hang():
        answer = client.post(urls["plain"] + path, content=content)
    assert 400 <= answer.status_code < 500 or answer.status_code == 200, answer.text
    assert isinstance(answer.json(), dict)


@pytest.mark.server
@pytest.mark.parametrize("profile", PROFILES)
def test_service_fuzz_raw_bytes(request, profile, service):
    inputs = {"content": st.binary(max_size=200), "batch": st.booleans()}
    _fuzz(request, profile, _raw_bytes_property, inputs, {"fast": 40, "long": 1000},
          service=service)  # fmt: skip


def test_the_fuzz_reached_answers_and_refusals():
    """Runs after the fuzz tests above: each door answered some inputs and refused others
    (a fuzz that only ever hits the first type check proves nothing)."""
    doors = {door for door, _ in OUTCOMES}
    if not doors:
        pytest.skip("run with the fuzz tests of this module")
    for door in doors:
        assert OUTCOMES[door, "answered"] >= 5 and OUTCOMES[door, "refused"] >= 5, OUTCOMES
    print(dict(OUTCOMES))
