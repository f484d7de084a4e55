"""GradientFoldIn with and without cross-fitted meta-learning, on the few-shot protocol.

``GradientFoldIn()`` meta-learns its step sizes and start on episodes of warm
users. Without cross-fitting (``meta_cv=None``) the episodes are played against
item factors trained on those same users' full rows; with it (``meta_cv=k``)
the users of each fold play against factors refitted without them. This
script measures both on the same user splits and evaluation users as
``fewshot.py`` (warm 80% / new 20%; new users with at least n + 5 positives,
at most ``--max-users`` per n), NDCG@20 at n = 1, 3, 5, 10, 20 shots.

Both models are ``GradientFoldIn(random_state=seed)`` as constructed with no
other argument, except ``meta_cv``. The ALS settings that the default
``ALSFactors`` chooses ("auto") are searched once per seed, by the model without
cross-fitting, and passed explicitly to the cross-fitted one: the same search
with the same seed would choose the same values, and the script checks that
both end with identical item factors.

Usage::

    nice -n 10 python benchmarks/gradient_crossfit.py --data ../shared/data/ml-100k \\
        --seeds 0 1 2
"""

import time

import numpy as np
from _common import RESULTS, load_dataset, print_table, write_json
from fewshot import curve, evaluation_users, load_results, parser, split_users

from skfewrec import GradientFoldIn
from skfewrec._auto import fix_auto_settings

MODELS = {"plain": None, "crossfit": 5}


def _fit(X, seed, meta_cv, factors=None):
    est = GradientFoldIn(factors, meta_cv=meta_cv, random_state=seed)
    start = time.perf_counter()
    est.fit(X)
    return est, time.perf_counter() - start


def run(args):
    name, data = load_dataset(args.data)
    out = args.out or f"gradient_crossfit_{name}.json"
    results = load_results(RESULTS / out) if args.append else {}
    for model in ("plain", "crossfit"):
        results[model] = [r for r in results.get(model, []) if r["seed"] not in args.seeds]
    print(f"{name}: {data.X.shape[0]} users x {data.X.shape[1]} items, {data.X.nnz} positives")
    for seed in args.seeds:
        split = split_users(data.X, seed)
        X = split["X_warm"]
        users = evaluation_users(split["X_new"], args.n_shots, args.min_query, args.max_users, seed)
        plain, plain_seconds = _fit(X, seed, None)
        # the settings "auto" chose, explicit: no second search
        source = fix_auto_settings(GradientFoldIn(random_state=seed), plain).factors
        crossfit, crossfit_seconds = _fit(X, seed, args.folds, source)
        assert np.array_equal(plain.item_factors_, crossfit.item_factors_)
        settings = {
            "regularization": plain.regularization_,
            "confidence_scale": plain.confidence_scale_,
        }
        for model, est, seconds in (
            ("plain", plain, plain_seconds),
            ("crossfit", crossfit, crossfit_seconds),
        ):
            c = curve(est, split["X_new"], users, args.k, seed)
            for n, row in c.iterrows():
                results[model].append(
                    {
                        "n_shots": int(n),
                        **row.to_dict(),
                        "seed": seed,
                        "fit_seconds": seconds,
                        "meta_cv": int(est.meta_cv_),
                        "n_iter": int(est.n_iter_),
                        "best_validation_ndcg": float(est.validation_scores_.max()),
                        **settings,
                    }
                )
            print(
                f"  seed {seed} {model}: "
                + " ".join(f"{v:.4f}" for v in c["ndcg"])
                + f"  (fit {seconds:.1f}s, {est.n_iter_} meta-iterations, best validation "
                f"NDCG {est.validation_scores_.max():.4f}) {settings}",
                flush=True,
            )
        write_json(
            out,
            {
                "dataset": name,
                "shape": list(data.X.shape),
                "k": args.k,
                "n_shots": args.n_shots,
                "min_query": args.min_query,
                "max_users": args.max_users,
                "folds": args.folds,
                "models": results,
            },
        )
    report(results, args)
    return results


def _mean_se(values):
    values = np.asarray(values, dtype=float)
    se = values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else float("nan")
    return f"{values.mean():.4f} +- {se:.4f}"


def report(results, args):
    """NDCG@k per n: mean +- standard error over seeds, and the paired difference."""
    rows = []
    for n in args.n_shots:
        per = {
            model: {r["seed"]: r["ndcg"] for r in results[model] if r["n_shots"] == n}
            for model in ("plain", "crossfit")
        }
        seeds = sorted(set(per["plain"]) & set(per["crossfit"]))
        if not seeds:
            continue
        plain = [per["plain"][s] for s in seeds]
        cross = [per["crossfit"][s] for s in seeds]
        rows.append(
            {
                "n": n,
                "plain": _mean_se(plain),
                "crossfit": _mean_se(cross),
                "crossfit - plain": _mean_se(np.subtract(cross, plain)),
            }
        )
    print(f"\nNDCG@{args.k}, mean +- s.e. over seeds {list(args.seeds)}")
    print_table(rows, ["n", "plain", "crossfit", "crossfit - plain"])
    fits = {
        model: np.mean([r["fit_seconds"] for r in kept if r["seed"] in args.seeds])
        for model, kept in results.items()
        if kept
    }
    print(
        "mean fit seconds (plain: with the ALS settings search; crossfit: without):",
        {model: round(float(v), 1) for model, v in fits.items()},
    )


def main(argv=None):
    p = parser(__doc__.split("\n")[0], MODELS)
    p.add_argument("--folds", type=int, default=5, help="meta_cv of the cross-fitted model")
    args = p.parse_args(argv)
    run(args)


if __name__ == "__main__":
    main()
