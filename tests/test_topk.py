"""Top-k engines against a naive dense reference."""

import numpy as np
import pytest
import scipy.sparse as sp

from skfewrec._core.topk import _select_block, chunked_topk, factor_topk


def naive_topk(S, k, seen=None, exclude=None):
    S = S.astype(np.float64).copy()
    if seen is not None:
        S[seen.toarray() > 0] = -np.inf
    if exclude is not None:
        S[:, exclude] = -np.inf
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(S, order, axis=1)
    return np.where(np.isfinite(top), order, -1), top


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    U = rng.standard_normal((97, 8)).astype(np.float32)
    V = rng.standard_normal((3000, 8)).astype(np.float32)
    seen = sp.random(97, 3000, density=0.004, random_state=1, format="csr")
    seen.data[:] = 1
    return U, V, seen


@pytest.mark.parametrize("k", [1, 5, 20])
def test_select_block_matches_a_full_sort(k):
    rng = np.random.default_rng(k)
    S = rng.standard_normal((50, 5000)).astype(np.float32)
    S[rng.random(S.shape) < 0.01] = -np.inf
    ids, top = _select_block(S.copy(), k)
    ref_ids, ref_top = naive_topk(S, k)
    np.testing.assert_array_equal(top, ref_top.astype(np.float32))
    np.testing.assert_array_equal(ids, ref_ids)


def test_select_block_marks_rows_with_too_few_items():
    S = np.full((2, 300), -np.inf, dtype=np.float32)
    S[0, [3, 7]] = [1.0, 2.0]
    ids, top = _select_block(S, 4)
    np.testing.assert_array_equal(ids[0], [7, 3, -1, -1])
    assert (ids[1] == -1).all() and np.isneginf(top[1]).all()


@pytest.mark.parametrize("engine", ["chunked", "factor"])
def test_engines_match_the_naive_reference(problem, engine):
    U, V, seen = problem
    exclude = np.array([5, 17, 2999])
    if engine == "chunked":
        ids, scores = chunked_topk(
            lambda a, b: U[a:b] @ V.T,
            U.shape[0],
            V.shape[0],
            10,
            seen=seen,
            exclude=exclude,
            block_bytes=4 * 3000 * 7,
            n_jobs=2,
        )
    else:
        ids, scores = factor_topk(U, V, 10, seen=seen, exclude=exclude, block_rows=13)
    ref_ids, ref_scores = naive_topk(U @ V.T, 10, seen, exclude)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)
    np.testing.assert_array_equal(ids, ref_ids)


def test_factor_topk_pads_when_the_user_has_seen_almost_everything():
    U = np.ones((1, 2), dtype=np.float32)
    V = np.eye(2, dtype=np.float32)[[0, 1, 0, 1]]
    seen = sp.csr_matrix(np.array([[1, 1, 1, 0]]))
    ids, scores = factor_topk(U, V, 3, seen=seen)
    np.testing.assert_array_equal(ids, [[3, -1, -1]])
    assert np.isneginf(scores[0, 1:]).all()


def test_factor_topk_sends_heavy_users_through_the_dense_path(problem):
    """Users with many seen items (beyond max_extra) give the same answer via the dense path."""
    U, V, _ = problem
    rng = np.random.default_rng(5)
    seen = sp.random(97, 3000, density=0.05, random_state=3, format="csr")  # ~150 each
    seen.data[:] = 1
    seen[:40] = 0  # some light users too
    seen.eliminate_zeros()
    exclude = rng.choice(3000, 7, replace=False)
    ids, scores = factor_topk(U, V, 10, seen=seen, exclude=exclude, max_extra=50)
    ref_ids, ref_scores = naive_topk(U @ V.T, 10, seen, exclude)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)
    np.testing.assert_array_equal(ids, ref_ids)
