"""Baselines the benchmarks need beyond skfewrec.baselines: conditional-probability
item-kNN (RecPack's ``ItemKNN(similarity="conditional_probability")``) and EASE
restricted to the most popular items, for catalogues whose dense item x item matrix
does not fit (Gowalla: 41k items, 6.7 GB in float32)."""

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from skfewrec._core.compat import Interval, _fit_context
from skfewrec.base import RecommenderMixin, validate_interactions


class ConditionalKNN(RecommenderMixin, BaseEstimator):
    """Item-kNN with the conditional-probability similarity of Deshpande & Karypis (2004).

    ``sim(i, j) = co(i, j) / (n_i * n_j ** pop_discount)`` with ``co`` the number of
    users who have both items and ``n`` each item's number of users; each item keeps
    its ``n_neighbors`` most similar items. A user's scores are ``x_u S``. Binary
    interactions, as RecPack's ``ItemKNN(similarity="conditional_probability")``.

    Parameters
    ----------
    n_neighbors : int, default=200
        Neighbours kept per item.
    pop_discount : float, default=0.5
        Exponent of the target item's popularity in the denominator.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]])
    >>> ConditionalKNN(n_neighbors=2).fit(X).recommend(np.array([[1, 0, 0]]), k=1)[0]
    array([[1]])
    """

    _parameter_constraints = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "pop_discount": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, *, n_neighbors=200, pop_discount=0.5):
        self.n_neighbors = n_neighbors
        self.pop_discount = pop_discount

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Count co-occurrences and keep each item's nearest neighbours."""
        from skfewrec._core.knn import conditional_neighbors

        X = validate_interactions(self, X, reset=True)
        # by blocks of items: the whole co-occurrence of Gowalla does not fit
        self.similarity_ = conditional_neighbors(X, self.n_neighbors, self.pop_discount)
        return self

    def _scorer(self, X, columns):
        S = self.similarity_ if columns is None else self.similarity_[:, columns].tocsc()
        B = sp.csr_matrix((np.ones_like(X.data), X.indices, X.indptr), shape=X.shape)

        def score_block(start, stop):
            return np.asarray((B[start:stop] @ S).toarray(), dtype=np.float32)

        return score_block

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _ease_weights(X, l2):
    """EASE's ``B = I - P / diag(P)``, ``P = (X^T X + l2 I)^-1``, in float32 and in place
    (a Cholesky inverse: one n x n buffer, where ``skfewrec.EASE`` holds three in float64)."""
    from scipy.linalg import lapack

    G = np.asarray((X.T @ X).toarray(), dtype=np.float32, order="F")
    G[np.diag_indices_from(G)] += l2
    L, info = lapack.spotrf(G, lower=1, overwrite_a=1, clean=0)
    P, info2 = lapack.spotri(L, lower=1, overwrite_c=1)
    if info or info2:
        raise np.linalg.LinAlgError(f"EASE's Gram matrix is not positive definite (l2={l2}).")
    P = _symmetrize_lower(P)
    d = np.diag(P).copy()
    P /= -d[None, :]
    P[np.diag_indices_from(P)] = 0.0
    return np.ascontiguousarray(P)


def _symmetrize_lower(P, block=2048):
    """Copy the lower triangle onto the upper, by blocks (no n x n temporaries)."""
    n = P.shape[0]
    for s in range(0, n, block):
        e = min(s + block, n)
        P[s:e, e:] = P[e:, s:e].T
        tile = P[s:e, s:e]
        P[s:e, s:e] = np.tril(tile) + np.tril(tile, -1).T
    return P


class TopItemsEASE(RecommenderMixin, BaseEstimator):
    """EASE on the ``max_items`` most popular items; the other items rank last.

    With ``max_items=None`` (or a catalogue no larger) it is plain EASE. The dense
    item x item solve costs ``8 max_items**2`` bytes twice (float64).

    Parameters
    ----------
    l2 : float, default=500.0
        EASE's ridge.
    max_items : int, default=None
        How many of the most popular items EASE models; None: all.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0]])
    >>> rec = TopItemsEASE(l2=0.1, max_items=3).fit(X)
    >>> rec.recommend(np.array([[1, 0, 0, 0]]), k=1)[0]
    array([[1]])
    """

    _parameter_constraints = {
        "l2": [Interval(Real, 0, None, closed="neither")],
        "max_items": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, *, l2=500.0, max_items=None):
        self.l2 = l2
        self.max_items = max_items

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit EASE on the most popular items' columns."""
        X = validate_interactions(self, X, reset=True)
        counts = np.bincount(X.indices, minlength=X.shape[1])
        m = X.shape[1] if self.max_items is None else min(self.max_items, X.shape[1])
        self.items_ = np.sort(np.argsort(-counts, kind="stable")[:m])
        self.coef_ = _ease_weights(X[:, self.items_], self.l2)
        self.coverage_ = counts[self.items_].sum() / max(counts.sum(), 1)
        return self

    def _scorer(self, X, columns):
        n_items = self.n_features_in_
        position = np.full(n_items, -1)
        position[self.items_] = np.arange(self.items_.size)
        cols = np.arange(n_items) if columns is None else np.asarray(columns)
        modeled = position[cols] >= 0
        B = self.coef_[:, position[cols[modeled]]]
        Xm = X[:, self.items_]

        def score_block(start, stop):
            out = np.full((stop - start, cols.size), -1e30, dtype=np.float32)
            out[:, modeled] = Xm[start:stop] @ B
            return out

        return score_block

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
