"""Speed of the dataset helpers, as ratios against plain pandas/scipy in the same run.

The unit tests used to assert wall-clock bounds (flaky on shared 2-core machines);
the speed claims live here instead:

- ``load_movielens`` on ml-latest-small against ``pandas.read_csv`` of the same
  ``ratings.csv`` (the bare parse that any loader must do);
- ``make_interactions`` (1,000 x 500) against ``scipy.sparse.random`` of the same
  size and number of nonzeros.

Usage::

    python datasets_speed.py --data ../../shared/data/ml-latest-small
"""

import argparse
from pathlib import Path

import pandas as pd
import scipy.sparse as sp
from _common import DEFAULT_DATA, best_time, print_table, write_json

from skfewrec.datasets import load_movielens, make_interactions


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA / "ml-latest-small"))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    folder = Path(args.data)

    rows = []
    t_load, bunch = best_time(lambda: load_movielens(folder), args.repeat)
    t_csv, _ = best_time(lambda: pd.read_csv(folder / "ratings.csv"), args.repeat)
    rows.append(
        {"task": f"load_movielens({folder.name})", "seconds": t_load, "baseline": t_csv,
         "ratio": t_load / t_csv}
    )  # fmt: skip
    t_make, data = best_time(
        lambda: make_interactions(n_users=1000, n_items=500, random_state=0), args.repeat
    )
    density = data.X.nnz / (1000 * 500)
    t_rand, _ = best_time(
        lambda: sp.random(1000, 500, density=density, format="csr", random_state=0), args.repeat
    )
    rows.append(
        {"task": "make_interactions(1000x500)", "seconds": t_make, "baseline": t_rand,
         "ratio": t_make / t_rand}
    )  # fmt: skip
    print_table(rows, ["task", "seconds", "baseline", "ratio"])
    print(f"(ml-latest-small: {bunch.X.shape[0]} users x {bunch.X.shape[1]} items)")
    write_json("datasets_speed.json", {"repeat": args.repeat, "rows": rows})


if __name__ == "__main__":
    main()
