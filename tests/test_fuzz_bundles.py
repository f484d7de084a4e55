"""Hostile bundles: each attack ends in a BundleError or a model that answers correctly.

Checksums are not a signature: every crafted bundle here has its manifest
recomputed, so only the loader's own checks stand between it and the model. The
rule, for every model kind: ``load`` raises :class:`BundleError`, or it returns a
model whose ``recommend`` gives finite scores and item ids inside the catalogue;
never another exception, a signal, a hang, NaN, or an out-of-range id.

The first part holds one regression test per failure of issue 12; the second
fuzzes with hypothesis (truncations, byte flips, crafted ``meta.json`` values,
crafted ``arrays.npz`` contents) and with random one-line edits of the LightGBM
model text, run in a subprocess so that a crash shows as a failure. A fast profile
runs with the test suite; ``pytest -m fuzz`` runs the long one. With
``SKFEWREC_FUZZ_REPORT=<file>`` the attack counts are written to that file.
"""

import faulthandler
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import skfewrec
from skfewrec.persistence import ARRAYS, MANIFEST, META, BundleError, dumps, loads

LEGACY = Path(__file__).resolve().parent / "data" / "legacy_v0_1"
KINDS = sorted(p.stem for p in LEGACY.glob("*.zip"))
#: attack class -> outcome -> count, over this session
COUNTS = Counter()


@pytest.fixture(scope="module")
def bundles():
    """Every model kind (the 0.1.0 bundles), saved again in the current format."""
    out = {}
    for name in KINDS:
        model, encoder = skfewrec.load(LEGACY / f"{name}.zip", return_encoder=True)
        out[name] = dumps(model, encoder=encoder)
    return out


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    target = os.environ.get("SKFEWREC_FUZZ_REPORT")
    if target:
        counts = {f"{attack}/{outcome}": n for (attack, outcome), n in sorted(COUNTS.items())}
        Path(target).write_text(json.dumps(counts, indent=1) + "\n")


@pytest.fixture
def no_hang():
    """A hang becomes a failure with every thread's traceback, not a stuck test run."""
    faulthandler.dump_traceback_later(240, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


# ----------------------------------------------------------------- crafting
def unpack(data):
    """A zip bundle's members, without the manifest."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist() if name != MANIFEST}


def pack(members):
    """A zip bundle with a manifest recomputed for ``members``: checksums that match."""
    manifest = {
        "format": "skfewrec-bundle",
        "format_version": 2,
        "library_version": skfewrec.__version__,
        "members": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in members.items()
        },
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in {**members, MANIFEST: json.dumps(manifest).encode()}.items():
            zf.writestr(name, data)
    return buf.getvalue()


def edit_meta(data, edit):
    members = unpack(data)
    meta = json.loads(members[META])
    edit(meta)
    members[META] = json.dumps(meta).encode()
    return pack(members)


def edit_bundle(data, edit):
    """Apply ``edit(arrays, meta)`` to the arrays and the meta.json of a bundle."""
    members = unpack(data)
    with np.load(io.BytesIO(members[ARRAYS]), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    meta = json.loads(members[META])
    edit(arrays, meta)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    members[ARRAYS] = buf.getvalue()
    members[META] = json.dumps(meta).encode()
    return pack(members)


def run_python(code, *args, timeout):
    """Run ``code`` in a fresh Python on this checkout: a crash or hang there fails here."""
    env = {**os.environ, "PYTHONPATH": str(Path(skfewrec.__file__).parents[1])}
    command = [sys.executable, "-c", code, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def _users(n_items, seed, rating_scale=None):
    """A few users with 0 to 10 shots of values 1 to 3 (or inside a declared rating scale)."""
    rng = np.random.default_rng(seed)
    low, high = (1, 3) if rating_scale is None else rating_scale
    rows = []
    for n_shots in (0, 1, 3, min(10, n_items)):
        row = np.zeros(n_items, dtype=np.float32)
        row[rng.choice(n_items, n_shots, replace=False)] = rng.uniform(low, high, n_shots)
        rows.append(row)
    return sp.csr_matrix(np.array(rows))


def outcome(data, seed=0):
    """'refused' or 'valid'; fails the test when the rule is broken."""
    try:
        model = loads(data)
    except BundleError:
        return "refused"
    last = model[-1] if hasattr(model, "steps") else model
    if not hasattr(last, "n_features_in_"):
        return "valid"  # an unfitted model: nothing to answer
    n_items = last.n_features_in_
    X = _users(n_items, seed, getattr(last, "rating_scale", None))
    if hasattr(model, "steps"):
        X = model[:-1].transform(X)
    k = min(5, n_items)
    ids, scores = last.recommend(X, k=k, filter_seen=False)
    assert ids.shape == (X.shape[0], k)
    assert ids.min() >= 0 and ids.max() < n_items, ids
    assert np.all(np.isfinite(scores)), scores
    return "valid"


def _node(meta):
    return meta["estimator"]


def _array_of(meta, *path):
    """The arrays.npz key of the array at ``path`` in the root node."""
    value = _node(meta)
    for key in path:
        value = value[key]
    return value["__array__"]


# -------------------------------------------------- regressions (issue 12)
def test_every_kind_round_trips_in_format_2(bundles):
    for name, data in bundles.items():
        assert outcome(data) == "valid", name


@pytest.mark.parametrize(
    "param, value, message",
    [
        ("prior_strength", 1e308, "prior_strength=1e\\+308 is not a finite number"),
        ("regularization", -1, "regularization"),
        ("regularization", {"__float__": "nan"}, "regularization=nan"),
        ("solver", 5, "solver"),
        ("n_jobs", 1.5, "n_jobs=1.5"),
        ("n_jobs", 100000, "n_jobs=100000"),
        ("prior", "bayes", "prior"),
        ("rating_scale", [0, 0], "rating_scale must satisfy 0 < low <= high"),
    ],
)
def test_hyper_parameters_are_validated(bundles, param, value, message):
    def edit(meta):
        _node(meta)["params"][param] = value

    with pytest.raises(BundleError, match=message):
        loads(edit_meta(bundles["closed_form_gaussian"], edit))


def test_nested_hyper_parameters_are_validated(bundles):
    def edit(meta):
        _node(meta)["params"]["factors"]["__estimator__"]["params"]["n_components"] = -3

    with pytest.raises(BundleError, match="ALSFactors has an invalid parameter.*n_components"):
        loads(edit_meta(bundles["closed_form_gaussian"], edit))


def test_nan_popularity_is_refused(bundles):
    def edit(arrays, meta):
        key = _array_of(meta, "fitted", "item_popularity_")
        arrays[key] = np.full_like(arrays[key], np.nan)

    with pytest.raises(BundleError, match="item_popularity_ holds NaN, infinite or values beyond"):
        loads(edit_bundle(bundles["most_popular"], edit))


@pytest.mark.parametrize("shift", [10**6, -(10**6), 60])
def test_out_of_range_sparse_indices_are_refused(bundles, shift):
    def edit(arrays, meta):
        key = _array_of(meta, "fitted", "similarity_", "indices")
        arrays[key] = arrays[key] + shift

    with pytest.raises(BundleError, match="indices outside \\[0, 60\\)"):
        loads(edit_bundle(bundles["item_knn"], edit))


@pytest.mark.parametrize(
    "edit_indptr, message",
    [
        (lambda p: p[::-1].copy(), "indptr must have"),
        (lambda p: np.r_[p[:3], p[2] - 1, p[4:]], "indptr decreases"),
        (lambda p: p[:-1], "indptr must have"),
    ],
)
def test_broken_sparse_structure_is_refused(bundles, edit_indptr, message):
    def edit(arrays, meta):
        key = _array_of(meta, "fitted", "similarity_", "indptr")
        arrays[key] = edit_indptr(arrays[key])

    with pytest.raises(BundleError, match=message):
        loads(edit_bundle(bundles["item_knn"], edit))


def test_shapes_must_match_the_catalogue(bundles):
    def edit(arrays, meta):
        key = _array_of(meta, "fitted", "factors_", "__estimator__", "fitted", "item_factors_")
        arrays[key] = arrays[key][:-5]

    with pytest.raises(BundleError, match="item_factors_ has shape \\(55, 6\\), not 60 items"):
        loads(edit_bundle(bundles["closed_form_none"], edit))


def test_nan_factors_are_refused(bundles):
    def edit(arrays, meta):
        key = _array_of(meta, "fitted", "factors_", "__estimator__", "fitted", "item_factors_")
        arrays[key][3, 1] = np.nan

    with pytest.raises(BundleError, match="item_factors_ holds NaN, infinite or values beyond"):
        loads(edit_bundle(bundles["closed_form_none"], edit))


def test_deeply_nested_json_is_refused(bundles):
    for depth in (600, 100_000):
        members = unpack(bundles["most_popular"])
        members[META] = b"[" * depth + b"]" * depth
        with pytest.raises(BundleError, match="meta.json is (not valid JSON|nested more)"):
            loads(pack(members))


def test_json_numbers_out_of_range_are_refused(bundles):
    members = unpack(bundles["most_popular"])
    text = members[META].decode()
    for number in ("1e400", "NaN", "Infinity", "9" * 5000):
        members[META] = text.replace('"weighting": "users"', f'"weighting": {number}').encode()
        with pytest.raises(BundleError, match="meta.json is not valid JSON"):
            loads(pack(members))


def _patch_zip_entry(data, name, *, method=None, size=None):
    """Edit the compression method or declared size of a member in both its headers."""
    data = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        local = zf.getinfo(name).header_offset
        central = zf.start_dir
    while True:  # the member's central directory entry
        central = data.index(b"PK\x01\x02", central)
        n_name = int.from_bytes(data[central + 28 : central + 30], "little")
        if data[central + 46 : central + 46 + n_name] == name.encode():
            break
        central += 4
    if method is not None:
        data[local + 8 : local + 10] = method.to_bytes(2, "little")
        data[central + 10 : central + 12] = method.to_bytes(2, "little")
    if size is not None:
        data[local + 22 : local + 26] = size.to_bytes(4, "little")
        data[central + 24 : central + 28] = size.to_bytes(4, "little")
    return bytes(data)


def test_flipped_compression_byte_is_a_bundle_error(bundles):
    data = _patch_zip_entry(bundles["closed_form_none"], META, method=99)
    with pytest.raises(BundleError, match="NotImplementedError|compression"):
        loads(data)
    # a flipped "version needed to extract" byte of the central directory
    data = bytearray(bundles["closed_form_none"])
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        central = zf.start_dir  # the outer zip's (arrays.npz holds a zip of its own)
    data[central + 6] = 84
    with pytest.raises(BundleError, match="zip file version 8.4"):
        loads(bytes(data))


def test_a_small_zip_declaring_a_huge_member_is_refused_unread(bundles):
    members = unpack(bundles["most_popular"])
    members["text/0.txt"] = bytes(2**20)  # deflates to ~1 KiB
    data = pack(members)
    # the zip and the manifest both declare 1 GiB for it (checksum made to match)
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(data)).read(MANIFEST))
    manifest["members"]["text/0.txt"]["size"] = 2**30
    rebuilt = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(rebuilt, "w") as dst:
        for info in src.infolist():
            body = json.dumps(manifest).encode() if info.filename == MANIFEST else src.read(info)
            dst.writestr(info.filename, body, compress_type=zipfile.ZIP_DEFLATED)
    bomb = _patch_zip_entry(rebuilt.getvalue(), "text/0.txt", size=2**30)
    assert len(bomb) < 2**20
    start = time.perf_counter()
    with pytest.raises(BundleError, match="declares 1073741824 bytes stored in .* zip bomb"):
        loads(bomb)
    assert time.perf_counter() - start < 2.0


def test_member_longer_than_its_manifest_entry_is_cut_while_streaming(bundles, tmp_path):
    path = skfewrec.save(skfewrec.load(LEGACY / "most_popular.zip"), tmp_path / "m")
    manifest = json.loads((path / MANIFEST).read_text())
    meta = (path / META).read_bytes()
    (path / META).write_bytes(meta + b" " * 2**22)  # 4 MiB more than listed
    manifest["members"][META]["size"] = len(meta)
    (path / MANIFEST).write_text(json.dumps(manifest))
    message = f"meta.json' holds more than {len(meta)} bytes \\(what its manifest lists"
    with pytest.raises(BundleError, match=message):
        skfewrec.load(path)


def test_member_larger_than_the_limits_is_refused(bundles, monkeypatch):
    from skfewrec.persistence import limits

    monkeypatch.setattr(limits, "member_bytes", 1000)
    with pytest.raises(BundleError, match="more than the limit of 1000 bytes per member"):
        loads(bundles["ease"])
    monkeypatch.setattr(limits, "member_bytes", 2**30)
    # the 60 x 60 float32 coef_ (14,400 bytes) with meta.json pass the total of 16,000
    monkeypatch.setattr(limits, "total_bytes", 16_000)
    assert outcome(bundles["ease"]) == "valid"
    monkeypatch.setattr(limits, "total_bytes", 14_700)
    with pytest.raises(BundleError, match="past its limit of 14700 decompressed bytes"):
        loads(bundles["ease"])
    monkeypatch.setattr(limits, "total_bytes", 10_000)
    with pytest.raises(BundleError, match="arrays.npz' holds .* bytes, more than the limit"):
        loads(bundles["ease"])


def test_unreferenced_arrays_are_never_read(bundles):
    """A 1 GiB array nobody refers to (here a header with no data behind it) is not read."""
    members = unpack(bundles["most_popular"])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as npz:
        with zipfile.ZipFile(io.BytesIO(members[ARRAYS])) as old:
            for info in old.infolist():
                npz.writestr(info.filename, old.read(info))
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<f4", "fortran_order": False, "shape": (2**28,)}
        )
        npz.writestr("huge.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:])
    members[ARRAYS] = buf.getvalue()
    model = loads(pack(members))
    assert model.item_popularity_.shape == (60,)

    def refer(meta):
        _node(meta)["fitted"]["item_popularity_"]["__array__"] = "huge"

    members[META] = json.dumps(_edited(members[META], refer)).encode()
    with pytest.raises(BundleError, match="'huge' of arrays.npz declares shape"):
        loads(pack(members))


def _edited(raw, edit):
    meta = json.loads(raw)
    edit(meta)
    return meta


def test_directory_members_must_be_regular_files(tmp_path):
    model = skfewrec.load(LEGACY / "most_popular.zip")
    cases = {
        "symlink": (MANIFEST, lambda target: target.symlink_to("/dev/zero")),
        "fifo": (MANIFEST, os.mkfifo),
        "folder": ("lightgbm/0.txt", None),
        "device": (META, lambda target: target.symlink_to("/dev/zero")),
    }
    for kind, (member, make) in cases.items():
        path = skfewrec.save(model, tmp_path / kind)
        if make is None:  # a symlinked folder on the way to a member
            members = json.loads((path / MANIFEST).read_text())
            members["members"][member] = {"sha256": "0" * 64, "size": 1}
            (path / MANIFEST).write_text(json.dumps(members))
            (path / "lightgbm").symlink_to("/dev")
            continue
        (path / member).unlink()
        make(path / member)
    # in a subprocess: a regression would block forever or read until memory runs out
    code = (
        "import sys, skfewrec\n"
        "from skfewrec.persistence import BundleError\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        skfewrec.load(path)\n"
        "    except BundleError as exc:\n"
        "        print('refused:', exc, flush=True)\n"
    )
    done = run_python(code, *(tmp_path / kind for kind in cases), timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(cases), done.stdout
    assert all(line.startswith("refused:") and "regular file" in line for line in lines), lines


def test_id_maps_must_match_the_model(bundles):
    def edit(arrays, meta):
        key = meta["encoder"]["fitted"]["item_ids_"]["__array__"]
        arrays[key] = arrays[key][:-1]

    with pytest.raises(BundleError, match="54 item ids for 55 items"):
        loads(edit_bundle(bundles["closed_form_encoded"], edit))

    def shrink(arrays, meta):
        edit(arrays, meta)
        meta["encoder"]["fitted"]["n_items_"] = 54

    with pytest.raises(BundleError, match="id maps know 54 items but the model has 55"):
        loads(edit_bundle(bundles["closed_form_encoded"], shrink))

    def duplicate(arrays, meta):
        key = meta["encoder"]["fitted"]["item_ids_"]["__array__"]
        arrays[key][1] = arrays[key][0]

    with pytest.raises(BundleError, match="item_ids_ is not a 1-d array of distinct ids"):
        loads(edit_bundle(bundles["closed_form_encoded"], duplicate))


# ------------------------------------------------------------ LightGBM text
_LIGHTGBM_RUNNER = """
import sys
from pathlib import Path
import numpy as np
import scipy.sparse as sp
from skfewrec.persistence import BundleError, loads

X = sp.random(6, int(sys.argv[2]), density=0.1, format="csr", random_state=0, dtype=np.float32)
for path in sorted(Path(sys.argv[1]).glob("*.zip"), key=lambda p: int(p.stem)):
    try:
        model = loads(path.read_bytes())
    except BundleError:
        print(path.stem, "refused", flush=True)
        continue
    ids, scores = model.recommend(X, k=5, filter_seen=False)
    ok = ids.min() >= 0 and ids.max() < X.shape[1] and np.isfinite(scores).all()
    rows = np.random.default_rng(0).normal(size=(20, model.booster_.num_feature()))
    pred = model.booster_.predict(rows)
    ok = ok and np.isfinite(pred).all()
    print(path.stem, "valid" if ok else "BROKEN", flush=True)
"""


def _edit_line(line, rng):
    """One random edit of one line of a model text."""
    key, sep, value = line.partition("=")
    tokens = value.split(" ") if sep else []
    choice = rng.randrange(8)
    if choice == 0 or not sep:
        return rng.choice(["", "x", line + " 1", "=" + line, "Tree=0", key + "=="])
    if choice == 1:
        return f"{key}="  # a cleared value
    if choice == 2:
        return f"{key}=" + rng.choice(["x", "-1", "0", "1e400", "nan", "inf", str(2**40), "-0"])
    if choice == 3 and tokens:
        i = rng.randrange(len(tokens))
        tokens[i] = rng.choice(["-1", "0", "1", "2", "-2", "30", "99999", "1e308", "nan", "x"])
        return f"{key}=" + " ".join(tokens)
    if choice == 4 and tokens:
        return f"{key}=" + " ".join(tokens[:-1])  # one value fewer
    if choice == 5 and tokens:
        return f"{key}=" + " ".join([*tokens, tokens[-1]])  # one more
    if choice == 6 and tokens:
        rng.shuffle(tokens)
        return f"{key}=" + " ".join(tokens)
    return f"{key}=" + str(rng.randint(-5, 40))


def lightgbm_edits(data, n_cases, seed):
    """Bundles, each with one line of the re-ranker's model text edited (checksums fixed)."""
    members = unpack(data)
    name = next(n for n in members if n.startswith("lightgbm/"))
    lines = members[name].decode().split("\n")
    rng = random.Random(seed)
    # the trees and the header: where LightGBM's own parser crashes
    editable = [i for i, line in enumerate(lines) if line and not line.startswith("[")]
    editable = [i for i in editable if i < lines.index("end of trees")]
    for _ in range(n_cases):
        i = rng.choice(editable)
        edited = list(lines)
        if rng.random() < 0.15:
            del edited[i]
        else:
            edited[i] = _edit_line(lines[i], rng)
        yield pack({**members, name: "\n".join(edited).encode()})


def _run_lightgbm_fuzz(data, tmp_path, n_cases, seed):
    for number, case in enumerate(lightgbm_edits(data, n_cases, seed)):
        (tmp_path / f"{number}.zip").write_bytes(case)
    done = run_python(_LIGHTGBM_RUNNER, tmp_path, 60, timeout=60 + 2 * n_cases)
    results = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    # a signal (negative return code) or an exception names the case that caused it
    assert done.returncode == 0, (
        f"case {len(results)} ended the process with {done.returncode}: {done.stderr[-2000:]}"
    )
    assert len(results) == n_cases
    assert "BROKEN" not in results.values(), results
    COUNTS.update(("lightgbm_line", outcome) for outcome in results.values())
    return Counter(results.values())


def test_edited_num_leaves_never_reaches_lightgbm(bundles, tmp_path):
    members = unpack(bundles["reranker"])
    name = next(n for n in members if n.startswith("lightgbm/"))
    for edit in ("num_leaves=x", "left_child=", "num_leaves=2000000", "split_feature=99"):
        key = edit.split("=")[0]
        text = members[name].decode()
        line = next(line for line in text.split("\n") if line.startswith(key + "="))
        case = pack({**members, name: text.replace(line, edit, 1).encode()})
        (tmp_path / f"{len(list(tmp_path.iterdir()))}.zip").write_bytes(case)
    done = run_python(_LIGHTGBM_RUNNER, tmp_path, 60, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0", "refused", "1", "refused", "2", "refused", "3", "refused"]


def test_lightgbm_text_fuzz_fast(bundles, tmp_path):
    counts = _run_lightgbm_fuzz(bundles["reranker"], tmp_path, n_cases=80, seed=0)
    assert counts["refused"] > 0


@pytest.mark.fuzz
def test_lightgbm_text_fuzz_long(bundles, tmp_path, request):
    _long_profile_only(request)
    _run_lightgbm_fuzz(bundles["reranker"], tmp_path, n_cases=1000, seed=1)


def test_canonical_model_text_predicts_identically():
    import lightgbm

    from skfewrec.persistence._lightgbm import canonical_model_text

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 5))
    X[:, 4] = rng.integers(0, 12, 600)
    y = (X[:, 0] > 0).astype(int) + (X[:, 4] % 3 == 0)
    for params in (
        {"num_leaves": 4},
        {"num_leaves": 15, "min_child_samples": 5},
        {"min_child_samples": 1000},
    ):
        ranker = lightgbm.LGBMRanker(n_estimators=5, verbose=-1, **params)
        ranker.fit(X, y, group=[60] * 10, categorical_feature=[4])
        text = ranker.booster_.model_to_string()
        booster = lightgbm.Booster(model_str=canonical_model_text(text))
        np.testing.assert_array_equal(booster.predict(X), ranker.booster_.predict(X))
        assert "parameters:" not in canonical_model_text(text)


# ----------------------------------------------------------------- hypothesis
def _long_profile_only(request):
    if "fuzz" not in (request.config.option.markexpr or ""):
        pytest.skip("long fuzz profile: run with `pytest -m fuzz`")


FAST = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
LONG = settings(FAST, max_examples=800, derandomize=False)

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.sampled_from([0, -1, 1, 2, 10**6, 2**31, -(2**31), 10**18]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 1e-308, 0.0, 1e12, -0.5]),
    st.text(max_size=8),
    st.sampled_from(
        [
            {"__float__": "nan"},
            {"__float__": "inf"},
            {"__float__": "-inf"},
            [],
            {},
            [1, 2],
            {"__tuple__": [0, 0]},
            {"__array__": "a0"},
            {"__dtype__": "<f8"},
            {"__dtype__": "|O"},
            {"__builtin_type__": "complex"},
            {"__sparse__": "csr"},
            {"__estimator__": {"ref": 0}},
            {"__text__": "meta.json"},
        ]
    ),
)


def _leaves(value, path=()):
    """Every (path, value) of scalars and tags in a JSON tree."""
    if isinstance(value, dict):
        yield path, value
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        yield path, value
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))
    else:
        yield path, value


def _set(tree, path, value):
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


def _check(attack, data, seed=0):
    COUNTS[(attack, outcome(data, seed))] += 1


def _truncations(bundles, data):
    name = data.draw(st.sampled_from(KINDS))
    raw = bundles[name]
    cut = data.draw(st.integers(0, len(raw) - 1))
    _check("truncation", raw[:cut])


def _byte_flips(bundles, data):
    name = data.draw(st.sampled_from(KINDS))
    raw = bytearray(bundles[name])
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    _check("byte_flip", bytes(raw))


def _meta_values(bundles, data):
    name = data.draw(st.sampled_from(KINDS))
    meta = json.loads(unpack(bundles[name])[META])
    paths = [path for path, _ in _leaves(meta["estimator"], ("estimator",)) if path]
    path = data.draw(st.sampled_from(paths))
    _set(meta, path, data.draw(_VALUES))
    members = unpack(bundles[name])
    members[META] = json.dumps(meta).encode()
    _check("meta_value", pack(members), seed=data.draw(st.integers(0, 9)))


def _mutated(array, data):
    """A hostile variant of a numpy array: special values, other shape, other dtype."""
    how = data.draw(st.sampled_from(["values", "shape", "dtype"]))
    flat = array.ravel().copy()
    if how == "values" and flat.size and array.dtype.kind in "biuf":
        specials = (
            [np.nan, np.inf, -np.inf, 3e38, -3e38, 0.0, -1.0]
            if array.dtype.kind == "f"
            else [-1, 10**6, -(10**6), 2**31 - 1, 0, array.max() + 1]
        )
        for _ in range(data.draw(st.integers(1, 3))):
            i = data.draw(st.integers(0, flat.size - 1))
            value = data.draw(st.sampled_from(specials))
            if array.dtype.kind == "b":
                value = bool(value)
            with np.errstate(all="ignore"):
                flat[i] = np.asarray(value).astype(array.dtype)
        return flat.reshape(array.shape)
    if how == "shape":
        n = data.draw(st.integers(0, flat.size + 3))
        return np.resize(flat, n) if flat.size else np.zeros(n, dtype=array.dtype)
    dtype = data.draw(st.sampled_from(["<f4", "<f8", "<i4", "<i8", "|b1", "<U3", "<u2"]))
    with np.errstate(all="ignore"):
        return array.astype(dtype) if array.dtype.kind != "U" or dtype == "<U3" else array


def _array_values(bundles, data):
    name = data.draw(st.sampled_from(KINDS))
    members = unpack(bundles[name])
    with np.load(io.BytesIO(members[ARRAYS]), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    key = data.draw(st.sampled_from(sorted(arrays)))
    arrays[key] = _mutated(arrays[key], data)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    members[ARRAYS] = buf.getvalue()
    _check("array_value", pack(members), seed=data.draw(st.integers(0, 9)))


ATTACKS = {
    "truncation": _truncations,
    "byte_flip": _byte_flips,
    "meta_value": _meta_values,
    "array_value": _array_values,
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_fuzz_fast(bundles, attack, no_hang):
    @FAST
    @given(data=st.data())
    def run(data):
        ATTACKS[attack](bundles, data)

    run()


@pytest.mark.fuzz
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_fuzz_long(bundles, attack, no_hang, request):
    _long_profile_only(request)

    @LONG
    @given(data=st.data())
    def run(data):
        ATTACKS[attack](bundles, data)

    run()
