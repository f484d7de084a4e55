"""What every skfewrec recommender shares: input checks, recommend, decision_function, score."""

import warnings
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator

from ._core.compat import check_is_fitted, validate_data
from ._core.csr import lookup
from ._core.topk import DEFAULT_BLOCK_BYTES, chunked_topk, factor_topk, restrict_items
from ._core.validation import check_flag, check_interactions, check_k


def validate_interactions(estimator, X, *, reset, name="X"):
    """sklearn's ``validate_data`` bookkeeping, then skfewrec's interaction checks.

    Returns a canonical float32 CSR matrix. ``reset=True`` (in ``fit``) records
    ``n_features_in_`` (the catalogue size) and warns about a data set nothing
    can be learned from (:func:`warn_degenerate_fit`); ``reset=False`` checks
    against the recorded size. A long log passed as ``X`` is refused with how to
    encode it (:func:`skfewrec._core.validation.check_not_a_log`).
    """
    # our own checks first: their messages say how to fix the input
    X = check_interactions(X, name=name)
    try:
        X = validate_data(
            estimator, X, accept_sparse="csr", dtype=[np.float32, np.float64], reset=reset
        )
    except ValueError as exc:
        if "features" in str(exc):
            raise ValueError(
                f"{exc} Each column of {name} is an item of the fitted catalogue; encode "
                "new users with the item ids used at fit time (InteractionEncoder.transform)."
            ) from None
        raise
    X = sp.csr_matrix(X, dtype=np.float32)
    if reset:
        warn_degenerate_fit(estimator, X, name=name)
    return X


def warn_degenerate_fit(estimator, X, *, name="X"):
    """Warn when ``estimator`` is fitted on data it can learn nothing useful from.

    A single user or a single item (a 1 x 1 log, say) leaves nothing to rank or no
    population to learn from; more latent factors (``n_components``) than items
    cannot all be told apart, so the extra ones only fit noise.

    Parameters
    ----------
    estimator : estimator
        The estimator being fitted (its ``n_components``, when it has one, is checked).
    X : sparse matrix of shape (n_users, n_items)
        Its validated training interactions.
    name : str, default="X"
        The parameter name used in the messages.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from skfewrec import ALSFactors
    >>> from skfewrec.base import warn_degenerate_fit
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_degenerate_fit(ALSFactors(n_components=8), sp.csr_matrix(np.eye(3)))
    >>> print(caught[0].message)
    n_components=8 is larger than the 3 items of X: at most 3 factors can be told ...
    """
    n_users, n_items = X.shape
    if n_users < 2 or n_items < 2:
        what = " and ".join(
            f"a single {kind}" for kind, n in (("user", n_users), ("item", n_items)) if n < 2
        )
        warnings.warn(
            f"{type(estimator).__name__} is fitted on {what} ({name} has shape {X.shape}): "
            "it can learn nothing useful to rank for new users. Fit on the interactions of "
            "many users with many items.",
            UserWarning,
            stacklevel=4,
        )
    n_components = getattr(estimator, "n_components", None)
    if isinstance(n_components, Integral) and n_components > n_items:
        warnings.warn(
            f"n_components={n_components} is larger than the {n_items} items of {name}: at "
            f"most {n_items} factors can be told apart, the others only fit noise. Use "
            f"n_components <= {n_items}.",
            UserWarning,
            stacklevel=4,
        )


def check_seen(seen, shape, *, name="seen"):
    """The items never to recommend, as a canonical CSR matrix of ``shape``.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.base import check_seen
    >>> check_seen(np.array([[0, 2], [1, 0]]), (2, 2)).nnz
    2
    """
    seen = check_interactions(seen, name=name)
    if seen.shape != tuple(shape):
        raise ValueError(
            f"{name} has shape {seen.shape} but X has shape {tuple(shape)}; pass one row of "
            "seen items per user of X, over the same catalogue."
        )
    return seen


def recommend_with_seen(
    estimator, X, k=10, *, seen=None, filter_seen=True, items=None, exclude=None
):
    """``estimator.recommend(X, ...)`` with ``filter_seen`` applied to ``seen`` too, not X only.

    The door for answers whose model input ``X`` is not the users' whole history:
    a log filtered by ``min_value``, or transformed by a weighting step. A
    recommender using :class:`RecommenderMixin`'s ``recommend`` filters ``seen``
    in its top-k directly; one with its own ``recommend`` (a re-ranker) is asked
    for as many more items as a user has seen items outside ``X``, which are then
    dropped, vectorised over users.

    Parameters
    ----------
    estimator : fitted recommender
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        The model's input (the users' shots, transformed).
    k : int, default=10
        Items per user.
    seen : {array-like, sparse matrix} of shape (n_users, n_items), default=None
        Items never returned when ``filter_seen``, besides X's own items.
    filter_seen : bool, default=True
        Whether to filter ``seen``.
    items, exclude : array-like of int, default=None
        Allow-list and deny-list (item indices).

    Returns
    -------
    ids : ndarray of shape (n_users, k), int64
        Item indices, best first; -1 marks an empty slot.
    scores : ndarray of shape (n_users, k), float32
        Their scores (-inf for empty slots).

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec import MostPopular
    >>> from skfewrec.base import recommend_with_seen
    >>> rec = MostPopular().fit(np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0]]))
    >>> X = np.array([[0, 0, 1]])          # the shots: item 2
    >>> seen = np.array([[1, 0, 1]])       # the user also saw item 0
    >>> recommend_with_seen(rec, X, k=1, seen=seen)[0]
    array([[1]])
    """
    filter_seen = check_flag(filter_seen, "filter_seen")
    if seen is None or not filter_seen:
        return estimator.recommend(X, k=k, filter_seen=filter_seen, items=items, exclude=exclude)
    own = getattr(type(estimator), "recommend", None)
    if own is RecommenderMixin.recommend:
        return estimator._recommend(X, k, filter_seen=True, items=items, exclude=exclude, seen=seen)
    # a recommend of its own: ask for more, then drop the seen items it does not filter
    check_is_fitted(estimator)
    n_items = int(estimator.n_features_in_)
    X_user = check_interactions(X, n_items=n_items)
    seen = check_seen(seen, X_user.shape)
    # a new matrix: check_seen may return the caller's own arrays
    seen = sp.csr_matrix((np.ones_like(seen.data), seen.indices, seen.indptr), shape=seen.shape)
    extra = seen - seen.multiply(X_user > 0)
    extra.eliminate_zeros()
    columns, extra, _ = restrict_items(extra, items, exclude, n_items)
    extra.sum_duplicates()  # canonical, for lookup
    n_cols = n_items if columns is None else columns.size
    k = check_k(k, n_cols)
    more = int(np.diff(extra.indptr).max()) if extra.nnz else 0
    k_ask = min(k + more, n_cols)
    ids, scores = estimator.recommend(X, k=k_ask, filter_seen=True, items=items, exclude=exclude)
    if more:
        pos = np.where(ids >= 0, ids, -1)
        if columns is not None:
            # extra's columns are positions in the allow-list
            pos = np.where(ids >= 0, np.searchsorted(columns, np.maximum(ids, 0)), -1)
        _, drop = lookup(extra, pos)
        keep = (ids >= 0) & ~drop
        order = np.argsort(~keep, axis=1, kind="stable")
        ids = np.take_along_axis(np.where(keep, ids, -1), order, axis=1)
        scores = np.take_along_axis(np.where(keep, scores, -np.inf), order, axis=1)
    ids, scores = ids[:, :k], scores[:, :k]
    return ids, np.asarray(scores, dtype=np.float32)


class DerivedCachesMixin:
    """Private caches derived from the public fitted state: dropped when pickled.

    A class lists its caches in ``_derived_caches`` and recomputes them in
    ``_rebuild()``, which unpickling calls once the fitted state is back (the
    pickle-free loader calls it too). Pickles and bundles then hold only what
    cannot be recomputed.
    """

    _derived_caches = ()

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: never strip the live object
        for key in self._derived_caches:
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if any(key.endswith("_") and not key.startswith("_") for key in state):
            self._rebuild()

    def _replace(self, **fitted):
        """A new fitted estimator: this one's parameters and fitted state, except ``fitted``.

        Copy-on-write: ``self`` is left as it is (it may be a factor source a
        user froze and shares), the arrays not replaced are shared read-only,
        and the new estimator's caches are rebuilt.
        """
        new = clone(self)
        state = {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}
        vars(new).update(state, **fitted)
        new._rebuild()
        return new


def fit_factor_source(
    factors,
    X,
    default,
    *,
    required=("item_factors_", "regularization", "confidence_scale"),
    expected="an ALSFactors",
    random_state=None,
):
    """Fit (or reuse) the factor source of an adapter.

    A :class:`~sklearn.frozen.FrozenEstimator` is used as it is (not refitted);
    None means ``default``; anything else is cloned and fitted on ``X``, with
    its ``random_state`` set to ``random_state`` unless that is None (the
    adapter's seed reaches the source it trains, as in scikit-learn's
    ensembles). The result must have the attributes ``required`` (``expected``
    names what provides them in the error) and one factor row per column of ``X``.
    """
    source = default if factors is None else factors
    if isinstance(source, FrozenEstimator):
        check_is_fitted(source.estimator)
        est = source.estimator
    else:
        est = clone(source)
        if random_state is not None and "random_state" in est.get_params(deep=False):
            est.set_params(random_state=random_state)
        est.fit(X)
    for attr in required:
        if not hasattr(est, attr):
            raise TypeError(
                f"factors must provide {attr!r} ({expected}, or a FrozenEstimator "
                f"wrapping one); got {type(est).__name__}."
            )
    n_items = est.item_factors_.shape[0]
    if isinstance(source, FrozenEstimator) and est.item_factors_.shape[1] > n_items:
        # a fitted source warned when it was fitted; prefit arrays (from_arrays, Spark) never were
        warnings.warn(
            f"The prefit factor source has {est.item_factors_.shape[1]} factors for "
            f"{n_items} items: at most {n_items} factors can be told apart, the others only "
            "fit noise.",
            UserWarning,
            stacklevel=3,
        )
    if n_items != X.shape[1]:
        raise ValueError(
            f"The factor source has {n_items} items but X has {X.shape[1]} columns; the "
            "prefit factors must cover exactly the catalogue of X."
        )
    return est


class SparseInputMixin:
    """sklearn tags of an estimator that takes sparse, non-negative interactions.

    Put it before the other bases: its ``__sklearn_tags__`` adds
    ``input_tags.sparse`` and ``input_tags.positive_only`` to theirs.

    Examples
    --------
    >>> from sklearn.base import BaseEstimator
    >>> from skfewrec.base import SparseInputMixin
    >>> class Counter(SparseInputMixin, BaseEstimator):
    ...     pass
    >>> tags = Counter().__sklearn_tags__()
    >>> tags.input_tags.sparse, tags.input_tags.positive_only
    (True, True)
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = True
        return tags


class SparseFloat32TransformerMixin(SparseInputMixin):
    """sklearn tags of a transformer of sparse, non-negative interactions into float32.

    :class:`SparseInputMixin`'s tags plus
    ``transformer_tags.preserves_dtype = ["float32"]``; the class must also
    derive from ``TransformerMixin`` (after this mixin).

    Examples
    --------
    >>> from sklearn.base import BaseEstimator, TransformerMixin
    >>> from skfewrec.base import SparseFloat32TransformerMixin
    >>> class Scaler(SparseFloat32TransformerMixin, TransformerMixin, BaseEstimator):
    ...     pass
    >>> Scaler().__sklearn_tags__().transformer_tags.preserves_dtype
    ['float32']
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


class RecommenderMixin:
    """``recommend``, ``decision_function`` and ``score`` for skfewrec recommenders.

    A subclass implements ``_scorer(X, columns)``: given validated CSR
    interactions and the item indices to score (None: every item), it returns
    ``score_block(start, stop)`` giving the float32 scores of users ``start:stop``.
    """

    #: bytes of float32 scores held at once while ranking
    _block_bytes = DEFAULT_BLOCK_BYTES

    def _validate_users(self, X):
        check_is_fitted(self)
        return validate_interactions(self, X, reset=False)

    def recommend(self, X, k=10, *, filter_seen=True, items=None, exclude=None):
        """Top-k items for each user (row) of ``X``, best first.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            The users' known interactions (their support, or shots). A row without
            interactions gets the model's answer for an unknown user.
        k : int, default=10
            Number of items per user; at most the number of rankable items.
        filter_seen : bool, default=True
            Never recommend an item the user already has in ``X``.
        items : array-like of int, default=None
            Allow-list: rank only these item indices.
        exclude : array-like of int, default=None
            Deny-list: never recommend these item indices.

        Returns
        -------
        ids : ndarray of shape (n_users, k), int64
            Item indices, best first. -1 marks an empty slot when fewer than k
            items remain for a user after filtering.
        scores : ndarray of shape (n_users, k), float32
            Their scores (-inf for empty slots).
        """
        return self._recommend(X, k, filter_seen=filter_seen, items=items, exclude=exclude)

    def _recommend(self, X, k, *, filter_seen=True, items=None, exclude=None, seen=None):
        """:meth:`recommend`, with the items never to return given apart from ``X``.

        ``seen`` (a matrix of X's shape, or None) is what ``filter_seen``
        filters besides X's own items: e.g. a user's raw log, before a weighting
        step or a filter removed some of it from ``X``. One vectorised pass, no
        loop over users.
        """
        filter_seen = check_flag(filter_seen, "filter_seen")
        X = self._validate_users(X)
        n_items = X.shape[1]
        if not filter_seen:
            seen = None
        elif seen is None:
            seen = X
        else:
            # X's own items too, as a recommender with its own recommend filters them
            seen = check_seen(seen, X.shape) + X
            seen.sum_duplicates()
        columns, seen, exclude_pos = restrict_items(seen, items, exclude, n_items)
        ids, scores = self._topk(X, k, columns, seen, exclude_pos)
        if columns is not None:
            ids = np.where(ids >= 0, columns[np.maximum(ids, 0)], -1)
        return ids, scores

    def _topk(self, X, k, columns, seen, exclude):
        """Top-k over ``columns`` with ``seen``/``exclude`` as column positions."""
        n_cols = X.shape[1] if columns is None else columns.size
        return chunked_topk(
            self._scorer(X, columns),
            X.shape[0],
            n_cols,
            k,
            seen=seen,
            exclude=exclude,
            n_jobs=getattr(self, "n_jobs", None),
            block_bytes=self._block_bytes,
        )

    def decision_function(self, X):
        """Scores of every item for every user (dense; for small catalogues and tests).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            The users' known interactions.

        Returns
        -------
        scores : ndarray of shape (n_users, n_items), float32
            Higher is better. Seen items are not filtered.
        """
        X = self._validate_users(X)
        return np.asarray(self._scorer(X, None)(0, X.shape[0]), dtype=np.float32)

    def score(self, X, y=None, *, k=20, n_shots=5):
        """Mean NDCG@k of the few-shot protocol.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            With ``y``: the support (shots). Without: whole rows, each split into
            ``n_shots`` random support items and the rest as query (seeded, so
            the score is deterministic); rows with fewer than ``n_shots + 1``
            interactions are left out. When no row is long enough, ``n_shots``
            drops to the longest row's length minus one, with a warning.
        y : {array-like, sparse matrix} of shape (n_users, n_items), default=None
            The query: the held-out interactions to find. A 1-d ``y`` (the dummy
            target scikit-learn's tools may pass) is ignored.
        k : int, default=20
            Cut-off of the ranking (at most the catalogue size).
        n_shots : int, default=5
            Support size when ``y`` is None.

        Returns
        -------
        score : float
            Mean NDCG@k over users with a non-empty query.
        """
        from .model_selection import _score_fewshot

        return _score_fewshot(self, X, y, k=k, n_shots=n_shots)


class FactorRecommenderMixin(RecommenderMixin):
    """Scoring for recommenders that map users to vectors: ``transform(X) @ items.T``.

    A subclass provides ``transform`` and ``item_factors_``. ``_user_vectors``
    may be overridden to skip re-validation, ``_scoring_factors`` for scores that
    are products of other matrices (e.g. predicted ratings with biases).
    """

    def _user_vectors(self, X):
        return self.transform(X)

    def _scoring_factors(self, X, columns):
        """``(U, V)``: user and item matrices whose products ``U @ V.T`` are the scores."""
        V = self.item_factors_ if columns is None else self.item_factors_[columns]
        return self._user_vectors(X), V

    def _topk(self, X, k, columns, seen, exclude):
        # a dot-product model: implicit's fused GEMM + selection kernel
        U, V = self._scoring_factors(X, columns)
        return factor_topk(
            U, V, k, seen=seen, exclude=exclude, n_jobs=getattr(self, "n_jobs", None)
        )

    def _scorer(self, X, columns):
        U, V = self._scoring_factors(X, columns)
        U = np.ascontiguousarray(U, dtype=np.float32)
        Vt = np.ascontiguousarray(V.T, dtype=np.float32)

        def score_block(start, stop):
            return U[start:stop] @ Vt

        return score_block


class ItemsFromFactorsMixin:
    """Item parameters read from the fitted factor source ``factors_``: one owner.

    ``item_factors_`` (and the names in ``_item_attributes``) are read-only views
    of ``factors_``, so an adapter's items never drift from its source's. Models
    saved by skfewrec 0.1.0 carried the adapter's own copy; restoring one (the
    loader's ``setattr``, or unpickling) is accepted when it agrees with
    ``factors_``, and adopted into a copy of ``factors_`` when it extends it
    (items appended by 0.1.0's ``add_items``, which grew only the copy).
    """

    _item_attributes = ("item_factors_",)

    @property
    def item_factors_(self):
        """ndarray of shape (n_items, n_components), float32: ``factors_.item_factors_``."""
        return np.ascontiguousarray(self.factors_.item_factors_, dtype=np.float32)

    @item_factors_.setter
    def item_factors_(self, value):
        self._restore_item_attribute("item_factors_", value)

    def __setstate__(self, state):
        state = dict(state)
        saved = {name: state.pop(name) for name in self._item_attributes if name in state}
        super().__setstate__(state)
        if saved:
            for name, value in saved.items():
                setattr(self, name, value)  # through the property's check
            self._rebuild()

    def _restore_item_attribute(self, name, value):
        """Accept a saved copy of ``factors_.<name>``, or adopt the items it adds."""
        source = self.factors_
        current = np.asarray(getattr(source, name))
        value = np.asarray(value, dtype=current.dtype)
        n_old, n_new = current.shape[0], value.shape[0]
        if value.shape[1:] != current.shape[1:] or n_new < n_old:
            raise ValueError(
                f"{name} ({value.shape}) does not match factors_.{name} ({current.shape}): "
                f"{name} is read from factors_, and the saved model is inconsistent."
            )
        if not np.array_equal(value[:n_old], current):
            raise ValueError(
                f"{name} differs from factors_.{name}: {name} is read from factors_, and "
                "the saved model is inconsistent; refit it."
            )
        if n_new == n_old:
            return
        grown = {name: value, "n_features_in_": n_new}
        counts = getattr(source, "item_counts_", None)
        if counts is not None and counts.shape[0] < n_new:
            # the adapter's own counts of the added items, when it has them
            mine = getattr(self, "item_counts_", np.zeros(0))
            extra = mine[counts.shape[0] : n_new] if mine.shape[0] >= n_new else 0
            grown["item_counts_"] = np.concatenate(
                [counts, np.broadcast_to(extra, (n_new - counts.shape[0],))]
            ).astype(np.int64)
        self.factors_ = source._replace(**grown)
