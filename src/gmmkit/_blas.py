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

    The first user and the last one are often different threads, and threadpoolctl
    (3.8 on) obeys only one "controlling thread" for a pthreads OpenBLAS: a limit set
    in any other live thread is silently dropped.  The first fit's thread took control
    and kept it (a bare ``limit()`` never releases it), so when another fit left last
    while the first one's thread still lived, its restore was dropped and OpenBLAS
    stayed at one thread; and while any other thread held control (the main thread
    after one fit of its own), fits in other threads ran with threaded BLAS.  Setting
    and restoring therefore run as the controlling thread (:func:`_controlling`).
    """
    global _BLAS_CONTROLLER, _BLAS_USERS, _BLAS_LIMITER
    with _BLAS_LOCK:
        if _BLAS_USERS == 0:
            if _BLAS_CONTROLLER is None:
                from threadpoolctl import ThreadpoolController

                _BLAS_CONTROLLER = ThreadpoolController()
            with _controlling():
                _BLAS_LIMITER = _BLAS_CONTROLLER.limit(limits=1, user_api="blas")
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0:
                limiter, _BLAS_LIMITER = _BLAS_LIMITER, None
                with _controlling():
                    limiter.restore_original_limits()


@contextmanager
def _controlling() -> Iterator[None]:
    """Make this thread OpenBLAS's controlling thread in threadpoolctl for the block, then
    hand control back to the thread that had it (or to none).

    threadpoolctl >= 3.8 drops ``set_num_threads`` on a pthreads OpenBLAS (its pool is
    process-wide) unless it comes from the controlling thread: the first thread to set
    a limit, until it dies or leaves a ``with`` limiter.  Our shared limiter is set by
    whichever fit comes first and restored by whichever leaves last, both under
    ``_BLAS_LOCK``, so it must act from any thread.  Handing control back keeps
    another thread's ``with threadpool_limits(...)`` block, entered before a fit began,
    able to restore its own settings when it ends.
    """
    from threadpoolctl import OpenBLASController

    # private, but the only way to hand control back; without it (threadpoolctl < 3.8,
    # where any thread's limit takes effect, or a later change) release control around
    # the call through the public API where there is one
    state: Any = getattr(OpenBLASController, "_SHARED_STATE", None)
    if not hasattr(state, "controlling_thread") or not hasattr(state, "lock"):
        clear = getattr(OpenBLASController, "clear_controlling_thread", None)
        if clear is not None:
            clear(force=True)
        try:
            yield
        finally:
            if clear is not None:
                clear(force=True)
        return
    this = threading.current_thread()
    with state.lock:
        previous, state.controlling_thread = state.controlling_thread, this
    try:
        yield
    finally:
        with state.lock:
            if state.controlling_thread is this:
                state.controlling_thread = previous
