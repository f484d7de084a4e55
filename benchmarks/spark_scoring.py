"""Scoring new users inside Spark (local[2]) against the single-process path, same machine.

Both paths start from the same Parquet file of new users' interactions (one row
per event, rows shuffled, raw user and item ids) and end with the same top-k
table (user, item, score, rank) of every user:

- single process: read the file with pyarrow, map ids, build the CSR matrix,
  ``ClosedFormFoldIn.recommend`` with ``n_jobs=2`` (both cores), build the table;
- Spark: ``spark.read.parquet`` -> :func:`skfewrec.spark.recommend_spark`
  (group by user, ``mapInArrow`` over batches of whole users, the model in a
  broadcast bundle) -> written to Spark's ``noop`` sink, which computes every row.

The model is a Spark-convention closed-form fold-in on random item factors (speed
does not depend on their values). Spark is warmed up first (Python workers
started and the model loaded, once per worker); the warm-up is reported apart.
Throughput is users per second; the ratio is Spark / single process, measured in
the same run. The top-k of a sample of users is compared between the two paths.

Usage::

    python benchmarks/spark_scoring.py                   # 1M users x 10 shots, 20k items, f=64
    python benchmarks/spark_scoring.py --quick           # 50k users
    python benchmarks/spark_scoring.py --n-users 200000  # any size
    python benchmarks/spark_scoring.py --solvers         # Spark-convention fold-in paths only
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp
from _common import print_table, write_json
from sklearn.frozen import FrozenEstimator

from skfewrec import ALSFactors, ClosedFormFoldIn
from skfewrec.persistence import dumps

USER_BASE = 10_000_000
ITEM_BASE = 1_000_000


def make_model(n_items, n_components, rng):
    """A Spark-convention closed-form fold-in on random item factors, and the item ids."""
    Y = (rng.standard_normal((n_items, n_components)) * 0.1).astype(np.float32)
    factors = ALSFactors.from_arrays(
        Y, regularization=0.1, confidence_scale=2.0, convention="spark"
    )
    warm = random_users(2000, n_items, 10, rng)
    rec = ClosedFormFoldIn(factors=FrozenEstimator(factors), n_jobs=2).fit(warm)
    item_ids = ITEM_BASE + 3 * np.arange(n_items, dtype=np.int64)
    return rec, item_ids


def random_users(n_users, n_items, n_shots, rng):
    """CSR of n_users rows with n_shots distinct items each (values 1-4), popularity-skewed."""
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    cdf = np.cumsum(popularity / popularity.sum())
    cols = np.minimum(np.searchsorted(cdf, rng.random((n_users, n_shots * 2))), n_items - 1)
    cols.sort(axis=1)
    # keep the first n_shots distinct items of each row (rare rows with fewer keep fewer)
    dup = np.zeros_like(cols, dtype=bool)
    dup[:, 1:] = cols[:, 1:] == cols[:, :-1]
    keep = ~dup & (np.cumsum(~dup, axis=1) <= n_shots)
    rows = np.nonzero(keep)[0]
    data = rng.integers(1, 5, size=rows.size).astype(np.float32)
    return sp.csr_matrix((data, (rows, cols[keep])), shape=(n_users, n_items))


def write_interactions(path, X, item_ids, rng):
    """The users of X as a shuffled long Parquet log (user, item, value), raw ids."""
    coo = X.tocoo()
    order = rng.permutation(coo.nnz)
    table = pa.table(
        {
            "user": (USER_BASE + coo.row.astype(np.int64))[order],
            "item": item_ids[coo.col][order],
            "value": coo.data.astype(np.float32)[order],
        }
    )
    pq.write_table(table, path, row_group_size=1 << 20)
    return table.num_rows


def single_process(path, rec, item_ids, k):
    """Parquet -> CSR -> recommend -> (user, item, score, rank) table, in this process."""
    table = pq.read_table(path)
    users, rows = np.unique(table.column("user").to_numpy(), return_inverse=True)
    raw_items = table.column("item").to_numpy()
    cols = np.searchsorted(item_ids, raw_items)  # item_ids are sorted
    if np.any(item_ids[np.minimum(cols, item_ids.size - 1)] != raw_items):
        raise ValueError("unknown item ids in the benchmark data")
    values = table.column("value").to_numpy()
    X = sp.csr_matrix((values, (rows, cols)), shape=(users.size, item_ids.size))
    ids, scores = rec.recommend(X, k=k)
    valid = ids >= 0
    out = pa.table(
        {
            "user": np.repeat(users, valid.sum(axis=1)),
            "item": item_ids[ids[valid]],
            "score": scores[valid],
            "rank": (np.nonzero(valid)[1] + 1).astype(np.int32),
        }
    )
    return out, users, ids


def solver_speed(n_users, n_items, n_components, n_shots, rng, repeat=3):
    """Fold-in throughput of the Spark convention (per-user ridge), one BLAS thread.

    The Woodbury path in the eigenbasis of the shared matrix against the direct
    f x f solve, on the same users; implicit's convention (shared ridge) for scale.
    """
    from threadpoolctl import threadpool_limits

    from skfewrec._core.conventions import confidence_coefficients, ridge_per_user
    from skfewrec._core.solvers import shared_system, solve_users

    Y = (rng.standard_normal((n_items, n_components)) * 0.1).astype(np.float32)
    X = random_users(n_users, n_items, n_shots, rng)
    speed, results = {}, {}
    with threadpool_limits(1):
        for convention in ("implicit", "spark"):
            shared, extra = ridge_per_user(X.indptr, 0.1, convention)
            system = shared_system(Y, shared)
            d, t = confidence_coefficients(X.data, 2.0, convention)
            for solver in ("woodbury", "direct"):
                best = float("inf")
                for _ in range(repeat):
                    start = time.perf_counter()
                    U = solve_users(
                        X.indptr, X.indices, d, t, system, solver=solver, extra_ridge=extra
                    )
                    best = min(best, time.perf_counter() - start)
                speed[convention, solver], results[convention, solver] = n_users / best, U
    rows = []
    for (convention, solver), users_per_s in speed.items():
        wood, direct = results[convention, "woodbury"], results[convention, "direct"]
        rows.append(
            {
                "convention": convention,
                "solver": solver,
                "users_per_s": users_per_s,
                "woodbury_vs_direct": speed[convention, "woodbury"] / speed[convention, "direct"],
                "max_rel_diff": float(np.max(np.abs(wood - direct)) / np.max(np.abs(direct))),
            }
        )
    return rows


def start_spark(partitions, driver_memory):
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("skfewrec-spark-scoring")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(partitions))
        .config("spark.driver.memory", driver_memory)
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-users", type=int, default=1_000_000)
    parser.add_argument("--n-shots", type=int, default=10)
    parser.add_argument("--n-items", type=int, default=20_000)
    parser.add_argument("--n-components", type=int, default=64)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--partitions", type=int, default=8, help="partitions of grouped users")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--check-users", type=int, default=2000, help="users compared")
    parser.add_argument("--quick", action="store_true", help="50k users")
    parser.add_argument("--workdir", default=None, help="where the Parquet file goes (a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each path (best kept)")
    parser.add_argument("--output", default=None, help="result file name in benchmarks/results")
    parser.add_argument(
        "--solvers", action="store_true", help="only the fold-in solvers (no Spark), 50k users"
    )
    args = parser.parse_args(argv)
    if args.solvers:
        rows = solver_speed(
            50_000, args.n_items, args.n_components, args.n_shots, np.random.default_rng(0)
        )
        print_table(
            rows,
            ["convention", "solver", "users_per_s", "woodbury_vs_direct", "max_rel_diff"],
        )
        print(f"wrote {write_json('spark_solvers.json', {'args': vars(args), 'rows': rows})}")
        return
    if args.quick:
        args.n_users = 50_000
    output = args.output or ("spark_scoring_quick.json" if args.quick else "spark_scoring.json")

    rng = np.random.default_rng(args.seed)
    rec, item_ids = make_model(args.n_items, args.n_components, rng)
    bundle_mib = len(dumps(rec)) / 2**20
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="skfewrec-spark-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "interactions.parquet"
    start = time.perf_counter()
    n_rows = write_interactions(
        path, random_users(args.n_users, args.n_items, args.n_shots, rng), item_ids, rng
    )
    print(f"data: {args.n_users:,} users, {n_rows:,} rows -> {path} "
          f"({time.perf_counter() - start:.1f} s); bundle {bundle_mib:.1f} MiB")  # fmt: skip

    from skfewrec.spark import recommend_spark

    start = time.perf_counter()
    spark = start_spark(args.partitions, args.driver_memory)
    startup_s = time.perf_counter() - start
    df = spark.read.parquet(str(path))

    def spark_run(frame):
        recs = recommend_spark(
            frame, rec, k=args.k, value_col="value", item_ids=item_ids,
            num_partitions=args.partitions,
        )  # fmt: skip
        recs.write.format("noop").mode("overwrite").save()

    # warm-up: start the Python workers and load the model once in each
    start = time.perf_counter()
    spark_run(df.where(df.user < USER_BASE + 1000))
    warmup_s = time.perf_counter() - start

    # the two paths alternate; the best of --repeat runs of each is kept (the
    # machine is shared, the least disturbed run is the closest to its speed)
    single_runs, spark_runs = [], []
    for run in range(args.repeat):
        start = time.perf_counter()
        _, local_users, local_ids = single_process(path, rec, item_ids, args.k)
        elapsed = time.perf_counter() - start
        single_runs.append(elapsed)
        print(f"run {run}: single process {elapsed:.1f} s, {args.n_users / elapsed:,.0f} users/s")
        start = time.perf_counter()
        spark_run(df)
        elapsed = time.perf_counter() - start
        spark_runs.append(elapsed)
        print(f"run {run}: spark local[2] {elapsed:.1f} s, {args.n_users / elapsed:,.0f} users/s")
    print(f"spark startup {startup_s:.1f} s, warm-up {warmup_s:.1f} s")
    single_s, spark_s = min(single_runs), min(spark_runs)

    # same answers: the first --check-users users through Spark vs the single process
    n_check = min(args.check_users, args.n_users)
    check = recommend_spark(
        df.where(df.user < USER_BASE + n_check), rec, k=args.k, value_col="value",
        item_ids=item_ids,
    ).toArrow()  # fmt: skip
    order = np.lexsort((check.column("rank").to_numpy(), check.column("user").to_numpy()))
    spark_items = check.column("item").to_numpy()[order].reshape(-1, args.k)
    spark_users = np.unique(check.column("user").to_numpy())
    pos = np.searchsorted(local_users, spark_users)
    same = float(np.mean(spark_items == item_ids[local_ids[pos]]))
    spark.stop()
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)

    ratio = (args.n_users / spark_s) / (args.n_users / single_s)
    row = {
        "users": args.n_users,
        "rows": n_rows,
        "repeat": args.repeat,
        "items": args.n_items,
        "factors": args.n_components,
        "k": args.k,
        "single_users_per_s": args.n_users / single_s,
        "spark_users_per_s": args.n_users / spark_s,
        "ratio_spark_to_single": ratio,
        "single_s": single_s,
        "spark_s": spark_s,
        "single_runs_s": single_runs,
        "spark_runs_s": spark_runs,
        "ratio_per_run": [a / b for a, b in zip(single_runs, spark_runs)],
        "spark_startup_s": startup_s,
        "spark_warmup_s": warmup_s,
        "bundle_mib": bundle_mib,
        "same_topk_fraction": same,
        "checked_users": int(spark_users.size),
    }
    print_table(
        [row],
        ["users", "single_users_per_s", "spark_users_per_s", "ratio_spark_to_single",
         "same_topk_fraction"],
    )  # fmt: skip
    path = write_json(output, {"args": vars(args), "rows": [row]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
