"""The HTTP scoring service, through a real uvicorn server on loopback."""

import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

import skfewrec
from skfewrec import ALSFactors, ClosedFormFoldIn
from skfewrec.preprocessing import InteractionEncoder

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from skfewrec.apps.serve import ItemMap, create_app, serve_in_thread  # noqa: E402

pytestmark = pytest.mark.server
LIMITS = {"max_k": 30, "max_shots": 50, "max_batch": 8, "max_body_bytes": 4096}


def _log(X):
    rows, cols = X.nonzero()
    return pd.DataFrame({"user": rows, "item": [f"m{c}" for c in cols], "n": X.data})


@pytest.fixture(scope="module")
def encoder(small_interactions):
    return InteractionEncoder(value_col="n", handle_unknown="ignore").fit(
        _log(small_interactions[:250])
    )


@pytest.fixture(scope="module")
def model(small_interactions, encoder):
    X = encoder.transform(_log(small_interactions[:250]))
    factors = ALSFactors(n_components=6, max_iter=4, random_state=0)
    return ClosedFormFoldIn(factors=factors, prior="gaussian").fit(X)


@pytest.fixture(scope="module")
def url(model, encoder):
    server, url = serve_in_thread(create_app(model, encoder=encoder, **LIMITS))
    yield url
    server.should_exit = True


@pytest.fixture(scope="module")
def client(url):
    with httpx.Client(base_url=url, timeout=10) as client:
        yield client


def _expected(model, items, values=None, k=10, exclude=None, enc=None):
    enc = _ENCODER[0] if enc is None else enc
    X = np.zeros((1, model.n_features_in_), dtype=np.float32)
    np.add.at(X[0], enc.item_index(items), 1.0 if values is None else values)
    ex = None if exclude is None else enc.item_index(exclude)
    ids, scores = model.recommend(X, k=k, exclude=ex)
    return enc.item_ids_[ids[0]].tolist(), scores[0]


#: the module's encoder, for _expected (set by the autouse fixture below)
_ENCODER = [None]


@pytest.fixture(autouse=True, scope="module")
def _remember_encoder(encoder):
    _ENCODER[0] = encoder


def test_health_and_model(client, model):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/model").json()
    assert info["class"] == "ClosedFormFoldIn"
    assert info["n_items"] == model.n_features_in_ and info["n_components"] == 6
    assert info["id_maps"] is True and info["unknown_ids"] == "ignore"
    assert info["limits"] == LIMITS and info["params"]["prior"] == "gaussian"


def test_recommend_answers_what_the_model_answers(client, model):
    items = ["m3", "m10", "m10", "m42"]
    answer = client.post("/recommend", json={"items": items, "k": 7})
    assert answer.status_code == 200
    body = answer.json()
    ids, scores = _expected(model, items, k=7)
    assert body["items"] == ids and body["unknown"] == []
    np.testing.assert_allclose(body["scores"], scores, rtol=1e-5)
    assert not set(body["items"]) & set(items)


def test_values_exclude_and_filter_seen(client, model):
    items, values = ["m1", "m2", "m5"], [3.0, 1.0, 0.5]
    first = client.post("/recommend", json={"items": items, "values": values, "k": 5}).json()
    assert first["items"] == _expected(model, items, values, k=5)[0]
    exclude = first["items"][:2] + ["not-an-item"]
    body = client.post(
        "/recommend", json={"items": items, "values": values, "k": 5, "exclude": exclude}
    ).json()
    assert len(body["items"]) == 5 and not set(body["items"]) & set(exclude)
    assert body["items"] == _expected(model, items, values, k=5, exclude=exclude[:2])[0]
    seen = client.post("/recommend", json={"items": items, "k": 30, "filter_seen": False}).json()
    assert set(seen["items"]) & set(items)


def test_unknown_ids_follow_the_bundle_policy(client, model, encoder):
    import copy

    body = client.post("/recommend", json={"items": ["m3", "zz", 17], "k": 4}).json()
    assert body["unknown"] == ["zz", 17]
    assert body["items"] == _expected(model, ["m3"], k=4)[0]
    strict = ItemMap(
        model.n_features_in_, copy.deepcopy(encoder).set_params(handle_unknown="error")
    )
    from skfewrec.apps.serve import RequestError

    with pytest.raises(RequestError, match=r"2 item id\(s\) not in the model's catalogue"):
        strict.index(["m3", "zz", 17], name="items")


def test_unknown_ids_are_refused_under_the_error_policy(model, encoder):
    import copy

    strict = copy.deepcopy(encoder).set_params(handle_unknown="error")
    server, url = serve_in_thread(create_app(model, encoder=strict))
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            answer = client.post("/recommend", json={"items": ["m3", "zz", 17], "k": 4})
            assert answer.status_code == 422
            assert answer.json()["detail"] == (
                'body.items has 2 item id(s) not in the model\'s catalogue: "zz", 17. Send ids '
                "the model was trained on (GET /model describes it)."
            )
            # excluding an unknown id is harmless, whatever the policy
            ok = client.post("/recommend", json={"items": ["m3"], "exclude": ["zz"], "k": 4})
            assert ok.status_code == 200 and len(ok.json()["items"]) == 4
            assert client.get("/model").json()["unknown_ids"] == "error"
    finally:
        server.should_exit = True


def test_user_without_known_items_gets_the_prior_answer(client, model):
    body = client.post("/recommend", json={"items": [], "k": 3}).json()
    assert body["items"] == _expected(model, [], k=3)[0]


def test_batch_matches_single_requests(client):
    users = [
        {"items": ["m1", "m7"], "k": 3},
        {"items": ["m9"], "k": 5, "filter_seen": False},
        {"items": ["m2", "m3", "m4"], "k": 4, "exclude": ["m0"]},
    ]
    batch = client.post("/recommend/batch", json={"users": users})
    assert batch.status_code == 200
    singles = [client.post("/recommend", json=u).json() for u in users]
    assert batch.json()["results"] == singles


def test_concurrent_requests_are_batched_and_correct(client, model):
    rng = np.random.default_rng(0)
    users = [[f"m{i}" for i in rng.choice(120, size=4, replace=False)] for _ in range(48)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(lambda items: client.post("/recommend", json={"items": items, "k": 6}), users)
        )
    assert [a.status_code for a in answers] == [200] * len(users)
    for items, answer in zip(users, answers):
        assert answer.json()["items"] == _expected(model, items, k=6)[0]


@pytest.mark.parametrize(
    "content, status, message",
    [
        (b"{not json", 400, "not JSON this service can read"),
        (b"", 400, "body is empty"),
        (b"\xff\xfe", 400, "not JSON this service can read"),
        (b"[1, 2]", 422, "must be a JSON object"),
        (b'{"items": "m1"}', 422, "items must be a list"),
        (b'{"k": 3}', 422, "items must be a list"),
        (b'{"items": [1.5]}', 422, "strings or integers"),
        (b'{"items": [true]}', 422, "strings or integers"),
        (b'{"items": [null]}', 422, "strings or integers"),
        (b'{"items": [["m1"]]}', 422, "strings or integers"),
        (b'{"items": ["m1"], "values": [1, 2]}', 422, "as long as items"),
        (b'{"items": ["m1"], "values": [-1]}', 422, "numbers from 0 to 1e+06"),
        (b'{"items": ["m1"], "values": ["a"]}', 422, "numbers from 0 to 1e+06"),
        (b'{"items": ["m1", "m1"], "values": [1e300, 1e300]}', 422, "numbers from 0 to"),
        (b'{"items": ["m1"], "values": [NaN]}', 422, "numbers from 0 to"),
        (b'{"items": ["m1"], "values": [Infinity]}', 422, "numbers from 0 to"),
        (b'{"items": ["m1", "m2"], "values": [1e6, 1e6], "k": 3}', 200, None),
        (b'{"items": ["m1"], "values": [1e7]}', 422, "numbers from 0 to 1e+06"),
        (b'{"items": ["m1", "m1"], "values": [6e5, 6e5]}', 422, "sum to more than 1e+06"),
        # integers the JSON parser holds but no float does (issue 12: these were 500s)
        (b'{"items": ["m1"], "values": [1' + b"0" * 400 + b"]}", 422, "numbers from 0 to"),
        (b'{"items": ["m1"], "k": 1' + b"0" * 400 + b"}", 422, "limit of 30"),
        (b'{"items": ["m1", 1' + b"0" * 30 + b"]}", 200, None),
        (b"[" * 2000 + b"]" * 2000, 400, "nested too deeply"),
        (b'{"items": ["m1"], "values": 3}', 422, "values must be a list"),
        (b'{"items": ["m1"], "k": 0}', 422, "k must be an integer >= 1"),
        (b'{"items": ["m1"], "k": "5"}', 422, "k must be an integer >= 1"),
        (b'{"items": ["m1"], "k": 2.0}', 422, "k must be an integer >= 1"),
        (b'{"items": ["m1"], "k": 31}', 422, "limit of 30"),
        (b'{"items": ["m1"], "exclude": "m2"}', 422, "exclude must be a list"),
        (b'{"items": ["m1"], "filter_seen": "no"}', 422, "filter_seen must be true or false"),
        (b'{"items": ["m1"], "user": 3}', 422, "unknown field"),
        (json.dumps({"items": ["m1"] * 51}).encode(), 413, "51 shots, more than"),
        (json.dumps({"items": ["m1"] * 900}).encode(), 413, "larger than this service's limit"),
        (b'{"items": ["m1"], "filter_seen": 1}', 422, "filter_seen must be true or false"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(client, content, status, message):
    answer = client.post(
        "/recommend", content=content, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    if message is not None:
        assert message in answer.json()["detail"]


@pytest.mark.parametrize(
    "payload, status, message",
    [
        ({"users": []}, 422, "empty"),
        ({"users": [{"items": ["m1"]}] * 9}, 413, "limit of 8"),
        ({"users": {"items": []}}, 422, '"users": ['),
        ({"users": [{"items": ["m1"]}], "k": 3}, 422, "other than"),
        ({"users": [{"items": ["m1"]}, {"items": ["m1"], "k": -1}]}, 422, "users[1].k"),
    ],
)
def test_bad_batches_get_a_4xx(client, payload, status, message):
    answer = client.post("/recommend/batch", json=payload)
    assert answer.status_code == status
    assert message in answer.json()["detail"]


def test_oversized_streamed_body_is_refused(client):
    def chunks():
        for _ in range(10):
            yield b" " * 1000

    answer = client.post("/recommend", content=chunks())  # chunked: no Content-Length
    assert answer.status_code == 413


def test_wrong_method_and_path(client):
    assert client.get("/recommend").status_code == 405
    assert client.post("/nothing", json={}).status_code == 404


def test_random_garbage_never_gets_a_500(client):
    rng = np.random.default_rng(0)
    atoms = [None, True, -1, 0, 3, 1e308, -0.0, "m1", "", [], {}, ["m2"], [1, "m3"], "k"]
    for _ in range(60):
        body = {
            key: atoms[rng.integers(len(atoms))]
            for key in rng.choice(
                ["items", "values", "k", "exclude", "filter_seen", "x"],
                size=rng.integers(0, 5),
                replace=False,
            )
        }
        for path in ("/recommend", "/recommend/batch"):
            answer = client.post(path, json=body if path == "/recommend" else {"users": [body]})
            assert answer.status_code < 500, (body, answer.text)


def test_bundle_without_id_maps_uses_column_indices(model, tmp_path):
    plain = ClosedFormFoldIn(factors=model.factors_, prior="gaussian")
    plain.fit(np.eye(model.n_features_in_, dtype=np.float32)[:50])
    path = skfewrec.save(plain, tmp_path / "plain.zip")
    server, url = serve_in_thread(create_app(path))
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            body = client.post("/recommend", json={"items": [0, 4], "k": 3}).json()
            ids, _ = plain.recommend(
                np.eye(1, model.n_features_in_, 0) + np.eye(1, model.n_features_in_, 4), k=3
            )
            assert body["items"] == ids[0].tolist()
            bad = client.post("/recommend", json={"items": [0, 10_000, "m1"]})
            assert bad.status_code == 422
            assert "outside [0, 120)" in bad.json()["detail"]
            assert client.get("/model").json()["id_maps"] is False
    finally:
        server.should_exit = True


def test_create_app_refuses_bad_settings(model):
    with pytest.raises(TypeError, match="Unknown limit"):
        create_app(model, max_items=3)
    with pytest.raises(ValueError, match="max_k must be an integer >= 1"):
        create_app(model, max_k=0)
    with pytest.raises(TypeError, match="bundle path or a fitted skfewrec recommender"):
        create_app(object())


def test_cli_serve_announces_only_when_it_accepts(model, encoder, tmp_path):
    """The "serving ... on URL" line comes once the socket accepts: one request, no retry;
    --port 0 announces the port it got."""
    path = skfewrec.save(model, tmp_path / "m.zip", encoder=encoder)
    proc = subprocess.Popen(
        [sys.executable, "-m", "skfewrec", "serve", str(path), "--port", "0", "--max-k", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    try:
        lines = [proc.stderr.readline().decode()]
        while not lines[-1].startswith("serving") and lines[-1] and len(lines) < 20:
            lines.append(proc.stderr.readline().decode())  # warnings may come first
        line = lines[-1]
        assert line.startswith("serving ClosedFormFoldIn from "), lines
        url = line.split(" on ", 1)[1].split()[0]
        assert not url.endswith(":0")
        assert httpx.get(f"{url}/health", timeout=30).json() == {"status": "ok"}
        answer = httpx.post(f"{url}/recommend", json={"items": ["m3"], "k": 6}, timeout=10)
        assert answer.status_code == 422 and "limit of 5" in answer.json()["detail"]
        answer = httpx.post(f"{url}/recommend", json={"items": ["m3"], "k": 5}, timeout=10)
        assert answer.json()["items"] == _expected(model, ["m3"], k=5)[0]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# ---------------------------------------------------------------- one answer everywhere
def _kinds():
    from skfewrec import (
        EASE,
        GradientFoldIn,
        ImplicitFoldIn,
        ItemKNN,
        LightGBMReranker,
        MostPopular,
    )

    def factors():
        return ALSFactors(n_components=6, max_iter=4, random_state=0)

    return {
        "closed_form": lambda: ClosedFormFoldIn(factors=factors(), prior="gaussian"),
        "gradient": lambda: GradientFoldIn(factors=factors(), meta_iter=10, random_state=0),
        "rerank": lambda: LightGBMReranker(
            candidates=ClosedFormFoldIn(factors=factors()),
            n_candidates=15,
            n_estimators=8,
            min_child_samples=5,
            n_episodes=2,
            cv=2,
            random_state=0,
        ),
        "implicit": lambda: ImplicitFoldIn(factors=factors()),
        "ease": lambda: EASE(l2=20.0),
        "item_knn": lambda: ItemKNN(n_neighbors=15),
        "most_popular": lambda: MostPopular(),
    }


def _random_users(rng, n_users, n_items):
    """A log of new users: 1-6 events each, repeated items allowed, integer values."""
    rows = []
    for user in range(n_users):
        for item in rng.integers(n_items, size=rng.integers(1, 7)):
            rows.append((9000 + user, f"m{item}", int(rng.integers(1, 6))))
    return pd.DataFrame(rows, columns=["user", "item", "n"])


@pytest.mark.parametrize("kind", list(_kinds()))
def test_cli_http_and_python_give_one_answer(kind, small_interactions, tmp_path, capsys):
    """Issue 12/14: every model kind answers the same through recommend, the CLI and HTTP,
    with values, repeated items and per-request exclude lists (the re-ranker used to drop
    excluded items after ranking in the service)."""
    from skfewrec.apps.cli import main

    log = _log(small_interactions[:250])
    enc = InteractionEncoder(value_col="n", handle_unknown="ignore").fit(log)
    est = _kinds()[kind]().fit(enc.transform(log))
    path = skfewrec.save(est, tmp_path / "m.zip", encoder=enc)
    rng = np.random.default_rng(zlib.crc32(kind.encode()))  # stable across runs
    server, url = serve_in_thread(create_app(path))
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            for setting in range(3):
                k = int(rng.integers(1, 15))
                exclude = [f"m{i}" for i in rng.choice(120, size=setting * 4, replace=False)]
                new = _random_users(rng, 10, 120)
                X, users = enc.encode(new)
                ex = enc.item_index(exclude) if exclude else None
                ids, scores = est.recommend(X, k=k, exclude=ex)
                python = [
                    (enc.item_ids_[i[i >= 0]].tolist(), s[i >= 0]) for i, s in zip(ids, scores)
                ]
                bodies = []
                for user in users:
                    rows = new[new.user == user]
                    body = {"items": rows.item.tolist(), "values": rows.n.tolist(), "k": k}
                    bodies.append({**body, "exclude": exclude} if exclude else body)
                batch = client.post("/recommend/batch", json={"users": bodies}).json()["results"]
                single = [client.post("/recommend", json=bodies[0]).json()]
                for got in (batch, single):
                    for (items, want), answer in zip(python, got):
                        assert answer["items"] == items
                        # a batch's GEMM may round its last bit differently: ids must agree
                        np.testing.assert_allclose(answer["scores"], want, rtol=1e-5, atol=1e-6)
                csv, out = tmp_path / "new.csv", tmp_path / "out.jsonl"
                new.to_csv(csv, index=False)
                args = ["recommend", str(path), str(csv), "-k", str(k), "-o", str(out), "-q"]
                assert main(args + (["--exclude", *exclude] if exclude else [])) == 0
                lines = [json.loads(line) for line in out.read_text().splitlines()]
                assert [line["user"] for line in lines] == users.tolist()
                for (items, want), line in zip(python, lines):
                    assert line["items"] == items
                    np.testing.assert_allclose(line["scores"], want, rtol=0, atol=1e-6)
    finally:
        server.should_exit = True


# ---------------------------------------------------------------- hostile input (issue 12)
def test_integers_over_the_json_digit_limit_get_a_400(model, encoder):
    # integers over Python's 4300-digit conversion limit were 500s
    server, url = serve_in_thread(create_app(model, encoder=encoder))
    big = b"1" + b"0" * 4400
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            for path, content in (
                ("/recommend", b'{"items": ["m1"], "k": ' + big + b"}"),
                ("/recommend", b'{"items": [' + big + b"]}"),
                ("/recommend", b'{"items": ["m1"], "values": [' + big + b"]}"),
                ("/recommend/batch", b'{"users": [{"items": [' + big + b"]}]}"),
            ):
                answer = client.post(path, content=content)
                assert answer.status_code == 400, answer.text
                assert "4300" in answer.json()["detail"]
    finally:
        server.should_exit = True


def test_ids_beyond_int64_without_id_maps_and_no_paths_in_model(model, tmp_path):
    plain = ClosedFormFoldIn(factors=model.factors_).fit(np.eye(model.n_features_in_)[:50])
    path = skfewrec.save(plain, tmp_path / "secret-name.zip")
    server, url = serve_in_thread(create_app(path))
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            for items in ([2**70], [-(2**70)], [2**63]):
                bad = client.post("/recommend", json={"items": [0, *items], "k": 3})
                assert bad.status_code == 422, bad.text
                assert "outside [0, 120)" in bad.json()["detail"]
            ok = client.post("/recommend", json={"items": [0], "exclude": [2**70], "k": 3})
            assert ok.status_code == 200
            described = client.get("/model").text
            assert "secret-name" not in described and str(tmp_path) not in described
            assert "/" not in "".join(str(v) for v in json.loads(described)["params"].values())
    finally:
        server.should_exit = True


class _LoggedRecords(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def server_logs():
    """Every record of skfewrec.serve and uvicorn (which does not propagate to the root)."""
    handler = _LoggedRecords()
    loggers = [logging.getLogger(name) for name in ("skfewrec.serve", "uvicorn", "uvicorn.error")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    yield handler.records
    for lg, level in zip(loggers, levels):
        lg.removeHandler(handler)
        lg.setLevel(level)


def test_a_failing_model_answers_a_json_500_and_logs_one_line(server_logs):
    from skfewrec import MostPopular

    broken = MostPopular().fit(np.eye(6))
    server, url = serve_in_thread(create_app(broken))
    try:
        broken.item_popularity_[:] = np.nan  # a corrupt model: recommend answers -1 ids
        with httpx.Client(base_url=url, timeout=10) as client:
            answer = client.post("/recommend", json={"items": [0], "k": 3})
            assert client.get("/health").status_code == 200  # still serving
    finally:
        server.should_exit = True
    assert answer.status_code == 500
    assert "empty slots" in answer.json()["detail"]
    errors = [r for r in server_logs if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert "\n" not in errors[0].getMessage()


def test_client_disconnect_mid_body_logs_one_line(model, encoder, server_logs):
    server, url = serve_in_thread(create_app(model, encoder=encoder))
    host, port = url.removeprefix("http://").split(":")
    try:
        for _ in range(3):
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(
                    b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 1000\r\n\r\n{"items": ['
                )
                time.sleep(0.1)
        time.sleep(0.5)
        assert httpx.get(url + "/health", timeout=10).status_code == 200
    finally:
        server.should_exit = True
    assert not [r for r in server_logs if r.exc_info is not None]
    assert not [r for r in server_logs if r.levelno >= logging.ERROR]
    disconnects = [r for r in server_logs if "disconnected" in r.getMessage()]
    assert len(disconnects) == 3


def test_serve_startup_errors_are_clear_and_documented(model, encoder, tmp_path, capsys):
    from skfewrec.apps.cli import main

    path = str(skfewrec.save(model, tmp_path / "m.zip", encoder=encoder))
    assert main(["serve", path, "--port", "99999"]) == 2
    assert "a TCP port is from 0 to 65535, got 99999" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", path, "--port", str(port), "-q"]) == 3
    err = capsys.readouterr().err.strip()
    assert err == (
        f"skfewrec serve: error: cannot listen on 127.0.0.1:{port}: Address already in use; "
        "another process is using it; stop it or pick another --port."
    )
    # 192.0.2.1 (TEST-NET-1) is an address, but not one of this machine
    assert main(["serve", path, "--host", "192.0.2.1", "--port", "0", "-q"]) == 3
    err = capsys.readouterr().err
    assert "cannot listen on 192.0.2.1:0: Cannot assign requested address" in err
    assert err.count("\n") == 1  # one line, no traceback


# ---------------------------------------------------------------- issue 11: smaller doors
def test_openapi_documents_the_scoring_routes_with_their_models(client):
    schema = client.get("/openapi.json").json()
    for path, request, response in [
        ("/recommend", "RecommendRequest", "RecommendResponse"),
        ("/recommend/batch", "BatchRequest", "BatchResponse"),
    ]:
        post = schema["paths"][path]["post"]
        body = post["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{request}"}
        ok = post["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{response}"}
        assert {"400", "413", "422", "500"} <= set(post["responses"])
    models = schema["components"]["schemas"]
    assert set(models["RecommendRequest"]["properties"]) == {
        "items", "values", "k", "exclude", "filter_seen"
    }  # fmt: skip
    assert models["RecommendRequest"]["required"] == ["items"]
    assert set(models["RecommendResponse"]["properties"]) == {"items", "scores", "unknown"}
    assert "/health" in schema["paths"] and "/model" in schema["paths"]
    # the routes still parse their bodies themselves: same messages as before
    answer = client.post("/recommend", json={"items": ["m1"], "user": 3})
    assert answer.status_code == 422 and "unknown field" in answer.json()["detail"]


def test_k_over_the_catalogue_is_python_s_error(model, encoder):
    app = create_app(model, encoder=encoder, max_k=1000)
    server, url = serve_in_thread(app)
    try:
        n = model.n_features_in_
        answer = httpx.post(f"{url}/recommend", json={"items": ["m1"], "k": n + 1}, timeout=10)
        with pytest.raises(ValueError) as python:
            model.recommend(np.zeros((1, n)), k=n + 1)
        assert answer.status_code == 422
        assert answer.json()["detail"] == f"body.{python.value}"
        assert httpx.post(f"{url}/recommend", json={"items": ["m1"], "k": n}).status_code == 200
    finally:
        server.should_exit = True


def test_access_log_prints_without_log_level_info(model, encoder, tmp_path):
    path = skfewrec.save(model, tmp_path / "m.zip", encoder=encoder)
    proc = subprocess.Popen(
        [sys.executable, "-m", "skfewrec", "serve", str(path), "--port", "0", "--access-log"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    try:
        line = proc.stderr.readline().decode()
        while line and not line.startswith("serving"):
            line = proc.stderr.readline().decode()
        url = line.split(" on ", 1)[1].split()[0]
        assert httpx.post(f"{url}/recommend", json={"items": ["m3"]}, timeout=10).is_success
        logged = proc.stdout.readline().decode()
        assert '"POST /recommend HTTP/1.1" 200' in logged, logged
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# ---------------------------------------------------------------- issue 11: the data contract
def test_http_applies_the_fitted_contract_like_the_cli(small_interactions, tmp_path, capsys):
    from skfewrec.apps.cli import main

    log = _log(small_interactions)
    log[log.user < 250].to_csv(tmp_path / "train.csv", index=False)
    new = log[log.user >= 250]
    new.to_csv(tmp_path / "new.csv", index=False)
    path = tmp_path / "m.zip"
    fit = ["fit", str(tmp_path / "train.csv"), "-o", str(path), "--value-col", "n",
           "--min-value", "2", "--binarize", "--duplicates", "max", "--n-components", "4",
           "--max-iter", "3", "-q"]  # fmt: skip
    assert main(fit) == 0
    assert main(["recommend", str(path), str(tmp_path / "new.csv"), "-k", "5", "-q"]) == 0
    cli = pd.read_csv(io.StringIO(capsys.readouterr().out))
    server, url = serve_in_thread(create_app(str(path)))
    try:
        for user, rows in list(new.groupby("user", sort=False))[:10]:
            raw = {"items": rows.item.tolist(), "values": rows.n.tolist(), "k": 5}
            answer = httpx.post(f"{url}/recommend", json=raw, timeout=10).json()
            expected = cli[cli.user == user]
            assert answer["items"] == expected.item.tolist()
            np.testing.assert_allclose(answer["scores"], expected.score, rtol=1e-5)
            kept = rows[rows.n >= 2]
            pre = {"items": kept.item.tolist(), "values": kept.n.tolist(), "k": 5}
            both = httpx.post(f"{url}/recommend/batch", json={"users": [
                {**raw, "filter_seen": False}, {**pre, "filter_seen": False},
                {**raw, "items": raw["items"] * 3, "values": raw["values"] * 3},
            ]}, timeout=10).json()["results"]  # fmt: skip
            assert both[0]["items"] == both[1]["items"]  # the filter is the model's
            assert both[2]["items"] == answer["items"]  # duplicates: the model's max
            # a low value never counts as a like, and is never recommended back
            assert not set(answer["items"]) & set(rows.item)
    finally:
        server.should_exit = True


def test_a_python_pipeline_serves(small_interactions, tmp_path):
    from skfewrec.pipeline import make_pipeline
    from skfewrec.preprocessing import LogConfidence

    log = _log(small_interactions[:250])
    factors = ALSFactors(n_components=4, max_iter=3, random_state=0)
    pipe = make_pipeline(
        InteractionEncoder(value_col="n", handle_unknown="ignore"),
        LogConfidence(),
        ClosedFormFoldIn(factors=factors),
    ).fit(log)
    path = skfewrec.save(pipe, tmp_path / "pipe.zip")
    server, url = serve_in_thread(create_app(str(path)))
    try:
        model = httpx.get(f"{url}/model", timeout=10).json()
        assert model["class"] == "RecommenderPipeline" and model["n_items"] == 120
        answer = httpx.post(
            f"{url}/recommend", json={"items": ["m1", "m5", "nope"], "values": [3, 1, 1], "k": 4}
        ).json()
        expected = pipe.recommend(
            pd.DataFrame({"user": [0, 0], "item": ["m1", "m5"], "n": [3, 1]}), k=4
        )
        assert answer["items"] == expected["item"].tolist() and answer["unknown"] == ["nope"]
        empty = httpx.post(f"{url}/recommend", json={"items": [], "k": 3}).json()
        assert len(empty["items"]) == 3
    finally:
        server.should_exit = True
