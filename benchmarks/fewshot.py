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
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator

from skfewrec import (
    EASE,
    ALSFactors,
    ClosedFormFoldIn,
    GradientFoldIn,
    ImplicitFoldIn,
    ItemKNN,
    LightGBMReranker,
    MostPopular,
)
from skfewrec.metrics import evaluate
from skfewrec.model_selection import fewshot_curve, support_query_split, train_test_split_users


@dataclass
class ModelSpec:
    """A named model: ``build(factors, **params)`` and the grid tuned on warm users."""

    build: callable
    grid: dict = field(default_factory=dict)
    #: extra keyword arguments of fit (side tables): ``fit_kwargs(data, rows)``, with
    #: ``rows`` the rows of ``data.X`` being fitted
    fit_kwargs: callable = None
    #: extra keyword arguments of recommend (user side tables): ``(data, rows)``
    recommend_kwargs: callable = None
    #: use the tuned parameters of this (earlier) model instead of a grid of its own
    reuse: str = None
    #: fitted parts measured in the same run: ``also(est) -> {suffix: estimator}``
    also: callable = None


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


def _unfrozen(factors):
    """The unfitted ALS of a frozen factor source: the re-ranker refits it per
    cross-fitting fold (prefit factors would leak the folds' held-back items)."""
    return clone(factors.estimator if isinstance(factors, FrozenEstimator) else factors)


def _reranker(factors, candidates, **kwargs):
    return LightGBMReranker(candidates(factors), n_episodes=8, random_state=0, **kwargs)


#: the item side table of the dataset being run (set by ``run``)
_SIDE = {"items": None}


def _item_table(data):
    items = data.item_features
    if items is None:
        return None
    items = items.drop(columns=[c for c in ("title",) if c in items]).reset_index(drop=True)
    if "category" in items:  # the synthetic data's cluster id is a category
        items["category"] = items["category"].astype("category")
    return items


def _side_fit(data, rows):
    kwargs = {}
    if data.timestamps is not None:
        kwargs["timestamps"] = data.timestamps[rows]
    if data.user_features is not None:
        kwargs["user_features"] = data.user_features.iloc[rows]
    return kwargs


def _side_recommend(data, rows):
    if data.user_features is None:
        return {}
    return {"user_features": data.user_features.iloc[rows]}


def _gaussian(factors, prior_strength):
    return ClosedFormFoldIn(_unfrozen(factors), prior="gaussian", prior_strength=prior_strength)


def _gaussian_als(factors, regularization, confidence_scale, prior_strength):
    return MODELS["closed_form_gaussian_als"].build(
        factors, regularization, confidence_scale, prior_strength
    )


# the re-ranker over an adapter of the registry, with that adapter's tuned settings;
# its own candidate adapter (``candidates_``) is measured in the same run
MODELS["rerank"] = ModelSpec(
    lambda factors, **p: _reranker(factors, lambda f: _gaussian(f, **p)),
    reuse="closed_form_gaussian",
    also=lambda est: {"candidates": est.candidates_},
)
MODELS["rerank_side"] = ModelSpec(
    lambda factors, **p: _reranker(
        factors, lambda f: _gaussian(f, **p), item_features=_SIDE["items"]
    ),
    reuse="closed_form_gaussian",
    fit_kwargs=_side_fit,
    recommend_kwargs=_side_recommend,
    also=lambda est: {"candidates": est.candidates_},
)
MODELS["rerank_als"] = ModelSpec(
    lambda factors, **p: _reranker(factors, lambda f: _gaussian_als(f, **p)),
    reuse="closed_form_gaussian_als",
    also=lambda est: {"candidates": est.candidates_},
)

#: ALS settings tuned once, on warm users, with the plain closed form
ALS_GRID = {
    "n_components": [32, 64],
    "regularization": [0.1, 1.0],
    "confidence_scale": [2.0, 10.0],
}


def _curve(estimator, X, args, seed, recommend_kwargs=None):
    if recommend_kwargs is None:
        return fewshot_curve(
            estimator,
            X,
            n_shots=args.n_shots,
            k=args.k,
            min_query=args.min_query,
            metrics=("ndcg", "recall"),
            random_state=seed,
        )
    # fewshot_curve's protocol, passing each kept user's side features to recommend
    rows = []
    for n in args.n_shots:
        keep = np.flatnonzero(np.diff(X.indptr) >= n + args.min_query)
        S, Q = support_query_split(X[keep], n, random_state=seed)
        ids, _ = estimator.recommend(S, k=args.k, filter_seen=True, **recommend_kwargs(keep))
        rows.append(
            {**evaluate(Q, ids, k=args.k, metrics=("ndcg", "recall")), "n_users": keep.size}
        )
    return pd.DataFrame(rows, index=pd.Index(args.n_shots, name="n_shots"))


def _fit(spec, factors, params, X, data, rows):
    est = spec.build(factors, **params)
    kwargs = spec.fit_kwargs(data, rows) if spec.fit_kwargs else {}
    return est.fit(X, **kwargs)


def _recommend_kwargs(spec, data, rows):
    if spec.recommend_kwargs is None:
        return None
    return lambda keep: spec.recommend_kwargs(data, rows[keep])


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
    # the same splits as splitting X alone; the row numbers select side tables
    X_warm, X_new, warm_rows, new_rows = train_test_split_users(
        X, np.arange(X.shape[0]), test_size=0.2, random_state=args.seed
    )
    X_train, X_val, train_rows, val_rows = train_test_split_users(
        X_warm, warm_rows, test_size=0.2, random_state=args.seed + 1
    )
    _SIDE["items"] = _item_table(data)
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
        grid = spec.grid
        if spec.reuse is not None:
            grid = {} if spec.reuse in results else MODELS[spec.reuse].grid
        points = list(_grid_points(grid))
        if spec.reuse in results:
            best = (None, results[spec.reuse]["params"])
        elif len(points) > 1:
            for params in points:
                est = _fit(spec, train_factors, params, X_train, data, train_rows)
                extra = _recommend_kwargs(spec, data, val_rows)
                score = _curve(est, X_val, args, args.seed, extra)["ndcg"].mean()
                best = max(best, (score, params), key=lambda t: t[0])
        else:
            best = (None, points[0])
        params = best[1]
        t_fit = time.perf_counter()
        est = _fit(spec, final_factors, params, X_warm, data, warm_rows)
        fit_time = time.perf_counter() - t_fit
        measured = {model: (est, _recommend_kwargs(spec, data, new_rows))}
        for suffix, part in (spec.also(est) if spec.also else {}).items():
            measured[f"{model}:{suffix}"] = (part, None)
        for name_, (part, extra) in measured.items():
            curve = _curve(part, X_new, args, args.seed, extra)
            results[name_] = {
                "params": params,
                "fit_seconds": fit_time,
                "tune_seconds": time.perf_counter() - t0 - fit_time,
                "curve": curve.reset_index().to_dict(orient="records"),
            }
            for n, row in curve.iterrows():
                rows.append({"model": name_, "n_shots": int(n), **row.to_dict()})
        print(f"{model}: {params} fitted in {fit_time:.1f}s")

    table = pd.DataFrame(rows)
    order = list(dict.fromkeys(table["model"]))
    wide = table.pivot(index="model", columns="n_shots", values="ndcg").loc[order]
    print(f"\nNDCG@{args.k} on new users ({name}), by number of shots:")
    print(wide.round(4).to_string())
    recall = table.pivot(index="model", columns="n_shots", values="recall").loc[order]
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
    own = [m for m in wide.index if f"{m}:candidates" in wide.index]
    if own:
        print("\nratio of each re-ranker to its own candidate adapter (same run):")
        print(
            pd.DataFrame({m: wide.loc[m] / wide.loc[f"{m}:candidates"] for m in own})
            .T.round(3)
            .to_string()
        )
    path = write_json(
        args.out or f"fewshot_{name}.json",
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
    parser.add_argument("--out", help="result file name (default: fewshot_<data>.json)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
