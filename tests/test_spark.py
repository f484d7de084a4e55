"""skfewrec.spark: Spark ALS import in Spark's convention, and scoring on Spark executors.

One local Spark (``local[2]``, the session fixture ``spark`` of tests/conftest.py)
serves every test that needs it; they are skipped, with the reason, where pyspark
or Java is missing.
"""

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.frozen import FrozenEstimator

from skfewrec import ALSFactors, ClosedFormFoldIn

N_ITEMS = 60

# PySpark 4 warns about pandas >= 3 whenever its pandas/Arrow machinery is set up;
# skfewrec.spark moves data with Arrow only
pytestmark = pytest.mark.filterwarnings(
    "ignore:PySpark does not yet fully support pandas:FutureWarning"
)


def _frame(spark, X, user_offset=1000, item_ids=None, value=True):
    """A long Spark DataFrame (user, item[, value]) of the rows of X."""
    import pyarrow as pa

    coo = sp.coo_matrix(X)
    items = coo.col.astype(np.int64) if item_ids is None else np.asarray(item_ids)[coo.col]
    data = {"user": coo.row.astype(np.int64) + user_offset, "item": items}
    if value:
        data["value"] = coo.data.astype(np.float64)
    return spark.createDataFrame(pa.table(data))


def _as_rows(recs):
    """(user, rank) -> (item, score) of a collected recommendation frame."""
    table = recs.toArrow()
    cols = {name: table.column(name).to_pylist() for name in table.column_names}
    return {
        (u, r): (i, s)
        for u, r, i, s in zip(cols["user"], cols["rank"], cols["item"], cols["score"])
    }


def _expected_rows(ids, scores, users, item_ids=None):
    out = {}
    for row, user in enumerate(users):
        for rank, (i, s) in enumerate(zip(ids[row], scores[row]), start=1):
            if i >= 0:
                out[(user, rank)] = (int(i) if item_ids is None else item_ids[i], float(s))
    return out


def _assert_same(got, expected):
    assert got.keys() == expected.keys()
    assert all(got[key][0] == expected[key][0] for key in expected)
    np.testing.assert_allclose(
        [got[key][1] for key in expected], [expected[key][1] for key in expected], rtol=1e-5
    )


def _spark_top(model, users, k):
    """Spark's own top-k item ids of each user of the DataFrame ``users``."""
    recs = model.recommendForUserSubset(users, k).toArrow()
    lists = recs.column("recommendations").to_pylist()
    return dict(zip(recs.column("user").to_pylist(), [[r["item"] for r in x] for x in lists]))


@pytest.fixture(scope="module")
def data():
    from skfewrec.datasets import make_interactions

    X = make_interactions(n_users=260, n_items=N_ITEMS, random_state=0).X
    return sp.csr_matrix(X[:200]), sp.csr_matrix(X[200:])


# --------------------------------------------------------------- without Spark
def test_import_works_and_calls_name_the_extra_without_pyspark():
    # a fresh interpreter where pyspark cannot be imported
    code = (
        "import sys; sys.modules['pyspark'] = None\n"
        "import skfewrec.spark as s\n"
        "try:\n"
        "    s.recommend_spark(None, None)\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'skfewrec[spark]'" in out.stdout


# --------------------------------------------------------------- with Spark
@pytest.mark.spark
def test_spark_convention_fold_in_reproduces_spark_users(spark):
    from pyspark.ml.recommendation import ALS

    from skfewrec.spark import factors_from_spark, interactions_from_spark

    rng = np.random.default_rng(0)
    # ratings 1..5 on 40 users: some users have fewer interactions than the rank
    # (Woodbury in the eigenbasis), others more (direct path)
    dense = (rng.random((40, 30)) < 0.3) * rng.integers(1, 6, size=(40, 30))
    dense[np.arange(40), np.arange(40) % 30] = 3  # every user and every item rated
    X = sp.csr_matrix(dense.astype(np.float64))
    df = _frame(spark, X, user_offset=0, item_ids=np.arange(30) * 10 + 7).withColumnRenamed(
        "value", "rating"
    )
    als = ALS(rank=12, maxIter=3, regParam=0.1, alpha=2.0, implicitPrefs=True, seed=0)
    als.setNumUserBlocks(2).setNumItemBlocks(2)  # few tasks: small data
    als.setUserCol("user").setItemCol("item").setRatingCol("rating")
    model = als.fit(df)
    factors, item_ids = factors_from_spark(model)
    assert factors.convention_ == "spark"
    assert (factors.regularization, factors.confidence_scale) == (0.1, 2.0)
    np.testing.assert_array_equal(item_ids, np.arange(30) * 10 + 7)

    X_users, users = interactions_from_spark(df, value_col="rating", item_ids=item_ids)
    rec = ClosedFormFoldIn(FrozenEstimator(factors), prior="none", shrinkage=0.0).fit(X_users)
    U = rec.transform(X_users)
    spark_users = model.userFactors.orderBy("id").toArrow()
    np.testing.assert_array_equal(spark_users.column("id").to_numpy(), users)
    expected = np.stack(spark_users.column("features").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(U, expected, rtol=1e-4, atol=1e-5)
    # implicit's convention on the same factors is a different model
    other = ClosedFormFoldIn(factors=FrozenEstimator(factors), convention="implicit")
    assert not np.allclose(other.fit(X_users).transform(X_users), expected, atol=1e-3)


@pytest.mark.spark
def test_factors_from_spark_settings_and_explicit_models(spark, monkeypatch):
    from pyspark.ml.recommendation import ALS

    import skfewrec.spark as sks

    X = sp.random(20, 12, density=0.4, random_state=1, format="csr")
    X.data[:] = 1.0
    df = _frame(spark, X, user_offset=0)
    explicit = ALS(rank=3, maxIter=1, regParam=0.2, implicitPrefs=False, ratingCol="value")
    explicit.setNumUserBlocks(1).setNumItemBlocks(1)
    model = explicit.fit(df)
    with pytest.raises(ValueError, match="explicit feedback.*allow_explicit=True"):
        sks.factors_from_spark(model)
    factors, _ = sks.factors_from_spark(model, allow_explicit=True)
    assert factors.item_factors_.shape == (12, 3)
    # a loaded model has no parent estimator: the settings must be given
    monkeypatch.setattr(sks, "_java_parent", lambda model: None)
    with pytest.raises(ValueError, match="regularization, confidence_scale, implicit_prefs"):
        sks.factors_from_spark(model)
    factors, _ = sks.factors_from_spark(model, explicit.copy().setImplicitPrefs(True))
    assert factors.regularization == 0.2
    factors, _ = sks.factors_from_spark(
        model, regularization=0.5, confidence_scale=3.0, implicit_prefs=True
    )
    assert (factors.regularization, factors.confidence_scale) == (0.5, 3.0)
    with pytest.raises(TypeError, match="ALSModel"):
        sks.factors_from_spark(object())


@pytest.mark.spark
@pytest.mark.parametrize("convention", ["implicit", "spark"])
def test_recommend_spark_matches_single_process(spark, data, convention):
    from skfewrec.spark import recommend_spark

    warm, new = data
    factors = ALSFactors(n_components=6, max_iter=3, random_state=0).fit(warm)
    if convention == "spark":
        factors = ALSFactors.from_arrays(
            factors.item_factors_, regularization=0.05, confidence_scale=2.0, convention="spark"
        )
    rec = ClosedFormFoldIn(factors=FrozenEstimator(factors), prior="gaussian").fit(warm)
    item_ids = np.array([f"movie-{i}" for i in range(N_ITEMS)], dtype=object)
    df = _frame(spark, new, item_ids=item_ids)
    recs = recommend_spark(df, rec, k=7, value_col="value", item_ids=item_ids, num_partitions=3)
    assert recs.columns == ["user", "item", "score", "rank"]
    assert dict(recs.dtypes) == {
        "user": "bigint",
        "item": "string",
        "score": "float",
        "rank": "int",
    }
    ids, scores = rec.recommend(new, k=7)
    expected = _expected_rows(ids, scores, np.arange(new.shape[0]) + 1000, item_ids)
    got = _as_rows(recs)
    _assert_same(got, expected)
    # seen items are filtered
    seen = {(u, item_ids[i]) for u, i in zip(*(sp.coo_matrix(new).row + 1000, new.tocoo().col))}
    assert not {(u, got[(u, r)][0]) for u, r in got} & seen

    # without item_ids the item column holds column indices; deny-list and no filter
    df = _frame(spark, new)
    recs = recommend_spark(df, rec, k=5, value_col="value", filter_seen=False, exclude=[0, 3])
    ids, scores = rec.recommend(new, k=5, filter_seen=False, exclude=[0, 3])
    _assert_same(_as_rows(recs), _expected_rows(ids, scores, np.arange(new.shape[0]) + 1000))


@pytest.mark.spark
@pytest.mark.parametrize("kind", ["gradient", "rerank", "ease", "most_popular"])
def test_recommend_spark_is_generic_through_recommend(spark, data, kind):
    # nothing factor-specific is shipped: the executors call the model's recommend, with
    # the allow-list and deny-list applied by recommend itself (the re-ranker excludes
    # before choosing candidates, as in Python)
    from skfewrec import EASE, GradientFoldIn, LightGBMReranker, MostPopular
    from skfewrec.spark import recommend_spark

    warm, new = data
    factors = ALSFactors(n_components=4, max_iter=3, random_state=0)
    rec = {
        "gradient": lambda: GradientFoldIn(factors=factors, random_state=0),
        "rerank": lambda: LightGBMReranker(
            candidates=ClosedFormFoldIn(factors=factors),
            n_candidates=20,
            n_estimators=5,
            random_state=0,
        ),
        "ease": lambda: EASE(l2=20.0),
        "most_popular": MostPopular,
    }[kind]()
    rec.fit(warm)
    binary = new.copy()
    binary.data[:] = 1.0
    recs = recommend_spark(_frame(spark, new, value=False), rec, k=5)
    ids, scores = rec.recommend(binary, k=5)
    _assert_same(_as_rows(recs), _expected_rows(ids, scores, np.arange(new.shape[0]) + 1000))
    allow, deny = np.arange(5, 45), [5, 9, 11, 30]
    recs = recommend_spark(_frame(spark, new, value=False), rec, k=4, items=allow, exclude=deny)
    ids, scores = rec.recommend(binary, k=4, items=allow, exclude=deny)
    assert not np.isin(ids, deny).any()
    _assert_same(_as_rows(recs), _expected_rows(ids, scores, np.arange(new.shape[0]) + 1000))


@pytest.mark.spark
def test_recommend_spark_refuses_a_model_that_lies(spark, data):
    # the model travels to the executors as a bundle, and loading is a parser: a model
    # whose popularity is NaN (it would answer -1 while items remain) is refused on the
    # driver, before any Spark job runs
    from skfewrec import MostPopular
    from skfewrec.persistence import BundleError
    from skfewrec.spark import recommend_spark

    warm, new = data
    broken = MostPopular().fit(warm)
    broken.item_popularity_[:] = np.nan
    with pytest.raises(BundleError, match="item_popularity_ holds NaN"):
        recommend_spark(_frame(spark, new, value=False), broken, k=3)


@pytest.mark.spark
def test_recommend_spark_bad_input(spark, data):
    import pyarrow as pa
    from pyspark.errors import PythonException

    from skfewrec.spark import recommend_spark

    warm, _ = data
    rec = ClosedFormFoldIn(factors=ALSFactors(n_components=4, max_iter=2, random_state=0))
    rec.fit(warm)
    item_ids = np.arange(N_ITEMS) * 3

    def frame(users, items):
        return spark.createDataFrame(
            pa.table({"user": pa.array(users, pa.int64()), "item": pa.array(items, pa.int64())})
        )

    # data checks run on the executors, when the result is computed
    with pytest.raises(PythonException, match="1 null user id"):
        recommend_spark(frame([1, None], [3, 6]), rec, k=3, item_ids=item_ids).collect()
    with pytest.raises(PythonException, match="1 null item id"):
        recommend_spark(frame([1, 1], [3, None]), rec, k=3, item_ids=item_ids).collect()
    values = spark.createDataFrame(
        pa.table({"user": [1, 1], "item": [3, 6], "value": pa.array([1.0, None])})
    )
    with pytest.raises(PythonException, match="1 null value"):
        recommend_spark(values, rec, k=3, value_col="value", item_ids=item_ids).collect()
    unknown = frame([1, 1, 1], [3, 4, 5])  # 4 and 5 are not multiples of 3
    with pytest.raises(PythonException, match=r"2 item id\(s\) unknown to the model: (4, 5|5, 4)"):
        recommend_spark(unknown, rec, k=3, item_ids=item_ids).collect()
    unknown = frame([1, 1, 2], [3, 4, 5])
    # "ignore" drops them: user 2 is left without shots and gets the 0-shot answer
    got = _as_rows(recommend_spark(unknown, rec, k=3, item_ids=item_ids, handle_unknown="ignore"))
    ids, scores = rec.recommend(sp.csr_matrix(([1.0], ([0], [1])), shape=(2, N_ITEMS)), k=3)
    _assert_same(got, _expected_rows(ids, scores, [1, 2], item_ids))
    # more partitions than users: the empty partitions add nothing
    two = recommend_spark(frame([1, 2], [3, 6]), rec, k=3, item_ids=item_ids, num_partitions=6)
    assert sorted(two.toArrow().column("user").to_pylist()) == [1, 1, 1, 2, 2, 2]
    # empty input: an empty answer with the output schema
    empty = recommend_spark(frame([1], [3]).limit(0), rec, k=3, item_ids=item_ids)
    assert empty.count() == 0 and empty.columns == ["user", "item", "score", "rank"]

    # schema and settings are checked at once, on the driver
    strings = frame([1], [3]).selectExpr("user", "cast(item as string) as item")
    with pytest.raises(TypeError, match="type string but item_ids holds integer ids"):
        recommend_spark(strings, rec, k=3, item_ids=item_ids)
    with pytest.raises(TypeError, match="must hold column indices"):
        recommend_spark(strings, rec, k=3)
    with pytest.raises(TypeError, match="value_col='item' has type string"):
        recommend_spark(strings, rec, k=3, value_col="item")
    with pytest.raises(ValueError, match="item_col='movie': no such column"):
        recommend_spark(frame([1], [3]), rec, item_col="movie", item_ids=item_ids)
    with pytest.raises(ValueError, match="one id per item of the model"):
        recommend_spark(frame([1], [3]), rec, item_ids=item_ids[:-1])
    with pytest.raises(ValueError, match=r"k=61 is larger than the 60 items"):
        recommend_spark(frame([1], [3]), rec, k=61, item_ids=item_ids)
    with pytest.raises(ValueError, match="handle_unknown must be"):
        recommend_spark(frame([1], [3]), rec, item_ids=item_ids, handle_unknown="skip")
    with pytest.raises(TypeError, match="pyspark.sql.DataFrame"):
        recommend_spark(np.zeros((2, 2)), rec)


@pytest.mark.spark
@pytest.mark.realdata
@pytest.mark.slow
def test_ml100k_spark_users_get_spark_recommendations(spark, ml100k_path):
    """Target of issue 6: top-20 overlap with recommendForUserSubset >= 0.95 on ml-100k."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from pyspark.ml.recommendation import ALS

    from skfewrec.spark import factors_from_spark, interactions_from_spark

    table = pacsv.read_csv(
        ml100k_path / "u.data",
        read_options=pacsv.ReadOptions(column_names=["user", "item", "rating", "ts"]),
        parse_options=pacsv.ParseOptions(delimiter="\t"),
    )
    df = spark.createDataFrame(
        table.select(["user", "item", "rating"]).cast(
            pa.schema([("user", pa.int32()), ("item", pa.int32()), ("rating", pa.float64())])
        )
    )
    als = ALS(rank=16, maxIter=5, regParam=0.05, alpha=2.0, implicitPrefs=True, seed=0)
    als.setUserCol("user").setItemCol("item").setRatingCol("rating")
    als.setNumUserBlocks(2).setNumItemBlocks(2)
    model = als.fit(df)
    factors, item_ids = factors_from_spark(model)
    X, users = interactions_from_spark(df, value_col="rating", item_ids=item_ids)
    rec = ClosedFormFoldIn(
        FrozenEstimator(factors), prior="none", shrinkage=0.0, knn_weight=0.0
    ).fit(X)
    pick = np.sort(np.random.default_rng(0).choice(len(users), 200, replace=False))
    ids, _ = rec.recommend(X[pick], k=20, filter_seen=False)
    subset = spark.createDataFrame(pa.table({"user": pa.array(users[pick], pa.int32())}))
    theirs = _spark_top(model, subset, 20)
    overlap = [
        len(set(item_ids[row].tolist()) & set(theirs[int(user)])) / 20
        for user, row in zip(users[pick], ids)
    ]
    print(f"ml-100k top-20 overlap with Spark: mean {np.mean(overlap):.4f}, min {min(overlap):.2f}")
    assert np.mean(overlap) >= 0.95


@pytest.mark.spark
def test_recommend_spark_applies_the_fitted_contract(spark, tmp_path):
    """Issue 11: fitted with a filter through the CLI, Spark answers as the CLI and Python,
    and a raw log and its pre-filtered copy give the same answers."""
    import pandas as pd

    import skfewrec
    from skfewrec.apps._answer import recommend_log
    from skfewrec.apps.cli import main
    from skfewrec.datasets import make_interactions
    from skfewrec.spark import recommend_spark

    X = make_interactions(n_users=300, n_items=N_ITEMS, random_state=0).X.tocoo()
    rng = np.random.default_rng(0)
    log = pd.DataFrame(
        {"uid": X.row, "movie": [f"m{c}" for c in X.col], "stars": rng.integers(1, 6, X.nnz)}
    )
    log[log.uid < 250].to_csv(tmp_path / "train.csv", index=False)
    new = log[log.uid >= 250].reset_index(drop=True)
    path = tmp_path / "m.zip"
    fit = ["fit", str(tmp_path / "train.csv"), "-o", str(path), "--user-col", "uid",
           "--item-col", "movie", "--value-col", "stars", "--min-value", "4", "--binarize",
           "--weighting", "log", "--n-components", "4", "--max-iter", "3", "-q"]  # fmt: skip
    assert main(fit) == 0
    model, enc = skfewrec.load(path, return_encoder=True)
    expected = recommend_log(model, enc, new, k=5)
    frame = spark.createDataFrame(new)
    got = recommend_spark(frame, model, encoder=enc, k=5, user_col="uid", item_col="movie",
                          num_partitions=3, handle_unknown="ignore").toPandas()  # fmt: skip
    got = got.sort_values(["uid", "rank"]).reset_index(drop=True)
    want = expected.sort_values(["uid", "rank"]).reset_index(drop=True)
    assert got[["uid", "movie", "rank"]].values.tolist() == (
        want[["uid", "movie", "rank"]].values.tolist()
    )
    np.testing.assert_allclose(got.score, want.score, rtol=1e-5)
    # a raw log and the pre-filtered log: the same answers (seen filter off)
    raw, pre = (
        recommend_spark(spark.createDataFrame(part), model, encoder=enc, k=5, user_col="uid",
                        item_col="movie", filter_seen=False,
                        handle_unknown="ignore").toPandas()
        .sort_values(["uid", "rank"]).reset_index(drop=True)
        for part in (new, new[new.stars >= 4])
    )  # fmt: skip
    raw = raw[raw.uid.isin(pre.uid)].reset_index(drop=True)  # users with a kept event
    pd.testing.assert_frame_equal(raw, pre)
    assert not set(zip(got.uid, got.movie)) & set(zip(new.uid, new.movie))
