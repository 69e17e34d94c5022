"""Chunked data sources: row blocks read one after another, never the whole data set.

A source knows its width, its compute dtype and (when cheap) its number of rows, and
yields consecutive row blocks on every pass.  :class:`~gmmkit.engines.streaming.
StreamingEngine` turns those blocks into fixed-size chunks and maps the EM kernel over
them, so memory stays independent of the number of rows.

* :class:`ChunkSource` — what every source provides.
* :class:`ArraySource` — a ``numpy.memmap`` (``np.load(path, mmap_mode="r")``) or any
  2-D array-like that can be sliced by rows (h5py, zarr).  Pages of a memory map that
  have been processed are handed back to the OS, so the resident set stays small.
* :class:`IterableSource` — any callable returning a fresh iterator of 2-D blocks.

The file sources, :class:`~gmmkit.data.sources.ParquetSource` and
:class:`~gmmkit.data.sources.CSVSource`, live with the data readers in
:mod:`gmmkit.data.sources`; they can still be imported from here.
"""

from __future__ import annotations

import mmap
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gmmkit.engines.base import NonNumericError

#: A memory map's processed pages are released in spans of at least this many bytes.
RELEASE_BYTES = 32 << 20
#: Spans closer than this to the reading position are kept (chunks still in flight).
RELEASE_LAG_BYTES = 16 << 20


def compute_dtype(dtype: Any) -> np.dtype:
    """float32 and float64 are kept; every other numeric dtype computes in float64."""
    dtype = np.dtype(dtype)
    if dtype in (np.dtype(np.float32), np.dtype(np.float64)):
        return dtype
    if dtype.kind not in "biuf":
        raise NonNumericError(f"X must be numeric, got dtype {dtype}")
    return np.dtype(np.float64)


class ChunkSource(ABC):
    """Consecutive row blocks of a data set, re-readable pass after pass.

    Attributes
    ----------
    n_features : int
    dtype : numpy dtype
        Compute dtype of the blocks (float32 or float64).
    n_rows : int or None
        Number of rows, or None when only a full pass can tell.
    feature_names : tuple of str or None
        Column names, when the source has them.
    """

    n_features: int
    dtype: np.dtype
    n_rows: int | None = None
    feature_names: tuple[str, ...] | None = None

    @abstractmethod
    def blocks(self, rows_hint: int) -> Iterator[NDArray[Any]]:
        """Row blocks of shape (n_i, n_features), in order, covering every row once.

        ``rows_hint`` is the chunk size the consumer wants; sources that can choose
        their block size return multiples of it (no copies needed downstream).
        """

    def __repr__(self) -> str:
        rows = "?" if self.n_rows is None else str(self.n_rows)
        return f"{type(self).__name__}({self.description}, rows={rows}, " \
            f"features={self.n_features}, dtype={self.dtype})"

    @property
    def description(self) -> str:
        return ""


# ----------------------------------------------------------------------------- arrays
class _PageReleaser:
    """Hands a memory map's already-processed pages back to the kernel.

    File-backed pages count in the process's resident set until they are unmapped;
    ``MADV_DONTNEED`` drops them from the page tables (they stay in the page cache, and
    a later access simply faults them in again, so data are never affected).  Only
    shared mappings are released: on a copy-on-write map it would discard the user's
    in-memory modifications.
    """

    def __init__(self, array: Any) -> None:
        self._map: mmap.mmap | None = None
        mapped = getattr(array, "_mmap", None)
        if (
            isinstance(mapped, mmap.mmap)
            and getattr(array, "mode", "c") in ("r", "r+", "w+")
            and hasattr(mapped, "madvise")
            and hasattr(mmap, "MADV_DONTNEED")
        ):
            try:
                base = np.frombuffer(mapped, dtype=np.uint8, count=1)
            except (ValueError, TypeError, BufferError):
                return
            self._map = mapped
            self._base = int(base.ctypes.data)
            self._size = len(mapped)
            del base
        self._low: int | None = None
        self._high = 0

    def consumed(self, view: NDArray[Any]) -> None:
        """Note that ``view``'s bytes have been read; release old spans when large."""
        if self._map is None or view.size == 0:
            return
        from numpy.lib.array_utils import byte_bounds

        low, high = byte_bounds(view)
        if self._low is None:
            self._low, self._high = low, high
        else:
            self._low, self._high = min(self._low, low), max(self._high, high)
        if self._high - self._low >= RELEASE_BYTES + RELEASE_LAG_BYTES:
            self._release(self._low, self._high - RELEASE_LAG_BYTES)
            self._low = self._high - RELEASE_LAG_BYTES

    def finish(self) -> None:
        if self._map is not None and self._low is not None:
            self._release(self._low, self._high)
        self._low = None

    def _release(self, low: int, high: int) -> None:
        assert self._map is not None
        start = (low - self._base) // mmap.PAGESIZE * mmap.PAGESIZE
        stop = min(high - self._base, self._size)
        if stop <= start or start < 0:
            return
        try:
            self._map.madvise(mmap.MADV_DONTNEED, start, stop - start)
        except (OSError, ValueError):  # a closed or foreign map: keep the pages
            self._map = None


class ArraySource(ChunkSource):
    """Row blocks of a memory-mapped (or any row-sliceable) 2-D array.

    Parameters
    ----------
    array : numpy.memmap or array-like of shape (N, D)
        Anything with ``shape``, ``dtype`` and row slicing ``array[a:b]``.
    name : str, optional
        Shown in messages.
    """

    def __init__(self, array: Any, name: str | None = None) -> None:
        shape = tuple(getattr(array, "shape", ()))
        if len(shape) != 2:
            raise ValueError(
                f"Expected a 2D array, got an array of shape {shape}. Reshape your data "
                "either using array.reshape(-1, 1) if your data has a single feature or "
                "array.reshape(1, -1) if it contains a single sample."
            )
        self.array = array
        self.n_rows: int = int(shape[0])
        self.n_features = int(shape[1])
        self.dtype = compute_dtype(array.dtype)
        self._name = name or (
            f"memmap {getattr(array, 'filename', '')}".strip()
            if isinstance(array, np.memmap)
            else type(array).__name__
        )

    @property
    def description(self) -> str:
        return self._name

    def blocks(self, rows_hint: int) -> Iterator[NDArray[Any]]:
        releaser = _PageReleaser(self.array)
        step = max(1, int(rows_hint))
        try:
            for start in range(0, self.n_rows, step):
                block = self.array[start : start + step]
                yield np.asarray(block)
                if isinstance(block, np.ndarray):
                    releaser.consumed(block)
        finally:
            releaser.finish()


class IterableSource(ChunkSource):
    """Blocks from a factory: a callable returning a fresh iterator of 2-D arrays.

    The factory is called once per pass and must yield the same rows every time
    (a generator function over files, a database cursor, ...).

    Parameters
    ----------
    factory : callable () -> iterable of array-like of shape (n_i, D)
    """

    def __init__(self, factory: Callable[[], Iterable[Any]]) -> None:
        if not callable(factory):
            raise TypeError(f"a chunk factory must be callable, got {type(factory).__name__}")
        self.factory = factory
        first = None
        for block in factory():
            first = np.asarray(block)
            if len(first):
                break
        if first is None:
            raise ValueError("the chunk factory yielded no block")
        if first.ndim != 2:
            raise ValueError(f"the chunk factory must yield 2D blocks, got shape {first.shape}")
        self.n_features = int(first.shape[1])
        self.dtype = compute_dtype(first.dtype)
        self.n_rows = None

    @property
    def description(self) -> str:
        return f"chunks from {getattr(self.factory, '__name__', type(self.factory).__name__)}"

    def blocks(self, rows_hint: int) -> Iterator[NDArray[Any]]:
        for block in self.factory():
            array = np.asarray(block)
            if array.ndim != 2 or array.shape[1] != self.n_features:
                raise ValueError(
                    f"the chunk factory yielded a block of shape {array.shape}; every block "
                    f"must have shape (n, {self.n_features})"
                )
            yield array


def __getattr__(name: str) -> Any:
    """The file sources moved to :mod:`gmmkit.data.sources`; old imports keep working."""
    if name in ("CSVSource", "ParquetSource"):
        from gmmkit.data import sources

        return getattr(sources, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
