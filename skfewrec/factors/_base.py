"""What every factor source shares: new items folded in from the warm users, and appended.

A factor source owns the item side of the model. Besides ``transform`` (fold in
users, items fixed) it folds in *items* with the warm users' vectors fixed: the
symmetric closed form. For implicit feedback the vector of an item touched by
the warm users ``S`` solves::

    (X^T X + lambda I + X_S^T D X_S) y = X_S^T t

which is the user fold-in on the transposed problem (the items are the rows, the
warm users play the part of the items): exactly the item half-step a retraining
of ALS would take, so a new item costs one small batched solve (implicit's
``recalculate_item``).

Adapters reach their source through one small protocol, implemented by
:class:`~skfewrec.factors.ALSFactors` and
:class:`~skfewrec.factors.ExplicitALSFactors`:

- ``fold_in_params(regularization=None, confidence_scale=None, convention=None)``:
  the adapter's overrides checked and resolved against the source's own settings;
- ``fold_in_system(*, regularization, convention, prior_precision, prior_mean)``:
  the immutable :class:`~skfewrec._core.solvers.FoldInSystem` users are solved against;
- ``fold_in(X, system, *, regularization, confidence_scale, convention, solver, n_jobs)``:
  the users' vectors (float64);
- ``scoring_factors(U, columns=None)``: user and item matrices whose products
  are the scores;
- ``fold_in_items(X_new_items)`` and ``extend_items(X_new_items)``: new items.
"""

import warnings

import numpy as np

from .._core.compat import check_is_fitted
from .._core.validation import check_interactions


class FactorSourceMixin:
    """New items for a factor source: ``fold_in_items`` and ``extend_items``.

    A subclass implements ``_item_step(Xt)``: the item parameters (a dict of
    attribute name -> rows, ``item_factors_`` first) of the items whose warm
    users' values are the rows of ``Xt``.
    """

    def scoring_factors(self, U, columns=None):
        """User and item matrices whose products are the scores.

        Parameters
        ----------
        U : ndarray of shape (n_users, n_components)
            Folded-in user vectors.
        columns : ndarray of int, default=None
            The items to score (None: every item).

        Returns
        -------
        U, V : ndarray, float32
            ``U @ V.T`` are the scores.

        Examples
        --------
        >>> import numpy as np
        >>> from skfewrec import ALSFactors
        >>> als = ALSFactors.from_arrays(np.eye(3, 2))
        >>> U, V = als.scoring_factors(np.ones((1, 2)), columns=np.array([0, 2]))
        >>> U @ V.T
        array([[1., 0.]], dtype=float32)
        """
        V = self.item_factors_ if columns is None else self.item_factors_[columns]
        return np.asarray(U, dtype=np.float32), V

    def _warm_users(self, X_new_items):
        """Checked ``X_new_items`` (warm users x new items) -> its transpose, items as rows."""
        check_is_fitted(self)
        X_new = check_interactions(X_new_items, name="X_new_items")
        U = getattr(self, "user_factors_", None)
        if U is None or U.shape[0] == 0:
            raise ValueError(
                "Folding in items needs the warm users' vectors, but the factor source holds "
                "none (factors_.user_factors_ is empty). Pretrain the factors on the warm "
                "users (ALSFactors.fit), or pass user_factors to ALSFactors.from_arrays."
            )
        if X_new.shape[0] != U.shape[0]:
            raise ValueError(
                f"X_new_items has {X_new.shape[0]} rows but the factor source holds "
                f"{U.shape[0]} warm users; pass one row per warm user, in the order of the "
                "rows the factors were trained on (the rows fit saw)."
            )
        return X_new.T.tocsr()

    def fold_in_items(self, X_new_items):
        """Fold in items: their exact vectors from their warm users, user vectors fixed.

        The item half-step of ALS (implicit's ``recalculate_item``), batched;
        the factor source is left unchanged (see :meth:`extend_items`).

        Parameters
        ----------
        X_new_items : {array-like, sparse matrix} of shape (n_warm_users, n_new_items)
            The warm users' values for the new items, one row per warm user in the
            order of ``user_factors_``.

        Returns
        -------
        item_factors : ndarray of shape (n_new_items, n_components), float32
            Zero for an item without warm users.

        Examples
        --------
        >>> from skfewrec import ALSFactors
        >>> from skfewrec.datasets import make_interactions
        >>> X = make_interactions(n_users=200, n_items=60, random_state=0).X
        >>> als = ALSFactors(n_components=8, random_state=0).fit(X[:, :50])
        >>> als.fold_in_items(X[:, 50:]).shape
        (10, 8)
        """
        return self._item_step(self._warm_users(X_new_items))["item_factors_"]

    def extend_items(self, X_new_items):
        """A copy of this factor source with new items appended, folded in from the warm users.

        Copy-on-write: this source is not modified (it may be frozen and shared);
        the new one has the new items at indices ``n_features_in_`` onwards.

        Parameters
        ----------
        X_new_items : {array-like, sparse matrix} of shape (n_warm_users, n_new_items)
            The warm users' values for the new items, one row per warm user in the
            order of ``user_factors_``.

        Returns
        -------
        factors : factor source
            A new fitted source of the same class, with the catalogue grown.

        Warns
        -----
        UserWarning
            When a new item has no value from any warm user: it gets zero
            parameters (and a count of 0 in ``item_counts_``).

        Examples
        --------
        >>> from skfewrec import ALSFactors
        >>> from skfewrec.datasets import make_interactions
        >>> X = make_interactions(n_users=200, n_items=60, random_state=0).X
        >>> als = ALSFactors(n_components=8, random_state=0).fit(X[:, :50])
        >>> grown = als.extend_items(X[:, 50:])
        >>> grown.item_factors_.shape, als.item_factors_.shape
        ((60, 8), (50, 8))
        """
        Xt = self._warm_users(X_new_items)
        counts = np.diff(Xt.indptr)
        parts = self._item_step(Xt)
        lonely = np.flatnonzero(counts == 0)
        if lonely.size:
            for rows in parts.values():
                rows[lonely] = 0
            warnings.warn(
                f"{lonely.size} of the {counts.size} new items have no interaction from a "
                f"warm user (first: new item {lonely[0]}, column "
                f"{self.n_features_in_ + lonely[0]}); they get a zero vector and rank as "
                "unknown items. Add them once warm users have interacted with them.",
                UserWarning,
                stacklevel=2,
            )
        grown = {name: np.concatenate([getattr(self, name), rows]) for name, rows in parts.items()}
        if hasattr(self, "item_counts_"):
            grown["item_counts_"] = np.concatenate([self.item_counts_, counts.astype(np.int64)])
        grown["n_features_in_"] = int(self.n_features_in_ + counts.size)
        return self._replace(**grown)
