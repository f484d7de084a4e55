"""The ``skfewrec`` command line: fit, recommend, evaluate, demo; exit codes and messages."""

import argparse
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import skfewrec
from skfewrec.apps.cli import main

FAST = ["--n-components", "4", "--max-iter", "3", "-q"]


@pytest.fixture(scope="module")
def logs(small_interactions, tmp_path_factory):
    """A training log and a new users' log with string user and int item ids."""
    folder = tmp_path_factory.mktemp("logs")
    rows, cols = small_interactions.nonzero()
    frame = pd.DataFrame(
        {
            "uid": [f"u{r}" for r in rows],
            "movie": cols * 10 + 1000,
            "stars": small_interactions.data,
            "ts": np.arange(rows.size),
        }
    )
    train, new = frame[rows < 250], frame[rows >= 250]
    train.to_csv(folder / "train.csv", index=False)
    train.to_parquet(folder / "train.parquet")
    new.to_csv(folder / "new.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def bundle(logs):
    path = logs / "model.zip"
    code = main(
        [
            "fit",
            str(logs / "train.csv"),
            "-o",
            str(path),
            "--user-col",
            "uid",
            "--item-col",
            "movie",
            "--value-col",
            "stars",
            *FAST,
        ]
    )
    assert code == 0
    return path


def _run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_writes_a_bundle_with_id_maps(bundle, logs):
    model, enc = skfewrec.load(bundle, return_encoder=True)
    assert type(model).__name__ == "ClosedFormFoldIn" and model.prior == "gaussian"
    assert model.factors_.n_components == 4
    assert enc.user_col == "uid" and enc.item_col == "movie" and enc.value_col == "stars"
    assert enc.handle_unknown == "ignore"
    np.testing.assert_array_equal(
        enc.item_ids_, np.sort(pd.read_csv(logs / "train.csv").movie.unique())
    )


def test_fit_reads_parquet_and_binarizes(logs, tmp_path, capsys):
    path = tmp_path / "bundle"
    code, _, err = _run(
        [
            "fit",
            str(logs / "train.parquet"),
            "-o",
            str(path),
            "--user-col",
            "uid",
            "--item-col",
            "movie",
            "--value-col",
            "stars",
            "--min-value",
            "2",
            "--binarize",
            "--prior",
            "mean",
            *FAST[:-1],
        ],
        capsys,
    )
    assert code == 0 and f"-> {path}" in err
    model, encoder = skfewrec.load(path, return_encoder=True)
    assert model.prior == "mean"
    # the data contract travels with the model (issue 11)
    assert (encoder.value_col, encoder.min_value, encoder.binarize) == ("stars", 2.0, True)


def test_recommend_csv_with_original_ids(bundle, logs, tmp_path, capsys):
    out = tmp_path / "top.csv"
    code, _, err = _run(
        ["recommend", str(bundle), str(logs / "new.csv"), "-k", "5", "-o", str(out), "-q"], capsys
    )
    assert code == 0 and err == ""
    top = pd.read_csv(out)
    assert list(top.columns) == ["user", "rank", "item", "score"]
    new = pd.read_csv(logs / "new.csv")
    assert set(top.user) == set(new.uid) and (top.groupby("user").size() == 5).all()
    assert top.groupby("user")["score"].apply(lambda s: s.is_monotonic_decreasing).all()
    seen = set(zip(new.uid, new.movie))
    assert not any((u, i) in seen for u, i in zip(top.user, top.item))
    # the same as the model, in-process
    model, encoder = skfewrec.load(bundle, return_encoder=True)
    X, users = encoder.encode(new)
    ids, _ = model.recommend(X, k=5)
    first = top[top.user == users[0]].sort_values("rank").item.tolist()
    assert first == encoder.item_ids_[ids[0]].tolist()


def test_recommend_jsonl_chunks_and_exclude(bundle, logs, tmp_path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    args = ["recommend", str(bundle), str(logs / "new.csv"), "-k", "4", "-q"]
    assert main([*args, "-o", str(a)]) == 0
    assert main([*args, "-o", str(b), "--chunk-size", "7"]) == 0
    lines = [json.loads(line) for line in a.read_text().splitlines()]
    assert a.read_text() == b.read_text() and len(lines) == 50
    assert set(lines[0]) == {"user", "items", "scores"} and len(lines[0]["items"]) == 4
    banned = [str(i) for i in lines[0]["items"][:2]]
    assert main([*args, "-o", str(b), "--exclude", *banned]) == 0
    again = [json.loads(line) for line in b.read_text().splitlines()]
    assert not {int(i) for i in banned} & {i for line in again for i in line["items"]}
    code, out, _ = _run([*args, "--format", "jsonl"], capsys)
    assert code == 0 and out.splitlines()[0] == a.read_text().splitlines()[0]


def test_recommend_drops_unknown_items_with_a_warning(bundle, tmp_path, capsys):
    log = pd.DataFrame({"uid": ["x", "x"], "movie": [1000, 999999], "stars": [1, 1]})
    log.to_csv(tmp_path / "new.csv", index=False)
    code, out, err = _run(["recommend", str(bundle), str(tmp_path / "new.csv"), "-q"], capsys)
    assert code == 0 and len(out.splitlines()) == 11
    assert err.startswith("skfewrec recommend: warning: Dropped 1 interaction(s)")
    code, _, err = _run(
        ["recommend", str(bundle), str(tmp_path / "new.csv"), "--handle-unknown", "error"], capsys
    )
    assert code == 1 and "999999" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["fit", "nowhere.csv", "-o", "m.zip"], 2, "'nowhere.csv' does not exist"),
        (["fit", "{train}", "-o", "m.zip"], 2, "column(s) 'user', 'item' not found in train.csv"),
        (
            [
                "fit",
                "{train}",
                "-o",
                "m.zip",
                "--user-col",
                "uid",
                "--item-col",
                "movie",
                "--n-components",
                "0",
            ],
            2,
            "expected an integer >= 1",
        ),
        (
            [
                "fit",
                "{train}",
                "-o",
                "m.zip",
                "--user-col",
                "uid",
                "--item-col",
                "movie",
                "--value-col",
                "uid",
            ],
            1,
            "must hold numbers",
        ),
        (["recommend", "{bad}", "{new}"], 1, "not a valid zip file"),
        (["recommend", "{bundle}", "{new}", "--user-col", "nope"], 2, "'nope' not found"),
        (["recommend", "{bundle}", "{nostars}"], 2, "lacks; pass --value-col NAME, or --no-values"),
        (["recommend", "{bundle}", "{new}", "--bogus"], 2, "unrecognized arguments: --bogus"),
        (["evaluate", "--data", "synthetic:abc"], 2, "write synthetic:USERSxITEMS"),
        (["evaluate", "--data", "nowhere"], 2, "'nowhere' does not exist"),
        (["frobnicate"], 2, "invalid choice"),
    ],
)
def test_user_mistakes_give_one_line_and_an_exit_code(
    args, code, message, bundle, logs, tmp_path, capsys
):
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 truncated")
    pd.read_csv(logs / "new.csv")[["uid", "movie"]].to_csv(tmp_path / "nostars.csv", index=False)
    paths = {
        "train": logs / "train.csv",
        "new": logs / "new.csv",
        "bundle": bundle,
        "bad": tmp_path / "bad.zip",
        "nostars": tmp_path / "nostars.csv",
    }
    args = [a.format(**paths) for a in args]
    got, out, err = _run(args, capsys)
    assert got == code, err
    assert message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("skfewrec"), err


def test_traceback_flag_shows_the_exception(bundle, tmp_path):
    (tmp_path / "bad.zip").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a valid zip file"):
        main(["recommend", str(tmp_path / "bad.zip"), str(bundle), "--traceback"])


def test_evaluate_prints_the_curve_and_plots_it(tmp_path, capsys):
    plot, table = tmp_path / "curve.png", tmp_path / "curve.csv"
    code, out, _ = _run(
        [
            "evaluate",
            "--data",
            "synthetic:400x300",
            "--n-shots",
            "1",
            "3",
            "--models",
            "most-popular",
            "closed-form",
            "--plot",
            str(plot),
            "--csv",
            str(table),
            "-k",
            "10",
            "--min-query",
            "2",
            *FAST,
        ],
        capsys,
    )
    assert code == 0
    assert "NDCG@10 on new users of synthetic 400x300" in out and "closed-form" in out
    curve = pd.read_csv(table)
    assert set(curve.model) == {"most-popular", "closed-form"}
    assert sorted(curve.n_shots.unique()) == [1, 3] and curve.ndcg.between(0, 1).all()
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_passes_its_arguments(monkeypatch):
    import skfewrec.apps.demo

    calls = []
    monkeypatch.setattr(skfewrec.apps.demo, "main", lambda argv=None: calls.append(argv) or 0)
    assert main(["demo", "--data", "somewhere", "-q"]) == 0
    assert calls == [["--data", "somewhere", "--quiet"]]


def test_module_and_entry_point_run():
    done = subprocess.run(
        [sys.executable, "-m", "skfewrec", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.startswith("skfewrec ")
    done = subprocess.run(
        [sys.executable, "-m", "skfewrec", "recommend"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "the following arguments are required" in done.stderr


@pytest.mark.parametrize(
    "kind, cls", [("gradient", "GradientFoldIn"), ("rerank", "LightGBMReranker")]
)
def test_fit_other_model_kinds(kind, cls, logs, tmp_path, capsys):
    path = tmp_path / f"{kind}.zip"
    code, _, err = _run(
        [
            "fit",
            str(logs / "train.csv"),
            "-o",
            str(path),
            "--user-col",
            "uid",
            "--item-col",
            "movie",
            "--time-col",
            "ts",
            "--model",
            kind,
            *FAST,
        ],
        capsys,
    )
    assert code == 0, err
    model = skfewrec.load(path)
    assert type(model).__name__ == cls
    code, out, err = _run(["recommend", str(path), str(logs / "new.csv"), "-k", "3", "-q"], capsys)
    assert code == 0 and len(out.splitlines()) == 1 + 50 * 3, err


def test_evaluate_reads_a_log_file(logs, capsys):
    code, out, err = _run(
        [
            "evaluate",
            "--data",
            str(logs / "train.csv"),
            "--user-col",
            "uid",
            "--item-col",
            "movie",
            "--value-col",
            "stars",
            "--min-value",
            "1",
            "--n-shots",
            "1",
            "--min-query",
            "2",
            "--models",
            "closed-form",
            "--no-plot",
            *FAST,
        ],
        capsys,
    )
    assert code == 0, err
    assert "NDCG@20 on new users of train.csv" in out


# ------------------------------------------------------------------ hostile input (issue 12)
COLS = ["--user-col", "uid", "--item-col", "movie"]


def test_fit_names_a_huge_value_instead_of_calling_it_infinite(logs, tmp_path, capsys):
    frame = pd.read_csv(logs / "train.csv")
    frame.loc[3, "stars"] = 1e300  # finite in the CSV; inf only after a float32 cast
    frame.to_csv(tmp_path / "huge.csv", index=False)
    args = ["fit", str(tmp_path / "huge.csv"), "-o", str(tmp_path / "m.zip"), *COLS]
    code, _, err = _run([*args, "--value-col", "stars", *FAST], capsys)
    assert code == 1, err
    assert "Column 'stars' has 1 value(s) above 1e+06" in err and "1e+300" in err
    assert "NaN" not in err and "infinite" not in err
    assert len(err.splitlines()) == 1


def test_fit_refuses_an_absurd_n_components_before_any_work(logs, tmp_path, capsys):
    args = ["fit", str(logs / "train.csv"), "-o", str(tmp_path / "m.zip"), *COLS]
    code, _, err = _run([*args, "-q", "--n-components", "100000"], capsys)
    assert code == 2, err
    assert "--n-components 100000 needs about" in err and "GiB" in err
    assert "internal error" not in err and "MemoryError" not in err
    assert not (tmp_path / "m.zip").exists()


def test_fit_with_a_huge_n_jobs_runs(logs, tmp_path):
    # implicit segfaulted on 100000 threads: a subprocess, so a crash is a return code
    done = subprocess.run(
        [sys.executable, "-m", "skfewrec", "fit", str(logs / "train.csv"), "-o",
         str(tmp_path / "m.zip"), *COLS, *FAST, "--n-jobs", "100000"],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "m.zip").exists()


def test_recommend_refuses_a_model_that_lost_its_items(bundle, logs, tmp_path, capsys, monkeypatch):
    """A corrupt model that answers -1 (or NaN) is an error, never written as an answer."""
    from skfewrec.apps import _answer

    frame = pd.read_csv(logs / "train.csv")
    enc = skfewrec.preprocessing.InteractionEncoder(user_col="uid", item_col="movie").fit(frame)
    broken = skfewrec.MostPopular().fit(enc.transform(frame))
    broken.item_popularity_[:] = np.nan  # (bundle loading refuses such arrays: patch it in)
    monkeypatch.setattr(_answer, "load_bundle", lambda path: (broken, enc))
    out = tmp_path / "out.csv"
    code, _, err = _run(["recommend", str(bundle), str(logs / "new.csv"), "-o", str(out)], capsys)
    assert code == 1 and "MostPopular.recommend answered" in err and "empty slots" in err


# ------------------------------------------------------------------ issue 11: formats and extras
def _rows_of(path):
    top = pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path)
    return top[["user", "rank", "item"]].astype(str).values.tolist()


def test_recommend_writes_real_parquet(bundle, logs, tmp_path):
    csv, parquet = tmp_path / "top.csv", tmp_path / "top.parquet"
    args = ["recommend", str(bundle), str(logs / "new.csv"), "-k", "3", "-q"]
    assert main([*args, "-o", str(csv)]) == 0
    assert main([*args, "-o", str(parquet), "--chunk-size", "7"]) == 0
    assert parquet.read_bytes()[:4] == b"PAR1"  # not CSV text under a .parquet name
    top = pd.read_parquet(parquet)
    assert list(top.columns) == ["user", "rank", "item", "score"]
    assert _rows_of(parquet) == _rows_of(csv)
    np.testing.assert_allclose(top.score, pd.read_csv(csv).score, rtol=1e-5)


def test_parquet_without_pyarrow_is_refused_before_any_work(bundle, logs, tmp_path, capsys,
                                                           monkeypatch):  # fmt: skip
    from skfewrec.apps import _answer

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setattr(_answer, "load_bundle", lambda path: pytest.fail("loaded the model"))
    out = tmp_path / "top.parquet"
    code, _, err = _run(["recommend", str(bundle), str(logs / "new.csv"), "-o", str(out)], capsys)
    assert code == 2 and not out.exists()
    assert "writing Parquet needs pyarrow, which is not installed: pip install pyarrow" in err
    code, _, err = _run(["fit", str(logs / "train.parquet"), "-o", str(out), *COLS], capsys)
    assert code == 2 and "reading Parquet needs pyarrow" in err and not out.exists()


@pytest.mark.parametrize(
    "command, module, message",
    [
        (["evaluate", "--data", "synthetic"], "matplotlib", "pip install 'skfewrec[plot]', or"),
        (["serve", "{bundle}"], "fastapi", "serving needs fastapi, which is not installed"),
        (["serve", "{bundle}"], "uvicorn", "pip install 'skfewrec[serve]'"),
    ],
)
def test_missing_extras_are_named_before_any_work(command, module, message, bundle, capsys,
                                                  monkeypatch):  # fmt: skip
    from skfewrec.apps import _answer, cli

    monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setattr(cli, "_evaluation_data", lambda args: pytest.fail("evaluated"))
    monkeypatch.setattr(_answer, "load_bundle", lambda path: pytest.fail("loaded the model"))
    code, out, err = _run([c.format(bundle=bundle) for c in command], capsys)
    assert code == 2 and out == "" and message in err, err
    assert len(err.splitlines()) == 1


def test_fit_reads_headerless_files_with_a_real_separator(logs, tmp_path, capsys):
    frame = pd.read_csv(logs / "train.csv")
    frame["uid"] = frame.uid.str[1:].astype(int)
    frame[["uid", "movie", "stars", "ts"]].to_csv(
        tmp_path / "u.data", sep="\t", header=False, index=False
    )
    frame[["uid", "movie", "stars", "ts"]].to_csv(
        tmp_path / "log.txt", sep="\t", header=False, index=False
    )
    out = tmp_path / "m.zip"
    # a headerless file is recognised for what it is
    code, _, err = _run(["fit", str(tmp_path / "u.data"), "-o", str(out), *FAST], capsys)
    assert code == 2 and "looks like data, not column names: pass --no-header" in err
    runs = [
        [str(tmp_path / "u.data"), "--no-header", "--user-col", "0", "--item-col", "1"],
        [str(tmp_path / "log.txt"), "--sep", "\\t", "--no-header", "--user-col", "0",
         "--item-col", "1"],
        [str(tmp_path / "log.txt"), "--sep", "tab", "--names", "u,i,r,t", "--user-col", "u",
         "--item-col", "i", "--value-col", "r"],
        [str(tmp_path / "log.txt"), "--format", "tsv", "--no-header", "--user-col", "0",
         "--item-col", "1"],
    ]  # fmt: skip
    for run in runs:
        code, _, err = _run(["fit", *run, "-o", str(out), *FAST], capsys)
        assert code == 0, (run, err)
        model, enc = skfewrec.load(out, return_encoder=True)
        assert model.n_features_in_ == frame.movie.nunique()
        assert enc.item_ids_.tolist() == sorted(frame.movie.unique())
    # a literal one-character separator still works, and a wrong one is explained
    comma = ["--sep", ",", "--no-header", "--user-col", "0", "--item-col", "1", *FAST]
    code, _, err = _run(["fit", str(tmp_path / "log.txt"), "-o", str(out), *comma], capsys)
    assert code == 2 and "--sep" in err


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["ml-100k", "ml-latest-small"])
def test_fit_reads_the_movielens_folders_evaluate_reads(name, tmp_path, capsys):
    from conftest import data_path

    from skfewrec.datasets import load_movielens

    folder = data_path(name)
    out = tmp_path / "m.zip"
    code, _, err = _run(
        ["fit", str(folder), "-o", str(out), "--value-col", "rating", "--min-value", "4",
         "--binarize", *FAST],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    model, enc = skfewrec.load(out, return_encoder=True)
    data = load_movielens(folder, min_rating=4, binarize=True)
    np.testing.assert_array_equal(enc.item_ids_, data.item_ids)
    assert model.n_features_in_ == data.X.shape[1]


def test_every_option_says_what_it_does():
    from skfewrec.apps.cli import build_parser
    from skfewrec.apps.demo import main as demo_main

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, sub in commands.items()
        for action in sub._actions
        if not action.help and not isinstance(action, argparse._HelpAction)
    ]
    assert missing == []
    assert "--models" in commands["evaluate"].format_help()
    help_text = " ".join(commands["evaluate"].format_help().split())
    assert "shot counts of the curve" in help_text and "write no plot" in help_text
    assert "3 the address cannot be listened on" in " ".join(
        commands["serve"].format_help().split()
    )
    with pytest.raises(SystemExit):
        demo_main(["--help"])


def test_recommend_answers_users_in_input_order(bundle, logs, tmp_path, capsys):
    new = pd.read_csv(logs / "new.csv")
    order = list(dict.fromkeys(new.uid))[::-1]  # e.g. u299 first, then u298, ...
    shuffled = pd.concat([new[new.uid == u] for u in order])
    shuffled.to_csv(tmp_path / "new.csv", index=False)
    for fmt in ("csv", "jsonl"):
        out = tmp_path / f"top.{fmt}"
        args = ["recommend", str(bundle), str(tmp_path / "new.csv"), "-k", "2", "-o", str(out)]
        assert main([*args, "-q", "--chunk-size", "7"]) == 0
        if fmt == "csv":
            users = list(dict.fromkeys(pd.read_csv(out).user))
        else:
            users = [json.loads(line)["user"] for line in out.read_text().splitlines()]
        assert users == order


def test_k_over_the_catalogue_is_the_same_error_as_in_python(bundle, logs, capsys):
    model, enc = skfewrec.load(bundle, return_encoder=True)
    X, _ = enc.encode(pd.read_csv(logs / "new.csv"))
    with pytest.raises(ValueError) as python:
        model.recommend(X, k=100000)
    code, out, err = _run(["recommend", str(bundle), str(logs / "new.csv"), "-k", "100000"],
                          capsys)  # fmt: skip
    assert code == 2 and out == ""
    assert err.strip() == f"skfewrec recommend: error: {python.value}"


def test_demo_quiet_prints_the_table_without_progress(monkeypatch, capsys):
    import skfewrec.apps.demo as demo

    curve = pd.DataFrame(
        {"model": ["m", "m"], "n_shots": [1, 3], "ndcg": [0.25, 0.5], "recall": [0.1, 0.2]}
    )
    calls = []
    monkeypatch.setattr(demo, "run", lambda data, quiet=False: calls.append(quiet) or curve)
    assert main(["demo", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert calls == [True] and "NDCG@20 on new users" in out and "0.25" in out


def test_fit_rerank_shows_labelled_progress(logs, tmp_path, capsys):
    code, _, err = _run(
        ["fit", str(logs / "train.csv"), "-o", str(tmp_path / "r.zip"), *COLS, "--model",
         "rerank", *FAST[:-1]],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    for k in range(1, 6):
        assert f"fold {k}/5: candidate adapter on" in err
    assert "LightGBM: training the ranker on" in err and "trees in" in err
    assert "candidate adapter: final fit on all 250 warm users" in err
    code, _, err = _run(
        ["fit", str(logs / "train.csv"), "-o", str(tmp_path / "r.zip"), *COLS, "--model",
         "rerank", *FAST],
        capsys,
    )  # fmt: skip
    assert code == 0 and err == ""


# ------------------------------------------------------------------ issue 11: the data contract
CONTRACT = [*COLS, "--value-col", "stars", "--min-value", "2", "--binarize"]


@pytest.fixture(scope="module")
def contract_bundle(logs, tmp_path_factory):
    path = tmp_path_factory.mktemp("contract") / "model.zip"
    assert main(["fit", str(logs / "train.csv"), "-o", str(path), *CONTRACT, *FAST]) == 0
    return path


def _top(args, tmp_path, name="top.csv"):
    out = tmp_path / name
    assert main([*args, "-o", str(out), "-q"]) == 0
    return pd.read_csv(out)


def test_recommend_applies_the_fitted_contract_with_no_flag_repeated(contract_bundle, logs,
                                                                      tmp_path):  # fmt: skip
    model, enc = skfewrec.load(contract_bundle, return_encoder=True)
    assert (enc.value_col, enc.min_value, enc.binarize) == ("stars", 2.0, True)
    new = pd.read_csv(logs / "new.csv")
    assert (new.stars < 2).any() and (new.stars >= 2).any()
    kept = new[new.stars >= 2]
    kept.to_csv(tmp_path / "kept.csv", index=False)
    args = ["recommend", str(contract_bundle)]
    # raw and pre-filtered logs: the same answers (the filter is the model's)
    raw = _top([*args, str(logs / "new.csv"), "-k", "5", "--no-filter-seen"], tmp_path)
    pre = _top([*args, str(tmp_path / "kept.csv"), "-k", "5", "--no-filter-seen"], tmp_path)
    pd.testing.assert_frame_equal(raw, pre)
    # the seen filter covers the raw log: a 1-star item is never recommended back
    top = _top([*args, str(logs / "new.csv"), "-k", "5"], tmp_path)
    assert not set(zip(top.user, top.item)) & set(zip(new.uid, new.movie))
    # and Python answers the same through the one door
    from skfewrec.apps._answer import recommend_log

    python = recommend_log(model, enc, new, k=5, user_col="user", item_col="item")
    assert top[["user", "item", "rank"]].values.tolist() == (
        python[["user", "item", "rank"]].values.tolist()
    )
    np.testing.assert_allclose(top.score, python.score, rtol=1e-5)


def test_duplicates_follow_the_bundle_policy(logs, tmp_path):
    new = pd.read_csv(logs / "new.csv")
    first = new[new.uid == new.uid.iloc[0]]
    tripled = pd.concat([first, first, first])
    first.to_csv(tmp_path / "once.csv", index=False)
    tripled.to_csv(tmp_path / "thrice.csv", index=False)
    for policy, same in [("max", True), ("sum", False)]:
        path = tmp_path / f"{policy}.zip"
        fit = ["fit", str(logs / "train.csv"), "-o", str(path), *COLS, "--value-col", "stars"]
        assert main([*fit, "--duplicates", policy, *FAST]) == 0
        args = ["recommend", str(path), "-k", "5"]
        once = _top([*args, str(tmp_path / "once.csv")], tmp_path)
        thrice = _top([*args, str(tmp_path / "thrice.csv")], tmp_path)
        assert once.equals(thrice) == same, policy


def test_python_pipelines_and_weighting_recommend_through_the_cli(logs, tmp_path):
    from skfewrec import ALSFactors, ClosedFormFoldIn
    from skfewrec.apps._answer import recommend_log
    from skfewrec.pipeline import make_pipeline
    from skfewrec.preprocessing import BM25Weighting, InteractionEncoder

    train, new = pd.read_csv(logs / "train.csv"), pd.read_csv(logs / "new.csv")
    factors = ALSFactors(n_components=4, max_iter=3, random_state=0)
    pipe = make_pipeline(
        InteractionEncoder(user_col="uid", item_col="movie", value_col="stars", min_value=2),
        BM25Weighting(),
        ClosedFormFoldIn(factors=factors),
    ).fit(train)
    path = skfewrec.save(pipe, tmp_path / "pipe.zip")
    cli = _top(["recommend", str(path), str(logs / "new.csv"), "-k", "4"], tmp_path)
    python = pipe.recommend(new, k=4)
    assert (
        cli[["user", "item", "rank"]].values.tolist() == python.iloc[:, [0, 1, 3]].values.tolist()
    )
    # the CLI's --weighting builds the same kind of pipeline, saved with the encoder
    out = tmp_path / "w.zip"
    assert main(["fit", str(logs / "train.csv"), "-o", str(out), *CONTRACT, "--weighting",
                 "bm25", *FAST]) == 0  # fmt: skip
    model, enc = skfewrec.load(out, return_encoder=True)
    assert [type(step).__name__ for _, step in model.steps] == ["BM25Weighting", "ClosedFormFoldIn"]
    cli = _top(["recommend", str(out), str(logs / "new.csv"), "-k", "4"], tmp_path)
    python = recommend_log(model, enc, new, k=4, user_col="user", item_col="item")
    assert cli[["user", "item", "rank"]].values.tolist() == (
        python[["user", "item", "rank"]].values.tolist()
    )


@pytest.mark.realdata
def test_issue_example_one_star_toy_story_five_star_star_wars(tmp_path):
    """Issue 11, problem 1: a 1-star rating is neither a like nor recommended back."""
    from conftest import data_path

    folder = data_path("ml-latest-small")
    path = tmp_path / "m.zip"
    fit = ["fit", str(folder), "-o", str(path), "--value-col", "rating", "--min-value", "4",
           "--binarize", "--n-components", "32", "--max-iter", "5", "-q"]  # fmt: skip
    assert main(fit) == 0
    new = pd.DataFrame({"user": [1, 1], "item": [1, 260], "rating": [1.0, 5.0]})
    new.to_csv(tmp_path / "rated.csv", index=False)
    only = pd.DataFrame({"user": [1], "item": [260], "rating": [5.0]})
    only.to_csv(tmp_path / "only.csv", index=False)
    args = ["recommend", str(path), "-k", "20"]
    rated = _top([*args, str(tmp_path / "rated.csv")], tmp_path)
    star_wars = _top([*args, str(tmp_path / "only.csv"), "--exclude", "1"], tmp_path)
    # the 1-star Toy Story only keeps itself out of the answer: the rest is Star Wars'
    pd.testing.assert_frame_equal(rated, star_wars)
    assert 1 not in set(rated.item) and 260 not in set(rated.item)
    # Star Wars' sequels come first, not Toy Story 2 (3114)
    assert {1196, 1210} & set(rated.item.head(5))


@pytest.mark.realdata
@pytest.mark.slow
def test_the_log_to_served_page_shows_what_the_commands_print(tmp_path, capsys):
    """docs/log_to_served.rst: its fit and recommend commands still print its answers."""
    from pathlib import Path

    from conftest import data_path

    page = (Path(__file__).resolve().parents[1] / "docs" / "log_to_served.rst").read_text()
    blocks = []
    for block in page.split(".. code-block::")[1:]:
        body = block.split("\n\n", 1)[-1].splitlines()
        end = next((i for i, line in enumerate(body) if line and not line[0].isspace()), None)
        blocks.append("\n".join(body[:end]))
    new_users = next(b for b in blocks if b.lstrip().startswith("user,item,rating"))
    shown = next(b for b in blocks if "$ skfewrec recommend" in b)
    (tmp_path / "new_users.csv").write_text(
        "\n".join(line.strip() for line in new_users.strip().splitlines()) + "\n"
    )
    fit = ["fit", str(data_path("ml-latest-small")), "-o", str(tmp_path / "model.zip"),
           "--value-col", "rating", "--min-value", "4", "--binarize", "-q"]  # fmt: skip
    assert main(fit) == 0
    capsys.readouterr()
    args = ["recommend", str(tmp_path / "model.zip"), str(tmp_path / "new_users.csv")]
    assert main([*args, "-k", "5", "-q"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    expected = [line.strip() for line in shown.strip().splitlines()[1:]]
    assert printed == expected
