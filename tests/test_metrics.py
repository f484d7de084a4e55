import math

import numpy as np
import pytest
import scipy.sparse as sp

from skfewrec.metrics import (
    METRICS,
    catalogue_coverage,
    evaluate,
    hit_rate_at_k,
    map_at_k,
    mrr,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

# Naive per-user reference implementations, written from the definitions.


def _ref_user(truth, ranked, k, metric, graded=False):
    """One user's metric; truth maps item -> gain, ranked is a list of item ids."""
    if not truth:
        return math.nan
    top = list(ranked[:k])
    hits = [item >= 0 and item in truth for item in top]
    n_ideal = min(k, len(truth))
    if metric == "ndcg":
        gain = [truth.get(item, 0.0) if graded else 1.0 for item in top]
        dcg = sum(g / math.log2(i + 2) for i, (g, h) in enumerate(zip(gain, hits)) if h)
        ideal = sorted(truth.values(), reverse=True) if graded else [1.0] * len(truth)
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal[:k]))
        return dcg / idcg
    if metric == "recall":
        return sum(hits) / n_ideal
    if metric == "precision":
        return sum(hits) / k
    if metric == "map":
        total, found = 0.0, 0
        for i, h in enumerate(hits):
            if h:
                found += 1
                total += found / (i + 1)
        return total / n_ideal
    if metric == "mrr":
        return next((1.0 / (i + 1) for i, h in enumerate(hits) if h), 0.0)
    if metric == "hit_rate":
        return float(any(hits))
    raise AssertionError(metric)


def _reference(y_true, y_pred, k, metric, graded=False):
    dense = np.asarray(y_true.todense() if sp.issparse(y_true) else y_true)
    out = []
    for row, ranked in zip(dense, y_pred):
        truth = {j: float(row[j]) for j in np.flatnonzero(row)}
        out.append(_ref_user(truth, list(ranked), k, metric, graded))
    return np.array(out)


def _random_case(seed, n_users=400, n_items=30, n_cols=12):
    """Random graded query matrix with empty rows and -1 padded recommendation lists."""
    rng = np.random.RandomState(seed)
    density = rng.uniform(0, 0.4, size=(n_users, 1))
    y_true = np.where(
        rng.rand(n_users, n_items) < density, rng.randint(1, 6, (n_users, n_items)), 0
    )
    y_true[rng.rand(n_users) < 0.1] = 0
    y_pred = np.argsort(rng.rand(n_users, n_items), axis=1)[:, :n_cols]
    n_valid = rng.randint(0, n_cols + 1, size=n_users)
    y_pred[np.arange(n_cols) >= n_valid[:, None]] = -1
    return sp.csr_matrix(y_true.astype(float)), y_pred


FUNCS = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "map": map_at_k,
    "mrr": mrr,
    "hit_rate": hit_rate_at_k,
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 5, 12])
@pytest.mark.parametrize("name", list(FUNCS))
def test_matches_naive_reference(name, k, seed):
    y_true, y_pred = _random_case(seed)
    expected = _reference(y_true, y_pred, k, name)
    got = FUNCS[name](y_true, y_pred, k=k, average=False)
    assert got.shape == (y_true.shape[0],)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert np.isnan(expected).any()  # the case does have empty query rows
    assert FUNCS[name](y_true, y_pred, k=k) == pytest.approx(np.nanmean(expected), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("k", [1, 4, 12])
def test_graded_ndcg_matches_naive_reference(k, seed):
    y_true, y_pred = _random_case(seed)
    expected = _reference(y_true, y_pred, k, "ndcg", graded=True)
    got = ndcg_at_k(y_true, y_pred, k=k, graded=True, average=False)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    # Graded gains really matter: binary NDCG differs on this data.
    binary = ndcg_at_k(y_true, y_pred, k=k, average=False)
    assert not np.allclose(np.nan_to_num(binary), np.nan_to_num(got))


def test_registry_names_the_metric_functions():
    assert METRICS == FUNCS


def test_ndcg_hand_computed():
    y_true = np.array([[0, 1, 0, 1], [1, 0, 0, 0]])
    y_pred = np.array([[1, 2], [3, 0]])
    got = ndcg_at_k(y_true, y_pred, average=False)
    ideal = 1 + 1 / math.log2(3)
    np.testing.assert_allclose(got, [1 / ideal, 1 / math.log2(3)])
    # Perfect ranking scores 1; with k=1 only the first column counts.
    assert ndcg_at_k(y_true, np.array([[3, 1], [0, 2]])) == pytest.approx(1.0)
    np.testing.assert_allclose(ndcg_at_k(y_true, y_pred, k=1, average=False), [1.0, 0.0])


def test_graded_ndcg_hand_computed():
    y_true = np.array([[3.0, 0, 1.0, 2.0]])
    y_pred = np.array([[2, 0, 1]])
    dcg = 1.0 / math.log2(2) + 3.0 / math.log2(3)
    idcg = 3.0 / math.log2(2) + 2.0 / math.log2(3) + 1.0 / math.log2(4)
    assert ndcg_at_k(y_true, y_pred, graded=True) == pytest.approx(dcg / idcg)
    # The ideal list at k=2 holds the two largest gains only.
    dcg2 = 1.0 + 3.0 / math.log2(3)
    idcg2 = 3.0 + 2.0 / math.log2(3)
    assert ndcg_at_k(y_true, y_pred, k=2, graded=True) == pytest.approx(dcg2 / idcg2)


def test_recall_precision_map_mrr_hit_rate_hand_computed():
    y_true = np.array([[1, 0, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0]])
    y_pred = np.array([[4, 0, 2], [1, 5, 3]])
    np.testing.assert_allclose(recall_at_k(y_true, y_pred, average=False), [2 / 3, 1.0])
    np.testing.assert_allclose(precision_at_k(y_true, y_pred, average=False), [2 / 3, 1 / 3])
    np.testing.assert_allclose(map_at_k(y_true, y_pred, average=False), [(1 / 2 + 2 / 3) / 3, 1.0])
    np.testing.assert_allclose(mrr(y_true, y_pred, average=False), [0.5, 1.0])
    np.testing.assert_allclose(hit_rate_at_k(y_true, y_pred, k=1, average=False), [0.0, 1.0])
    # Recall's denominator is min(k, |query|): finding 1 of 3 with k=1 is perfect.
    np.testing.assert_allclose(
        recall_at_k(y_true, [[0, 4, 2], [5, 1, 3]], k=1, average=False), [1.0, 0.0]
    )


def test_padding_counts_as_a_miss():
    y_true = np.array([[1, 1, 0, 0]])
    y_pred = np.array([[0, -1, -1]])
    assert precision_at_k(y_true, y_pred) == pytest.approx(1 / 3)
    assert recall_at_k(y_true, y_pred) == pytest.approx(1 / 2)
    assert ndcg_at_k(y_true, y_pred) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert mrr(y_true, [[-1, -1, 1]]) == pytest.approx(1 / 3)
    # Several -1 in a row are not duplicates.
    assert hit_rate_at_k(y_true, [[-1, -1, -1]]) == 0.0


def test_empty_query_rows_are_nan_and_excluded_from_the_mean():
    y_true = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1]])
    y_pred = np.array([[0, 1], [0, 1], [0, 1]])
    for func in FUNCS.values():
        per_user = func(y_true, y_pred, average=False)
        assert np.isnan(per_user[0]) and not np.isnan(per_user[1:]).any()
        assert func(y_true, y_pred) == pytest.approx(per_user[1:].mean())
    assert recall_at_k(y_true, y_pred) == pytest.approx(0.5)


def test_no_query_at_all_raises():
    for func in FUNCS.values():
        with pytest.raises(ValueError, match="no relevant item in any row"):
            func(np.zeros((2, 3)), np.array([[0, 1], [1, 2]]))
        with pytest.raises(ValueError, match="no relevant item"):
            func(np.zeros((2, 3)), np.array([[0, 1], [1, 2]]), average=False)


@pytest.mark.parametrize(
    "convert",
    [np.asarray, sp.csr_matrix, sp.csc_matrix, sp.coo_matrix, sp.csr_array, lambda a: a.tolist()],
)
def test_input_formats_agree(convert):
    y_true, y_pred = _random_case(5, n_users=50)
    dense = y_true.toarray()
    for name, func in FUNCS.items():
        expected = func(y_true, y_pred, k=7, average=False)
        np.testing.assert_array_equal(
            func(convert(dense), y_pred.tolist(), k=7, average=False), expected, name
        )


def test_uncanonical_y_true():
    # Duplicate entries are summed and explicit zeros are no interaction.
    y_true = sp.csr_matrix(
        (np.array([1.0, 1.0, 0.0]), np.array([2, 2, 0]), np.array([0, 3])), shape=(1, 3)
    )
    assert recall_at_k(y_true, [[0, 2]]) == 1.0
    assert precision_at_k(y_true, [[0, 2]]) == 0.5
    assert ndcg_at_k(y_true, [[0, 2]], graded=True) == pytest.approx(1 / math.log2(3))


def test_returns_python_float_or_float_array():
    y_true = np.array([[1, 0]])
    assert type(ndcg_at_k(y_true, [[0]])) is float
    per_user = ndcg_at_k(y_true, np.array([[0]], dtype=np.int32), average=False)
    assert per_user.dtype == np.float64


def test_unsigned_and_narrow_int_ids():
    y_true = np.array([[0, 1, 1]])
    assert recall_at_k(y_true, np.array([[2, 1]], dtype=np.uint8)) == 1.0


def test_large_catalogue_keys_do_not_overflow():
    n_users, n_items = 3, 3_000_000_000 // 3
    y_true = sp.csr_matrix(([1.0, 1.0], ([2, 2], [n_items - 1, 5])), shape=(n_users, n_items))
    y_pred = np.array([[n_items - 1, 5], [0, 1], [5, n_items - 1]])
    np.testing.assert_array_equal(recall_at_k(y_true, y_pred, average=False), [np.nan, np.nan, 1.0])


def test_many_users_fast_path_runs():
    # A Python loop over 200k users would take seconds; the vectorised path does not.
    rng = np.random.RandomState(0)
    n_users, n_items = 200_000, 1_000
    rows = rng.randint(0, n_users, 1_000_000)
    y_true = sp.csr_matrix(
        (np.ones(rows.size), (rows, rng.randint(0, n_items, rows.size))), shape=(n_users, n_items)
    )
    y_pred = np.tile(np.arange(20), (n_users, 1))
    scores = evaluate(y_true, y_pred)
    assert set(scores) == {"ndcg", "recall", "precision", "map", "mrr"}
    assert 0 < scores["precision"] < 1


# ---------------------------------------------------------------------------- errors


def test_row_mismatch_names_both():
    with pytest.raises(ValueError, match=r"y_true has 2 users .* y_pred has 3"):
        ndcg_at_k(np.eye(2), np.array([[0], [1], [0]]))


@pytest.mark.parametrize("bad", [3, -2, 100])
def test_out_of_range_ids(bad):
    with pytest.raises(ValueError, match=f"item index {bad} .*outside the catalogue \\[0, 3\\)"):
        recall_at_k(np.eye(3), np.array([[0, 1], [1, bad], [2, 0]]))


def test_k_larger_than_recommendations():
    with pytest.raises(ValueError, match="k=3 is larger than the 2 recommendations"):
        precision_at_k(np.eye(3), np.array([[0, 1], [1, 2], [2, 0]]), k=3)


@pytest.mark.parametrize(
    ("k", "error"),
    [(0, ValueError), (-1, ValueError), (1.0, TypeError), (True, TypeError), ("2", TypeError)],
)
def test_bad_k(k, error):
    with pytest.raises(error, match="k must be"):
        mrr(np.eye(2), np.array([[0, 1], [1, 0]]), k=k)


def test_zero_columns():
    with pytest.raises(ValueError, match="0 columns"):
        ndcg_at_k(np.eye(2), np.zeros((2, 0), dtype=int))


@pytest.mark.parametrize(
    "y_pred", [np.array([[0.0, 1.0]]), np.array([[True, False]]), [["a", "b"]]]
)
def test_non_integer_ids_raise_type_error(y_pred):
    with pytest.raises(TypeError, match="integer item indices"):
        ndcg_at_k(np.eye(2)[:1], y_pred)


def test_one_dimensional_ids():
    with pytest.raises(ValueError, match=r"2-dimensional .*reshape\(1, -1\)"):
        ndcg_at_k(np.eye(2)[:1], np.array([0, 1]))


def test_duplicate_ids_raise():
    with pytest.raises(ValueError, match="item 1 more than once to user 1"):
        recall_at_k(np.eye(3), np.array([[0, 1, 2], [1, 2, 1], [2, 0, 1]]))
    # Duplicates beyond k do not matter.
    assert recall_at_k(np.eye(3), np.array([[0, 1, 1], [1, 2, 2], [2, 0, 0]]), k=2) == 1.0


def test_invalid_y_true_is_rejected():
    with pytest.raises(ValueError, match="y_true has 1 negative"):
        ndcg_at_k(np.array([[-1.0, 1.0]]), [[0]])
    with pytest.raises(ValueError, match="y_true has 1 NaN"):
        ndcg_at_k(np.array([[np.nan, 1.0]]), [[0]])


# ---------------------------------------------------------------------------- coverage


def test_catalogue_coverage():
    y_pred = np.array([[0, 1, 2], [1, -1, -1], [3, 0, -1]])
    assert catalogue_coverage(y_pred, n_items=8) == 4 / 8
    assert catalogue_coverage(y_pred, 8, k=1) == 3 / 8
    assert catalogue_coverage(np.full((2, 2), -1), 8) == 0.0


def test_catalogue_coverage_errors():
    with pytest.raises(ValueError, match="item index 8"):
        catalogue_coverage(np.array([[8]]), 8)
    with pytest.raises(ValueError, match="n_items must be >= 1"):
        catalogue_coverage(np.array([[0]]), 0)
    with pytest.raises(TypeError, match="n_items must be an integer"):
        catalogue_coverage(np.array([[0]]), 2.0)
    with pytest.raises(TypeError, match="integer item indices"):
        catalogue_coverage(np.array([[0.5]]), 2)
    with pytest.raises(ValueError, match="k=2 is larger"):
        catalogue_coverage(np.array([[0]]), 2, k=2)


# ---------------------------------------------------------------------------- evaluate


def test_evaluate_matches_each_metric():
    y_true, y_pred = _random_case(7)
    names = tuple(METRICS) + ("coverage",)
    scores = evaluate(y_true, y_pred, k=6, metrics=names)
    assert list(scores) == list(names)
    for name, func in METRICS.items():
        assert scores[name] == pytest.approx(func(y_true, y_pred, k=6), rel=1e-12)
    assert scores["coverage"] == catalogue_coverage(y_pred, y_true.shape[1], k=6)


def test_evaluate_defaults_and_single_name():
    y_true = np.array([[0, 1, 0, 1], [1, 0, 0, 0]])
    y_pred = np.array([[1, 2], [3, 0]])
    assert list(evaluate(y_true, y_pred)) == ["ndcg", "recall", "precision", "map", "mrr"]
    assert evaluate(y_true, y_pred, metrics="precision") == {"precision": 0.5}


def test_evaluate_rejects_bad_metric_lists():
    y_true, y_pred = np.eye(2), np.array([[0], [1]])
    with pytest.raises(ValueError, match=r"Unknown metric 'auc'; choose among \['ndcg', 'recall'"):
        evaluate(y_true, y_pred, metrics=("ndcg", "auc"))
    with pytest.raises(ValueError, match="empty"):
        evaluate(y_true, y_pred, metrics=())
    with pytest.raises(ValueError, match="twice"):
        evaluate(y_true, y_pred, metrics=("ndcg", "ndcg"))
