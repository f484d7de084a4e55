"""``n_jobs`` bounds the BLAS threads (and implicit's threads) of every estimator.

Spies wrap the functions where the numerical work happens (the batched fold-in
solver, the top-k kernels and selection, implicit's training) and record how
many threads the loaded BLAS libraries may use at that moment, while the
ambient limit is larger. An estimator with ``n_jobs=1`` (or None, documented as
one BLAS thread) must run all of that work on one BLAS thread.
"""

import importlib

import numpy as np
import pytest
from sklearn.base import clone
from test_common import ESTIMATORS
from threadpoolctl import threadpool_limits

from skfewrec._core.threads import blas_limits, blas_threads

#: (module, function) pairs where BLAS work happens, wrapped by the spy when present
SPIED = [
    ("skfewrec._core.solvers", "solve_users"),
    ("skfewrec.factors._als", "solve_users"),
    ("skfewrec.adapters._gradient", "solve_users"),
    ("skfewrec.factors._explicit", "solve_users"),
    ("skfewrec.adapters._items", "solve_users"),
    ("skfewrec._core.topk", "_select_block"),
    ("implicit.cpu.topk", "topk"),
]

THREADED = [est for est in ESTIMATORS if "n_jobs" in est.get_params(deep=False)]


@pytest.fixture
def spy(monkeypatch):
    """Record the BLAS thread limit at every call of the spied functions."""
    seen = []

    def wrap(fn, where):
        def spied(*args, **kwargs):
            seen.append((where, blas_threads()))
            return fn(*args, **kwargs)

        return spied

    for module_name, name in SPIED:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, name):
            monkeypatch.setattr(module, name, wrap(getattr(module, name), f"{module_name}.{name}"))
    return seen


def _ambient_threads():
    with threadpool_limits(2, user_api="blas"):
        return blas_threads()


def test_blas_limits_limits_and_restores():
    with threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        with blas_limits(1):
            assert blas_threads() == 1
        assert blas_threads() == before


def test_implicit_training_uses_n_jobs_threads(monkeypatch, small_interactions):
    from implicit.cpu.als import AlternatingLeastSquares

    from skfewrec import ALSFactors

    threads = []
    fit = AlternatingLeastSquares.fit

    def spied_fit(self, *args, **kwargs):
        threads.append((self.num_threads, blas_threads()))
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(AlternatingLeastSquares, "fit", spied_fit)
    with threadpool_limits(2, user_api="blas"):
        # fixed settings: "auto" would fit ALS several times while it searches
        fixed = dict(n_components=4, max_iter=2, regularization=0.1, confidence_scale=1.0)
        ALSFactors(**fixed, n_jobs=1, random_state=0).fit(small_interactions)
        ALSFactors(**fixed, n_jobs=2, random_state=0).fit(small_interactions)
    # implicit's own threads follow n_jobs; BLAS stays single-threaded under them
    assert threads == [(1, 1), (2, 1)]


@pytest.mark.parametrize("estimator", THREADED, ids=[type(e).__name__ for e in THREADED])
def test_n_jobs_bounds_blas_threads(estimator, spy, small_interactions):
    if _ambient_threads() < 2:
        pytest.skip("one BLAS thread available: nothing to limit")
    name = type(estimator).__name__
    est = clone(estimator)
    if "meta_iter" in est.get_params():  # a short meta-training is enough here
        est.set_params(meta_iter=5)
    est.fit(small_interactions[:250])
    new = small_interactions[250:]
    # n_jobs is read when the work runs, so one fit serves both settings
    for n_jobs in (None, 1):
        est.set_params(n_jobs=n_jobs)
        spy.clear()
        with threadpool_limits(2, user_api="blas"):
            if hasattr(est, "transform"):
                est.transform(new)
            if hasattr(est, "recommend"):
                est.recommend(new, k=5)
        assert spy, f"no spied BLAS work ran in {name}; update SPIED"
        over = sorted({where for where, threads in spy if threads > 1})
        assert not over, f"{name}(n_jobs={n_jobs}) ran BLAS multi-threaded in {over}"


def test_recommend_with_more_jobs_is_identical(small_interactions):
    from skfewrec import ALSFactors, ClosedFormFoldIn

    est = ClosedFormFoldIn(ALSFactors(n_components=4, max_iter=3, random_state=0))
    one = est.set_params(n_jobs=1).fit(small_interactions[:250])
    ids1, scores1 = one.recommend(small_interactions[250:], k=10)
    ids2, scores2 = (
        clone(one)
        .set_params(n_jobs=2)
        .fit(small_interactions[:250])
        .recommend(small_interactions[250:], k=10)
    )
    np.testing.assert_array_equal(ids1, ids2)
    np.testing.assert_allclose(scores1, scores2, rtol=1e-5)
