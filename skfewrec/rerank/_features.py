"""The re-ranker's features: one registry of (name, computation) pairs.

:data:`FEATURES` lists every feature once, in column order: its name, the
function that computes its column from a :class:`Block` (one block of users and
their candidates), and when it applies (e.g. only with timestamps, or with an
adapter that has item factors). :class:`FeatureBuilder` walks the registry to
produce both ``feature_names`` and the columns of :meth:`FeatureBuilder.build`,
so a name cannot label another feature's column.

Every column is computed for all the block's users at once, with no Python loop
over users: gathers, padded batched products and scatter-adds. Intermediate
results that several features share (co-occurrence sums, factor cosines, the
plain fold-in) are computed once per block, on first use.
"""

from collections.abc import Callable
from functools import cached_property, partial
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from .._core.solvers import _gather_padded, _padded_batches
from ._legacy import LegacyUserKNN
from ._warm import BLOCK_ELEMENTS, binary, log_frequency


# ------------------------------------------------------------------ scatter helpers
def _segments(indptr, rows):
    """Positions of the CSR entries of ``rows`` (concatenated) and their lengths."""
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    total = int(lengths.sum())
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return offsets + np.arange(total), lengths


def slot_blocks(cand, valid, n_items, block):
    """Yield ``(start, stop, slot_map)`` over blocks of at most ``block`` users.

    ``slot_map[u * n_items + item]`` is the position of ``item`` among user
    ``start + u``'s candidates, counted from the block's first candidate
    (``u * n_candidates + j``), or -1; it is reset after each block.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.rerank._features import slot_blocks
    >>> cand = np.array([[2, 0], [1, -1]])
    >>> [(start, stop, m[:6].tolist()) for start, stop, m in slot_blocks(cand, cand >= 0, 3, 2)]
    [(0, 2, [1, -1, 0, -1, 2, -1])]
    """
    n, n_cand = cand.shape
    slot_map = np.full(min(block, n) * n_items, -1, dtype=np.int64)
    for start in range(0, n, block):
        stop = min(start + block, n)
        local = np.arange(stop - start, dtype=np.int64)[:, None]
        ok = valid[start:stop]
        at = (local * n_items + cand[start:stop])[ok]
        slot_map[at] = (local * n_cand + np.arange(n_cand))[ok]
        yield start, stop, slot_map
        slot_map[at] = -1


def _rank_within(values, valid):
    """Rank (0 = largest) of each value within its row, empty slots ranked last."""
    keyed = np.where(valid, values, -np.inf)
    order = np.argsort(-keyed, axis=1, kind="stable")
    rank = np.empty(values.shape, dtype=np.float32)
    np.put_along_axis(rank, order, np.arange(values.shape[1], dtype=np.float32)[None, :], axis=1)
    return rank


# ------------------------------------------------------------------ one block of users
class Block:
    """One block of users and their candidates: what the feature computations read.

    Shared intermediate results are cached properties, computed on first use.

    Parameters
    ----------
    builder : FeatureBuilder
        The builder whose features read the block.
    S, candidates, scores, user_values
        As for :meth:`FeatureBuilder.build`.
    """

    def __init__(self, builder, S, candidates, scores, user_values=None):
        self.fb = builder
        self.S = S
        self.valid = candidates >= 0
        self.cand = np.where(self.valid, candidates, 0)
        self.n_cand = candidates.shape[1]
        self.B = binary(S)
        self.sizes = np.diff(S.indptr).astype(np.float32)
        self.support_count = np.maximum(self.sizes, 1.0)
        scores = np.asarray(scores, dtype=np.float32)
        self.scores = np.where(np.isfinite(scores), scores, np.nan)
        self.user_values = user_values

    def support_mean(self, item_values):
        """Mean of ``item_values`` (n_items, ...) over each user's shots (0 without shots)."""
        count = self.support_count if item_values.ndim == 1 else self.support_count[:, None]
        return (self.B @ item_values) / count

    @cached_property
    def factor_cosines(self):
        """Max and mean cosine between each candidate and the shots, in factor space."""
        Vn = self.fb.factors  # unit rows, plus a zero row for padded shot slots
        pad = Vn.shape[0] - 1
        Cf = Vn[self.cand]  # (n, C, f)
        cmean = np.einsum("ncf,nf->nc", Cf, self.support_mean(Vn[:pad]).astype(np.float32))
        cmax = np.zeros(self.cand.shape, dtype=np.float32)
        S = self.S
        for rows, width in _padded_batches(S.indptr, BLOCK_ELEMENTS // self.n_cand):
            if width == 0:
                continue
            idx, _, _ = _gather_padded(rows, width, S.indptr, S.indices, S.data, S.data, pad)
            G = np.matmul(Cf[rows], Vn[idx].transpose(0, 2, 1))  # (b, C, width)
            G[np.broadcast_to((idx == pad)[:, None, :], G.shape)] = -np.inf
            cmax[rows] = G.max(axis=2)
        cmax[self.sizes == 0] = 0.0  # no shot: no similarity
        return cmax, cmean

    @cached_property
    def cooccurrence(self):
        """Sums and maxima over the shots of the co-occurrence table at the candidates.

        Rows: cosine max, cosine mean, conditional max, conditional mean, and the
        sum of the counts. Each shot's neighbour list is scattered against the
        users' candidate slots; only the entries that hit a candidate are reduced.
        """
        fb, S = self.fb, self.S
        n, n_cand = self.cand.shape
        out = np.zeros((5, n * n_cand), dtype=np.float32)
        block = max(1, BLOCK_ELEMENTS // max(fb.n_items, 1))
        for start, stop, slot_map in slot_blocks(self.cand, self.valid, fb.n_items, block):
            sub = S[start:stop]
            owner = np.repeat(np.arange(stop - start, dtype=np.int64), np.diff(sub.indptr))
            pos, lengths = _segments(fb.cooc_indptr, sub.indices)
            hit = slot_map[np.repeat(owner * fb.n_items, lengths) + fb.cooc_indices[pos]]
            keep = hit >= 0
            hit, pos = hit[keep], pos[keep]
            size = (stop - start) * n_cand
            part = out[:, start * n_cand : stop * n_cand]
            for i, values in enumerate((fb.cooc_cosine, fb.cooc_conditional)):
                v = values[pos]
                np.maximum.at(part[2 * i], hit, v)
                part[2 * i + 1] = np.bincount(hit, weights=v, minlength=size)
            part[4] = np.bincount(hit, weights=fb.cooc_counts[pos], minlength=size)
        out = out.reshape(5, n, n_cand)
        out[1] /= self.support_count[:, None]
        out[3] /= self.support_count[:, None]
        return out

    @cached_property
    def legacy_user_knn(self):
        blocks = partial(slot_blocks, self.cand, self.valid, self.fb.n_items)
        return self.fb.legacy_knn(self.B, self.cand, blocks, self.fb.n_items)

    @cached_property
    def plain(self):
        """Scores of the candidates by the plain fold-in of the factor source."""
        U = np.asarray(self.fb.fold_in(self.S), dtype=np.float32)
        return np.einsum("ncf,nf->nc", self.fb.item_factors[self.cand], U)

    @cached_property
    def profile_dot(self):
        """Dot products of the candidates' side profiles with the shots' mean profile."""
        fb = self.fb
        user_profile = self.support_mean(fb.profile)
        dot = np.einsum("ncp,np->nc", fb.profile[self.cand], user_profile)
        norm = fb.profile_norm[self.cand] * np.linalg.norm(user_profile, axis=1)[:, None]
        return dot, norm


# ------------------------------------------------------------------ computations
def _adapter_score(b):
    return b.scores / np.maximum(np.abs(b.scores[:, :1]), 1e-12)


def _adapter_rank(b):
    return np.arange(b.n_cand, dtype=np.float32)[None, :]


def _adapter_score_gap(b):
    top = b.scores[:, :1]
    low = np.nanmin(b.scores, axis=1, initial=np.inf)
    return (top - b.scores) / np.maximum(top - low[:, None], 1e-12)


def _item_time_gap(b):
    # the "era" of the candidate's audience against that of the shots'
    item_time = b.fb.item_time
    known = np.isfinite(item_time)
    t_support = (b.B @ np.where(known, item_time, 0.0)) / np.maximum(
        b.B @ known.astype(np.float32), 1.0
    )
    return item_time[b.cand] - np.where(b.sizes > 0, t_support, np.nan)[:, None]


def _similar_users_score(b):
    """User-kNN with every warm user a neighbour, weighted by overlap with the shots.

    With ``sim(u, v) = |S_u & I_v|``, ``sum_v sim(u, v) [c in I_v] / sum_v sim(u, v)``
    equals ``sum_s C[s, c] / sum_s count_s`` over the shots s: read from the
    co-occurrence table, without any warm user's row.
    """
    return b.cooccurrence[4] / np.maximum(b.B @ b.fb.item_counts, 1e-12)[:, None]


def _plain_score(b):
    top = np.max(np.where(b.valid, b.plain, -np.inf), axis=1, keepdims=True)
    return b.plain / np.maximum(np.abs(top), 1e-12)


def _profile_cosine(b):
    dot, norm = b.profile_dot
    return np.divide(dot, norm, out=np.zeros_like(dot), where=norm > 0)


def _same_category(codes, b):
    """Share of the shots with the candidate's category."""
    n = b.cand.shape[0]
    n_cat = int(codes.max()) + 1 if codes.size else 1
    owner = np.repeat(np.arange(n), np.diff(b.S.indptr))
    share = np.bincount(owner * n_cat + codes[b.S.indices], minlength=n * n_cat)
    share = share.reshape(n, n_cat) / b.support_count[:, None]
    return np.take_along_axis(share, codes[b.cand], axis=1)


# ------------------------------------------------------------------ the registry
class Feature(NamedTuple):
    """One column: its name, its computation, and whether LightGBM treats it as categorical."""

    name: str
    compute: Callable  # Block -> array broadcastable to (n_users, n_candidates)
    categorical: bool = False


class Entry(NamedTuple):
    """A registry entry: one feature, or a family of them (one per side-table column).

    ``when(builder)`` says whether the entry applies; a family's ``compute`` is
    ``builder -> list of Feature``.
    """

    name: str
    description: str
    compute: Callable
    when: Callable = None
    family: bool = False

    def features(self, builder):
        if self.when is not None and not self.when(builder):
            return []
        return self.compute(builder) if self.family else [Feature(self.name, self.compute)]


def _has(attribute):
    return lambda builder: getattr(builder, attribute) is not None


def _item_columns(builder):
    return [
        Feature(f"item:{name}", lambda b, j=j: b.fb.item_values[b.cand, j], bool(categorical))
        for j, (name, categorical) in enumerate(
            zip(builder.item_names, builder.item_categorical_mask)
        )
    ]


def _item_same_category(builder):
    return [
        Feature(f"item_same:{name}", partial(_same_category, codes))
        for name, codes in builder.item_categorical
    ]


def _user_columns(builder):
    return [
        Feature(f"user:{name}", lambda b, j=j: b.user_values[:, j, None], bool(categorical))
        for j, (name, categorical) in enumerate(
            zip(builder.user_side.names, builder.user_side.categorical)
        )
    ]


_FACTORS = _has("factors")
_FOLD_IN = _has("fold_in")
_TIMES = _has("item_time")
_ITEMS = _has("item_values")
_LEGACY = _has("legacy_knn")

#: every feature, in column order
FEATURES = (
    Entry("adapter_score", "the adapter's score over the user's best (scale-free)", _adapter_score),
    Entry("adapter_rank", "the candidate's rank in the adapter's order", _adapter_rank),
    Entry(
        "adapter_score_gap",
        "the score's place between the best (0) and the worst (1) candidate's",
        _adapter_score_gap,
    ),
    Entry(
        "item_log_popularity",
        "log share of warm users with the item",
        lambda b: b.fb.log_popularity[b.cand],
    ),
    Entry(
        "item_recent_log_popularity",
        "the same over the latest 10% of warm interactions (with ``timestamps``)",
        lambda b: b.fb.recent_log_popularity[b.cand],
        _has("recent_log_popularity"),
    ),
    Entry(
        "item_time",
        "mean time of the item's warm interactions (with ``timestamps``)",
        lambda b: b.fb.item_time[b.cand],
        _TIMES,
    ),
    Entry("item_time_gap", "its gap to the shots' mean item time", _item_time_gap, _TIMES),
    Entry("support_size", "the number of shots", lambda b: b.sizes[:, None]),
    Entry(
        "support_log_popularity",
        "the shots' mean log popularity",
        lambda b: b.support_mean(b.fb.log_popularity)[:, None],
    ),
    Entry(
        "item_factor_norm",
        "the item's factor norm over the mean norm (adapters with ``item_factors_``)",
        lambda b: b.fb.relative_norm[b.cand],
        _FACTORS,
    ),
    Entry(
        "factor_cosine_max",
        "largest cosine with a shot in factor space",
        lambda b: b.factor_cosines[0],
        _FACTORS,
    ),
    Entry(
        "factor_cosine_mean",
        "mean cosine with the shots in factor space",
        lambda b: b.factor_cosines[1],
        _FACTORS,
    ),
    # the rows of Block.cooccurrence
    *(
        Entry(name, description, lambda b, row=row: b.cooccurrence[row])
        for row, (name, description) in enumerate(
            [
                ("cooc_cosine_max", "largest co-occurrence cosine with a shot in the warm data"),
                ("cooc_cosine_mean", "mean co-occurrence cosine with the shots"),
                ("cooc_conditional_max", "largest P(candidate | shot) in the warm data"),
                ("cooc_conditional_mean", "mean P(candidate | shot) over the shots"),
            ]
        )
    ),
    Entry(
        "similar_users_score",
        "share of the warm users who have the candidate, each weighted by the number of "
        "shots it shares with the user (user-kNN with every warm user a neighbour, read "
        "from the co-occurrence table)",
        _similar_users_score,
        lambda builder: builder.legacy_knn is None,
    ),
    Entry(
        "user_knn_score",
        "models saved by skfewrec 0.1.0 only: similarity-weighted share of the 50 warm "
        "users most like the shots who have the candidate",
        lambda b: b.legacy_user_knn[0],
        _LEGACY,
    ),
    Entry(
        "user_knn_similarity",
        "models saved by skfewrec 0.1.0 only: those neighbours' mean similarity",
        lambda b: b.legacy_user_knn[1][:, None],
        _LEGACY,
    ),
    Entry(
        "popularity_rank",
        "rank among the user's candidates by popularity",
        lambda b: _rank_within(b.fb.log_popularity[b.cand], b.valid),
    ),
    Entry(
        "cooc_rank",
        "rank among the user's candidates by ``cooc_conditional_mean``",
        lambda b: _rank_within(b.cooccurrence[3], b.valid),
    ),
    Entry(
        "factor_cosine_rank",
        "rank among the user's candidates by ``factor_cosine_mean``",
        lambda b: _rank_within(b.factor_cosines[1], b.valid),
        _FACTORS,
    ),
    Entry(
        "plain_score",
        "score (over the best) of the plain iALS fold-in of the adapter's factor source "
        "(its ``factors_.transform``): a second opinion without the adapter's prior",
        _plain_score,
        _FOLD_IN,
    ),
    Entry(
        "plain_rank",
        "rank among the user's candidates by ``plain_score``",
        lambda b: _rank_within(b.plain, b.valid),
        _FOLD_IN,
    ),
    Entry(
        "item:<column>",
        "item side features (categoricals as LightGBM categorical features)",
        _item_columns,
        _ITEMS,
        family=True,
    ),
    Entry(
        "item_profile_dot",
        "dot product of the candidate's numeric item features (scaled to [-1, 1]) with "
        "the shots' mean",
        lambda b: b.profile_dot[0],
        _has("profile"),
    ),
    Entry(
        "item_profile_cosine",
        "the cosine of the same",
        _profile_cosine,
        _has("profile"),
    ),
    Entry(
        "item_same:<column>",
        "share of the shots in the candidate's category, per categorical item column",
        _item_same_category,
        _ITEMS,
        family=True,
    ),
    Entry(
        "user:<column>",
        "user side features",
        _user_columns,
        _has("user_side"),
        family=True,
    ),
)


# ------------------------------------------------------------------ the builder
class FeatureBuilder:
    """Re-ranking features for (user, candidate) pairs, from one adapter and one warm set.

    Parameters
    ----------
    item_factors : ndarray of shape (n_items, n_components) or None
        The adapter's item factors (None for adapters without factors).
    stats : dict
        From :func:`~skfewrec.rerank._warm.warm_statistics`. A ``"warm"`` entry
        (the warm interactions of a bundle saved by skfewrec 0.1.0) replaces
        ``similar_users_score`` by the legacy user-kNN features.
    item_side : tuple (values, names, categorical) or None
        From :func:`~skfewrec.rerank._tables.encode_item_table`.
    user_side : UserTable or None
        The user table's encoding (its values are passed to :meth:`build`).
    fold_in : callable or None
        The plain fold-in of the adapter's factor source (``S -> user vectors``);
        used with ``item_factors`` only.

    Attributes
    ----------
    features : list of Feature
        The features, in column order (from :data:`FEATURES`).
    feature_names : list of str

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from skfewrec.rerank._features import FeatureBuilder
    >>> from skfewrec.rerank._warm import warm_statistics
    >>> X = sp.csr_matrix(np.array([[1.0, 1, 0], [0, 1, 1], [1, 1, 1]]))
    >>> builder = FeatureBuilder(None, warm_statistics(X))
    >>> F = builder.build(X[:1], np.array([[2, 1]]), np.array([[2.0, 1.0]]))
    >>> F.shape == (2, len(builder.feature_names))
    True
    >>> F[:, builder.feature_names.index("adapter_score")].tolist()
    [1.0, 0.5]
    """

    def __init__(self, item_factors, stats, item_side=None, user_side=None, fold_in=None):
        counts = np.asarray(stats["item_counts"], dtype=np.float64)
        self.n_items = counts.size
        self.item_counts = counts.astype(np.float32)
        self.log_popularity = log_frequency(counts, stats["n_users"])
        self.recent_log_popularity = None
        if stats.get("recent_counts") is not None:
            self.recent_log_popularity = log_frequency(stats["recent_counts"], stats["n_recent"])
        self.item_time = None
        if stats.get("item_time") is not None:
            self.item_time = np.asarray(stats["item_time"], dtype=np.float32)
        C = sp.csr_matrix(stats["cooccurrence"], dtype=np.float64)
        rows = np.repeat(np.arange(self.n_items), np.diff(C.indptr))
        safe = np.maximum(counts, 1.0)
        # all share C's structure: row = shot item s, column = candidate c
        self.cooc_indptr, self.cooc_indices = C.indptr, C.indices.astype(np.int64)
        self.cooc_counts = C.data.astype(np.float32)
        self.cooc_cosine = (C.data / np.sqrt(safe[rows] * safe[C.indices])).astype(np.float32)
        self.cooc_conditional = (C.data / safe[rows]).astype(np.float32)  # P(c | s)
        warm = stats.get("warm")
        self.legacy_knn = None if warm is None else LegacyUserKNN(warm)

        self.factors = self.item_factors = None
        if item_factors is not None:
            V = np.asarray(item_factors, dtype=np.float32)
            norm = np.linalg.norm(V, axis=1)
            Vn = V / np.maximum(norm, 1e-12)[:, None]
            # relative to the mean norm: the scale of factors changes with the warm set
            self.relative_norm = (norm / max(norm.mean(), 1e-12)).astype(np.float32)
            # one zero row: the target of padded support slots
            self.factors = np.vstack([Vn, np.zeros((1, V.shape[1]), np.float32)])
            self.item_factors = V
        self.fold_in = fold_in if item_factors is not None else None

        self.item_values = self.item_names = self.profile = None
        if item_side is not None:
            values, names, categorical = item_side
            self.item_values, self.item_names = values, list(names)
            self.item_categorical_mask = np.asarray(categorical, dtype=bool)
            numeric = values[:, ~self.item_categorical_mask]
            if numeric.shape[1]:
                scale = np.abs(numeric).max(axis=0)
                self.profile = (numeric / np.where(scale > 0, scale, 1.0)).astype(np.float32)
                self.profile_norm = np.linalg.norm(self.profile, axis=1)
            self.item_categorical = [
                (names[j], values[:, j].astype(np.int64))
                for j in np.flatnonzero(self.item_categorical_mask)
            ]
        self.user_side = user_side

        self.features = [feature for entry in FEATURES for feature in entry.features(self)]
        self.feature_names = [feature.name for feature in self.features]

    @property
    def categorical_features(self):
        """Positions of the features LightGBM treats as categorical."""
        return [j for j, feature in enumerate(self.features) if feature.categorical]

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
            Row ``u * n_candidates + j`` describes candidate j of user u; column
            ``i`` is ``feature_names[i]``. Rows of empty slots hold meaningless
            values and must be dropped. Fortran-ordered (each feature contiguous).
        """
        if self.user_side is not None and user_values is None:
            raise ValueError("user_values are required: the builder has a user table.")
        block = Block(self, S, candidates, scores, user_values)
        n, n_cand = candidates.shape
        # column-major: each feature is written contiguously; LightGBM reads
        # Fortran-ordered matrices without a copy
        F = np.empty((len(self.features), n, n_cand), dtype=np.float32)
        # NaN marks what is undefined (no shots, no finite score): LightGBM's "missing"
        with np.errstate(invalid="ignore", divide="ignore"):
            for column, feature in zip(F, self.features):
                column[...] = feature.compute(block)
        return F.reshape(len(self.features), n * n_cand).T


def feature_list():
    """The registry as a reStructuredText list (the feature list of docs/reranker.rst).

    Examples
    --------
    >>> from skfewrec.rerank._features import feature_list
    >>> print(feature_list().splitlines()[0])
    - ``adapter_score``: the adapter's score over the user's best (scale-free)
    """
    return "\n".join(f"- ``{entry.name}``: {entry.description}" for entry in FEATURES)
