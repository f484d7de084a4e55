"""skfewrec.spark.add_items_spark: new items from a Spark DataFrame, on a local Spark."""

import copy

import numpy as np
import pytest
import scipy.sparse as sp

from skfewrec import ALSFactors, ClosedFormFoldIn
from skfewrec.adapters import NewItemRecommender

pytestmark = [
    pytest.mark.spark,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]


@pytest.fixture(scope="module")
def data(small_interactions):
    """Warm users x (items 0..99, new items 100..119), with raw ids."""
    X = sp.csr_matrix(small_interactions[:250])
    user_ids = np.arange(250, dtype=np.int64) * 7 + 3  # raw ids, in row order
    item_ids = np.array([f"m{j}" for j in range(100)], dtype=object)
    return X[:, :100].tocsr(), X[:, 100:].tocsr(), user_ids, item_ids


def _frame(spark, X, user_ids, item_ids, extra_users=()):
    import pyarrow as pa

    coo = sp.coo_matrix(X)
    users = list(np.asarray(user_ids)[coo.row]) + [u for u, _ in extra_users]
    items = list(np.asarray(item_ids)[coo.col]) + [i for _, i in extra_users]
    return spark.createDataFrame(pa.table({"user": np.array(users, np.int64), "item": items}))


@pytest.mark.parametrize("kind", ["new_item", "closed_form"])
def test_add_items_spark_grows_the_model_as_add_items_does(spark, data, kind):
    from skfewrec.spark import add_items_spark, recommend_spark

    warm, new, user_ids, item_ids = data
    base = ClosedFormFoldIn(ALSFactors(n_components=6, max_iter=4, random_state=0))
    model = NewItemRecommender(base, random_state=0) if kind == "new_item" else base
    model.fit(warm)
    local = copy.deepcopy(model)
    # the new items' ids sort as "n00" < "n01" < ...: the order the columns get
    new_names = np.array([f"n{j:02d}" for j in range(20)], dtype=object)
    df = _frame(spark, new, user_ids, new_names)
    added, grown_ids = add_items_spark(df, model, user_ids=user_ids, item_ids=item_ids)
    assert added.tolist() == new_names.tolist()
    assert grown_ids.tolist() == item_ids.tolist() + new_names.tolist()
    local.add_items((new > 0).astype(np.float32))
    assert model.n_features_in_ == 120
    np.testing.assert_allclose(model.item_factors_, local.item_factors_, rtol=1e-5, atol=1e-7)
    # servable at once, also on the executors, with the grown ids
    users = sp.csr_matrix(np.hstack([warm[:5].toarray(), new[:5].toarray()]) > 0, dtype=float)
    ids, _ = model.recommend(users, k=10)
    np.testing.assert_array_equal(ids, local.recommend(users, k=10)[0])
    frame = _frame(spark, users, np.arange(5), grown_ids)
    recs = recommend_spark(frame, model, k=10, item_ids=grown_ids).toArrow()
    got = {}
    for u, r, i in zip(*(recs.column(c).to_pylist() for c in ("user", "rank", "item"))):
        got[(u, r)] = i
    assert got == {(u, r + 1): grown_ids[ids[u, r]] for u in range(5) for r in range(10)}


def test_add_items_spark_refuses_what_it_cannot_add(spark, data):
    from skfewrec.spark import add_items_spark

    warm, new, user_ids, item_ids = data
    model = ClosedFormFoldIn(ALSFactors(n_components=6, max_iter=4, random_state=0)).fit(warm)
    df = _frame(spark, new, user_ids, item_ids[:20])  # ids already in the catalogue
    with pytest.raises(ValueError, match="already in the catalogue"):
        add_items_spark(df, model, user_ids=user_ids, item_ids=item_ids)
    names = np.array([f"n{j:02d}" for j in range(20)], dtype=object)
    with pytest.raises(TypeError, match="same kind"):
        add_items_spark(_frame(spark, new, user_ids, names), model, user_ids=user_ids.astype(str))
    stranger = _frame(spark, new, user_ids, names, extra_users=[(99_999, "n00")])
    with pytest.raises(Exception, match="99999"):
        add_items_spark(stranger, model, user_ids=user_ids)
    assert model.n_features_in_ == 100  # nothing was added
    added, _ = add_items_spark(stranger, model, user_ids=user_ids, handle_unknown="ignore")
    assert len(added) == 20 and model.n_features_in_ == 120
