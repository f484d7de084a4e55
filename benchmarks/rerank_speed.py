"""Throughput of LightGBMReranker.recommend against its own candidate adapter, same run.

Warm users (80%) train the adapter and the re-ranker; the held-out users' first
``--n-shots`` shots are tiled to ``--n-users`` rows, and each model recommends
``--k`` items to all of them. Reported: users per second (best of ``--repeat``)
and the ratio to the adapter's own ``recommend``; plus where the re-ranker's
time goes (candidate generation, features, LightGBM prediction).

Usage::

    python benchmarks/rerank_speed.py --data ../shared/data/ml-latest-small
"""

import argparse
import time

import numpy as np
import scipy.sparse as sp
from _common import DEFAULT_DATA, best_time, load_dataset, write_json
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator

from skfewrec import ALSFactors, ClosedFormFoldIn, LightGBMReranker
from skfewrec.model_selection import support_query_split, train_test_split_users


def run(args):
    name, data = load_dataset(args.data, random_state=args.seed)
    X_warm, X_new = train_test_split_users(data.X, test_size=0.2, random_state=args.seed)
    als = ALSFactors(
        n_components=args.n_components,
        regularization=args.regularization,
        confidence_scale=args.confidence_scale,
        random_state=args.seed,
    )
    adapter_kw = {"prior": "gaussian", "prior_strength": args.prior_strength}
    adapter = ClosedFormFoldIn(factors=FrozenEstimator(clone(als).fit(X_warm)), **adapter_kw)
    adapter.fit(X_warm)
    t0 = time.perf_counter()
    rr = LightGBMReranker(
        ClosedFormFoldIn(factors=clone(als), **adapter_kw),
        n_candidates=args.n_candidates,
        n_episodes=args.n_episodes,
        random_state=args.seed,
        n_jobs=args.n_jobs,
    ).fit(X_warm)
    fit_seconds = time.perf_counter() - t0

    S, _ = support_query_split(X_new, args.n_shots, random_state=args.seed)
    S = S[np.diff(S.indptr) > 0]
    reps = -(-args.n_users // S.shape[0])
    S = sp.vstack([S] * reps, format="csr")[: args.n_users]
    n = S.shape[0]
    print(
        f"{name}: {X_warm.shape[0]} warm users x {X_warm.shape[1]} items; scoring {n} users "
        f"with {args.n_shots} shots, k={args.k}, {args.n_candidates} candidates; "
        f"re-ranker fitted in {fit_seconds:.1f}s ({rr.best_iteration_} trees, "
        f"{len(rr.feature_names_)} features)"
    )

    t_adapter, _ = best_time(lambda: adapter.recommend(S, k=args.k), args.repeat)
    t_cand, (cand, cand_scores) = best_time(
        lambda: rr.candidates_.recommend(S, k=args.n_candidates), args.repeat
    )
    t_rerank, _ = best_time(lambda: rr.recommend(S, k=args.k), args.repeat)
    t_features, F = best_time(lambda: rr._builder.build(S, cand, cand_scores), args.repeat)
    threads = max(1, args.n_jobs or 1)
    t_predict, _ = best_time(lambda: rr.booster_.predict(F, num_threads=threads), args.repeat)

    rows = {
        "adapter recommend (k)": t_adapter,
        "re-ranker recommend (k)": t_rerank,
        "  candidates (adapter top-n)": t_cand,
        "  features": t_features,
        "  LightGBM predict": t_predict,
    }
    for label, seconds in rows.items():
        print(f"{label:<30} {seconds:8.3f}s  {n / seconds:12,.0f} users/s")
    ratio = t_adapter / t_rerank
    print(f"re-ranker throughput / adapter throughput: {ratio:.3f}")
    path = write_json(
        f"rerank_speed_{name}" + (f"_jobs{args.n_jobs}" if args.n_jobs else "") + ".json",
        {
            "dataset": name,
            "n_users": n,
            "n_shots": args.n_shots,
            "k": args.k,
            "n_candidates": args.n_candidates,
            "n_jobs": args.n_jobs,
            "trees": rr.best_iteration_,
            "n_features": len(rr.feature_names_),
            "fit_seconds": fit_seconds,
            "seconds": rows,
            "users_per_second": {label: n / s for label, s in rows.items()},
            "rerank_over_adapter_throughput": ratio,
        },
    )
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA / "ml-latest-small"))
    parser.add_argument("--n-users", type=int, default=8192)
    parser.add_argument("--n-shots", type=int, default=10)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--n-candidates", type=int, default=100)
    parser.add_argument("--n-episodes", type=int, default=8)
    parser.add_argument("--n-components", type=int, default=32)
    parser.add_argument("--regularization", type=float, default=1.0)
    parser.add_argument("--confidence-scale", type=float, default=2.0)
    parser.add_argument("--prior-strength", type=float, default=0.3)
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
