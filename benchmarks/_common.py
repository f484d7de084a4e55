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
    Returns ``(name, Bunch)``.
    """
    from skfewrec.datasets import load_movielens, make_interactions

    if spec.startswith("synthetic"):
        users, items = 5000, 2000
        if ":" in spec:
            users, items = (int(v) for v in spec.split(":", 1)[1].lower().split("x"))
        return spec, make_interactions(n_users=users, n_items=items, random_state=random_state)
    path = Path(spec)
    return path.name, load_movielens(path, min_rating=4, binarize=True)


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
