import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from implicit.nearest_neighbours import bm25_weight, tfidf_weight
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from skfewrec.preprocessing import BM25Weighting, InteractionEncoder, LogConfidence, TFIDFWeighting


@pytest.fixture
def log():
    return pd.DataFrame(
        {
            "user": ["u3", "u1", "u3", "u2", "u1", "u3"],
            "item": ["b", "a", "c", "a", "a", "b"],
            "rating": [1.0, 2.0, 3.0, 4.0, 5.0, 0.5],
            "time": [10, 20, 30, 40, 50, 5],
        }
    )


def _reference(df, value_col=None):
    """Dense matrix built row by row with pandas, to check the vectorised encoder."""
    users = np.unique(df["user"])
    items = np.unique(df["item"])
    values = df[value_col] if value_col else pd.Series(1.0, index=df.index)
    table = values.groupby([df["user"], df["item"]]).sum().unstack(fill_value=0.0)
    return table.reindex(index=users, columns=items, fill_value=0.0).to_numpy()


# InteractionEncoder ----------------------------------------------------------------


def test_encoder_learns_sorted_ids(log):
    enc = InteractionEncoder(value_col="rating").fit(log)
    assert enc.item_ids_.tolist() == ["a", "b", "c"]
    assert enc.user_ids_.tolist() == ["u1", "u2", "u3"]
    assert enc.n_items_ == 3


def test_encoder_sums_values_and_counts_events(log):
    enc = InteractionEncoder(value_col="rating")
    X = enc.fit_transform(log)
    assert sp.issparse(X) and X.format == "csr" and X.dtype == np.float32
    assert X.has_canonical_format
    np.testing.assert_array_equal(X.toarray(), [[7.0, 0, 0], [4.0, 0, 0], [0, 1.5, 3.0]])
    counts = InteractionEncoder().fit_transform(log)
    np.testing.assert_array_equal(counts.toarray(), [[2, 0, 0], [1, 0, 0], [0, 2, 1]])


def test_encode_rows_follow_sorted_users_of_the_log(log):
    enc = InteractionEncoder(value_col="rating").fit(log)
    new = pd.DataFrame({"user": [9, 7, 9], "item": ["c", "a", "c"], "rating": [1.0, 2.0, 2.0]})
    X, users = enc.encode(new)
    assert users.tolist() == [7, 9]
    np.testing.assert_array_equal(X.toarray(), [[2.0, 0, 0], [0, 0, 3.0]])
    assert (enc.transform(new) != X).nnz == 0


def test_encoder_matches_a_reference_on_random_logs():
    rng = np.random.default_rng(0)
    n = 5000
    df = pd.DataFrame(
        {
            "user": rng.integers(0, 300, n),
            "item": rng.choice(np.array([f"i{j}" for j in range(80)], dtype=object), n),
            "value": rng.integers(1, 5, n).astype(float),
        }
    )
    enc = InteractionEncoder(value_col="value")
    X = enc.fit_transform(df)
    np.testing.assert_allclose(X.toarray(), _reference(df, "value"))
    shuffled = df.sample(frac=1.0, random_state=1)
    np.testing.assert_allclose(enc.transform(shuffled).toarray(), X.toarray())


def test_encoder_timestamps_are_latest_and_aligned(log):
    enc = InteractionEncoder(value_col="rating", time_col="time").fit(log)
    X, users = enc.encode(log)
    T, t_users = enc.encode_timestamps(log)
    np.testing.assert_array_equal(users, t_users)
    assert T.dtype == np.int64
    np.testing.assert_array_equal(T.indptr, X.indptr)
    np.testing.assert_array_equal(T.indices, X.indices)
    np.testing.assert_array_equal(T.toarray(), [[50, 0, 0], [40, 0, 0], [0, 10, 30]])


def test_encoder_zero_values_drop_the_cell_from_both_matrices():
    df = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 2], "v": [0.0, 1.0, 2.0], "t": [0, 1, 2]})
    enc = InteractionEncoder(value_col="v", time_col="t").fit(df)
    X, _ = enc.encode(df)
    T, _ = enc.encode_timestamps(df)
    assert X.nnz == 2 and not np.any(X.data == 0)
    np.testing.assert_array_equal(T.indices, X.indices)


def test_encoder_datetime_times_become_unix_seconds():
    times = pd.to_datetime(["2020-01-01 00:00:00", "2020-01-01 00:00:10"])
    df = pd.DataFrame({"user": [1, 1], "item": [1, 1], "t": times})
    T, _ = InteractionEncoder(time_col="t").fit(df).encode_timestamps(df)
    assert T.toarray()[0, 0] == 1577836810
    aware = df.assign(t=times.tz_localize("Europe/Paris"))
    T, _ = InteractionEncoder(time_col="t").fit(aware).encode_timestamps(aware)
    assert T.toarray()[0, 0] == 1577836810 - 3600


def test_encoder_timestamps_need_time_col(log):
    enc = InteractionEncoder().fit(log)
    with pytest.raises(ValueError, match="time_col is None"):
        enc.encode_timestamps(log)


def test_encoder_unknown_items_raise_by_default(log):
    enc = InteractionEncoder().fit(log)
    new = pd.DataFrame({"user": [1] * 7, "item": ["a", "x1", "x2", "x3", "x4", "x5", "x6"]})
    with pytest.raises(ValueError, match="6 item id") as err:
        enc.encode(new)
    message = str(err.value)
    assert "'x1', 'x2', 'x3', 'x4', 'x5', ..." in message and "x6" not in message
    assert "handle_unknown='ignore'" in message and "Refit" in message


def test_encoder_unknown_items_hint_at_dtype_mismatch():
    enc = InteractionEncoder().fit(pd.DataFrame({"user": [1], "item": [10]}))
    with pytest.raises(ValueError, match="dtype"):
        enc.encode(pd.DataFrame({"user": [1], "item": ["10"]}))


def test_encoder_ignore_drops_unknown_items_with_a_warning(log):
    enc = InteractionEncoder(handle_unknown="ignore").fit(log)
    new = pd.DataFrame({"user": ["n1", "n2", "n2"], "item": ["zz", "a", "yy"]})
    with pytest.warns(UserWarning, match=r"Dropped 2 interaction\(s\) with 2 item id"):
        X, users = enc.encode(new)
    assert users.tolist() == ["n1", "n2"]
    np.testing.assert_array_equal(X.toarray(), [[0, 0, 0], [1, 0, 0]])


def test_encoder_known_items_do_not_warn(log):
    enc = InteractionEncoder(handle_unknown="ignore").fit(log)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc.encode(log)


def test_item_index_and_inverse_items(log):
    enc = InteractionEncoder().fit(log)
    np.testing.assert_array_equal(enc.item_index(["c", "a"]), [2, 0])
    assert enc.item_index("b").tolist() == [1]
    np.testing.assert_array_equal(enc.inverse_items([[2, 0], [1, 1]]), [["c", "a"], ["b", "b"]])
    with pytest.raises(ValueError, match="not seen in fit: 'q'"):
        enc.item_index(["a", "q"])
    enc_ignore = clone(enc).set_params(handle_unknown="ignore").fit(log)
    np.testing.assert_array_equal(enc_ignore.item_index(["a", "q"]), [0, -1])
    with pytest.raises(ValueError, match=r"-1.*outside the catalogue \[0, 3\)"):
        enc.inverse_items([0, -1])
    with pytest.raises(ValueError, match="outside the catalogue"):
        enc.inverse_items([3])
    with pytest.raises(TypeError, match="integer column indices"):
        enc.inverse_items([0.5])
    with pytest.raises(ValueError, match="1-d"):
        enc.item_index([["a"]])


def test_encoder_missing_column_names_it_and_the_present_ones(log):
    with pytest.raises(ValueError, match=r"'score' not found.*'user', 'item', 'rating', 'time'"):
        InteractionEncoder(value_col="score").fit(log)
    enc = InteractionEncoder().fit(log)
    with pytest.raises(ValueError, match="'item' not found"):
        enc.encode(log.rename(columns={"item": "movie"}))
    with pytest.raises(ValueError, match="'when' not found"):
        InteractionEncoder(time_col="when").fit(log).encode_timestamps(log)


@pytest.mark.parametrize("col", ["user", "item"])
def test_encoder_null_ids_raise(log, col):
    bad = log.astype({col: object})
    bad.loc[2, col] = None
    with pytest.raises(ValueError, match=f"Column '{col}' has 1 missing id.*row position 2"):
        InteractionEncoder().fit(bad)
    enc = InteractionEncoder().fit(log)
    with pytest.raises(ValueError, match="missing id"):
        enc.encode(bad)


def test_encoder_bad_values_raise(log):
    enc = InteractionEncoder(value_col="rating")
    with pytest.raises(ValueError, match="1 missing or infinite"):
        enc.fit(log.assign(rating=[1.0, np.nan, 1, 1, 1, 1]))
    with pytest.raises(ValueError, match="missing or infinite"):
        enc.fit(log.assign(rating=[1.0, np.inf, 1, 1, 1, 1]))
    with pytest.raises(ValueError, match=r"1 negative value\(s\) \(the smallest is -2\)"):
        enc.fit(log.assign(rating=[1.0, -2.0, 1, 1, 1, 1]))
    with pytest.raises(TypeError, match="must be numbers.*pd.to_numeric"):
        enc.fit(log.assign(rating=["1", "2", "3", "4", "5", "6"]))
    fitted = InteractionEncoder(value_col="rating").fit(log)
    with pytest.raises(ValueError, match="negative"):
        fitted.encode(log.assign(rating=-1.0))
    with pytest.raises(ValueError, match="missing or infinite time"):
        InteractionEncoder(time_col="time").fit(log).encode_timestamps(
            log.assign(time=[1.0, np.nan, 1, 1, 1, 1])
        )
    with pytest.raises(TypeError, match="times must be numbers"):
        InteractionEncoder(time_col="time").fit(log).encode_timestamps(log.assign(time="x"))


def test_encoder_rejects_non_frames_and_empty_logs(log):
    with pytest.raises(TypeError, match="pandas DataFrame"):
        InteractionEncoder().fit(log.to_numpy())
    with pytest.raises(ValueError, match="no rows"):
        InteractionEncoder().fit(log.iloc[:0])
    with pytest.raises(InvalidParameterError, match="handle_unknown"):
        InteractionEncoder(handle_unknown="drop").fit(log)


def test_encoder_is_a_well_behaved_estimator(log):
    enc = InteractionEncoder(user_col="user", value_col="rating", dtype=np.float64)
    assert InteractionEncoder._skfewrec_skip_common_checks is True
    assert enc.get_params()["value_col"] == "rating"
    clone_ = clone(enc)
    assert clone_.get_params() == enc.get_params()
    with pytest.raises(NotFittedError):
        clone_.encode(log)
    enc.fit(log)
    assert not hasattr(clone(enc), "item_ids_")
    assert "_item_lookup" not in enc.__getstate__()  # rebuilt on load, not stored
    restored = pickle.loads(pickle.dumps(enc))
    assert restored.encode(log)[0].dtype == np.float64
    assert (restored.encode(log)[0] != enc.encode(log)[0]).nnz == 0
    assert enc.set_params(handle_unknown="ignore") is enc


def test_encoder_in_a_pipeline(log):
    pipe = make_pipeline(InteractionEncoder(value_col="rating"), LogConfidence())
    X = pipe.fit_transform(log)
    np.testing.assert_allclose(X.toarray()[0, 0], np.log1p(7.0), rtol=1e-6)


def test_encoder_handles_a_large_log_quickly():
    rng = np.random.default_rng(0)
    n = 500_000
    df = pd.DataFrame({"user": rng.integers(0, 20_000, n), "item": rng.integers(0, 5_000, n)})
    X = InteractionEncoder().fit_transform(df)
    assert X.sum() == n and X.shape[0] == df["user"].nunique()


# Weighting transformers ------------------------------------------------------------


@parametrize_with_checks([LogConfidence(), BM25Weighting(), TFIDFWeighting()])
def test_sklearn_compatible_weighting(estimator, check):
    check(estimator)


def _random_interactions(seed=0, shape=(60, 40), density=0.1):
    X = sp.random(*shape, density=density, format="csr", random_state=seed, dtype=np.float64)
    X.data = np.ceil(X.data * 10)
    return X


def test_log_confidence_formula_keeps_zeros():
    X = _random_interactions()
    out = LogConfidence(scale=2.0, offset=3.0).fit_transform(X)
    assert out.format == "csr" and out.dtype == np.float32
    np.testing.assert_array_equal(out.indices, X.indices)
    np.testing.assert_allclose(out.data, 2.0 * np.log(3.0 + X.data), rtol=1e-6)
    # Stateless: transform works without fit, and on dense input.
    dense = LogConfidence().transform(X.toarray())
    np.testing.assert_allclose(dense.toarray(), np.log1p(X.toarray()), rtol=1e-6)


@pytest.mark.parametrize(
    "params, match",
    [({"scale": 0.0}, "scale"), ({"offset": 0.5}, "offset"), ({"scale": "big"}, "scale")],
)
def test_log_confidence_parameter_validation(params, match):
    with pytest.raises(InvalidParameterError, match=match):
        LogConfidence(**params).fit(np.ones((2, 2)))
    with pytest.raises(InvalidParameterError, match=match):
        LogConfidence(**params).transform(np.ones((2, 2)))


@pytest.mark.parametrize("K1, B", [(100, 0.8), (1.2, 0.75), (0.0, 0.0)])
def test_bm25_matches_implicit(K1, B):
    X = _random_interactions(1)
    ours = BM25Weighting(K1=K1, B=B).fit_transform(X).toarray()
    np.testing.assert_allclose(ours, bm25_weight(X, K1=K1, B=B).toarray(), rtol=1e-5)


def test_tfidf_matches_implicit():
    X = _random_interactions(2)
    ours = TFIDFWeighting().fit_transform(X).toarray()
    np.testing.assert_allclose(ours, tfidf_weight(X).toarray(), rtol=1e-5)


def test_idf_is_learned_from_training_users_only():
    train = _random_interactions(3)
    new = _random_interactions(4, shape=(5, 40))
    bm25 = BM25Weighting(K1=1.2, B=0.75).fit(train)
    df = np.bincount(train.indices, minlength=40)
    np.testing.assert_allclose(bm25.idf_, np.log(60) - np.log1p(df))
    assert bm25.mean_row_sum_ == pytest.approx(train.sum() / 60)
    out = bm25.transform(new).tocoo()
    row_sums = np.asarray(new.sum(axis=1)).ravel()
    norm = 0.25 + 0.75 * row_sums[out.row] / bm25.mean_row_sum_
    x = new.toarray()[out.row, out.col]
    np.testing.assert_allclose(out.data, x * 2.2 / (1.2 * norm + x) * bm25.idf_[out.col], rtol=1e-5)
    tfidf = TFIDFWeighting().fit(train)
    np.testing.assert_allclose(
        tfidf.transform(new).toarray(), np.sqrt(new.toarray()) * tfidf.idf_, rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("est", [LogConfidence(), BM25Weighting(), TFIDFWeighting()])
def test_weighting_errors_and_input_untouched(est):
    X = _random_interactions(5)
    before = X.copy()
    est.fit(X)
    est.transform(X)
    assert (before != X).nnz == 0
    with pytest.raises(ValueError, match="Negative values in data.*1 negative value"):
        est.fit(np.array([[1.0, -1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="NaN"):
        est.fit(np.array([[1.0, np.nan], [0.0, 1.0]]))
    est.fit(X)
    with pytest.raises(ValueError, match="features"):
        est.transform(np.ones((2, 3)))


@pytest.mark.parametrize("est", [BM25Weighting(), TFIDFWeighting()])
def test_idf_weightings_need_fit(est):
    with pytest.raises(NotFittedError):
        est.transform(np.ones((2, 2)))


def test_weighting_tags():
    for est in [LogConfidence(), BM25Weighting(), TFIDFWeighting()]:
        tags = est.__sklearn_tags__()
        assert tags.input_tags.sparse and tags.input_tags.positive_only
    assert not LogConfidence().__sklearn_tags__().requires_fit


def test_public_api():
    import skfewrec.preprocessing

    assert skfewrec.preprocessing.__all__ == sorted(skfewrec.preprocessing.__all__)


def test_encoder_refuses_values_beyond_the_limit_instead_of_returning_inf(log):
    # 1e300 used to come back as inf (a float32 cast), reported downstream as "infinite"
    for value in (1e300, 2e6):
        with pytest.raises(ValueError, match=r"Column 'rating' has 1 value\(s\) above 1e\+06"):
            InteractionEncoder(value_col="rating").fit(log.assign(rating=[1.0, value, 1, 1, 1, 1]))
    fitted = InteractionEncoder(value_col="rating").fit(log)
    with pytest.raises(ValueError, match=r"the largest is 1e\+300"):
        fitted.encode(log.assign(rating=1e300))
    X = fitted.transform(log.drop_duplicates(["user", "item"]).assign(rating=1e6))
    assert np.isfinite(X.data).all() and X.data.max() >= 1e6


def test_encoder_names_mixed_id_types_that_cannot_be_sorted(log):
    # was numpy's bare "'<' not supported between instances of 'int' and 'tuple'"
    mixed = log.assign(item=[(1, 2), 3, "a", 3, 3, 3])
    with pytest.raises(TypeError, match="Column 'item' mixes ids of types int, str, tuple"):
        InteractionEncoder().fit(mixed)
    with pytest.raises(TypeError, match=r"Column 'user' mixes ids.*astype\(str\)"):
        InteractionEncoder().fit(log.assign(user=[(1,), 2, 2, 2, 2, 2]))


def test_encoder_refuses_repeated_rows_summing_beyond_the_limit(log):
    # found by the long fuzz profile: 500000 + 500001 for one (user, item) was returned
    rows = log.iloc[[0, 0]].assign(rating=[500_000.0, 500_001.0])
    with pytest.raises(ValueError, match=r"matrix \(sums of 'rating' per user and item\) has 1"):
        InteractionEncoder(value_col="rating").fit_transform(rows)
