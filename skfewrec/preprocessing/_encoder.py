"""Encode a long interaction log (user, item[, value][, time]) into a user x item matrix."""

import warnings
from collections.abc import Hashable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

from .._core.compat import StrOptions, _fit_context, check_is_fitted
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


def _cells(rows, cols, values, times, shape, dtype):
    """Sum values (and take the latest time) per (row, col) cell; build aligned CSR matrices.

    Cells whose summed value is 0 are dropped from both matrices, so they share exactly
    the same canonical sparsity pattern.
    """
    n_rows, n_cols = shape
    key = rows.astype(np.int64) * n_cols + cols
    if key.size > 1 and not np.all(key[1:] >= key[:-1]):
        n = key.size
        if n_rows * n_cols < np.iinfo(np.int64).max // n:
            # Sorting key * n + position is stable and several times faster than argsort.
            packed = np.sort(key * n + np.arange(n))
            key, order = np.divmod(packed, n)
        else:
            order = np.argsort(key, kind="stable")
            key = key[order]
        values = values[order]
        times = None if times is None else times[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if key.size else key
    if starts.size != key.size:
        key = key[starts]
        values = np.add.reduceat(values, starts)
        times = None if times is None else np.maximum.reduceat(times, starts)
    nonzero = values != 0
    if not nonzero.all():
        key, values = key[nonzero], values[nonzero]
        times = None if times is None else times[nonzero]
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

    Parameters
    ----------
    user_col : hashable, default="user"
        Column holding the raw user ids.
    item_col : hashable, default="item"
        Column holding the raw item ids.
    value_col : hashable, default=None
        Column holding non-negative interaction values (ratings, play counts), at most
        ``skfewrec._core.validation.MAX_INTERACTION_VALUE`` (1e6); values of repeated
        (user, item) pairs are summed. When None every event counts 1, so cells hold
        the number of events.
    time_col : hashable, default=None
        Column holding event times (numbers such as unix seconds, or datetimes, which are
        converted to unix seconds), used by :meth:`encode_timestamps`.
    handle_unknown : {"error", "ignore"}, default="error"
        What to do with item ids not seen in ``fit``: raise a ``ValueError`` naming
        them, or drop those events with a warning that counts them.
    dtype : dtype, default=np.float32
        The dtype of the matrix values.

    Attributes
    ----------
    item_ids_ : ndarray of shape (n_items_,)
        Sorted unique raw item ids; ``item_ids_[j]`` is the item of column ``j``.
    user_ids_ : ndarray of shape (n_users,)
        Sorted unique raw user ids of the log passed to ``fit``.
    n_items_ : int
        Number of items (columns).

    See Also
    --------
    LogConfidence : Turn counts into log-scaled confidences.

    Notes
    -----
    Rows are users and follow the sorted unique user ids of the log being encoded:
    ``encode`` returns them alongside the matrix. Users need not have been seen in
    ``fit`` (new users are the point of few-shot recommendation); items must.

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
    """

    _skfewrec_skip_common_checks = True

    _parameter_constraints: dict = {
        "user_col": [Hashable],
        "item_col": [Hashable],
        "value_col": [Hashable, None],
        "time_col": [Hashable, None],
        "handle_unknown": [StrOptions({"error", "ignore"})],
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
        dtype=np.float32,
    ):
        self.user_col = user_col
        self.item_col = item_col
        self.value_col = value_col
        self.time_col = time_col
        self.handle_unknown = handle_unknown
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

    def _columns(self, *, times=False):
        cols = [self.user_col, self.item_col, self.value_col]
        return cols + [self.time_col] if times else cols

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, df, y=None):
        """Learn the item catalogue (and the users) of a log.

        Parameters
        ----------
        df : pandas.DataFrame
            The log, one row per event, with ``user_col`` and ``item_col`` (and
            ``value_col`` when set).
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
        _check_frame(df, self._columns())
        if len(df) == 0:
            raise ValueError("The log passed to fit has no rows; pass at least one interaction.")
        _check_ids(df[self.user_col], self.user_col)
        _check_ids(df[self.item_col], self.item_col)
        if self.value_col is not None:
            _check_values(df[self.value_col], self.value_col)
        user_codes, users = _sorted_codes(df[self.user_col], self.user_col)
        item_codes, items = _sorted_codes(df[self.item_col], self.item_col)
        self.user_ids_ = np.asarray(users)
        self.item_ids_ = np.asarray(items)
        self.n_items_ = len(self.item_ids_)
        self._rebuild()
        return user_codes, item_codes

    def _rebuild(self):
        """Recompute the private caches derived from the public fitted state."""
        # A hash index of the catalogue: raw id -> column in one vectorised lookup.
        self._item_lookup = pd.Index(self.item_ids_)

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: never strip the live object
        state.pop("_item_lookup", None)
        return state

    def __setstate__(self, state):
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

    def _encode(self, df, *, timestamps=False, codes=None):
        """Shared work of ``encode`` / ``encode_timestamps`` / ``fit_transform``."""
        _check_frame(df, self._columns(times=timestamps))
        if timestamps and self.time_col is None:
            raise ValueError(
                "time_col is None, so there are no times to encode; set "
                "InteractionEncoder(time_col=...) to the column holding event times."
            )
        if codes is None:
            _check_ids(df[self.user_col], self.user_col)
            _check_ids(df[self.item_col], self.item_col)
        values = (
            np.ones(len(df))
            if self.value_col is None
            else _check_values(df[self.value_col], self.value_col)
        )
        times = _check_times(df[self.time_col], self.time_col) if timestamps else None
        if codes is None:
            user_codes, users = _sorted_codes(df[self.user_col], self.user_col)
            user_ids = np.asarray(users)
            item_codes = self._item_codes(df[self.item_col], name="df")
        else:
            user_codes, item_codes = codes
            user_ids = self.user_ids_
        known = item_codes >= 0
        if not known.all():
            n_new = len(pd.unique(df[self.item_col].to_numpy()[~known]))
            warnings.warn(
                f"Dropped {int((~known).sum())} interaction(s) with {n_new} item id(s) not "
                "seen in fit (handle_unknown='ignore'); refit the encoder to keep them.",
                UserWarning,
                stacklevel=3,
            )
            user_codes, item_codes, values = user_codes[known], item_codes[known], values[known]
            times = None if times is None else times[known]
        X, T = _cells(
            user_codes, item_codes, values, times, (len(user_ids), self.n_items_), self.dtype
        )
        if X.nnz and X.data.max() > MAX_INTERACTION_VALUE:
            # repeated (user, item) rows are summed: the sums obey the same bound
            what = "event counts" if self.value_col is None else f"sums of {self.value_col!r}"
            check_values(X.data, f"The encoded matrix ({what} per user and item)")
        return X, T, user_ids

    def encode(self, df):
        """Encode a log into a user x item matrix and the user id of each row.

        Parameters
        ----------
        df : pandas.DataFrame
            The log, one row per event. Users may be new; items must have been seen in
            ``fit`` unless ``handle_unknown="ignore"``.

        Returns
        -------
        X : scipy.sparse.csr_matrix of shape (n_users, n_items_)
            Canonical CSR matrix: summed ``value_col`` (or event counts) per cell.
        user_ids : ndarray of shape (n_users,)
            The raw user id of each row: the sorted unique users of ``df``.

        Examples
        --------
        >>> import pandas as pd
        >>> from skfewrec.preprocessing import InteractionEncoder
        >>> enc = InteractionEncoder().fit(pd.DataFrame({"user": [1, 2], "item": [10, 20]}))
        >>> X, users = enc.encode(pd.DataFrame({"user": [9, 9, 5], "item": [20, 20, 10]}))
        >>> X.toarray(), users
        (array([[1., 0.],
               [0., 2.]], dtype=float32), array([5, 9]))
        """
        check_is_fitted(self)
        X, _, user_ids = self._encode(df)
        return X, user_ids

    def encode_timestamps(self, df):
        """Encode the latest event time per (user, item) cell, aligned with :meth:`encode`.

        Parameters
        ----------
        df : pandas.DataFrame
            The log, with ``time_col``.

        Returns
        -------
        T : scipy.sparse.csr_matrix of shape (n_users, n_items_)
            Event times (int64, or float64 for float times) with exactly the sparsity
            pattern of ``encode(df)[0]``: read it through that pattern, since a time of
            0 is stored explicitly.
        user_ids : ndarray of shape (n_users,)
            The raw user id of each row.

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
        _, T, user_ids = self._encode(df, timestamps=True)
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
            The encoded log.

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
        codes = self._fit(df)
        return self._encode(df, timestamps=timestamps, codes=codes)

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
