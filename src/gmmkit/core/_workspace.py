"""Per-thread buffers for block-sized temporaries, reused from block to block.

A block's feature and log-joint arrays (hundreds of KiB) freed and allocated again on
every block are, under glibc, often returned to the system and faulted in afresh:
always above the mmap threshold when it is frozen at 128 KiB (Dask's nanny starts
workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which freezes it), and in the main
arena, which trims freed memory at its top.  Page faults cost 0.5-1 ms per MB on
virtual machines -- more than the arithmetic on the arrays (full D=8 K=16: 2.7x slower
per iteration under Dask's setting before the kernel took its blocks from here).

Each named slot holds one buffer per thread.  What a caller gets is valid until the
next request of the same name in the same thread: a slot serves one live computation
at a time (nested computations use distinct names), and nothing taken from a slot
may be returned to a caller or stored -- copy it first.
"""

from __future__ import annotations

import threading
from math import prod
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

#: A buffer over this many bytes is not kept (a huge block does not pin its memory):
#: the request gets a fresh array.
WORKSPACE_LIMIT = 32 << 20

_LOCAL = threading.local()


def workspace(
    name: str, shape: int | tuple[int, ...], dtype: DTypeLike = np.float64
) -> NDArray[Any]:
    """An uninitialised C-contiguous array of ``shape`` and ``dtype``: the same memory
    for ``name`` on every call in a thread (grown when too small), or a fresh array
    when it would exceed :data:`WORKSPACE_LIMIT`.

    The array must not outlive the caller's use of the slot: it is overwritten by the
    next request of ``name`` in the thread."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    dtype = np.dtype(dtype)
    nbytes = prod(shape) * dtype.itemsize
    slots: dict[str, NDArray[np.uint8]] | None = getattr(_LOCAL, "slots", None)
    if slots is None:
        slots = _LOCAL.slots = {}
    buffer = slots.get(name)
    if buffer is None or len(buffer) < nbytes:
        if nbytes > WORKSPACE_LIMIT:
            return np.empty(shape, dtype=dtype)
        # a float64 allocation: every view of its start is aligned for any dtype
        buffer = np.empty(-(-nbytes // 8), dtype=np.float64).view(np.uint8)
        slots[name] = buffer
    return buffer[:nbytes].view(dtype).reshape(shape)


def as_float64(block: NDArray[Any], name: str) -> NDArray[np.float64]:
    """``block`` itself when it is float64, else its float64 copy in the slot ``name``
    (the values of ``np.asarray(block, np.float64)``)."""
    if block.dtype == np.float64:
        return block
    out = workspace(name, block.shape)
    np.copyto(out, block, casting="safe")
    return out
