"""The long tail on the user side: tail metrics of few-shot recommendations, and the bias knob.

Protocol (the few-shot user protocol): 20% of the users, drawn at random (seeded), are new;
the recommenders are fitted on the other 80%; each new user with at least 6
interactions reveals 5 (the earliest by time on MovieLens, random on Gowalla) and gets
a top-20 list with the 5 filtered; the rest of their interactions is the query.

Measured per model: NDCG@20 and recall@20 (``skfewrec.metrics``), catalogue coverage,
Gini of exposure, tail share (slots to items outside the head holding 80% of the
training interactions), novelty (bits) and NDCG@20 per popularity bucket (3 buckets of
equal interaction share, head first).

Models: ``als`` (``ClosedFormFoldIn`` on ``ALSFactors(64, regularization=1,
confidence_scale=10)``), the same wrapped in ``PopularityPenalty`` at several strengths
(the trade-off curve) and at its default ``strength="auto"`` (chosen at fit time on
held-out training users, within ``--tolerance`` of strength 0's NDCG), and the
baselines ``MostPopular``, ``ItemKNN`` and ``EASE`` (MovieLens only: its dense item x
item matrix does not fit for Gowalla's 41k items).
Gowalla's evaluated users are a seeded sample of ``--max-users``.

Usage::

    python benchmarks/longtail.py --data ../shared/data/ml-latest-small --seeds 0 1 2
    python benchmarks/longtail.py --data ../shared/data/gowalla --seeds 0 1 2 --max-iter 10
"""

import argparse

import numpy as np
from _common import DEFAULT_DATA, RESULTS, print_table, write_json
from new_items import load, mean_se

from skfewrec import EASE, ALSFactors, ClosedFormFoldIn, ItemKNN, MostPopular
from skfewrec.metrics import (
    catalogue_coverage,
    gini_exposure,
    item_popularity,
    ndcg_at_k,
    ndcg_by_popularity,
    novelty,
    recall_at_k,
    tail_share,
)
from skfewrec.model_selection import support_query_split, train_test_split_users
from skfewrec.tail import PopularityPenalty

STRENGTHS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
METRICS = (
    "ndcg",
    "recall",
    "coverage",
    "gini",
    "tail_share",
    "novelty",
    "ndcg_head",
    "ndcg_mid",
    "ndcg_tail",
)


def measure(model, S, Q, popularity, n_train_users, k):
    ids, _ = model.recommend(S, k=k)
    n_items = S.shape[1]
    buckets = ndcg_by_popularity(Q, ids, popularity, n_buckets=3)
    return {
        "ndcg": ndcg_at_k(Q, ids),
        "recall": recall_at_k(Q, ids),
        "coverage": catalogue_coverage(ids, n_items),
        "gini": gini_exposure(ids, n_items),
        "tail_share": tail_share(ids, popularity),
        "novelty": novelty(ids, popularity, n_train_users),
        "ndcg_head": buckets[0],
        "ndcg_mid": buckets[1],
        "ndcg_tail": buckets[2],
    }


def run_seed(X, T, seed, args):
    if T is None:
        X_train, X_test = train_test_split_users(X, test_size=0.2, random_state=seed)
        T_test = None
    else:
        X_train, X_test, _, T_test = train_test_split_users(X, T, test_size=0.2, random_state=seed)
    keep = X_test.getnnz(axis=1) >= 6
    rng = np.random.default_rng(seed)
    keep_idx = np.flatnonzero(keep)
    if keep_idx.size > args.max_users:
        keep_idx = np.sort(rng.choice(keep_idx, args.max_users, replace=False))
    S, Q = support_query_split(
        X_test[keep_idx],
        5,
        timestamps=None if T_test is None else T_test[keep_idx],
        random_state=seed,
    )
    popularity = item_popularity(X_train)
    n_train = X_train.shape[0]
    als = ClosedFormFoldIn(
        ALSFactors(
            64, regularization=1.0, confidence_scale=10.0, max_iter=args.max_iter, random_state=seed
        ),
        random_state=seed,  # its "auto" prior and shrinkage hold users out at random
    )
    out = {}
    knob = PopularityPenalty(als, tolerance=args.tolerance, random_state=seed).fit(X_train)
    out["als_penalty_auto"] = measure(knob, S, Q, popularity, n_train, args.k)
    chosen = knob.strength_
    out["als_penalty_auto"]["strength"] = chosen
    print(f"seed {seed}: auto chose strength {chosen} in {knob.auto_report_['seconds']:.1f} s")
    for strength in STRENGTHS:
        knob.strength_ = strength  # the calibration does not depend on the strength
        out[f"als_penalty_{strength}"] = measure(knob, S, Q, popularity, n_train, args.k)
    baselines = {"most_popular": MostPopular(), "item_knn": ItemKNN()}
    if X.shape[1] <= 20_000:
        baselines["ease"] = EASE()
    for name, model in baselines.items():
        out[name] = measure(model.fit(X_train), S, Q, popularity, n_train, args.k)
    out["counts"] = {"users": int(keep_idx.size), "train_users": int(n_train)}
    print(f"seed {seed}: {out['counts']}", flush=True)
    print_table([{"model": m, **r} for m, r in out.items() if m != "counts"], ["model", *METRICS])
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA / "ml-latest-small"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--max-iter", type=int, default=15)
    parser.add_argument("--max-users", type=int, default=3000)
    parser.add_argument("--tolerance", type=float, default=0.02)
    args = parser.parse_args(argv)
    X, T, _ = load(args.data)
    name = args.data.rstrip("/").split("/")[-1]
    print(f"{name}: {X.shape[0]} users x {X.shape[1]} items, {X.nnz} interactions")
    per_seed = {s: run_seed(X, T, s, args) for s in args.seeds}
    models = [m for m in per_seed[args.seeds[0]] if m != "counts"]
    summary = {}
    for m in models:
        summary[m] = {}
        for key in METRICS:
            summary[m][key] = mean_se([per_seed[s][m][key] for s in args.seeds])
    print("\nmean +- s.e. over seeds:")
    rows = [
        {"model": m, **{k: f"{v['mean']:.4f}+-{v['se']:.4f}" for k, v in summary[m].items()}}
        for m in models
    ]
    print_table(rows, ["model", *METRICS])
    summary["als_penalty_auto"]["strength"] = mean_se(
        [per_seed[s]["als_penalty_auto"]["strength"] for s in args.seeds]
    )
    plain = summary["als_penalty_0.0"]["ndcg"]["mean"]
    best = max(
        (m for m in models if not m.startswith("als")), key=lambda m: summary[m]["ndcg"]["mean"]
    )
    print(f"best baseline by NDCG: {best}; NDCG of each strength relative to strength 0:")
    for s in (*STRENGTHS, "auto"):
        r = summary[f"als_penalty_{s}"]
        ref = summary[best]
        print(
            f"  strength {s}: ndcg {r['ndcg']['mean'] / plain:.3f}, tail_share "
            f"{r['tail_share']['mean']:.3f} (best baseline {ref['tail_share']['mean']:.3f}), "
            f"coverage {r['coverage']['mean']:.3f} (best baseline {ref['coverage']['mean']:.3f})"
        )
    path = write_json(
        f"longtail_{name}.json",
        {
            "dataset": name,
            "settings": vars(args),
            "best_baseline_by_ndcg": best,
            "summary": summary,
            "per_seed": {str(s): r for s, r in per_seed.items()},
        },
    )
    print(f"wrote {path}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("tail_share", "coverage")):
        xs = [summary[f"als_penalty_{s}"][key]["mean"] for s in STRENGTHS]
        ys = [summary[f"als_penalty_{s}"]["ndcg"]["mean"] for s in STRENGTHS]
        ax.plot(xs, ys, "o-", label="ALS + PopularityPenalty")
        for s, x, y in zip(STRENGTHS, xs, ys):
            ax.annotate(str(s), (x, y), fontsize=7)
        auto = summary["als_penalty_auto"]
        ax.plot(auto[key]["mean"], auto["ndcg"]["mean"], "*", ms=12, label='strength="auto"')
        for m in models:
            if not m.startswith("als"):
                ax.plot(summary[m][key]["mean"], summary[m]["ndcg"]["mean"], "s", label=m)
        ax.set_xlabel(key)
        ax.set_ylabel("NDCG@20")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{name}: NDCG@20 against tail exposure (5 shots, {len(args.seeds)} seeds)")
    fig.tight_layout()
    fig.savefig(RESULTS / f"longtail_{name}.png", dpi=110)
    print(f"wrote {RESULTS / f'longtail_{name}.png'}")


if __name__ == "__main__":
    main()
