"""Confidence weighting of interaction matrices: log scaling, BM25 and TF-IDF."""

from numbers import Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

from .._core.compat import Interval, _fit_context, check_is_fitted, validate_data
from .._core.validation import check_interactions
from ..base import SparseFloat32TransformerMixin


def _with_data(X, data):
    """A canonical CSR matrix with the pattern of ``X`` and new values (zeros dropped)."""
    out = sp.csr_matrix(
        (data.astype(np.float32, copy=False), X.indices.copy(), X.indptr.copy()), shape=X.shape
    )
    out.has_canonical_format = True
    if np.any(data == 0):
        out.eliminate_zeros()
    return out


class _BaseWeighting(SparseFloat32TransformerMixin, TransformerMixin, BaseEstimator):
    """Shared input validation and tags of the weighting transformers."""

    def _check_X(self, X, *, reset):
        # validate_data gives scikit-learn's messages (shapes, n_features_in_);
        # check_interactions ours (negative, non-finite values) and the canonical CSR.
        X = validate_data(
            self,
            X,
            accept_sparse=("csr", "csc", "coo"),
            dtype=(np.float32, np.float64),
            ensure_all_finite=False,
            reset=reset,
        )
        return check_interactions(X)


class LogConfidence(_BaseWeighting):
    """Log-scaled confidence: ``scale * log(offset + x)`` on the interactions.

    Damps heavy users and items (play counts in the thousands) so that a few repeated
    interactions do not dominate a factorisation. Zeros stay zeros (no interaction),
    and with ``offset >= 1`` every interaction keeps a positive confidence.

    Stateless: ``fit`` only checks ``X`` and records ``n_features_in_``, and
    ``transform`` may be called without it.

    Parameters
    ----------
    scale : float, default=1.0
        Multiplier of the log, > 0.
    offset : float, default=1.0
        Added to each value before the log, >= 1.

    Attributes
    ----------
    n_features_in_ : int
        Number of items seen in ``fit``.

    See Also
    --------
    BM25Weighting : Item-frequency weighting learned from training users.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.preprocessing import LogConfidence
    >>> X = np.array([[0.0, 1.0, 9.0]])
    >>> LogConfidence(scale=2.0).fit_transform(X).toarray().round(3)
    array([[0.   , 1.386, 4.605]], dtype=float32)
    """

    _parameter_constraints: dict = {
        "scale": [Interval(Real, 0, None, closed="neither")],
        "offset": [Interval(Real, 1, None, closed="left")],
    }

    def __init__(self, *, scale=1.0, offset=1.0):
        self.scale = scale
        self.offset = offset

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check ``X`` and record its number of items.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Non-negative interactions.
        y : None
            Ignored.

        Returns
        -------
        self : LogConfidence
            The fitted transformer.

        Examples
        --------
        >>> from skfewrec.preprocessing import LogConfidence
        >>> LogConfidence().fit([[1.0, 0.0]]).n_features_in_
        2
        """
        self._check_X(X, reset=True)
        return self

    def transform(self, X):
        """Replace each interaction ``x`` by ``scale * log(offset + x)``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Non-negative interactions.

        Returns
        -------
        X_new : scipy.sparse.csr_matrix of shape (n_users, n_items)
            Float32 confidences with the sparsity pattern of ``X``.

        Examples
        --------
        >>> import numpy as np
        >>> from skfewrec.preprocessing import LogConfidence
        >>> LogConfidence().transform(np.array([[np.e - 1.0, 0.0]])).toarray()
        array([[1., 0.]], dtype=float32)
        """
        self._validate_params()
        X = self._check_X(X, reset=False)
        return _with_data(X, self.scale * np.log(self.offset + X.data.astype(np.float64)))


class _IDFWeighting(_BaseWeighting):
    """Learns the per-item inverse document frequency of implicit's weightings."""

    def _fit_idf(self, X):
        X = self._check_X(X, reset=True)
        n_users = X.shape[0]
        df = np.bincount(X.indices, minlength=X.shape[1])
        # Same formula as implicit.nearest_neighbours.{bm25,tfidf}_weight.
        self.idf_ = np.log(n_users) - np.log1p(df)
        return X


class BM25Weighting(_IDFWeighting):
    """Okapi BM25 weighting of interactions, as in ``implicit.nearest_neighbours.bm25_weight``.

    Rows are users (documents) and columns items (terms). ``fit`` learns, from the
    training users, each item's inverse document frequency
    ``idf = log(n_users) - log(1 + n_users_with_item)`` and the mean number of
    interactions per user; ``transform`` weights each interaction of any user,
    including new ones, as::

        x * (K1 + 1) / (K1 * length_norm + x) * idf[item]
        length_norm = (1 - B) + B * row_sum / mean_row_sum_

    so ``fit_transform`` on a matrix equals ``implicit``'s ``bm25_weight`` of it.

    Parameters
    ----------
    K1 : float, default=100
        Saturation of repeated interactions, >= 0 (0 makes every interaction weigh
        ``idf``).
    B : float, default=0.8
        Strength of the user-length normalisation, in [0, 1].

    Attributes
    ----------
    idf_ : ndarray of shape (n_features_in_,)
        Inverse document frequency of each item, from the training users.
    mean_row_sum_ : float
        Mean sum of a training user's row.
    n_features_in_ : int
        Number of items seen in ``fit``.

    See Also
    --------
    TFIDFWeighting : The simpler ``sqrt(x) * idf`` weighting.

    Notes
    -----
    Like ``implicit``'s formula, the idf of an item that all (or all but one) training
    users interacted with is <= 0, which makes its weights negative (or zero, dropped
    from the sparse output). This only happens on tiny or degenerate data; negative
    values are refused by skfewrec's estimators with a clear error.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.preprocessing import BM25Weighting
    >>> X = np.array([[3.0, 0, 0], [1, 1, 0], [0, 0, 2], [0, 1, 0]])
    >>> BM25Weighting(K1=1.2, B=0.75).fit(X).transform([[1.0, 0, 1]]).toarray().round(3)
    array([[0.288, 0.   , 0.693]], dtype=float32)
    """

    _parameter_constraints: dict = {
        "K1": [Interval(Real, 0, None, closed="left")],
        "B": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(self, *, K1=100, B=0.8):
        self.K1 = K1
        self.B = B

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the item idf and the mean user length from training users.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Non-negative interactions of the training users.
        y : None
            Ignored.

        Returns
        -------
        self : BM25Weighting
            The fitted transformer.

        Examples
        --------
        >>> from skfewrec.preprocessing import BM25Weighting
        >>> BM25Weighting().fit([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]).idf_.round(3)
        array([0., 0.])
        """
        X = self._fit_idf(X)
        mean_row_sum = float(X.sum()) / X.shape[0]
        # An all-zero training matrix has no length to normalise by.
        self.mean_row_sum_ = mean_row_sum if mean_row_sum > 0 else 1.0
        return self

    def transform(self, X):
        """Apply BM25 weighting with the fitted idf and mean user length.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_features_in_)
            Non-negative interactions; rows are users (training or new ones).

        Returns
        -------
        X_new : scipy.sparse.csr_matrix of shape (n_users, n_features_in_)
            Float32 weights on the sparsity pattern of ``X``.

        Examples
        --------
        >>> import numpy as np
        >>> from skfewrec.preprocessing import BM25Weighting
        >>> X = np.diag([2.0, 1.0, 5.0])
        >>> bm25 = BM25Weighting().fit(np.vstack([X, X]))
        >>> bm25.transform(X).toarray().round(3)
        array([[1.708, 0.   , 0.   ],
               [0.   , 1.373, 0.   ],
               [0.   , 0.   , 2.   ]], dtype=float32)
        """
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        data = X.data.astype(np.float64)
        row_sums = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
        length_norm = (1.0 - self.B) + self.B * row_sums / self.mean_row_sum_
        rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        weighted = data * (self.K1 + 1.0) / (self.K1 * length_norm[rows] + data)
        return _with_data(X, weighted * self.idf_[X.indices])


class TFIDFWeighting(_IDFWeighting):
    """TF-IDF weighting of interactions, as in ``implicit.nearest_neighbours.tfidf_weight``.

    Rows are users (documents) and columns items (terms). ``fit`` learns each item's
    ``idf = log(n_users) - log(1 + n_users_with_item)`` from the training users;
    ``transform`` weights each interaction as ``sqrt(x) * idf[item]``, so
    ``fit_transform`` on a matrix equals ``implicit``'s ``tfidf_weight`` of it.

    Attributes
    ----------
    idf_ : ndarray of shape (n_features_in_,)
        Inverse document frequency of each item, from the training users.
    n_features_in_ : int
        Number of items seen in ``fit``.

    See Also
    --------
    BM25Weighting : Adds saturation and user-length normalisation.

    Notes
    -----
    As with ``implicit``, an item that all (or all but one) training users interacted
    with gets an idf <= 0: negative (or zero, dropped) weights. This only happens on
    tiny or degenerate data.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.preprocessing import TFIDFWeighting
    >>> X = np.array([[4.0, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]])
    >>> TFIDFWeighting().fit_transform(X).toarray().round(3)
    array([[1.386, 0.   , 0.   ],
           [0.   , 0.288, 0.   ],
           [0.   , 0.288, 0.   ],
           [0.   , 0.   , 0.693]], dtype=float32)
    """

    _parameter_constraints: dict = {}

    def __init__(self):
        pass

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the item idf from training users.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Non-negative interactions of the training users.
        y : None
            Ignored.

        Returns
        -------
        self : TFIDFWeighting
            The fitted transformer.

        Examples
        --------
        >>> from skfewrec.preprocessing import TFIDFWeighting
        >>> TFIDFWeighting().fit([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]).idf_.round(3)
        array([0.405, 0.   ])
        """
        self._fit_idf(X)
        return self

    def transform(self, X):
        """Apply ``sqrt(x) * idf[item]`` with the fitted idf.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_features_in_)
            Non-negative interactions; rows are users (training or new ones).

        Returns
        -------
        X_new : scipy.sparse.csr_matrix of shape (n_users, n_features_in_)
            Float32 weights on the sparsity pattern of ``X``.

        Examples
        --------
        >>> import numpy as np
        >>> from skfewrec.preprocessing import TFIDFWeighting
        >>> tfidf = TFIDFWeighting().fit(np.eye(4))
        >>> tfidf.transform([[9.0, 0, 0, 0]]).toarray().round(3)
        array([[2.079, 0.   , 0.   , 0.   ]], dtype=float32)
        """
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        return _with_data(X, np.sqrt(X.data.astype(np.float64)) * self.idf_[X.indices])
