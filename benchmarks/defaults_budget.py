"""The fit budget of the defaults: ``ClosedFormFoldIn()`` against a plain implicit ALS fit.

Issue 10's budget: the default fit (its "auto" search included) of an adapter on
5,000 users x 17,000 items (about 160k interactions) in at most 20 s on 2 cores,
and on the whole of Gowalla (30k users x 41k items, 1M interactions) in at most
5 minutes with peak memory under 4 GiB.

Two data sizes, both from the Gowalla folder:

- ``slice``: 5,000 users drawn at random (seed 0), the 17,000 items they touch
  most, users left without interactions dropped;
- ``full``: every user and item.

Each measurement runs in a fresh Python process, so that its peak resident
memory (``ru_maxrss``) is its own: the data are loaded, then the estimator is
fitted and timed (wall and CPU seconds). Beside ``ClosedFormFoldIn(random_state=0)`` (its default
settings) the same run times implicit's plain ``AlternatingLeastSquares``
(64 factors, 15 sweeps, its default regularization) on the same data: the
machine is shared and its load moves, so the ratio of the two is the figure
that carries over; both are quoted.

Usage::

    python benchmarks/defaults_budget.py --data ../shared/data/gowalla --sizes slice full
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import DEFAULT_DATA, load_user_item_lists, print_table, write_json

#: the budget of the issue, seconds of fit per data size
BUDGET_SECONDS = {"slice": 20.0, "full": 300.0}
#: peak memory budget on the whole data set
BUDGET_RSS_GIB = 4.0


def build(size, data):
    """The interactions of one data size (see the module docstring)."""
    X = load_user_item_lists(data).X
    if size == "full":
        return X
    rng = np.random.default_rng(0)
    S = X[np.sort(rng.choice(X.shape[0], 5000, replace=False))]
    counts = np.bincount(S.indices, minlength=S.shape[1])
    top = np.sort(np.argsort(-counts, kind="stable")[:17000])
    S = S[:, top].tocsr()
    return S[np.diff(S.indptr) > 0]


def _peak_rss_gib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _cpu_seconds():
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(size, model, data):
    """Fit one model on one size in this process; print a JSON line."""
    X = build(size, data)
    before, cpu = _peak_rss_gib(), _cpu_seconds()
    out = {"size": size, "model": model, "users": X.shape[0], "items": X.shape[1], "nnz": X.nnz}
    start = time.perf_counter()
    if model == "closed_form":
        from skfewrec import ClosedFormFoldIn

        est = ClosedFormFoldIn(random_state=0).fit(X)
        out["seconds"] = time.perf_counter() - start
        report = est.factors_.auto_report_ or {}
        out["search_seconds"] = report.get("seconds")
        out["search_points"] = len(report.get("points", []))
        out["settings"] = {
            "regularization": est.factors_.regularization_,
            "confidence_scale": est.factors_.confidence_scale_,
            "prior_strength": est.prior_strength_,
            "shrinkage": est.shrinkage_,
            "knn_weight": est.knn_weight_,
        }
    else:
        from implicit.cpu.als import AlternatingLeastSquares

        from skfewrec._core.threads import blas_limits

        with blas_limits(1):
            AlternatingLeastSquares(factors=64, iterations=15, random_state=0).fit(
                X, show_progress=False
            )
        out["seconds"] = time.perf_counter() - start
    out["cpu_seconds"] = _cpu_seconds() - cpu
    out["peak_rss_gib"] = _peak_rss_gib()
    out["rss_before_fit_gib"] = before
    print(json.dumps(out))


def run(size, model, data):
    cmd = [sys.executable, __file__, "--child", size, model, "--data", str(data)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1])])}
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "gowalla")
    parser.add_argument("--sizes", nargs="+", default=["slice", "full"], choices=["slice", "full"])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measurement")
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "MODEL"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default="defaults_budget.json")
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child, args.data)
        return
    rows = []
    for size in args.sizes:
        for _ in range(args.repeat):
            # plain ALS first and last around the default fit: the load may move
            als = run(size, "implicit_als", args.data)
            cf = run(size, "closed_form", args.data)
            als2 = run(size, "implicit_als", args.data)
            plain = 0.5 * (als["seconds"] + als2["seconds"])
            rows.append(
                {
                    "size": size,
                    "shape": f"{cf['users']}x{cf['items']} ({cf['nnz']})",
                    "fit_s": cf["seconds"],
                    "search_s": cf["search_seconds"],
                    "points": cf["search_points"],
                    "implicit_als_s": plain,
                    "ratio": cf["seconds"] / plain,
                    "fit_cpu_s": cf["cpu_seconds"],
                    "als_cpu_s": 0.5 * (als["cpu_seconds"] + als2["cpu_seconds"]),
                    "peak_rss_gib": cf["peak_rss_gib"],
                    "budget_s": BUDGET_SECONDS[size],
                    "settings": cf["settings"],
                    "load_avg": os.getloadavg()[0],
                }
            )
            print_table(rows[-1:], [c for c in rows[-1] if c != "settings"])
            print("   chosen:", cf["settings"], flush=True)
    path = write_json(args.out, {"rows": rows, "budget_rss_gib": BUDGET_RSS_GIB})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
