"""The few-shot curve: NDCG@k and Recall@k against the number of shots, every model, one run.

Protocol (DESIGN.md, "Evaluation"), repeated for each seed:
- users are split into warm (80%) and new (20%);
- hyper-parameters are tuned on the warm users only: the warm users are split again
  into warm-train and warm-validation users, each candidate setting is fitted on
  warm-train and scored on warm-validation at every n; **each n gets its best
  setting** (a baseline tuned for 1-shot users is not the one tuned for 20), which is
  then refitted on all warm users;
- numeric grids extend while a best value sits on their edge (EASE's l2, the
  neighbours of item-kNN, ALS regularization and confidence scale), so no baseline is
  reported at the border of its grid;
- every factor model tunes its own ALS settings (fits cached by setting);
- for each n, new users with at least n + 5 positives (at most ``--max-users`` of
  them, the same random subset for every model) are split into n random support items
  and the rest as query; metrics over the full catalogue minus the support items.

Usage::

    python benchmarks/fewshot.py --data ../shared/data/ml-100k
    python benchmarks/fewshot.py --data ../shared/data/gowalla --models ease --ease-items 15000
"""

import argparse
import itertools
import json
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from _baselines import ConditionalKNN, TopItemsEASE
from _common import RESULTS, load_dataset, write_json
from sklearn.frozen import FrozenEstimator

from skfewrec import (
    ALSFactors,
    ClosedFormFoldIn,
    GradientFoldIn,
    ItemKNN,
    LightGBMReranker,
    MostPopular,
)
from skfewrec.metrics import evaluate
from skfewrec.model_selection import support_query_split, train_test_split_users

#: parameters that configure the ALS factors rather than the model on top
ALS_KEYS = ("n_components", "regularization", "confidence_scale")

#: the baselines (the bar every skfewrec model is measured against)
BASELINES = ("most_popular", "item_knn", "cond_knn", "ease", "implicit_foldin")


@dataclass
class ModelSpec:
    """A named model: ``build(factors, seed, **params)`` and the grid tuned on warm users.

    ``factors`` is a frozen ALS fitted with the grid point's ALS settings (keys in
    ``ALS_KEYS``), or None when the grid has none of them.
    """

    build: callable
    grid: dict = field(default_factory=dict)
    #: numeric axes extended geometrically while a best value sits on an edge
    extend: tuple = ()
    #: use the tuned parameters of this (earlier) model instead of a grid of its own
    reuse: str = None
    #: extra keyword arguments of fit (side tables): ``fit_kwargs(data, rows)``
    fit_kwargs: callable = None
    #: extra keyword arguments of recommend (user side tables): ``(data, rows)``
    recommend_kwargs: callable = None


def _grid_points(grid):
    keys = sorted(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        yield dict(zip(keys, values))


def _key(params):
    return json.dumps(params, sort_keys=True, default=float)


#: the ALS grid of the factor models (regularization up to the hundreds: few-shot
#: users want far more than implicit's default 0.01)
ALS_GRID = {"regularization": [1.0, 10.0, 100.0], "confidence_scale": [3.0, 30.0]}

#: whether this skfewrec's closed form has the support shrinkage (off for baselines)
_HAS_SHRINKAGE = "shrinkage" in ClosedFormFoldIn().get_params()

#: the item side table of the dataset being run (set by ``run``)
_SIDE = {"items": None, "ease_items": None}


def _gaussian(factors, seed=None, prior_strength=1.0, **_):
    # the prior alone, as before the support shrinkage (what the defaults add to it)
    kwargs = {"shrinkage": 0.0} if _HAS_SHRINKAGE else {}
    return ClosedFormFoldIn(factors, prior="gaussian", prior_strength=prior_strength, **kwargs)


def _reranker(factors, candidates, seed, **kwargs):
    # the re-ranker refits its adapter per cross-fitting fold: hand it unfitted ALS
    return LightGBMReranker(candidates, n_episodes=8, random_state=seed, **kwargs)


def _als(params, seed, max_iter=15):
    als = {k: params[k] for k in ALS_KEYS if k in params}
    return ALSFactors(**als, max_iter=max_iter, random_state=seed)


MODELS = {
    "most_popular": ModelSpec(lambda factors, seed: MostPopular()),
    "item_knn": ModelSpec(
        lambda factors, seed, n_neighbors: ItemKNN(n_neighbors=n_neighbors),
        {"n_neighbors": [50, 200, 800]},
        extend=("n_neighbors",),
    ),
    "cond_knn": ModelSpec(
        lambda factors, seed, n_neighbors, pop_discount: ConditionalKNN(
            n_neighbors=n_neighbors, pop_discount=pop_discount
        ),
        {"n_neighbors": [50, 200, 800], "pop_discount": [0.0, 0.5, 1.0]},
        extend=("n_neighbors",),
    ),
    "ease": ModelSpec(
        lambda factors, seed, l2: TopItemsEASE(l2=l2, max_items=_SIDE["ease_items"]),
        {"l2": [100.0, 400.0, 1600.0]},
        extend=("l2",),
    ),
    # plain iALS fold-in with the item factors fixed (= implicit's recalculate_user)
    "implicit_foldin": ModelSpec(
        lambda factors, seed, **_: ClosedFormFoldIn(
            factors, prior="none", **({"shrinkage": 0.0} if _HAS_SHRINKAGE else {})
        ),
        {"n_components": [64], **ALS_GRID},
        extend=("regularization", "confidence_scale"),
    ),
    # the empirical-Bayes prior tuned jointly with its own ALS factors
    "closed_form_gaussian": ModelSpec(
        _gaussian,
        {"n_components": [64], **ALS_GRID, "prior_strength": [0.3, 1.0, 3.0]},
        extend=("regularization", "confidence_scale", "prior_strength"),
    ),
    # BPR steps from a meta-learned start, on the gaussian model's tuned factors
    "gradient": ModelSpec(
        lambda factors, seed, prior_strength, **_: GradientFoldIn(
            factors, prior_strength=prior_strength, random_state=seed
        ),
        reuse="closed_form_gaussian",
    ),
}


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


def _item_table(data):
    items = data.item_features
    if items is None:
        return None
    items = items.drop(columns=[c for c in ("title",) if c in items]).reset_index(drop=True)
    if "category" in items:  # the synthetic data's cluster id is a category
        items["category"] = items["category"].astype("category")
    return items


# the re-ranker over the tuned gaussian adapter (unfitted ALS with its settings)
MODELS["rerank"] = ModelSpec(
    lambda factors, seed, **p: _reranker(None, _gaussian(_als(p, seed), **p), seed),
    reuse="closed_form_gaussian",
)
MODELS["rerank_side"] = ModelSpec(
    lambda factors, seed, **p: _reranker(
        None, _gaussian(_als(p, seed), **p), seed, item_features=_SIDE["items"]
    ),
    reuse="closed_form_gaussian",
    fit_kwargs=_side_fit,
    recommend_kwargs=_side_recommend,
)


class FactorCache:
    """Frozen ALS factors fitted on one matrix, one fit per ALS setting."""

    def __init__(self, X, seed, max_iter):
        self.X, self.seed, self.max_iter = X, seed, max_iter
        self._fitted = {}

    def get(self, params):
        als = {k: params[k] for k in ALS_KEYS if k in params}
        if not als:
            return None
        key = _key(als)
        if key not in self._fitted:
            fitted = _als(als, self.seed, self.max_iter).fit(self.X)
            self._fitted[key] = FrozenEstimator(fitted)
        return self._fitted[key]


def evaluation_users(X, n_shots, min_query, max_users, seed):
    """The rows evaluated at each n: enough positives, at most ``max_users`` of them."""
    rng = np.random.default_rng(seed)
    counts = np.diff(X.indptr)
    chosen = {}
    for n in n_shots:
        keep = np.flatnonzero(counts >= n + min_query)
        if max_users and keep.size > max_users:
            keep = np.sort(rng.choice(keep, max_users, replace=False))
        chosen[n] = keep
    return chosen


def curve(estimator, X, users, k, seed, recommend_kwargs=None):
    """NDCG@k and Recall@k at each n, on the chosen users' random n-shot splits."""
    rows = []
    for n, keep in users.items():
        S, Q = support_query_split(X[keep], n, random_state=seed)
        extra = {} if recommend_kwargs is None else recommend_kwargs(keep)
        ids, _ = estimator.recommend(S, k=k, filter_seen=True, **extra)
        rows.append({**evaluate(Q, ids, k=k, metrics=("ndcg", "recall")), "n_users": keep.size})
    return pd.DataFrame(rows, index=pd.Index(list(users), name="n_shots"))


def _edge_gain(scores, best, axis, inner, n):
    """How much the best point beats its neighbour one step inside the grid, at n."""
    neighbour = scores.get(_key({**best, axis: inner}))
    if neighbour is None:
        return np.inf
    return scores[_key(best)][1].loc[n] / max(neighbour[1].loc[n], 1e-12) - 1.0


def _extended(grid, axes, scores, best, rounds_left, tol=0.002):
    """The grid with each axis in ``axes`` grown by one value past an edge where a
    best point sits and still gains (more than ``tol``, relative) over its inner
    neighbour: flat ends are not chased."""
    if rounds_left <= 0:
        return None
    grown = False
    grid = {k: list(v) for k, v in grid.items()}
    for axis in axes:
        values = sorted(grid[axis])
        if len(values) < 2:
            continue
        integer = all(isinstance(v, int) for v in values)
        top = any(
            p[axis] == values[-1] and _edge_gain(scores, p, axis, values[-2], n) > tol
            for n, p in best.items()
        )
        bottom = any(
            p[axis] == values[0] and _edge_gain(scores, p, axis, values[1], n) > tol
            for n, p in best.items()
        )
        if top:
            new = values[-1] * values[-1] / values[-2]
            values.append(int(round(new)) if integer else float(new))
            grown = True
        if bottom and values[0] > 0:
            new = values[0] * values[0] / values[1]
            if not integer or new >= 1:
                values.insert(0, max(int(round(new)), 1) if integer else float(new))
                grown = True
        grid[axis] = values
    return grid if grown else None


class Tuner:
    """Per-n tuning of a model on warm-train / warm-validation users."""

    def __init__(self, data, split, args, seed):
        self.data, self.split, self.args, self.seed = data, split, args, seed
        self.train_factors = FactorCache(split["X_train"], seed, args.max_iter)
        self.warm_factors = FactorCache(split["X_warm"], seed, args.max_iter)
        self.val_users = evaluation_users(
            split["X_val"], args.n_shots, args.min_query, args.max_val_users, seed
        )
        self.new_users = evaluation_users(
            split["X_new"], args.n_shots, args.min_query, args.max_users, seed
        )

    def _fit(self, spec, params, part):
        X = self.split[f"X_{part}"]
        cache = self.train_factors if part == "train" else self.warm_factors
        factors = cache.get(params)
        est = spec.build(factors, self.seed, **params)
        kwargs = spec.fit_kwargs(self.data, self.split[f"{part}_rows"]) if spec.fit_kwargs else {}
        return est.fit(X, **kwargs)

    def _recommend_kwargs(self, spec, part):
        if spec.recommend_kwargs is None:
            return None
        rows = self.split[f"{part}_rows"]
        return lambda keep: spec.recommend_kwargs(self.data, rows[keep])

    def tune(self, spec, grid, verbose=False):
        """``{n: best params}`` by warm-validation NDCG, growing the grid past its edges."""
        scores = {}
        rounds = self.args.extend_rounds
        while grid is not None:
            for params in _grid_points(grid):
                if _key(params) in scores:
                    continue
                est = self._fit(spec, params, "train")
                c = curve(
                    est,
                    self.split["X_val"],
                    self.val_users,
                    self.args.k,
                    self.seed,
                    self._recommend_kwargs(spec, "val"),
                )
                scores[_key(params)] = (params, c["ndcg"])
                if verbose:
                    print(f"    {params}: " + " ".join(f"{v:.4f}" for v in c["ndcg"]))
            best = self._best(scores)
            grid = _extended(grid, spec.extend, scores, best, rounds)
            rounds -= 1
        return self._best(scores)

    def _best(self, scores):
        best = {}
        for n in self.args.n_shots:
            params, _ = max(scores.values(), key=lambda pc: pc[1].loc[n])
            best[n] = params
        return best

    def measure(self, spec, best):
        """Refit each n's best setting on all warm users; the curve on new users."""
        fitted, rows = {}, []
        fit_seconds = {}
        for n, params in best.items():
            key = _key(params)
            if key not in fitted:
                t0 = time.perf_counter()
                est = self._fit(spec, params, "warm")
                fit_seconds[key] = time.perf_counter() - t0
                fitted[key] = curve(
                    est,
                    self.split["X_new"],
                    self.new_users,
                    self.args.k,
                    self.seed,
                    self._recommend_kwargs(spec, "new"),
                )
            rows.append(
                {"n_shots": n, **fitted[key].loc[n].to_dict(), "fit_seconds": fit_seconds[key]}
            )
        return rows


def split_users(X, seed):
    """Warm/new users, and the warm users' train/validation split, with row numbers."""
    X_warm, X_new, warm_rows, new_rows = train_test_split_users(
        X, np.arange(X.shape[0]), test_size=0.2, random_state=seed
    )
    X_train, X_val, train_rows, val_rows = train_test_split_users(
        X_warm, warm_rows, test_size=0.2, random_state=seed + 1000
    )
    return {
        "X_warm": X_warm,
        "X_new": X_new,
        "X_train": X_train,
        "X_val": X_val,
        "warm_rows": warm_rows,
        "new_rows": new_rows,
        "train_rows": train_rows,
        "val_rows": val_rows,
    }


def run_seed(data, args, seed, results, tuned=None, save=None):
    """Tune and measure ``args.models`` for one seed; ``results[model]`` gets its rows.

    ``tuned`` (``{model: {n: params}}``) skips the tuning of the models it holds;
    ``save(split)`` is called after each model.
    """
    split = split_users(data.X, seed)
    tuner = Tuner(data, split, args, seed)
    chosen = dict(tuned or {})
    for model in args.models:
        spec = MODELS[model]
        t0 = time.perf_counter()
        if model in chosen:
            best = chosen[model]
        elif spec.reuse is not None:
            if spec.reuse not in chosen:
                chosen[spec.reuse] = tuner.tune(MODELS[spec.reuse], MODELS[spec.reuse].grid)
            best = chosen[spec.reuse]
        else:
            best = tuner.tune(spec, spec.grid, verbose=args.verbose)
        chosen[model] = best
        tune_seconds = time.perf_counter() - t0
        rows = tuner.measure(spec, best)
        for row in rows:
            row.update(seed=seed, params=best[row["n_shots"]], tune_seconds=tune_seconds)
        results.setdefault(model, []).extend(rows)
        print(
            f"  seed {seed} {model}: "
            + " ".join(f"{r['ndcg']:.4f}" for r in rows)
            + f"  (tuned {tune_seconds:.0f}s) {best[args.n_shots[0]]} .. {best[args.n_shots[-1]]}",
            flush=True,
        )
        if save is not None:
            save(split)
    return split


def summary(results, baselines=BASELINES):
    """Mean +- standard error over seeds of NDCG, and of the ratio to the best baseline.

    The ratio is taken per seed (the best baseline of that seed and n), then averaged.
    """
    table = pd.DataFrame([{"model": m, **r} for m, rows in results.items() for r in rows])
    g = table.groupby(["model", "n_shots"])["ndcg"]
    mean = g.mean().unstack()
    se = (g.std(ddof=1) / np.sqrt(g.count())).unstack()
    present = [b for b in baselines if b in mean.index]
    ratio_mean = ratio_se = None
    if present:
        wide = table.pivot_table(index=["seed", "n_shots"], columns="model", values="ndcg")
        best = wide[present].max(axis=1)
        ratio = wide.div(best, axis=0).stack().rename("ratio").reset_index()
        rg = ratio.groupby(["model", "n_shots"])["ratio"]
        ratio_mean = rg.mean().unstack()
        ratio_se = (rg.std(ddof=1) / np.sqrt(rg.count())).unstack()
    order = list(dict.fromkeys(table["model"]))
    return (
        mean.loc[order],
        se.loc[order],
        (None if ratio_mean is None else ratio_mean.loc[order]),
        (None if ratio_se is None else ratio_se.loc[order]),
    )


def print_summary(results, title, seeds):
    """Print the tables of :func:`summary`: NDCG and the ratio to the best baseline."""
    mean, se, ratio, ratio_se = summary(results)
    print(f"\n{title}, mean +- s.e. over seeds {seeds}:")
    print(format_table(mean, se))
    if ratio is not None:
        print("\nratio to the best tuned baseline (per seed and n), mean +- s.e.:")
        print(format_table(ratio, ratio_se))


def format_table(mean, se, digits=3):
    """``mean +- se`` cells."""
    cells = mean.copy().astype(object)
    for m in mean.index:
        for n in mean.columns:
            s = se.loc[m, n]
            cells.loc[m, n] = f"{mean.loc[m, n]:.{digits}f}" + (
                "" if not np.isfinite(s) else f" +- {s:.{digits}f}"
            )
    return cells.to_string()


def load_results(path):
    """The ``results`` dict of a result file, or an empty one."""
    if path.exists():
        return json.loads(path.read_text())["models"]
    return {}


def run(args):
    name, data = load_dataset(args.data)
    X = data.X
    _SIDE["items"] = _item_table(data)
    _SIDE["ease_items"] = args.ease_items
    print(f"{name}: {X.shape[0]} users x {X.shape[1]} items, {X.nnz} positives")
    out = args.out or f"fewshot_{name}.json"
    results = load_results(RESULTS / out) if args.append else {}
    for model in args.models:  # a model rerun replaces its earlier rows for these seeds
        results[model] = [r for r in results.get(model, []) if r["seed"] not in args.seeds]

    def save(split):
        write_json(
            out,
            {
                "dataset": name,
                "shape": list(X.shape),
                "k": args.k,
                "n_shots": args.n_shots,
                "min_query": args.min_query,
                "max_users": args.max_users,
                "max_val_users": args.max_val_users,
                "ease_items": args.ease_items,
                "tune_once": args.tune_once,
                "params_from": args.params_from,
                "warm_users": split["X_warm"].shape[0],
                "new_users": split["X_new"].shape[0],
                "models": results,
            },
        )

    tuned = None
    if args.params_from:  # the per-n settings another run tuned (on its first seed)
        earlier = load_results(RESULTS / args.params_from)
        tuned = {}
        for m in args.models:
            rows = earlier.get(m, [])
            if rows:
                first = min(r["seed"] for r in rows)
                tuned[m] = {r["n_shots"]: r["params"] for r in rows if r["seed"] == first}
    for seed in args.seeds:
        run_seed(data, args, seed, results, tuned, save)
        if args.tune_once:
            tuned = {
                m: {r["n_shots"]: r["params"] for r in results[m] if r["seed"] == seed}
                for m in args.models
            }
    print_summary(results, f"NDCG@{args.k} on new users ({name})", args.seeds)
    print(f"\nwrote {RESULTS / out}")
    return results


def parser(description=None, models=MODELS):
    p = argparse.ArgumentParser(description=description or __doc__.split("\n")[0])
    p.add_argument("--data", default="synthetic", help="dataset folder or synthetic[:UxI]")
    p.add_argument("--models", nargs="+", default=list(models), choices=list(models))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--n-shots", nargs="+", type=int, default=[1, 3, 5, 10, 20])
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--min-query", type=int, default=5)
    p.add_argument("--max-iter", type=int, default=15)
    p.add_argument(
        "--max-users", type=int, default=2000, help="new users evaluated per n (random subset)"
    )
    p.add_argument(
        "--max-val-users", type=int, default=1000, help="warm-validation users per n when tuning"
    )
    p.add_argument(
        "--ease-items",
        type=int,
        default=None,
        help="EASE models only the most popular N items (None: all)",
    )
    p.add_argument("--extend-rounds", type=int, default=5, help="max grid extensions")
    p.add_argument(
        "--tune-once",
        action="store_true",
        help="tune on the first seed's warm users only; later seeds refit those settings",
    )
    p.add_argument("--append", action="store_true", help="keep other models/seeds of --out")
    p.add_argument(
        "--params-from",
        help="a result file whose first seed's tuned settings are refitted (no tuning here)",
    )
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--out", help="result file name (default: fewshot_<data>.json)")
    return p


def main(argv=None):
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    main()
