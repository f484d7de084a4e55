"""New items (the long tail) for adapters: ``add_items`` delegates to the factor source.

The fold-in of an item from its warm users (the symmetric closed form) lives with
the item factors, in :mod:`skfewrec.factors._base`.
"""

import warnings

import numpy as np
import scipy.sparse as sp

from .._core.compat import check_is_fitted
from .._core.validation import check_interactions


class NewItemsMixin:
    """``add_items``: append items added after pretraining to a fitted adapter.

    The factor source owns the items: ``add_items`` replaces ``factors_`` by
    ``factors_.extend_items(X_new_items)`` (a grown copy: a frozen source is
    never modified), then grows the adapter's own ``item_counts_`` and
    ``n_features_in_`` and rebuilds its caches. Subclasses may check the new
    values (e.g. a rating scale) in ``_check_new_item_values``.
    """

    def _check_new_item_values(self, X_new):
        """Hook: extra checks of the new items' values (e.g. a rating scale)."""

    def add_items(self, X_new_items):
        """Fold in items added after fitting, from the warm users who interacted with them.

        Each new item's vector is the exact closed-form solve of the pretraining
        objective with the warm users' vectors fixed (the item half-step of ALS),
        using the factor source's regularisation and confidence settings
        (:meth:`ALSFactors.extend_items`): ``factors_`` becomes the grown source. The new
        items are appended after the existing ones: they get the column indices
        ``n_features_in_`` onwards, ``recommend`` ranks them, and new users'
        interaction matrices must then have the grown number of columns.

        Parameters
        ----------
        X_new_items : {array-like, sparse matrix} of shape (n_warm_users, n_new_items)
            The warm users' interactions with the new items: one row per warm
            user, in the order of the rows the factor source was trained on
            (the rows ``fit`` saw, unless the factor source was prefit).

        Returns
        -------
        self : object
            The estimator, with ``factors_`` (so ``item_factors_``) and
            ``n_features_in_`` grown.

        Warns
        -----
        UserWarning
            When a new item has no interaction from any warm user: it gets a zero
            vector (a score of 0 for every user, so it ranks as an unknown item)
            and shots on it are ignored when folding in users.

        Examples
        --------
        >>> from skfewrec import ALSFactors, ClosedFormFoldIn
        >>> from skfewrec.datasets import make_interactions
        >>> X = make_interactions(n_users=200, n_items=60, random_state=0).X
        >>> rec = ClosedFormFoldIn(ALSFactors(n_components=8, random_state=0)).fit(X[:, :50])
        >>> rec.add_items(X[:, 50:]).n_features_in_
        60
        >>> rec.item_factors_.shape
        (60, 8)
        """
        check_is_fitted(self)
        X_new = check_interactions(X_new_items, name="X_new_items")
        self._check_new_item_values(X_new)
        self.factors_ = self.factors_.extend_items(X_new)
        self._grew_items(X_new)
        return self

    def _grew_items(self, X_new):
        """Bookkeeping once ``factors_`` holds the new items: counts, size, caches."""
        if hasattr(self, "item_counts_"):
            counts = X_new.getnnz(axis=0).astype(np.int64)
            self.item_counts_ = np.concatenate([self.item_counts_, counts])
        self.n_features_in_ = int(self.n_features_in_ + X_new.shape[1])
        self._rebuild()


def append_rows(owner, name, rows):
    """``owner.<name>`` with ``rows`` appended (axis 0), in amortised O(len(rows)) time.

    The attribute becomes a view of the first rows of a private buffer that
    doubles when full, so repeated ``add_items`` calls copy what they add, not
    the catalogue. Rows already there are never written: a reference to the old
    array (a caller's, or a model being served) keeps its values. A copy of the
    owner (``copy.copy``, ``deepcopy``, a pickle) gets a buffer of its own at its
    first append.

    Parameters
    ----------
    owner : object
        The estimator holding the attribute.
    name : str
        The attribute (an ndarray).
    rows : ndarray
        The rows to append; same trailing shape as the attribute.

    Returns
    -------
    grown : ndarray
        The new value of the attribute (also set on ``owner``).

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from skfewrec.adapters._items import append_rows
    >>> model = SimpleNamespace(item_factors_=np.zeros((2, 3)))
    >>> old = model.item_factors_
    >>> append_rows(model, "item_factors_", np.ones((1, 3))).shape
    (3, 3)
    >>> old.shape, model.item_factors_[2].tolist()
    ((2, 3), [1.0, 1.0, 1.0])
    """
    current = getattr(owner, name)
    rows = np.asarray(rows)
    n, m = current.shape[0], rows.shape[0]
    dtype = np.result_type(current.dtype, rows.dtype)
    buffers = owner.__dict__.setdefault("_append_buffers", {})
    owner_id, buffer = buffers.get(name, (None, None))
    reusable = (
        owner_id == id(owner)
        and buffer is not None
        and current.base is buffer
        and current.ctypes.data == buffer.ctypes.data
        and buffer.dtype == dtype
        and buffer.shape[1:] == rows.shape[1:]
        and buffer.shape[0] >= n + m
    )
    if not reusable:
        buffer = np.empty((max(2 * (n + m), 16),) + current.shape[1:], dtype=dtype)
        buffer[:n] = current
        buffers[name] = (id(owner), buffer)
    buffer[n : n + m] = rows
    grown = buffer[: n + m]
    setattr(owner, name, grown)
    return grown


def append_csr_rows(owner, name, block):
    """``owner.<name>`` (a CSR matrix) with the rows of ``block`` appended, amortised.

    Like :func:`append_rows`, for the three arrays of a CSR matrix: the grown
    matrix is built on views of growing buffers, so an append costs the
    appended entries, not the matrix.

    Parameters
    ----------
    owner : object
        The estimator holding the attribute.
    name : str
        The attribute (a CSR matrix).
    block : sparse matrix
        The rows to append; as many columns as the attribute.

    Returns
    -------
    grown : scipy.sparse.csr_matrix
        The new value of the attribute (also set on ``owner``).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from types import SimpleNamespace
    >>> from skfewrec.adapters._items import append_csr_rows
    >>> model = SimpleNamespace(profiles_=sp.csr_matrix(sp.eye(2)))
    >>> append_csr_rows(model, "profiles_", sp.csr_matrix([[3.0, 4.0]])).toarray().tolist()
    [[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]]
    """
    current = getattr(owner, name)
    block = sp.csr_matrix(block)
    parts = owner.__dict__.setdefault("_append_csr", {})
    last, holder = parts.get(name, (None, None))
    if last is not current or holder is None:
        current = sp.csr_matrix(current)
        holder = _CSRParts(current.data, current.indices, current.indptr)
    indptr = block.indptr[1:].astype(np.int64) + int(holder.indptr[-1])
    if indptr.size and indptr[-1] > np.iinfo(holder.indptr.dtype).max:
        holder.indptr = holder.indptr.astype(np.int64)  # past 2**31 entries: 64-bit indices
        holder.indices = holder.indices.astype(np.int64)
    append_rows(holder, "data", block.data.astype(holder.data.dtype, copy=False))
    append_rows(holder, "indices", block.indices.astype(holder.indices.dtype, copy=False))
    append_rows(holder, "indptr", indptr.astype(holder.indptr.dtype))
    shape = (current.shape[0] + block.shape[0], current.shape[1])
    grown = sp.csr_matrix((holder.data, holder.indices, holder.indptr), shape=shape)
    parts[name] = (grown, holder)
    setattr(owner, name, grown)
    return grown


class _CSRParts:
    """The growing arrays behind a CSR matrix (see :func:`append_csr_rows`)."""

    def __init__(self, data, indices, indptr):
        self.data = data
        self.indices = indices
        self.indptr = indptr


def support_item_factors(user_factors, item_factors, X_new_items, activity, *, activity_power=1.0):
    """New items' vectors from their support users: activity-weighted, scaled to the warm items.

    ``y_j = c (V^T V) sum_s a_s^-p u_s`` over the warm users ``s`` who touched
    new item ``j``, with ``a_s`` their activity (warm items touched, + 1) and
    ``c`` one factor per call that gives the new items' scores the spread of
    the warm items' scores (on up to 1,000 evenly spaced warm users, and 4,096
    warm items). ``u . y_j``
    approximates the overlap of the user's reconstructed history with those of
    the support users, light users counting more; on the k-shot item protocol it
    finds new items more often than the symmetric iALS fold-in (see the "Long
    tail" guide). Items without support users get a zero vector.

    Parameters
    ----------
    user_factors : ndarray of shape (n_warm_users, n_components)
        The warm users' vectors.
    item_factors : ndarray of shape (n_warm_items, n_components)
        The warm items' vectors (the catalogue before the new items).
    X_new_items : sparse matrix of shape (n_warm_users, n_new_items)
        The warm users' interactions with the new items (any value > 0 counts).
    activity : ndarray of shape (n_warm_users,)
        Each warm user's number of interactions, >= 0.
    activity_power : float, default=1.0
        ``p`` above.

    Returns
    -------
    vectors : ndarray of shape (n_new_items, n_components), float32

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from skfewrec.adapters._items import support_item_factors
    >>> U = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> V = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> Y = support_item_factors(U, V, sp.csr_matrix([[1, 0], [0, 0], [0, 0]]), np.ones(3))
    >>> np.argmax(U @ Y.T, axis=0)[0], Y[1].tolist()
    (np.int64(0), [0.0, 0.0])
    """
    U = np.asarray(user_factors, dtype=np.float64)
    V = np.asarray(item_factors, dtype=np.float64)
    S = sp.csr_matrix(X_new_items)
    S = sp.csr_matrix(((S.data > 0).astype(np.float64), S.indices, S.indptr), shape=S.shape).T
    weights = (np.asarray(activity, dtype=np.float64) + 1.0) ** -float(activity_power)
    Y = np.asarray(S @ (weights[:, None] * U)) @ (V.T @ V)
    sample = U[_evenly(U.shape[0], 1000)]
    new_spread = float(np.std(sample @ Y.T)) if Y.size else 0.0
    if new_spread > 0:
        Y *= float(np.std(sample @ V[_evenly(V.shape[0], 4096)].T)) / new_spread
    return Y.astype(np.float32)


def extend_with_vectors(factors, X_new_items, vectors):
    """A grown copy of an implicit factor source holding given vectors for its new items.

    The copy-on-write twin of ``factors.extend_items`` for vectors placed
    elsewhere (:func:`support_item_factors`): the source is not modified; the
    copy has ``vectors`` at indices ``n_features_in_`` onwards and the new
    items' warm-user counts in ``item_counts_``.

    Parameters
    ----------
    factors : ALSFactors
        A fitted implicit factor source.
    X_new_items : sparse matrix of shape (n_warm_users, n_new_items)
        The warm users' interactions with the new items.
    vectors : ndarray of shape (n_new_items, n_components)
        The new items' vectors (zero for an item without warm users).

    Returns
    -------
    factors : ALSFactors
        The grown copy.

    Warns
    -----
    UserWarning
        When a new item has no interaction from a warm user (as ``extend_items``).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from skfewrec import ALSFactors
    >>> from skfewrec.adapters._items import extend_with_vectors
    >>> als = ALSFactors.from_arrays(np.eye(3, 2), user_factors=np.eye(2))
    >>> grown = extend_with_vectors(als, sp.csr_matrix([[1.0], [0.0]]), np.ones((1, 2)))
    >>> grown.item_factors_.shape, als.item_factors_.shape
    ((4, 2), (3, 2))
    """
    counts = sp.csr_matrix(X_new_items).getnnz(axis=0).astype(np.int64)
    lonely = np.flatnonzero(counts == 0)
    if lonely.size:
        warnings.warn(
            f"{lonely.size} of the {counts.size} new items have no interaction from a "
            f"warm user (first: new item {lonely[0]}, column "
            f"{factors.n_features_in_ + lonely[0]}); they get a zero vector and rank as "
            "unknown items. Add them once warm users have interacted with them.",
            UserWarning,
            stacklevel=3,
        )
    vectors = np.asarray(vectors, dtype=factors.item_factors_.dtype)
    vectors[lonely] = 0
    grown = {"item_factors_": np.concatenate([factors.item_factors_, vectors])}
    if getattr(factors, "item_counts_", None) is not None:
        grown["item_counts_"] = np.concatenate([factors.item_counts_, counts])
    grown["n_features_in_"] = int(factors.n_features_in_ + counts.size)
    return factors._replace(**grown)


def extend_item_ids(encoder, ids):
    """A copy of an ``InteractionEncoder`` whose catalogue has ``ids`` appended.

    New items take the columns after the existing ones, as ``add_items`` gives
    them; the encoder is not modified. Integer catalogues take integers (or
    their decimal text); others take the ids as given.

    Parameters
    ----------
    encoder : InteractionEncoder
        A fitted encoder.
    ids : sequence
        The new raw item ids: distinct and not in the catalogue.

    Returns
    -------
    encoder : InteractionEncoder
        The grown copy.

    Examples
    --------
    >>> import pandas as pd
    >>> from skfewrec.preprocessing import InteractionEncoder
    >>> from skfewrec.adapters._items import extend_item_ids
    >>> enc = InteractionEncoder().fit(pd.DataFrame({"user": [1, 2], "item": [10, 20]}))
    >>> extend_item_ids(enc, [15]).item_ids_.tolist(), enc.n_items_
    ([10, 20, 15], 2)
    """
    from sklearn.base import clone

    old = encoder.item_ids_
    ids = list(ids)
    if old.dtype.kind in "iu":
        bad = [i for i in ids if isinstance(i, bool) or not _is_integer(i)]
        if bad:
            raise ValueError(
                f"This catalogue's item ids are integers; got {bad[:5]!r}. Send integer ids."
            )
        new = np.array([int(i) for i in ids], dtype=old.dtype)
    else:
        new = np.empty(len(ids), dtype=object)
        new[:] = ids
    if len(set(new.tolist())) != len(ids):
        raise ValueError("The new item ids repeat; send each new item once.")
    known = encoder._item_lookup.get_indexer(new) >= 0
    if known.any():
        raise ValueError(
            f"Item id(s) already in the catalogue: {new[known][:5].tolist()!r}; new items "
            "need new ids."
        )
    grown = clone(encoder)
    fitted = {k: v for k, v in vars(encoder).items() if k.endswith("_") and not k.startswith("_")}
    vars(grown).update(fitted)
    grown.item_ids_ = np.concatenate([old, new]) if old.dtype != object else _objects(old, new)
    grown.n_items_ = int(grown.item_ids_.size)
    grown._rebuild()
    return grown


def _is_integer(value):
    if isinstance(value, int | np.integer):
        return True
    return isinstance(value, str) and value.strip().lstrip("-").isdigit()


def _objects(old, new):
    out = np.empty(old.size + new.size, dtype=object)
    out[: old.size] = old
    out[old.size :] = new
    return out


def _evenly(n, at_most):
    """Up to ``at_most`` evenly spaced indices of ``range(n)``."""
    return np.unique(np.linspace(0, n - 1, min(n, at_most)).astype(np.int64))
