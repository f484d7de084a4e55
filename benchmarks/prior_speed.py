"""Does the prior keep the Woodbury speed? Fold-in throughput with and without a prior.

``ClosedFormFoldIn.transform`` (validation + batched solve) on new users with n shots,
for ``prior="none"`` (plain iALS), ``"mean"`` and ``"gaussian"``, on ALS factors pretrained
on a real dataset, in the same run, one BLAS thread. The prior changes the shared matrix
(``Y^T Y + lambda I + s P``) and adds its pull ``x0 = M^-1 s P mu``; per user, the
Woodbury path gains one gathered dot product (``Y_S x0``) and one vector addition, so
its throughput should stay close to the plain closed form's (target >= 0.8x).

Usage::

    python benchmarks/prior_speed.py --data ../shared/data/ml-100k
"""

import argparse

import numpy as np
import scipy.sparse as sp
from _common import DEFAULT_DATA, best_time, load_dataset, print_table, write_json
from sklearn.frozen import FrozenEstimator

from skfewrec import ALSFactors, ClosedFormFoldIn

PRIORS = ("none", "mean", "gaussian")


def users_with_shots(X, n_shots, n_users, rng):
    """``n_users`` rows of n shots drawn from the rows of X with enough interactions."""
    rows = np.flatnonzero(np.diff(X.indptr) >= n_shots)
    picked = rng.choice(rows, size=n_users)
    indices = np.concatenate(
        [
            rng.choice(X.indices[X.indptr[r] : X.indptr[r + 1]], n_shots, replace=False)
            for r in picked[:2000]
        ]
    ).reshape(-1, n_shots)
    indices = np.resize(indices, (n_users, n_shots))  # repeat the 2000 drawn supports
    indptr = np.arange(n_users + 1) * n_shots
    data = np.ones(n_users * n_shots, dtype=np.float32)
    return sp.csr_matrix((data, indices.ravel(), indptr), shape=(n_users, X.shape[1]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA / "ml-100k"))
    parser.add_argument("--n-components", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--n-shots", nargs="+", type=int, default=[1, 3, 5, 10, 20])
    parser.add_argument("--n-users", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    name, data = load_dataset(args.data, random_state=args.seed)
    X = data.X.tocsr()
    rng = np.random.default_rng(args.seed)
    print(f"{name}: {X.shape[0]} users x {X.shape[1]} items; {args.n_users} new users per n")
    rows = []
    for f in args.n_components:
        als = ALSFactors(
            n_components=f, regularization=1.0, confidence_scale=5.0, random_state=args.seed
        ).fit(X)
        recs = {
            prior: ClosedFormFoldIn(
                FrozenEstimator(als), prior=prior, prior_strength=1.0, n_jobs=1
            ).fit(X)
            for prior in PRIORS
        }
        for n in args.n_shots:
            S = users_with_shots(X, n, args.n_users, rng)
            seconds = {prior: [] for prior in PRIORS}
            # interleave the priors within each repeat, and rotate which goes first, so
            # load changes and cache warm-up hit all alike
            order = list(recs.items())
            for r in range(args.repeat):
                for prior, rec in order[r % 3 :] + order[: r % 3]:
                    t, _ = best_time(lambda rec=rec, S=S: rec.transform(S), repeat=1)
                    seconds[prior].append(t)
            times = {prior: np.array(t) for prior, t in seconds.items()}
            row = {"n_components": f, "n_shots": n}
            for prior in PRIORS:
                row[f"{prior}_users_per_s"] = round(args.n_users / times[prior].min())
            for prior in PRIORS[1:]:
                # the median of the ratios paired within a repeat: robust to a shared
                # machine's load, which changes between repeats more than within one
                row[f"{prior}_ratio"] = float(np.median(times["none"] / times[prior]))
            rows.append(row)
            print_table([row], list(row))
    print(
        "\nthroughput (users/s, best of repeats) and throughput ratio prior / plain "
        "(median over repeats of the paired ratios):"
    )
    print_table(rows, list(rows[0]))
    worst = min(min(r["mean_ratio"], r["gaussian_ratio"]) for r in rows)
    print(f"\nworst ratio prior / plain: {worst:.3f} (target >= 0.8)")
    path = write_json(
        f"prior_speed_{name}.json",
        {
            "dataset": name,
            "n_users": args.n_users,
            "repeat": args.repeat,
            "rows": rows,
            "worst_ratio": worst,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
