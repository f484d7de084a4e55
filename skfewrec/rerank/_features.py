"""Features of the LightGBM re-ranker, built for many users at once.

Three parts:

- :func:`warm_statistics`: what the warm interactions say about items, computed
  once per set of warm users (per cross-fitting fold at fit time, on every warm
  user for serving): item counts, recent counts, and a sparse item-item
  co-occurrence matrix restricted to each item's strongest neighbours.
- :func:`encode_item_table` and :class:`UserTable`: the checked, numeric form of
  the side tables (categoricals become integer codes).
- :class:`FeatureBuilder`: for users (support rows) and their candidates, the
  feature matrix of shape ``(n_users * n_candidates, n_features)``, with no
  Python loop over users: gathers, padded batched products and scatter-adds.
"""

from numbers import Integral

import numpy as np
import pandas as pd
import scipy.sparse as sp

#: each item keeps its strongest co-occurring items (by cosine), symmetrised
COOC_NEIGHBORS = 200
#: warm users kept as neighbours of a user (user-kNN feature); 0 disables it
USER_NEIGHBORS = 50
#: "recent" interactions: the latest share of the warm interactions by time
RECENT_FRACTION = 0.1
#: float32 elements a feature block may hold (bounds memory)
BLOCK_ELEMENTS = 1 << 22


# ------------------------------------------------------------------ warm statistics
def _binary(X):
    B = sp.csr_matrix(X, dtype=np.float32, copy=True)
    B.data[:] = 1.0
    return B


def pruned_cooccurrence(X, n_neighbors=None, block_elements=BLOCK_ELEMENTS):
    """Item-item co-occurrence counts, each item keeping its strongest neighbours.

    ``C[i, j]`` is the number of users (rows of ``X``) who have both items. Row
    ``i`` keeps the ``n_neighbors`` items ``j`` with the largest cosine
    ``C[i, j] / sqrt(C[i, i] C[j, j])`` (so the matrix is not symmetric: row
    ``i`` lists ``i``'s neighbours), and the diagonal is zero. Computed in blocks
    of rows of ``X^T X``, so memory stays bounded for large catalogues, and
    every row has at most ``n_neighbors`` entries, which bounds the cost of the
    features per shot.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
    n_neighbors : int, default=None
        Neighbours kept per item (None: ``COOC_NEIGHBORS``).
    block_elements : int
        Dense elements of one block of ``X^T X``.

    Returns
    -------
    C : csr_matrix of shape (n_items, n_items), float32
        Canonical CSR of co-occurrence counts.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.rerank._features import pruned_cooccurrence
    >>> X = np.array([[1, 1, 0], [1, 1, 1], [0, 0, 1]])
    >>> pruned_cooccurrence(X).toarray()
    array([[0., 2., 1.],
           [2., 0., 1.],
           [1., 1., 0.]], dtype=float32)
    >>> pruned_cooccurrence(X, n_neighbors=1).toarray()  # ties: the lower index
    array([[0., 2., 0.],
           [2., 0., 0.],
           [1., 0., 0.]], dtype=float32)
    """
    n_neighbors = COOC_NEIGHBORS if n_neighbors is None else n_neighbors
    B = _binary(sp.csr_matrix(X))
    n_items = B.shape[1]
    counts = np.asarray(B.sum(axis=0)).ravel()
    inv_norm = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    Bt = B.T.tocsr()
    block = max(1, int(block_elements // max(n_items, 1)))
    rows, cols, vals = [], [], []
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        D = np.asarray((Bt[start:stop] @ B).toarray(), dtype=np.float32)
        D[np.arange(stop - start), np.arange(start, stop)] = 0.0
        if n_neighbors < n_items:
            # ties broken by item index, so the result does not depend on the block size
            cos = D * inv_norm[start:stop, None] * inv_norm[None, :]
            keep = np.argsort(-cos, axis=1, kind="stable")[:, :n_neighbors]
            r = np.repeat(np.arange(stop - start), n_neighbors)
            c = keep.ravel()
        else:
            r, c = np.nonzero(D)
        v = D[r, c]
        nz = v > 0
        rows.append(r[nz] + start)
        cols.append(c[nz])
        vals.append(v[nz])
    C = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_items, n_items),
        dtype=np.float32,
    )
    C.sum_duplicates()
    return C


def warm_statistics(X, *, times=None, recent_threshold=None, n_neighbors=None):
    """What the warm users' interactions say about items.

    Parameters
    ----------
    X : csr_matrix of shape (n_users, n_items)
        Warm interactions.
    times : csr_matrix of shape (n_users, n_items), default=None
        Their timestamps, with the sparsity pattern of ``X``, scaled to [0, 1]
        over the whole warm period (so that folds share one scale).
    recent_threshold : float, default=None
        Interactions at or after this time are "recent" (needed with ``times``).
    n_neighbors : int, default=None
        Neighbours kept per item in the co-occurrence matrix (None:
        ``COOC_NEIGHBORS``).

    Returns
    -------
    stats : dict
        ``item_counts`` (users per item), ``n_users``, ``recent_counts``,
        ``n_recent`` and ``item_time`` (mean scaled time of the item's
        interactions, NaN for items without any; all None without times),
        ``cooccurrence`` (csr counts) and ``warm`` (binary X).

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.rerank._features import warm_statistics
    >>> stats = warm_statistics(np.array([[1.0, 0, 2], [0, 1, 1]]))
    >>> stats["item_counts"].tolist(), stats["n_users"]
    ([1.0, 1.0, 2.0], 2)
    """
    X = sp.csr_matrix(X)
    item_counts = np.bincount(X.indices, minlength=X.shape[1]).astype(np.float64)
    recent_counts = n_recent = item_time = None
    if times is not None:
        t = np.asarray(times.data, dtype=np.float64)
        recent = t >= recent_threshold
        recent_counts = np.bincount(X.indices[recent], minlength=X.shape[1]).astype(np.float64)
        n_recent = int(recent.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            item_time = np.bincount(X.indices, weights=t, minlength=X.shape[1]) / item_counts
    return {
        "item_counts": item_counts,
        "n_users": int(X.shape[0]),
        "recent_counts": recent_counts,
        "n_recent": n_recent,
        "item_time": item_time,
        "cooccurrence": pruned_cooccurrence(X, n_neighbors),
        "warm": _binary(X),
    }


def log_frequency(counts, total):
    """``log((count + 1) / (total + 1))``: a popularity on the same scale for any
    number of warm users (folds have fewer users than the whole warm set)."""
    return np.log((np.asarray(counts, dtype=np.float64) + 1.0) / (total + 1.0)).astype(np.float32)


# ------------------------------------------------------------------ side tables
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
    >>> from skfewrec.rerank._features import encode_item_table
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
    >>> from skfewrec.rerank._features import UserTable
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


# ------------------------------------------------------------------ feature builder
def _segments(indptr, rows):
    """Positions of the CSR entries of ``rows`` (concatenated) and their lengths."""
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    total = int(lengths.sum())
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return offsets + np.arange(total), lengths


def _padded_support(S, rows, width, pad):
    """(b, width) item indices of the support of ``rows``, padded with ``pad``."""
    idx = np.full((rows.size, width), pad, dtype=np.int64)
    pos, lengths = _segments(S.indptr, rows)
    mask = np.arange(width)[None, :] < lengths[:, None]
    idx[mask] = S.indices[pos]
    return idx, mask


class FeatureBuilder:
    """Re-ranking features for (user, candidate) pairs, from one adapter and one warm set.

    Parameters
    ----------
    item_factors : ndarray of shape (n_items, n_components) or None
        The adapter's item factors (None for adapters without factors).
    stats : dict
        From :func:`warm_statistics`.
    item_side : tuple (values, names, categorical) or None
        From :func:`encode_item_table`.
    user_side : UserTable or None
        The user table's encoding (its values are passed to :meth:`build`).
    """

    def __init__(self, item_factors, stats, item_side=None, user_side=None, fold_in=None):
        counts = stats["item_counts"]
        self.n_items = counts.size
        self.log_popularity = log_frequency(counts, stats["n_users"])
        self.recent_log_popularity = (
            None
            if stats.get("recent_counts") is None
            else log_frequency(stats["recent_counts"], stats["n_recent"])
        )
        self.item_time = None
        if stats.get("item_time") is not None:
            self.item_time = np.asarray(stats["item_time"], dtype=np.float32)
        C = sp.csr_matrix(stats["cooccurrence"], dtype=np.float64)
        rows = np.repeat(np.arange(self.n_items), np.diff(C.indptr))
        safe = np.maximum(counts, 1.0)
        # both share C's structure: row = support item s, column = candidate c
        self.cooc_indptr, self.cooc_indices = C.indptr, C.indices.astype(np.int64)
        self.cooc_cosine = (C.data / np.sqrt(safe[rows] * safe[C.indices])).astype(np.float32)
        self.cooc_conditional = (C.data / safe[rows]).astype(np.float32)  # P(c | s)

        self.warm = None
        if stats.get("warm") is not None and USER_NEIGHBORS:
            self.warm = sp.csr_matrix(stats["warm"], dtype=np.float32)
            self.warm_t = self.warm.T.tocsr()
            self.warm_inv_norm = 1.0 / np.sqrt(np.maximum(np.diff(self.warm.indptr), 1.0))

        self.factors = None
        if item_factors is not None:
            V = np.asarray(item_factors, dtype=np.float32)
            norm = np.linalg.norm(V, axis=1)
            Vn = V / np.maximum(norm, 1e-12)[:, None]
            # relative to the mean norm: the scale of factors changes with the warm set
            self.relative_norm = (norm / max(norm.mean(), 1e-12)).astype(np.float32)
            # one zero row: the target of padded support slots
            self.factors = np.vstack([Vn, np.zeros((1, V.shape[1]), np.float32)])

        self.item_values = self.item_names = None
        if item_side is not None:
            values, names, categorical = item_side
            self.item_values, self.item_names = values, list(names)
            numeric = values[:, ~categorical]
            self.profile = None
            if numeric.shape[1]:
                scale = np.abs(numeric).max(axis=0)
                self.profile = (numeric / np.where(scale > 0, scale, 1.0)).astype(np.float32)
                self.profile_norm = np.linalg.norm(self.profile, axis=1)
            self.item_categorical = [
                (names[j], values[:, j].astype(np.int64)) for j in np.flatnonzero(categorical)
            ]
            self.item_categorical_mask = categorical
        self.user_side = user_side
        self.fold_in = fold_in if item_factors is not None else None
        self.item_factors = None if item_factors is None else np.asarray(item_factors, np.float32)
        self.feature_names = self._names()

    def _names(self):
        names = ["adapter_score", "adapter_rank", "adapter_score_gap", "item_log_popularity"]
        if self.recent_log_popularity is not None:
            names.append("item_recent_log_popularity")
        if self.item_time is not None:
            names += ["item_time", "item_time_gap"]
        names += ["support_size", "support_log_popularity"]
        if self.factors is not None:
            names += ["item_factor_norm", "factor_cosine_max", "factor_cosine_mean"]
        if self.fold_in is not None:
            names += ["plain_score", "plain_rank"]
        names += [
            "cooc_cosine_max",
            "cooc_cosine_mean",
            "cooc_conditional_max",
            "cooc_conditional_mean",
        ]
        if self.warm is not None:
            names += ["user_knn_score", "user_knn_similarity"]
        # the candidate's rank among the user's candidates by other signals
        names += ["popularity_rank", "cooc_rank"]
        if self.factors is not None:
            names.append("factor_cosine_rank")
        if self.item_values is not None:
            names += [f"item:{n}" for n in self.item_names]
            if self.profile is not None:
                names += ["item_profile_dot", "item_profile_cosine"]
            names += [f"item_same:{n}" for n, _ in self.item_categorical]
        if self.user_side is not None:
            names += [f"user:{n}" for n in self.user_side.names]
        return names

    @property
    def categorical_features(self):
        """Positions of the features LightGBM treats as categorical."""
        cats = []
        if self.item_values is not None:
            first = self.feature_names.index(f"item:{self.item_names[0]}")
            cats += list(first + np.flatnonzero(self.item_categorical_mask))
        if self.user_side is not None:
            first = self.feature_names.index(f"user:{self.user_side.names[0]}")
            cats += list(first + np.flatnonzero(self.user_side.categorical))
        return [int(c) for c in cats]

    def build(self, S, candidates, scores, user_values=None):
        """The feature matrix of every (user, candidate) pair.

        Parameters
        ----------
        S : csr_matrix of shape (n_users, n_items)
            The users' support sets.
        candidates : ndarray of shape (n_users, n_candidates), int
            Candidate item indices, -1 for an empty slot.
        scores : ndarray of shape (n_users, n_candidates)
            The adapter's scores of the candidates, best first.
        user_values : ndarray of shape (n_users, n_user_features), default=None
            Encoded user side features (required when the builder has a user table).

        Returns
        -------
        F : ndarray of shape (n_users * n_candidates, n_features), float32
            Row ``u * n_candidates + j`` describes candidate j of user u; rows of
            empty slots hold meaningless values and must be dropped. Fortran-ordered
            (each feature contiguous).
        """
        n, n_cand = candidates.shape
        cand = np.where(candidates >= 0, candidates, 0)
        # column-major: each feature is written contiguously; LightGBM reads
        # Fortran-ordered matrices without a copy
        F = np.empty((len(self.feature_names), n, n_cand), dtype=np.float32)
        sizes = np.diff(S.indptr).astype(np.float32)
        support_count = np.maximum(sizes, 1.0)
        B = _binary(S)
        col = 0

        def put(values):
            nonlocal col
            F[col] = values
            col += 1

        # the adapter's scores, made scale-free: fold adapters (fitted on fewer
        # users) and the serving adapter score on different scales
        scores = np.asarray(scores, dtype=np.float32)
        finite = np.where(np.isfinite(scores), scores, np.nan)
        top = finite[:, :1]
        low = np.nanmin(finite, axis=1, initial=np.inf)
        with np.errstate(invalid="ignore", divide="ignore"):
            put(finite / np.maximum(np.abs(top), 1e-12))
            put(np.arange(n_cand, dtype=np.float32)[None, :])
            put((top - finite) / np.maximum(top - low[:, None], 1e-12))
        put(self.log_popularity[cand])
        if self.recent_log_popularity is not None:
            put(self.recent_log_popularity[cand])
        if self.item_time is not None:
            # the "era" of the candidate's audience against that of the shots'
            known = np.isfinite(self.item_time)
            t_support = (B @ np.where(known, self.item_time, 0.0)) / np.maximum(
                B @ known.astype(np.float32), 1.0
            )
            t_cand = self.item_time[cand]
            put(t_cand)
            put(t_cand - np.where(sizes > 0, t_support, np.nan)[:, None])
        put(sizes[:, None])
        put(((B @ self.log_popularity) / support_count)[:, None])
        if self.factors is not None:
            put(self.relative_norm[cand])
            cmax, cmean = self._factor_cosines(S, B, cand, support_count)
            put(cmax)
            put(cmean)
        valid = candidates >= 0
        cooc = self._cooccurrence(S, cand, valid, support_count)
        for values in cooc:
            put(values)
        if self.warm is not None:
            knn_score, knn_sim = self._user_knn(B, cand, valid)
            put(knn_score)
            put(knn_sim[:, None])
        put(_rank_within(self.log_popularity[cand], valid))
        put(_rank_within(cooc[3], valid))
        if self.factors is not None:
            put(_rank_within(cmean, valid))
        if self.fold_in is not None:
            U = np.asarray(self.fold_in(S), dtype=np.float32)
            plain = np.einsum("ncf,nf->nc", self.item_factors[cand], U)
            top = np.max(np.where(valid, plain, -np.inf), axis=1, keepdims=True)
            put(plain / np.maximum(np.abs(top), 1e-12))
            put(_rank_within(plain, valid))
        if self.item_values is not None:
            k = self.item_values.shape[1]
            F[col : col + k] = np.moveaxis(self.item_values[cand], 2, 0)
            col += k
            if self.profile is not None:
                user_profile = (B @ self.profile) / support_count[:, None]
                cand_profile = self.profile[cand]
                dot = np.einsum("ncp,np->nc", cand_profile, user_profile)
                norm = self.profile_norm[cand] * np.linalg.norm(user_profile, axis=1)[:, None]
                put(dot)
                put(np.divide(dot, norm, out=np.zeros_like(dot), where=norm > 0))
            for _, codes in self.item_categorical:
                put(self._same_category(S, cand, codes, support_count))
        if self.user_side is not None:
            if user_values is None:
                raise ValueError("user_values are required: the builder has a user table.")
            k = user_values.shape[1]
            F[col : col + k] = user_values.T[:, :, None]
            col += k
        return F.reshape(len(self.feature_names), n * n_cand).T

    def _factor_cosines(self, S, B, cand, support_count):
        """Max and mean cosine between each candidate and the support items."""
        n, n_cand = cand.shape
        Vn = self.factors
        pad = Vn.shape[0] - 1
        Cf = Vn[cand]  # (n, C, f)
        mean_support = (B @ Vn[:pad]) / support_count[:, None]
        cmean = np.einsum("ncf,nf->nc", Cf, mean_support.astype(np.float32))
        cmax = np.zeros((n, n_cand), dtype=np.float32)
        sizes = np.diff(S.indptr)
        order = np.argsort(sizes, kind="stable")
        order = order[sizes[order] > 0]
        start = 0
        while start < order.size:
            width = int(sizes[order[start]])
            step = max(1, BLOCK_ELEMENTS // (n_cand * max(width, 1)))
            stop = min(order.size, start + step)
            width = int(sizes[order[stop - 1]])
            while stop - start > 1 and (stop - start) * n_cand * width > BLOCK_ELEMENTS:
                stop = start + (stop - start) // 2
                width = int(sizes[order[stop - 1]])
            rows = order[start:stop]
            idx, mask = _padded_support(S, rows, width, pad)
            G = np.matmul(Cf[rows], Vn[idx].transpose(0, 2, 1))  # (b, C, w)
            G[np.broadcast_to(~mask[:, None, :], G.shape)] = -np.inf
            cmax[rows] = G.max(axis=2)
            start = stop
        return cmax, cmean

    def _slot_blocks(self, cand, valid, block):
        """Yield ``(start, stop, slot_map)`` over blocks of users.

        ``slot_map[u * n_items + item]`` is the position of ``item`` among user
        ``start + u``'s candidates, counted from the block's first candidate
        (``u * n_candidates + j``), or -1; it is reset after each block.
        """
        n, n_cand = cand.shape
        n_items = self.n_items
        slot_map = np.full(min(block, n) * n_items, -1, dtype=np.int64)
        for start in range(0, n, block):
            stop = min(start + block, n)
            local = np.arange(stop - start, dtype=np.int64)[:, None]
            ok = valid[start:stop]
            at = (local * n_items + cand[start:stop])[ok]
            slot_map[at] = (local * n_cand + np.arange(n_cand))[ok]
            yield start, stop, slot_map
            slot_map[at] = -1

    def _hits(self, slot_map, row_owner, indptr, indices, rows):
        """For the CSR rows ``rows`` (row i belonging to block user ``row_owner[i]``),
        the candidate slots their entries hit and the entries' positions."""
        pos, lengths = _segments(indptr, rows)
        owner = np.repeat(row_owner * self.n_items, lengths)
        hit = slot_map[owner + indices[pos]]
        keep = hit >= 0
        return hit[keep], pos[keep], np.flatnonzero(keep)

    def _cooccurrence(self, S, cand, valid, support_count):
        """Maximum and mean over the shots of the candidate's co-occurrence cosine
        and conditional frequency.

        Each shot's neighbour list is scattered against the users' candidate
        slots; only the entries that hit a candidate are reduced.
        """
        n, n_cand = cand.shape
        out = np.zeros((4, n * n_cand), dtype=np.float32)
        block = max(1, BLOCK_ELEMENTS // max(self.n_items, 1))
        for start, stop, slot_map in self._slot_blocks(cand, valid, block):
            sub = S[start:stop]
            owner = np.repeat(np.arange(stop - start, dtype=np.int64), np.diff(sub.indptr))
            hit, pos, _ = self._hits(
                slot_map, owner, self.cooc_indptr, self.cooc_indices, sub.indices
            )
            size = (stop - start) * n_cand
            part = out[:, start * n_cand : stop * n_cand]
            for i, values in enumerate((self.cooc_cosine, self.cooc_conditional)):
                v = values[pos]
                np.maximum.at(part[2 * i], hit, v)
                part[2 * i + 1] = np.bincount(hit, weights=v, minlength=size)
        out = out.reshape(4, n, n_cand)
        out[1] /= support_count[:, None]
        out[3] /= support_count[:, None]
        return out

    def _user_knn(self, B, cand, valid):
        """Similarity-weighted share of the user's nearest warm users who have the candidate.

        Similarity is the cosine between binary rows (shots against a warm
        user's items); each user keeps its ``USER_NEIGHBORS`` most similar warm
        users. Also returns the mean similarity of these neighbours.
        """
        n, n_cand = cand.shape
        n_warm = self.warm.shape[0]
        k = min(USER_NEIGHBORS, n_warm)
        score = np.zeros(n * n_cand, dtype=np.float32)
        similarity = np.zeros(n, dtype=np.float32)
        block = max(1, BLOCK_ELEMENTS // max(self.n_items, n_warm, 1))
        for start, stop, slot_map in self._slot_blocks(cand, valid, block):
            b = stop - start
            # the user's own norm does not change its ranking of warm users
            P = (B[start:stop] @ self.warm_t).toarray() * self.warm_inv_norm[None, :]
            if k < n_warm:
                top = np.argpartition(-P, k - 1, axis=1)[:, :k]
            else:
                top = np.broadcast_to(np.arange(n_warm), (b, n_warm))
            sim = np.take_along_axis(P, top, axis=1)
            sim /= np.sqrt(np.maximum(np.diff(B.indptr[start : stop + 1]), 1.0))[:, None]
            total = sim.sum(axis=1)
            similarity[start:stop] = total / k
            N = sp.csr_matrix(
                (sim.ravel(), top.ravel(), np.arange(0, b * k + 1, k)), shape=(b, n_warm)
            )
            R = N @ self.warm
            # read R at the candidates only, through the slot map
            owner = np.repeat(np.arange(b, dtype=np.int64) * self.n_items, np.diff(R.indptr))
            hit = slot_map[owner + R.indices]
            keep = hit >= 0
            got = np.zeros(b * n_cand, dtype=np.float32)
            got[hit[keep]] = R.data[keep]
            got = got.reshape(b, n_cand) / np.maximum(total, 1e-12)[:, None]
            score[start * n_cand : stop * n_cand] = got.ravel()
        return score.reshape(n, n_cand), similarity

    def _same_category(self, S, cand, codes, support_count):
        """Share of the support items with the candidate's category."""
        n = cand.shape[0]
        n_cat = int(codes.max()) + 1 if codes.size else 1
        owner = np.repeat(np.arange(n), np.diff(S.indptr))
        share = np.bincount(owner * n_cat + codes[S.indices], minlength=n * n_cat)
        share = share.reshape(n, n_cat) / support_count[:, None]
        return np.take_along_axis(share, codes[cand], axis=1)


def _rank_within(values, valid):
    """Rank (0 = largest) of each value within its row, empty slots ranked last."""
    keyed = np.where(valid, values, -np.inf)
    order = np.argsort(-keyed, axis=1, kind="stable")
    rank = np.empty(values.shape, dtype=np.float32)
    np.put_along_axis(rank, order, np.arange(values.shape[1], dtype=np.float32)[None, :], axis=1)
    return rank


def check_shots_range(n_shots_range):
    """Check ``n_shots_range = (low, high)`` with ``0 <= low <= high``.

    Examples
    --------
    >>> from skfewrec.rerank._features import check_shots_range
    >>> check_shots_range((1, 20))
    (1, 20)
    """
    ok = (
        isinstance(n_shots_range, tuple | list)
        and len(n_shots_range) == 2
        and all(isinstance(v, Integral) and not isinstance(v, bool) for v in n_shots_range)
    )
    if not ok or not 0 <= n_shots_range[0] <= n_shots_range[1]:
        raise ValueError(
            "n_shots_range must be a pair of integers (low, high) with 0 <= low <= high, the "
            f"range of support sizes of the training episodes; got {n_shots_range!r}."
        )
    return int(n_shots_range[0]), int(n_shots_range[1])
