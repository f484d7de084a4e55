"""Helpers shared by the benchmark scripts: data loading, timing, result files."""

import json
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_dataset(spec, *, random_state=0):
    """Interactions for a benchmark: a MovieLens/Last.fm folder, or "synthetic[:USERSxITEMS]".

    MovieLens ratings >= 4 are the implicit positives (binarised), the usual choice.
    A folder holding ``train.txt`` (the NGCF/LightGCN layout, e.g. Gowalla) is read
    whole: its train, valid and test files together, binary.
    Returns ``(name, Bunch)``.
    """
    from skfewrec.datasets import load_movielens, make_interactions

    if spec.startswith("synthetic"):
        users, items = 5000, 2000
        if ":" in spec:
            users, items = (int(v) for v in spec.split(":", 1)[1].lower().split("x"))
        return spec, make_interactions(n_users=users, n_items=items, random_state=random_state)
    path = Path(spec)
    if (path / "train.txt").exists():
        return path.name, load_user_item_lists(path)
    return path.name, load_movielens(path, min_rating=4, binarize=True)


def load_user_item_lists(path):
    """Binary interactions from ``{train,valid,test}.txt``, one ``user item item ...`` a line.

    The layout of the NGCF/LightGCN releases (0-based ids); the files together are
    the whole data set. Returns a Bunch with ``X`` (CSR, float32 ones) and no side
    tables, like the MovieLens loader's.
    """
    import scipy.sparse as sp
    from sklearn.utils import Bunch

    users, items = [], []
    for part in ("train", "valid", "test"):
        file = Path(path) / f"{part}.txt"
        if not file.exists():
            continue
        for line in file.read_text().split("\n"):
            ids = line.split()
            if len(ids) > 1:
                row = np.asarray(ids, dtype=np.int64)
                users.append(np.full(row.size - 1, row[0]))
                items.append(row[1:])
    users, items = np.concatenate(users), np.concatenate(items)
    X = sp.csr_matrix(
        (np.ones(users.size, dtype=np.float32), (users, items)),
        shape=(users.max() + 1, items.max() + 1),
    )
    X.sum_duplicates()
    X.data[:] = 1.0
    keep = np.diff(X.indptr) > 0
    X = X[keep][:, np.bincount(X.indices, minlength=X.shape[1]) > 0].tocsr()
    return Bunch(X=X, timestamps=None, item_features=None, user_features=None)


def machine():
    """What the numbers were measured on."""
    import os

    from threadpoolctl import threadpool_info

    blas = [
        {k: info.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "blas": blas,
    }


def best_time(fn, repeat=3):
    """Best wall time of ``repeat`` calls (shared machines are noisy; the best is the
    least disturbed) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def write_json(name, payload):
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    payload = {"machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return path


def print_table(rows, columns):
    """Print dict rows as an aligned text table."""
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns))


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)
