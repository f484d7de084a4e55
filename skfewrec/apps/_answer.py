"""One answer everywhere: the CLI, the HTTP service and Spark rank through these functions.

Each of them ends in the estimator's own ``recommend``, called exactly as a
Python user would call it (one call per set of options), so the three front ends
cannot drift from the library: a deny-list, for instance, is applied by
``recommend`` before candidates are chosen, never by a front end after ranking.
"""

import numpy as np
import scipy.sparse as sp

from .._core.validation import check_flag


def load_bundle(path):
    """Load a model bundle and its id maps.

    Parameters
    ----------
    path : str or path-like
        A bundle written by :func:`skfewrec.save`.

    Returns
    -------
    estimator : fitted recommender
    encoder : InteractionEncoder or None
        The bundle's id maps (None when it was saved without an encoder).

    Examples
    --------
    >>> from skfewrec.apps._answer import load_bundle
    >>> load_bundle("no/such/model.zip")
    Traceback (most recent call last):
    ...
    FileNotFoundError: No model bundle at 'no/such/model.zip': it does not exist.
    """
    from ..persistence import load

    return load(path, return_encoder=True)


def recommend_rows(estimator, X, *, k, filter_seen=True, items=None, exclude=None):
    """``estimator.recommend`` for every row of ``X``, checked: no NaN, no out-of-range id.

    Parameters
    ----------
    estimator : fitted recommender
    X : sparse matrix of shape (n_users, n_items)
        The users' interactions.
    k : int
        Items per user.
    filter_seen : bool, default=True
        Never recommend a user's own items.
    items, exclude : array-like of int, default=None
        Allow-list and deny-list (column indices), as ``recommend`` takes them.

    Returns
    -------
    ids : ndarray of shape (n_users, k), int64
        Column indices, best first; -1 where fewer than ``k`` items remain.
    scores : ndarray of shape (n_users, k), float32

    Raises
    ------
    ValueError
        When the model answers a non-finite score, an id outside the catalogue, or
        an empty slot (-1) while k items remain rankable: a broken model, refused
        rather than passed on.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec import MostPopular
    >>> from skfewrec.apps._answer import recommend_rows
    >>> rec = MostPopular().fit(np.array([[1, 1, 0], [0, 1, 0]]))
    >>> recommend_rows(rec, np.array([[0, 1, 0]]), k=2)[0]
    array([[0, 2]])
    >>> recommend_rows(rec, np.array([[0, 1, 0]]), k=2, filter_seen="no")
    Traceback (most recent call last):
    ...
    TypeError: filter_seen must be True or False, got 'no' of type str.
    """
    filter_seen = check_flag(filter_seen, "filter_seen")
    ids, scores = estimator.recommend(X, k=k, filter_seen=filter_seen, items=items, exclude=exclude)
    n_items = int(estimator.n_features_in_)
    filled = ids >= 0
    broken = ((filled & ~np.isfinite(scores)) | (ids >= n_items) | (ids < -1)).any(axis=1)
    # -1 only where fewer than k items remain after the allow-list, deny-list and filter
    gaps = np.flatnonzero(~filled.all(axis=1))
    if gaps.size:
        rankable = _n_rankable(X[gaps], n_items, filter_seen, items, exclude)
        broken[gaps] |= filled[gaps].sum(axis=1) < np.minimum(k, rankable)
    if broken.any():
        rows = np.flatnonzero(broken)
        raise ValueError(
            f"{type(estimator).__name__}.recommend answered non-finite scores, out-of-range "
            f"ids or empty slots for {rows.size} user(s) (first row {rows[0]}); the model "
            "or its input is degenerate. Refit it, or check the interaction values."
        )
    return ids, scores


def _n_rankable(X, n_items, filter_seen, items, exclude):
    """Per row: the items ``recommend`` may return (allowed, not excluded, not seen)."""
    allowed = np.zeros(n_items, dtype=bool)
    allowed[np.arange(n_items) if items is None else np.asarray(items, dtype=np.int64)] = True
    if exclude is not None:
        allowed[np.asarray(exclude, dtype=np.int64)] = False
    n_rankable = np.full(X.shape[0], allowed.sum())
    if filter_seen:
        X = sp.csr_matrix(X, copy=True)
        X.sum_duplicates()
        X.eliminate_zeros()
        rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        n_rankable -= np.bincount(rows[allowed[X.indices]], minlength=X.shape[0])
    return n_rankable


def recommend_each(estimator, X, options):
    """Top-k for users with their own options, one ``recommend`` call per distinct option set.

    Parameters
    ----------
    estimator : fitted recommender
    X : sparse matrix of shape (n_users, n_items)
        One row per user.
    options : list of dict
        One per row: ``k`` (int), ``filter_seen`` (bool) and ``exclude`` (sorted
        unique column indices, possibly empty).

    Returns
    -------
    answers : list of (ndarray, ndarray)
        Per row, its ids and scores with the empty (-1) slots dropped.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from skfewrec import MostPopular
    >>> from skfewrec.apps._answer import recommend_each
    >>> rec = MostPopular().fit(np.array([[1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 1, 0]]))
    >>> X = sp.csr_matrix(np.zeros((2, 4)))
    >>> opts = [{"k": 2, "filter_seen": True, "exclude": np.array([2])},
    ...         {"k": 1, "filter_seen": True, "exclude": np.array([], dtype=int)}]
    >>> [ids.tolist() for ids, _ in recommend_each(rec, X, opts)]
    [[1, 0], [2]]
    """
    groups = {}
    for row, opt in enumerate(options):
        key = (opt["k"], opt["filter_seen"], tuple(np.asarray(opt["exclude"]).tolist()))
        groups.setdefault(key, []).append(row)
    answers = [None] * len(options)
    for (k, filter_seen, exclude), rows in groups.items():
        rows = np.asarray(rows)
        ids, scores = recommend_rows(
            estimator,
            X if len(groups) == 1 else X[rows],
            k=k,
            filter_seen=filter_seen,
            exclude=np.asarray(exclude, dtype=np.int64) if exclude else None,
        )
        for row, top, top_scores in zip(rows, ids, scores):
            keep = top >= 0
            answers[row] = (top[keep], top_scores[keep])
    return answers
