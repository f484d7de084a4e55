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
