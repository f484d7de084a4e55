"""Encode a long interaction log (user, item[, value][, time]) into a user x item matrix."""

import warnings
from collections.abc import Hashable
from numbers import Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

from .._core.compat import Interval, StrOptions, _fit_context, check_is_fitted
from .._core.validation import MAX_INTERACTION_VALUE, check_values

_N_SHOWN = 5


def _show(values):
    """Format up to ``_N_SHOWN`` values for an error message."""
    values = list(values)
    shown = ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in values[:_N_SHOWN])
    return shown + (", ..." if len(values) > _N_SHOWN else "")


def _check_frame(df, columns):
    """Check that ``df`` is a DataFrame holding ``columns`` (labels, or None to skip)."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(
            f"InteractionEncoder expects a pandas DataFrame of interactions (one row per "
            f"event), got {type(df).__name__}. Build one with pd.DataFrame({{'user': ..., "
            f"'item': ...}})."
        )
    missing = [c for c in columns if c is not None and c not in df.columns]
    if missing:
        raise ValueError(
            f"Column(s) {_show(missing)} not found in the DataFrame; its columns are "
            f"{_show(df.columns)}. Set user_col, item_col, value_col and time_col to the "
            "names used in your log."
        )


def _check_ids(series, col):
    """Raise when an id column holds missing values."""
    n_null = int(series.isna().sum())
    if n_null:
        first = int(np.flatnonzero(series.isna().to_numpy())[0])
        raise ValueError(
            f"Column {col!r} has {n_null} missing id(s) (first at row position {first}); "
            "every interaction needs a user and an item. Drop those rows first, e.g. "
            f"df.dropna(subset=[{col!r}])."
        )


def _check_values(series, col):
    """Return ``series`` as a float64 array of finite values in [0, MAX_INTERACTION_VALUE]."""
    if not (
        pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype)
    ) or pd.api.types.is_complex_dtype(series.dtype):
        raise TypeError(
            f"Column {col!r} has dtype {series.dtype}; interaction values must be numbers "
            f"(counts, ratings, play counts). Convert it with pd.to_numeric(df[{col!r}])."
        )
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(
            f"Column {col!r} has {int(bad.sum())} missing or infinite value(s) (first at row "
            f"position {int(np.flatnonzero(bad)[0])}); interaction values must be finite. "
            "Drop or impute them first."
        )
    neg = values < 0
    if neg.any():
        raise ValueError(
            f"Column {col!r} has {int(neg.sum())} negative value(s) (the smallest is "
            f"{values.min():g}); interaction values must be >= 0, with 0 meaning 'no "
            "interaction'."
        )
    # the bound every estimator applies: refused here, before float32 turns 1e300 into inf
    return check_values(values, f"Column {col!r}")


def _sorted_codes(series, col):
    """``pd.factorize(series, sort=True)``, with a clear error for ids that cannot be sorted."""
    try:
        return pd.factorize(series, sort=True)
    except TypeError as exc:
        kinds = sorted({type(v).__name__ for v in series.head(10_000).tolist()})
        raise TypeError(
            f"Column {col!r} mixes ids of types {', '.join(kinds)}, which cannot be sorted "
            f"({exc}); ids must all be integers or all strings. Convert them first, e.g. "
            f"df[{col!r}] = df[{col!r}].astype(str)."
        ) from None


def _check_times(series, col):
    """Return ``series`` as an int64 (unix seconds for datetimes) or float64 array."""
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
        series.dtype
    ):
        if series.isna().any():
            raise ValueError(
                f"Column {col!r} has {int(series.isna().sum())} missing time(s) (NaT); "
                "every interaction needs a time when time_col is set."
            )
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        return series.dt.as_unit("s").astype(np.int64).to_numpy()
    if pd.api.types.is_integer_dtype(series.dtype) and not series.isna().any():
        return series.to_numpy(dtype=np.int64)
    if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        raise TypeError(
            f"Column {col!r} has dtype {series.dtype}; times must be numbers (e.g. unix "
            f"seconds) or datetimes. Convert it with pd.to_datetime(df[{col!r}])."
        )
    times = series.to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.all(np.isfinite(times)):
        raise ValueError(
            f"Column {col!r} has {int((~np.isfinite(times)).sum())} missing or infinite "
            "time(s); every interaction needs a time when time_col is set."
        )
    return times


#: how the values of repeated (user, item) events combine into one cell
DUPLICATE_POLICIES = ("sum", "max", "first", "last")


def _cells(
    rows, cols, values, times, shape, dtype, *, duplicates="sum", binarize=False, order=None
):
    """Combine the events of each (row, col) cell; build aligned CSR matrices.

    ``duplicates`` says how the values of a cell's events combine: their
    ``"sum"``, ``"max"``, or the value of the ``"first"`` / ``"last"`` event,
    by ``order`` (event times; ties and ``order=None``: row order). ``times``
    (or None) gives the latest event time of each cell. With ``binarize`` every
    non-zero cell holds 1. Cells whose value is 0 are dropped from both
    matrices, so they share exactly the same canonical sparsity pattern.
    """
    n_rows, n_cols = shape
    key = rows.astype(np.int64) * n_cols + cols
    n = key.size
    if duplicates in ("first", "last") and order is not None and n > 1:
        # by cell, then event time, then row position (lexsort's last key is primary)
        perm = np.lexsort((np.arange(n), order, key))
        key, values = key[perm], values[perm]
        times = None if times is None else times[perm]
    elif n > 1 and not np.all(key[1:] >= key[:-1]):
        if n_rows * n_cols < np.iinfo(np.int64).max // n:
            # Sorting key * n + position is stable and several times faster than argsort.
            packed = np.sort(key * n + np.arange(n))
            key, perm = np.divmod(packed, n)
        else:
            perm = np.argsort(key, kind="stable")
            key = key[perm]
        values = values[perm]
        times = None if times is None else times[perm]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if key.size else key
    if starts.size != key.size:
        key = key[starts]
        if duplicates == "sum":
            values = np.add.reduceat(values, starts)
        elif duplicates == "max":
            values = np.maximum.reduceat(values, starts)
        elif duplicates == "first":
            values = values[starts]
        else:  # "last": each cell's events are in order, its last one ends the run
            values = values[np.r_[starts[1:], n] - 1]
        times = None if times is None else np.maximum.reduceat(times, starts)
    nonzero = values != 0
    if not nonzero.all():
        key, values = key[nonzero], values[nonzero]
        times = None if times is None else times[nonzero]
    if binarize:
        values = np.ones_like(values)
    row_of = key // n_cols
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of, minlength=n_rows), out=indptr[1:])
    index_dtype = np.int32 if max(n_cols, key.size) < np.iinfo(np.int32).max else np.int64
    indices = (key % n_cols).astype(index_dtype)
    indptr = indptr.astype(index_dtype)
    X = sp.csr_matrix((values.astype(dtype), indices, indptr), shape=shape)
    X.has_canonical_format = True
    T = None
    if times is not None:
        T = sp.csr_matrix((times, indices.copy(), indptr.copy()), shape=shape)
        T.has_canonical_format = True
    return X, T


class InteractionEncoder(TransformerMixin, BaseEstimator):
    """Turn a long interaction log into a user x item matrix, keeping the id mappings.

    ``fit`` learns the item catalogue (the columns of the matrix) from a log with one
    row per event; ``encode`` turns any log, such as the few interactions of new users,
    into a CSR matrix with the same columns, and says which user each row is.

    The encoder is the model's data contract: what it filters, how it combines
    repeated events and whether it binarizes are parameters, saved in model
    bundles with it, so new users' raw logs go through exactly the steps the
    training log went through. Every log, in ``fit`` and ``encode`` alike, goes
    through the same three steps, in this order:

    1. **filter**: events whose ``value_col`` value is below ``min_value`` are
       dropped, before anything else (their items need not be in the catalogue);
    2. **duplicates**: the events of one (user, item) pair become one cell, by
       the ``duplicates`` policy;
    3. **binarize**: with ``binarize=True`` every cell holds 1 (values then only
       filter). A cell whose value is 0 is no interaction and is not stored.

    Parameters
    ----------
    user_col : hashable, default="user"
        Column holding the raw user ids.
    item_col : hashable, default="item"
        Column holding the raw item ids.
    value_col : hashable, default=None
        Column holding non-negative interaction values (ratings, play counts), at most
        ``skfewrec._core.validation.MAX_INTERACTION_VALUE`` (1e6). When None every
        event counts 1, so with ``duplicates="sum"`` cells hold the number of events.
    time_col : hashable, default=None
        Column holding event times (numbers such as unix seconds, or datetimes, which are
        converted to unix seconds), used by :meth:`encode_timestamps` and to order
        repeated events for ``duplicates="first"`` / ``"last"``.
    handle_unknown : {"error", "ignore"}, default="error"
        What to do with item ids not seen in ``fit``: raise a ``ValueError`` naming
        them, or drop those events with a warning that counts them. Events removed
        by ``min_value`` are never unknown: they are dropped first.
    min_value : float, default=None
        Drop every event whose ``value_col`` value is below ``min_value`` (e.g. 4
        to keep the 4- and 5-star ratings as likes). Needs ``value_col``. None
        keeps every event.
    binarize : bool, default=False
        Make every kept (user, item) cell 1, whatever its value or number of
        events: the values only filter (through ``min_value``).
    duplicates : {"sum", "max", "first", "last"}, default="sum"
        How the events of one (user, item) pair combine into one cell: the sum of
        their values (event counts when ``value_col`` is None; skfewrec 0.1's
        behaviour), their largest value, or the value of the earliest / latest
        event, by ``time_col`` when the log has that column, else by row order
        (ties in time too). Sums obey the same bound as values.
    dtype : dtype, default=np.float32
        The dtype of the matrix values.

    Attributes
    ----------
    item_ids_ : ndarray of shape (n_items_,)
        Sorted unique raw item ids (of the events kept by ``min_value``);
        ``item_ids_[j]`` is the item of column ``j``.
    user_ids_ : ndarray of shape (n_users,)
        Sorted unique raw user ids of the (kept events of the) log passed to
        ``fit``: the rows of ``fit_transform``.
    n_items_ : int
        Number of items (columns).

    See Also
    --------
    LogConfidence : Turn counts into log-scaled confidences.
    skfewrec.pipeline.RecommenderPipeline : An encoder, weighting steps and a
        recommender in one model that takes a log and answers raw ids.

    Notes
    -----
    ``encode`` and ``transform`` return one row per user of the log being
    encoded, in sorted order of the raw user ids, as ``fit_transform``'s rows
    follow ``user_ids_`` (so ``fit(log).transform(log)`` equals
    ``fit_transform(log)``, and :meth:`encode_timestamps` aligns with both); a
    user whose events were all filtered out gets an empty row.
    :func:`skfewrec.apps._answer.recommend_log` answers in the order users first
    appear in the log. Users need not have been seen in ``fit`` (new users are the
    point of few-shot recommendation); items must.

    The encoder takes DataFrames, not arrays, so it is kept out of scikit-learn's
    generic estimator checks (``_skfewrec_skip_common_checks``); it still supports
    ``get_params``, ``set_params``, ``clone`` and use as the first step of a
    ``Pipeline``.

    Examples
    --------
    >>> import pandas as pd
    >>> from skfewrec.preprocessing import InteractionEncoder
    >>> log = pd.DataFrame({"user": ["ann", "bob", "ann", "bob"],
    ...                     "item": ["x", "y", "y", "y"], "plays": [3, 1, 2, 4]})
    >>> enc = InteractionEncoder(value_col="plays").fit(log)
    >>> enc.item_ids_
    array(['x', 'y'], dtype=object)
    >>> X, users = enc.encode(pd.DataFrame({"user": ["cid"], "item": ["y"], "plays": [1]}))
    >>> X.toarray(), users
    (array([[0., 1.]], dtype=float32), array(['cid'], dtype=object))
    >>> enc.inverse_items([1, 0])
    array(['y', 'x'], dtype=object)

    Ratings of 4 and more as likes, each counted once:

    >>> ratings = pd.DataFrame({"user": [1, 1, 1, 2], "item": ["a", "b", "a", "b"],
    ...                         "stars": [5, 2, 4, 4]})
    >>> enc = InteractionEncoder(value_col="stars", min_value=4, binarize=True)
    >>> enc.fit_transform(ratings).toarray()
    array([[1., 0.],
           [0., 1.]], dtype=float32)
    """

    _skfewrec_skip_common_checks = True

    _parameter_constraints: dict = {
        "user_col": [Hashable],
        "item_col": [Hashable],
        "value_col": [Hashable, None],
        "time_col": [Hashable, None],
        "handle_unknown": [StrOptions({"error", "ignore"})],
        "min_value": [Interval(Real, None, None, closed="neither"), None],
        "binarize": ["boolean"],
        "duplicates": [StrOptions(set(DUPLICATE_POLICIES))],
        "dtype": "no_validation",
    }

    def __init__(
        self,
        *,
        user_col="user",
        item_col="item",
        value_col=None,
        time_col=None,
        handle_unknown="error",
        min_value=None,
        binarize=False,
        duplicates="sum",
        dtype=np.float32,
    ):
        self.user_col = user_col
        self.item_col = item_col
        self.value_col = value_col
        self.time_col = time_col
        self.handle_unknown = handle_unknown
        self.min_value = min_value
        self.binarize = binarize
        self.duplicates = duplicates
        self.dtype = dtype

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        tags.requires_fit = True
        # Takes a DataFrame log, not an array X: sklearn's generic checks do not apply.
        tags._skip_test = True
        return tags

    def _check_settings(self):
        """What the constraints cannot say; run by ``fit`` and when a bundle is loaded."""
        if isinstance(self.min_value, bool | np.bool_):
            raise TypeError(
                f"min_value must be a number (the smallest value kept) or None, got "
                f"{self.min_value!r}."
            )
        if self.min_value is not None and self.value_col is None:
            raise ValueError(
                f"min_value={self.min_value!r} needs a value column to compare with: set "
                "value_col to the column holding the ratings or counts, or min_value=None."
            )

    def _columns(self, *, times=False):
        cols = [self.user_col, self.item_col, self.value_col]
        return cols + [self.time_col] if times else cols

    def _values(self, df):
        """The checked values of every event (ones without ``value_col``) and the kept mask."""
        if self.value_col is None:
            return np.ones(len(df)), None
        values = _check_values(df[self.value_col], self.value_col)
        if self.min_value is None:
            return values, None
        kept = values >= self.min_value
        return values, (None if kept.all() else kept)

    def _order(self, df):
        """The times that order repeated events for "first" / "last", or None (row order)."""
        if self.duplicates not in ("first", "last") or self.time_col is None:
            return None
        if self.time_col not in df.columns:
            return None
        return _check_times(df[self.time_col], self.time_col)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, df, y=None):
        """Learn the item catalogue (and the users) of a log.

        Parameters
        ----------
        df : pandas.DataFrame
            The log, one row per event, with ``user_col`` and ``item_col`` (and
            ``value_col`` when set). Events below ``min_value`` are left out.
        y : None
            Ignored.

        Returns
        -------
        self : InteractionEncoder
            The fitted encoder.

        Examples
        --------
        >>> import pandas as pd
        >>> from skfewrec.preprocessing import InteractionEncoder
        >>> InteractionEncoder().fit(pd.DataFrame({"user": [1], "item": [7]})).n_items_
        1
        """
        self._fit(df)
        return self

    def _fit(self, df):
        """Fit on the kept events of ``df``; returns ``(kept log, (user codes, item codes))``."""
        self._check_settings()
        _check_frame(df, self._columns())
        if len(df) == 0:
            raise ValueError("The log passed to fit has no rows; pass at least one interaction.")
        _check_ids(df[self.user_col], self.user_col)
        _check_ids(df[self.item_col], self.item_col)
        _, kept = self._values(df)
        if kept is not None:
            if not kept.any():
                raise ValueError(
                    f"No event of the log passed to fit has {self.value_col!r} >= "
                    f"min_value={self.min_value!r}; lower min_value or check the column."
                )
            df = df.iloc[np.flatnonzero(kept)]
        user_codes, users = _sorted_codes(df[self.user_col], self.user_col)
        item_codes, items = _sorted_codes(df[self.item_col], self.item_col)
        self.user_ids_ = np.asarray(users)
        self.item_ids_ = np.asarray(items)
        self.n_items_ = len(self.item_ids_)
        self._rebuild()
        return df, (user_codes, item_codes)

    def _rebuild(self):
        """Recompute the private caches derived from the public fitted state."""
        # A hash index of the catalogue: raw id -> column in one vectorised lookup.
        self._item_lookup = pd.Index(self.item_ids_)

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: never strip the live object
        state.pop("_item_lookup", None)
        return state

    def __setstate__(self, state):
        # encoders pickled by skfewrec 0.1 predate the contract's parameters: 0.1 behaviour
        state = {"min_value": None, "binarize": False, "duplicates": "sum", **state}
        super().__setstate__(state)
        if "item_ids_" in state:
            self._rebuild()

    def _item_codes(self, ids, *, name):
        """Column index of each raw id, -1 for unknown ones (after applying the policy)."""
        codes = self._item_lookup.get_indexer(ids)
        unknown = codes < 0
        if unknown.any() and self.handle_unknown == "error":
            new = pd.unique(np.asarray(ids, dtype=object)[unknown])
            hint = ""
            fitted_kind = self.item_ids_.dtype.kind
            given_kind = np.asarray(ids).dtype.kind
            if fitted_kind != given_kind:
                hint = (
                    f" (the fitted ids have dtype {self.item_ids_.dtype}, these have "
                    f"{np.asarray(ids).dtype}: check the id types match)"
                )
            raise ValueError(
                f"{name} contains {len(new)} item id(s) not seen in fit: {_show(new)}{hint}. "
                "Refit the encoder on a log that includes them, or set "
                "handle_unknown='ignore' to drop them."
            )
        return codes

    def _encode(self, df, *, timestamps=False, seen=False, codes=None):
        """Shared work of ``encode`` / ``encode_timestamps`` / ``fit_transform``.

        Returns ``(X, T or None, seen or None, user_ids)``. ``codes`` (from
        ``_fit``) means ``df`` holds only kept events and its rows follow
        ``user_ids_``.
        """
        _check_frame(df, self._columns(times=timestamps))
        if timestamps and self.time_col is None:
            raise ValueError(
                "time_col is None, so there are no times to encode; set "
                "InteractionEncoder(time_col=...) to the column holding event times."
            )
        if codes is None:
            _check_ids(df[self.user_col], self.user_col)
            _check_ids(df[self.item_col], self.item_col)
        values, kept = self._values(df)
        times = _check_times(df[self.time_col], self.time_col) if timestamps else None
        order = self._order(df)
        if codes is None:
            # every user of the log has a row, filtered-out users too
            user_codes, users = _sorted_codes(df[self.user_col], self.user_col)
            user_ids = np.asarray(users)
            items = df[self.item_col]
            raw_codes = None
            if kept is None:
                item_codes = self._item_codes(items, name="df")
            else:
                # the filter comes first: a dropped event's item need not be known
                item_codes = np.full(len(df), -1, dtype=np.intp)
                item_codes[kept] = self._item_codes(items[kept], name="df")
            if seen:
                raw_codes = item_codes if kept is None else self._item_lookup.get_indexer(items)
        else:
            user_codes, item_codes = codes
            user_ids = self.user_ids_
            raw_codes = item_codes
        shape = (len(user_ids), self.n_items_)
        S = None
        if seen:
            # every known item of the raw log, whatever its value: never recommended back
            known = raw_codes >= 0
            S, _ = _cells(
                user_codes[known],
                raw_codes[known],
                np.ones(int(known.sum())),
                None,
                shape,
                self.dtype,
                binarize=True,
            )
        unknown = item_codes < 0
        if kept is not None:
            unknown &= kept
        if unknown.any():
            n_new = len(pd.unique(df[self.item_col].to_numpy()[unknown]))
            warnings.warn(
                f"Dropped {int(unknown.sum())} interaction(s) with {n_new} item id(s) not "
                "seen in fit (handle_unknown='ignore'); refit the encoder to keep them.",
                UserWarning,
                stacklevel=3,
            )
        use = item_codes >= 0
        if not use.all():
            user_codes, item_codes, values = user_codes[use], item_codes[use], values[use]
            times = None if times is None else times[use]
            order = None if order is None else order[use]
        X, T = _cells(
            user_codes,
            item_codes,
            values,
            times,
            shape,
            self.dtype,
            duplicates=self.duplicates,
            binarize=self.binarize,
            order=order,
        )
        if X.nnz and X.data.max() > MAX_INTERACTION_VALUE:
            # repeated (user, item) rows are summed: the sums obey the same bound
            what = "event counts" if self.value_col is None else f"sums of {self.value_col!r}"
            check_values(X.data, f"The encoded matrix ({what} per user and item)")
        return X, T, S, user_ids

    def encode(self, df, *, return_seen=False):
        """Encode a log into a user x item matrix and the user id of each row.

        The log goes through the encoder's filter (``min_value``), duplicate policy
        and ``binarize``, as in ``fit``.

        Parameters
        ----------
        df : pandas.DataFrame
            The log, one row per event. Users may be new; items of kept events must
            have been seen in ``fit`` unless ``handle_unknown="ignore"``.
        return_seen : bool, default=False
            Also return the raw log's items per user, before ``min_value``: what a
            recommendation must never repeat (a 1-star rating is not a like, but
            the user has seen the item).

        Returns
        -------
        X : scipy.sparse.csr_matrix of shape (n_users, n_items_)
            Canonical CSR matrix of the kept cells.
        seen : scipy.sparse.csr_matrix of shape (n_users, n_items_)
            Only when ``return_seen=True``: 1 for every catalogue item of each
            user's raw log (kept or filtered, whatever its value), aligned with ``X``.
        user_ids : ndarray of shape (n_users,)
            The raw user id of each row: the sorted unique users of ``df`` (a user
            whose events were all filtered out has an empty row).

        Examples
        --------
        >>> import pandas as pd
        >>> from skfewrec.preprocessing import InteractionEncoder
        >>> enc = InteractionEncoder().fit(pd.DataFrame({"user": [1, 2], "item": [10, 20]}))
        >>> X, users = enc.encode(pd.DataFrame({"user": [9, 9, 5], "item": [20, 20, 10]}))
        >>> X.toarray(), users
        (array([[1., 0.],
               [0., 2.]], dtype=float32), array([5, 9]))

        A 1-star rating is filtered out of ``X`` but stays in ``seen``:

        >>> log = pd.DataFrame({"user": [1, 1, 2], "item": ["a", "b", "b"], "stars": [5, 4, 5]})
        >>> enc = InteractionEncoder(value_col="stars", min_value=4, binarize=True).fit(log)
        >>> new = pd.DataFrame({"user": [7, 7], "item": ["a", "b"], "stars": [1, 5]})
        >>> X, seen, users = enc.encode(new, return_seen=True)
        >>> X.toarray(), seen.toarray()
        (array([[0., 1.]], dtype=float32), array([[1., 1.]], dtype=float32))
        """
        check_is_fitted(self)
        if not isinstance(return_seen, bool | np.bool_):
            raise TypeError(
                f"return_seen must be True or False, got {return_seen!r} of type "
                f"{type(return_seen).__name__}."
            )
        X, _, S, user_ids = self._encode(df, seen=bool(return_seen))
        return (X, S, user_ids) if return_seen else (X, user_ids)

    def encode_timestamps(self, df):
        """Encode the latest event time per (user, item) cell, aligned with :meth:`encode`.

        Parameters
        ----------
        df : pandas.DataFrame
            The log, with ``time_col``.

        Returns
        -------
        T : scipy.sparse.csr_matrix of shape (n_users, n_items_)
            The latest time of each cell's kept events (int64, or float64 for float
            times), with exactly the sparsity pattern of ``encode(df)[0]``: read it
            through that pattern, since a time of 0 is stored explicitly.
        user_ids : ndarray of shape (n_users,)
            The raw user id of each row, as :meth:`encode` gives them.

        Examples
        --------
        >>> import pandas as pd
        >>> from skfewrec.preprocessing import InteractionEncoder
        >>> log = pd.DataFrame({"user": [1, 1, 1], "item": [3, 4, 3], "t": [50, 60, 70]})
        >>> enc = InteractionEncoder(time_col="t").fit(log)
        >>> enc.encode_timestamps(log)[0].toarray()
        array([[70, 60]])
        """
        check_is_fitted(self)
        _, T, _, user_ids = self._encode(df, timestamps=True)
        return T, user_ids

    def transform(self, df):
        """Encode a log into a user x item matrix (rows: sorted unique users of ``df``).

        Parameters
        ----------
        df : pandas.DataFrame
            The log, one row per event.

        Returns
        -------
        X : scipy.sparse.csr_matrix of shape (n_users, n_items_)
            As returned by :meth:`encode`, which also gives the user id of each row.

        Examples
        --------
        >>> import pandas as pd
        >>> from skfewrec.preprocessing import InteractionEncoder
        >>> log = pd.DataFrame({"user": [1, 2], "item": [10, 20]})
        >>> InteractionEncoder().fit(log).transform(log).nnz
        2
        """
        return self.encode(df)[0]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, df, y=None):
        """Fit on a log and encode it; rows follow ``user_ids_``.

        Parameters
        ----------
        df : pandas.DataFrame
            The log, one row per event.
        y : None
            Ignored.

        Returns
        -------
        X : scipy.sparse.csr_matrix of shape (len(user_ids_), n_items_)
            The encoded log (its kept events).

        Examples
        --------
        >>> import pandas as pd
        >>> from skfewrec.preprocessing import InteractionEncoder
        >>> log = pd.DataFrame({"user": ["b", "a"], "item": [10, 20]})
        >>> InteractionEncoder().fit_transform(log).toarray()
        array([[0., 1.],
               [1., 0.]], dtype=float32)
        """
        return self._fit_encode(df)[0]

    def _fit_encode(self, df, *, timestamps=False):
        """Fit and encode in one pass; returns ``(X, T or None, user_ids_)``."""
        if timestamps:
            _check_frame(df, self._columns(times=True))
        kept, codes = self._fit(df)
        X, T, _, user_ids = self._encode(kept, timestamps=timestamps, codes=codes)
        return X, T, user_ids

    def item_index(self, ids):
        """Map raw item ids to column indices.

        Parameters
        ----------
        ids : array-like of shape (n_ids,)
            Raw item ids.

        Returns
        -------
        indices : ndarray of shape (n_ids,) of int64
            The column of each id; -1 for unknown ids when ``handle_unknown="ignore"``.

        Examples
        --------
        >>> import pandas as pd
        >>> from skfewrec.preprocessing import InteractionEncoder
        >>> enc = InteractionEncoder(handle_unknown="ignore")
        >>> enc = enc.fit(pd.DataFrame({"user": [1, 1], "item": ["b", "a"]}))
        >>> enc.item_index(["b", "zzz"])
        array([ 1, -1])
        """
        check_is_fitted(self)
        ids = np.atleast_1d(np.asarray(ids))
        if ids.ndim != 1:
            raise ValueError(f"ids must be a 1-d array of raw item ids, got shape {ids.shape}.")
        return self._item_codes(ids, name="ids").astype(np.int64)

    def inverse_items(self, indices):
        """Map column indices back to raw item ids.

        Parameters
        ----------
        indices : array-like of int
            Column indices in ``[0, n_items_)``, of any shape (e.g. a top-k array of
            shape (n_users, k)).

        Returns
        -------
        ids : ndarray of the same shape as ``indices``
            The raw item id of each index.

        Examples
        --------
        >>> import pandas as pd
        >>> from skfewrec.preprocessing import InteractionEncoder
        >>> enc = InteractionEncoder().fit(pd.DataFrame({"user": [1, 1], "item": [30, 20]}))
        >>> enc.inverse_items([[1, 0]])
        array([[30, 20]])
        """
        check_is_fitted(self)
        indices = np.asarray(indices)
        if indices.size and not np.issubdtype(indices.dtype, np.integer):
            raise TypeError(f"indices must be integer column indices, got dtype {indices.dtype}.")
        if indices.size and (indices.min() < 0 or indices.max() >= self.n_items_):
            bad = indices[(indices < 0) | (indices >= self.n_items_)].ravel()
            raise ValueError(
                f"indices contains {_show(bad)}, outside the catalogue [0, {self.n_items_}); "
                "-1 marks an unknown item in item_index and has no raw id."
            )
        return self.item_ids_[indices.astype(np.intp, copy=False)]
