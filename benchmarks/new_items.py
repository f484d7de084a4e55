"""New items: fold in items added after pretraining, against retraining with them.

Protocol (ml-latest-small by default; ratings >= 4 are the positives):

- 10% of the items, drawn at random (seeded), are *new*: left out of pretraining;
- each new item's interactions are ordered by time; the earlier half (rounded up) are
  the *support*, the warm users who touched the item before it is folded in; the later
  half are the *query*, the users who interact with it later;
- **folded**: ALS is pretrained on every user x the old items, then
  ``ClosedFormFoldIn.add_items`` folds the new items in from their support;
- **retrained**: ALS is trained from scratch on every user x (old items + the new items'
  support), with the same settings and seed;
- evaluated users: those with a query interaction. Their known interactions are all
  their old-item interactions plus their support interactions with new items; each
  model folds them in and recommends 20 items with the known ones filtered:
  - ``full_*``: over the whole catalogue; the query (new items only) is what to find:
    Recall@20 (denominator min(20, |query|)) and NDCG@20;
  - ``new_*``: over the new items only (an allow-list): Recall@20 and NDCG@20;
  - ``new_item_coverage``: the share of the new items with a support that appear in
    at least one evaluated user's full-catalogue top 20; ``new_item_slots``: the share
    of all top-20 slots taken by new items.
- ALS settings (shared by both models): chosen per seed on a validation split (another
  random 10% of new items, seed + 1000) by the *retrained* model's full-catalogue
  NDCG@20, so the reference is the one tuned;
- baselines in the same run: new-item popularity (support count) and random, for the
  new-items-only ranking;
- time: ``add_items`` against the retraining's ALS fit (same run, ratio).

Usage::

    python benchmarks/new_items.py --data ../shared/data/ml-latest-small --seeds 0 1 2
"""

import argparse
import itertools
import time
import warnings

import numpy as np
import scipy.sparse as sp
from _common import DEFAULT_DATA, print_table, write_json

from skfewrec import ALSFactors, ClosedFormFoldIn
from skfewrec.datasets import load_movielens
from skfewrec.metrics import ndcg_at_k, recall_at_k

#: ALS settings tried per seed: n_components, regularization, confidence_scale
ALS_GRID = {
    "n_components": [32, 128],
    "regularization": [1.0, 5.0],
    "confidence_scale": [2.0, 10.0],
}


def split_new_items(X, T, fraction, rng):
    """Columns of the new items, and their support / query parts (by time)."""
    n_items = X.shape[1]
    new = np.sort(rng.choice(n_items, size=int(round(fraction * n_items)), replace=False))
    old = np.setdiff1d(np.arange(n_items), new)
    Xn = X[:, new].tocsc()
    Tn = T[:, new].tocsc()
    Xn.sort_indices()
    Tn.sort_indices()
    # rank each interaction within its item (column) by time, ties at random
    cols = np.repeat(np.arange(Xn.shape[1]), np.diff(Xn.indptr))
    order = np.lexsort((rng.random(Xn.nnz), Tn.data, cols))
    rank = np.empty(Xn.nnz, dtype=np.int64)
    rank[order] = np.arange(Xn.nnz) - Xn.indptr[cols[order]]
    n_per_item = np.diff(Xn.indptr)[cols]
    in_support = rank < (n_per_item + 1) // 2

    def part(mask):
        return sp.csc_matrix(
            (
                Xn.data[mask],
                Xn.indices[mask],
                np.r_[0, np.cumsum(np.bincount(cols[mask], minlength=Xn.shape[1]))],
            ),
            shape=Xn.shape,
        ).tocsr()

    return old, new, part(in_support), part(~in_support)


def evaluate(rec, known, query, n_old, k):
    """Metrics on the evaluated users (rows of known/query with a query item)."""
    n_new = query.shape[1]
    new_cols = n_old + np.arange(n_new)
    Q_full = sp.hstack([sp.csr_matrix((query.shape[0], n_old)), query]).tocsr()
    ids_full, _ = rec.recommend(known, k=k)
    ids_new, _ = rec.recommend(known, k=k, items=new_cols)
    in_new = ids_full >= n_old
    has_support = np.flatnonzero(rec.item_counts_[n_old:] > 0) + n_old
    return {
        "full_recall": recall_at_k(Q_full, ids_full, k=k),
        "full_ndcg": ndcg_at_k(Q_full, ids_full, k=k),
        "new_recall": recall_at_k(Q_full, ids_new, k=k),
        "new_ndcg": ndcg_at_k(Q_full, ids_new, k=k),
        "new_item_coverage": float(np.isin(has_support, ids_full[in_new]).mean()),
        "new_item_slots": float(in_new.mean()),
    }


def ranking_metrics(scores, known, query, n_old, k):
    """Recall/NDCG@k of a fixed score over the new items (known items filtered)."""
    s = np.tile(scores, (query.shape[0], 1)).astype(np.float64)
    s[known[:, n_old:].toarray() > 0] = -np.inf
    ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return {"new_recall": recall_at_k(query, ids, k=k), "new_ndcg": ndcg_at_k(query, ids, k=k)}


def tune_als(X, T, seed, args):
    """The ALS setting whose retrained model is best on a validation split."""
    rng = np.random.default_rng(seed + 1000)
    old, _, support, query = split_new_items(X, T, args.fraction, rng)
    known_all = sp.hstack([X[:, old], support]).tocsr()
    users = np.flatnonzero(query.getnnz(axis=1))
    best = (-np.inf, None)
    for f, reg, scale in itertools.product(*ALS_GRID.values()):
        als = dict(n_components=f, regularization=reg, confidence_scale=scale)
        rec = ClosedFormFoldIn(ALSFactors(**als, max_iter=args.max_iter, random_state=seed)).fit(
            known_all
        )
        score = evaluate(rec, known_all[users], query[users], old.size, args.k)["full_ndcg"]
        best = max(best, (score, als), key=lambda t: t[0])
    return best[1]


def run_seed(X, T, seed, args):
    als = tune_als(X, T, seed, args)
    rng = np.random.default_rng(seed)
    old, new, support, query = split_new_items(X, T, args.fraction, rng)
    X_old = X[:, old].tocsr()
    known_all = sp.hstack([X_old, support]).tocsr()
    users = np.flatnonzero(query.getnnz(axis=1))
    known, Q = known_all[users], query[users]
    als = {**als, "max_iter": args.max_iter, "random_state": seed}
    t0 = time.perf_counter()
    folded = ClosedFormFoldIn(ALSFactors(**als)).fit(X_old)
    t_pretrain = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # new items whose users are all later
        folded.add_items(support)
    t_add = time.perf_counter() - t0
    t0 = time.perf_counter()
    retrained = ClosedFormFoldIn(ALSFactors(**als)).fit(known_all)
    t_retrain = time.perf_counter() - t0
    n_old = old.size
    out = {
        "folded": evaluate(folded, known, Q, n_old, args.k),
        "retrained": evaluate(retrained, known, Q, n_old, args.k),
        "popularity": ranking_metrics(np.asarray(support.getnnz(axis=0)), known, Q, n_old, args.k),
        "random": ranking_metrics(rng.random(new.size), known, Q, n_old, args.k),
        "als": {k: v for k, v in als.items() if k != "random_state"},
        "seconds": {"pretrain": t_pretrain, "add_items": t_add, "retrain": t_retrain},
        "counts": {
            "new_items": int(new.size),
            "new_items_with_support": int((support.getnnz(axis=0) > 0).sum()),
            "new_items_with_query": int((query.getnnz(axis=0) > 0).sum()),
            "support_interactions": int(support.nnz),
            "query_interactions": int(query.nnz),
            "evaluated_users": int(users.size),
        },
    }
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA / "ml-latest-small"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--max-iter", type=int, default=15)
    args = parser.parse_args(argv)

    data = load_movielens(args.data, min_rating=4, binarize=True)
    X, T = data.X.tocsr(), data.timestamps.tocsr()
    name = args.data.rstrip("/").split("/")[-1]
    print(f"{name}: {X.shape[0]} users x {X.shape[1]} items, {X.nnz} positives")
    metrics = [
        "full_recall",
        "full_ndcg",
        "new_recall",
        "new_ndcg",
        "new_item_coverage",
        "new_item_slots",
    ]
    per_seed = {}
    for seed in args.seeds:
        res = run_seed(X, T, seed, args)
        per_seed[seed] = res
        print(f"\nseed {seed}: {res['counts']}\nALS (tuned on validation): {res['als']}")
        rows = [{"model": m, **res[m]} for m in ("folded", "retrained", "popularity", "random")]
        print_table(rows, ["model", *metrics])
        s = res["seconds"]
        print(
            f"add_items {s['add_items']:.3f}s vs retraining {s['retrain']:.2f}s "
            f"({s['retrain'] / s['add_items']:.0f}x)"
        )
    summary = {}
    print(f"\nmean over seeds {args.seeds}:")
    rows = []
    for m in ("folded", "retrained", "popularity", "random"):
        keys = [k for k in metrics if k in per_seed[args.seeds[0]][m]]
        summary[m] = {k: float(np.mean([per_seed[s][m][k] for s in args.seeds])) for k in keys}
        rows.append({"model": m, **summary[m]})
    print_table(rows, ["model", *metrics])
    ratios = {
        k: summary["folded"][k] / summary["retrained"][k]
        for k in metrics
        if summary["retrained"][k] > 0
    }
    print("folded / retrained:", {k: round(v, 3) for k, v in ratios.items()})
    speed = np.mean(
        [
            per_seed[s]["seconds"]["retrain"] / per_seed[s]["seconds"]["add_items"]
            for s in args.seeds
        ]
    )
    print(f"add_items is {speed:.0f}x faster than retraining (mean over seeds, same run)")
    path = write_json(
        f"new_items_{name}.json",
        {
            "dataset": name,
            "settings": vars(args),
            "summary": summary,
            "folded_over_retrained": ratios,
            "speedup_add_items_vs_retrain": speed,
            "per_seed": {str(s): r for s, r in per_seed.items()},
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
