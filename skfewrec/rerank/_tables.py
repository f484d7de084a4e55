"""Item and user side tables of the re-ranker: checked, and encoded as numbers.

Categorical columns become integer codes (LightGBM categorical features); numeric
and boolean columns are used as they are. Every refusal names the column or index
and the fix.
"""

import numpy as np
import pandas as pd


def _describe_dtype_fix(column, dtype):
    return (
        f"column {column!r} has dtype {dtype}; side features must be numbers, booleans or "
        f"pandas categoricals. Convert it with df[{column!r}].astype('category') or drop it "
        "(e.g. titles)."
    )


def _encode_columns(table, name, categories=None):
    """Numeric matrix of a side table; categoricals become codes (NaN when unknown).

    ``categories`` (column -> ndarray of values) fixes the categories learned at
    fit time; None learns them from ``table``.
    """
    if table.shape[1] == 0:
        raise ValueError(f"{name} has no columns; pass None instead of an empty table.")
    learned = {}
    out = np.empty(table.shape, dtype=np.float32)
    for j, column in enumerate(table.columns):
        col = table[column]
        dtype = col.dtype
        known = None if categories is None else categories.get(str(column))
        if known is not None:
            # a categorical of the fitted table: map values to the fitted codes
            if col.isna().any():
                raise _nan_error(name, column, col)
            codes = pd.Index(known).get_indexer(col.to_numpy()).astype(np.float32)
            codes[codes < 0] = np.nan  # an unseen category is "missing" for LightGBM
            out[:, j] = codes
            continue
        if isinstance(dtype, pd.CategoricalDtype):
            if categories is not None:
                raise TypeError(
                    f"{name} column {column!r} is categorical but was numeric at fit time; "
                    "pass the same columns with the same dtypes as in fit."
                )
            if col.isna().any():
                raise _nan_error(name, column, col)
            learned[str(column)] = np.asarray(dtype.categories)
            out[:, j] = col.cat.codes.to_numpy().astype(np.float32)
        elif pd.api.types.is_bool_dtype(dtype) or (
            pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
        ):
            values = col.to_numpy(dtype=np.float64, na_value=np.nan)
            if not np.all(np.isfinite(values)):
                raise _nan_error(name, column, col, values)
            out[:, j] = values
        else:
            raise TypeError(f"{name} " + _describe_dtype_fix(column, dtype))
    return out, learned


def _nan_error(name, column, col, values=None):
    bad = col.isna().to_numpy() if values is None else ~np.isfinite(values)
    first = col.index[np.flatnonzero(bad)[0]]
    return ValueError(
        f"{name} column {column!r} has {int(bad.sum())} NaN or infinite value(s) (first at "
        f"row {first!r}); side features must be complete. Impute them (e.g. with the "
        "column's median, or a category 'unknown') before fitting."
    )


def _check_table(table, name):
    if not isinstance(table, pd.DataFrame):
        raise TypeError(
            f"{name} must be a pandas DataFrame, got {type(table).__name__}; wrap an array "
            "with pd.DataFrame(array, columns=[...]) so that its features have names."
        )
    if table.columns.duplicated().any():
        dup = table.columns[table.columns.duplicated()][0]
        raise ValueError(f"{name} has the column {dup!r} twice; column names must be unique.")


def encode_item_table(table, n_items):
    """Check and encode an item side table indexed by item index (column of X).

    Parameters
    ----------
    table : pandas.DataFrame
        One row per item, indexed by the item's column number in X (0 to
        n_items - 1, in any order). Numeric and boolean columns are used as they
        are; categorical columns as integer codes.
    n_items : int
        The catalogue size.

    Returns
    -------
    values : ndarray of shape (n_items, n_columns), float32
        Rows in item order.
    names : list of str
    categorical : ndarray of shape (n_columns,), bool

    Examples
    --------
    >>> import pandas as pd
    >>> from skfewrec.rerank._tables import encode_item_table
    >>> table = pd.DataFrame({"genre_Drama": [1, 0], "kind": pd.Categorical(["a", "b"])},
    ...                      index=[1, 0])
    >>> values, names, categorical = encode_item_table(table, 2)
    >>> values.tolist(), names, categorical.tolist()
    ([[0.0, 1.0], [1.0, 0.0]], ['genre_Drama', 'kind'], [False, True])
    """
    name = "item_features"
    _check_table(table, name)
    index = table.index
    if not pd.api.types.is_integer_dtype(index.dtype):
        raise TypeError(
            f"{name} must be indexed by item index (the column number of the item in X, "
            f"an integer from 0 to {n_items - 1}); its index has dtype {index.dtype}. Map "
            "raw item ids to column numbers first (InteractionEncoder.item_index)."
        )
    ids = index.to_numpy().astype(np.int64)
    if index.has_duplicates:
        raise ValueError(
            f"{name} has duplicate item indices (first: {ids[index.duplicated()][0]}); "
            "keep one row per item."
        )
    outside = (ids < 0) | (ids >= n_items)
    if outside.any():
        raise ValueError(
            f"{name} has a row for item index {ids[outside][0]}, outside the catalogue "
            f"[0, {n_items}); it must be indexed by item column number. A table indexed by "
            "raw item ids in X's column order (e.g. load_movielens's item_features) becomes "
            "one with .reset_index(drop=True)."
        )
    if ids.size != n_items:
        missing = np.setdiff1d(np.arange(n_items), ids)
        raise ValueError(
            f"{name} has no row for {missing.size} item(s) (first: item index {missing[0]}); "
            f"it needs one row per column of X (0 to {n_items - 1}). Fill missing items "
            "with neutral values (e.g. 0 for genre flags)."
        )
    table = table.iloc[np.argsort(ids, kind="stable")]
    values, learned = _encode_columns(table, name)
    names = [str(c) for c in table.columns]
    categorical = np.array([c in learned for c in names], dtype=bool)
    return values, names, categorical


class UserTable:
    """The encoding of a user side table, learned at fit time.

    A user table has one row per row of X, in the same order (its index is
    ignored, as for ``sample_weight``): users are samples, and new users have no
    index of the fitted data.

    Parameters
    ----------
    names : list of str
        The columns, in order.
    categories : dict of str to ndarray
        The categories of each categorical column.

    Examples
    --------
    >>> import pandas as pd
    >>> from skfewrec.rerank._tables import UserTable
    >>> users = pd.DataFrame({"age": [20, 30], "gender": pd.Categorical(["F", "M"])})
    >>> spec, values = UserTable.fit(users, 2)
    >>> spec.transform(pd.DataFrame({"age": [40], "gender": ["X"]}), 1).tolist()
    [[40.0, nan]]
    """

    def __init__(self, names, categories):
        self.names = list(names)
        self.categories = dict(categories)

    @property
    def categorical(self):
        return np.array([n in self.categories for n in self.names], dtype=bool)

    @staticmethod
    def _check_rows(table, n_rows):
        _check_table(table, "user_features")
        if len(table) != n_rows:
            raise ValueError(
                f"user_features has {len(table)} rows but X has {n_rows} users; pass one row "
                "per row of X, in the same order."
            )

    @classmethod
    def fit(cls, table, n_rows):
        cls._check_rows(table, n_rows)
        values, learned = _encode_columns(table, "user_features")
        return cls([str(c) for c in table.columns], learned), values

    def transform(self, table, n_rows):
        self._check_rows(table, n_rows)
        got = [str(c) for c in table.columns]
        missing = [n for n in self.names if n not in got]
        extra = [n for n in got if n not in self.names]
        if missing or extra:
            raise ValueError(
                f"user_features must have the columns it had at fit time, {self.names}; "
                f"missing: {missing}, unexpected: {extra}."
            )
        table = table.set_axis(got, axis=1)[self.names]
        values, _ = _encode_columns(table, "user_features", self.categories)
        return values
