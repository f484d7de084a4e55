"""Scale of the command line: `skfewrec recommend` for 100k new users over 20k items.

1. Generates synthetic implicit feedback (``make_interactions``): ``--n-warm`` warm
   users and ``--n-new`` new users over ``--n-items`` items, written as CSV logs.
2. ``skfewrec fit`` on the warm log (closed form, gaussian prior, f=``--n-components``)
   writes a zip bundle with the id maps.
3. Bundle load time: the first ``skfewrec.load`` in a fresh process (imports of the
   model's modules included) and the best of 5 loads once imported.
4. ``skfewrec recommend`` on the new users' log, top-``--k`` as CSV: wall time and
   peak RSS of that process (``wait4``), checked against the expected row count.
   The same scoring in-process on the whole matrix (``model.recommend``, no file
   I/O) is the baseline its time is compared with.

Results go to ``benchmarks/results/cli_scale.json``.

Usage::

    python benchmarks/cli_scale.py                 # 100k new users x 20k items, f=128
    python benchmarks/cli_scale.py --n-new 10000   # a quick run
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import write_json


def run_measured(cmd):
    """Run a command; returns (wall seconds, peak RSS in MiB) of that child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited with {proc.returncode}")
    return wall, usage.ru_maxrss / 1024  # Linux reports KiB


LOAD_TIMER = """
import sys, time
start = time.perf_counter()
import skfewrec
from skfewrec import ClosedFormFoldIn
from skfewrec.preprocessing import InteractionEncoder
imports = time.perf_counter() - start
start = time.perf_counter()
skfewrec.load(sys.argv[1])
cold = time.perf_counter() - start
best = float("inf")
for _ in range(5):
    start = time.perf_counter()
    skfewrec.load(sys.argv[1])
    best = min(best, time.perf_counter() - start)
print(imports, cold, best)
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-new", type=int, default=100_000)
    parser.add_argument("--n-warm", type=int, default=20_000)
    parser.add_argument("--n-items", type=int, default=20_000)
    parser.add_argument("--n-components", type=int, default=128)
    parser.add_argument("--interactions-per-user", type=float, default=20.0)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--max-iter", type=int, default=5, help="ALS sweeps of the fit")
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument("--out", default="cli_scale.json")
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd

    import skfewrec
    from skfewrec.datasets import make_interactions

    skf = [sys.executable, "-m", "skfewrec"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        data = make_interactions(
            n_users=args.n_warm + args.n_new,
            n_items=args.n_items,
            density=args.interactions_per_user / args.n_items,
            n_components=16,
            n_clusters=50,
            with_timestamps=False,
            random_state=0,
        )
        frame = data.frame[["user", "item", "value"]]
        warm = frame[frame.user < args.n_warm]
        new = frame[frame.user >= args.n_warm]
        # every item gets at least one warm interaction, so the model covers the catalogue
        missing = np.setdiff1d(np.arange(args.n_items), warm.item.unique())
        rng = np.random.default_rng(1)
        extra = pd.DataFrame(
            {
                "user": rng.integers(args.n_warm, size=missing.size),
                "item": missing,
                "value": np.float32(1),
            }
        )
        warm = pd.concat([warm, extra.astype(warm.dtypes.to_dict())], ignore_index=True)
        warm.to_csv(tmp / "warm.csv", index=False)
        new.to_csv(tmp / "new.csv", index=False)
        n_new_users = new.user.nunique()
        print(
            f"data: {len(warm)} warm and {len(new)} new interactions ({n_new_users} new "
            f"users), {args.n_items} items; {time.perf_counter() - start:.0f} s"
        )
        del data, frame, warm

        bundle = tmp / "model.zip"
        fit_s, fit_rss = run_measured(
            [
                *skf,
                "fit",
                tmp / "warm.csv",
                "-o",
                bundle,
                "--value-col",
                "value",
                "--n-components",
                str(args.n_components),
                "--max-iter",
                str(args.max_iter),
                "-q",
            ]
        )
        size_mib = bundle.stat().st_size / 2**20
        print(f"fit: {fit_s:.1f} s, peak RSS {fit_rss:.0f} MiB; bundle {size_mib:.1f} MiB")

        timer = subprocess.run(
            [sys.executable, "-c", LOAD_TIMER, str(bundle)],
            capture_output=True,
            text=True,
            check=True,
        )
        import_s, cold_s, warm_s = (float(v) for v in timer.stdout.split())
        print(
            f"bundle load: {cold_s * 1000:.0f} ms the first time in a fresh process (after "
            f"{import_s * 1000:.0f} ms of imports), best of 5 after that {warm_s * 1000:.0f} ms"
        )

        out = tmp / "top.csv"
        rec_s, rec_rss = run_measured(
            [
                *skf,
                "recommend",
                bundle,
                tmp / "new.csv",
                "-k",
                str(args.k),
                "-o",
                out,
                "--chunk-size",
                str(args.chunk_size),
                "-q",
            ]
        )
        with open(out, "rb") as fh:
            n_rows = sum(1 for _ in fh) - 1
        assert n_rows == n_new_users * args.k, (n_rows, n_new_users * args.k)
        print(
            f"recommend: {n_new_users} users x top-{args.k} over {args.n_items} items in "
            f"{rec_s:.1f} s, peak RSS {rec_rss:.0f} MiB ({n_rows} rows)"
        )

        # baseline: the same scoring in-process, whole matrix at once, no file I/O
        model, encoder = skfewrec.load(bundle, return_encoder=True)
        X, _ = encoder.encode(new)
        start = time.perf_counter()
        ids, _ = model.recommend(X, k=args.k)
        lib_s = time.perf_counter() - start
        assert ids.shape == (n_new_users, args.k) and (ids >= 0).all()
        print(
            f"baseline in-process model.recommend on the whole matrix: {lib_s:.1f} s; the CLI "
            f"(process start, CSV read, encode, chunked scoring, CSV write) / baseline = "
            f"{rec_s / lib_s:.2f}"
        )

    result = {
        "n_new_users": int(n_new_users),
        "n_items": args.n_items,
        "n_warm_users": args.n_warm,
        "n_components": args.n_components,
        "k": args.k,
        "chunk_size": args.chunk_size,
        "new_interactions": int(len(new)),
        "recommend_peak_rss_mib": rec_rss,
        "recommend_wall_s": rec_s,
        "baseline_inprocess_recommend_s": lib_s,
        "cli_over_inprocess_ratio": rec_s / lib_s,
        "fit_wall_s": fit_s,
        "fit_peak_rss_mib": fit_rss,
        "bundle_mib": size_mib,
        "library_import_s": import_s,
        "bundle_load_first_s": cold_s,
        "bundle_load_best_s": warm_s,
        "numpy": np.__version__,
    }
    print(f"-> {write_json(args.out, result)}")
    ok = rec_rss < 1024 and cold_s < 1.0
    print(
        f"targets: peak RSS < 1 GiB {'met' if rec_rss < 1024 else 'MISSED'}; "
        f"bundle load < 1 s {'met' if cold_s < 1.0 else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
