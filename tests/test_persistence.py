"""Pickle-free model bundles: round trips, id maps, and refusal of bad bundles."""

import io
import json
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import skfewrec
from skfewrec import ALSFactors, ClosedFormFoldIn
from skfewrec.persistence import (
    ARRAYS,
    MANIFEST,
    META,
    BundleError,
    dumps,
    loads,
    read_metadata,
)
from skfewrec.persistence._loader import _Decoder
from skfewrec.persistence._writer import _Encoder, _sha256
from skfewrec.preprocessing import InteractionEncoder, LogConfidence


@pytest.fixture(scope="module")
def fitted_model(small_interactions):
    factors = ALSFactors(n_components=6, max_iter=4, random_state=0)
    return ClosedFormFoldIn(factors=factors, prior="gaussian").fit(small_interactions[:250])


def _same_recommendations(a, b, X, k=10):
    ids, scores = a.recommend(X, k=k)
    ids2, scores2 = b.recommend(X, k=k)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(scores, scores2)


@pytest.mark.parametrize("name", ["model", "model.zip"])
@pytest.mark.parametrize("prior", ["none", "mean", "gaussian"])
def test_round_trip_gives_identical_recommendations(small_interactions, tmp_path, name, prior):
    factors = ALSFactors(n_components=6, max_iter=4, random_state=0)
    est = ClosedFormFoldIn(factors=factors, prior=prior, prior_strength=2.0)
    est.fit(small_interactions[:250])
    path = skfewrec.save(est, tmp_path / name)
    assert path.is_dir() == (name == "model")
    loaded = skfewrec.load(path)
    assert type(loaded) is ClosedFormFoldIn
    assert loaded.get_params(deep=False).keys() == est.get_params(deep=False).keys()
    assert loaded.prior == prior and loaded.prior_strength == 2.0
    assert isinstance(loaded.factors, ALSFactors) and not hasattr(loaded.factors, "item_factors_")
    np.testing.assert_array_equal(loaded.factors_.user_factors_, est.factors_.user_factors_)
    _same_recommendations(est, loaded, small_interactions[250:])
    # the derived caches were rebuilt, not saved
    assert "_system" not in json.dumps(read_metadata(path))


def test_dumps_loads_in_memory(fitted_model, small_interactions):
    data = dumps(fitted_model)
    assert isinstance(data, bytes) and zipfile.is_zipfile(io.BytesIO(data))
    _same_recommendations(fitted_model, loads(data), small_interactions[250:])
    with pytest.raises(TypeError, match="bytes"):
        loads("model.zip")


def test_shared_objects_stay_shared(small_interactions, tmp_path):
    als = ALSFactors(n_components=4, max_iter=3, random_state=0).fit(small_interactions)
    est = ClosedFormFoldIn(factors=FrozenEstimator(als)).fit(small_interactions)
    meta = read_metadata(skfewrec.save(est, tmp_path / "m"))
    loaded = skfewrec.load(tmp_path / "m")
    assert isinstance(loaded.factors, FrozenEstimator)
    # the frozen factors and the fitted factors_ are one object, stored once
    assert loaded.factors.estimator is loaded.factors_
    assert set(meta["estimator"]["fitted"]["factors_"]["__estimator__"]) == {"ref"}
    _same_recommendations(est, loaded, small_interactions[:40])
    # a clone keeps the frozen factors, as before saving
    from sklearn.base import clone

    assert clone(loaded).factors.estimator is loaded.factors_


def test_unfitted_estimator_round_trip(tmp_path):
    est = ClosedFormFoldIn(ALSFactors(n_components=3, regularization=0.5), prior="mean")
    loaded = skfewrec.load(skfewrec.save(est, tmp_path / "m.zip"))
    assert loaded.get_params()["factors__regularization"] == 0.5
    assert not hasattr(loaded, "factors_")


def test_pipeline_round_trip(small_interactions, tmp_path):
    pipe = make_pipeline(
        LogConfidence(), ClosedFormFoldIn(ALSFactors(n_components=4, max_iter=3, random_state=0))
    ).fit(small_interactions[:250])
    loaded = skfewrec.load(skfewrec.save(pipe, tmp_path / "pipe.zip"))
    assert [name for name, _ in loaded.steps] == [name for name, _ in pipe.steps]
    np.testing.assert_array_equal(
        loaded.decision_function(small_interactions[250:]),
        pipe.decision_function(small_interactions[250:]),
    )


@pytest.mark.parametrize(
    "item_ids", [np.array(["b", "a", "c"] * 40), np.arange(120) * 7 + 3], ids=["str", "int"]
)
def test_bundle_carries_the_id_maps(small_interactions, tmp_path, item_ids):
    rows, cols = small_interactions.nonzero()
    log = pd.DataFrame({"user": rows, "item": (np.arange(120) * 7 + 3)[cols]})
    if item_ids.dtype.kind == "U":
        log["item"] = np.char.add("i", log["item"].astype(str).to_numpy()).astype(object)
    enc = InteractionEncoder(handle_unknown="ignore").fit(log)
    X = enc.transform(log)
    est = ClosedFormFoldIn(ALSFactors(n_components=4, max_iter=3, random_state=0)).fit(X)
    path = skfewrec.save(est, tmp_path / "m.zip", encoder=enc)
    loaded, loaded_enc = skfewrec.load(path, return_encoder=True)
    assert not hasattr(loaded, "encoder_")
    assert isinstance(loaded_enc, InteractionEncoder)
    assert loaded_enc.handle_unknown == "ignore"
    np.testing.assert_array_equal(loaded_enc.item_ids_, enc.item_ids_)
    assert loaded_enc.item_ids_.dtype == enc.item_ids_.dtype
    new = log.iloc[:30]
    np.testing.assert_array_equal(loaded_enc.transform(new).toarray(), enc.transform(new).toarray())
    # without return_encoder: the estimator alone
    assert type(skfewrec.load(path)) is ClosedFormFoldIn
    # saving the loaded model again with its encoder keeps the id maps
    again = skfewrec.save(loaded, tmp_path / "again", encoder=loaded_enc)
    np.testing.assert_array_equal(
        loads(dumps(loaded, encoder=loaded_enc), return_encoder=True)[1].item_ids_, enc.item_ids_
    )
    np.testing.assert_array_equal(
        skfewrec.load(again, return_encoder=True)[1].item_ids_, enc.item_ids_
    )
    assert skfewrec.load(skfewrec.save(loaded, tmp_path / "bare"), return_encoder=True)[1] is None


def test_encoder_must_match_the_model(fitted_model, tmp_path):
    enc = InteractionEncoder().fit(pd.DataFrame({"user": [1, 2], "item": [5, 6]}))
    with pytest.raises(ValueError, match="encoder knows 2 items but the estimator"):
        skfewrec.save(fitted_model, tmp_path / "m", encoder=enc)
    with pytest.raises(TypeError, match="encoder must be a fitted"):
        skfewrec.save(fitted_model, tmp_path / "m", encoder={"a": 1})
    with pytest.raises(ValueError, match="not fitted"):
        skfewrec.save(fitted_model, tmp_path / "m", encoder=InteractionEncoder())
    with pytest.raises(TypeError, match="estimator must be"):
        skfewrec.save("model", tmp_path / "m")


def test_values_without_a_pickle_free_form_are_refused(tmp_path):
    with pytest.raises(BundleError, match="RandomState.*int seed"):
        skfewrec.save(ALSFactors(random_state=np.random.RandomState(0)), tmp_path / "m")
    with pytest.raises(BundleError, match="not a class bundles may hold"):
        skfewrec.save(ClosedFormFoldIn(factors=LogisticRegression()), tmp_path / "m")
    est = ALSFactors()
    est.odd_ = lambda: 0
    with pytest.raises(BundleError, match="ALSFactors.odd_.*no pickle-free form"):
        skfewrec.save(est, tmp_path / "m")
    est.odd_ = np.array(["a", 1], dtype=object)
    with pytest.raises(BundleError, match="object array holding int, str"):
        skfewrec.save(est, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_value_codec_round_trips_every_supported_type():
    import lightgbm

    rng = np.random.default_rng(0)
    booster = lightgbm.train(
        {"objective": "regression", "verbose": -1, "num_leaves": 4},
        lightgbm.Dataset(rng.normal(size=(50, 3)), rng.normal(size=50)),
        num_boost_round=3,
    )
    frame = pd.DataFrame(
        {"x": [1.5, 2.5], "g": pd.Categorical(["u", "v"]), "s": ["p", "q"]},
        index=pd.Index([10, 20], name="item"),
    )
    values = {
        "none": None,
        "nan": float("nan"),
        "inf": -np.inf,
        "tuple": (1, "a", 2.5),
        "dict": {"a": [1, 2], "b": {"c": True}},
        "f32": np.float32,
        "dtype": np.dtype("int16"),
        "builtin": float,
        "csr": sp.random(5, 4, density=0.5, format="csr", random_state=0),
        "csc_array": sp.csc_array(np.eye(3)),
        "coo": sp.coo_matrix(np.eye(2)),
        "obj_int": np.array([3, 1], dtype=object),
        "empty_obj": np.array([], dtype=object),
        "frame": frame,
        "series": frame["g"],
        "index": frame.index,
        "booster": booster,
    }
    enc = _Encoder()
    encoded = json.loads(json.dumps({k: enc.value(v, k) for k, v in values.items()}))
    members = {name: text.encode() for name, text in enc.texts.items()}
    dec = _Decoder(enc.arrays, members, "test")
    out = {k: dec.value(v) for k, v in encoded.items()}
    assert out["none"] is None and np.isnan(out["nan"]) and out["inf"] == -np.inf
    assert out["tuple"] == (1, "a", 2.5) and out["dict"] == values["dict"]
    assert (
        out["f32"] is np.float32 and out["dtype"] == np.dtype("int16") and out["builtin"] is float
    )
    for key in ("csr", "csc_array", "coo"):
        assert type(out[key]) is type(values[key])
        np.testing.assert_array_equal(out[key].toarray(), values[key].toarray())
    assert out["obj_int"].dtype == object and out["obj_int"].tolist() == [3, 1]
    assert out["empty_obj"].dtype == object and out["empty_obj"].size == 0
    pd.testing.assert_frame_equal(out["frame"], frame)
    pd.testing.assert_series_equal(out["series"], frame["g"])
    pd.testing.assert_index_equal(out["index"], frame.index)
    X = rng.normal(size=(7, 3))
    np.testing.assert_array_equal(out["booster"].predict(X), booster.predict(X))


# ------------------------------------------------------------- bad bundles
def _rewrite(path, name, edit, *, fix_checksum):
    """Edit one member of a directory bundle, optionally updating the manifest."""
    member = path / name
    member.write_bytes(edit(member.read_bytes()))
    if fix_checksum:
        manifest = json.loads((path / MANIFEST).read_text())
        data = member.read_bytes()
        manifest["members"][name] = {"sha256": _sha256(data), "size": len(data)}
        (path / MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture
def bundle_dir(fitted_model, tmp_path):
    return skfewrec.save(fitted_model, tmp_path / "bundle")


def test_tampered_member_fails_the_checksum(bundle_dir):
    def flip(data):
        data = bytearray(data)
        data[len(data) // 2] ^= 0xFF
        return bytes(data)

    _rewrite(bundle_dir, ARRAYS, flip, fix_checksum=False)
    with pytest.raises(BundleError, match="SHA-256 of member 'arrays.npz' does not match"):
        skfewrec.load(bundle_dir)


def test_truncated_bundles_are_refused(fitted_model, bundle_dir, tmp_path):
    (bundle_dir / META).unlink()
    with pytest.raises(BundleError, match="truncated: member 'meta.json'.*missing"):
        skfewrec.load(bundle_dir)
    _rewrite(bundle_dir, ARRAYS, lambda d: d[:-100], fix_checksum=False)
    (bundle_dir / META).write_text("{}")
    with pytest.raises(BundleError, match="truncated or corrupted"):
        skfewrec.load(bundle_dir)
    data = dumps(fitted_model)
    path = tmp_path / "cut.zip"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="not a valid zip file.*truncated"):
        skfewrec.load(path)
    for cut in (30, 2000):
        with pytest.raises(BundleError, match="truncated"):
            loads(data[:-cut])
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="or it is truncated: it has no manifest.json"):
        skfewrec.load(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        skfewrec.load(tmp_path / "nothing")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("format_version", 99, "bundle format 99, newer than"),
        ("library_version", "7.0.1", "skfewrec '7.0.1', whose major version differs"),
        ("format", "other", "does not describe a skfewrec bundle"),
    ],
)
def test_unknown_versions_are_refused(bundle_dir, field, value, message):
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    manifest[field] = value
    (bundle_dir / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        skfewrec.load(bundle_dir)


@pytest.mark.parametrize(
    "path, message",
    [
        ("os.system", "not on the allow-list"),
        ("builtins.eval", "not on the allow-list"),
        ("sklearn.linear_model.LogisticRegression", "not on the allow-list"),
        ("skfewrec.persistence.BundleError", "does not have"),
        ("skfewrec.nowhere.Model", "does not have"),
    ],
)
def test_classes_outside_the_allow_list_are_never_instantiated(bundle_dir, path, message):
    def edit(data):
        meta = json.loads(data)
        meta["estimator"]["class"] = path
        return json.dumps(meta).encode()

    # a consistent manifest: the checksum alone does not protect against a crafted bundle
    _rewrite(bundle_dir, META, edit, fix_checksum=True)
    with pytest.raises(BundleError, match=message):
        skfewrec.load(bundle_dir)


def test_crafted_manifests_and_meta_are_refused(bundle_dir):
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    manifest["members"]["../secret"] = {"sha256": "0", "size": 1}
    (bundle_dir / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="invalid member name '../secret'"):
        skfewrec.load(bundle_dir)
    del manifest["members"]["../secret"]
    (bundle_dir / MANIFEST).write_text(json.dumps(manifest))

    def edit(data):
        meta = json.loads(data)
        meta["estimator"]["fitted"]["mean_"] = {"__sparse__": "csr"}
        return json.dumps(meta).encode()

    _rewrite(bundle_dir, META, edit, fix_checksum=True)
    with pytest.raises(BundleError, match="meta.json is malformed"):
        skfewrec.load(bundle_dir)


def test_object_arrays_are_never_unpickled(bundle_dir, monkeypatch):
    def edit(_):
        buf = io.BytesIO()
        np.savez(buf, a0=np.array([{"x": 1}], dtype=object))
        return buf.getvalue()

    _rewrite(bundle_dir, ARRAYS, edit, fix_checksum=True)

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle was used")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    with pytest.raises(BundleError, match="array 'a0' of arrays.npz has dtype object.*pickle"):
        skfewrec.load(bundle_dir)


def test_save_replaces_a_bundle_but_not_other_files(fitted_model, tmp_path):
    path = skfewrec.save(ALSFactors.from_arrays(np.eye(4, 2)), tmp_path / "m")
    skfewrec.save(fitted_model, path)
    assert isinstance(skfewrec.load(path), ClosedFormFoldIn)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.csv").write_text("x")
    with pytest.raises(FileExistsError, match="not a skfewrec bundle"):
        skfewrec.save(fitted_model, tmp_path / "data")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        skfewrec.save(fitted_model, tmp_path / "no" / "m.zip")
    assert (tmp_path / "data" / "keep.csv").read_text() == "x"


@pytest.mark.realdata
def test_round_trip_on_movielens_100k(ml100k_path, tmp_path):
    from skfewrec.datasets import load_movielens
    from skfewrec.model_selection import support_query_split, train_test_split_users

    data = load_movielens(ml100k_path, min_rating=4, binarize=True)
    enc = InteractionEncoder(user_col="user", item_col="item", value_col="value")
    X = enc.fit_transform(data.frame)
    train, test = train_test_split_users(X, test_size=0.2, random_state=0)
    factors = ALSFactors(n_components=32, regularization=0.05, random_state=0)
    est = ClosedFormFoldIn(factors=factors, prior="gaussian").fit(train)
    support, _ = support_query_split(test, 5, random_state=0)
    for name in ("ml100k", "ml100k.zip"):
        loaded = skfewrec.load(skfewrec.save(est, tmp_path / name, encoder=enc))
        _same_recommendations(est, loaded, support, k=20)
        _same_recommendations(est, loaded, test, k=20)
        _, loaded_enc = skfewrec.load(tmp_path / name, return_encoder=True)
        np.testing.assert_array_equal(loaded_enc.item_ids_, enc.item_ids_)


def test_reranker_with_times_round_trips_with_unknown_item_times():
    """item_time_ is NaN for an item without warm interactions: that NaN is legitimate."""
    from skfewrec import LightGBMReranker
    from skfewrec.datasets import make_interactions

    X = make_interactions(n_users=200, n_items=60, random_state=0).X.tolil()
    X[:, 59] = 0
    X = X.tocsr()
    X.eliminate_zeros()
    times = X.copy()
    times.data = np.arange(times.nnz, dtype=np.float64)
    adapter = ClosedFormFoldIn(ALSFactors(n_components=6, random_state=0))
    rr = LightGBMReranker(
        adapter, n_candidates=20, n_estimators=5, cv=2, n_episodes=2, random_state=0
    ).fit(X, timestamps=times)
    assert np.isnan(rr.warm_statistics_["item_time"]).sum() == 1
    _same_recommendations(rr, loads(dumps(rr)), X[:20], k=5)
