"""Thread control: BLAS thread limits that cost microseconds, not milliseconds.

``threadpoolctl.threadpool_limits`` rediscovers the loaded libraries on every
call (about 3 ms: it reads the process's memory map), which dominates the
latency of scoring one user. :func:`blas_limits` keeps one
``ThreadpoolController`` and rediscovers only after new Python modules were
imported (the way a new BLAS library gets loaded), so a call costs a few
microseconds in a steady state such as a scoring service.
"""

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

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
    >>> from skfewrec._core.threads import blas_limits
    >>> with blas_limits(1):
    ...     product = np.ones((64, 64)) @ np.ones((64, 64))
    >>> float(product[0, 0])
    64.0
    """
    return _controller().limit(limits=n_threads, user_api="blas")


def blas_threads():
    """The largest thread count among the loaded BLAS libraries right now.

    Returns
    -------
    n_threads : int
        The largest ``num_threads`` of the loaded BLAS libraries (1 if none).

    Examples
    --------
    >>> from skfewrec._core.threads import blas_limits, blas_threads
    >>> with blas_limits(1):
    ...     blas_threads()
    1
    """
    infos = [lib for lib in ThreadpoolController().info() if lib["user_api"] == "blas"]
    return max((lib["num_threads"] for lib in infos), default=1)


def max_threads():
    """The most threads any skfewrec call starts: the machine's logical cores.

    ``n_jobs`` larger than this is capped here, in one place, so that no setting
    (``n_jobs=100000`` from a typo, a script or a model bundle) asks implicit,
    BLAS or a thread pool for more threads than there are cores: implicit
    crashes the process when it cannot start that many.

    Returns
    -------
    n_threads : int
        ``os.cpu_count()`` (1 when unknown).

    Examples
    --------
    >>> import os
    >>> from skfewrec._core.threads import max_threads
    >>> max_threads() == (os.cpu_count() or 1)
    True
    """
    return os.cpu_count() or 1


def effective_n_jobs(n_jobs):
    """The number of workers ``n_jobs`` stands for, between 1 and :func:`max_threads`.

    None means 1; a negative value counts from the number of cores (-1: all of
    them), as in joblib; a value above the number of cores is capped at it.

    Parameters
    ----------
    n_jobs : int or None
        The estimator's ``n_jobs``.

    Returns
    -------
    n_workers : int
        At least 1 and at most ``max_threads()``.

    Examples
    --------
    >>> from skfewrec._core.threads import effective_n_jobs, max_threads
    >>> effective_n_jobs(None)
    1
    >>> effective_n_jobs(100000) == max_threads()
    True
    """
    from joblib import effective_n_jobs as _effective

    return min(max(1, int(_effective(n_jobs))), max_threads())


def implicit_threads(n_jobs):
    """implicit's ``num_threads`` for ``n_jobs``: None keeps implicit's default (0, every core).

    Any other value is :func:`effective_n_jobs` of it, so capped at the cores too.

    Examples
    --------
    >>> from skfewrec._core.threads import implicit_threads
    >>> implicit_threads(None), implicit_threads(1)
    (0, 1)
    """
    return 0 if n_jobs is None else effective_n_jobs(n_jobs)


def run_threaded(func, tasks, n_workers):
    """Call ``func`` on every task, on up to ``n_workers`` threads.

    With one worker (or one task) the tasks run in order in the calling thread,
    without a pool. The tasks must be independent (e.g. write disjoint rows of
    one output array); their return values are dropped.

    Parameters
    ----------
    func : callable
        Called once per task, as ``func(task)``.
    tasks : sequence
        The tasks; ``len(tasks)`` caps the number of threads.
    n_workers : int
        The most threads to use (already resolved, e.g. by :func:`effective_n_jobs`).

    Examples
    --------
    >>> import numpy as np
    >>> from skfewrec._core.threads import run_threaded
    >>> out = np.zeros(4)
    >>> def fill(i):
    ...     out[i] = i * i
    >>> run_threaded(fill, range(4), n_workers=2)
    >>> out
    array([0., 1., 4., 9.])
    """
    n_workers = min(n_workers, len(tasks))
    if n_workers <= 1:
        for task in tasks:
            func(task)
    else:
        with ThreadPoolExecutor(n_workers) as pool:
            list(pool.map(func, tasks))
