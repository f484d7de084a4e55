"""New items in the HTTP service: ``POST /items`` grows the served model, on a real server."""

import copy
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import skfewrec
from skfewrec import ALSFactors, ClosedFormFoldIn
from skfewrec.adapters import NewItemRecommender
from skfewrec.preprocessing import InteractionEncoder

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from skfewrec.apps.serve import create_app, serve_in_thread  # noqa: E402

pytestmark = pytest.mark.server
LIMITS = {"max_k": 30, "max_shots": 300, "max_batch": 64, "max_body_bytes": 1 << 16}


def _log(X, prefix="m"):
    rows, cols = X.nonzero()
    return pd.DataFrame({"user": rows, "item": [f"{prefix}{c}" for c in cols]})


@pytest.fixture(scope="module")
def data(small_interactions):
    """An encoder and warm matrix over items 0..99; items 100..119 arrive later."""
    X = small_interactions[:250]
    encoder = InteractionEncoder(handle_unknown="ignore").fit(_log(X[:, :100]))
    X_warm = encoder.transform(_log(X[:, :100]))
    new = sp.csr_matrix(X[:, 100:])
    return encoder, X_warm, new


def _body(new, users, start=0):
    return {
        "items": [
            {"id": f"new{start + j}", "users": [int(users[u]) for u in new[:, j].nonzero()[0]]}
            for j in range(new.shape[1])
        ]
    }


def _serve(model, encoder):
    return serve_in_thread(create_app(model, encoder=encoder, **LIMITS))


@pytest.mark.parametrize("kind", ["new_item", "closed_form"])
def test_added_items_are_recommended_as_the_library_would(kind, data, tmp_path):
    encoder, X_warm, new = data
    base = ClosedFormFoldIn(ALSFactors(n_components=6, max_iter=4, random_state=0))
    model = NewItemRecommender(base, random_state=0) if kind == "new_item" else base
    model.fit(X_warm)
    skfewrec.save(model, tmp_path / "bundle", encoder=encoder)
    server, url = serve_in_thread(create_app(str(tmp_path / "bundle"), **LIMITS))
    users = encoder.user_ids_
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            answer = client.post("/items", json=_body(new[:, :12], users))
            assert answer.status_code == 200, answer.text
            assert answer.json() == {
                "added": [f"new{j}" for j in range(12)],
                "n_items": 112,
                "unknown_users": [],
            }
            answer = client.post("/items", json=_body(new[:, 12:], users, start=12))
            assert answer.json()["n_items"] == 120
            assert client.get("/model").json()["n_items"] == 120
            # a user who took some new items, by raw ids
            shots = ["m3", "m10", "new0", "new5"]
            got = client.post("/recommend", json={"items": shots, "k": 15}).json()
            # with the warm catalogue excluded, the list is made of new items
            only_new = {"items": shots, "k": 5, "exclude": encoder.item_ids_.tolist()}
            new_only = client.post("/recommend", json=only_new).json()["items"]
    finally:
        server.should_exit = True
    # the library, given the same items in two calls, answers the same list
    local = skfewrec.load(tmp_path / "bundle")
    local.add_items(new[:, :12]).add_items(new[:, 12:])
    cols = [int(np.flatnonzero(encoder.item_ids_ == s)[0]) for s in shots[:2]] + [100, 105]
    X_user = sp.csr_matrix((np.ones(4, np.float32), ([0] * 4, cols)), shape=(1, 120))
    ids, scores = local.recommend(X_user, k=15)
    names = list(encoder.item_ids_) + [f"new{j}" for j in range(20)]
    assert got["items"] == [names[i] for i in ids[0]]
    np.testing.assert_allclose(got["scores"], scores[0], rtol=1e-5)
    assert len(new_only) == 5 and all(item.startswith("new") for item in new_only)
    assert not {"new0", "new5"} & set(new_only)  # the user's own items stay out


def test_bad_new_items_get_answers_that_name_the_fix(data):
    encoder, X_warm, new = data
    model = ClosedFormFoldIn(ALSFactors(n_components=6, max_iter=4, random_state=0)).fit(X_warm)
    server, url = _serve(copy.deepcopy(model), encoder)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:

            def post(body):
                return client.post("/items", json=body)

            assert post({"things": []}).status_code == 422
            assert "already in the catalogue" in post({"items": [{"id": "m3", "users": [1]}]}).text
            repeated = post({"items": [{"id": "x", "users": [1]}, {"id": "x", "users": [2]}]})
            assert repeated.status_code == 422 and "repeat" in repeated.text
            assert "users must be a list" in post({"items": [{"id": "y", "users": 3}]}).text
            assert post({"items": [{"id": "y", "users": [1], "extra": 0}]}).status_code == 422
            too_many = post({"items": [{"id": f"z{i}", "users": [1]} for i in range(65)]})
            assert too_many.status_code == 413
            # nothing was added by the refused requests
            assert client.get("/model").json()["n_items"] == 100
            # users the model never saw are reported and skipped (handle_unknown="ignore")
            ok = post({"items": [{"id": "w", "users": [1, "ghost"]}]})
            assert ok.status_code == 200 and ok.json()["unknown_users"] == ["ghost"]
            assert client.get("/model").json()["n_items"] == 101
    finally:
        server.should_exit = True


def test_requests_during_an_add_see_one_model(data):
    """Recommendations keep answering, with valid ids, while items are being added."""
    encoder, X_warm, new = data
    base = ClosedFormFoldIn(ALSFactors(n_components=6, max_iter=4, random_state=0))
    model = NewItemRecommender(base, random_state=0).fit(X_warm)
    server, url = _serve(model, encoder)
    users = encoder.user_ids_
    try:
        with httpx.Client(base_url=url, timeout=30) as client:

            def recommend(i):
                body = {"items": ["m1", "m2", f"m{10 + i % 50}"], "k": 20}
                return client.post("/recommend", json=body)

            with ThreadPoolExecutor(4) as pool:
                pending = [pool.submit(recommend, i) for i in range(40)]
                for j in range(20):
                    body = _body(new[:, j : j + 1], users, start=j)
                    assert client.post("/items", json=body).status_code == 200
                answers = [f.result() for f in pending]
            known = set(encoder.item_ids_) | {f"new{j}" for j in range(20)}
            for answer in answers:
                assert answer.status_code == 200
                assert set(answer.json()["items"]) <= known
            assert client.get("/model").json()["n_items"] == 120
    finally:
        server.should_exit = True
    assert model.n_features_in_ == 100  # the model given to create_app was never modified
