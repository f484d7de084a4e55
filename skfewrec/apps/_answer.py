"""One answer everywhere: the CLI, the HTTP service and Spark rank through these functions.

Each of them ends in the estimator's own ``recommend``, called exactly as a
Python user would call it (one call per set of options), so the three front ends
cannot drift from the library: a deny-list, for instance, is applied by
``recommend`` before candidates are chosen, never by a front end after ranking.

:func:`recommend_log` is the one door from a raw log to raw ids: Python's
``RecommenderPipeline.recommend(log)``, the CLI, the HTTP service and Spark all
end there, so the model's data contract (the encoder's ``min_value`` filter,
duplicate policy and ``binarize``, then the pipeline's weighting steps) is applied
exactly once, and identically, whatever the door.
"""

import numpy as np
import scipy.sparse as sp

from .._core.validation import check_flag
from ..base import recommend_with_seen

#: the columns of recommend_log's answer after the user and item columns
SCORE_COLUMN = "score"
RANK_COLUMN = "rank"


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


def recommend_rows(estimator, X, *, k, filter_seen=True, items=None, exclude=None, seen=None):
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
    seen : sparse matrix of shape (n_users, n_items), default=None
        The items ``filter_seen`` filters, when not X's own (e.g. the raw log's
        items, before a filter or a weighting step made ``X``); see
        :func:`skfewrec.base.recommend_with_seen`.

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
    ids, scores = recommend_with_seen(
        estimator, X, k, seen=seen, filter_seen=filter_seen, items=items, exclude=exclude
    )
    n_items = int(estimator.n_features_in_)
    filled = ids >= 0
    broken = ((filled & ~np.isfinite(scores)) | (ids >= n_items) | (ids < -1)).any(axis=1)
    # -1 only where fewer than k items remain after the allow-list, deny-list and filter
    gaps = np.flatnonzero(~filled.all(axis=1))
    if gaps.size:
        held = sp.csr_matrix(X if seen is None else seen)
        rankable = _n_rankable(held[gaps], n_items, filter_seen, items, exclude)
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


def recommend_each(estimator, X, options, *, seen=None):
    """Top-k for users with their own options, one ``recommend`` call per distinct option set.

    Parameters
    ----------
    estimator : fitted recommender
    X : sparse matrix of shape (n_users, n_items)
        One row per user.
    options : list of dict
        One per row: ``k`` (int), ``filter_seen`` (bool) and ``exclude`` (sorted
        unique column indices, possibly empty).
    seen : sparse matrix of shape (n_users, n_items), default=None
        The items ``filter_seen`` filters, when not X's own (the raw log's items,
        as ``InteractionEncoder.encode(..., return_seen=True)`` gives them).

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
    >>> seen = sp.csr_matrix(np.array([[0, 0, 0, 0], [0, 0, 1, 0]]))
    >>> [ids.tolist() for ids, _ in recommend_each(rec, X, opts, seen=seen)]
    [[1, 0], [1]]
    """
    groups = {}
    for row, opt in enumerate(options):
        key = (opt["k"], opt["filter_seen"], tuple(np.asarray(opt["exclude"]).tolist()))
        groups.setdefault(key, []).append(row)
    answers = [None] * len(options)
    for (k, filter_seen, exclude), rows in groups.items():
        rows = np.asarray(rows)
        one = len(groups) == 1
        ids, scores = recommend_rows(
            estimator,
            X if one else X[rows],
            k=k,
            filter_seen=filter_seen,
            exclude=np.asarray(exclude, dtype=np.int64) if exclude else None,
            seen=None if seen is None else (seen if one else sp.csr_matrix(seen)[rows]),
        )
        for row, top, top_scores in zip(rows, ids, scores):
            keep = top >= 0
            answers[row] = (top[keep], top_scores[keep])
    return answers


def _split_model(model, encoder):
    """``(encoder, transformers or None, recommender)`` of a model and its id maps."""
    from ..pipeline import as_recommender_pipeline
    from ..preprocessing import InteractionEncoder

    steps = getattr(model, "steps", None)
    transformers = None
    if steps:
        pipe = as_recommender_pipeline(model)
        first = steps[0][1]
        if isinstance(first, InteractionEncoder):
            if encoder is not None and encoder is not first:
                raise ValueError(
                    "model is a pipeline that starts with its own InteractionEncoder; pass "
                    "encoder=None (two sets of id maps could disagree)."
                )
            encoder = first
            pipe = pipe[1:]
        if len(pipe.steps) > 1:
            transformers = pipe[:-1]
        model = pipe.steps[-1][1]
    if encoder is None:
        raise ValueError(
            "recommend_log needs the model's id maps: pass the fitted InteractionEncoder "
            "(skfewrec.load(path, return_encoder=True) returns it), or a pipeline whose "
            "first step is one."
        )
    if not isinstance(encoder, InteractionEncoder):
        raise TypeError(
            f"encoder must be a fitted skfewrec.preprocessing.InteractionEncoder, got "
            f"{type(encoder).__name__}."
        )
    if not callable(getattr(model, "recommend", None)):
        raise TypeError(
            f"{type(model).__name__} has no recommend method; pass a fitted skfewrec "
            "recommender or a pipeline ending in one."
        )
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(encoder)
    check_is_fitted(model)
    if encoder.n_items_ != model.n_features_in_:
        raise ValueError(
            f"The encoder knows {encoder.n_items_} items but the model was fitted on "
            f"{model.n_features_in_}; pass the encoder that built the model's training matrix."
        )
    return encoder, transformers, model


def _raw_columns(encoder, ids, name, *, strict):
    """Columns of raw item ids; unknown ids are dropped (``strict``: per the encoder's policy)."""
    if ids is None:
        return None
    ids = np.atleast_1d(np.asarray(ids, dtype=object if not hasattr(ids, "dtype") else None))
    if ids.ndim != 1:
        raise ValueError(f"{name} must be a 1-d list of raw item ids, got shape {ids.shape}.")
    if strict:
        codes = encoder._item_codes(ids, name=name)
    else:
        codes = encoder._item_lookup.get_indexer(ids)
    return np.unique(codes[codes >= 0]).astype(np.int64)


def _answer_frame(users, ids, scores, encoder, user_name, item_name):
    """One row per filled slot: users in order, ranks 1..k, raw ids."""
    import pandas as pd

    rows, slots = np.nonzero(ids >= 0)
    return pd.DataFrame(
        {
            user_name: users[rows],
            item_name: encoder.inverse_items(ids[rows, slots]),
            SCORE_COLUMN: scores[rows, slots].astype(np.float32),
            RANK_COLUMN: (slots + 1).astype(np.int64),
        }
    )


def recommend_log(
    model,
    encoder,
    df,
    *,
    k,
    filter_seen=True,
    exclude=None,
    items=None,
    user_col=None,
    item_col=None,
):
    """Top-k raw item ids for every user of a raw log: the one door of every front end.

    The log goes through the encoder's data contract (the ``min_value`` filter,
    the duplicate policy, ``binarize``), then the pipeline's weighting steps, then
    the recommender's ``recommend``, exactly as in ``fit``; the answers carry the
    original ids. Python's ``RecommenderPipeline.recommend(log)``, the CLI's
    ``recommend``, the HTTP service and Spark all end here.

    Parameters
    ----------
    model : fitted recommender or Pipeline
        A recommender, or a pipeline ending in one (its first step may be the
        InteractionEncoder).
    encoder : InteractionEncoder or None
        The model's fitted id maps; None when ``model`` is a pipeline starting
        with one.
    df : pandas.DataFrame
        The users' raw log, one row per event, with the encoder's columns.
    k : int
        Items per user. Larger than the items that can be recommended (the
        catalogue, or the allow-list) is a ``ValueError``, never clamped.
    filter_seen : bool, default=True
        Never recommend an item of the user's raw log, kept or filtered out by
        ``min_value`` (a 1-star rating is not recommended back).
    exclude : array-like of raw item ids, default=None
        Deny-list; ids the model does not know are ignored.
    items : array-like of raw item ids, default=None
        Allow-list; unknown ids follow the encoder's ``handle_unknown``.
    user_col : hashable, default=None
        The name of the answer's user column; None: the encoder's ``user_col``.
    item_col : hashable, default=None
        The name of the answer's item column; None: the encoder's ``item_col``.

    Returns
    -------
    answers : pandas.DataFrame
        Columns ``[user_col, item_col, "score", "rank"]``: one row per
        recommendation, users in order of first appearance in ``df``, each user's
        items best first with ranks 1, 2, ...; a user with fewer than ``k``
        rankable items (after the filters) has fewer rows. Raw user and item ids.

    Examples
    --------
    >>> import pandas as pd
    >>> from skfewrec import MostPopular
    >>> from skfewrec.apps._answer import recommend_log
    >>> from skfewrec.preprocessing import InteractionEncoder
    >>> log = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": ["a", "b", "a", "c", "a"],
    ...                     "stars": [5, 4, 5, 2, 4]})
    >>> enc = InteractionEncoder(value_col="stars", min_value=4, binarize=True)
    >>> rec = MostPopular().fit(enc.fit_transform(log))
    >>> new = pd.DataFrame({"user": ["z", "y", "z"], "item": ["a", "a", "b"],
    ...                     "stars": [1, 5, 5]})
    >>> recommend_log(rec, enc, new, k=1)  # z has seen both items ("a" rated 1 star)
      user item  score  rank
    0    y    b    1.0     1
    """
    import pandas as pd

    encoder, transformers, recommender = _split_model(model, encoder)
    user_name = encoder.user_col if user_col is None else user_col
    item_name = encoder.item_col if item_col is None else item_col
    names = [user_name, item_name, SCORE_COLUMN, RANK_COLUMN]
    if len(set(map(str, names))) != len(names):
        raise ValueError(
            f"The answer's columns {names} must have distinct names; pass user_col and "
            "item_col to rename the user and item columns."
        )
    filter_seen = check_flag(filter_seen, "filter_seen")
    X, seen, users = encoder.encode(df, return_seen=True)
    allow = _raw_columns(encoder, items, "items", strict=True)
    deny = _raw_columns(encoder, exclude, "exclude", strict=False)
    if allow is not None and allow.size == 0:
        raise ValueError("items holds no item of the model's catalogue; nothing can be ranked.")
    if X.shape[0] == 0:
        return pd.DataFrame({name: [] for name in names})
    Xt = X if transformers is None else transformers.transform(X)
    ids, scores = recommend_rows(
        recommender,
        Xt,
        k=k,
        filter_seen=filter_seen,
        items=allow,
        exclude=deny if deny is None or deny.size else None,
        seen=seen,
    )
    # the encoder's rows are sorted users: answer in the order they first appear in df
    order = pd.Index(users).get_indexer(pd.unique(df[encoder.user_col].to_numpy()))
    return _answer_frame(users[order], ids[order], scores[order], encoder, user_name, item_name)
