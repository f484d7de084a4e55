"""HTTP scoring service: a FastAPI app around a model bundle, run by uvicorn.

Needs the optional extra ``pip install skfewrec[serve]`` (fastapi, uvicorn); both
are imported only when an app is built.

Endpoints
---------
``POST /recommend``
    ``{"items": [raw ids], "values": [numbers] (optional), "k": 10,
    "exclude": [raw ids] (optional), "filter_seen": true}`` ->
    ``{"items": [raw ids], "scores": [floats], "unknown": [raw ids]}``.
``POST /recommend/batch``
    ``{"users": [<a /recommend body>, ...]}`` -> ``{"results": [<a /recommend answer>, ...]}``.
``POST /items``
    ``{"items": [{"id": raw id, "users": [raw user ids]}, ...]}`` -> ``{"added": [raw
    ids], "n_items": int, "unknown_users": [raw ids]}``: new items, placed from the warm
    users who took them (the model's ``add_items``), servable from the next request.
``GET /health``
    ``{"status": "ok"}`` once the model is loaded.
``GET /model``
    What is being served: class, parameters, catalogue size, id policy, limits.

Requests arriving while the model is busy are scored together in one batched
call (dynamic batching, no added wait), so throughput grows with concurrency.
Every bad request gets a 4xx answer ``{"detail": "<what was wrong and how to fix
it>"}``: malformed JSON or numbers JSON cannot hold (400), a body over the size
limit (413), wrong types, a ``k`` or a number of shots over the limits, values
outside [0, 1e6], unknown ids under the bundle's ``handle_unknown="error"``
policy (422). A failure of the model itself answers 500 with the same kind of
body. Each event is logged on one line (logger ``skfewrec.serve``), never as a
traceback.

Recommendations come from :func:`skfewrec.apps._answer.recommend_each`, i.e. the
model's own ``recommend`` called as in Python: the answer for a request is the
answer of ``recommend`` for the same interactions, ``k``, ``exclude`` and
``filter_seen``.
"""

import asyncio
import contextlib
import copy
import json
import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._core.validation import MAX_INTERACTION_VALUE, check_k
from ._answer import load_bundle

_logger = logging.getLogger("skfewrec.serve")

#: default limits of a service (each is a keyword of :func:`create_app`)
DEFAULT_LIMITS = {
    "max_k": 100,
    "max_shots": 1000,
    "max_batch": 256,
    "max_body_bytes": 1 << 20,
}
_N_SHOWN = 5


class RequestError(ValueError):
    """A request the service refuses, with the HTTP status to answer.

    Parameters
    ----------
    message : str
        What was wrong and how to fix it (the answer's ``detail``).
    status : int, default=422
        The HTTP status code.

    Examples
    --------
    >>> from skfewrec.apps.serve import RequestError
    >>> RequestError("k must be an integer >= 1", status=422).status
    422
    """

    def __init__(self, message, status=422):
        super().__init__(message)
        self.status = status


def _shown(values):
    values = list(values)
    text = ", ".join(json.dumps(v) for v in values[:_N_SHOWN])
    return text + (", ..." if len(values) > _N_SHOWN else "")


class ItemMap:
    """Raw item ids <-> column indices for the service (or plain indices without ids).

    Parameters
    ----------
    n_items : int
        The catalogue size of the model.
    encoder : InteractionEncoder, default=None
        The bundle's id maps. None: items are column indices ``0..n_items-1`` and an
        out-of-range index is an error.

    Examples
    --------
    >>> import pandas as pd
    >>> from skfewrec.preprocessing import InteractionEncoder
    >>> from skfewrec.apps.serve import ItemMap
    >>> enc = InteractionEncoder().fit(pd.DataFrame({"user": [1, 1], "item": [30, 10]}))
    >>> m = ItemMap(2, enc)
    >>> m.index([30, "10"], name="items")
    (array([1, 0]), [])
    >>> m.raw([0, 1])
    [10, 30]
    """

    def __init__(self, n_items, encoder=None):
        self.n_items = int(n_items)
        self.encoder = encoder
        self.policy = "error" if encoder is None else encoder.handle_unknown
        if encoder is None:
            self._ids = None
            self._lookup = None
            return
        ids = encoder.item_ids_
        self._ids = ids.tolist()  # python values: JSON-ready
        lookup = {raw: j for j, raw in enumerate(self._ids)}
        # ids typed the other way round in JSON ("42" for 42, or 42 for "42") also match
        lookup.update({str(raw): j for j, raw in enumerate(self._ids) if not isinstance(raw, str)})
        if ids.dtype == object or ids.dtype.kind == "U":
            lookup.update({int(raw): j for j, raw in enumerate(self._ids) if _is_int_text(raw)})
        self._lookup = lookup

    def index(self, ids, *, name, policy=None):
        """Column indices of raw ids, and the unknown ids (dropped under "ignore")."""
        policy = self.policy if policy is None else policy
        if self._lookup is None:
            n = self.n_items
            # any integer (even one beyond int64) outside [0, n) is unknown, not an overflow
            idx = np.fromiter(
                (i if isinstance(i, int) and 0 <= i < n else -1 for i in ids), np.int64, len(ids)
            )
            bad = idx < 0
            unknown = [ids[i] for i in np.flatnonzero(bad)]
        else:
            get = self._lookup.get
            idx = np.fromiter((get(i, -1) for i in ids), np.int64, len(ids))
            bad = idx < 0
            unknown = [ids[i] for i in np.flatnonzero(bad)] if bad.any() else []
        if unknown and policy == "error":
            what = (
                "item id(s) not in the model's catalogue"
                if self._lookup is not None
                else f"item indices outside [0, {self.n_items}) (this bundle has no id maps)"
            )
            raise RequestError(
                f"{name} has {len(unknown)} {what}: {_shown(unknown)}. Send ids the model "
                "was trained on (GET /model describes it)."
            )
        return idx, unknown

    def raw(self, indices):
        """Raw ids of column indices (JSON-ready Python values)."""
        if self._ids is None:
            return [int(i) for i in indices]
        ids = self._ids
        return [ids[i] for i in indices]


def _is_int_text(value):
    return isinstance(value, str) and value.strip().lstrip("-").isdigit()


class Scorer:
    """Turns parsed requests into recommendations through the one door, ``recommend_log``.

    Each batch of requests becomes one log (one pseudo-user per request, the
    request's items and values as its events) and goes through
    :func:`skfewrec.apps._answer.recommend_log`, as in Python and the CLI: the
    model's data contract (value filter, duplicate policy, binarisation, weighting
    steps) applies to requests exactly as to a log.

    Parameters
    ----------
    estimator : fitted recommender or Pipeline
        Anything with ``recommend(X, k, *, filter_seen, exclude)``, or a pipeline
        ending in one (possibly starting with the InteractionEncoder).
    encoder : InteractionEncoder, default=None
        The id maps (from the bundle); None: the pipeline's first step when it is
        an encoder, else items are column indices.
    max_k, max_shots : int
        Limits of a request (see :func:`create_app`).

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec import ALSFactors, ClosedFormFoldIn
    >>> from skfewrec.apps.serve import Scorer
    >>> factors = ALSFactors.from_arrays(np.array([[1.0, 0], [0.9, 0.1], [0, 1.0]]))
    >>> rec = ClosedFormFoldIn(factors).fit(np.eye(3))
    >>> scorer = Scorer(rec, max_k=10, max_shots=10)
    >>> (answer,) = scorer.score([scorer.parse({"items": [0], "k": 2})])
    >>> sorted(answer), len(answer["items"])
    (['items', 'scores', 'unknown'], 2)
    """

    def __init__(self, estimator, *, encoder=None, max_k, max_shots):
        from ..preprocessing import InteractionEncoder

        steps = getattr(estimator, "steps", None)
        if steps and isinstance(steps[0][1], InteractionEncoder):
            # the pipeline's own id maps; the rest of it is the model
            if encoder is None:
                encoder = steps[0][1]
            estimator = estimator[1:] if len(steps) > 2 else steps[-1][1]
        self.estimator = estimator
        self.max_k = max_k
        self.max_shots = max_shots
        n_items = len(encoder.item_ids_) if encoder is not None else estimator.n_features_in_
        self.items = ItemMap(int(n_items), encoder)

    @property
    def items(self):
        """The id maps of the requests (:class:`ItemMap`); setting them (new items added
        to the served model) also sets the catalogue size and the log's encoder."""
        return self._items

    @items.setter
    def items(self, items):
        from ..preprocessing import InteractionEncoder

        self._items = items
        self.n_items = items.n_items
        encoder = items.encoder
        if encoder is None:  # column indices: an encoder whose raw ids are the indices
            encoder = InteractionEncoder(value_col="value", handle_unknown="ignore").fit(
                pd.DataFrame({"user": 0, "item": np.arange(self.n_items), "value": np.float32(1)})
            )
        if encoder.value_col is None:
            # a model of event counts: a request's values weigh its items (1 each by default)
            encoder = copy.copy(encoder).set_params(value_col="value")
        self.encoder = encoder
        self._item_ids = encoder.item_ids_
        # a request without values: every item is a kept interaction (it passes min_value)
        self._default_value = max(1.0, float(encoder.min_value or 0))

    def parse(self, body, where="body"):
        """Check one user's request (a dict from JSON) and map its ids; raises RequestError."""
        if not isinstance(body, dict):
            raise RequestError(f'{where} must be a JSON object like {{"items": [...], "k": 10}}.')
        extra = set(body) - {"items", "values", "k", "exclude", "filter_seen"}
        if extra:
            raise RequestError(
                f"{where} has unknown field(s) {_shown(sorted(extra))}; the fields are items, "
                "values, k, exclude and filter_seen."
            )
        items = body.get("items")
        if not isinstance(items, list):
            raise RequestError(
                f"{where}.items must be a list of the user's item ids (the shots), got "
                f"{type(items).__name__ if items is not None else 'nothing'}."
            )
        if len(items) > self.max_shots:
            raise RequestError(
                f"{where}.items has {len(items)} shots, more than this service's limit of "
                f"{self.max_shots} (--max-shots); send the user's most recent ones.",
                status=413,
            )
        _check_ids(items, f"{where}.items")
        values = body.get("values")
        if values is None:
            values = np.full(len(items), self._default_value, dtype=np.float32)
        else:
            if not isinstance(values, list) or len(values) != len(items):
                raise RequestError(
                    f"{where}.values must be a list of numbers as long as items "
                    f"({len(items)}), got "
                    + (f"{len(values)}" if isinstance(values, list) else type(values).__name__)
                    + "."
                )
            # comparisons, not float(): exact for integers of any size, false for NaN
            if not all(
                isinstance(v, int | float)
                and not isinstance(v, bool)
                and 0 <= v <= MAX_INTERACTION_VALUE
                for v in values
            ):
                raise RequestError(
                    f"{where}.values must hold numbers from 0 to {MAX_INTERACTION_VALUE:g} "
                    "(confidences: counts, ratings), one per item."
                )
            values = np.asarray(values, dtype=np.float32)
        k = body.get("k", 10)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise RequestError(f"{where}.k must be an integer >= 1, got {json.dumps(k)}.")
        if k > self.max_k:
            raise RequestError(
                f"{where}.k={k} is larger than this service's limit of {self.max_k} (--max-k)."
            )
        try:  # the library's one policy: k over the catalogue is an error, never clamped
            check_k(k, self.n_items, name=f"{where}.k")
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        exclude = body.get("exclude") or []
        if not isinstance(exclude, list):
            raise RequestError(f"{where}.exclude must be a list of item ids.")
        if len(exclude) > self.n_items + self.max_shots:
            raise RequestError(f"{where}.exclude is longer than the catalogue.", status=413)
        _check_ids(exclude, f"{where}.exclude")
        filter_seen = body.get("filter_seen", True)
        if not isinstance(filter_seen, bool):
            raise RequestError(f"{where}.filter_seen must be true or false.")
        idx, unknown = self.items.index(items, name=f"{where}.items")
        known = idx >= 0
        idx, values = idx[known], values[known]
        if values.sum(dtype=np.float64) > MAX_INTERACTION_VALUE:  # a repeated item may exceed it
            cells, where_cell = np.unique(idx, return_inverse=True)
            if np.bincount(where_cell, weights=values).max() > MAX_INTERACTION_VALUE:
                raise RequestError(
                    f"{where}.values of repeated items sum to more than "
                    f"{MAX_INTERACTION_VALUE:g}, the largest interaction value."
                )
        # excluding an item the model does not know is a no-op, never an error
        ex_idx, _ = self.items.index(exclude, name=f"{where}.exclude", policy="ignore")
        return {
            "indices": idx,
            "values": values,
            "k": k,
            "exclude": np.unique(ex_idx[ex_idx >= 0]),
            "filter_seen": filter_seen,
            "unknown": unknown,
        }

    def score(self, users):
        """Recommendations for parsed users: one ``recommend_log`` per distinct option set."""
        groups = {}
        for row, user in enumerate(users):
            key = (user["k"], user["filter_seen"], tuple(user["exclude"].tolist()))
            groups.setdefault(key, []).append(row)
        answers = [None] * len(users)
        for (k, filter_seen, exclude), rows in groups.items():
            for row, answer in zip(rows, self._score_group([users[r] for r in rows], k,
                                                            filter_seen, exclude)):  # fmt: skip
                answers[row] = {**answer, "unknown": users[row]["unknown"]}
        return answers

    def _score_group(self, users, k, filter_seen, exclude):
        """``recommend_log`` for users sharing their options; (items, scores) per user."""
        from ._answer import recommend_log

        enc = self.encoder
        deny = np.asarray(exclude, dtype=np.int64) if exclude else None
        exclude = None if deny is None else self._item_ids[deny]
        lengths = np.array([u["indices"].size for u in users])
        answers = [{"items": [], "scores": []} for _ in users]
        present = np.flatnonzero(lengths > 0)
        if present.size:
            indices = np.concatenate([users[i]["indices"] for i in present])
            log = pd.DataFrame(
                {
                    enc.user_col: np.repeat(present, lengths[present]),
                    enc.item_col: self._item_ids[indices],
                    enc.value_col: np.concatenate([users[i]["values"] for i in present]),
                }
            )
            top = recommend_log(
                self.estimator,
                enc,
                log,
                k=k,
                filter_seen=filter_seen,
                exclude=exclude,
                user_col="user",
                item_col="item",
            )
            owner = top["user"].to_numpy()
            bounds = np.searchsorted(owner, np.r_[present, present[-1] + 1])
            items, scores = top["item"].tolist(), top["score"].tolist()
            for i, lo, hi in zip(present, bounds[:-1], bounds[1:]):
                answers[i] = {"items": items[lo:hi], "scores": scores[lo:hi]}
        empty = np.flatnonzero(lengths == 0)
        if empty.size:  # no known interaction: the model's answer for an empty row
            for i, answer in zip(empty, self._score_empty(empty.size, k, filter_seen, deny)):
                answers[i] = answer
        return answers

    def _score_empty(self, n_users, k, filter_seen, deny):
        """What ``recommend_log`` answers a user whose log holds no known interaction."""
        from ._answer import _split_model, recommend_rows

        _, transformers, recommender = _split_model(self.estimator, self.encoder)
        X = sp.csr_matrix((n_users, self.n_items), dtype=np.float32)
        Xt = X if transformers is None else transformers.transform(X)
        ids, scores = recommend_rows(recommender, Xt, k=k, filter_seen=filter_seen, exclude=deny)
        out = []
        for top, top_scores in zip(ids, scores):
            keep = top >= 0
            out.append(
                {
                    "items": self._item_ids[top[keep]].tolist(),
                    "scores": top_scores[keep].astype(np.float32).tolist(),
                }
            )
        return out


def _check_ids(ids, where):
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int | str):
            raise RequestError(
                f"{where} must hold item ids as strings or integers, got {json.dumps(i)}."
            )


class _Batcher:
    """Scores concurrent requests together: whatever is waiting when the model frees up."""

    def __init__(self, scorer, max_batch):
        self.scorer = scorer
        self.max_batch = max_batch
        self._pending = []
        self._running = False
        # one scoring thread: the event loop keeps reading requests meanwhile
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="skfewrec-score")

    async def submit(self, users):
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in users]
        self._pending.extend(zip(users, futures))
        if not self._running:
            self._running = True
            loop.create_task(self._drain())
        return await asyncio.gather(*futures)

    async def _drain(self):
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                users = [user for user, _ in batch]
                try:
                    results = await loop.run_in_executor(self._executor, self.scorer.score, users)
                except Exception as exc:  # a model failure answers every waiting request
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, fut), result in zip(batch, results):
                    if not fut.done():
                        fut.set_result(result)
        finally:
            self._running = False

    def close(self):
        self._executor.shutdown(wait=False)


def _describe(estimator, limits, items):
    """What ``GET /model`` answers: the model, its catalogue and limits (no file paths)."""

    def jsonable(value):
        if value is None or isinstance(value, bool | int | str):
            return value
        if isinstance(value, float):
            return value if np.isfinite(value) else repr(value)
        return type(value).__name__  # an estimator or array: its kind, nothing of the host

    params = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    item_factors = getattr(estimator, "item_factors_", None)
    from .. import __version__

    return {
        "class": type(estimator).__name__,
        "params": {k: jsonable(v) for k, v in params.items()},
        "n_items": items.n_items,
        "n_components": None if item_factors is None else int(item_factors.shape[1]),
        "id_maps": items.encoder is not None,
        "unknown_ids": items.policy,
        "limits": limits,
        "skfewrec_version": __version__,
    }


def _check_limits(limits):
    unknown = set(limits) - set(DEFAULT_LIMITS)
    if unknown:
        raise TypeError(
            f"Unknown limit(s) {sorted(unknown)}; the limits are {list(DEFAULT_LIMITS)}."
        )
    limits = {**DEFAULT_LIMITS, **limits}
    for name, value in limits.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
    return limits


def create_app(model, *, encoder=None, **limits):
    """Build the FastAPI app serving a model bundle.

    Parameters
    ----------
    model : str, path-like or fitted recommender
        A bundle path (loaded with :func:`skfewrec.load`, with its id maps) or a
        loaded model.
    encoder : InteractionEncoder, default=None
        The id maps of a loaded ``model``: requests then use raw ids. None (and a
        bundle without id maps): items are column indices. Ignored for a path,
        whose bundle carries its own.
    **limits : int
        ``max_k`` (largest ``k``, default 100), ``max_shots`` (most items in one
        user's request, default 1000), ``max_batch`` (most users in one batch
        request, and in one model call, default 256), ``max_body_bytes`` (largest
        request body, default 1 MiB).

    Returns
    -------
    app : fastapi.FastAPI
        Run it with uvicorn (or :func:`run`).

    Examples
    --------
    >>> import json, urllib.request
    >>> from skfewrec import ALSFactors, ClosedFormFoldIn
    >>> from skfewrec.datasets import make_interactions
    >>> from skfewrec.apps.serve import create_app, serve_in_thread
    >>> X = make_interactions(n_users=200, n_items=50, random_state=0).X
    >>> rec = ClosedFormFoldIn(ALSFactors(n_components=4, random_state=0)).fit(X)
    >>> server, url = serve_in_thread(create_app(rec, max_k=20))
    >>> request = urllib.request.Request(url + "/recommend", method="POST",
    ...                                  data=json.dumps({"items": [3, 7], "k": 5}).encode())
    >>> with urllib.request.urlopen(request) as answer:
    ...     len(json.load(answer)["items"])
    5
    >>> server.should_exit = True
    """
    try:
        from fastapi import FastAPI
        from fastapi.responses import Response
        from starlette.requests import ClientDisconnect
        from starlette.routing import Route
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "The HTTP service needs fastapi and uvicorn: pip install 'skfewrec[serve]'."
        ) from exc
    limits = _check_limits(limits)
    if isinstance(model, str | os.PathLike):
        model, encoder = load_bundle(model)
    if getattr(model, "steps", None):  # a Pipeline ending in a recommender recommends
        from ..pipeline import as_recommender_pipeline

        model = as_recommender_pipeline(model)
    if not hasattr(model, "recommend") or not (
        hasattr(model, "n_features_in_") or getattr(model, "steps", None)
    ):
        raise TypeError(
            f"model must be a bundle path or a fitted skfewrec recommender, got "
            f"{type(model).__name__}."
        )
    scorer = Scorer(model, encoder=encoder, max_k=limits["max_k"], max_shots=limits["max_shots"])
    batcher = _Batcher(scorer, limits["max_batch"])
    description = _describe(model, limits, scorer.items)
    max_body = limits["max_body_bytes"]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        batcher.close()

    app = FastAPI(
        lifespan=lifespan,
        title="skfewrec scoring service",
        version=description["skfewrec_version"],
        description=(
            "Top-k recommendations for new users from a few interactions. "
            '`POST /recommend` with `{"items": [raw ids], "values": [numbers], "k": 10, '
            '"exclude": [raw ids], "filter_seen": true}` answers `{"items", "scores", '
            '"unknown"}`; `POST /recommend/batch` takes `{"users": [...]}`.'
        ),
    )
    app.state.scorer = scorer
    app.state.description = description

    def answer(payload, status=200):
        return Response(
            json.dumps(payload, separators=(",", ":")).encode(),
            status_code=status,
            media_type="application/json",
        )

    async def read_json(request):
        too_large = RequestError(
            f"The request body is larger than this service's limit of {max_body} bytes.",
            status=413,
        )
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_body):
            raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                raise too_large
        if not body:
            raise RequestError("The request body is empty; send a JSON object.", status=400)
        try:
            return json.loads(body)
        except RecursionError:
            raise RequestError("The request body is nested too deeply.", status=400) from None
        except ValueError as exc:  # bad JSON, bad UTF-8, an integer over 4300 digits
            raise RequestError(
                f"The request body is not JSON this service can read: {exc}.", status=400
            ) from None

    def guarded(endpoint):
        """Every outcome of ``endpoint`` is a JSON answer and at most one log line."""

        async def run_endpoint(request):
            try:
                return await endpoint(request)
            except RequestError as exc:
                return answer({"detail": str(exc)}, exc.status)
            except ClientDisconnect:
                _logger.info("%s %s: the client disconnected", request.method, request.url.path)
                return answer({"detail": "The client disconnected."}, 400)
            except Exception as exc:  # the model failed: one line, not a traceback
                detail = " ".join(f"{type(exc).__name__}: {exc}".split())
                _logger.error("%s %s: 500 %s", request.method, request.url.path, detail)
                return answer({"detail": f"The model failed on this request ({detail})."}, 500)

        return run_endpoint

    @app.get("/health")
    async def health():
        """Liveness: answers once the model is loaded."""
        return answer({"status": "ok"})

    @app.get("/model")
    async def model_info():
        """What is being served: class, parameters, catalogue, id policy and limits."""
        return answer(description)

    async def recommend(request):
        """Top-k for one new user from their interactions (raw item ids)."""
        body = await read_json(request)
        user = scorer.parse(body)
        (result,) = await batcher.submit([user])
        return answer(result)

    async def recommend_batch(request):
        """Top-k for several users: ``{"users": [<a /recommend body>, ...]}``."""
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("users"), list):
            raise RequestError('The body must be {"users": [{"items": [...], "k": 10}, ...]}.')
        if set(body) - {"users"}:
            raise RequestError('The body has fields other than "users".')
        if not body["users"]:
            raise RequestError('"users" is empty; send at least one user.')
        if len(body["users"]) > limits["max_batch"]:
            raise RequestError(
                f"The batch has {len(body['users'])} users, more than this service's limit of "
                f"{limits['max_batch']} (--max-batch); split it.",
                status=413,
            )
        users = [scorer.parse(u, f"users[{i}]") for i, u in enumerate(body["users"])]
        return answer({"results": await batcher.submit(users)})

    # plain Starlette routes: FastAPI's per-request dependency solving is a large share
    # of the service's own time per request, and these endpoints parse their body alone
    app.router.routes[:0] = [
        Route("/recommend", guarded(recommend), methods=["POST"]),
        Route("/recommend/batch", guarded(recommend_batch), methods=["POST"]),
    ]
    add_items = _add_items_endpoint(scorer, batcher, description, limits, read_json, answer)
    app.router.routes.append(Route("/items", guarded(add_items), methods=["POST"]))

    _document_routes(app)
    # a first call pays for lazy imports and thread-pool discovery, not the first user
    scorer.score([scorer.parse({"items": [], "k": 1})])
    return app


def _openapi_models():
    """The pydantic models of the scoring endpoints, for the OpenAPI schema only.

    The endpoints parse their bodies themselves (the messages and status codes of
    bad requests are the service's own); these models describe the same fields.
    """
    from typing import Annotated

    from pydantic import BaseModel, ConfigDict, Field

    ItemId = int | str

    class RecommendRequest(BaseModel):
        """One new user: their interactions (raw item ids) and the options of the answer."""

        model_config = ConfigDict(extra="forbid")
        items: list[ItemId] = Field(description="the user's item ids (the shots), raw ids")
        values: list[Annotated[float, Field(ge=0, le=MAX_INTERACTION_VALUE)]] | None = Field(
            None,
            description="one value per item (ratings, counts); the model's data contract "
            "(filters, binarisation, duplicates) applies as at fit time; default: 1 each",
        )
        k: int = Field(
            10, ge=1, description="items to recommend, at most --max-k and the catalogue"
        )
        exclude: list[ItemId] | None = Field(None, description="item ids never to recommend")
        filter_seen: bool = Field(True, description="never recommend the user's own items")

    class RecommendResponse(BaseModel):
        """The top-k of one user, best first."""

        items: list[ItemId] = Field(description="recommended raw item ids, best first")
        scores: list[float] = Field(description="the score of each recommended item")
        unknown: list[ItemId] = Field(description="request items the model does not know")

    class BatchRequest(BaseModel):
        """Several users, scored in one call."""

        model_config = ConfigDict(extra="forbid")
        users: list[RecommendRequest] = Field(min_length=1, description="at most --max-batch")

    class BatchResponse(BaseModel):
        """One answer per user, in the order of the request."""

        results: list[RecommendResponse]

    class ErrorResponse(BaseModel):
        """A refused request or a failed model: what was wrong and how to fix it."""

        detail: str

    return RecommendRequest, RecommendResponse, BatchRequest, BatchResponse, ErrorResponse


#: (path, summary, request model, answer model) of each route parsed by hand; the
#: models are names returned by :func:`_openapi_models`
_DOCUMENTED_ROUTES = [
    ("/recommend", "Top-k for one new user", "RecommendRequest", "RecommendResponse"),
    ("/recommend/batch", "Top-k for several new users", "BatchRequest", "BatchResponse"),
]

_ERROR_STATUSES = {
    "400": "Malformed JSON, or a number JSON cannot hold",
    "413": "A body, a number of shots or a batch over the service's limits",
    "422": "Wrong types or values, k over the limit or the catalogue, unknown ids "
    "under the 'error' policy",
    "500": "The model failed on this request",
}


def _document_routes(app):
    """Add the hand-parsed routes, with their request and answer models, to the
    app's OpenAPI schema (``GET /openapi.json``, the ``/docs`` page)."""
    models = {model.__name__: model for model in _openapi_models()}
    default = app.openapi

    def openapi():
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = default()
        app.openapi_schema = None  # rebuilt below with the hand-parsed routes
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, model in models.items():
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[name] = body
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
        for path, summary, request, response in _DOCUMENTED_ROUTES:
            schema.setdefault("paths", {})[path] = {
                "post": {
                    "summary": summary,
                    "operationId": path.strip("/").replace("/", "_") + "_post",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": f"#/components/schemas/{request}"}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "The recommendations",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": f"#/components/schemas/{response}"}
                                }
                            },
                        },
                        **{
                            status: {"description": text, "content": error}
                            for status, text in _ERROR_STATUSES.items()
                        },
                    },
                }
            }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


def _warm_users(estimator):
    """The number of warm users an estimator's ``add_items`` takes rows for, or None."""
    for owner in (estimator, getattr(estimator, "recommender_", None)):
        for holder in (owner, getattr(owner, "factors_", None)):
            users = getattr(holder, "user_factors_", None)
            if users is not None:
                return int(users.shape[0])
    return None


def _new_items_matrix(body, scorer, max_items, max_users):
    """Check a ``POST /items`` body: (new raw ids, warm users x new items, unknown users)."""
    estimator, encoder = scorer.estimator, scorer.items.encoder
    if not callable(getattr(estimator, "add_items", None)):
        raise RequestError(
            f"This model ({type(estimator).__name__}) cannot take new items: it has no "
            "add_items. Serve a ClosedFormFoldIn or NewItemRecommender bundle."
        )
    n_users = _warm_users(estimator)
    if n_users is None:
        raise RequestError("This model keeps no warm users, so it cannot place new items.")
    if encoder is not None and len(encoder.user_ids_) != n_users:
        raise RequestError(
            f"The bundle's id maps hold {len(encoder.user_ids_)} users but the model "
            f"{n_users} warm users; save the model with the encoder it was fitted with."
        )
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items or set(body) - {"items"}:
        raise RequestError(
            'The body must be {"items": [{"id": "new-1", "users": ["u1", "u2"]}, ...]}.'
        )
    if len(items) > max_items:
        raise RequestError(
            f"{len(items)} new items, more than this service's limit of {max_items} "
            "(--max-batch); send them in parts.",
            status=413,
        )
    ids, rows, cols, unknown = [], [], [], []
    lookup = None if encoder is None else {u: i for i, u in enumerate(encoder.user_ids_.tolist())}
    for j, item in enumerate(items):
        where = f"items[{j}]"
        if not isinstance(item, dict) or set(item) - {"id", "users"}:
            raise RequestError(f'{where} must be an object {{"id": ..., "users": [...]}}.')
        users = item.get("users")
        if not isinstance(users, list) or len(users) > max_users:
            raise RequestError(
                f"{where}.users must be a list of at most {max_users} user ids (--max-shots)."
            )
        _check_ids(users, f"{where}.users")
        if "id" not in item:
            raise RequestError(f"{where} has no id.")
        _check_ids([item["id"]], f"{where}.id")
        ids.append(item["id"])
        for user in users:
            if lookup is None:
                row = user if isinstance(user, int) and 0 <= user < n_users else -1
            else:
                row = lookup.get(user, lookup.get(str(user), -1))
                if row < 0 and _is_int_text(user):
                    row = lookup.get(int(user), -1)
            if row < 0:
                unknown.append(user)
            else:
                rows.append(row)
                cols.append(j)
    if unknown and scorer.items.policy == "error":
        raise RequestError(
            f"{len(unknown)} user id(s) are not warm users of the model: {_shown(unknown)}. "
            "Send users the model was trained on."
        )
    if encoder is None:
        expected = list(range(scorer.n_items, scorer.n_items + len(ids)))
        if ids != expected:
            raise RequestError(
                f"This bundle has no id maps: new items are column indices, so the ids must "
                f"be the next ones, {_shown(expected)}."
            )
    data = np.ones(len(rows), dtype=np.float32)
    X_new = sp.csr_matrix((data, (rows, cols)), shape=(n_users, len(ids)))
    X_new.data[:] = 1.0  # a user listed twice is one interaction
    return ids, X_new, unknown


def _add_items_endpoint(scorer, batcher, description, limits, read_json, answer):
    """``POST /items``: grow a copy of the model, then swap it in between two batches.

    The copy is grown on the scoring thread, so no request is scored while it
    grows and a failure leaves the served model as it was; the swap (model,
    catalogue size, id maps) happens there too, so every batch sees one model.
    """
    import copy

    from ..adapters._items import extend_item_ids

    def grow(ids, X_new):
        grown = copy.copy(scorer.estimator)
        if getattr(grown, "recommender_", None) is not None:  # a wrapper grows its inner model
            grown.recommender_ = copy.copy(grown.recommender_)
        grown.add_items(X_new)
        encoder = scorer.items.encoder
        encoder = None if encoder is None else extend_item_ids(encoder, ids)
        items = ItemMap(grown.n_features_in_, encoder)
        scorer.estimator, scorer.items, scorer.n_items = grown, items, items.n_items
        description["n_items"] = items.n_items
        return items.n_items

    async def add_items(request):
        """New items from the warm users who took them: servable from the next request."""
        body = await read_json(request)
        ids, X_new, unknown = _new_items_matrix(
            body, scorer, limits["max_batch"], limits["max_shots"]
        )
        loop = asyncio.get_running_loop()
        try:
            n_items = await loop.run_in_executor(batcher._executor, grow, ids, X_new)
        except (ValueError, OverflowError) as exc:  # refused ids or shapes: the request's fault
            raise RequestError(str(exc)) from None
        return answer({"added": ids, "n_items": n_items, "unknown_users": unknown})

    return add_items


_ENV_BUNDLE = "SKFEWREC_SERVE_BUNDLE"
_ENV_LIMITS = "SKFEWREC_SERVE_LIMITS"


def app_from_environment():
    """The app for a uvicorn worker process: bundle and limits from the environment.

    :func:`run` with ``workers > 1`` sets ``SKFEWREC_SERVE_BUNDLE`` (a bundle path)
    and ``SKFEWREC_SERVE_LIMITS`` (JSON) and names this factory to uvicorn, which
    calls it once in each worker.

    Returns
    -------
    app : fastapi.FastAPI

    Examples
    --------
    A worker process runs, in effect::

        SKFEWREC_SERVE_BUNDLE=model.zip uvicorn --factory skfewrec.apps.serve:app_from_environment
    """
    path = os.environ.get(_ENV_BUNDLE)
    if not path:
        raise RuntimeError(
            f"{_ENV_BUNDLE} is not set: start workers through skfewrec.apps.serve.run."
        )
    app = create_app(path, **json.loads(os.environ.get(_ENV_LIMITS, "{}")))
    _freeze_heap()
    return app


class StartupError(OSError):
    """The service cannot start: its address cannot be listened on.

    :func:`run` raises it before serving anything (a port in use, a host that
    does not resolve or is not an interface of this machine, a port needing
    privileges); ``skfewrec serve`` turns it into exit code 3.

    Examples
    --------
    >>> from skfewrec.apps.serve import StartupError
    >>> issubclass(StartupError, OSError)
    True
    """


def listen(host, port):
    """A TCP socket bound to ``host:port`` and listening (port 0: a free one).

    Parameters
    ----------
    host : str
        An interface name or address (``127.0.0.1``, ``::1``, ``0.0.0.0``, ``localhost``).
    port : int
        0 to 65535.

    Returns
    -------
    sock : socket.socket
        Accepting connections (the kernel queues them until the server runs).

    Raises
    ------
    ValueError
        ``port`` is not an integer in [0, 65535].
    StartupError
        The address cannot be listened on; the message says why and what to do.

    Examples
    --------
    >>> from skfewrec.apps.serve import listen
    >>> sock = listen("127.0.0.1", 0)
    >>> sock.getsockname()[1] > 0
    True
    >>> sock.close()
    >>> listen("127.0.0.1", 99999)
    Traceback (most recent call last):
    ...
    ValueError: port must be an integer from 0 to 65535, got 99999.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer from 0 to 65535, got {port!r}.")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, UnicodeError) as exc:
        raise StartupError(
            f"cannot listen on host {host!r}: it does not resolve ({exc}); pass an address of "
            "this machine, e.g. --host 127.0.0.1 or --host 0.0.0.0."
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        hint = (
            "another process is using it; stop it or pick another --port"
            if exc.errno == 98
            else "pick another --host/--port (ports below 1024 need privileges)"
        )
        raise StartupError(f"cannot listen on {host}:{port}: {reason}; {hint}.") from None
    sock.set_inheritable(True)
    return sock


def _url(sock):
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(
    model,
    *,
    encoder=None,
    host="127.0.0.1",
    port=8000,
    workers=1,
    http="auto",
    log_level="warning",
    access_log=False,
    announce=None,
    **limits,
):
    """Serve a model bundle over HTTP with uvicorn until interrupted.

    The model is loaded and the address bound before anything is announced:
    ``announce`` runs once the socket accepts connections.

    Parameters
    ----------
    model : str, path-like or fitted recommender
        What :func:`create_app` takes (a bundle path when ``workers > 1``).
    encoder : InteractionEncoder, default=None
        The id maps of a loaded ``model`` (see :func:`create_app`).
    host : str, default="127.0.0.1"
        Interface to listen on (``0.0.0.0`` for every interface).
    port : int, default=8000
        TCP port, 0 to 65535 (0: a free one).
    workers : int, default=1
        Worker processes, each with its own copy of the model. More than one
        lets scoring use several cores despite Python's GIL.
    http : {"auto", "httptools", "h11"}, default="auto"
        uvicorn's HTTP parser: "auto" takes httptools (C, installed by
        ``uvicorn[standard]``) when present, else h11 (pure Python, slower).
    log_level : str, default="warning"
        uvicorn's log level.
    access_log : bool, default=False
        Log every request (costs throughput).
    announce : callable, default=None
        Called as ``announce(url, description)`` once the socket accepts
        connections (``description`` is what ``GET /model`` answers).
    **limits : int
        See :func:`create_app`.

    Raises
    ------
    StartupError
        The address cannot be listened on (before anything is served).

    Examples
    --------
    Serve a bundle on port 8000 with two worker processes (blocks until Ctrl-C)::

        from skfewrec.apps.serve import run

        run("model.zip", port=8000, workers=2, max_k=50)
    """
    import uvicorn

    if workers > 1 and not isinstance(model, str | os.PathLike):
        raise TypeError("workers > 1 needs a bundle path: each worker process loads it.")
    app = create_app(model, encoder=encoder, **limits)  # a bad bundle or limit fails here
    description = app.state.description
    sock = listen(host, port)
    options = {
        "http": http,
        "log_config": _log_config(log_level, access_log),
        "log_level": None,  # set by the log config: the access log keeps its own level
        "access_log": access_log,
    }
    try:
        if workers > 1:
            from uvicorn.supervisors import Multiprocess

            del app  # each worker loads its own copy
            os.environ[_ENV_BUNDLE] = os.fspath(model)
            os.environ[_ENV_LIMITS] = json.dumps(limits)
            config = uvicorn.Config(
                "skfewrec.apps.serve:app_from_environment",
                factory=True,
                workers=workers,
                **options,
            )
            if announce is not None:
                announce(_url(sock), description)
            Multiprocess(config, sockets=[sock]).run()
        else:
            _freeze_heap()
            server = uvicorn.Server(uvicorn.Config(app, **options))
            if announce is not None:
                announce(_url(sock), description)
            server.run(sockets=[sock])
    finally:
        sock.close()


def _log_config(log_level, access_log):
    """uvicorn's logging configuration at ``log_level``, with the access log (a record
    per request, at level info) shown whenever ``access_log`` is on."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    level = str(log_level).upper()
    config["loggers"]["uvicorn"]["level"] = level
    config["loggers"]["uvicorn.error"]["level"] = level
    config["loggers"]["uvicorn.access"]["level"] = "INFO" if access_log else level
    return config


def _freeze_heap():
    """Move every object alive now (modules, the model) out of the garbage collector's
    reach: full collections then scan only what requests allocate, which removes
    their pauses from the latency tail."""
    import gc

    gc.collect()
    gc.freeze()


def serve_in_thread(app, *, host="127.0.0.1", port=0):
    """Start ``app`` with uvicorn in a daemon thread (for tests and notebooks).

    Parameters
    ----------
    app : ASGI application
        What :func:`create_app` returned.
    host : str, default="127.0.0.1"
        Interface to listen on.
    port : int, default=0
        TCP port; 0 picks a free one.

    Returns
    -------
    server : uvicorn.Server
        ``server.should_exit = True`` stops it.
    url : str
        The base URL, e.g. ``http://127.0.0.1:53211``.

    Examples
    --------
    >>> import json, urllib.request
    >>> from skfewrec import ALSFactors, ClosedFormFoldIn
    >>> from skfewrec.datasets import make_interactions
    >>> from skfewrec.apps.serve import create_app, serve_in_thread
    >>> X = make_interactions(n_users=200, n_items=50, random_state=0).X
    >>> rec = ClosedFormFoldIn(ALSFactors(n_components=4, random_state=0)).fit(X)
    >>> server, url = serve_in_thread(create_app(rec))
    >>> with urllib.request.urlopen(url + "/health") as answer:
    ...     json.load(answer)
    {'status': 'ok'}
    >>> server.should_exit = True
    """
    import uvicorn

    sock = listen(host, port)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.01)
    return server, _url(sock)
