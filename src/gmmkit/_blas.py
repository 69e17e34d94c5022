"""One BLAS thread while gmmkit's own code runs many small BLAS calls.

A fit's GEMMs are block-sized and its M-step (like the hierarchical agglomeration of
:mod:`gmmkit.core.hc`) makes many tiny (D x D) factorisations and products, several times
slower with threaded BLAS, badly so when other processes compete for the cores.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_BLAS_CONTROLLER: Any = None
_BLAS_LOCK = threading.Lock()
_BLAS_USERS = 0
_BLAS_LIMITER: Any = None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit BLAS to one thread while any fit (or agglomeration) in the process is inside
    this block.

    threadpoolctl's limits are process-global: two threads that each enter and leave
    their own limiter restore each other's settings in the wrong order (eight
    concurrent fits left BLAS at one thread for good).  One limiter is shared instead,
    under a lock with a count of users; the first user sets the limit and the last
    one to leave restores the settings found on entry.  Every engine (in memory,
    streamed, dask, torch's host side) and :func:`gmmkit.core.hc.hc_partitions` use this
    one.  A cached ``ThreadpoolController`` makes entering
    cost microseconds, not the milliseconds of ``threadpool_limits`` (which re-scans
    the loaded libraries).
    """
    global _BLAS_CONTROLLER, _BLAS_USERS, _BLAS_LIMITER
    with _BLAS_LOCK:
        if _BLAS_USERS == 0:
            if _BLAS_CONTROLLER is None:
                from threadpoolctl import ThreadpoolController

                _BLAS_CONTROLLER = ThreadpoolController()
            _BLAS_LIMITER = _BLAS_CONTROLLER.limit(limits=1, user_api="blas")
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0:
                limiter, _BLAS_LIMITER = _BLAS_LIMITER, None
                limiter.restore_original_limits()
