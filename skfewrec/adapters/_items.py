"""New items (the long tail) for adapters: ``add_items`` delegates to the factor source.

The fold-in of an item from its warm users (the symmetric closed form) lives with
the item factors, in :mod:`skfewrec.factors._base`.
"""

import numpy as np

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
        if hasattr(self, "item_counts_"):
            counts = X_new.getnnz(axis=0).astype(np.int64)
            self.item_counts_ = np.concatenate([self.item_counts_, counts])
        self.n_features_in_ = int(self.n_features_in_ + X_new.shape[1])
        self._rebuild()
        return self
