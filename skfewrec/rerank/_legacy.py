"""The user-kNN features of re-rankers saved by skfewrec 0.1.0.

Those models kept every warm user's interactions (``warm_interactions_``) to find
each new user's nearest warm users. Current models do not: their
``similar_users_score`` is read from the bounded co-occurrence table. A bundle
saved by 0.1.0 still holds the warm matrix, and its booster was trained on these
two features, so they are computed here, exactly as then, for such models only.
"""

import numpy as np
import scipy.sparse as sp

#: warm users kept as neighbours of a user
USER_NEIGHBORS = 50


class LegacyUserKNN:
    """The 0.1.0 user-kNN features, from the warm interaction matrix a legacy bundle holds.

    Parameters
    ----------
    warm : sparse matrix of shape (n_warm_users, n_items)
        The binary warm interactions of a 0.1.0 bundle (``warm_interactions_``).

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from skfewrec.rerank._legacy import LegacyUserKNN
    >>> from skfewrec.rerank._features import slot_blocks
    >>> knn = LegacyUserKNN(sp.csr_matrix(np.array([[1.0, 1, 0], [1, 0, 1]])))
    >>> B, cand = sp.csr_matrix(np.array([[1.0, 0, 0]])), np.array([[1, 2]])
    >>> blocks = lambda block: slot_blocks(cand, cand >= 0, 3, block)
    >>> score, similarity = knn(B, cand, blocks, 3)
    >>> score.tolist(), similarity.astype(float).round(3).tolist()
    ([[0.5, 0.5]], [0.707])
    """

    def __init__(self, warm):
        self.warm = sp.csr_matrix(warm, dtype=np.float32)
        self.warm_t = self.warm.T.tocsr()
        self.warm_inv_norm = 1.0 / np.sqrt(np.maximum(np.diff(self.warm.indptr), 1.0))

    def __call__(self, B, cand, slot_blocks, n_items, block_elements=1 << 22):
        """Similarity-weighted share of the nearest warm users who have each candidate.

        Similarity is the cosine between binary rows (shots against a warm
        user's items); each user keeps its ``USER_NEIGHBORS`` most similar warm
        users. The arithmetic is that of 0.1.0, step for step, so that a legacy
        booster sees the very values it was trained on.

        Parameters
        ----------
        B : csr_matrix of shape (n_users, n_items)
            The users' binary support sets.
        cand : ndarray of shape (n_users, n_candidates), int
            Candidate item indices.
        slot_blocks : callable
            ``slot_blocks(block)`` yields ``(start, stop, slot_map)`` over blocks
            of users (see ``skfewrec.rerank._features``).
        n_items : int
            The catalogue size.
        block_elements : int
            Dense elements of one block of user-by-warm-user similarities.

        Returns
        -------
        score : ndarray of shape (n_users, n_candidates), float32
        similarity : ndarray of shape (n_users,), float32
            The mean similarity of the user's neighbours.
        """
        n, n_cand = cand.shape
        n_warm = self.warm.shape[0]
        k = min(USER_NEIGHBORS, n_warm)
        score = np.zeros(n * n_cand, dtype=np.float32)
        similarity = np.zeros(n, dtype=np.float32)
        block = max(1, block_elements // max(n_items, n_warm, 1))
        for start, stop, slot_map in slot_blocks(block):
            b = stop - start
            # the user's own norm does not change its ranking of warm users
            P = (B[start:stop] @ self.warm_t).toarray() * self.warm_inv_norm[None, :]
            if k < n_warm:
                top = np.argpartition(-P, k - 1, axis=1)[:, :k]
            else:
                top = np.broadcast_to(np.arange(n_warm), (b, n_warm))
            sim = np.take_along_axis(P, top, axis=1)
            sim /= np.sqrt(np.maximum(np.diff(B.indptr[start : stop + 1]), 1.0))[:, None]
            total = sim.sum(axis=1)
            similarity[start:stop] = total / k
            N = sp.csr_matrix(
                (sim.ravel(), top.ravel(), np.arange(0, b * k + 1, k)), shape=(b, n_warm)
            )
            R = N @ self.warm
            # read R at the candidates only, through the slot map
            owner = np.repeat(np.arange(b, dtype=np.int64) * n_items, np.diff(R.indptr))
            hit = slot_map[owner + R.indices]
            keep = hit >= 0
            got = np.zeros(b * n_cand, dtype=np.float32)
            got[hit[keep]] = R.data[keep]
            got = got.reshape(b, n_cand) / np.maximum(total, 1e-12)[:, None]
            score[start * n_cand : stop * n_cand] = got.ravel()
        return score.reshape(n, n_cand), similarity
