"""Beyond one machine: import Spark MLlib ALS factors and score new users inside Spark.

Three functions:

- :func:`factors_from_spark` turns a fitted ``pyspark.ml.recommendation.ALSModel``
  into an :class:`~skfewrec.ALSFactors` in Spark's confidence convention, without
  retraining, plus the Spark item id of each column;
- :func:`interactions_from_spark` collects a (small) Spark DataFrame of
  interactions to the driver as a CSR matrix over those columns, e.g. a sample of
  warm users to fit an adapter's prior;
- :func:`recommend_spark` folds in and ranks new users on the executors: the
  fitted recommender travels once, as a pickle-free bundle in a broadcast, and
  every task calls its ``recommend`` on a batch of whole users.

PySpark is imported only when one of these is called, so ``import skfewrec.spark``
works without it.

The examples below run without starting Spark (a JVM takes tens of seconds): the
Arrow-to-CSR conversion and the scoring body of a Spark task are plain Python,
doctested on Arrow data; ``tests/test_spark.py`` runs every function on a local
Spark and compares the answers with the single-process ``recommend``.
"""

import contextlib
import hashlib
import warnings
from functools import partial

import numpy as np
import scipy.sparse as sp

from ._core.compat import check_is_fitted
from ._core.validation import check_k, check_values

__all__ = ["add_items_spark", "factors_from_spark", "interactions_from_spark", "recommend_spark"]

#: users per call of ``recommend`` inside a Spark task (bounds its memory)
_USERS_PER_CALL = 10_000

#: fitted models already loaded in this (worker) process, by bundle digest
_MODEL_CACHE = {}
_MODEL_CACHE_SIZE = 4


def _require_pyspark():
    """Import pyspark and pyarrow, or say which extra to install."""
    try:
        import pyarrow  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"skfewrec.spark needs pyspark and pyarrow ({exc.name} is missing). Install "
            "them with: pip install 'skfewrec[spark]'."
        ) from exc


# ---------------------------------------------------------------------------
# importing a Spark ALS model


def _spark_param(name, explicit, als, parent):
    """A training parameter of the ALS run: given, from ``als``, or from the model's parent."""
    if explicit is not None:
        return explicit
    for source in (als, parent):
        if source is None:
            continue
        getter = getattr(source, "get" + name[0].upper() + name[1:])
        return getter()
    return None


def _java_parent(model):
    """The JVM ALS estimator that fitted ``model`` in this session, or None.

    Spark's ALSModel does not keep regParam, alpha or implicitPrefs; its parent
    estimator does, while the model has not been saved and reloaded.
    """
    try:
        parent = model._java_obj.parent()
    except Exception:  # Spark Connect, a loaded model, or no JVM handle
        return None
    return parent


def factors_from_spark(
    model,
    als=None,
    *,
    regularization=None,
    confidence_scale=None,
    implicit_prefs=None,
    allow_explicit=False,
):
    """Import the item factors of a fitted Spark ALS model, without retraining.

    Spark's ``ALSModel`` keeps its ``rank`` and factors but not the settings it
    was trained with. They are taken, in this order, from the keyword arguments,
    from ``als`` (the ``pyspark.ml.recommendation.ALS`` that fitted the model),
    or from the model's parent estimator (available in the Spark session that
    trained the model, not after ``ALSModel.load``).

    The factors use Spark's convention (``convention_="spark"``): an interaction
    ``r`` has confidence ``1 + alpha * |r|`` and preference ``[r > 0]``, and a
    user's ridge is ``regParam * n_u`` with ``n_u`` their number of positive
    interactions. Folding in a Spark-trained user's own interactions then gives
    back the vector (and the recommendations) Spark computed for them.

    Parameters
    ----------
    model : pyspark.ml.recommendation.ALSModel
        A fitted model.
    als : pyspark.ml.recommendation.ALS, default=None
        The estimator that fitted ``model``; its ``regParam``, ``alpha``,
        ``implicitPrefs`` and ``nonnegative`` are used.
    regularization : float, default=None
        Spark's ``regParam``; overrides ``als``.
    confidence_scale : float, default=None
        Spark's ``alpha``; overrides ``als``.
    implicit_prefs : bool, default=None
        Spark's ``implicitPrefs``; overrides ``als``.
    allow_explicit : bool, default=False
        Import a model trained on explicit feedback (``implicitPrefs=False``).
        skfewrec's fold-in solves the implicit-feedback objective (every item
        counts, unobserved ones as preference 0), not Spark's explicit one
        (least squares over the rated items only), so folded-in users then
        differ from Spark's own: only the item factors carry over.

    Returns
    -------
    factors : ALSFactors
        A fitted instance (``convention_="spark"``, no ``user_factors_``). Wrap it
        in :class:`sklearn.frozen.FrozenEstimator` to pass it to an adapter.
    item_ids : ndarray of shape (n_items,), int64
        The Spark item id of each column (each row of ``factors.item_factors_``),
        sorted. New users' interactions must use these columns.

    Raises
    ------
    ValueError
        When a setting cannot be found, or the model was trained on explicit
        feedback and ``allow_explicit`` is False.

    Examples
    --------
    With a fitted ``ALS(implicitPrefs=True)`` and its ``model = als.fit(ratings)``,
    ``factors, item_ids = factors_from_spark(model, als)`` (run in
    ``tests/test_spark.py``). Anything else is refused before Spark is touched:

    >>> from skfewrec.spark import factors_from_spark
    >>> factors_from_spark(object())
    Traceback (most recent call last):
    ...
    TypeError: model must be a fitted pyspark.ml.recommendation.ALSModel, got object. ...
    """
    _require_pyspark()
    from .factors._als import ALSFactors

    if not (hasattr(model, "itemFactors") and hasattr(model, "rank")):
        raise TypeError(
            f"model must be a fitted pyspark.ml.recommendation.ALSModel, got "
            f"{type(model).__name__}. Fit one with ALS(...).fit(df)."
        )
    parent = None if als is not None else _java_parent(model)
    reg = _spark_param("regParam", regularization, als, parent)
    alpha = _spark_param("alpha", confidence_scale, als, parent)
    implicit = _spark_param("implicitPrefs", implicit_prefs, als, parent)
    missing = [
        name
        for name, value in (
            ("regularization", reg),
            ("confidence_scale", alpha),
            ("implicit_prefs", implicit),
        )
        if value is None
    ]
    if missing:
        raise ValueError(
            f"Cannot tell the {', '.join(missing)} the Spark model was trained with: an "
            "ALSModel does not store them and this one has no parent estimator (it was "
            "loaded from disk, or runs over Spark Connect). Pass the ALS estimator that "
            "fitted it, factors_from_spark(model, als), or the values themselves, e.g. "
            "factors_from_spark(model, regularization=0.1, confidence_scale=1.0, "
            "implicit_prefs=True)."
        )
    if not implicit and not allow_explicit:
        raise ValueError(
            "The Spark model was trained on explicit feedback (implicitPrefs=False). "
            "skfewrec folds users in with the implicit-feedback objective, so folded-in "
            "users would not match Spark's explicit solve. Train with implicitPrefs=True, "
            "or pass allow_explicit=True to import only the item factors."
        )
    nonnegative = None
    for source in (als, parent):
        if source is not None:
            nonnegative = source.getNonnegative()
            break
    if nonnegative:
        warnings.warn(
            "The Spark model was trained with nonnegative=True (non-negative least "
            "squares); skfewrec's fold-in is unconstrained, so folded-in vectors can have "
            "negative entries where Spark's would not.",
            UserWarning,
            stacklevel=2,
        )
    table = _to_arrow(model.itemFactors.orderBy("id"))
    if table.num_rows == 0:
        raise ValueError("model has no item factors; was it fitted on an empty DataFrame?")
    item_ids = table.column("id").to_numpy().astype(np.int64)
    features = table.column("features").combine_chunks()
    rank = int(model.rank)
    Y = features.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    if Y.size != rank * table.num_rows:
        raise ValueError(f"model has rank {rank} but item factors of another width.")
    Y = Y.reshape(table.num_rows, rank)
    factors = ALSFactors.from_arrays(
        Y,
        regularization=float(reg),
        confidence_scale=float(alpha),
        convention="spark",
    )
    return factors, item_ids


def _to_arrow(df):
    """Collect a (small) Spark DataFrame to the driver as a pyarrow Table."""
    import pyarrow as pa

    if hasattr(df, "toArrow"):
        return df.toArrow()
    return pa.Table.from_pandas(df.toPandas(), preserve_index=False)  # pragma: no cover


# ---------------------------------------------------------------------------
# checks shared by the DataFrame functions


def _field(df, name, role, param):
    """The schema field of column ``name``, or an error naming the parameter."""
    if name not in df.columns:
        raise ValueError(
            f"{param}={name!r}: no such column; the DataFrame has {list(df.columns)}. Set "
            f"{param} to the column holding the {role}."
        )
    return df.schema[name]


def _is_integral(dtype):
    from pyspark.sql import types as T

    return isinstance(dtype, T.ByteType | T.ShortType | T.IntegerType | T.LongType)


def _is_string(dtype):
    from pyspark.sql import types as T

    return isinstance(dtype, T.StringType | T.VarcharType | T.CharType)


def _check_item_ids(item_ids, n_items, item_type, item_col):
    """The item id of each column, checked against the model and the DataFrame's type."""
    if item_ids is None:
        if not _is_integral(item_type):
            raise TypeError(
                f"Column {item_col!r} has type {item_type.simpleString()}, but without "
                "item_ids the item column must hold column indices (integers in "
                f"[0, {n_items})). Pass item_ids (the item id of each column, e.g. the "
                "item_ids returned by factors_from_spark or InteractionEncoder.item_ids_)."
            )
        return None
    ids = np.asarray(item_ids)
    if ids.ndim != 1 or ids.size != n_items:
        raise ValueError(
            f"item_ids must be a 1-d array with one id per item of the model ({n_items}), "
            f"got shape {ids.shape}."
        )
    if ids.dtype.kind in "iu":
        kind, ok = "integer", _is_integral(item_type)
    elif ids.dtype.kind in "OUS":
        if not all(isinstance(v, str) for v in ids.tolist()):
            raise TypeError(
                "item_ids must hold integers or strings; this object array holds other "
                "types. Convert it with np.asarray(item_ids, dtype=str) or dtype=np.int64."
            )
        kind, ok = "string", _is_string(item_type)
        ids = ids.astype(object)
    else:
        raise TypeError(f"item_ids must hold integers or strings, got dtype {ids.dtype}.")
    if not ok:
        target = "long" if kind == "integer" else "string"
        raise TypeError(
            f"Column {item_col!r} has type {item_type.simpleString()} but item_ids holds "
            f"{kind} ids: the DataFrame's ids and the model's must be the same kind. Cast "
            f"the column, e.g. df.withColumn({item_col!r}, F.col({item_col!r}).cast("
            f"{target!r}))."
        )
    if np.unique(ids).size != ids.size:
        raise ValueError("item_ids holds repeated ids; each column needs its own item id.")
    return ids


def _check_frame(df, user_col, item_col, value_col):
    """Check the columns of an interaction DataFrame; return their schema fields."""
    from pyspark.sql import DataFrame
    from pyspark.sql import types as T

    if not isinstance(df, DataFrame):
        raise TypeError(
            f"df must be a pyspark.sql.DataFrame of interactions (user, item[, value]), got "
            f"{type(df).__name__}. Convert a pandas frame with spark.createDataFrame(pdf)."
        )
    user_field = _field(df, user_col, "user ids", "user_col")
    item_field = _field(df, item_col, "item ids", "item_col")
    for field, param in ((user_field, "user_col"), (item_field, "item_col")):
        if isinstance(field.dataType, T.ArrayType | T.MapType | T.StructType):
            raise TypeError(
                f"{param}={field.name!r} has type {field.dataType.simpleString()}; ids must "
                "be atomic (integers or strings), one interaction per row."
            )
    if value_col is not None:
        value_field = _field(df, value_col, "interaction values", "value_col")
        if not isinstance(value_field.dataType, T.NumericType | T.BooleanType):
            raise TypeError(
                f"value_col={value_col!r} has type {value_field.dataType.simpleString()}; "
                "interaction values must be numbers. Cast it, e.g. "
                f"F.col({value_col!r}).cast('double')."
            )
    return user_field, item_field


def _arrow_ids(item_ids, n_items):
    """The Arrow value set mapping raw item ids to columns (their position)."""
    import pyarrow as pa

    if item_ids is None:
        return pa.array(np.arange(n_items, dtype=np.int64))
    if item_ids.dtype == object:
        return pa.array(item_ids.tolist(), type=pa.string())
    return pa.array(item_ids.astype(np.int64))


def _ids_to_bytes(item_ids, n_items):
    """Arrow IPC bytes of the id value set (shipped with the model, not pickled)."""
    import pyarrow as pa

    table = pa.table({"id": _arrow_ids(item_ids, n_items)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _ids_from_bytes(data):
    import pyarrow as pa

    return pa.ipc.open_stream(pa.py_buffer(data)).read_all().column("id").combine_chunks()


def _show(values, n=5):
    values = list(values)
    return ", ".join(repr(v) for v in values[:n]) + (", ..." if len(values) > n else "")


def _long_to_csr(users, items, values, value_set, n_items, handle_unknown, names, *, sort=False):
    """CSR support matrix of the users of a long log (one Arrow array per column).

    Rows are the distinct users (in order of appearance, or sorted with ``sort``);
    repeated (user, item) pairs are summed. ``values`` None counts every row as 1.

    Returns
    -------
    X : csr_matrix of shape (n_users, n_items), float32
    user_ids : pyarrow.Array
        The user of each row.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from skfewrec.spark import _arrow_ids, _long_to_csr
    >>> ids = _arrow_ids(np.array(["a", "b", "c"], dtype=object), 3)
    >>> users, items = pa.array([7, 5, 7, 7]), pa.array(["c", "a", "c", "zz"])
    >>> X, user_ids = _long_to_csr(users, items, None, ids, 3, "ignore", ("u", "i", None))
    >>> X.toarray(), user_ids.to_pylist()
    (array([[0., 0., 2.],
           [1., 0., 0.]], dtype=float32), [7, 5])
    >>> _long_to_csr(users, items, None, ids, 3, "error", ("u", "i", None))
    Traceback (most recent call last):
    ...
    ValueError: Column 'i' holds 1 item id(s) unknown to the model: 'zz'. ...
    >>> _long_to_csr(users, items, pa.array([1.0, 1e300, 1, 1]), ids, 3, "ignore",
    ...              ("u", "i", "n"))
    Traceback (most recent call last):
    ...
    ValueError: Column 'n' has 1 value(s) above 1e+06, the largest interaction value ...
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    user_col, item_col, value_col = names
    for column, name, what in ((users, user_col, "user"), (items, item_col, "item")):
        if column.null_count:
            raise ValueError(
                f"Column {name!r} has {column.null_count} null {what} id(s); every "
                f"interaction needs a user and an item. Drop those rows first, e.g. "
                f"df.dropna(subset=[{name!r}])."
            )
    if values is None:
        values = np.ones(len(items), dtype=np.float32)
    else:
        if values.null_count:
            raise ValueError(
                f"Column {value_col!r} has {values.null_count} null value(s); fill or "
                f"drop them first, e.g. df.fillna({{{value_col!r}: 1.0}})."
            )
        # the one rule of interaction values, before float32 turns 1e300 into inf
        values = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
        values = check_values(values, f"Column {value_col!r}").astype(np.float32)
    encoded = pc.dictionary_encode(users)
    user_ids = encoded.dictionary
    rows = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    if sort:
        order = pc.array_sort_indices(user_ids).to_numpy(zero_copy_only=False)
        position = np.empty(order.size, dtype=np.int64)
        position[order] = np.arange(order.size)
        rows, user_ids = position[rows], user_ids.take(pa.array(order))
    if pa.types.is_integer(items.type):
        items = items.cast(pa.int64())
    elif pa.types.is_large_string(items.type):
        items = items.cast(pa.string())
    cols = pc.index_in(items, value_set=value_set)
    if cols.null_count:
        if handle_unknown == "error":
            unknown = pc.unique(items.filter(pc.is_null(cols))).to_pylist()
            raise ValueError(
                f"Column {item_col!r} holds {len(unknown)} item id(s) unknown to the model: "
                f"{_show(unknown)}. Map new users' items to the model's catalogue (item_ids), "
                "or pass handle_unknown='ignore' to drop those interactions."
            )
        known = pc.is_valid(cols).to_numpy(zero_copy_only=False)
        rows, values = rows[known], values[known]
        cols = cols.filter(pc.is_valid(cols))
    cols = cols.to_numpy(zero_copy_only=False).astype(np.int64)
    X = sp.coo_matrix((values, (rows, cols)), shape=(len(user_ids), n_items)).tocsr()
    X.sum_duplicates()
    return X, user_ids


def _columns(table, value_col):
    """(users, items, values or None) of a long Arrow table of (user, item[, value])."""
    arrays = [table.column(i).combine_chunks() for i in range(table.num_columns)]
    return arrays[0], arrays[1], (arrays[2] if value_col is not None else None)


def _limit_jobs(estimator, n_jobs):
    """Set every ``n_jobs`` of a loaded estimator (nested ones too) to the task's cores.

    A model fitted with ``n_jobs=-1`` on the driver would otherwise start one
    thread per core of the executor in every one of its concurrent tasks.
    """
    for key, value in sorted(estimator.get_params(deep=True).items()):
        if key.rsplit("__", 1)[-1] == "n_jobs" and value != n_jobs:
            # a FrozenEstimator refuses: its estimator keeps its own setting
            with contextlib.suppress(ValueError):
                estimator.set_params(**{key: n_jobs})


def _load_cached(token, payload, n_jobs):
    """The estimator and id value set of a bundle, loaded once per Python process."""
    if token not in _MODEL_CACHE:
        from .persistence import loads

        bundle, ids_bytes = payload.value if hasattr(payload, "value") else payload
        estimator, encoder = loads(bundle, return_encoder=True)
        _limit_jobs(estimator, n_jobs)
        if len(_MODEL_CACHE) >= _MODEL_CACHE_SIZE:
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        _MODEL_CACHE[token] = (estimator, encoder, _ids_from_bytes(ids_bytes))
    return _MODEL_CACHE[token]


def _score_partition(batches, *, token, payload, n_items, k, filter_seen, handle_unknown,
                     items, exclude, names, out_schema, contract=False):  # fmt: skip
    """mapInArrow body: the top-k rows of every user of one partition.

    The log was hash-partitioned by user, so the partition holds each of its
    users whole; it is read in full (about 40 bytes per interaction), then
    scored ``_USERS_PER_CALL`` users at a time through
    :func:`skfewrec.apps._answer.recommend_rows`, the CLI's and the service's path.

    Examples
    --------
    Outside a Spark task (one core), on the batches a task would receive:

    >>> import pyarrow as pa
    >>> from skfewrec import MostPopular
    >>> from skfewrec.persistence import dumps
    >>> from skfewrec.spark import _ids_to_bytes, _score_partition
    >>> rec = MostPopular().fit(np.array([[1, 1, 0], [0, 1, 0]]))
    >>> schema = pa.schema([("user", pa.int64()), ("item", pa.int64()),
    ...                     ("score", pa.float32()), ("rank", pa.int32())])
    >>> batch = pa.record_batch({"user": [7, 7, 8], "item": [1, 1, 0]})
    >>> (out,) = _score_partition(
    ...     [batch], token="doctest", payload=(dumps(rec), _ids_to_bytes(None, 3)),
    ...     n_items=3, k=2, filter_seen=True, handle_unknown="error", items=None,
    ...     exclude=None, names=("user", "item", None), out_schema=schema)
    >>> for column in out.schema.names:
    ...     print(column, out.column(column).to_pylist())
    user [7, 7, 8, 8]
    item [0, 2, 1, 2]
    score [1.0, 0.0, 2.0, 0.0]
    rank [1, 2, 1, 2]
    """
    import pyarrow as pa
    from pyspark import TaskContext
    from threadpoolctl import threadpool_limits

    from .apps._answer import recommend_rows

    batches = [batch for batch in batches if batch.num_rows]
    if not batches:  # an empty partition
        return
    context = TaskContext.get()
    cpus = context.cpus() if context is not None else 1
    estimator, encoder, value_set = _load_cached(token, payload, cpus)
    table = pa.Table.from_batches(batches)
    del batches
    if contract:
        yield from _score_log(table, estimator, encoder, value_set, cpus, k=k,
                              filter_seen=filter_seen, handle_unknown=handle_unknown,
                              items=items, exclude=exclude, names=names,
                              out_schema=out_schema)  # fmt: skip
        return
    X, users = _long_to_csr(*_columns(table, names[2]), value_set, n_items, handle_unknown, names)
    del table
    for start in range(0, X.shape[0], _USERS_PER_CALL):
        stop = min(start + _USERS_PER_CALL, X.shape[0])
        with threadpool_limits(cpus):
            ids, scores = recommend_rows(
                estimator, X[start:stop], k=k, filter_seen=filter_seen, items=items, exclude=exclude
            )
        valid = ids >= 0
        row, rank = np.nonzero(valid)
        yield pa.RecordBatch.from_arrays(
            [
                users.take(pa.array(row + start)),
                value_set.take(pa.array(ids[valid])).cast(out_schema.field(1).type),
                pa.array(scores[valid], type=pa.float32()),
                pa.array((rank + 1).astype(np.int32), type=pa.int32()),
            ],
            schema=out_schema,
        )


def _score_log(table, estimator, encoder, value_set, cpus, *, k, filter_seen, handle_unknown,
               items, exclude, names, out_schema):  # fmt: skip
    """The partition's users through :func:`skfewrec.apps._answer.recommend_log`: the
    model's data contract (filters, duplicates, binarize, weighting) as in Python."""
    import pandas as pd
    import pyarrow as pa
    from threadpoolctl import threadpool_limits

    from .apps._answer import recommend_log

    user_col, item_col, value_col = names
    from .preprocessing import InteractionEncoder

    steps = getattr(estimator, "steps", None)
    first = steps[0][1] if steps else None
    own = first if isinstance(first, InteractionEncoder) else encoder
    own.set_params(handle_unknown=handle_unknown)
    log = table.to_pandas()
    log.columns = [own.user_col, own.item_col, *([own.value_col] if value_col else [])]
    raw = value_set.to_numpy(zero_copy_only=False)
    allow = None if items is None else raw[items]
    deny = None if exclude is None else raw[exclude]
    codes, uniques = pd.factorize(log[own.user_col], sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(
        codes[order], np.arange(0, len(uniques) + _USERS_PER_CALL, _USERS_PER_CALL)
    )
    pass_encoder = None if own is first else own
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        with threadpool_limits(cpus):
            top = recommend_log(estimator, pass_encoder, log.iloc[order[lo:hi]], k=k,
                                filter_seen=filter_seen, items=allow, exclude=deny,
                                user_col=user_col, item_col=item_col)  # fmt: skip
        yield pa.RecordBatch.from_arrays(
            [
                pa.array(top[user_col].to_numpy()).cast(out_schema.field(0).type),
                pa.array(top[item_col].to_numpy()).cast(out_schema.field(1).type),
                pa.array(top["score"].to_numpy(), type=pa.float32()),
                pa.array(top["rank"].to_numpy().astype(np.int32), type=pa.int32()),
            ],
            schema=out_schema,
        )


def _long_frame(df, user_col, item_col, value_col):
    """The columns the scoring reads: user, item[, value as double]."""
    from pyspark.sql import functions as F

    columns = [F.col(user_col), F.col(item_col)]
    if value_col is not None:
        columns.append(F.col(value_col).cast("double"))
    return df.select(*columns)


def _raw_to_columns(raw, item_ids, n_items, name):
    """Column indices of raw item ids given on the driver (allow/deny lists)."""
    if raw is None:
        return None
    raw = np.asarray(raw)
    if raw.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array of item ids, got shape {raw.shape}.")
    if item_ids is None:
        from ._core.validation import check_item_indices

        return check_item_indices(raw, n_items, name=name)
    lookup = {v: i for i, v in enumerate(item_ids.tolist())}
    cols = [lookup.get(v.item() if isinstance(v, np.generic) else v, -1) for v in raw]
    unknown = [v for v, c in zip(raw.tolist(), cols) if c < 0]
    if unknown:
        raise ValueError(
            f"{name} holds {len(unknown)} item id(s) unknown to the model: {_show(unknown)}."
        )
    return np.asarray(cols, dtype=np.int64)


def recommend_spark(
    df,
    estimator,
    *,
    k=20,
    user_col="user",
    item_col="item",
    value_col=None,
    filter_seen=True,
    item_ids=None,
    items=None,
    exclude=None,
    handle_unknown="error",
    num_partitions=None,
    encoder=None,
):
    """Top-k items for each new user of a Spark DataFrame, computed on the executors.

    The interactions are hash-partitioned by user (one shuffle), so each
    partition holds its users whole; the task of a partition reads its rows as
    Arrow batches (``mapInArrow``), builds their CSR matrix and calls
    ``estimator.recommend`` on it, 10,000 users at a time, exactly as a single
    process would. A task holds its partition's rows in memory (about 40 bytes
    per interaction): choose ``num_partitions`` so partitions stay small. The
    estimator is shipped once, as a pickle-free bundle
    (:func:`skfewrec.persistence.dumps`) in a Spark broadcast, and loaded once
    per Python worker.

    Spark is lazy: the checks of the schema, ``item_ids`` and the settings run
    here; the checks of the data (null or unknown ids, bad values) run on the
    executors when the result is computed, and fail the Spark job with the same
    message (raised as a ``PythonException``).

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        New users' interactions, one row per event: ``user_col``, ``item_col``
        and optionally ``value_col``. Repeated (user, item) rows are summed.
    estimator : fitted skfewrec recommender
        Anything with ``recommend`` that :func:`skfewrec.save` can bundle: a
        closed-form or gradient adapter, a re-ranker.
    k : int, default=20
        Items per user.
    user_col, item_col : str, default="user", "item"
        Columns of user ids (any atomic type; copied to the output) and item ids.
    value_col : str, default=None
        Column of non-negative interaction values; None counts every row as 1.
    filter_seen : bool, default=True
        Never recommend a user's own items.
    item_ids : array-like of shape (n_items,), default=None
        The raw id of each item (column) of the estimator, integers or strings
        (``factors_from_spark``'s ``item_ids``, ``InteractionEncoder.item_ids_``).
        None: ``item_col`` already holds column indices.
    items, exclude : array-like of item ids, default=None
        Allow-list and deny-list (raw ids, like ``item_col``).
    handle_unknown : {"error", "ignore"}, default="error"
        Items not in the model's catalogue: "error" fails the job naming them;
        "ignore" drops those interactions (a user left with none gets the
        model's answer for a user without interactions).
    num_partitions : int, default=None
        Partitions of users (None: ``spark.sql.shuffle.partitions``, which
        adaptive query execution may coalesce).
    encoder : InteractionEncoder, default=None
        The model's fitted data contract (``skfewrec.load(path,
        return_encoder=True)``), taken from ``estimator`` when it is a pipeline
        starting with one. With an encoder, each task answers through
        :func:`skfewrec.apps._answer.recommend_log`, like Python, the CLI and the
        HTTP service: its ``min_value`` filter, duplicate policy, ``binarize`` and
        a pipeline's weighting steps apply to the raw log, items of the raw log
        are never recommended back, ``item_ids`` are its ``item_ids_`` and
        ``value_col`` defaults to its ``value_col``.

    Returns
    -------
    recommendations : pyspark.sql.DataFrame
        Columns ``user_col`` (as in ``df``), ``item_col`` (the raw item id),
        ``score`` (float) and ``rank`` (int, 1 = best); up to ``k`` rows per user
        (fewer when filtering leaves fewer items).

    Examples
    --------
    ``recommend_spark(spark_df, rec, k=10, item_ids=item_ids)`` returns a lazy
    DataFrame with columns ``['user', 'item', 'score', 'rank']`` (run on a local
    Spark in ``tests/test_spark.py``; each task runs :func:`_score_partition`,
    doctested below). The settings are checked on the driver, before any Spark job:

    >>> import numpy as np, pandas as pd
    >>> from skfewrec import MostPopular
    >>> from skfewrec.spark import recommend_spark
    >>> rec = MostPopular().fit(np.eye(3))
    >>> recommend_spark(pd.DataFrame({"user": [1], "item": [0]}), rec)
    Traceback (most recent call last):
    ...
    TypeError: df must be a pyspark.sql.DataFrame of interactions (user, item[, value]), ...
    """
    _require_pyspark()
    import pyarrow as pa
    from pyspark.sql import types as T

    from .preprocessing import InteractionEncoder

    steps = getattr(estimator, "steps", None)
    if steps:
        from .pipeline import as_recommender_pipeline

        estimator = as_recommender_pipeline(estimator)
        if encoder is None and isinstance(steps[0][1], InteractionEncoder):
            encoder = steps[0][1]
    if not hasattr(estimator, "recommend"):
        raise TypeError(
            f"estimator must be a fitted skfewrec recommender (with recommend), got "
            f"{type(estimator).__name__}."
        )
    check_is_fitted(estimator)
    if encoder is not None:
        if not isinstance(encoder, InteractionEncoder):
            raise TypeError(
                f"encoder must be a fitted InteractionEncoder, got {type(encoder).__name__}."
            )
        check_is_fitted(encoder)
        if item_ids is not None:
            raise ValueError("Pass encoder or item_ids, not both: the encoder holds the ids.")
        item_ids = encoder.item_ids_
        # the values the contract reads (none for a model of event counts)
        value_col = None if encoder.value_col is None else (value_col or encoder.value_col)
        n_items = len(item_ids)
    else:
        n_items = int(estimator.n_features_in_)
    if handle_unknown not in ("error", "ignore"):
        raise ValueError(f"handle_unknown must be 'error' or 'ignore', got {handle_unknown!r}.")
    if not isinstance(filter_seen, bool | np.bool_):
        raise TypeError(f"filter_seen must be True or False, got {filter_seen!r}.")
    if num_partitions is not None and (
        isinstance(num_partitions, bool) or not isinstance(num_partitions, int)
        or num_partitions < 1
    ):  # fmt: skip
        raise ValueError(f"num_partitions must be an integer >= 1, got {num_partitions!r}.")
    user_field, item_field = _check_frame(df, user_col, item_col, value_col)
    ids = _check_item_ids(item_ids, n_items, item_field.dataType, item_col)
    allow = _raw_to_columns(items, ids, n_items, "items")
    deny = _raw_to_columns(exclude, ids, n_items, "exclude")
    check_k(k, n_items if allow is None else np.unique(allow).size)

    from .persistence import dumps, loads

    own = encoder if encoder is not None and not (steps and steps[0][1] is encoder) else None
    bundle = dumps(estimator, encoder=own)
    loads(bundle)  # the executors' load, once on the driver: a broken model fails here, now
    ids_bytes = _ids_to_bytes(ids, n_items)
    token = hashlib.sha256(bundle + ids_bytes).hexdigest()
    try:
        payload = df.sparkSession.sparkContext.broadcast((bundle, ids_bytes))
    except Exception:  # Spark Connect has no SparkContext: ship it with the function
        payload = (bundle, ids_bytes)

    out_schema = T.StructType(
        [
            T.StructField(user_col, user_field.dataType, True),
            T.StructField(item_col, item_field.dataType, True),
            T.StructField("score", T.FloatType(), True),
            T.StructField("rank", T.IntegerType(), True),
        ]
    )
    from pyspark.sql.pandas.types import to_arrow_schema

    large = df.sparkSession.conf.get("spark.sql.execution.arrow.useLargeVarTypes", "false")
    arrow_schema = to_arrow_schema(out_schema, prefers_large_types=large == "true")
    # one shuffle: every user's rows land in one partition
    from pyspark.sql import functions as F

    user = F.col(user_col)
    frame = _long_frame(df, user_col, item_col, value_col)
    if num_partitions is None:
        frame = frame.repartition(user)
    else:
        frame = frame.repartition(num_partitions, user)
    body = partial(
        _score_partition,
        token=token,
        payload=payload,
        n_items=n_items,
        k=int(k),
        filter_seen=bool(filter_seen),
        handle_unknown=handle_unknown,
        items=allow,
        exclude=deny,
        names=(user_col, item_col, value_col),
        out_schema=pa.schema(arrow_schema),
        contract=encoder is not None,
    )
    with warnings.catch_warnings():
        # PySpark 4 warns about pandas >= 3 when it sets up any Arrow UDF; this one
        # moves Arrow batches only
        warnings.filterwarnings(
            "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
        )
        return frame.mapInArrow(body, out_schema)


def interactions_from_spark(
    df,
    *,
    user_col="user",
    item_col="item",
    value_col=None,
    item_ids=None,
    n_items=None,
    handle_unknown="error",
):
    """Collect a Spark DataFrame of interactions to the driver as a CSR matrix.

    For data that fits on the driver: a sample of warm users to fit an adapter
    (its prior) on imported factors, or a few users to compare with
    :func:`recommend_spark`. Rows are the distinct users, sorted.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        Interactions, one row per event.
    user_col, item_col, value_col : str
        As in :func:`recommend_spark`.
    item_ids : array-like of shape (n_items,), default=None
        The raw id of each column; None: ``item_col`` holds column indices and
        ``n_items`` must be given.
    n_items : int, default=None
        The number of columns when ``item_ids`` is None.
    handle_unknown : {"error", "ignore"}, default="error"
        Items not in ``item_ids``: raise, or drop those interactions.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_users, n_items), float32
        Repeated (user, item) rows summed.
    user_ids : ndarray of shape (n_users,)
        The user id of each row.

    Examples
    --------
    ``X, users = interactions_from_spark(spark_df, item_ids=item_ids)`` (run in
    ``tests/test_spark.py``; the conversion itself is :func:`_long_to_csr`,
    doctested). A pandas frame is refused with the way to convert it:

    >>> import pandas as pd
    >>> from skfewrec.spark import interactions_from_spark
    >>> interactions_from_spark(pd.DataFrame({"user": [1], "item": [0]}), n_items=3)
    Traceback (most recent call last):
    ...
    TypeError: df must be a pyspark.sql.DataFrame ... spark.createDataFrame(pdf).
    """
    _require_pyspark()
    user_field, item_field = _check_frame(df, user_col, item_col, value_col)
    if item_ids is None:
        if n_items is None or isinstance(n_items, bool) or not isinstance(n_items, int):
            raise ValueError(
                "Pass item_ids (the raw id of each column) or n_items (the number of "
                "columns, when item_col already holds column indices)."
            )
    else:
        n_items = len(item_ids)
    ids = _check_item_ids(item_ids, n_items, item_field.dataType, item_col)
    if handle_unknown not in ("error", "ignore"):
        raise ValueError(f"handle_unknown must be 'error' or 'ignore', got {handle_unknown!r}.")
    table = _to_arrow(_long_frame(df, user_col, item_col, value_col))
    X, users = _long_to_csr(
        *_columns(table, value_col),
        _arrow_ids(ids, n_items),
        n_items,
        handle_unknown,
        (user_col, item_col, value_col),
        sort=True,
    )
    return sp.csr_matrix(X, dtype=np.float32), users.to_numpy(zero_copy_only=False)


def add_items_spark(
    df,
    estimator,
    *,
    user_ids,
    user_col="user",
    item_col="item",
    value_col=None,
    item_ids=None,
    handle_unknown="error",
    **params,
):
    """Add the new items of a Spark DataFrame to a fitted recommender, servable at once.

    ``df`` holds the interactions of warm users (the rows the model was fitted
    on) with new items. Its new items' support is collected to the driver as
    a warm users x new items matrix (an item's support is a few users: it is
    small) and given to ``estimator.add_items``, which grows the estimator in
    place; the new items take the columns after the existing ones, in the
    sorted order of their ids. Pass the grown ``item_ids`` to
    :func:`recommend_spark` to rank them on the executors.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        Interactions of warm users with new items, one row per event.
    estimator : fitted skfewrec recommender
        A model with ``add_items`` (``ClosedFormFoldIn``, ``NewItemRecommender``).
    user_ids : array-like of shape (n_warm_users,)
        The raw id of each warm user, in the order of the rows the model was
        fitted on (``InteractionEncoder.user_ids_``).
    user_col, item_col, value_col : str
        As in :func:`recommend_spark`.
    item_ids : array-like of shape (n_items,), default=None
        The raw id of each current column; the new ids must not be among them.
        None: the new items are known by their ids alone.
    handle_unknown : {"error", "ignore"}, default="error"
        Users not in ``user_ids``: raise, or drop those interactions.
    **params : dict
        Passed to ``add_items`` (e.g. ``method`` for ``ClosedFormFoldIn``).

    Returns
    -------
    new_item_ids : ndarray
        The raw ids of the added items, in column order (columns
        ``n_features_in_`` before the call, onwards).
    item_ids : ndarray or None
        The raw id of every column of the grown model (None when ``item_ids``
        was None).

    Examples
    --------
    ``new_ids, item_ids = add_items_spark(spark_df, rec, user_ids=enc.user_ids_,
    item_ids=enc.item_ids_)`` (run on a local Spark in ``tests/test_spark_items.py``).
    A model that cannot take new items is refused before any Spark job:

    >>> import numpy as np
    >>> from skfewrec import MostPopular
    >>> from skfewrec.spark import add_items_spark
    >>> add_items_spark(None, MostPopular().fit(np.eye(3)), user_ids=[1, 2, 3])
    Traceback (most recent call last):
    ...
    TypeError: estimator must be a fitted recommender with add_items ...
    """
    if not callable(getattr(estimator, "add_items", None)):
        raise TypeError(
            "estimator must be a fitted recommender with add_items (ClosedFormFoldIn, "
            f"NewItemRecommender), got {type(estimator).__name__}."
        )
    check_is_fitted(estimator)
    _require_pyspark()
    user_field, _ = _check_frame(df, user_col, item_col, value_col)
    users = np.asarray(user_ids)
    if users.ndim != 1 or users.size == 0:
        raise ValueError(
            f"user_ids must be a 1-d array with the raw id of each warm user, got shape "
            f"{users.shape}."
        )
    if (users.dtype.kind in "iu") != _is_integral(user_field.dataType):
        raise TypeError(
            f"Column {user_col!r} has type {user_field.dataType.simpleString()} but user_ids "
            f"holds {'integer' if users.dtype.kind in 'iu' else 'non-integer'} ids: the "
            "DataFrame's user ids and the model's must be the same kind; cast the column."
        )
    if users.dtype.kind not in "iu":
        users = users.astype(str)
    # the transposed log: new items as rows, warm users as columns
    X_items, new_ids = interactions_from_spark(
        df,
        user_col=item_col,
        item_col=user_col,
        value_col=value_col,
        item_ids=users,
        handle_unknown=handle_unknown,
    )
    grown_ids = None
    if item_ids is not None:
        old = np.asarray(item_ids)
        taken = np.isin(new_ids, old)
        if taken.any():
            raise ValueError(
                f"{int(taken.sum())} item id(s) of df are already in the catalogue "
                f"({_show(new_ids[taken])}); df must hold new items only."
            )
        grown_ids = np.concatenate([old.astype(object), new_ids.astype(object)])
        if old.dtype.kind in "iu":
            grown_ids = grown_ids.astype(np.int64)
    estimator.add_items(X_items.T.tocsr(), **params)
    return new_ids, grown_ids
