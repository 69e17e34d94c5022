"""In-memory engine: row blocks of a NumPy array, processed by a small thread pool.

NumPy's ufuncs and BLAS release the GIL, so blocks run truly in parallel; BLAS
itself is limited to one thread per worker while a fit runs, which on small
blocks is faster than nested threading.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache, partial, reduce
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from gmmkit._blas import one_blas_thread
from gmmkit.core.kernel import row_output
from gmmkit.engines.base import (
    Chunk,
    Engine,
    chunk_rows_into,
    sample_positions,
    unlabelled_fused,
)

if TYPE_CHECKING:
    from gmmkit.core.kernel import KernelCoefficients
    from gmmkit.core.params import MixtureParams

T = TypeVar("T")

#: Bytes of one chunk's feature and log-joint blocks, ``F + K`` values a row.  Measured
#: on a 2 MiB-L2 core (2-core Intel Xeon; interleaved sweeps of 1024..65536 rows, one
#: thread): about 1 MiB keeps both blocks in L2 between the feature build, the two GEMMs
#: and the floor, ``exp``, sum and scaling passes -- full D=3 K=20: 87 ns a row at 4369
#: rows against 102 at 8192 and 137 at the former 4 MiB (17476 rows); 1-D K=2: 13 ns at
#: 26214 rows against 14.4 at 65536.
CHUNK_BYTES = 1 << 20

#: ... but at least this many rows while their features fit in :data:`FEATURE_BYTES`: a
#: chunk costs about 30 us of numpy calls whatever its size, which at 2016 rows of diag
#: D=16 K=32 (1 MiB) made it 246 ns a row against 217-222 at 3024-4096 rows.
MIN_CHUNK_ROWS = 4096

#: Largest feature block (``F`` values a row) that :data:`MIN_CHUNK_ROWS` may take: wide
#: full covariances keep blocks of about 4 MiB (D = 64, F = 2145: 244 rows, 30 % faster
#: than 64-row blocks, no faster at 384).
FEATURE_BYTES = 4 << 20


#: Rows of a chunk that the fused compiled kernel evaluates
#: (:data:`gmmkit.core.kernel.FUSED_BANDS`).  It keeps no block larger than a tile of 128
#: rows, so its time per row does not depend on the chunk's rows, but every chunk costs
#: a call from Python (about 15 us) and a hand-off between threads, which at the numpy
#: kernel's cache-sized chunks serialised the two workers.  Measured per EM iteration
#: (two threads): 1M pixels full D=3 K=20 34.1 ms at 4096 rows, 24.6 at 16384, 21.2 at
#: 65536, 20.3 at 131072; 800k exam scores (1-D, K=2) 3.73 ms at 26214 rows, 3.07 at
#: 65536, 2.82 at 131072.
FUSED_CHUNK_ROWS = 131072


def default_chunk_rows(
    n_features: int,
    n_components: int,
    itemsize: int,
    covariance_type: str = "full",
    fused: bool | None = None,
) -> int:
    """Rows per block so the (features x rows) and (K x rows) blocks stay cache-sized,
    or :data:`FUSED_CHUNK_ROWS` where the fused compiled kernel evaluates the blocks.

    Parameters
    ----------
    n_features : int
        D.
    n_components : int
        K.
    itemsize : int
        Bytes per value of the compute dtype (4 or 8).  Blocks are budgeted at no less
        than 8 bytes a value: float32 blocks are copied to float64 for the statistics
        GEMM, and measured fastest at the same rows as float64 ones (full D=3 K=20:
        67 ns a row at 4369 rows against 87 at 8738).
    covariance_type : str
        A covariance model; its layout sets the feature count: ``D (D + 1) / 2 + D + 1``
        for full, ``2 D + 1`` for diag, ``D + 2`` for spherical, ``2 D + 1`` for tied
        (centred rows and their whitening).  Full covariances that the kernel evaluates
        by whitening each component (wide data, few components:
        :func:`gmmkit.core.kernel.whitened_evaluation`) hold ``3 D + 1`` (centred rows,
        one whitened and one scaled copy, in float64 for the statistics).
    fused : bool, optional
        Whether the blocks go to the fused compiled kernel (with numba, in its bands,
        rows without labels); by default, whether they would for this model.

    Returns
    -------
    int
        Between 64 and 65536, or :data:`FUSED_CHUNK_ROWS`.
    """
    if fused is None:
        fused = fused_evaluation(n_features, n_components, covariance_type)
    if fused:
        return FUSED_CHUNK_ROWS
    features = _feature_count(n_features, covariance_type, n_components)
    value_bytes = max(itemsize, 8)
    cached = CHUNK_BYTES // max((features + n_components) * value_bytes, 1)
    least = min(MIN_CHUNK_ROWS, FEATURE_BYTES // (features * value_bytes))
    return int(min(max(cached, least, 64), 65536))


def fused_evaluation(n_features: int, n_components: int, covariance_type: str) -> bool:
    """Whether the fused compiled kernel evaluates complete rows of this model
    (:func:`gmmkit.core.kernel.fused_module`)."""
    from gmmkit.core.covariance import covariance_layout
    from gmmkit.core.kernel import fused_module

    layout = covariance_layout(covariance_type)
    return fused_module(layout, n_features, n_components) is not None


#: Fewest bytes of features and log-joints in a part when data of one chunk are cut
#: between workers (:meth:`MemoryEngine._rows_per_chunk`): a smaller part costs about
#: what handing it to a thread does.  (An eighth of the former 4 MiB chunks; the split
#: of small data, and so the order of its sums, is as before the 1 MiB chunks.)
PART_BYTES = 512 << 10


def default_part_rows(
    n_features: int, n_components: int, itemsize: int, covariance_type: str = "full"
) -> int:
    """Fewest rows of a part of one chunk cut between workers: :data:`PART_BYTES` of
    the ``F + K`` values a row of :func:`default_chunk_rows`."""
    features = _feature_count(n_features, covariance_type, n_components)
    return max(1, PART_BYTES // ((features + n_components) * max(itemsize, 8)))


def _feature_count(d: int, covariance_type: str, n_components: int) -> int:
    """``F``, the kernel's packed features of a row for the model's layout; ``3 D + 1``
    (centred rows, one whitened and one scaled copy) where the kernel whitens each
    component instead (:func:`gmmkit.core.kernel.whitened_evaluation`)."""
    from gmmkit.core.covariance import covariance_layout
    from gmmkit.core.kernel import whitened_evaluation

    layout = covariance_layout(covariance_type)
    if whitened_evaluation(layout, d, n_components):
        # measured at D = 64, K = 16 (one thread): 1024 .. 4096 rows within noise of
        # each other, 256 rows 20-50 % slower (per-call costs of K GEMMs per block)
        return 3 * d + 1
    return {
        "full": d * (d + 1) // 2 + d + 1,
        "diag": 2 * d + 1,
        "spherical": d + 2,
        "tied": 2 * d + 1,
    }[layout]


class ThreadedEngine(Engine):
    """An engine running chunks in a thread pool held for a whole session (e.g. a fit).

    BLAS is limited to one thread for the session: every GEMM here is block-sized, and
    the M-step's many tiny (D x D) factorisations are several times slower with
    threaded BLAS (badly so when other processes compete for the cores).  Sessions
    nest: an inner ``session()`` reuses the outer pool.  Subclasses set ``n_jobs``
    and call ``super().__init__()``.
    """

    n_jobs: int
    #: Known components of the rows (-1 where unknown), or None: set by subclasses.
    labels: Any

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._in_session = False

    def fused_passes(self, params: MixtureParams) -> bool:
        return unlabelled_fused(self.labels, params)

    def _parallel(self) -> bool:
        """Whether a pool is worth starting (one block runs in the calling thread)."""
        return True

    @contextmanager
    def session(self) -> Iterator[Engine]:
        if self._in_session:
            yield self
            return
        self._in_session = True
        try:
            with one_blas_thread():
                if self.n_jobs == 1 or not self._parallel():
                    yield self
                    return
                with ThreadPoolExecutor(max_workers=self.n_jobs) as pool:
                    self._pool = pool
                    try:
                        yield self
                    finally:
                        self._pool = None
        finally:
            self._in_session = False


@cache
def default_n_jobs() -> int:
    """Worker threads by default: the CPUs, at most 8 (found once: ``os.cpu_count``
    reads ``/sys``, 7 us of a one-row predict's engine)."""
    return max(1, min(os.cpu_count() or 1, 8))


class MemoryEngine(ThreadedEngine):
    """Chunks of an in-memory (or memory-mapped) array.

    Parameters
    ----------
    X : ndarray of shape (N, D)
    sample_weight : ndarray of shape (N,), optional
    labels : ndarray of shape (N,), optional
    chunk_rows : int
    n_jobs : int
        Worker threads; 1 runs in the calling thread.
    """

    def __init__(
        self,
        X: NDArray[Any],
        sample_weight: NDArray[np.float64] | None = None,
        labels: NDArray[np.intp] | None = None,
        chunk_rows: int = 4096,
        n_jobs: int | None = None,
        part_rows: int | None = None,
    ) -> None:
        self.X = X
        #: fewest rows of a part when one chunk is cut between workers
        self.part_rows = part_rows
        self.sample_weight = sample_weight
        self.labels = labels
        self.chunk_rows = max(1, int(chunk_rows))
        self.n_jobs = default_n_jobs() if n_jobs is None else max(1, int(n_jobs))
        super().__init__()

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.X.dtype)

    def _rows_per_chunk(self) -> int:
        """``chunk_rows``, except that data of one chunk are cut into up to ``n_jobs``
        equal parts of at least ``part_rows`` (default ``chunk_rows / 8``) rows, so
        that small data with many components (1797 x 17 digits, K = 100: two parts of
        899 rows) use every worker.  Parts of half a megabyte cost a millisecond or more,
        well above the thread hand-off (tens of microseconds).  Data of several chunks
        are cut into a multiple of ``n_jobs`` equal chunks of at most ``chunk_rows``
        rows, so that no worker waits on the others' last chunk (800k rows in chunks of
        131072: 8 chunks of 100000 rows, not 6 and a short one)."""
        n, rows = self.n_samples, self.chunk_rows
        if self.n_jobs <= 1:
            return rows
        if n <= rows:
            least = rows // 8 if self.part_rows is None else self.part_rows
            parts = min(self.n_jobs, n // max(least, 1))
            return -(-n // parts) if parts > 1 else rows
        chunks = -(-n // rows)
        chunks += -chunks % self.n_jobs
        return -(-n // chunks)

    def chunks(self) -> Iterator[Chunk]:
        rows = self._rows_per_chunk()
        for start in range(0, self.n_samples, rows):
            stop = min(start + rows, self.n_samples)
            weight = self.sample_weight
            yield Chunk(
                X=self.X[start:stop],
                sample_weight=None if weight is None else weight[start:stop],
                labels=None if self.labels is None else self.labels[start:stop],
                start=start,
            )

    def _parallel(self) -> bool:
        return self.n_samples > self._rows_per_chunk()

    def _map(self, func: Callable[[Chunk], T]) -> list[T]:
        if not self._in_session:
            with self.session():
                return self._map(func)
        chunks = list(self.chunks())
        if self._pool is None or len(chunks) == 1:
            return [func(c) for c in chunks]
        # every part to the pool, even when the calling thread would idle meanwhile:
        # blocks allocated there come from the main malloc arena, which returns freed
        # memory to the system between passes (digits: ~500 page faults and 1-2 ms of
        # system time per iteration when it took one part; worker arenas keep theirs).
        # Measured before the kernel kept its block-sized arrays in per-thread buffers
        # (core/_workspace.py): digits at n_jobs=1, all on this thread, now faults 0
        # times a median iteration instead of ~1260; the split was not measured again
        return list(self._pool.map(func, chunks))

    def map_reduce(self, func: Callable[[Chunk], T]) -> T:
        return reduce(lambda a, b: a + b, self._map(func))  # type: ignore[operator]

    def map_rows(self, func: Callable[[Chunk], NDArray[Any]]) -> NDArray[Any]:
        parts = self._map(func)
        return np.concatenate(parts, axis=0)

    def kernel_rows(self, coefs: KernelCoefficients, kind: str) -> Any:
        """As :meth:`Engine.kernel_rows`, each chunk written into its rows of one result
        (no concatenation of the parts: 1M rows' (n, 20) responsibilities are 160 MB)."""
        out = row_output(kind, self.n_samples, coefs.n_components)
        func = partial(chunk_rows_into, coefs, kind, out)
        if (
            not self._in_session
            and 0 < self.n_samples <= self._rows_per_chunk()
            and coefs.params is not None
            and self.fused_passes(coefs.params)
        ):
            # one chunk for the fused kernel, which makes no BLAS call: no session (its
            # BLAS limit cost a tenth of a one-row predict)
            func(next(self.chunks()))
        else:
            self._map(func)
        return out

    def sample(self, n: int, rng: np.random.Generator) -> tuple[NDArray[Any], NDArray[np.float64]]:
        positions, weights = sample_positions(self.n_samples, self.sample_weight, n, rng)
        return np.asarray(self.X[positions]), weights

    def take(self, indices: NDArray[np.intp]) -> NDArray[Any]:
        return np.asarray(self.X[indices])
