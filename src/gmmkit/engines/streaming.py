"""Out-of-core engine: one sequential pass over a chunked source per EM iteration.

Blocks from a :class:`~gmmkit.engines.sources.ChunkSource` are cut into chunks of
exactly ``chunk_rows`` rows starting at multiples of ``chunk_rows`` (the same chunks as
:class:`~gmmkit.engines.memory.MemoryEngine`), mapped in a small thread pool with a
bounded number in flight, and folded in row order.  The statistics of a pass are
therefore bit-identical to the in-memory engine's on the same data, and memory holds
only a few chunks at a time, whatever the number of rows.

The first pass over a source gives every chunk the checks in-memory input gets (NaN,
infinity, values whose squares overflow: :func:`~gmmkit.engines.base.check_block`) and
counts rows when the source cannot tell; later passes trust it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from gmmkit.engines.base import Chunk, check_block, sample_positions
from gmmkit.engines.memory import ThreadedEngine, default_n_jobs
from gmmkit.engines.sources import ChunkSource

T = TypeVar("T")


def _rechunk(
    blocks: Iterator[NDArray[Any]], chunk_rows: int, dtype: np.dtype
) -> Iterator[tuple[int, NDArray[Any]]]:
    """(start, rows) chunks of exactly ``chunk_rows`` rows (the last may be shorter)."""
    start = 0
    carry: list[NDArray[Any]] = []
    carried = 0
    for block in blocks:
        block = np.asarray(block, dtype=dtype)
        pos = 0
        n = len(block)
        if carried:
            take = min(chunk_rows - carried, n)
            carry.append(block[:take])
            carried += take
            pos = take
            if carried == chunk_rows:
                yield start, np.concatenate(carry)
                start += chunk_rows
                carry, carried = [], 0
        while n - pos >= chunk_rows:
            yield start, block[pos : pos + chunk_rows]
            start += chunk_rows
            pos += chunk_rows
        if pos < n:
            carry.append(block[pos:])
            carried += n - pos
    if carried:
        yield start, np.concatenate(carry)


class _Reservoir:
    """Uniform sample of ``size`` rows without replacement, in one pass.

    Every row gets an independent uniform key (drawn per chunk from the seed and the
    chunk's first row) and the rows with the ``size`` smallest keys are kept; rows whose
    key exceeds the current ``size``-th smallest are discarded at once, so memory stays
    O(size) and the work is one random number per row.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.threshold = np.inf
        self.keys: list[NDArray[np.float64]] = []
        self.rows: list[NDArray[Any]] = []
        self.positions: list[NDArray[np.intp]] = []
        self.held = 0

    def add(self, start: int, X: NDArray[Any]) -> None:
        keys = np.random.default_rng([self.seed, start]).random(len(X))
        keep = np.flatnonzero(keys < self.threshold)
        if not len(keep):
            return
        self.keys.append(keys[keep])
        self.rows.append(np.array(X[keep]))
        self.positions.append(start + keep)
        self.held += len(keep)
        if self.held >= 2 * self.size:
            self._prune()

    def _prune(self) -> None:
        keys = np.concatenate(self.keys)
        rows = np.concatenate(self.rows)
        positions = np.concatenate(self.positions)
        if len(keys) > self.size:
            best = np.argpartition(keys, self.size - 1)[: self.size]
            keys, rows, positions = keys[best], rows[best], positions[best]
            self.threshold = float(keys.max())
        self.keys, self.rows, self.positions = [keys], [rows], [positions]
        self.held = len(keys)

    def result(self, n_features: int, dtype: np.dtype) -> tuple[NDArray[Any], NDArray[np.intp]]:
        """Sampled rows and their positions, in row order."""
        if not self.keys:
            return np.empty((0, n_features), dtype=dtype), np.empty(0, dtype=np.intp)
        self._prune()
        order = np.argsort(self.positions[0])
        return self.rows[0][order], self.positions[0][order]


class StreamingEngine(ThreadedEngine):
    """Chunks streamed from a :class:`~gmmkit.engines.sources.ChunkSource`.

    Parameters
    ----------
    source : ChunkSource
    sample_weight : array-like of shape (N,), optional
        Sliced by row position (a memmap works and streams too).
    labels : array-like of shape (N,), optional
    chunk_rows : int
    n_jobs : int, optional
        Worker threads (default: number of CPUs); chunks in flight are bounded by
        ``2 * n_jobs``.
    progress : callable (str) -> None, optional
        Receives one line per pass over the data (rows, seconds, throughput).
    weight_scale : float
        Power of two every weight is multiplied by (see :mod:`gmmkit.core.weights`).
    """

    def __init__(
        self,
        source: ChunkSource,
        sample_weight: Any = None,
        labels: Any = None,
        chunk_rows: int = 4096,
        n_jobs: int | None = None,
        progress: Callable[[str], None] | None = None,
        weight_scale: float = 1.0,
    ) -> None:
        self.source = source
        self.sample_weight = sample_weight
        self.weight_scale = float(weight_scale)
        self.labels = labels
        self.chunk_rows = max(1, int(chunk_rows))
        self.n_jobs = default_n_jobs() if n_jobs is None else max(1, int(n_jobs))
        self.progress = progress
        self._n_rows = source.n_rows
        self._validated = False
        self._passes = 0
        super().__init__()

    # ----------------------------------------------------------------- description
    @property
    def n_samples(self) -> int:
        if self._n_rows is None:
            self.scan()
        assert self._n_rows is not None
        return self._n_rows

    @property
    def n_features(self) -> int:
        return self.source.n_features

    @property
    def dtype(self) -> np.dtype:
        return self.source.dtype

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        return self.source.feature_names

    def _weights(self, start: int, stop: int) -> NDArray[np.float64]:
        weight = np.asarray(self.sample_weight[start:stop], dtype=np.float64)
        return weight if self.weight_scale == 1.0 else weight * self.weight_scale

    def scan(self) -> None:
        """One pass that counts the rows and checks them for NaN and infinity."""
        for _ in self._chunks("scan"):
            pass

    # ----------------------------------------------------------------- passes
    def _chunks(self, kind: str) -> Iterator[Chunk]:
        began = time.perf_counter()
        validate = not self._validated
        rows = 0
        for start, X in _rechunk(
            self.source.blocks(self.chunk_rows), self.chunk_rows, self.dtype
        ):
            if validate:
                check_block(X, start, allow_nan=self.allow_nan)
            stop = start + len(X)
            yield Chunk(
                X=X,
                sample_weight=None
                if self.sample_weight is None
                else self._weights(start, stop),
                labels=None if self.labels is None else np.asarray(self.labels[start:stop]),
                start=start,
            )
            rows = stop
        if self._n_rows is None:
            self._n_rows = rows
        elif rows != self._n_rows:
            raise RuntimeError(
                f"{self.source!r} yielded {rows} rows in this pass but {self._n_rows} "
                "before; a chunked source must yield the same rows on every pass"
            )
        if self.sample_weight is not None and len(self.sample_weight) != rows:
            raise ValueError(
                f"sample_weight has {len(self.sample_weight)} entries but X has {rows} rows"
            )
        self._validated = True
        self._passes += 1
        if self.progress is not None:
            elapsed = time.perf_counter() - began
            rate = rows / elapsed if elapsed > 0 else float("inf")
            self.progress(
                f"[gmmkit] pass {self._passes} ({kind}): {rows} rows in {elapsed:.2f}s "
                f"({rate:.3g} rows/s) from {self.source.description}"
            )

    def _map(self, func: Callable[[Chunk], T], kind: str) -> Iterator[T]:
        """``func`` of every chunk, in row order, at most ``2 * n_jobs`` in flight."""
        chunks = self._chunks(kind)
        with self.session():
            pool = self._pool
            if pool is None:
                for chunk in chunks:
                    yield func(chunk)
                return
            pending: deque[Future[T]] = deque()
            try:
                for chunk in chunks:
                    pending.append(pool.submit(func, chunk))
                    if len(pending) >= 2 * self.n_jobs:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()
                for future in pending:
                    if not future.cancelled():
                        future.exception()

    def _no_rows(self) -> str:
        return (
            f"Found array with 0 sample(s) (shape=(0, {self.n_features})) while a minimum "
            f"of 1 is required ({self.source.description or 'the data source'} has no rows)"
        )

    def map_reduce(self, func: Callable[[Chunk], T]) -> T:
        total: Any = None
        for result in self._map(func, "reduce"):
            total = result if total is None else total + result
        if total is None:
            raise ValueError(self._no_rows())
        return total

    def map_rows(self, func: Callable[[Chunk], NDArray[Any]]) -> NDArray[Any]:
        parts = list(self._map(func, "rows"))
        if not parts:
            raise ValueError(self._no_rows())
        return np.concatenate(parts, axis=0)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[NDArray[Any], NDArray[np.float64]]:
        """A seeding sample read in one pass.

        With the number of rows known, rows are drawn exactly as
        :class:`~gmmkit.engines.memory.MemoryEngine` draws them
        (:func:`~gmmkit.engines.base.sample_positions`), so a fit seeded with the same
        ``random_state`` starts from the same rows in memory and out of core. Otherwise
        a one-pass uniform reservoir (memory O(n)) picks them.
        """
        n = max(1, int(n))
        if self._n_rows is None:
            reservoir = _Reservoir(n, int(rng.integers(2**63 - 1)))
            for chunk in self._chunks("sample"):
                reservoir.add(chunk.start, chunk.X)
            rows, positions = reservoir.result(self.n_features, self.dtype)
            if self.sample_weight is None:
                return rows, np.ones(len(rows))
            return rows, np.asarray(self.sample_weight[positions], dtype=np.float64)
        wanted, weights = sample_positions(self._n_rows, self.sample_weight, n, rng)
        return self._gather(wanted, "sample"), weights

    def _gather(self, wanted: NDArray[np.intp], kind: str) -> NDArray[Any]:
        """Rows at the sorted positions ``wanted``, in one pass."""
        out = np.empty((len(wanted), self.n_features), dtype=self.dtype)
        for chunk in self._chunks(kind):
            lo = np.searchsorted(wanted, chunk.start, side="left")
            hi = np.searchsorted(wanted, chunk.start + len(chunk.X), side="left")
            out[lo:hi] = chunk.X[wanted[lo:hi] - chunk.start]
        return out

    def take(self, indices: NDArray[np.intp]) -> NDArray[Any]:
        """Rows at ``indices`` (in that order), gathered in one pass."""
        indices = np.asarray(indices, dtype=np.intp)
        if len(indices) and (indices.min() < 0 or indices.max() >= self.n_samples):
            raise IndexError(f"row index out of range for {self.n_samples} rows")
        order = np.argsort(indices, kind="stable")
        out = np.empty((len(indices), self.n_features), dtype=self.dtype)
        out[order] = self._gather(indices[order], "take")
        return out
