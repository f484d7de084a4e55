"""Shared fixtures: the real-data folder and small synthetic interaction matrices.

Under ``SKFEWREC_STRICT_SKIPS=1`` (set by ``.ci/run``) a skipped test is a
failure unless its reason is on :data:`BENIGN_SKIPS`: on a laptop a missing
``../shared/data``, pyspark, Java or an optional extra skips with its reason,
but in CI the same skip would turn a broken setup green.
"""

import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

#: pytester runs the strict-skip hook on a throwaway test file (test_strict_skips.py)
pytest_plugins = ["pytester"]

#: skip reasons that are not a missing resource: sklearn's array-API checks (they need
#: SCIPY_ARRAY_API set before scipy is imported), a domain check that does not apply
#: to an estimator, a thread check on a machine with one BLAS thread, and the long fuzz
#: profile (run on purpose with ``pytest -m fuzz``)
BENIGN_SKIPS = re.compile(
    r"SCIPY_ARRAY_API is not set|ranks every user the same way|one BLAS thread available"
    r"|long fuzz profile: run with `pytest -m fuzz`"
)

#: the environment variable that turns resource skips into failures
STRICT_SKIPS = "SKFEWREC_STRICT_SKIPS"


def strict_skip_failure(reason, environ=os.environ):
    """The failure message for a skip that strict mode forbids, or None if it is allowed."""
    if environ.get(STRICT_SKIPS, "") in ("", "0") or BENIGN_SKIPS.search(reason):
        return None
    return f"{STRICT_SKIPS} is set, so this skip is a failure: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
        message = strict_skip_failure(reason)
        if message is not None:
            report.outcome = "failed"
            report.longrepr = message
    return report


#: ../shared/data next to the repository root (SKFEWREC_DATA overrides it, e.g. for a
#: git worktree elsewhere)
DATA_DIR = Path(
    os.environ.get("SKFEWREC_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)


def data_path(name):
    """Path of a real dataset folder, or skip the test with the reason."""
    path = DATA_DIR / name
    if not path.is_dir():
        pytest.skip(f"real data not available: {path} is missing (see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="session")
def ml100k_path():
    return data_path("ml-100k")


@pytest.fixture(scope="session")
def ml_latest_small_path():
    return data_path("ml-latest-small")


@pytest.fixture(scope="session")
def small_interactions():
    """A seeded 300 x 120 implicit-feedback matrix with cluster structure."""
    rng = np.random.default_rng(0)
    n_users, n_items, n_clusters = 300, 120, 4
    user_cluster = rng.integers(n_clusters, size=n_users)
    item_cluster = rng.integers(n_clusters, size=n_items)
    prob = np.where(user_cluster[:, None] == item_cluster[None, :], 0.25, 0.02)
    dense = (rng.random((n_users, n_items)) < prob) * rng.integers(1, 4, size=(n_users, n_items))
    dense[np.arange(n_users), rng.integers(n_items, size=n_users)] += 1
    return sp.csr_matrix(dense.astype(np.float32))


def _java_missing():
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return None
    if shutil.which("java"):
        return None
    return "Java is not installed (no java on PATH, no JAVA_HOME): Spark cannot start"


@pytest.fixture(scope="session")
def spark():
    """One local Spark (``local[2]``) for every Spark test of the session; skipped, with
    the reason, where pyspark, pyarrow or Java is missing."""
    pytest.importorskip("pyspark", reason="pyspark is not installed (pip install skfewrec[spark])")
    pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install skfewrec[spark])")
    reason = _java_missing()
    if reason:
        pytest.skip(reason)
    # the workers must run this interpreter (it has skfewrec, numpy, pyarrow)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("skfewrec-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
