"""Good without tuning: skfewrec's estimators as a user gets them, against tuned baselines.

For each seed, on the same user splits and evaluation users as ``fewshot.py``
(warm 80% / new 20%; new users with at least n + 5 positives, at most
``--max-users`` per n): every estimator is fitted on the warm users with its
default settings (only ``random_state`` set, so runs repeat), its fit time
measured (including whatever "auto" chooses), and its NDCG@20 measured on the
new users at n = 1, 3, 5, 10, 20 shots. The baselines come from a ``fewshot.py``
run on the same data and seeds (``--baselines``): tuned per n on warm users
only. The table gives mean +- standard error over seeds, and the ratio to the
best tuned baseline (per seed and n, then averaged).

``--models`` picks among:

- ``closed_form``, ``gradient``, ``rerank``: ``ClosedFormFoldIn()``,
  ``GradientFoldIn()``, ``LightGBMReranker()`` as constructed with no argument;
- ``closed_form_auto``, ``gradient_auto``, ``rerank_auto``: the same with the
  settings chosen by :func:`skfewrec._auto.choose_als_settings` on the warm users,
  passed explicitly (what "auto" defaults do, for code that predates them).

Usage::

    python benchmarks/defaults.py --data ../shared/data/ml-100k --seeds 0 1 2 \\
        --baselines defaults_tuned_ml-100k.json
"""

import time

import numpy as np
from _common import RESULTS, load_dataset, write_json
from fewshot import (
    BASELINES,
    curve,
    evaluation_users,
    load_results,
    parser,
    print_summary,
    split_users,
)

from skfewrec import ALSFactors, ClosedFormFoldIn, GradientFoldIn, LightGBMReranker
from skfewrec._auto import choose_als_settings, item_conditional_means, shrink_to_support


def _seeded(cls, seed):
    """``cls()`` with only its seed set (when it takes one)."""
    return cls(random_state=seed) if "random_state" in cls().get_params() else cls()


def _auto_parts(X, seed, n_components):
    settings, report = choose_als_settings(X, n_components=n_components, random_state=seed)
    als = ALSFactors(
        n_components,
        regularization=settings["regularization"],
        confidence_scale=settings["confidence_scale"],
        random_state=seed,
    )
    return als, settings, report


class _ShrunkClosedForm(ClosedFormFoldIn):
    """ClosedFormFoldIn with the support shrinkage of :mod:`skfewrec._auto`, for
    library versions whose adapter predates it (the rerank_auto candidates)."""

    def __init__(self, factors=None, *, prior="gaussian", prior_strength=1.0, shrinkage=0.0):
        super().__init__(factors, prior=prior, prior_strength=prior_strength)
        self.shrinkage = shrinkage

    def fit(self, X, y=None):
        super().fit(X)
        self.item_means_ = item_conditional_means(X, self.factors_.user_factors_)
        return self

    def _user_vectors(self, X):
        return shrink_to_support(super()._user_vectors(X), X, self.item_means_, self.shrinkage)


def _auto_adapter(X, seed, args):
    """The closed form as the "auto" defaults build it: settings searched on warm users."""
    als, settings, report = _auto_parts(X, seed, args.n_components)
    # the library's own adapter once it has the shrinkage (the ALS carries the seed)
    lib = "shrinkage" in ClosedFormFoldIn().get_params()
    est = (ClosedFormFoldIn if lib else _ShrunkClosedForm)(
        als,
        prior="gaussian",
        prior_strength=settings["prior_strength"],
        shrinkage=settings["shrinkage"],
    )
    return est, {"settings": settings, "search_seconds": report["seconds"]}


def _closed_form_auto(X, seed, args):
    est, info = _auto_adapter(X, seed, args)
    return est.fit(X), info


def _gradient_auto(X, seed, args):
    als, settings, report = _auto_parts(X, seed, args.n_components)
    est = GradientFoldIn(als, prior_strength=settings["prior_strength"], random_state=seed)
    return est.fit(X), {"settings": settings, "search_seconds": report["seconds"]}


def _rerank_auto(X, seed, args):
    candidates, info = _auto_adapter(X, seed, args)
    return LightGBMReranker(candidates, random_state=seed).fit(X), info


def _plain(cls):
    def fit(X, seed, args):
        est = _seeded(cls, seed).fit(X)
        chosen = {
            k: float(v)
            for k, v in vars(est).items()
            if k.endswith("_") and not k.startswith("_") and isinstance(v, float | int)
        }
        return est, {"fitted": chosen}

    return fit


MODELS = {
    "closed_form": _plain(ClosedFormFoldIn),
    "gradient": _plain(GradientFoldIn),
    "rerank": _plain(LightGBMReranker),
    "closed_form_auto": _closed_form_auto,
    "gradient_auto": _gradient_auto,
    "rerank_auto": _rerank_auto,
}


def run(args):
    name, data = load_dataset(args.data)
    out = args.out or f"defaults_{name}.json"
    results = load_results(RESULTS / out) if args.append else {}
    for model in args.models:
        results[model] = [r for r in results.get(model, []) if r["seed"] not in args.seeds]
    print(f"{name}: {data.X.shape[0]} users x {data.X.shape[1]} items, {data.X.nnz} positives")
    for seed in args.seeds:
        split = split_users(data.X, seed)
        users = evaluation_users(split["X_new"], args.n_shots, args.min_query, args.max_users, seed)
        for model in args.models:
            t0 = time.perf_counter()
            est, info = MODELS[model](split["X_warm"], seed, args)
            fit_seconds = time.perf_counter() - t0
            c = curve(est, split["X_new"], users, args.k, seed)
            for n, row in c.iterrows():
                results[model].append(
                    {
                        "n_shots": int(n),
                        **row.to_dict(),
                        "seed": seed,
                        "fit_seconds": fit_seconds,
                        **info,
                    }
                )
            print(
                f"  seed {seed} {model}: "
                + " ".join(f"{v:.4f}" for v in c["ndcg"])
                + f"  (fit {fit_seconds:.1f}s) {info}",
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
                    "baselines": args.baselines,
                    "models": results,
                },
            )
    report(results, args)
    return results


def report(results, args):
    """Print the table of these models with the tuned baselines (and ceiling) of a
    ``fewshot.py`` run on the same seeds."""
    merged = dict(results)
    for path in args.baselines or ():
        tuned = load_results(RESULTS / path)
        for model, rows in tuned.items():
            kept = [r for r in rows if r["seed"] in args.seeds]
            if kept:
                merged.setdefault(model if model in BASELINES else f"tuned:{model}", [])
                merged[model if model in BASELINES else f"tuned:{model}"].extend(kept)
    print_summary(merged, f"NDCG@{args.k}", args.seeds)
    fits = {m: np.mean([r["fit_seconds"] for r in rows]) for m, rows in results.items() if rows}
    print("\nmean fit seconds (incl. any auto search):", {m: round(v, 1) for m, v in fits.items()})


def main(argv=None):
    p = parser(__doc__.split("\n")[0], MODELS)
    p.add_argument(
        "--baselines", nargs="+", help="fewshot.py result files in results/ (same seeds)"
    )
    p.add_argument("--n-components", type=int, default=64, help="factors of the *_auto models")
    p.add_argument("--report-only", action="store_true", help="print the table of --out")
    args = p.parse_args(argv)
    if args.report_only:
        name, _ = load_dataset(args.data)
        results = load_results(RESULTS / (args.out or f"defaults_{name}.json"))
        return report({m: results[m] for m in args.models if m in results}, args)
    return run(args)


if __name__ == "__main__":
    main()
