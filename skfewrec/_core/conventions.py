"""Confidence conventions: how interaction values enter the iALS fold-in system.

implicit and Spark MLlib turn a value into a confidence and scale the ridge
differently; every fold-in (users and items, closed form and gradient) goes
through these two functions.
"""

import numpy as np

CONVENTIONS = ("implicit", "spark")


def confidence_coefficients(data, confidence_scale, convention="implicit"):
    """Per-shot ``(d, t)`` of the fold-in system for a confidence convention.

    Every unobserved item has confidence 1 and preference 0. An observed value
    ``r`` has confidence ``c`` and preference ``p``; the user's system gains
    ``d = c - 1`` on its diagonal term and ``t = c p`` on its right-hand side.

    - ``"implicit"`` (implicit's ALS): ``c = scale * r``, ``p = 1``.
    - ``"spark"`` (Spark MLlib's implicit ALS): ``c = 1 + scale * |r|``,
      ``p = 1 if r > 0 else 0``; the ridge is also scaled by the user's number of
      interactions (see :func:`ridge_per_user`).

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._core.conventions import confidence_coefficients
    >>> confidence_coefficients(np.array([1.0, 2.0]), 3.0)
    (array([2., 5.]), array([3., 6.]))
    >>> confidence_coefficients(np.array([1.0, 2.0]), 3.0, "spark")
    (array([3., 6.]), array([4., 7.]))
    """
    r = np.asarray(data, dtype=np.float64)
    if convention == "implicit":
        c = confidence_scale * r
        return c - 1.0, c
    if convention == "spark":
        d = confidence_scale * np.abs(r)
        return d, (1.0 + d) * (r > 0)
    _check_convention(convention)


def _check_convention(convention):
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}.")


def shared_ridge(regularization, convention="implicit"):
    """The ridge every user shares (in the matrix ``M``) under a convention.

    implicit puts the whole ridge ``lambda`` in ``M``; Spark puts none there, as
    its ridge ``lambda * n_u`` is per user (see :func:`ridge_per_user`).

    Examples
    --------
    >>> from skfewrec._core.conventions import shared_ridge
    >>> shared_ridge(0.1), shared_ridge(0.1, "spark")
    (0.1, 0.0)
    """
    _check_convention(convention)
    return 0.0 if convention == "spark" else regularization


def ridge_per_user(indptr, regularization, convention="implicit"):
    """The shared ridge and the per-user extra ridge of a convention.

    implicit uses ``lambda`` for every user; Spark uses ``lambda * n_u`` with
    ``n_u`` the user's number of interactions.

    Returns
    -------
    shared : float
        The ridge in the shared matrix.
    extra : ndarray of shape (n_users,) or None
        A per-user addition (None when there is none).
    """
    shared = shared_ridge(regularization, convention)
    if convention == "spark":
        return shared, regularization * np.diff(indptr).astype(np.float64)
    return shared, None
