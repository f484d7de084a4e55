"""Thread control: BLAS thread limits that cost microseconds, not milliseconds.

``threadpoolctl.threadpool_limits`` rediscovers the loaded libraries on every
call (about 3 ms: it reads the process's memory map), which dominates the
latency of scoring one user. :func:`blas_limits` keeps one
``ThreadpoolController`` and rediscovers only after new Python modules were
imported (the way a new BLAS library gets loaded), so a call costs a few
microseconds in a steady state such as a scoring service.
"""

import sys
import threading

from threadpoolctl import ThreadpoolController

_lock = threading.Lock()
_state = {"controller": None, "n_modules": -1}


def _controller():
    n_modules = len(sys.modules)
    if _state["controller"] is None or _state["n_modules"] != n_modules:
        with _lock:
            _state["controller"] = ThreadpoolController()
            _state["n_modules"] = n_modules
    return _state["controller"]


def blas_limits(n_threads):
    """Context manager limiting every loaded BLAS library to ``n_threads`` threads.

    The same as ``threadpoolctl.threadpool_limits(n_threads, user_api="blas")``,
    with the library discovery cached.

    Parameters
    ----------
    n_threads : int or None
        Threads per BLAS call; None leaves the limits unchanged.

    Returns
    -------
    limiter : context manager
        Restores the previous limits on exit.

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._threads import blas_limits
    >>> with blas_limits(1):
    ...     product = np.ones((64, 64)) @ np.ones((64, 64))
    >>> float(product[0, 0])
    64.0
    """
    return _controller().limit(limits=n_threads, user_api="blas")


def threadpool_limits(limits=None, user_api=None):
    """Drop-in for ``threadpoolctl.threadpool_limits`` with the discovery cached.

    Replacing ``from threadpoolctl import threadpool_limits`` by
    ``from ._threads import threadpool_limits`` makes every limit cost microseconds.

    Parameters
    ----------
    limits : int, dict or None
        As in threadpoolctl: threads for every library (int), per API or library
        (dict), or None to leave them unchanged.
    user_api : {"blas", "openmp"} or None
        The libraries to limit; None: all.

    Returns
    -------
    limiter : context manager
        Restores the previous limits on exit.

    Examples
    --------
    >>> from skfewrec._threads import blas_threads, threadpool_limits
    >>> with threadpool_limits(1, user_api="blas"):
    ...     blas_threads()
    1
    """
    return _controller().limit(limits=limits, user_api=user_api)


def blas_threads():
    """The largest thread count among the loaded BLAS libraries right now.

    Returns
    -------
    n_threads : int
        The largest ``num_threads`` of the loaded BLAS libraries (1 if none).

    Examples
    --------
    >>> from skfewrec._threads import blas_limits, blas_threads
    >>> with blas_limits(1):
    ...     blas_threads()
    1
    """
    infos = [lib for lib in ThreadpoolController().info() if lib["user_api"] == "blas"]
    return max((lib["num_threads"] for lib in infos), default=1)
