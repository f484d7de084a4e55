"""The ``skfewrec`` command line: fit, recommend, evaluate, demo, serve.

Exit codes: 0 success; 2 usage error (bad options, a missing input file, a column
name not in the file, a model too large for this machine's memory); 1 failure
while running (bad values in the data, a corrupt bundle, unknown ids under the
"error" policy); 3 ``serve`` could not listen on its address (a port in use, a
host that is not an interface of this machine). Errors print one line to stderr,
``skfewrec <command>: error: <what was wrong and how to fix it>``, without a
traceback (``--traceback`` shows it).
"""

import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

_MODELS = ("closed-form", "gradient", "rerank")
_EVAL_MODELS = (
    "most-popular",
    "item-knn",
    "ease",
    "implicit",
    "closed-form",
    "closed-form-mean",
    "closed-form-gaussian",
    "gradient",
    "rerank",
)


class UsageError(Exception):
    """A mistake in the command line itself: exit code 2."""


#: exit code of ``serve`` when its address cannot be listened on
EXIT_STARTUP = 3


def _show_warning(command):
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{command}: warning: {_one_line(message)}", file=sys.stderr)

    return show


def _log(args, message):
    if not args.quiet:
        print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ optional extras
#: optional module -> what ``pip install`` brings it
_EXTRAS = {
    "matplotlib": "'skfewrec[plot]'",
    "fastapi": "'skfewrec[serve]'",
    "uvicorn": "'skfewrec[serve]'",
    "pyarrow": "pyarrow",
    "pyspark": "'skfewrec[spark]'",
}


def _require(modules, purpose, alternative=""):
    """Refuse, before any work, a command whose optional ``modules`` are not installed.

    A module counts as missing when it cannot be found (``importlib.util.find_spec``)
    or was blocked (``sys.modules[name] = None``).
    """
    import importlib.util

    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    if missing:
        packages = " ".join(dict.fromkeys(_EXTRAS.get(name, name) for name in missing))
        raise UsageError(
            f"{purpose} needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: pip install "
            f"{packages}{alternative}"
        )


# ------------------------------------------------------------------ reading logs
#: --sep names: a tab is awkward to type in a shell
_SEPARATORS = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|",
               "space": " ", "whitespace": r"\s+"}  # fmt: skip
_INPUT_FORMATS = ("csv", "tsv", "parquet", "movielens")
#: the columns of a MovieLens folder's ratings, whatever its release
_MOVIELENS_COLUMNS = ("user", "item", "rating", "timestamp")


def _separator(text):
    """``--sep``: a name (tab, comma, ...), an escape (``\\t``) or the character itself."""
    if text is None:
        return None
    return _SEPARATORS.get(text.lower() if len(text) > 1 else text, text)


def _input_format(path, fmt):
    if fmt is not None:
        return fmt
    if path.is_dir():
        return "movielens"
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    # u.data (ml-100k) is a headerless tab-separated file
    if name.endswith((".tsv", ".tsv.gz", ".tab", ".data")):
        return "tsv"
    return "csv"


def _looks_like_data(names):
    """Whether a header line is made of numbers only (a headerless file's first row)."""
    for name in names:
        try:
            float(str(name))
        except ValueError:
            return False
    return bool(names)


def _read_log(path, columns, *, sep=None, fmt=None, header=True, names=None,
              header_only=False):  # fmt: skip
    """Read the named columns of an interaction log (or its column names).

    ``fmt`` is csv, tsv, parquet or movielens (a folder read by
    :func:`skfewrec.datasets.load_movielens`, columns user, item, rating,
    timestamp); None guesses it from the path. A headerless text file
    (``header=False``) names its columns ``0, 1, 2, ...`` unless ``names`` are given.
    """
    import pandas as pd

    path = Path(path)
    wanted = [c for c in dict.fromkeys(columns) if c is not None]
    fmt = _input_format(path, fmt)
    if fmt == "movielens":
        present = list(_MOVIELENS_COLUMNS)
    elif path.is_dir():
        raise UsageError(
            f"{str(path)!r} is a folder: pass a MovieLens folder with --format movielens "
            "(or no --format), or a log file"
        )
    sep = _separator(sep)
    if sep is None:
        sep = "\t" if fmt == "tsv" else ","
    if names is not None:
        header = False
    read_options = {"sep": sep, "header": 0 if header else None}
    if fmt == "parquet":
        _require(["pyarrow"], "reading Parquet")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            present = pq.read_schema(path).names
        elif fmt != "movielens":
            first = pd.read_csv(path, nrows=0 if header else 1, **read_options)
            if names is not None:
                if len(names) != first.shape[1]:
                    raise UsageError(
                        f"--names gives {len(names)} column names but {path.name} has "
                        f"{first.shape[1]} columns"
                    )
                present = list(names)
            else:
                present = [str(c) for c in first.columns]
    except (ValueError, OSError, ImportError) as exc:
        raise UsageError(
            f"cannot read {str(path)!r} as a {fmt.upper() if fmt != 'parquet' else 'Parquet'} "
            f"file: {_one_line(exc)}"
        ) from None
    if header_only:
        return present
    missing = [c for c in wanted if c not in present]
    if missing:
        hint = "Set --user-col, --item-col, --value-col and --time-col to the file's names."
        if header and fmt in ("csv", "tsv") and _looks_like_data(present):
            hint = (
                "Its first line looks like data, not column names: pass --no-header (the "
                "columns are then 0, 1, 2, ...: e.g. --user-col 0 --item-col 1 --value-col 2) "
                "or --names user,item,rating,timestamp."
            )
        elif len(present) == 1 and fmt in ("csv", "tsv"):
            hint += " The file has one column: is --sep right (tab: --sep tab)?"
        raise UsageError(
            f"column(s) {', '.join(map(repr, missing))} not found in {path.name}; its columns "
            f"are {', '.join(map(str, present[:12]))}{', ...' if len(present) > 12 else ''}. "
            + hint
        )
    if fmt == "movielens":
        from ..datasets import load_movielens

        frame = load_movielens(path).frame.rename(columns={"value": "rating"})
        return frame[wanted]
    if fmt == "parquet":
        return pd.read_parquet(path, columns=wanted)
    try:
        if header:
            return pd.read_csv(path, usecols=wanted, **read_options)
        frame = pd.read_csv(path, names=present, usecols=wanted, **read_options)
        return frame
    except (ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"cannot parse {path.name}: {_one_line(exc)}") from None


def _read_args_log(args, path, columns, *, header_only=False):
    """:func:`_read_log` with the command's --sep, --input-format, --no-header, --names."""
    return _read_log(
        path,
        columns,
        sep=args.sep,
        fmt=getattr(args, "input_format", None),
        header=not getattr(args, "no_header", False),
        names=getattr(args, "names", None),
        header_only=header_only,
    )


def _one_line(exc):
    return " ".join(str(exc).split())


def _filter_values(df, args):
    if args.value_col is None:
        return df
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(df[args.value_col]):
        raise ValueError(
            f"column {args.value_col!r} must hold numbers (counts, ratings), it has dtype "
            f"{df[args.value_col].dtype}; pick another --value-col or omit it to count events."
        )
    if getattr(args, "min_value", None) is not None:
        df = df[df[args.value_col] >= args.min_value]
        if df.empty:
            raise ValueError(f"no interaction has {args.value_col} >= {args.min_value}.")
    if getattr(args, "binarize", False):
        df = df.assign(**{args.value_col: 1.0})
    return df


def _match_id_type(series, ids):
    """Cast a column of raw ids to the type of the fitted ids (CSV files guess types)."""
    import numpy as np
    import pandas as pd

    if ids.dtype.kind in "iu" and not pd.api.types.is_integer_dtype(series):
        as_num = pd.to_numeric(series, errors="coerce")
        ok = as_num.notna() & (as_num == np.floor(as_num))
        return as_num.where(ok).astype("Int64").astype(object).where(ok, series)
    if ids.dtype.kind in "OU" and len(ids) and isinstance(ids[0], str):
        return series.astype(str)
    return series


# ------------------------------------------------------------------ models
def _factors(args):
    from .. import ALSFactors

    return ALSFactors(
        n_components=args.n_components,
        regularization=args.regularization,
        confidence_scale=args.confidence_scale,
        max_iter=args.max_iter,
        random_state=args.random_state,
        n_jobs=args.n_jobs,
        show_progress=not args.quiet,
    )


def _available_memory():
    """Bytes of memory available to this process now (None when unknown)."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _check_model_size(args, shape):
    """Refuse, before any work, a --n-components whose factor matrices cannot fit in memory.

    The factors take 4 bytes per user, item and component (twice, with implicit's
    working copy); the fold-ins keep a few float64 n_components x n_components
    matrices (Gram, prior covariance, eigenbasis).
    """
    n_users, n_items = shape
    f = args.n_components
    need = 8 * f * (n_users + n_items) + 4 * 8 * f * f
    available = _available_memory()
    if available is not None and need > available:
        raise UsageError(
            f"--n-components {f} needs about {need / 2**30:.1f} GiB for {n_users} users x "
            f"{n_items} items, more than the {available / 2**30:.1f} GiB available; use "
            f"fewer components (typical: 32 to 256; at most {min(n_users, n_items)} are "
            "useful for this data)"
        )


def _build_model(kind, factors, args):
    from .. import EASE, ClosedFormFoldIn, ImplicitFoldIn, ItemKNN, MostPopular

    prior = getattr(args, "prior", "gaussian")
    strength = args.prior_strength
    adapter = {
        "prior_strength": strength,
        "shrinkage": getattr(args, "shrinkage", "auto"),
        "n_jobs": args.n_jobs,
        "random_state": args.random_state,
    }
    if kind == "closed-form":
        return ClosedFormFoldIn(factors=factors, prior=prior, **adapter)
    if kind.startswith("closed-form-"):
        return ClosedFormFoldIn(factors=factors, prior=kind.split("-")[-1], **adapter)
    if kind == "gradient":
        from .. import GradientFoldIn

        return GradientFoldIn(
            factors=factors,
            prior=prior if prior != "none" else "gaussian",
            # its strength only weighs the closed-form start: no "auto" there
            **({} if strength == "auto" else {"prior_strength": strength}),
            random_state=args.random_state,
            n_jobs=args.n_jobs,
            show_progress=not args.quiet,
        )
    if kind == "rerank":
        from .. import LightGBMReranker

        candidates = ClosedFormFoldIn(factors=factors, prior=prior, **adapter)
        return LightGBMReranker(
            candidates=candidates, random_state=args.random_state, n_jobs=args.n_jobs
        )
    if kind == "most-popular":
        return MostPopular()
    if kind == "item-knn":
        return ItemKNN(n_jobs=args.n_jobs)
    if kind == "ease":
        return EASE(n_jobs=args.n_jobs)
    if kind == "implicit":
        return ImplicitFoldIn(factors=factors, n_jobs=args.n_jobs)
    raise UsageError(f"unknown model {kind!r}")  # pragma: no cover - argparse choices


# ------------------------------------------------------------------ commands
def _progress_logger(args):
    """Show the re-ranker's stage messages (logger ``skfewrec.rerank``) unless --quiet."""
    import logging

    logger = logging.getLogger("skfewrec.rerank")
    if args.quiet:
        return contextlib.nullcontext()

    class Show(logging.Handler):
        def emit(self, record):
            print(f"  {record.getMessage()}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def attached():
        handler, level = Show(), logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)

    return attached()


_WEIGHTINGS = ("none", "log", "bm25", "tfidf")


def _weighting(name):
    """The confidence weighting step of ``--weighting`` (None for "none")."""
    from ..preprocessing import BM25Weighting, LogConfidence, TFIDFWeighting

    return {"none": None, "log": LogConfidence, "bm25": BM25Weighting, "tfidf": TFIDFWeighting}[
        name
    ]


def cmd_fit(args):
    """Fit a model on an interaction log and save it, with its data contract, as a bundle.

    The bundle records how the log was read: the columns, the --min-value filter,
    --binarize, the --duplicates policy and the --weighting step, so ``recommend``,
    ``serve`` and Spark apply them to new users' raw logs with no flag repeated.
    """
    from ..persistence import save
    from ..pipeline import RecommenderPipeline
    from ..preprocessing import InteractionEncoder

    t0 = time.perf_counter()
    df = _read_args_log(
        args, args.log, [args.user_col, args.item_col, args.value_col, args.time_col]
    )
    _check_numeric(df, args.value_col)
    if args.min_value is not None and args.value_col is None:
        raise UsageError("--min-value needs the column of values it filters: pass --value-col")
    encoder = InteractionEncoder(
        user_col=args.user_col,
        item_col=args.item_col,
        # binarised values without a filter are event counts: new logs need no value column
        value_col=None if args.binarize and args.min_value is None else args.value_col,
        time_col=args.time_col,
        handle_unknown=args.handle_unknown,
        min_value=args.min_value,
        binarize=args.binarize,
        duplicates=args.duplicates,
    )
    X = encoder.fit_transform(df)
    if X.nnz == 0:
        raise ValueError(f"no interaction has {args.value_col} >= {args.min_value}.")
    _log(args, f"read {len(df)} interactions: {X.shape[0]} users x {X.shape[1]} items")
    _check_model_size(args, X.shape)
    model = _build_model(args.model, _factors(args), args)
    fit_kwargs = {}
    if args.model == "rerank" and args.time_col is not None:
        fit_kwargs["timestamps"] = encoder.encode_timestamps(df)[0]
    del df
    weighting = _weighting(args.weighting)
    if weighting is not None:
        model = RecommenderPipeline([("weighting", weighting()), ("model", model)])
        fit_kwargs = {f"model__{key}": value for key, value in fit_kwargs.items()}
    with _progress_logger(args):
        model.fit(X, **fit_kwargs)
    path = save(model, args.output, encoder=encoder)
    name = type(model).__name__
    if weighting is not None:
        name = f"{type(model[-1]).__name__} after {type(model[0]).__name__}"
    _log(args, f"fitted {name} in {time.perf_counter() - t0:.1f} s -> {path}")
    return 0


def _check_numeric(df, value_col):
    import pandas as pd

    if value_col is not None and not pd.api.types.is_numeric_dtype(df[value_col]):
        raise ValueError(
            f"column {value_col!r} must hold numbers (counts, ratings), it has dtype "
            f"{df[value_col].dtype}; pick another --value-col or omit it to count events."
        )


_OUTPUT_SUFFIXES = {
    "jsonl": (".jsonl", ".json", ".ndjson"),
    "parquet": (".parquet", ".pq"),
}


def _output_format(args):
    if args.format is not None:
        return args.format
    name = str(args.output).lower()
    for fmt, suffixes in _OUTPUT_SUFFIXES.items():
        if name.endswith(suffixes):
            return fmt
    return "csv"


def _catalogue_size(model, encoder):
    if encoder is not None and hasattr(encoder, "item_ids_"):
        return int(len(encoder.item_ids_))
    return int(model.n_features_in_)


def _check_cli_k(k, n_items):
    """``-k`` over the catalogue: Python's error (skfewrec's check_k), as a usage error."""
    from .._core.validation import check_k

    try:
        check_k(k, n_items)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _user_chunks(users, chunk_size):
    """Row positions of ``chunk_size`` users at a time, users in order of first appearance."""
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(users, sort=False, use_na_sentinel=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(0, len(uniques) + chunk_size, chunk_size))
    for start, lo, hi in zip(range(0, len(uniques), chunk_size), bounds[:-1], bounds[1:]):
        yield uniques[start : start + chunk_size], order[lo:hi]


def cmd_recommend(args):
    """Top-k for new users from their raw interactions, with the original ids, in chunks.

    The bundle's data contract (the value column, the min-value filter, binarize,
    the duplicate policy, a weighting step) is applied to the log as at fit time:
    no flag needs repeating. Users come out in the order they first appear.
    """
    import pandas as pd

    from ._answer import load_bundle

    fmt = _output_format(args)
    if fmt == "parquet":
        _require(["pyarrow"], "writing Parquet", " (or write CSV or JSON lines: -o NAME.csv)")
    model, encoder = load_bundle(args.bundle)
    encoder = _bundle_encoder(model, encoder, args.bundle)
    _check_cli_k(args.k, _catalogue_size(model, encoder))
    user_col = args.user_col or encoder.user_col
    item_col = args.item_col or encoder.item_col
    value_col = args.value_col if args.value_col is not None else encoder.value_col
    min_value = encoder.min_value if args.min_value is None else args.min_value
    if args.no_values:
        if min_value is not None:
            raise UsageError(
                f"the model keeps interactions with {encoder.value_col} >= {min_value} "
                "(fit --min-value): it needs the value column; drop --no-values"
            )
        value_col = None
    if args.value_col is None and value_col is not None:
        present = _read_args_log(args, args.log, [user_col, item_col], header_only=True)
        if value_col not in present:
            raise UsageError(
                f"the model was fitted with values from column {value_col!r}, which "
                f"{Path(args.log).name} lacks; pass --value-col NAME"
                + (", or --no-values to count each event as 1" if min_value is None else "")
            )
    if min_value is not None and value_col is None:
        raise UsageError("--min-value needs a value column (--value-col)")
    df = _read_args_log(args, args.log, [user_col, item_col, value_col])
    _check_numeric(df, value_col)
    df[item_col] = _match_id_type(df[item_col], encoder.item_ids_)
    encoder.set_params(
        user_col=user_col, item_col=item_col, value_col=value_col, min_value=min_value
    )
    if args.handle_unknown is not None:
        encoder.set_params(handle_unknown=args.handle_unknown)
    exclude = None
    if args.exclude:
        exclude = _match_id_type(pd.Series(args.exclude), encoder.item_ids_).tolist()
    n_users = df[user_col].nunique(dropna=False)
    writer = _Writer(args.output, fmt)
    n_rows = 0
    try:
        from tqdm import tqdm

        bar = tqdm(total=n_users, unit="user", disable=args.quiet, file=sys.stderr)
        for users, rows in _user_chunks(df[user_col].to_numpy(), args.chunk_size):
            top = recommend_log(
                model,
                None if encoder is _first_step(model) else encoder,
                df.iloc[rows],
                k=args.k,
                filter_seen=not args.no_filter_seen,
                exclude=exclude,
                user_col="user",
                item_col="item",
            )
            n_rows += writer.write(top, users)
            bar.update(len(users))
        bar.close()
    finally:
        writer.close()
    _log(args, f"recommended {args.k} items to {n_users} users ({n_rows} rows) -> {args.output}")
    return 0


def recommend_log(*args, **kwargs):
    """:func:`skfewrec.apps._answer.recommend_log` (imported when first used)."""
    from ._answer import recommend_log as answer

    return answer(*args, **kwargs)


def _first_step(model):
    steps = getattr(model, "steps", None)
    return steps[0][1] if steps else None


def _bundle_encoder(model, encoder, path):
    """The bundle's id maps: its encoder, or the first step of its pipeline."""
    from ..preprocessing import InteractionEncoder

    if encoder is None and isinstance(_first_step(model), InteractionEncoder):
        encoder = _first_step(model)
    if encoder is None:
        raise ValueError(
            f"the bundle {path} has no id maps; fit it with `skfewrec fit` or save it "
            "with skfewrec.save(model, path, encoder=encoder) to recommend from raw ids."
        )
    return encoder


class _Writer:
    """Recommendation rows to CSV (user,rank,item,score), JSON lines or Parquet, by chunks."""

    def __init__(self, output, fmt):
        self.fmt = fmt
        self._parquet = None
        if fmt == "parquet":
            if output == "-":
                raise UsageError("Parquet output needs a file: -o NAME.parquet")
            self.out = output
        else:
            self.out = sys.stdout if output == "-" else open(output, "w", newline="")  # noqa: SIM115
            if fmt == "csv":
                self.out.write("user,rank,item,score\n")

    def write(self, top, users):
        """Write one chunk; ``users`` lists its users in order (JSON lines: one line each)."""
        import pandas as pd

        top = top.rename(columns={top.columns[0]: "user"})
        if self.fmt == "csv":
            top[["user", "rank", "item", "score"]].to_csv(
                self.out, header=False, index=False, float_format="%.6g"
            )
            return len(top)
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(
                top[["user", "rank", "item", "score"]].astype({"rank": "int32"}),
                preserve_index=False,
            )
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.out, table.schema)
            self._parquet.write_table(table.cast(self._parquet.schema))
            return len(top)
        groups = {user: rows for user, rows in top.groupby("user", sort=False)}
        empty = pd.DataFrame({"item": [], "score": []})
        lines = []
        for user in users.tolist():
            rows = groups.get(user, empty)
            lines.append(
                json.dumps(
                    {
                        "user": user,
                        "items": rows["item"].tolist(),
                        "scores": [round(float(s), 6) for s in rows["score"]],
                    }
                )
            )
        self.out.write("\n".join(lines) + "\n")
        return len(lines)

    def close(self):
        if self._parquet is not None:
            self._parquet.close()
        elif self.fmt == "parquet":  # no user at all: an empty file with the columns
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(
                pa.table({"user": [], "rank": pa.array([], pa.int32()), "item": [],
                          "score": pa.array([], pa.float32())}),
                self.out,
            )  # fmt: skip
        elif self.out is not sys.stdout:
            self.out.close()


def _evaluation_data(args):
    from ..datasets import load_movielens, make_interactions
    from ..preprocessing import InteractionEncoder

    spec = args.data
    if spec.startswith("synthetic"):
        users, items = 2000, 500
        if ":" in spec:
            try:
                users, items = (int(v) for v in spec.split(":", 1)[1].lower().split("x"))
            except ValueError:
                raise UsageError(
                    f"--data {spec!r}: write synthetic:USERSxITEMS, e.g. synthetic:2000x500"
                ) from None
        return f"synthetic {users}x{items}", make_interactions(
            n_users=users, n_items=items, random_state=args.random_state
        ).X
    path = Path(spec)
    if path.is_dir() and args.input_format in (None, "movielens"):
        data = load_movielens(path, min_rating=args.min_value, binarize=True)
        return path.name, data.X
    if not path.is_file():
        raise UsageError(
            f"--data {spec!r} does not exist (a MovieLens folder, a log file, "
            "or synthetic[:USERSxITEMS])"
        )
    df = _filter_values(
        _read_args_log(args, path, [args.user_col, args.item_col, args.value_col]), args
    )
    enc = InteractionEncoder(
        user_col=args.user_col, item_col=args.item_col, value_col=args.value_col
    )
    return path.name, enc.fit_transform(df)


def cmd_evaluate(args):
    """The few-shot curve of several models on held-out users: table, CSV and PNG plot."""
    import pandas as pd
    from sklearn.frozen import FrozenEstimator

    from ..model_selection import fewshot_curve, train_test_split_users

    if args.plot:
        _require(["matplotlib"], "the plot", ", or pass --no-plot")
    name, X = _evaluation_data(args)
    _check_model_size(args, X.shape)
    warm, new = train_test_split_users(X, test_size=args.test_size, random_state=args.random_state)
    _log(
        args,
        f"{name}: {X.shape[0]} users x {X.shape[1]} items, {X.nnz} interactions; "
        f"{warm.shape[0]} warm users, {new.shape[0]} new users",
    )
    factors = None
    curves = {}
    for kind in args.models:
        t0 = time.perf_counter()
        if factors is None and kind not in ("most-popular", "item-knn", "ease"):
            factors = FrozenEstimator(_factors(args).fit(warm))
        model = _build_model(kind, factors, args).fit(warm)
        curve = fewshot_curve(
            model,
            new,
            n_shots=args.n_shots,
            k=args.k,
            min_query=args.min_query,
            metrics=("ndcg", "recall"),
            random_state=args.random_state,
        )
        curves[kind] = curve
        _log(args, f"  {kind}: {time.perf_counter() - t0:.1f} s")
    table = pd.concat(curves, names=["model"]).reset_index()
    wide = table.pivot(index="n_shots", columns="model", values="ndcg")[list(curves)]
    print(f"NDCG@{args.k} on new users of {name}, by number of shots:")
    print(wide.round(4).to_string())
    recall = table.pivot(index="n_shots", columns="model", values="recall")[list(curves)]
    print(f"\nRecall@{args.k}:")
    print(recall.round(4).to_string())
    if args.csv:
        table.to_csv(args.csv, index=False, float_format="%.4f")
        _log(args, f"curve table -> {args.csv}")
    if args.plot:
        _plot_curves(table, args, name)
        _log(args, f"plot -> {args.plot}")
    return 0


def _plot_curves(table, args, name):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "the plot needs matplotlib: pip install 'skfewrec[plot]', or pass --no-plot"
        ) from None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, metric in zip(axes, ("ndcg", "recall")):
        for model, rows in table.groupby("model", sort=False):
            ax.plot(rows["n_shots"], rows[metric], marker="o", label=model)
        ax.set_xlabel("shots (interactions of the new user)")
        ax.set_ylabel(f"{metric.upper() if metric == 'ndcg' else 'Recall'}@{args.k}")
        ax.set_xticks(sorted(table["n_shots"].unique()))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Few-shot curve on {name} (new users)")
    fig.savefig(args.plot, dpi=120)
    plt.close(fig)


def cmd_demo(args, extra):
    """Run the demo (``skfewrec.apps.demo.main``)."""
    from .demo import main as demo_main

    argv = list(extra)
    if args.quiet and "--quiet" not in argv:
        argv.append("--quiet")
    return demo_main(argv) or 0


def cmd_serve(args):
    """Serve a bundle over HTTP."""
    _require(["fastapi", "uvicorn"], "serving")
    from .serve import run

    def announce(url, description):
        _log(
            args,
            f"serving {description['class']} from {args.bundle} on {url} with "
            f"{args.workers} worker(s) (Ctrl-C stops)",
        )

    run(
        args.bundle,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=args.access_log,
        http=args.http,
        announce=announce,
        max_k=args.max_k,
        max_shots=args.max_shots,
        max_batch=args.max_batch,
        max_body_bytes=args.max_body_bytes,
    )
    return 0


# ------------------------------------------------------------------ parser
def _number(text, convert, expected):
    """``convert(text)``, or argparse's usage error saying what was ``expected``."""
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def _positive_int(text):
    value = _number(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _port(text):
    value = _number(text, int, "a port number")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"a TCP port is from 0 to 65535, got {value} (0 picks a free one)"
        )
    return value


def _nonneg_float(text):
    value = _number(text, float, "a number")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _auto_or_nonneg_float(text):
    return "auto" if text == "auto" else _nonneg_float(text)


def _defaults():
    """The library's own defaults: the command line uses the same, defined once."""
    from .. import ALSFactors, ClosedFormFoldIn

    # the adapter's own regularization/confidence_scale are overrides (None): the
    # factors' settings are the ones the command line sets
    return {**ClosedFormFoldIn().get_params(), **ALSFactors().get_params()}


def _existing(text):
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text!r} does not exist")
    return text


#: the model options: (flag, parameter, type, what it is); defaults come from the library
_MODEL_OPTIONS = (
    ("--n-components", "n_components", _positive_int, "latent factors"),
    ("--regularization", "regularization", _auto_or_nonneg_float, "ALS ridge lambda"),
    ("--confidence-scale", "confidence_scale", _auto_or_nonneg_float, "confidence = scale * value"),
    ("--max-iter", "max_iter", _positive_int, "ALS sweeps"),
    ("--prior-strength", "prior_strength", _auto_or_nonneg_float, "weight of the prior"),
    ("--shrinkage", "shrinkage", _auto_or_nonneg_float, "pull toward the shots' co-users"),
)


def _model_options(p):
    d = _defaults()
    g = p.add_argument_group("model")
    for flag, name, kind, what in _MODEL_OPTIONS:
        auto = ", a number or auto: chosen on the warm users" if d[name] == "auto" else ""
        g.add_argument(flag, type=kind, default=d[name], help=f"{what} ({d[name]}{auto})")
    g.add_argument(
        "--prior",
        choices=("none", "mean", "gaussian"),
        default=d["prior"],
        help=f"prior of the fold-in ({d['prior']})",
    )
    g.add_argument("--random-state", type=int, default=0, help="seed (0)")
    g.add_argument(
        "--n-jobs",
        type=int,
        default=None,
        help="threads for BLAS and implicit, at most the cores (default: 1 for BLAS)",
    )


def _names(text):
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected NAME,NAME,..., got {text!r}")
    return names


def _column_options(p, *, defaults, format_flag="--format"):
    g = p.add_argument_group("columns of the log")
    g.add_argument(
        "--user-col",
        default=defaults,
        help="user id column" + (" (user)" if defaults else " (default: as in the bundle)"),
    )
    g.add_argument(
        "--item-col",
        default=defaults and "item",
        help="item id column" + (" (item)" if defaults else " (default: as in the bundle)"),
    )
    g.add_argument(
        "--value-col", default=None, help="interaction value column (default: each event counts 1)"
    )
    g.add_argument(
        format_flag,
        dest="input_format",
        choices=_INPUT_FORMATS,
        default=None,
        help="format of the log (default: from the name: a folder is a MovieLens release "
        "read by skfewrec.datasets.load_movielens, with columns user, item, rating, "
        "timestamp; .parquet; .tsv/.data tab-separated; else CSV)",
    )
    g.add_argument(
        "--sep",
        default=None,
        help="field separator of a text log: a character, or tab, comma, semicolon, pipe, "
        "space, whitespace ('\\t' is a tab too; default: ',' or a tab for .tsv/.data)",
    )
    g.add_argument(
        "--no-header",
        action="store_true",
        help="the file has no header line: its columns are named 0, 1, 2, ... "
        "(e.g. --user-col 0 --item-col 1 --value-col 2)",
    )
    g.add_argument(
        "--names",
        type=_names,
        default=None,
        metavar="NAME,...",
        help="names of the columns of a headerless file, e.g. user,item,rating,timestamp",
    )


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line (and exit code 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    """The argparse parser of ``skfewrec`` (for docs and tests).

    Returns
    -------
    parser : argparse.ArgumentParser
        With one sub-parser per command.

    Examples
    --------
    >>> from skfewrec.apps.cli import build_parser
    >>> build_parser().parse_args(["recommend", "skfewrec", "skfewrec", "-k", "5"]).k
    5
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress or messages")
    common.add_argument(
        "--traceback", action="store_true", help="show the full traceback on errors"
    )
    from .. import __version__

    parser = _Parser(
        prog="skfewrec",
        description="Few-shot recommendation for new users: fit, recommend, evaluate, serve.",
        epilog=(
            "Exit codes: 0 ok, 1 failure while running, 2 usage error, 3 serve could not "
            "listen on its address."
        ),
    )
    parser.add_argument("--version", action="version", version=f"skfewrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "fit",
        parents=[common],
        help="fit a model on a log, save a bundle",
        description=cmd_fit.__doc__,
    )
    p.add_argument(
        "log",
        type=_existing,
        help="interaction log: CSV, TSV, Parquet, or a MovieLens folder (as evaluate reads)",
    )
    p.add_argument(
        "-o", "--output", required=True, help="bundle to write: NAME.zip (one file) or a directory"
    )
    _column_options(p, defaults="user")
    p.add_argument("--time-col", default=None, help="event time column (used by rerank)")
    p.add_argument(
        "--min-value",
        type=float,
        default=None,
        help="keep interactions with value >= this (e.g. 4 for 4+ star ratings)",
    )
    p.add_argument("--binarize", action="store_true", help="count every kept interaction as 1")
    p.add_argument(
        "--duplicates",
        choices=("sum", "max", "first", "last"),
        default="sum",
        help="how repeated (user, item) events combine: their sum, max, or the first/last "
        "(by --time-col, else file order) (sum)",
    )
    p.add_argument(
        "--weighting",
        choices=_WEIGHTINGS,
        default="none",
        help="confidence weighting before the model, saved with it: log (log1p), bm25 or "
        "tfidf (none)",
    )
    p.add_argument(
        "--handle-unknown",
        choices=("ignore", "error"),
        default="ignore",
        help="what recommend/serve do with item ids the model does not know (ignore)",
    )
    p.add_argument(
        "--model",
        choices=_MODELS,
        default="closed-form",
        help="closed-form (the exact fold-in), gradient (meta-learned gradient steps) or "
        "rerank (a LightGBM re-ranker over closed-form candidates) (closed-form)",
    )
    _model_options(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser(
        "recommend",
        parents=[common],
        help="top-k for new users from a bundle",
        description=cmd_recommend.__doc__,
    )
    p.add_argument("bundle", type=_existing, help="model bundle (from `skfewrec fit`)")
    p.add_argument("log", type=_existing, help="the new users' interactions: CSV/TSV/Parquet")
    p.add_argument(
        "-o",
        "--output",
        default="-",
        help="output file: .csv, .jsonl or .parquet (Parquet needs pyarrow; default: stdout)",
    )
    p.add_argument(
        "-k",
        type=_positive_int,
        default=10,
        help="items per user (10); more than the catalogue is an error, as in Python",
    )
    p.add_argument(
        "--format",
        choices=("csv", "jsonl", "parquet"),
        default=None,
        help="output format: csv (user,rank,item,score), jsonl or parquet; default from the "
        "output name (users in the order they first appear in the log)",
    )
    _column_options(p, defaults=None, format_flag="--input-format")
    p.add_argument(
        "--no-values", action="store_true", help="ignore the value column: every event counts 1"
    )
    p.add_argument(
        "--min-value",
        type=float,
        default=None,
        help="keep interactions with value >= this (as at fit time)",
    )
    p.add_argument(
        "--exclude", nargs="+", default=None, metavar="ITEM", help="item ids never to recommend"
    )
    p.add_argument(
        "--no-filter-seen",
        action="store_true",
        help="allow recommending items the user already has",
    )
    p.add_argument(
        "--handle-unknown",
        choices=("ignore", "error"),
        default=None,
        help="override the bundle's policy for unknown item ids",
    )
    p.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=4096,
        help="users scored at once; bounds memory (4096)",
    )
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser(
        "evaluate",
        parents=[common],
        help="few-shot curve on a dataset",
        description=cmd_evaluate.__doc__,
    )
    p.add_argument(
        "--data", required=True, help="a MovieLens folder, a log file, or synthetic[:USERSxITEMS]"
    )
    p.add_argument(
        "--models",
        nargs="+",
        choices=_EVAL_MODELS,
        default=["most-popular", "closed-form", "closed-form-gaussian"],
        metavar="MODEL",
        help="models to compare, any of "
        + ", ".join(_EVAL_MODELS)
        + " (most-popular closed-form closed-form-gaussian)",
    )
    p.add_argument(
        "--n-shots",
        nargs="+",
        type=_positive_int,
        default=[1, 3, 5, 10, 20],
        metavar="N",
        help="shot counts of the curve: interactions revealed per new user (1 3 5 10 20)",
    )
    p.add_argument("-k", type=_positive_int, default=20, help="cut-off (20)")
    p.add_argument("--min-query", type=_positive_int, default=5, help="held-out items (5)")
    p.add_argument("--test-size", type=float, default=0.2, help="fraction of new users (0.2)")
    p.add_argument(
        "--min-value", type=float, default=4.0, help="positives: ratings/values >= this (4)"
    )
    _column_options(p, defaults="user")
    p.add_argument("--plot", default="fewshot_curve.png", help="PNG plot (fewshot_curve.png)")
    p.add_argument(
        "--no-plot",
        dest="plot",
        action="store_const",
        const=None,
        help="write no plot (the plot needs matplotlib: pip install 'skfewrec[plot]')",
    )
    p.add_argument("--csv", default=None, help="also write the curve table as CSV")
    _model_options(p)
    p.set_defaults(func=cmd_evaluate, binarize=True)

    p = sub.add_parser("demo", parents=[common], help="the demo (`make demo`)", add_help=False)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "serve",
        parents=[common],
        help="HTTP scoring service for a bundle",
        description=cmd_serve.__doc__,
        epilog="Exit codes: 0 stopped (Ctrl-C), 1 failure while running (e.g. a corrupt "
        "bundle), 2 usage error, 3 the address cannot be listened on (a port in use, a host "
        "that is not an interface of this machine); nothing is announced before the "
        "service answers.",
    )
    p.add_argument("bundle", type=_existing, help="model bundle (from `skfewrec fit`)")
    p.add_argument("--host", default="127.0.0.1", help="interface (127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port, 0-65535 (8000)")
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="worker processes, each with a copy of the model (1)",
    )
    p.add_argument("--max-k", type=_positive_int, default=100, help="largest k (100)")
    p.add_argument(
        "--max-shots",
        type=_positive_int,
        default=1000,
        help="most items in one user's request (1000)",
    )
    p.add_argument(
        "--max-batch", type=_positive_int, default=256, help="most users in one batch request (256)"
    )
    p.add_argument(
        "--max-body-bytes", type=_positive_int, default=1 << 20, help="largest request body (1 MiB)"
    )
    p.add_argument(
        "--log-level",
        default="warning",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn's log level (warning)",
    )
    p.add_argument(
        "--access-log",
        action="store_true",
        help="log every request on stderr, whatever --log-level (costs throughput)",
    )
    p.add_argument(
        "--http",
        choices=("auto", "httptools", "h11"),
        default="auto",
        help="uvicorn's HTTP parser (auto: httptools when installed)",
    )
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv=None):
    """Run ``skfewrec`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after the program name.

    Returns
    -------
    code : int
        0 success, 1 failure while running, 2 usage error, 3 ``serve`` could not
        listen on its address.

    Examples
    --------
    >>> from skfewrec.apps.cli import main
    >>> main(["recommend", "no-such-bundle.zip", "new_users.csv"])
    2
    """
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as exc:  # argparse printed the usage and the error
        return exc.code if isinstance(exc.code, int) else 2
    command = f"skfewrec {args.command}"
    if extra and args.command != "demo":
        print(f"{command}: error: unrecognized arguments: {' '.join(extra)}", file=sys.stderr)
        return 2
    shown = warnings.showwarning
    try:
        warnings.showwarning = _show_warning(command)
        if args.command == "demo":
            return cmd_demo(args, extra)
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (`| head`): stop quietly, like other tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:
        if args.traceback:
            raise
        from ..persistence import BundleError
        from .serve import StartupError

        code = 2 if isinstance(exc, UsageError) else 1
        if isinstance(exc, StartupError):
            code = EXIT_STARTUP
        expected = (UsageError, BundleError, ValueError, TypeError, OSError, ImportError)
        detail = _one_line(exc) or type(exc).__name__
        if not isinstance(exc, expected):
            detail = f"internal error {type(exc).__name__}: {detail} (--traceback shows where)"
        print(f"{command}: error: {detail}", file=sys.stderr)
        return code
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
