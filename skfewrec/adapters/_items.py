"""New items (the long tail): fold in an item added after pretraining, from its warm users.

The symmetric closed form of the user fold-in. With the warm users' vectors ``X``
fixed, the iALS vector of an item touched by the users ``S`` solves::

    (X^T X + lambda I + X_S^T D X_S) y = X_S^T t

which is :func:`skfewrec._core.solvers.solve_users` on the transposed problem: the
items are the rows and the warm users play the part of the items. It is exactly
the item half-step a retraining of ALS would take, so a new item costs one small
batched solve instead of a retraining.
"""

import warnings

import numpy as np

from .._core.compat import check_is_fitted
from .._core.conventions import confidence_coefficients, ridge_per_user
from .._core.solvers import shared_system, solve_users
from .._core.validation import check_interactions


class NewItemsMixin:
    """``add_items``: append items added after pretraining to a fitted adapter.

    For estimators with a fitted factor source ``factors_`` holding the warm
    users' vectors (``factors_.user_factors_``), item vectors ``item_factors_``,
    ``n_features_in_`` and a ``_rebuild`` method for their derived caches.
    Subclasses with other item parameters (biases) override ``_fold_in_items``.
    """

    def _warm_user_factors(self):
        U = getattr(self.factors_, "user_factors_", None)
        if U is None or U.shape[0] == 0:
            raise ValueError(
                "add_items needs the warm users' vectors, but the factor source holds none "
                "(factors_.user_factors_ is empty). Pretrain the factors on the warm users "
                "(ALSFactors.fit), or pass user_factors to ALSFactors.from_arrays."
            )
        return U

    def _check_new_item_values(self, X_new):
        """Hook: extra checks of the new items' values (e.g. a rating scale)."""

    def _fold_in_items(self, Xt):
        """Item parameters of the new items (rows of ``Xt``) -> {attribute: rows}."""
        source = self.factors_
        U = self._warm_user_factors()
        convention = getattr(source, "convention_", "implicit")
        shared, extra = ridge_per_user(Xt.indptr, source.regularization, convention)
        d, t = confidence_coefficients(Xt.data, source.confidence_scale, convention)
        system = shared_system(U, shared)
        V = solve_users(Xt.indptr, Xt.indices, d, t, system, extra_ridge=extra)
        return {"item_factors_": V.astype(np.float32)}

    def add_items(self, X_new_items):
        """Fold in items added after fitting, from the warm users who interacted with them.

        Each new item's vector is the exact closed-form solve of the pretraining
        objective with the warm users' vectors fixed (the item half-step of ALS),
        using the factor source's regularisation and confidence settings. The new
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
            The estimator, with ``item_factors_`` and ``n_features_in_`` grown.

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
        U = self._warm_user_factors()
        if X_new.shape[0] != U.shape[0]:
            raise ValueError(
                f"X_new_items has {X_new.shape[0]} rows but the factor source holds "
                f"{U.shape[0]} warm users; pass one row per warm user, in the order of the "
                "rows the factors were trained on (the rows fit saw)."
            )
        self._check_new_item_values(X_new)
        Xt = X_new.T.tocsr()
        counts = np.diff(Xt.indptr)
        parts = self._fold_in_items(Xt)
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
        for name, rows in parts.items():
            setattr(self, name, np.concatenate([getattr(self, name), rows]))
        if hasattr(self, "item_counts_"):
            self.item_counts_ = np.concatenate([self.item_counts_, counts.astype(np.int64)])
        self.n_features_in_ = int(self.n_features_in_ + counts.size)
        if hasattr(self, "_rebuild"):
            self._rebuild()
        return self
