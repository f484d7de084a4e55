"""Pipelines that recommend: preprocessing steps ending in a recommender, in one model.

:class:`RecommenderPipeline` is scikit-learn's ``Pipeline`` with the recommender's
methods: ``recommend`` (and ``score`` by the few-shot protocol) go through every
step but the last, then ask the last step. When the first step is an
:class:`~skfewrec.preprocessing.InteractionEncoder`, the pipeline takes a raw log
and answers raw ids, applying the encoder's data contract (filter, duplicates,
binarize) and the weighting steps exactly as they were applied in ``fit``.
Nothing of ``Pipeline`` is overridden but ``score``; ``skfewrec.load`` returns any
saved ``Pipeline`` as a ``RecommenderPipeline``.
"""

from sklearn.pipeline import Pipeline
from sklearn.pipeline import make_pipeline as _sklearn_make_pipeline
from sklearn.utils.metaestimators import available_if

from .base import recommend_with_seen


def _final_has(attr):
    def check(self):
        return hasattr(self._final_estimator, attr)

    return check


def _is_log(X):
    import pandas as pd

    return isinstance(X, pd.DataFrame)


class RecommenderPipeline(Pipeline):
    """A ``Pipeline`` of skfewrec steps ending in a recommender, that recommends.

    The steps are transformers of interactions (an
    :class:`~skfewrec.preprocessing.InteractionEncoder` first, confidence
    weightings such as :class:`~skfewrec.preprocessing.LogConfidence` or
    :class:`~skfewrec.preprocessing.BM25Weighting`), then a recommender. Fitting,
    ``get_params`` / ``set_params`` (``"<step>__<param>"``), ``clone`` and
    ``GridSearchCV`` work as for any ``Pipeline``.

    Parameters
    ----------
    steps : list of (str, estimator) tuples
        The steps, the last one a recommender (with ``recommend``).
    transform_input : list of str, default=None
        As for :class:`sklearn.pipeline.Pipeline`.
    memory : str or object with the joblib.Memory interface, default=None
        As for :class:`sklearn.pipeline.Pipeline`.
    verbose : bool, default=False
        As for :class:`sklearn.pipeline.Pipeline`.

    Attributes
    ----------
    named_steps : :class:`~sklearn.utils.Bunch`
        The steps by name.

    See Also
    --------
    make_pipeline : Build one without naming the steps.
    skfewrec.apps._answer.recommend_log : The one path from a raw log to raw ids,
        which ``recommend`` takes for a log.

    Notes
    -----
    ``filter_seen`` filters the items of the input as given (the raw ``X``, or
    every item of each user's raw log, before ``min_value``), not of what the
    weighting steps made of it: an item a user rated 1 star is never
    recommended back, even though it is not one of the user's shots.

    To tune an encoder-first pipeline on a log, split the log by user (e.g.
    ``GroupKFold`` with ``groups=log[user_col]``) so that held-out users are
    new users, and give :func:`skfewrec.model_selection.make_fewshot_scorer`
    as ``scoring``: the scorer encodes each held-out log with the fitted
    encoder, then splits every user's row into shots and a query. Use
    ``handle_unknown="ignore"`` in the encoder, since a held-out user may have
    items no training user had. Encoding once and tuning ``pipe[1:]`` on the
    matrix is faster when the encoder's parameters are not tuned.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec import MostPopular
    >>> from skfewrec.pipeline import make_pipeline
    >>> from skfewrec.preprocessing import LogConfidence
    >>> X = np.array([[3, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]])
    >>> pipe = make_pipeline(LogConfidence(), MostPopular()).fit(X)
    >>> ids, scores = pipe.recommend(np.array([[1, 0, 0, 0]]), k=2)
    >>> ids
    array([[1, 2]])

    With an encoder first, a log goes in and raw ids come out:

    >>> import pandas as pd
    >>> from skfewrec.preprocessing import InteractionEncoder
    >>> log = pd.DataFrame({"user": [1, 1, 2, 2, 2, 3], "item": ["a", "b", "a", "b", "c", "a"]})
    >>> pipe = make_pipeline(InteractionEncoder(), MostPopular()).fit(log)
    >>> pipe.recommend(pd.DataFrame({"user": [7], "item": ["a"]}), k=2)
       user item  score  rank
    0     7    b    2.0     1
    1     7    c    1.0     2
    """

    #: takes the steps as its first argument: not constructible with no arguments, so
    #: it is checked in tests/test_pipeline.py rather than by the generic checks
    _skfewrec_skip_common_checks = True

    def _starts_with_encoder(self):
        from .preprocessing import InteractionEncoder

        return isinstance(self.steps[0][1], InteractionEncoder)

    def _transform_all_but_last(self, X):
        return X if len(self.steps) == 1 else self[:-1].transform(X)

    @available_if(_final_has("recommend"))
    def recommend(self, X, k=10, *, filter_seen=True, items=None, exclude=None):
        """Top-k items for each user, through every step, then the last step's ``recommend``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items) or DataFrame
            The users' interactions; a long log (pandas DataFrame, one row per
            event) when the first step is an InteractionEncoder.
        k : int, default=10
            Number of items per user; more than the items that can be recommended
            is an error.
        filter_seen : bool, default=True
            Never recommend an item the user has in the input (before any step).
        items : array-like, default=None
            Allow-list: item indices, or raw item ids for a log.
        exclude : array-like, default=None
            Deny-list: item indices, or raw item ids for a log (unknown ids are
            ignored).

        Returns
        -------
        ids : ndarray of shape (n_users, k), int64
            For a matrix: item indices, best first, -1 for an empty slot.
        scores : ndarray of shape (n_users, k), float32
            For a matrix: their scores (-inf for an empty slot).
        answers : pandas.DataFrame
            For a log, instead of ``(ids, scores)``: one row per recommendation,
            with the columns of :func:`skfewrec.apps._answer.recommend_log`
            (user, item, score, rank), users in order of first appearance.

        Examples
        --------
        >>> import numpy as np
        >>> from skfewrec import MostPopular
        >>> from skfewrec.pipeline import make_pipeline
        >>> from skfewrec.preprocessing import LogConfidence
        >>> X = np.array([[3, 1, 0], [1, 1, 0], [1, 0, 2]])
        >>> pipe = make_pipeline(LogConfidence(), MostPopular()).fit(X)
        >>> pipe.recommend(np.array([[0, 0, 1]]), k=1)[0]
        array([[0]])
        """
        if self._starts_with_encoder():
            if not _is_log(X):
                raise TypeError(
                    f"This pipeline starts with an InteractionEncoder, so it recommends for a "
                    f"log (a pandas DataFrame, one row per event), got {type(X).__name__}. "
                    "For an encoded matrix, call pipe[1:].recommend(X)."
                )
            from .apps._answer import recommend_log

            return recommend_log(
                self, None, X, k=k, filter_seen=filter_seen, items=items, exclude=exclude
            )
        Xt = self._transform_all_but_last(X)
        return recommend_with_seen(
            self._final_estimator,
            Xt,
            k,
            seen=None if Xt is X else X,
            filter_seen=filter_seen,
            items=items,
            exclude=exclude,
        )

    def score(self, X, y=None, sample_weight=None, *, k=20, n_shots=5, **params):
        """Mean NDCG@k of the few-shot protocol, as the last step's ``score`` defines it.

        With a recommender last: X (and y) go through the steps inside
        :func:`~skfewrec.model_selection.make_fewshot_scorer`, with the raw
        support's items filtered. Otherwise ``Pipeline.score``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items) or DataFrame
            With ``y``: the support (shots). Without: whole rows (or a log, with an
            encoder first), each split into ``n_shots`` random support items and
            the rest as query; rows with fewer than ``n_shots + 1`` interactions
            are left out.
        y : {array-like, sparse matrix} of shape (n_users, n_items), default=None
            The query. A 1-d ``y`` (the dummy target scikit-learn may pass) is ignored.
        sample_weight : None
            Not supported by the few-shot protocol; passed to ``Pipeline.score``
            when the last step is not a recommender.
        k : int, default=20
            Cut-off of the ranking.
        n_shots : int, default=5
            Support size when ``y`` is None.
        **params : dict
            Passed to ``Pipeline.score`` when the last step is not a recommender.

        Returns
        -------
        score : float
            Mean NDCG@k over users with a non-empty query.

        Examples
        --------
        >>> from skfewrec import MostPopular
        >>> from skfewrec.datasets import make_interactions
        >>> from skfewrec.pipeline import make_pipeline
        >>> from skfewrec.preprocessing import LogConfidence
        >>> X = make_interactions(n_users=100, n_items=40, random_state=0).X
        >>> pipe = make_pipeline(LogConfidence(), MostPopular()).fit(X[:80])
        >>> 0 < pipe.score(X[80:], n_shots=3) <= 1
        True
        """
        if not hasattr(self._final_estimator, "recommend"):
            return super().score(X, y, sample_weight=sample_weight, **params)
        if sample_weight is not None:
            raise ValueError("sample_weight is not supported by the few-shot score.")
        from .model_selection import _score_fewshot

        return _score_fewshot(self, X, y, k=k, n_shots=n_shots)


def make_pipeline(*steps, memory=None, transform_input=None, verbose=False):
    """Build a :class:`RecommenderPipeline` from its steps, named after their classes.

    Parameters
    ----------
    *steps : list of estimators
        Transformers of interactions (an InteractionEncoder first, weightings),
        then a recommender.
    memory : str or object with the joblib.Memory interface, default=None
        As for :func:`sklearn.pipeline.make_pipeline`.
    transform_input : list of str, default=None
        As for :func:`sklearn.pipeline.make_pipeline`.
    verbose : bool, default=False
        As for :func:`sklearn.pipeline.make_pipeline`.

    Returns
    -------
    pipe : RecommenderPipeline

    Examples
    --------
    >>> from skfewrec import ClosedFormFoldIn
    >>> from skfewrec.pipeline import make_pipeline
    >>> from skfewrec.preprocessing import InteractionEncoder, LogConfidence
    >>> pipe = make_pipeline(InteractionEncoder(), LogConfidence(), ClosedFormFoldIn())
    >>> [name for name, _ in pipe.steps]
    ['interactionencoder', 'logconfidence', 'closedformfoldin']
    """
    kwargs = {"memory": memory, "verbose": verbose}
    if transform_input is not None:
        kwargs["transform_input"] = transform_input
    pipe = _sklearn_make_pipeline(*steps, **kwargs)
    return RecommenderPipeline(**pipe.get_params(deep=False))


def as_recommender_pipeline(pipe):
    """The same steps as a :class:`RecommenderPipeline` (``pipe`` itself if it is one).

    Examples
    --------
    >>> from sklearn.pipeline import Pipeline
    >>> from skfewrec import MostPopular
    >>> from skfewrec.pipeline import as_recommender_pipeline
    >>> type(as_recommender_pipeline(Pipeline([("rec", MostPopular())]))).__name__
    'RecommenderPipeline'
    """
    if isinstance(pipe, RecommenderPipeline):
        return pipe
    if not isinstance(pipe, Pipeline):
        raise TypeError(f"pipe must be a sklearn Pipeline, got {type(pipe).__name__}.")
    return RecommenderPipeline(**pipe.get_params(deep=False))


__all__ = ["RecommenderPipeline", "as_recommender_pipeline", "make_pipeline"]
