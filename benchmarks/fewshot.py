"""The few-shot curve: NDCG@k and Recall@k against the number of shots, every model, one run.

Protocol (DESIGN.md, "Evaluation"):
- users are split into warm (80%) and new (20%), seeded;
- hyper-parameters are tuned on the warm users only: the warm users are split again
  into warm-train and warm-validation users, each candidate setting is fitted on
  warm-train and scored by mean NDCG@k over the shot counts on warm-validation;
  the best setting is refitted on all warm users;
- ALS factors are tuned once (with the plain closed form), then shared, frozen,
  by every factor-based model, so differences come from the adapters alone;
- for each n in --n-shots, new users with at least n + 5 positives are split into
  n random support items and the rest as query; metrics over the full catalogue
  minus the support items.

Usage::

    python benchmarks/fewshot.py --data ../shared/data/ml-100k
    python benchmarks/fewshot.py --data ../shared/data/ml-latest-small --models closed_form ease
"""

import argparse
import itertools
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from _common import load_dataset, write_json
from sklearn.frozen import FrozenEstimator

from skfewrec import (
    EASE,
    ALSFactors,
    ClosedFormFoldIn,
    GradientFoldIn,
    ImplicitFoldIn,
    ItemKNN,
    MostPopular,
)
from skfewrec.model_selection import fewshot_curve, train_test_split_users


@dataclass
class ModelSpec:
    """A named model: ``build(factors, **params)`` and the grid tuned on warm users."""

    build: callable
    grid: dict = field(default_factory=dict)
    #: extra keyword arguments of fit (side tables), from the dataset Bunch
    fit_kwargs: callable = None


def _grid_points(grid):
    keys = sorted(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        yield dict(zip(keys, values))


#: the models of the benchmark; other modules add theirs here
MODELS = {
    "most_popular": ModelSpec(lambda factors: MostPopular()),
    "item_knn": ModelSpec(
        lambda factors, n_neighbors: ItemKNN(n_neighbors=n_neighbors),
        {"n_neighbors": [20, 50, 200]},
    ),
    "ease": ModelSpec(lambda factors, l2: EASE(l2=l2), {"l2": [50.0, 200.0, 800.0]}),
    "implicit_foldin": ModelSpec(lambda factors: ImplicitFoldIn(factors=factors)),
    "closed_form": ModelSpec(lambda factors: ClosedFormFoldIn(factors=factors)),
    "closed_form_mean": ModelSpec(
        lambda factors, prior_strength: ClosedFormFoldIn(
            factors=factors, prior="mean", prior_strength=prior_strength
        ),
        {"prior_strength": [0.1, 0.3, 1.0, 3.0]},
    ),
    "closed_form_gaussian": ModelSpec(
        lambda factors, prior_strength: ClosedFormFoldIn(
            factors=factors, prior="gaussian", prior_strength=prior_strength
        ),
        {"prior_strength": [0.1, 0.3, 1.0, 3.0]},
    ),
    # the prior tuned jointly with its own ALS factors (the shared factors are tuned for
    # the plain closed form, which wants a different ridge and confidence than a prior)
    "closed_form_gaussian_als": ModelSpec(
        lambda factors, regularization, confidence_scale, prior_strength: ClosedFormFoldIn(
            factors=ALSFactors(
                n_components=128,
                regularization=regularization,
                confidence_scale=confidence_scale,
                random_state=0,
            ),
            prior="gaussian",
            prior_strength=prior_strength,
        ),
        {
            "regularization": [10.0, 50.0],
            "confidence_scale": [10.0, 40.0],
            "prior_strength": [0.3, 1.0, 3.0],
        },
    ),
    # BPR steps from a start (warm mean, meta-learned, or the gaussian closed form),
    # step sizes meta-learned (Meta-SGD) on warm-user episodes
    "gradient": ModelSpec(
        lambda factors, init: GradientFoldIn(factors=factors, init=init, random_state=0),
        {"init": ["mean", "meta", "closed_form"]},
    ),
    # the same with its own ALS factors, tuned jointly (as closed_form_gaussian_als)
    "gradient_als": ModelSpec(
        lambda factors, regularization, confidence_scale, init: GradientFoldIn(
            factors=ALSFactors(
                n_components=128,
                regularization=regularization,
                confidence_scale=confidence_scale,
                random_state=0,
            ),
            init=init,
            random_state=0,
        ),
        {
            "regularization": [10.0, 50.0],
            "confidence_scale": [10.0, 40.0],
            "init": ["mean", "meta", "closed_form"],
        },
    ),
}

#: ALS settings tuned once, on warm users, with the plain closed form
ALS_GRID = {
    "n_components": [32, 64],
    "regularization": [0.1, 1.0],
    "confidence_scale": [2.0, 10.0],
}


def _curve(estimator, X, args, seed):
    return fewshot_curve(
        estimator,
        X,
        n_shots=args.n_shots,
        k=args.k,
        min_query=args.min_query,
        metrics=("ndcg", "recall"),
        random_state=seed,
    )


def _fit(spec, factors, params, X, data):
    est = spec.build(factors, **params)
    kwargs = spec.fit_kwargs(data) if spec.fit_kwargs else {}
    return est.fit(X, **kwargs)


def tune_factors(X_train, X_val, args):
    """Best ALS setting by warm-validation mean NDCG of the plain closed form."""
    best = (-np.inf, None)
    for params in _grid_points(ALS_GRID):
        als = ALSFactors(**params, max_iter=args.max_iter, random_state=args.seed).fit(X_train)
        rec = ClosedFormFoldIn(factors=FrozenEstimator(als)).fit(X_train)
        score = _curve(rec, X_val, args, args.seed)["ndcg"].mean()
        if args.verbose:
            print(f"  als {params}: {score:.4f}")
        best = max(best, (score, params), key=lambda t: t[0])
    return best[1]


def run(args):
    name, data = load_dataset(args.data, random_state=args.seed)
    X = data.X
    X_warm, X_new = train_test_split_users(X, test_size=0.2, random_state=args.seed)
    X_train, X_val = train_test_split_users(X_warm, test_size=0.2, random_state=args.seed + 1)
    print(
        f"{name}: {X.shape[0]} users x {X.shape[1]} items, {X.nnz} positives; "
        f"warm {X_warm.shape[0]} (tuning: {X_train.shape[0]} train / {X_val.shape[0]} val), "
        f"new {X_new.shape[0]}"
    )

    t0 = time.perf_counter()
    als_params = tune_factors(X_train, X_val, args)
    print(f"ALS tuned on warm users in {time.perf_counter() - t0:.1f}s: {als_params}")
    train_factors = FrozenEstimator(
        ALSFactors(**als_params, max_iter=args.max_iter, random_state=args.seed).fit(X_train)
    )
    final_factors = FrozenEstimator(
        ALSFactors(**als_params, max_iter=args.max_iter, random_state=args.seed).fit(X_warm)
    )

    rows, results = [], {}
    for model in args.models:
        spec = MODELS[model]
        t0 = time.perf_counter()
        best = (-np.inf, {})
        points = list(_grid_points(spec.grid))
        if len(points) > 1:
            for params in points:
                est = _fit(spec, train_factors, params, X_train, data)
                score = _curve(est, X_val, args, args.seed)["ndcg"].mean()
                best = max(best, (score, params), key=lambda t: t[0])
        else:
            best = (None, points[0])
        params = best[1]
        t_fit = time.perf_counter()
        est = _fit(spec, final_factors, params, X_warm, data)
        fit_time = time.perf_counter() - t_fit
        curve = _curve(est, X_new, args, args.seed)
        results[model] = {
            "params": params,
            "fit_seconds": fit_time,
            "tune_seconds": time.perf_counter() - t0 - fit_time,
            "curve": curve.reset_index().to_dict(orient="records"),
        }
        for n, row in curve.iterrows():
            rows.append({"model": model, "n_shots": int(n), **row.to_dict()})
        print(f"{model}: {params} fitted in {fit_time:.1f}s")

    table = pd.DataFrame(rows)
    wide = table.pivot(index="model", columns="n_shots", values="ndcg").loc[args.models]
    print(f"\nNDCG@{args.k} on new users ({name}), by number of shots:")
    print(wide.round(4).to_string())
    recall = table.pivot(index="model", columns="n_shots", values="recall").loc[args.models]
    print(f"\nRecall@{args.k}:")
    print(recall.round(4).to_string())
    users = table.pivot(index="model", columns="n_shots", values="n_users").iloc[0]
    print("\nusers evaluated per n:", dict(users.astype(int)))
    baselines = [
        m for m in ("most_popular", "implicit_foldin", "ease", "item_knn") if m in wide.index
    ]
    if baselines:
        best_base = wide.loc[baselines].max()
        print("\nratio to the best baseline at each n:")
        print((wide / best_base).round(3).to_string())
    path = write_json(
        f"fewshot_{name}.json",
        {
            "dataset": name,
            "shape": list(X.shape),
            "k": args.k,
            "n_shots": args.n_shots,
            "min_query": args.min_query,
            "seed": args.seed,
            "als_params": als_params,
            "models": results,
        },
    )
    print(f"\nwrote {path}")
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="synthetic", help="dataset folder or synthetic[:UxI]")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--n-shots", nargs="+", type=int, default=[1, 3, 5, 10, 20])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--min-query", type=int, default=5)
    parser.add_argument("--max-iter", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
