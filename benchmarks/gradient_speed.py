"""Throughput of GradientFoldIn.transform, with the closed form's measured in the same run.

The issue's target: ``GradientFoldIn.transform`` >= 20,000 users/s at f=64 and 10
shots on this 2-core machine. Both adapters fold in the same synthetic users
against the same random item factors (speed does not depend on their values),
with one thread (``n_jobs=1``) and with every core (``n_jobs=-1``). Each figure is
the best of --repeat runs (shared machines are noisy); the CPU time of that run
is reported too (users per CPU-second), since on a loaded machine wall time
also measures the other processes. Speed claims are the ratio to the closed
form measured alongside.

Usage::

    python benchmarks/gradient_speed.py
    python benchmarks/gradient_speed.py --n-users 50000 --n-components 64 128
"""

import argparse
import os
import time

import numpy as np
import scipy.sparse as sp
from _common import print_table, write_json
from sklearn.frozen import FrozenEstimator

from skfewrec import ALSFactors, ClosedFormFoldIn, GradientFoldIn


def synthetic_users(n_users, n_items, n_shots, rng):
    """CSR of n_users rows with n_shots distinct random items each (value 1)."""
    gaps = rng.integers(1, n_items // n_shots, size=(n_users, n_shots))
    cols = (rng.integers(0, n_items, size=(n_users, 1)) + np.cumsum(gaps, axis=1)) % n_items
    indptr = np.arange(0, n_users * n_shots + 1, n_shots)
    data = np.ones(n_users * n_shots, dtype=np.float32)
    return sp.csr_matrix((data, np.sort(cols, axis=1).ravel(), indptr), shape=(n_users, n_items))


def timed(fn, repeat):
    """(best wall seconds, CPU seconds of that run)."""
    best = (np.inf, np.inf)
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def run(args):
    rng = np.random.default_rng(args.seed)
    rows = []
    for f in args.n_components:
        Y = (rng.standard_normal((args.n_items, f)) * 0.1).astype(np.float32)
        factors = FrozenEstimator(
            ALSFactors.from_arrays(Y, regularization=0.1, confidence_scale=2.0)
        )
        warm = synthetic_users(1000, args.n_items, args.n_shots, rng)
        X = synthetic_users(args.n_users, args.n_items, args.n_shots, rng)
        for n_jobs in args.n_jobs:
            models = {
                "closed_form (gaussian prior)": ClosedFormFoldIn(
                    factors, prior="gaussian", n_jobs=n_jobs
                ),
                "gradient": GradientFoldIn(
                    factors,
                    n_steps=args.n_steps,
                    n_negatives=args.n_negatives,
                    meta_iter=0,
                    random_state=0,
                    n_jobs=n_jobs,
                ),
            }
            reference = None
            for name, model in models.items():
                model.fit(warm)
                model.transform(X[:1000])  # warm-up
                wall, cpu = timed(lambda m=model, X=X: m.transform(X), args.repeat)
                speed = args.n_users / wall
                reference = reference or speed
                rows.append(
                    {
                        "model": name,
                        "n_components": f,
                        "n_shots": args.n_shots,
                        "n_jobs": n_jobs,
                        "users_per_s": speed,
                        "users_per_cpu_s": args.n_users / cpu,
                        "ratio_to_closed_form": speed / reference,
                    }
                )
                print_table(rows[-1:], list(rows[-1]))
    print()
    print_table(rows, list(rows[0]))
    load = os.getloadavg()
    print(f"\nload average during the run (1, 5, 15 min): {load}")
    path = write_json(
        "gradient_speed.json",
        {
            "n_users": args.n_users,
            "n_items": args.n_items,
            "n_steps": args.n_steps,
            "n_negatives": args.n_negatives,
            "repeat": args.repeat,
            "load_average": load,
            "rows": rows,
        },
    )
    print(f"wrote {path}")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-users", type=int, default=50_000)
    parser.add_argument("--n-items", type=int, default=20_000)
    parser.add_argument("--n-shots", type=int, default=10)
    parser.add_argument("--n-components", nargs="+", type=int, default=[64])
    parser.add_argument("--n-steps", type=int, default=10)
    parser.add_argument("--n-negatives", type=int, default=64)
    parser.add_argument("--n-jobs", nargs="+", type=int, default=[1, -1])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
