"""New items on the k-shot item protocol: skfewrec's new-item path against the baselines.

Protocol (``skfewrec._item_protocol.item_kshot_split``; the same held-out items for every n):

- 10% of the items, drawn at random (seeded), are held out; for each n in 1, 3, 5, 10, 20
  the held-out items with at least n + 1 users are *new*: n users revealed (the earliest
  by time on MovieLens, random on Gowalla, which has no times), the rest are the query;
- every model is fitted once per seed on every user x the warm items (ALS: 64 factors,
  regularization 1, confidence 10, the same seed; ``--max-iter`` sweeps), then grows by
  ``add_items(support)`` for each n (on a copy);
- models: ``new_item`` (``NewItemRecommender`` at its defaults: activity-weighted support
  factors + user-neighbour profile + item prior), ``new_item_factors`` (the same without
  the neighbour part), ``new_item_genres`` (with genre features, MovieLens only),
  ``closed_form`` (``ClosedFormFoldIn.add_items`` at its default: activity-weighted
  support factors), ``ials_fold_in`` (``add_items(method="fold_in")``: the symmetric iALS
  fold-in), baselines
  ``popularity`` (support count, ties at random), ``user_neighbour`` (sum over the support
  users of the cosine between their warm histories and the user's), ``retrained`` (ALS
  retrained with the new items' support, same settings);
- metrics (``evaluate_item_kshot``): recall/NDCG@20 over the new items (``new_*``), over
  the whole catalogue (``full_*``) and the users for each new item (``users_*``);
  evaluated on a seeded sample of at most ``--max-users`` users (all of ml-latest-small;
  3,000 of Gowalla's 29,858 in the command below: the "users" direction ranks those);
- zero-shot: genre-placed new items against random placement (MovieLens only).

Usage::

    python benchmarks/new_items.py --data ../shared/data/ml-latest-small --seeds 0 1 2
    python benchmarks/new_items.py --data ../shared/data/gowalla --seeds 0 1 2 --max-iter 10 \\
        --max-users 3000
"""

import argparse
import copy
import json
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _common import DEFAULT_DATA, RESULTS, print_table, write_json
from sklearn.frozen import FrozenEstimator
from sklearn.preprocessing import normalize

from skfewrec import ALSFactors, ClosedFormFoldIn
from skfewrec._item_protocol import ItemKShotSplit, evaluate_item_kshot, item_kshot_split
from skfewrec.adapters._item_prior import NewItemRecommender
from skfewrec.base import RecommenderMixin

SHOTS = (1, 3, 5, 10, 20)


def load(path):
    """(X, timestamps or None, genres or None) of a MovieLens or Gowalla folder."""
    path = Path(path)
    if (path / "train.txt").exists():  # Gowalla (LightGCN's split files): user item item ...
        rows, cols = [], []
        for name in ("train", "valid", "test"):
            f = path / f"{name}.txt"
            if not f.exists():
                continue
            for line in f.read_text().splitlines():
                parts = line.split()
                rows += [int(parts[0])] * (len(parts) - 1)
                cols += [int(p) for p in parts[1:]]
        X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)))
        X.sum_duplicates()
        X.data[:] = 1
        return X, None, None
    from skfewrec.datasets import load_movielens

    data = load_movielens(path, min_rating=4, binarize=True)
    genres = data.item_features.filter(like="genre_").to_numpy(np.float64)
    return data.X.tocsr(), data.timestamps.tocsr(), genres


class _Scores(RecommenderMixin):
    """A recommender from a score function over the grown catalogue (the baselines)."""

    def __init__(self, n_items, score):
        self.n_features_in_ = n_items
        self._score = score

    def __sklearn_is_fitted__(self):
        return True

    def _validate_users(self, X):
        return sp.csr_matrix(X, dtype=np.float32)

    def _scorer(self, X, columns):
        def block(start, stop):
            s = self._score(X[start:stop])
            return (s if columns is None else s[:, columns]).astype(np.float32)

        return block


def baselines(split, rng):
    """Support-count popularity and the cosine user-neighbour baseline."""
    n_warm, n_new = split.X_warm.shape[1], split.support.shape[1]
    n_items = n_warm + n_new
    H = normalize(split.X_warm)
    profile = (H.T @ split.support).T.tocsr()  # new items x warm items: no user x user matrix
    counts = split.support.getnnz(axis=0) + 1e-3 * rng.random(n_new)

    def popularity(X):
        s = np.full((X.shape[0], n_items), -1.0)
        s[:, n_warm:] = counts
        return s

    def neighbour(X):
        s = np.full((X.shape[0], n_items), -1.0)
        s[:, n_warm:] = (normalize(X[:, :n_warm]) @ profile.T).toarray()
        return s

    return {
        "popularity": _Scores(n_items, popularity),
        "user_neighbour": _Scores(n_items, neighbour),
    }


def subsample(split, users):
    return ItemKShotSplit(
        split.warm_items,
        split.new_items,
        split.X_warm[users],
        split.support[users],
        split.query[users],
    )


def run_seed(X, T, genres, seed, args):
    als = dict(n_components=64, regularization=1.0, confidence_scale=10.0, max_iter=args.max_iter)
    first = item_kshot_split(X, 0, test_size=args.fraction, timestamps=T, random_state=seed)
    Xw = first.X_warm
    fitted, seconds = {}, {}
    t0 = time.perf_counter()
    fitted["ials_fold_in"] = ClosedFormFoldIn(ALSFactors(**als, random_state=seed)).fit(Xw)
    seconds["als_fit"] = time.perf_counter() - t0
    # one ALS fit shared by every model (frozen: NewItemRecommender.fit does not refit it)
    base = FrozenEstimator(copy.deepcopy(fitted["ials_fold_in"]))
    fitted["closed_form"] = copy.deepcopy(fitted["ials_fold_in"])
    if "new_item" in args.models:
        fitted["new_item"] = NewItemRecommender(base, random_state=seed).fit(Xw)
        fitted["new_item_factors"] = NewItemRecommender(
            base, neighbour_weight=0.0, random_state=seed
        ).fit(Xw)
    if genres is not None and "new_item" in args.models:
        fitted["new_item_genres"] = NewItemRecommender(base, random_state=seed).fit(
            Xw, item_features=genres[first.warm_items]
        )
    rng = np.random.default_rng(seed)
    users = np.sort(rng.permutation(X.shape[0])[: args.max_users])
    out = {}
    for n in SHOTS:
        split = item_kshot_split(X, n, test_size=args.fraction, timestamps=T, random_state=seed)
        assert np.array_equal(split.warm_items, first.warm_items)
        ev = subsample(split, users)
        res = {}
        for name, model in fitted.items():
            m = copy.deepcopy(model)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                if name == "new_item_genres":
                    m.add_items(split.support, item_features=genres[split.new_items])
                elif name == "ials_fold_in":
                    m.add_items(split.support, method="fold_in")
                else:
                    m.add_items(split.support)
            seconds[f"add_items_{name}_{n}"] = time.perf_counter() - t0
            res[name] = evaluate_item_kshot(m, ev, k=args.k, batch=512)
        for name, m in baselines(split, rng).items():
            # they score the new items only: their full-catalogue lists are not comparable
            r = evaluate_item_kshot(m, ev, k=args.k, batch=512)
            res[name] = {key: (np.nan if key.startswith("full_") else v) for key, v in r.items()}
        if (
            n == 5 and "new_item" in fitted
        ):  # repeated calls: each costs its own items, not the catalogue
            m = copy.deepcopy(fitted["new_item"])
            chunks = np.array_split(np.arange(split.support.shape[1]), 20)
            per_call = []
            for chunk in chunks:
                t0 = time.perf_counter()
                m.add_items(split.support[:, chunk])
                per_call.append(time.perf_counter() - t0)
            seconds["add_items_new_item_20_calls"] = per_call
        if "retrained" in args.models:
            t0 = time.perf_counter()
            retrained = ClosedFormFoldIn(ALSFactors(**als, random_state=seed)).fit(split.known)
            seconds[f"retrain_{n}"] = time.perf_counter() - t0
            res["retrained"] = evaluate_item_kshot(retrained, ev, k=args.k, batch=512)
        res["counts"] = {
            "new_items": int(split.new_items.size),
            "evaluated_users_items_direction": int((ev.query.getnnz(axis=1) > 0).sum()),
        }
        out[n] = res
        print(f"seed {seed} n={n} {res['counts']}", flush=True)
        print_table(
            [{"model": m, **r} for m, r in res.items() if m != "counts"],
            ["model", "new_recall", "new_ndcg", "full_recall", "users_recall"],
        )
    if "new_item_genres" in fitted:  # zero-shot: genres alone against random placement
        split = item_kshot_split(X, 0, test_size=args.fraction, timestamps=T, random_state=seed)
        ev = subsample(split, users)
        m = copy.deepcopy(fitted["new_item_genres"])
        m.add_items(split.support, item_features=genres[split.new_items])
        rand = _Scores(
            m.n_features_in_,
            lambda Xb: np.c_[
                np.full((Xb.shape[0], split.X_warm.shape[1]), -1.0),
                rng.random((Xb.shape[0], split.support.shape[1])),
            ],
        )
        out["zero_shot"] = {
            "genres": evaluate_item_kshot(m, ev, k=args.k, directions=("items",)),
            "random": evaluate_item_kshot(rand, ev, k=args.k, directions=("items",)),
        }
        print("zero-shot", out["zero_shot"])
    out["seconds"] = seconds
    return out


def summarise(per_seed, seeds):
    """mean and standard error over seeds, per n, model and metric."""
    summary = {}
    for n in SHOTS:
        summary[n] = {}
        for model, metrics in per_seed[seeds[0]][n].items():
            if model == "counts":
                continue
            summary[n][model] = {}
            for key in metrics:
                summary[n][model][key] = mean_se([per_seed[s][n][model][key] for s in seeds])
    return summary


def mean_se(values):
    """Mean and standard error over seeds (NaN values left out)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return {"mean": float("nan"), "se": float("nan")}
    se = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else 0.0
    return {"mean": float(v.mean()), "se": float(se)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA / "ml-latest-small"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--max-iter", type=int, default=15)
    parser.add_argument("--max-users", type=int, default=5000)
    parser.add_argument(
        "--seed-files", action="store_true", help="write one file per seed (parallel runs)"
    )
    parser.add_argument("--merge", action="store_true", help="summarise the per-seed files")
    parser.add_argument(
        "--models",
        nargs="+",
        default=["new_item", "retrained"],
        choices=["new_item", "retrained"],
        help="the costly models to run (ALS with its fold-in and placement, and the two "
        "baselines popularity and user_neighbour, always run); e.g. --models new_item to "
        "skip retraining ALS for every n",
    )
    parser.add_argument("--tag", default="", help="suffix of the result files' names")
    args = parser.parse_args(argv)
    name = args.data.rstrip("/").split("/")[-1] + args.tag
    if args.merge:  # the per-seed files of runs made with --seed-files
        per_seed = {}
        for s in args.seeds:
            saved = json.loads((RESULTS / f"new_items_kshot_{name}_seed{s}.json").read_text())
            per_seed[s] = {(int(k) if k.isdigit() else k): v for k, v in saved["result"].items()}
    else:
        X, T, genres = load(args.data)
        print(f"models: {args.models} (and ials_fold_in, closed_form and the baselines)")
        print(f"{name}: {X.shape[0]} users x {X.shape[1]} items, {X.nnz} interactions")
        per_seed = {}
        for s in args.seeds:
            per_seed[s] = run_seed(X, T, genres, s, args)
            if args.seed_files:
                write_json(
                    f"new_items_kshot_{name}_seed{s}.json",
                    {"settings": vars(args), "result": {str(k): v for k, v in per_seed[s].items()}},
                )
        if args.seed_files:
            return
    summary = summarise(per_seed, args.seeds)
    best_baseline = {}
    for n in SHOTS:
        base = max(
            [m for m in ("popularity", "user_neighbour", "retrained") if m in summary[n]],
            key=lambda m: summary[n][m]["new_recall"]["mean"],
        )
        best = summary[n][base]["new_recall"]["mean"]
        best_baseline[n] = {
            "baseline": base,
            **{m: summary[n][m]["new_recall"]["mean"] / best for m in summary[n]},
        }
    print("\nnew_recall@20, mean +- s.e. over seeds; ratio to the best baseline:")
    for n in SHOTS:
        cells = {
            m: f"{v['new_recall']['mean']:.3f}+-{v['new_recall']['se']:.3f}"
            for m, v in summary[n].items()
        }
        print(n, cells, {m: round(r, 2) for m, r in best_baseline[n].items() if m != "baseline"})
    path = write_json(
        f"new_items_kshot_{name}.json",
        {
            "dataset": name,
            "settings": vars(args),
            "summary": summary,
            "ratio_to_best_baseline_new_recall": best_baseline,
            "per_seed": {str(s): {str(k): v for k, v in r.items()} for s, r in per_seed.items()},
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
