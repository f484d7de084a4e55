"""Throughput of skfewrec's fold-in and top-k, as ratios to implicit measured in the same run.

Three measurements (each the best of --repeat runs; shared machines are noisy):

1. ``transform``: ClosedFormFoldIn's batched Woodbury fold-in vs implicit's
   ``recalculate_user`` (C++ Cholesky per user), same factors, one thread each
   and all threads each.
2. ``recommend``: fold-in + top-k + seen filtering for many new users vs
   implicit's ``recommend(..., recalculate_user=True)``, and vs a lower bound: a
   bare blocked float32 GEMM + argpartition of precomputed user vectors.
3. peak RSS of ``recommend`` on the full problem, measured in a child process.

The problem is synthetic at the target scale (random factors: speed does not
depend on their values) and, with --data, real MovieLens rows folded into factors
trained on the same data.

Usage::

    python benchmarks/speed.py                       # 100k users x 20k items, f=64/128
    python benchmarks/speed.py --data ../../shared/data/ml-latest-small
"""

import argparse
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from _common import best_time, load_dataset, print_table, write_json
from sklearn.frozen import FrozenEstimator
from threadpoolctl import threadpool_limits

from skfewrec import ALSFactors, ClosedFormFoldIn
from skfewrec._core.topk import DEFAULT_BLOCK_BYTES


def synthetic_users(n_users, n_items, n_shots, rng):
    """CSR of n_users rows with n_shots distinct random items each (values 1-4).

    Distinct by construction: a random start plus positive gaps summing to less
    than the catalogue, wrapped around.
    """
    gaps = rng.integers(1, n_items // n_shots, size=(n_users, n_shots))
    cols = (rng.integers(0, n_items, size=(n_users, 1)) + np.cumsum(gaps, axis=1)) % n_items
    cols = np.sort(cols, axis=1)
    indptr = np.arange(0, n_users * n_shots + 1, n_shots)
    data = rng.integers(1, 5, size=n_users * n_shots).astype(np.float32)
    return sp.csr_matrix((data, cols.ravel(), indptr), shape=(n_users, n_items))


def factor_model(n_items, n_components, rng, regularization=0.1, confidence_scale=2.0):
    Y = (rng.standard_normal((n_items, n_components)) * 0.1).astype(np.float32)
    als = ALSFactors.from_arrays(
        Y, regularization=regularization, confidence_scale=confidence_scale
    )
    return als


def lower_bound(U, V, k, n_jobs):
    """Bare blocked float32 GEMM + argpartition, blocks spread over n_jobs threads."""
    Vt = np.ascontiguousarray(V.T)
    block = max(1, DEFAULT_BLOCK_BYTES // (4 * V.shape[0]))
    out = np.empty((U.shape[0], k), dtype=np.int64)

    def run(start):
        S = U[start : start + block] @ Vt
        out[start : start + block] = np.argpartition(S, -k, axis=1)[:, -k:]

    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(n_jobs) as pool:
        list(pool.map(run, range(0, U.shape[0], block)))
    return out


def bench_transform(args, rng, rows):
    for f in args.transform_factors:
        als = factor_model(args.n_items, f, rng)
        X = synthetic_users(args.transform_users, args.n_items, args.n_shots, rng)
        model = als.to_implicit()
        rec = ClosedFormFoldIn(factors=FrozenEstimator(als)).fit(X)
        for threads in (1, args.n_jobs):
            model.num_threads = threads
            rec.set_params(n_jobs=threads)
            with threadpool_limits(1, user_api="blas"):
                t_imp, ref = best_time(
                    lambda: model.recalculate_user(np.arange(X.shape[0]), X),  # noqa: B023
                    args.repeat,
                )
            t_ours, ours = best_time(lambda: rec.transform(X), args.repeat)  # noqa: B023
            err = np.max(np.linalg.norm(ours - ref, axis=1) / np.linalg.norm(ref, axis=1))
            rows.append(
                {
                    "what": f"transform f={f} shots={args.n_shots} threads={threads}",
                    "users": X.shape[0],
                    "skfewrec_users_per_s": X.shape[0] / t_ours,
                    "baseline_users_per_s": X.shape[0] / t_imp,
                    "ratio": t_imp / t_ours,
                    "max_rel_err": float(err),
                }
            )


def bench_recommend(args, rng, rows, als=None, X=None, label="synthetic"):
    if als is None:
        als = factor_model(args.n_items, args.recommend_factors, rng)
        X = synthetic_users(args.n_users, args.n_items, args.n_shots, rng)
    k = args.k
    model = als.to_implicit()
    model.num_threads = args.n_jobs
    rec = ClosedFormFoldIn(factors=FrozenEstimator(als), n_jobs=args.n_jobs).fit(X)
    users = np.arange(X.shape[0])
    with threadpool_limits(1, user_api="blas"):
        t_imp, (ids_imp, _) = best_time(
            lambda: model.recommend(users, X, N=k, recalculate_user=True), args.repeat
        )
    t_ours, (ids, _) = best_time(lambda: rec.recommend(X, k=k), args.repeat)
    U = rec.transform(X)
    t_lb, _ = best_time(lambda: lower_bound(U, als.item_factors_, k, args.n_jobs), args.repeat)
    overlap = np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(ids[:2000], ids_imp[:2000])])
    rows.append(
        {
            "what": f"recommend {label} f={als.n_components} top-{k} threads={args.n_jobs}",
            "users": X.shape[0],
            "items": X.shape[1],
            "skfewrec_users_per_s": X.shape[0] / t_ours,
            "baseline_users_per_s": X.shape[0] / t_imp,
            "ratio": t_imp / t_ours,
            "lower_bound_users_per_s": X.shape[0] / t_lb,
            "slowdown_vs_lower_bound": t_ours / t_lb,
            "top_k_overlap_with_implicit": float(overlap),
        }
    )


def rss_child(args):
    """Run in a fresh process: peak RSS of one full recommend call."""
    rng = np.random.default_rng(args.seed)
    als = factor_model(args.n_items, args.recommend_factors, rng)
    X = synthetic_users(args.n_users, args.n_items, args.n_shots, rng)
    rec = ClosedFormFoldIn(factors=FrozenEstimator(als), n_jobs=args.n_jobs).fit(X)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    ids, scores = rec.recommend(X, k=args.k)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{before / 2**10:.1f} {peak / 2**10:.1f} {elapsed:.3f} {ids.shape[0]}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-users", type=int, default=100_000)
    parser.add_argument("--n-items", type=int, default=20_000)
    parser.add_argument("--n-shots", type=int, default=10)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--transform-users", type=int, default=20_000)
    parser.add_argument("--transform-factors", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--recommend-factors", type=int, default=64)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None, help="also time recommend on real rows")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        return rss_child(args)

    rng = np.random.default_rng(args.seed)
    rows = []
    bench_transform(args, rng, rows)
    bench_recommend(args, rng, rows)
    if args.data:
        name, data = load_dataset(args.data)
        als = ALSFactors(
            n_components=args.recommend_factors,
            regularization=1.0,
            confidence_scale=10.0,
            random_state=args.seed,
        ).fit(data.X)
        bench_recommend(args, rng, rows, als=als, X=data.X, label=name)

    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--rss-child",
            "--n-users",
            str(args.n_users),
            "--n-items",
            str(args.n_items),
            "--n-shots",
            str(args.n_shots),
            "--k",
            str(args.k),
            "--recommend-factors",
            str(args.recommend_factors),
            "--n-jobs",
            str(args.n_jobs),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    before, peak, elapsed, n = child.stdout.split()
    rss = {
        "rss_before_mib": float(before),
        "peak_rss_mib": float(peak),
        "seconds": float(elapsed),
        "users": int(n),
        "items": args.n_items,
    }

    print_table(
        rows,
        [
            "what",
            "users",
            "skfewrec_users_per_s",
            "baseline_users_per_s",
            "ratio",
            "max_rel_err",
            "lower_bound_users_per_s",
            "slowdown_vs_lower_bound",
            "top_k_overlap_with_implicit",
        ],
    )
    print(
        f"\npeak RSS of recommend, {rss['users']} users x {args.n_items} items, top-{args.k}, "
        f"in a fresh process: {rss['peak_rss_mib']:.0f} MiB "
        f"(peak before the call, after imports, data and fit: {rss['rss_before_mib']:.0f} MiB)"
    )
    path = write_json("speed.json", {"args": vars(args), "rows": rows, "rss": rss})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
