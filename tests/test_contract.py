"""The data contract: what a model was trained on is what it scores (issue 11).

The encoder's filter (``min_value``), duplicate policy and ``binarize`` are part of
the model and of its bundle; a long log passed where a matrix is expected is
refused with how to encode it; ``recommend_log`` is the one door from a raw log to
raw ids.
"""

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.utils._param_validation import InvalidParameterError

import skfewrec
from skfewrec import ALSFactors, ClosedFormFoldIn, MostPopular
from skfewrec.apps._answer import recommend_log
from skfewrec.persistence import MANIFEST, META, BundleError
from skfewrec.preprocessing import InteractionEncoder

LEGACY = Path(__file__).resolve().parent / "data" / "legacy_v0_1"


@pytest.fixture
def ratings():
    """A log with ratings 1-5, repeats, times and a user whose every rating is low."""
    return pd.DataFrame(
        {
            "user": ["u1", "u1", "u1", "u2", "u2", "u3", "u2", "u4"],
            "item": ["a", "b", "a", "b", "c", "c", "b", "a"],
            "stars": [5, 1, 4, 4, 2, 5, 5, 2],
            "t": [30, 10, 20, 5, 7, 1, 6, 3],
        }
    )


def _synthetic_ratings(n_users=300, n_items=60, seed=0):
    """A ratings log with cluster structure: users like (4-5 stars) their cluster's items."""
    rng = np.random.default_rng(seed)
    user_cluster = rng.integers(4, size=n_users)
    item_cluster = rng.integers(4, size=n_items)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=rng.integers(6, 20), replace=False)
        good = item_cluster[items] == user_cluster[u]
        stars = np.where(good, rng.integers(4, 6, items.size), rng.integers(1, 4, items.size))
        rows.append(pd.DataFrame({"user": f"u{u}", "item": items + 1000, "stars": stars}))
    return pd.concat(rows, ignore_index=True)


# ------------------------------------------------------------------- the encoder


def test_min_value_filters_before_anything_else(ratings):
    enc = InteractionEncoder(value_col="stars", min_value=4)
    X = enc.fit_transform(ratings)
    # u4 rated only "a" with 2 stars: not a user of the training matrix
    assert enc.user_ids_.tolist() == ["u1", "u2", "u3"]
    np.testing.assert_array_equal(X.toarray(), [[9, 0, 0], [0, 9, 0], [0, 0, 5]])
    # an item only ever rated low is not in the catalogue, and encoding it is no error
    low_only = ratings.assign(item=ratings["item"].where(ratings["stars"] >= 4, "zzz"))
    enc = InteractionEncoder(value_col="stars", min_value=4).fit(low_only)
    assert "zzz" not in enc.item_ids_
    X, users = enc.encode(low_only)
    assert users.tolist() == ["u1", "u2", "u3", "u4"]  # filtered-out users keep a row
    assert X[3].nnz == 0


def test_min_value_needs_a_value_column_and_a_number(ratings):
    with pytest.raises(ValueError, match="min_value=4 needs a value column"):
        InteractionEncoder(min_value=4).fit(ratings)
    with pytest.raises(InvalidParameterError, match="min_value"):
        InteractionEncoder(value_col="stars", min_value="4").fit(ratings)
    with pytest.raises(TypeError, match="min_value must be a number"):
        InteractionEncoder(value_col="stars", min_value=True).fit(ratings)
    with pytest.raises(ValueError, match="No event of the log"):
        InteractionEncoder(value_col="stars", min_value=6).fit(ratings)


@pytest.mark.parametrize(
    "duplicates, expected",
    [
        # u1/a: stars 5 (t=30) then 4 (t=20); u2/b: 4 (t=5) then 5 (t=6)
        ("sum", [[9, 1, 0], [0, 9, 2], [0, 0, 5], [2, 0, 0]]),
        ("max", [[5, 1, 0], [0, 5, 2], [0, 0, 5], [2, 0, 0]]),
        ("first", [[4, 1, 0], [0, 4, 2], [0, 0, 5], [2, 0, 0]]),
        ("last", [[5, 1, 0], [0, 5, 2], [0, 0, 5], [2, 0, 0]]),
    ],
)
def test_duplicate_policies_by_time(ratings, duplicates, expected):
    enc = InteractionEncoder(value_col="stars", time_col="t", duplicates=duplicates)
    np.testing.assert_array_equal(enc.fit_transform(ratings).toarray(), expected)


def test_first_and_last_follow_row_order_without_times(ratings):
    enc = InteractionEncoder(value_col="stars", duplicates="last").fit(ratings)
    X, users = enc.encode(ratings)  # u1/a: 5 then 4 by row order
    assert users.tolist() == ["u1", "u2", "u3", "u4"]
    assert X[0, 0] == 4 and X[1, 1] == 5
    # a model fitted with time_col answers a log without the column by row order
    timed = InteractionEncoder(value_col="stars", time_col="t", duplicates="first").fit(ratings)
    assert timed.encode(ratings.drop(columns="t"))[0][0, 0] == 5


def test_binarize_counts_every_kept_cell_once(ratings):
    enc = InteractionEncoder(value_col="stars", min_value=4, binarize=True)
    X = enc.fit_transform(ratings)
    np.testing.assert_array_equal(X.toarray(), [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert X.dtype == np.float32 and X.has_canonical_format
    counts = InteractionEncoder(binarize=True).fit_transform(ratings)
    assert set(counts.data.tolist()) == {1.0}


def test_encode_returns_the_raw_seen_items(ratings):
    enc = InteractionEncoder(value_col="stars", min_value=4, binarize=True).fit(ratings)
    new = pd.DataFrame(
        {"user": [9, 9, 8, 9], "item": ["a", "c", "c", "zzz"], "stars": [1, 5, 2, 1]}
    )
    # "zzz" is unknown but rated 1: filtered first, so no error and no column
    X, seen, users = enc.encode(new, return_seen=True)
    assert users.tolist() == [8, 9]
    np.testing.assert_array_equal(X.toarray(), [[0, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(seen.toarray(), [[0, 0, 1], [1, 0, 1]])
    assert seen.shape == X.shape and seen.format == "csr"
    with pytest.raises(TypeError, match="return_seen must be True or False"):
        enc.encode(new, return_seen="yes")
    # a kept unknown item follows handle_unknown
    with pytest.raises(ValueError, match="not seen in fit"):
        enc.encode(new.assign(stars=5))


def test_contract_matches_a_reference_on_random_logs():
    rng = np.random.default_rng(0)
    n = 4000
    df = pd.DataFrame(
        {
            "user": rng.integers(0, 200, n),
            "item": rng.integers(0, 50, n),
            "v": rng.integers(0, 6, n).astype(float),
            "t": rng.permutation(n),
        }
    )
    for duplicates in ("sum", "max", "first", "last"):
        enc = InteractionEncoder(
            value_col="v", time_col="t", min_value=2, duplicates=duplicates
        ).fit(df)
        X, users = enc.encode(df.sample(frac=1.0, random_state=1))
        kept = df[df["v"] >= 2].sort_values("t")
        cells = kept.groupby(["user", "item"])["v"]
        agg = {"sum": cells.sum(), "max": cells.max(), "first": cells.first(), "last": cells.last()}
        table = agg[duplicates].unstack(fill_value=0.0)
        table = table.reindex(index=users, columns=enc.item_ids_, fill_value=0.0)
        np.testing.assert_allclose(X.toarray(), table.to_numpy(), err_msg=duplicates)


def test_legacy_pickled_encoder_gets_the_old_behaviour(ratings):
    enc = InteractionEncoder(value_col="stars").fit(ratings)
    state = enc.__getstate__()
    for name in ("min_value", "binarize", "duplicates"):
        state.pop(name)
    old = InteractionEncoder.__new__(InteractionEncoder)
    old.__setstate__(state)
    assert (old.min_value, old.binarize, old.duplicates) == (None, False, "sum")
    assert (old.transform(ratings) != enc.transform(ratings)).nnz == 0


# ------------------------------------------------------------------- bundles


def _fit_with_encoder(log, **params):
    enc = InteractionEncoder(value_col="stars", **params)
    rec = MostPopular().fit(enc.fit_transform(log))
    return rec, enc


def test_bundle_carries_the_contract(ratings, tmp_path):
    rec, enc = _fit_with_encoder(ratings, min_value=4, binarize=True, duplicates="max")
    path = skfewrec.save(rec, tmp_path / "model.zip", encoder=enc)
    _, loaded = skfewrec.load(path, return_encoder=True)
    assert (loaded.min_value, loaded.binarize, loaded.duplicates) == (4, True, "max")
    X, seen, users = loaded.encode(ratings, return_seen=True)
    X0, seen0, users0 = enc.encode(ratings, return_seen=True)
    assert (X != X0).nnz == 0 and (seen != seen0).nnz == 0
    np.testing.assert_array_equal(users, users0)


def _edit_encoder_param(src, dst, name, value):
    """Rewrite one encoder parameter of a zip bundle and fix its checksums (a crafted file)."""
    import hashlib

    with zipfile.ZipFile(src) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    meta = json.loads(members[META])
    meta["encoder"]["params"][name] = value
    members[META] = json.dumps(meta).encode()
    manifest = json.loads(members[MANIFEST])
    for member, data in members.items():
        if member != MANIFEST:
            manifest["members"][member] = {
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
    members[MANIFEST] = json.dumps(manifest).encode()
    with zipfile.ZipFile(dst, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return dst


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("min_value", "abc", "min_value"),
        ("min_value", {"__float__": "nan"}, "min_value"),
        ("duplicates", "rm -rf", "duplicates"),
        ("binarize", "yes", "binarize"),
        ("value_col", None, "needs a value column"),
    ],
)
def test_edited_contract_in_a_bundle_is_refused(ratings, tmp_path, name, value, message):
    rec, enc = _fit_with_encoder(ratings, min_value=4)
    path = skfewrec.save(rec, tmp_path / "model.zip", encoder=enc)
    crafted = _edit_encoder_param(path, tmp_path / "crafted.zip", name, value)
    with pytest.raises(BundleError, match=message):
        skfewrec.load(crafted, return_encoder=True)


def test_legacy_bundle_encoder_has_the_old_contract():
    model, enc = skfewrec.load(LEGACY / "closed_form_encoded.zip", return_encoder=True)
    assert (enc.min_value, enc.binarize, enc.duplicates) == (None, False, "sum")
    assert isinstance(model, ClosedFormFoldIn)


# ------------------------------------------------------------------- logs are not matrices


def _ml_like_log(n_users=50, n_items=80, n_events=600, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "userId": rng.integers(1, n_users + 1, n_events),
            "movieId": rng.integers(1, n_items + 1, n_events),
            "rating": rng.integers(1, 6, n_events).astype(float),
            "timestamp": rng.integers(881250949, 891250949, n_events),
        }
    )


ESTIMATORS = [
    lambda: MostPopular(),
    lambda: ClosedFormFoldIn(
        prior_strength=1.0,
        shrinkage=0.0,
        factors=ALSFactors(
            n_components=2, regularization=1.0, confidence_scale=2.0, random_state=0
        ),
    ),
    lambda: ALSFactors(n_components=2, regularization=1.0, confidence_scale=2.0, random_state=0),
    lambda: skfewrec.EASE(),
    lambda: skfewrec.ItemKNN(),
]


@pytest.mark.parametrize("make", ESTIMATORS)
@pytest.mark.parametrize(
    "how",
    ["frame3", "frame_named_numeric", "array3", "array4", "array2", "object_frame", "datetime"],
)
def test_a_long_log_is_refused_with_how_to_encode_it(make, how):
    log = _ml_like_log()
    X = {
        "frame3": log[["userId", "movieId", "rating"]],
        "frame_named_numeric": log[["userId", "movieId"]],
        "array3": log[["userId", "movieId", "rating"]].to_numpy(),
        "array4": log.to_numpy().astype(float),
        "array2": log[["userId", "movieId"]].to_numpy(),
        "object_frame": log.assign(userId="u" + log["userId"].astype(str)).rename(
            columns={"userId": "a", "movieId": "b"}
        )[["a", "b", "rating"]],
        "datetime": pd.DataFrame(
            {"x": pd.to_datetime(log["timestamp"], unit="s"), "y": log["rating"]}
        ),
    }[how]
    with pytest.raises(ValueError, match="looks like a long interaction log") as info:
        make().fit(X)
    assert "InteractionEncoder" in str(info.value) and "make_pipeline" in str(info.value)


def test_matrices_are_not_taken_for_logs(small_interactions):
    rng = np.random.default_rng(0)
    # a dense matrix of a few items with float values, counts with few distinct values,
    # a wide integer matrix, and any sparse matrix: all still fit
    for X in (
        3 * rng.uniform(size=(200, 3)),
        rng.integers(0, 3, size=(200, 3)),
        rng.integers(0, 50, size=(200, 5)),
        sp.csr_matrix(_ml_like_log()[["userId", "movieId", "rating"]].to_numpy()),
        pd.DataFrame(small_interactions.toarray()),
    ):
        assert MostPopular().fit(X).n_features_in_ == X.shape[1]


def test_recommend_refuses_a_log_too(small_interactions):
    rec = MostPopular().fit(small_interactions)
    with pytest.raises(ValueError, match="looks like a long interaction log"):
        rec.recommend(_ml_like_log()[["userId", "movieId", "rating"]], k=5)


# ------------------------------------------------------------------- degenerate fits


def test_fitting_a_one_by_one_log_warns():
    log = pd.DataFrame({"user": [1], "item": ["a"]})
    X = InteractionEncoder().fit_transform(log)
    with pytest.warns(UserWarning, match="a single user and a single item"):
        MostPopular().fit(X)


def test_more_factors_than_items_warns(small_interactions):
    X = small_interactions[:, :6]
    with pytest.warns(UserWarning, match="n_components=8 is larger than the 6 items"):
        ALSFactors(n_components=8, regularization=1.0, confidence_scale=2.0, random_state=0).fit(X)
    with pytest.warns(UserWarning, match="n_components=8 is larger than the 6 items"):
        ClosedFormFoldIn(
            prior_strength=1.0,
            shrinkage=0.0,
            factors=ALSFactors(
                n_components=8, regularization=1.0, confidence_scale=2.0, random_state=0
            ),
        ).fit(X)
    prefit = ALSFactors.from_arrays(np.random.default_rng(0).random((6, 8)))
    from sklearn.frozen import FrozenEstimator

    with pytest.warns(UserWarning, match="8 factors for 6 items"):
        ClosedFormFoldIn(prior_strength=1.0, shrinkage=0.0, factors=FrozenEstimator(prefit)).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        ALSFactors(n_components=6, regularization=1.0, confidence_scale=2.0, random_state=0).fit(X)


# ------------------------------------------------------------------- the one door


@pytest.fixture(scope="module")
def rated():
    """A ratings log, and a model fitted on it with 4+ stars as likes."""
    log = _synthetic_ratings()
    train = log[log["user"].isin([f"u{u}" for u in range(250)])]
    test = log[~log.index.isin(train.index)]
    enc = InteractionEncoder(value_col="stars", min_value=4, binarize=True, handle_unknown="ignore")
    rec = ClosedFormFoldIn(
        prior_strength=1.0,
        shrinkage=0.0,
        factors=ALSFactors(
            n_components=8, regularization=1.0, confidence_scale=2.0, random_state=0
        ),
    )
    rec.fit(enc.fit_transform(train))
    return enc, rec, train, test


def _by_user(answers):
    return answers.sort_values(["user", "rank"], kind="stable").reset_index(drop=True)


def test_raw_and_prefiltered_logs_give_identical_answers(rated):
    enc, rec, _, test = rated
    # duplicates of kept events too: binarize makes them count once
    raw = pd.concat([test, test[test["stars"] >= 4].iloc[::3]]).sample(frac=1.0, random_state=0)
    prefiltered = raw[raw["stars"] >= 4]
    kept_users = pd.unique(prefiltered["user"])
    # filter_seen=False: the model's input is the same, so the answers are identical
    a = recommend_log(rec, enc, raw, k=10, filter_seen=False)
    b = recommend_log(rec, enc, prefiltered, k=10, filter_seen=False)
    assert a["user"].unique().tolist() == pd.unique(raw["user"]).tolist()  # input order
    pd.testing.assert_frame_equal(_by_user(a[a["user"].isin(kept_users)]), _by_user(b))
    # filter_seen=True: the same ranking, minus the items of the raw log (low ratings too)
    a = recommend_log(rec, enc, raw, k=10)
    b = recommend_log(rec, enc, prefiltered, k=40)
    seen = set(zip(raw["user"], raw["item"]))
    assert not any(pair in seen for pair in zip(a["user"], a["item"]))
    expected = b[[pair not in seen for pair in zip(b["user"], b["item"])]]
    expected = expected.groupby("user", sort=False).head(10)
    expected = expected.assign(rank=expected.groupby("user", sort=False).cumcount() + 1)
    pd.testing.assert_frame_equal(_by_user(a[a["user"].isin(kept_users)]), _by_user(expected))


def test_recommend_log_matches_the_encoded_matrix(rated):
    enc, rec, _, test = rated
    out = recommend_log(rec, enc, test, k=5)
    X, seen, users = enc.encode(test, return_seen=True)
    ids, scores = rec._recommend(X, 5, seen=seen)
    assert list(out.columns) == ["user", "item", "score", "rank"]
    # the encoder's rows are sorted users; the answer follows the log's order
    order = pd.Index(users).get_indexer(pd.unique(test["user"]))
    assert out["user"].unique().tolist() == pd.unique(test["user"]).tolist()
    np.testing.assert_array_equal(out["user"].to_numpy().reshape(-1, 5)[:, 0], users[order])
    np.testing.assert_array_equal(
        out["item"].to_numpy().reshape(-1, 5), enc.inverse_items(ids[order])
    )
    np.testing.assert_allclose(out["score"].to_numpy().reshape(-1, 5), scores[order])
    assert out["rank"].tolist() == [1, 2, 3, 4, 5] * len(users)


def test_recommend_log_options(rated):
    enc, rec, _, test = rated
    items = enc.item_ids_
    out = recommend_log(rec, enc, test, k=3, exclude=list(items[:10]) + ["never-seen"])
    assert not out["item"].isin(items[:10]).any()
    out = recommend_log(rec, enc, test, k=3, items=items[:20], user_col="who", item_col="what")
    assert list(out.columns) == ["who", "what", "score", "rank"]
    assert out["what"].isin(items[:20]).all()
    with pytest.raises(ValueError, match="larger than the 20 items"):
        recommend_log(rec, enc, test, k=21, items=items[:20])
    with pytest.raises(ValueError, match=f"larger than the {len(items)} items"):
        recommend_log(rec, enc, test, k=len(items) + 1)
    with pytest.raises(ValueError, match="not seen in fit"):
        recommend_log(
            rec,
            InteractionEncoder(value_col="stars").fit(rated[2]),
            test,
            k=3,
            items=["never-seen"],
        )
    with pytest.raises(ValueError, match="distinct names"):
        recommend_log(rec, enc, test, k=3, user_col="score")
    with pytest.raises(ValueError, match="needs the model's id maps"):
        recommend_log(rec, None, test, k=3)
    empty = recommend_log(rec, enc, test.iloc[:0], k=3)
    assert list(empty.columns) == ["user", "item", "score", "rank"] and len(empty) == 0
    # a user whose every item is seen gets no rows, the others theirs
    everything = pd.DataFrame({"user": "all", "item": items, "stars": 5})
    both = pd.concat([everything, test[test["user"] == test["user"].iloc[0]]])
    out = recommend_log(rec, enc, both, k=3)
    assert "all" not in set(out["user"]) and len(out) == 3


def test_pipeline_recommend_is_recommend_log(rated):
    enc, rec, train, test = rated
    pipe = skfewrec.make_pipeline(clone_encoder(enc), clone_rec(rec)).fit(train)
    pd.testing.assert_frame_equal(pipe.recommend(test, k=5), recommend_log(pipe, None, test, k=5))
    pd.testing.assert_frame_equal(pipe.recommend(test, k=5), recommend_log(rec, enc, test, k=5))
    with pytest.raises(ValueError, match="pass encoder=None"):
        recommend_log(pipe, enc, test, k=5)


def clone_encoder(enc):
    from sklearn.base import clone

    return clone(enc)


def clone_rec(rec):
    from sklearn.base import clone

    return clone(rec)
