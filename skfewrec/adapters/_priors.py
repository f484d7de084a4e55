"""The empirical-Bayes prior of the adapters: the warm users' mean and covariance."""

import numpy as np


def warm_prior(U, *, eps=1e-6):
    """Mean and (Ledoit-Wolf shrunk) covariance of warm users' vectors.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.adapters._priors import warm_prior
    >>> mean, cov = warm_prior(np.random.default_rng(0).normal(size=(50, 3)))
    >>> mean.shape, cov.shape
    ((3,), (3, 3))
    """
    from sklearn.covariance import ledoit_wolf

    U = np.asarray(U, dtype=np.float64)
    mean = U.mean(axis=0)
    f = U.shape[1]
    if U.shape[0] > 1:
        cov = ledoit_wolf(U - mean, assume_centered=True)[0]
    else:
        cov = np.zeros((f, f))
    scale = np.trace(cov) / f
    cov = cov + max(eps, 1e-3 * scale) * np.eye(f)
    return mean, cov


def prior_terms(prior, strength, mean, covariance):
    """The prior's precision ``s P`` and mean ``mu``: one meaning for every adapter.

    ``"gaussian"``: ``P = Sigma^-1``; ``"mean"``: ``P = I / sigma^2`` with
    ``sigma^2 = trace(Sigma) / f`` the warm users' average variance, so that a
    strength pulls as hard for both priors, whatever the scale of the factors;
    ``"none"``: no prior, ``(None, None)``.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec.adapters._priors import prior_terms
    >>> precision, mean = prior_terms("mean", 2.0, np.zeros(2), 4.0 * np.eye(2))
    >>> precision
    array([[0.5, 0. ],
           [0. , 0.5]])
    """
    if prior == "none":
        return None, None
    if prior == "mean":
        average_variance = np.trace(covariance) / covariance.shape[0]
        return strength / average_variance * np.eye(covariance.shape[0]), mean
    if prior == "gaussian":
        return strength * np.linalg.inv(covariance), mean
    raise ValueError(f"prior must be 'none', 'mean' or 'gaussian', got {prior!r}.")
