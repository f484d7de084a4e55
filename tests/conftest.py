"""Shared fixtures: the real-data folder and small synthetic interaction matrices."""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

#: ../shared/data next to the repository root
DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
