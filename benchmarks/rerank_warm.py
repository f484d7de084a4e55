"""The re-ranker's few-shot curve and bundle size, for a before/after comparison.

For each dataset and seed: users are split into warm (80%) and new (20%) with
that seed; a ``LightGBMReranker`` over the gaussian-prior closed form (the
settings of benchmarks/rerank_speed.py) is fitted on the warm users with that
seed; NDCG@k on the new users is measured at each number of shots
(:func:`~skfewrec.model_selection.fewshot_curve`), with the candidate adapter's
own curve in the same run; and the bundle size is ``len(skfewrec.dumps(model))``.
The table shows mean +- standard error over the seeds.

Only public API is used, so the same script measures any version of the code
(run it with ``PYTHONPATH`` pointing at that version and a different ``--label``).

Usage::

    python benchmarks/rerank_warm.py --label after
    python benchmarks/rerank_warm.py --data ../shared/data/ml-100k --seeds 0 1 2 --label before
"""

import argparse
import time

import numpy as np
from _common import DEFAULT_DATA, load_dataset, write_json

import skfewrec
from skfewrec import ALSFactors, ClosedFormFoldIn, LightGBMReranker
from skfewrec.model_selection import fewshot_curve, train_test_split_users


def _model(args, seed):
    adapter = ClosedFormFoldIn(
        factors=ALSFactors(
            n_components=args.n_components,
            regularization=1.0,
            confidence_scale=2.0,
            random_state=seed,
        ),
        prior="gaussian",
        prior_strength=0.3,
    )
    return LightGBMReranker(adapter, n_episodes=args.n_episodes, random_state=seed)


def _mean_se(values):
    values = np.asarray(values, dtype=np.float64)
    se = values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else float("nan")
    return float(values.mean()), float(se)


def run(args):
    results = {}
    for spec in args.data:
        name, data = load_dataset(spec)
        runs = []
        for seed in args.seeds:
            X_warm, X_new = train_test_split_users(data.X, test_size=0.2, random_state=seed)
            start = time.perf_counter()
            rr = _model(args, seed).fit(X_warm)
            fit_seconds = time.perf_counter() - start
            curve = {}
            for label, est in (("reranker", rr), ("adapter", rr.candidates_)):
                table = fewshot_curve(
                    est, X_new, n_shots=args.n_shots, k=args.k, metrics=("ndcg",), random_state=seed
                )
                curve[label] = table["ndcg"].tolist()
            runs.append(
                {
                    "seed": seed,
                    "n_warm_users": int(X_warm.shape[0]),
                    "n_items": int(X_warm.shape[1]),
                    "bundle_bytes": len(skfewrec.dumps(rr)),
                    "fit_seconds": fit_seconds,
                    "ndcg": curve,
                }
            )
            print(
                f"{name} seed {seed}: fit {fit_seconds:.0f}s, bundle "
                f"{runs[-1]['bundle_bytes']:,} bytes, NDCG@{args.k} "
                + " ".join(f"{v:.4f}" for v in curve["reranker"])
            )
        summary = {
            label: {
                str(n): _mean_se([r["ndcg"][label][i] for r in runs])
                for i, n in enumerate(args.n_shots)
            }
            for label in ("reranker", "adapter")
        }
        results[name] = {"runs": runs, "summary": summary}
        print(f"{name} ({args.label}): NDCG@{args.k}, mean +- s.e. over {len(args.seeds)} seeds")
        for label, row in summary.items():
            cells = "  ".join(f"{n}: {m:.4f}+-{s:.4f}" for n, (m, s) in row.items())
            print(f"  {label:<9} {cells}")
        sizes = [r["bundle_bytes"] for r in runs]
        print(f"  bundle bytes: {sizes}")
    path = write_json(
        f"rerank_warm_{args.label}.json",
        {
            "label": args.label,
            "k": args.k,
            "n_shots": list(args.n_shots),
            "seeds": list(args.seeds),
            "n_episodes": args.n_episodes,
            "n_components": args.n_components,
            "results": results,
        },
    )
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data",
        nargs="+",
        default=[str(DEFAULT_DATA / "ml-100k"), str(DEFAULT_DATA / "ml-latest-small")],
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-shots", type=int, nargs="+", default=[1, 3, 5, 10, 20])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--n-episodes", type=int, default=5)
    parser.add_argument("--n-components", type=int, default=32)
    parser.add_argument("--label", default="after")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
