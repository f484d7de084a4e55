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
    assert users.tolist() == ["u1", "u2", "u3", "u4"]  # first appearance, filtered users too
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
    new = pd.DataFrame({"user": [9, 9, 8, 9], "item": ["a", "c", "c", "zzz"], "stars": [1, 5, 2, 1]})
    # "zzz" is unknown but rated 1: filtered first, so no error and no column
    X, seen, users = enc.encode(new, return_seen=True)
    assert users.tolist() == [9, 8]
    np.testing.assert_array_equal(X.toarray(), [[0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(seen.toarray(), [[1, 0, 1], [0, 0, 1]])
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
