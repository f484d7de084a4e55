"""Load test of the HTTP scoring service: throughput and latency under concurrent clients.

1. Fits a closed-form model (gaussian prior) on the warm users of a MovieLens folder
   (ratings >= 4 as positives) and saves it as a zip bundle with its id maps.
2. Starts ``python -m skfewrec serve BUNDLE`` on 127.0.0.1 (a free port).
3. Runs ``--clients`` concurrent keep-alive clients on loopback, each sending
   ``POST /recommend`` with ``--shots`` raw item ids of a held-out user and
   ``k=--k``, back to back (closed loop), for ``--duration`` seconds after a
   ``--warmup``, ``--repeat`` times; latency is measured per request, client side.
4. Checks a few answers against the model in-process, stops the server, and
   writes throughput, p50/p90/p99/max latency and the error count to
   ``benchmarks/results/serve_load.json``.

The clients are a minimal asyncio HTTP/1.1 client (like wrk): they share the
machine's cores with the server, so they are kept lean.

Usage::

    python benchmarks/serve_load.py --data ../shared/data/ml-latest-small
"""

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from _common import DEFAULT_DATA, write_json

import skfewrec
from skfewrec import ALSFactors, ClosedFormFoldIn
from skfewrec.datasets import load_movielens
from skfewrec.model_selection import train_test_split_users
from skfewrec.preprocessing import InteractionEncoder


def build_bundle(data_path, folder, args):
    data = load_movielens(data_path, min_rating=4, binarize=True)
    enc = InteractionEncoder(user_col="user", item_col="item", handle_unknown="ignore")
    X = enc.fit_transform(data.frame)
    warm, new = train_test_split_users(X, test_size=0.2, random_state=0)
    factors = ALSFactors(
        n_components=args.n_components, regularization=0.1, confidence_scale=2.0, random_state=0
    )
    model = ClosedFormFoldIn(factors=factors, prior="gaussian", prior_strength=0.1).fit(warm)
    path = skfewrec.save(model, Path(folder) / "model.zip", encoder=enc)
    start = time.perf_counter()
    skfewrec.load(path)
    load_s = time.perf_counter() - start
    return path, model, enc, new, X.shape, load_s


def make_requests(model, enc, new, args):
    """Request bodies: ``--shots`` random raw ids of each held-out user with enough of them."""
    rng = np.random.default_rng(0)
    counts = np.diff(new.indptr)
    bodies, shots = [], []
    for u in np.flatnonzero(counts >= args.shots):
        cols = new.indices[new.indptr[u] : new.indptr[u + 1]]
        pick = rng.choice(cols, size=args.shots, replace=False)
        ids = enc.item_ids_[pick].tolist()
        bodies.append(json.dumps({"items": ids, "k": args.k}).encode())
        shots.append(pick)
    return bodies, shots


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the server did not become healthy in time")


def post(url, path, body):
    req = urllib.request.Request(
        url + path, data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


async def client(host, port, bodies, offset, stop_at, warm_until, record):
    reader, writer = await asyncio.open_connection(host, port)
    errors = 0
    i = offset
    try:
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                break
            body = bodies[i % len(bodies)]
            i += 7
            writer.write(
                b"POST /recommend HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            start = time.perf_counter()
            status = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latency = time.perf_counter() - start
            ok = status.startswith(b"HTTP/1.1 200")
            if start >= warm_until:
                record.append(latency)
                errors += not ok
    finally:
        writer.close()
    return errors


async def load(host, port, bodies, args):
    record = []
    t0 = time.perf_counter()
    warm_until = t0 + args.warmup
    stop_at = warm_until + args.duration
    errors = await asyncio.gather(
        *(
            client(host, port, bodies, c * 1000, stop_at, warm_until, record)
            for c in range(args.clients)
        ),
        return_exceptions=True,
    )
    failed = sum(e if isinstance(e, int) else 1 for e in errors)
    return np.array(record), failed


def summarize(latencies, errors, args):
    ms = latencies * 1000
    return {
        "requests": int(latencies.size),
        "errors": int(errors),
        "throughput_rps": latencies.size / args.duration,
        "latency_ms": {
            "p50": float(np.percentile(ms, 50)),
            "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99)),
            "max": float(ms.max()),
            "mean": float(ms.mean()),
        },
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA / "ml-latest-small"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--n-components", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--http", default="auto", help="uvicorn's HTTP parser (auto, h11, ...)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs (same server)")
    parser.add_argument("--out", default="serve_load.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        path, model, enc, new, shape, load_s = build_bundle(args.data, folder, args)
        bodies, shots = make_requests(model, enc, new, args)
        print(
            f"model: {shape[0]} users x {shape[1]} items, f={args.n_components}; bundle load "
            f"{load_s * 1000:.0f} ms; {len(bodies)} distinct requests"
        )
        port = free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "skfewrec",
                "serve",
                str(path),
                "--port",
                str(port),
                "-q",
                "--workers",
                str(args.workers),
                "--http",
                args.http,
            ],
            env=env,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc)
            # the service answers what the model answers in-process
            for body, pick in list(zip(bodies, shots))[:20]:
                got = post(url, "/recommend", body)
                X = np.zeros((1, shape[1]), dtype=np.float32)
                X[0, pick] = 1
                ids, _ = model.recommend(X, k=args.k)
                assert got["items"] == enc.item_ids_[ids[0]].tolist(), "service != model"
            runs = [asyncio.run(load("127.0.0.1", port, bodies, args)) for _ in range(args.repeat)]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    summaries = [summarize(latencies, errors, args) for latencies, errors in runs]
    for i, run in enumerate(summaries, 1):
        lat = run["latency_ms"]
        print(
            f"run {i}: {args.clients} clients, {args.shots} shots, top-{args.k}: "
            f"{run['requests']} requests in {args.duration:.0f} s = {run['throughput_rps']:.0f} "
            f"req/s; latency p50 {lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, p99 "
            f"{lat['p99']:.1f} ms, max {lat['max']:.1f} ms; errors {run['errors']}"
        )
    median = sorted(summaries, key=lambda r: r["latency_ms"]["p99"])[len(summaries) // 2]
    errors = sum(r["errors"] for r in summaries)
    result = {
        "data": Path(args.data).name,
        "clients": args.clients,
        "workers": args.workers,
        "http": args.http,
        "shots": args.shots,
        "k": args.k,
        "n_components": args.n_components,
        "n_items": shape[1],
        "duration_s": args.duration,
        "load_average_1min_after": os.getloadavg()[0],
        "median_run_by_p99": median,
        "runs": summaries,
        "errors": errors,
        "bundle_load_ms": load_s * 1000,
    }
    lat = median["latency_ms"]
    print(
        f"median run by p99: {median['throughput_rps']:.0f} req/s, p50 {lat['p50']:.1f} ms, "
        f"p99 {lat['p99']:.1f} ms; errors in all runs: {errors}; load average "
        f"{result['load_average_1min_after']:.1f} on {os.cpu_count()} cores"
    )
    print(f"-> {write_json(args.out, result)}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
