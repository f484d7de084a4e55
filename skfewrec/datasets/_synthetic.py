"""Synthetic implicit feedback with taste clusters and long-tailed item popularity."""

from numbers import Integral, Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.utils import check_random_state

from ._base import _dataset

# Strength of taste against popularity in the item logits (per standardised unit).
_TASTE = 2.5
# A user's draws come from a second cluster with a probability in [0, _MAX_MIX).
_MAX_MIX = 0.3
# Spread (log scale) of the number of interactions per user.
_COUNT_SIGMA = 0.6
# Draws per block of users: bounds the memory of the sampler.
_BLOCK_DRAWS = 1_000_000
# Users wanting more than this fraction of the catalogue are sampled exactly.
_DENSE_FRACTION = 0.25
_MAX_REJECTION_ROUNDS = 20
_T0 = 1_500_000_000  # 2017-07-14, unix seconds
_DAY = 86_400


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(
            f"{name} must be an int >= {low}, got {value!r} of type {type(value).__name__}."
        )
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}.")
    return int(value)


def _check_real(name, value, *, low, high=None, low_open=False, expected):
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number {expected}, got {value!r}.")
    value = float(value)
    bad_low = value <= low if low_open else value < low
    if np.isnan(value) or bad_low or (high is not None and value > high):
        raise ValueError(f"{name} must be {expected}, got {value!r}.")
    return value


def _as_generator(random_state):
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, Integral):
        return np.random.default_rng(random_state)
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    return np.random.default_rng(seed)


def make_interactions(
    n_users=1000,
    n_items=500,
    *,
    n_components=8,
    n_clusters=10,
    density=0.03,
    popularity_exponent=1.0,
    with_timestamps=True,
    random_state=None,
):
    """Generate implicit feedback with learnable low-rank structure and a long tail.

    The generative story: items live in an ``n_components``-dimensional taste space
    around ``n_clusters`` centres (an item's ``category`` is its centre). Each user
    belongs to one taste cluster and borrows a little from a second one. A cluster
    prefers items in proportion to ``popularity * exp(taste)``, where popularity is
    Zipf-like (the item of popularity rank ``r`` weighs ``r ** -popularity_exponent``)
    and taste grows with the dot product between the cluster centre and the item.
    Each user has a log-normal target number of items (mean about
    ``density * n_items``) and draws from their clusters' preferences until about
    that many distinct items are reached (at least 3; an item appears once per
    user). Values are small counts (1 + Poisson, larger for better-liked items);
    each user's events fall at random times within their own active period (unix
    seconds, from mid-2017). Every item gets at least one interaction.

    A low-rank model recovers the clusters, so it beats the most-popular baseline on
    held-out users; the strong popularity skew makes that baseline non-trivial.

    Parameters
    ----------
    n_users : int, default=1000
        Number of users (rows), >= 1.
    n_items : int, default=500
        Number of items (columns), >= 3.
    n_components : int, default=8
        Dimension of the latent taste space, >= 1.
    n_clusters : int, default=10
        Number of taste clusters (of users) and categories (of items), >= 1.
    density : float, default=0.03
        Target fraction of the matrix that is non-zero, in (0, 1]; the realised
        density is close to it (higher when ``density * n_items < 3``).
    popularity_exponent : float, default=1.0
        Exponent of the Zipf-like item popularity, >= 0 (0: no popularity skew).
    with_timestamps : bool, default=True
        Whether to generate interaction times.
    random_state : int, RandomState instance, Generator or None, default=None
        Seed of the generator: the same seed gives the same data.

    Returns
    -------
    data : sklearn.utils.Bunch
        Dictionary-like object with:

        X : scipy.sparse.csr_matrix of shape (n_users, n_items)
            Float32 interaction counts (>= 1 where non-zero).
        timestamps : scipy.sparse.csr_matrix of shape (n_users, n_items) or None
            Int64 unix times with the sparsity pattern of ``X``.
        user_ids, item_ids : ndarray
            ``arange(n_users)`` and ``arange(n_items)``.
        item_features : pandas.DataFrame
            Indexed by item id: ``category`` (int), the generating cluster.
        user_features : pandas.DataFrame
            Indexed by user id: ``cluster`` (category), the user's main cluster.
        frame : pandas.DataFrame
            The interactions: ``user``, ``item``, ``value`` and ``timestamp``.
        DESCR : str
            Description, with the parameters.

    See Also
    --------
    load_movielens : Real ratings with the same Bunch.

    Examples
    --------
    >>> from skfewrec.datasets import make_interactions
    >>> data = make_interactions(n_users=200, n_items=100, random_state=0)
    >>> data.X.shape
    (200, 100)
    >>> int(data.X.getnnz(axis=1).min()) >= 3
    True
    >>> data.item_features.columns.tolist(), data.user_features.columns.tolist()
    (['category'], ['cluster'])
    """
    n_users = _check_int("n_users", n_users, 1)
    n_items = _check_int("n_items", n_items, 3)
    n_components = _check_int("n_components", n_components, 1)
    n_clusters = _check_int("n_clusters", n_clusters, 1)
    density = _check_real("density", density, low=0, high=1, low_open=True, expected="in (0, 1]")
    popularity_exponent = _check_real(
        "popularity_exponent", popularity_exponent, low=0, expected=">= 0"
    )
    if not isinstance(with_timestamps, bool | np.bool_):
        raise TypeError(f"with_timestamps must be a bool, got {with_timestamps!r}.")
    rng = _as_generator(random_state)

    # Item taste vectors around cluster centres, and cluster x item preferences.
    centers = rng.standard_normal((n_clusters, n_components))
    item_category = rng.integers(n_clusters, size=n_items)
    item_factors = centers[item_category] + 0.7 * rng.standard_normal((n_items, n_components))
    affinity = centers @ item_factors.T
    affinity -= affinity.mean(axis=1, keepdims=True)
    affinity /= affinity.std(axis=1, keepdims=True) + 1e-12
    popularity_rank = rng.permutation(n_items) + 1
    logits = _TASTE * affinity - popularity_exponent * np.log(popularity_rank)
    logits -= logits.max(axis=1, keepdims=True)
    prefs = np.exp(logits)
    prefs /= prefs.sum(axis=1, keepdims=True)

    # Users: main cluster (clusters of unequal sizes), a second one and a mixing weight.
    cluster_sizes = rng.dirichlet(np.full(n_clusters, 2.0))
    primary = rng.choice(n_clusters, size=n_users, p=cluster_sizes)
    secondary = rng.integers(n_clusters, size=n_users)
    mix = rng.uniform(0.0, _MAX_MIX, size=n_users)
    mean_count = density * n_items
    targets = rng.lognormal(np.log(mean_count) - _COUNT_SIGMA**2 / 2, _COUNT_SIGMA, size=n_users)
    targets = np.clip(np.rint(targets), 3, n_items).astype(np.int64)

    sampler = _Sampler(prefs, primary, secondary, mix, rng)
    first, second = sampler.draws_for(targets)
    keys = []
    block_start = 0
    cum = np.cumsum(first + second)
    while block_start < n_users:
        offset = cum[block_start - 1] if block_start else 0
        block_end = int(np.searchsorted(cum, offset + _BLOCK_DRAWS, side="right"))
        block_end = min(max(block_end, block_start + 1), n_users)
        block = slice(block_start, block_end)
        keys.append(
            sampler.sample(block_start, block_end, targets[block], first[block], second[block])
        )
        block_start = block_end
    keys = _cover_items(np.concatenate(keys), prefs, primary, n_items, rng)

    id_dtype = np.int32 if max(n_users, n_items, keys.size) < np.iinfo(np.int32).max else np.int64
    rows, cols = np.divmod(keys, n_items)
    del keys
    rows, cols = rows.astype(id_dtype), cols.astype(id_dtype)
    indptr = np.zeros(n_users + 1, dtype=id_dtype)
    np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
    # Better-liked items are consumed more often: a (cluster, item) table of Poisson rates.
    rate = np.minimum(0.6 * np.exp(0.5 * affinity), 5.0).ravel()
    values = (1 + rng.poisson(rate[primary[rows] * n_items + cols])).astype(np.float32)
    X = sp.csr_matrix((values, cols, indptr), shape=(n_users, n_items))
    X.has_canonical_format = True

    user_ids = np.arange(n_users)
    item_ids = np.arange(n_items)
    # copy=False: the frame owns these arrays (copies of those X holds), no second copy.
    columns = {"user": rows, "item": cols.copy(), "value": values.copy()}
    timestamps = None
    if with_timestamps:
        # Each user is active over their own period; their events are spread along it.
        start = _T0 + rng.integers(0, 730 * _DAY, size=n_users)
        span = (rng.exponential(60 * _DAY, size=n_users) + 3600).astype(np.int64)
        times = start[rows] + (rng.random(rows.size) * span[rows]).astype(np.int64)
        timestamps = sp.csr_matrix((times, cols.copy(), indptr.copy()), shape=X.shape)
        timestamps.has_canonical_format = True
        columns["timestamp"] = times.copy()
    frame = pd.DataFrame(columns, copy=False)

    item_features = pd.DataFrame(
        {"category": item_category.astype(np.int64)}, index=pd.Index(item_ids, name="item")
    )
    user_features = pd.DataFrame(
        {"cluster": pd.Categorical(primary, categories=np.arange(n_clusters))},
        index=pd.Index(user_ids, name="user"),
    )
    descr = (
        "Synthetic implicit feedback from skfewrec.datasets.make_interactions("
        f"n_users={n_users}, n_items={n_items}, n_components={n_components}, "
        f"n_clusters={n_clusters}, density={density}, "
        f"popularity_exponent={popularity_exponent}, with_timestamps={with_timestamps}, "
        f"random_state={random_state!r}): taste clusters times Zipf-like item popularity. "
        f"{n_users} users, {n_items} items, {X.nnz} interactions (counts)."
    )
    return _dataset(X, timestamps, user_ids, item_ids, item_features, user_features, frame, descr)


class _Sampler:
    """Draws the distinct items of each user from a mixture of two cluster preferences.

    A user makes a number of draws with replacement (Walker alias tables, O(1) per
    draw) and keeps the distinct items: the number of draws is calibrated so that the
    expected number of distinct items is the user's target. Users left with fewer
    than 3 items draw again; users who want a large part of the catalogue are
    sampled exactly, without replacement, by the Gumbel top-k trick on their row.
    """

    def __init__(self, prefs, primary, secondary, mix, rng):
        self.prefs = prefs
        self.n_clusters, self.n_items = prefs.shape
        self.prob, self.alias = _alias_tables(prefs)
        self.primary, self.secondary, self.mix = primary, secondary, mix
        self.rng = rng

    def draws_for(self, targets):
        """Draws per user from each of their clusters, for ``targets`` distinct items.

        A user wanting ``t`` items with mixing weight ``m`` draws from their main
        cluster until ``(1 - m) t`` distinct items are expected, and from their second
        cluster for ``m t``: ``E[distinct | d] = sum_i 1 - exp(-d p_i)``, evaluated on a
        grid of ``d`` from a histogram of each cluster's item probabilities, is
        inverted by interpolation (fractional draws are rounded at random). Dense
        users (sampled exactly) get no draws.

        Returns
        -------
        first, second : ndarray of shape (n_users,)
            Draws from the main and from the second cluster.
        """
        n_items = self.n_items
        grid = np.r_[0.0, np.geomspace(1, 100 * n_items, 96)]
        log_p = np.log(self.prefs)
        edges = np.linspace(log_p.min(), log_p.max(), 257)
        centers = np.exp((edges[:-1] + edges[1:]) / 2)
        hist = np.stack([np.histogram(row, bins=edges)[0] for row in log_p])
        expected = -np.expm1(-grid[:, None] * centers[None, :]) @ hist.T  # (grid, clusters)
        sparse = targets <= _DENSE_FRACTION * n_items
        draws = []
        for cluster, share in [(self.primary, 1 - self.mix), (self.secondary, self.mix)]:
            d = np.zeros(targets.size)
            for k in np.unique(cluster[sparse]):
                users = np.flatnonzero((cluster == k) & sparse)
                d[users] = np.interp(targets[users] * share[users], expected[:, k], grid)
            draws.append(np.floor(d + self.rng.random(d.size)).astype(np.int64))
        return draws[0], draws[1]

    def _draw(self, user, n_first, n_second):
        """Items for ``user[i]``: ``n_first[i]`` draws from their main cluster and
        ``n_second[i]`` from their second one, with replacement; sorted unique keys."""
        rng, n_items = self.rng, self.n_items
        count = n_first + n_second
        cluster = np.repeat(
            np.stack([self.primary[user], self.secondary[user]], axis=1).ravel(),
            np.stack([n_first, n_second], axis=1).ravel(),
        )
        owner = np.repeat(user.astype(np.int64), count)
        # In-place steps: on big arrays, allocating is as costly as computing.
        v = rng.random(owner.size)
        v *= n_items
        column = v.astype(np.int64)
        v -= column  # the fractional part: a second independent uniform
        flat = cluster.astype(np.int64, copy=False)
        flat *= n_items
        flat += column
        item = self.alias[flat]
        np.copyto(item, column, where=v < self.prob[flat])
        owner *= n_items
        owner += item
        return _sorted_unique(owner)

    def sample(self, start, stop, targets, first, second):
        """Sorted keys ``user * n_items + item`` for users ``start..stop-1``."""
        n_items = self.n_items
        users = np.arange(start, stop)
        dense = targets > _DENSE_FRACTION * n_items
        have = self._draw(users, first, second)
        count = np.bincount(have // n_items - start, minlength=users.size)
        deficit = np.where(dense, targets, np.maximum(3 - count, 0))
        for _ in range(_MAX_REJECTION_ROUNDS):
            need = np.flatnonzero((deficit > 0) & ~dense)
            if need.size == 0:
                break
            n_second = self.rng.binomial(deficit[need], self.mix[users[need]])
            have, new = _merge(have, self._draw(users[need], deficit[need] - n_second, n_second))
            deficit -= np.bincount(new // n_items - start, minlength=users.size)
        rest = np.flatnonzero(deficit > 0)
        # Exact sampling without replacement, in batches of dense rows.
        batch = max(1, 4_000_000 // n_items)
        for i in range(0, rest.size, batch):
            local = rest[i : i + batch]
            new = self._gumbel_top_k(users[local], deficit[local], have)
            have, _ = _merge(have, new)
        return have

    def _gumbel_top_k(self, users, k, have):
        n_items, prefs = self.n_items, self.prefs
        mix = self.mix[users][:, None]
        probs = (1 - mix) * prefs[self.primary[users]] + mix * prefs[self.secondary[users]]
        scores = np.log(probs) - np.log(-np.log(self.rng.random(probs.shape)))
        lo = np.searchsorted(have, users * n_items)
        hi = np.searchsorted(have, (users + 1) * n_items)
        lengths = hi - lo
        if lengths.any():
            row = np.repeat(np.arange(users.size), lengths)
            first = np.cumsum(lengths) - lengths
            position = np.arange(lengths.sum()) - np.repeat(first - lo, lengths)
            scores[row, have[position] % n_items] = -np.inf
        order = np.argsort(-scores, axis=1)
        chosen = np.arange(n_items)[None, :] < k[:, None]
        return np.sort((users[:, None].astype(np.int64) * n_items + order)[chosen])


def _alias_tables(prefs):
    """Walker alias tables of each row of ``prefs``, built for all rows at once.

    Returns flat arrays ``prob`` and ``alias`` of size ``n_rows * n_cols``: column
    ``j`` of row ``k`` yields item ``j`` with probability ``prob[k * n_cols + j]``,
    else item ``alias[k * n_cols + j]``. Each round hands every under-full column
    (q < 1) to an over-full one of its row, in order of the cumulative deficits and
    excesses; over-full columns that drop below 1 are handled in the next round.
    """
    n_rows, n_cols = prefs.shape
    q = (prefs * (n_cols / prefs.sum(axis=1, keepdims=True))).ravel()
    row = np.repeat(np.arange(n_rows), n_cols)
    prob = np.ones(q.size)
    alias = np.tile(np.arange(n_cols), n_rows)
    active = np.ones(q.size, dtype=bool)
    while True:
        small = np.flatnonzero(active & (q < 1))
        large = np.flatnonzero(active & (q >= 1))
        if small.size == 0:
            break
        deficit = 1 - q[small]
        small_start = _cumsum_by_group(deficit, row[small]) - deficit
        large_end = _cumsum_by_group(q[large] - 1, row[large])
        # Rows are separated on one sorted axis by offsets larger than any cumulative sum.
        stride = n_cols + 1
        giver = np.searchsorted(
            row[large] * stride + large_end, row[small] * stride + small_start, side="right"
        )
        first = np.searchsorted(row[large], row[small], side="left")
        last = np.searchsorted(row[large], row[small], side="right") - 1
        # Rounding can leave a row with under-full columns and no over-full one:
        # those columns are (to rounding) full, so keep them as they are.
        orphan = first > last
        giver = np.clip(giver, first, np.maximum(last, first))
        prob[small[~orphan]] = q[small[~orphan]]
        alias[small[~orphan]] = large[giver[~orphan]] % n_cols
        active[small] = False
        q[large] -= np.bincount(giver[~orphan], weights=deficit[~orphan], minlength=large.size)
    return prob, alias


def _cumsum_by_group(values, groups):
    """Cumulative sum of ``values`` restarting at each new value of sorted ``groups``."""
    total = np.cumsum(values)
    start = np.searchsorted(groups, groups, side="left")
    return total - (total[start] - values[start])


def _sorted_unique(a):
    """``np.unique`` of a 1-d integer array, by sorting it in place (much faster)."""
    a.sort()
    if a.size > 1:
        a = a[np.r_[True, a[1:] != a[:-1]]]
    return a


def _cover_items(keys, prefs, primary, n_items, rng):
    """Give each item without interaction one, from a user of a cluster that likes it.

    Keeps every column of ``X`` non-empty, as in the loaders; the cluster is drawn in
    proportion to its preference for the item, the user at random within it.
    """
    empty = np.flatnonzero(np.bincount(keys % n_items, minlength=n_items) == 0)
    if empty.size == 0:
        return keys
    scores = np.log(prefs[:, empty]) - np.log(-np.log(rng.random((prefs.shape[0], empty.size))))
    cluster = np.argmax(scores, axis=0)
    by_cluster = np.argsort(primary, kind="stable")
    size = np.bincount(primary, minlength=prefs.shape[0])
    start = np.cumsum(size) - size
    pick = rng.random(empty.size)
    user = np.where(
        size[cluster] > 0,
        by_cluster[
            np.minimum(start[cluster] + (pick * size[cluster]).astype(np.int64), primary.size - 1)
        ],
        (pick * primary.size).astype(np.int64),
    )
    return _merge(keys, np.sort(user.astype(np.int64) * n_items + empty))[0]


def _merge(have, new):
    """Insert the sorted unique keys ``new`` absent from sorted ``have``; return both."""
    if have.size == 0:
        return new, new
    pos = np.searchsorted(have, new)
    present = have[np.minimum(pos, have.size - 1)] == new
    new, pos = new[~present], pos[~present]
    return np.insert(have, pos, new), new
