"""What every engine provides: chunks of rows, mapped and reduced.

Engines decide *where chunks come from* and *how results are combined*; they hold
no statistics code.  The EM core hands them a pure function ``Chunk -> T`` whose
results add (``SuffStats``, ``KMeansStats``) or concatenate (per-row predictions).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial, reduce
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from gmmkit.core.kernel import KernelCoefficients
    from gmmkit.core.params import MixtureParams
    from gmmkit.core.suffstats import SuffStats

T = TypeVar("T")


class NonNumericError(TypeError, ValueError):
    """Input that is not numbers (a string column, an object array).

    A ValueError, as scikit-learn raises for in-memory arrays of strings, and a
    TypeError, since the dtype is at fault.
    """


def squares_limit(dtype: Any, n_features: int) -> float:
    """Largest magnitude whose squared deviations cannot overflow ``dtype``.

    The kernel forms products of centred features and sums them over blocks of up to
    ~1e6 rows in the data's own dtype: beyond ``sqrt(max / (4 D 2^20))`` (about 1e151
    for float64, 1e16 for float32) they would turn into inf and then NaN.
    """
    info = np.finfo(dtype)
    return float(np.sqrt(float(info.max) / (4.0 * max(int(n_features), 1) * 2.0**20)))


def check_block(X: NDArray[Any], start: int, where: str = "X", allow_nan: bool = False) -> None:
    """The checks in-memory input gets, for one block of streamed rows.

    One ``isfinite`` pass and one min/max pass: raise a ValueError naming the first row
    (``start`` is the block's first row in the whole data set) that holds NaN or
    infinity, or a value whose square would overflow (see :func:`squares_limit`).
    With ``allow_nan`` (estimators asked to marginalise over missing values) NaN passes
    and only infinity is refused.
    """
    if X.dtype.kind != "f" or X.size == 0:
        return
    if not np.isfinite(X).all():
        bad = ~np.isfinite(X).all(axis=1)
        if allow_nan:
            bad = np.isinf(X).any(axis=1)
        if bad.any():
            row = int(np.argmax(bad))
            kind = "NaN" if np.isnan(X[row]).any() and not allow_nan else "infinity"
            hint = "" if kind != "NaN" else (
                "; to fit and predict with missing values by marginalising over them, "
                "pass missing='marginalize'"
            )
            raise ValueError(
                f"Input {where} contains {kind} (first at row {start + row}){hint}"
            )
    check_squares(X, start, where)


def check_squares(X: NDArray[Any], start: int = 0, where: str = "X") -> None:
    """Raise a ValueError naming the first row (``start`` is the block's first row in the
    whole data set) whose values' squares would overflow ``X``'s dtype (see
    :func:`squares_limit`); in memory and streamed alike."""
    if X.dtype.kind != "f" or X.size == 0:
        return
    limit = squares_limit(X.dtype, X.shape[1])
    largest = max(float(np.max(X)), -float(np.min(X)))
    if largest != largest:  # NaN (missing values): ignore them
        largest = max(float(np.fmax.reduce(X, axis=None)), -float(np.fmin.reduce(X, axis=None)))
    if largest > limit:  # np.abs(X) would copy X
        row = int(np.argmax(np.any(np.abs(X) > limit, axis=1)))
        largest = float(np.max(np.abs(X[row])))
        hint = "rescale X (e.g. StandardScaler)"
        if X.dtype == np.float32:
            hint += " or pass float64 data"
        raise ValueError(
            f"{where} has values up to {largest:.3g} in magnitude (first at row "
            f"{start + row}); their squares would overflow {X.dtype} (limit {limit:.3g} "
            f"for {X.shape[1]} features): {hint}"
        )


@dataclass(frozen=True)
class Chunk:
    """A block of consecutive rows.

    Attributes
    ----------
    X : ndarray of shape (n, D)
    sample_weight : ndarray of shape (n,) or None
    labels : ndarray of shape (n,) or None
        Known components (``-1`` unknown), for semi-supervised fits.
    start : int
        Index of the first row in the whole data set (seeds per-chunk randomness
        reproducibly, whatever the scheduling).
    missing : ndarray of bool, shape (n, D), or None
        Cells that were missing (NaN) before :class:`FilledEngine` filled them; the EM
        core marginalises over them (:mod:`gmmkit.core.missing`).
    """

    X: NDArray[Any]
    sample_weight: NDArray[np.float64] | None
    labels: NDArray[np.intp] | None
    start: int
    missing: NDArray[np.bool_] | None = None


#: Values a row-block of per-chunk work other than the E-step holds at once (rows times
#: :func:`blockwise`'s ``width``): the chunks of the fused kernel are 131072 rows
#: (:data:`gmmkit.engines.memory.FUSED_CHUNK_ROWS`), and the starts' dense (n, K)
#: responsibilities, distances and feature blocks at that size took 560 MB where 4096-row
#: chunks took 140 (N=1M, D=8, K=64, a random start).
BLOCK_VALUES = 1 << 19


def blockwise(func: Callable[[Chunk], T], width: int) -> Callable[[Chunk], T]:
    """``func`` applied to blocks of a chunk's rows, the results added (``+``): blocks
    of :data:`BLOCK_VALUES` / ``width`` rows (at least 256), for work that holds about
    ``width`` values a row (e.g. K distances and a feature row).  Each block is a
    :class:`Chunk` with its own ``start``."""
    return partial(_blockwise, func, max(256, BLOCK_VALUES // max(width, 1)))


def _blockwise(func: Callable[[Chunk], T], rows: int, chunk: Chunk) -> T:
    n = len(chunk.X)
    if n <= rows:
        return func(chunk)

    def part(values: NDArray[Any] | None, a: int, b: int) -> NDArray[Any] | None:
        return None if values is None else values[a:b]

    results = [
        func(Chunk(
            X=chunk.X[a : a + rows], sample_weight=part(chunk.sample_weight, a, a + rows),
            labels=part(chunk.labels, a, a + rows), start=chunk.start + a,
            missing=part(chunk.missing, a, a + rows),
        ))
        for a in range(0, n, rows)
    ]
    return reduce(lambda x, y: x + y, results)  # type: ignore[operator]


def sample_positions(
    n_rows: int,
    sample_weight: NDArray[Any] | None,
    n: int,
    rng: np.random.Generator,
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Rows of a seeding sample of ``n`` weight-proportional draws, and their weights.

    Draws are made with replacement by inverse-CDF picks on the cumulative weights, and
    repeated picks of a row merge into one row of weight ``picks * total / n``.  A row
    of integer weight ``w`` covers the same stretch of the cumulative weight as ``w``
    repeated rows, so the same random numbers pick the same data whether the weight is
    given or the row is repeated: integer weights act exactly as repeated rows in every
    initialisation that seeds on a sample.  Scaling all weights by a constant changes
    nothing either.  Small data are drawn from too (never "all rows"), because any
    size threshold would treat a weighted row and its repeats differently.

    Parameters
    ----------
    n_rows : int
    sample_weight : ndarray of shape (n_rows,) or None
    n : int
        Number of draws.
    rng : numpy Generator

    Returns
    -------
    positions : ndarray of shape (m,), sorted and distinct, m <= min(n, n_rows)
    weights : ndarray of shape (m,), summing to the total weight
    """
    from gmmkit.core._workspace import workspace

    # the draws in this thread's workspace: fresh arrays of 100k draws were page-faulted
    # on every call (0.7 ms for the uniforms alone against 0.3 in reused memory; iris'
    # default fit draws ten samples).  random() is uniform() on [0, 1): the same numbers
    uniforms = workspace("sample.uniforms", max(int(n), 1))
    rng.random(out=uniforms)
    if sample_weight is None:
        # unit weights without an N-sized cumulative sum: row i covers (i, i + 1], so
        # this is exactly searchsorted(arange(1, N + 1), picks, "left")
        total = float(n_rows)
        scaled = workspace("sample.scaled", len(uniforms))
        np.ceil(np.multiply(uniforms, total, out=scaled), out=scaled)
        drawn = workspace("sample.drawn", len(uniforms), np.intp)
        np.copyto(drawn, scaled, casting="unsafe")  # whole numbers up to N: exact
        drawn -= 1
        np.clip(drawn, 0, n_rows - 1, out=drawn)
    else:
        cumulative = np.cumsum(np.asarray(sample_weight, np.float64))
        total = float(cumulative[-1])
        # (sorted picks walk the cumulative weights in order; the rows drawn are the same)
        drawn = np.minimum(
            np.searchsorted(cumulative, np.sort(uniforms) * total, side="left"), n_rows - 1
        )
    if n_rows <= len(drawn):
        # the draws' counts by row: no sort of the draws (2000 rows, 100k draws: 0.4
        # against 8.6 ms, paid by every k-means start of a small data set)
        counts = np.bincount(drawn, minlength=n_rows)
        positions = np.flatnonzero(counts)
        counts = counts[positions]
    else:
        positions, counts = np.unique(drawn, return_counts=True)
    return positions.astype(np.intp), (counts * (total / len(uniforms))).astype(np.float64)


class Engine(ABC):
    """A source of row chunks that can map a function over them and combine results.

    ``allow_nan``: engines that validate their blocks (streaming, Dask) let NaN through
    when set (estimators with ``missing="marginalize"`` set it); infinity never.
    """

    allow_nan: bool = False

    @property
    @abstractmethod
    def n_samples(self) -> int:
        """Number of rows."""

    @property
    @abstractmethod
    def n_features(self) -> int:
        """Number of columns."""

    @property
    @abstractmethod
    def dtype(self) -> np.dtype:
        """Compute dtype (float32 or float64)."""

    @abstractmethod
    def map_reduce(self, func: Callable[[Chunk], T]) -> T:
        """Apply ``func`` to every chunk and add the results (in a fixed order)."""

    @abstractmethod
    def map_rows(self, func: Callable[[Chunk], NDArray[Any]]) -> NDArray[Any]:
        """Apply ``func`` to every chunk and concatenate the per-row results."""

    @abstractmethod
    def sample(self, n: int, rng: np.random.Generator) -> tuple[NDArray[Any], NDArray[np.float64]]:
        """A seeding sample: distinct rows in row order and their weights, from ``n``
        weight-proportional draws (see :func:`sample_positions`)."""

    @contextmanager
    def session(self) -> Iterator[Engine]:
        """Hold resources (thread pools, clients) across many passes; a no-op by default."""
        yield self

    def take(self, indices: NDArray[np.intp]) -> NDArray[Any]:
        """Rows at the given positions, in the given order."""
        raise NotImplementedError(f"{type(self).__name__} cannot take rows by index")

    # Kernel hooks: what the EM core asks of an engine.  By default the NumPy chunk
    # kernel runs over :meth:`map_reduce` / :meth:`map_rows`; an engine whose rows live
    # elsewhere (a torch device) evaluates the same formulation there instead.
    def kernel_statistics(self, coefs: KernelCoefficients, label_weight: float = 1.0) -> SuffStats:
        """E-step statistics of all rows under ``coefs`` (one pass over the data).

        Parameters
        ----------
        coefs : KernelCoefficients
            From :func:`gmmkit.core.kernel.kernel_coefficients`.
        label_weight : float
            Weight of labelled rows (semi-supervised fits).
        """
        return self.map_reduce(partial(_chunk_statistics, coefs, label_weight))

    def fused_passes(self, params: MixtureParams) -> bool:
        """Whether every block of this engine's passes under ``params`` goes to the fused
        compiled kernel (:func:`gmmkit.core.kernel.fused_module`).  Then the
        coefficients skip the expansion's probes (``fused`` of
        :func:`gmmkit.core.kernel.kernel_coefficients`).  A wrong answer costs speed,
        never accuracy: those coefficients are exact on every path.  False here: the
        engines whose blocks are complete rows without labels, evaluated by the chunk
        kernel, say otherwise."""
        return False

    def kernel_rows(self, coefs: KernelCoefficients, kind: str) -> Any:
        """Per-row results under ``coefs``: ``"score"`` (log-density, (n,)),
        ``"predict"`` (most probable component, (n,)), ``"proba"`` (responsibilities,
        (n, K)) or ``"map_log_resp"`` (largest log responsibility, (n,))."""
        return self.map_rows(partial(_chunk_rows, coefs, kind))

    def nearest_statistics(
        self, covariance_type: str, centres: NDArray[Any], reference: NDArray[Any]
    ) -> SuffStats:
        """Statistics of every row assigned to its nearest centre (k-means starts)."""
        from gmmkit.core.init import _nearest_stats

        width = len(centres) + centres.shape[1] ** 2
        return self.map_reduce(
            blockwise(partial(_nearest_stats, covariance_type, centres, reference), width))

    def sample_engine(self, n: int, rng: np.random.Generator) -> Engine:
        """An in-memory engine over a seeding sample of ``n`` draws (:meth:`sample`)."""
        from gmmkit.engines.memory import MemoryEngine

        rows, weights = self.sample(n, rng)
        return MemoryEngine(np.asarray(rows), weights)


def unlabelled_fused(labels: Any, params: MixtureParams) -> bool:
    """:meth:`Engine.fused_passes` of an engine whose chunks are complete rows
    evaluated by the chunk kernel, labelled where ``labels`` is not None."""
    from gmmkit.core.kernel import fused_module

    return labels is None and (
        fused_module(params.layout, params.n_features, params.n_components) is not None)


def chunk_rows_into(
    coefs: KernelCoefficients, kind: str, out: NDArray[Any], chunk: Chunk
) -> None:
    """:func:`_chunk_rows` of a chunk into its rows of ``out``, the whole result."""
    _chunk_rows(coefs, kind, chunk, out[chunk.start:chunk.start + len(chunk.X)])


def _chunk_statistics(coefs: KernelCoefficients, label_weight: float, chunk: Chunk) -> SuffStats:
    from gmmkit.core.kernel import chunk_statistics

    if chunk.missing is not None:  # marginalise over missing cells (FilledEngine)
        from gmmkit.core.missing import chunk_statistics_missing

        return chunk_statistics_missing(
            coefs, chunk.X, chunk.missing, chunk.sample_weight, chunk.labels, label_weight
        )
    return chunk_statistics(coefs, chunk.X, chunk.sample_weight, chunk.labels, label_weight)


def _chunk_rows(
    coefs: KernelCoefficients, kind: str, chunk: Chunk, out: NDArray[Any] | None = None
) -> NDArray[Any]:
    """Per-row results ``kind`` of a chunk (see :meth:`Engine.kernel_rows`), written into
    ``out`` (the chunk's rows of the whole result) where given."""
    from gmmkit.core import kernel

    if chunk.missing is not None:  # rows with missing cells: their observed marginal
        from gmmkit.core import missing

        rows = {
            "score": missing.score_rows,
            "predict": missing.predict_rows,
            "proba": missing.proba_rows,
            "map_log_resp": missing.map_log_resp_rows,
            "observed": missing.observed_rows,
        }
        if kind not in rows:
            raise ValueError(f"unknown per-row kernel {kind!r}")
        result = rows[kind](coefs, chunk.X, chunk.missing)
    elif kind == "observed":
        result = np.ones(len(chunk.X))
    elif kind in kernel.ROW_KINDS:
        return kernel.rows_chunk(coefs, chunk.X, kind, out)
    else:
        raise ValueError(f"unknown per-row kernel {kind!r}")
    if out is None:
        return result
    out[...] = result
    return out


#: Cells of data whose NaN masks a :class:`FilledEngine` keeps between passes.  With
#: what the E-step derives from them (patterns, sorted masks, cell positions) a kept mask
#: holds about 5 bytes a cell at 20 % missing, two thirds of float64 data: beyond this
#: budget (about 160 MB) chunks find their masks again every pass, so that a fit's
#: memory beyond the data stays bounded.
KEPT_MASK_CELLS = 32 << 20


class _KeptMasks:
    """The NaN masks of an in-memory engine's chunks, by (start, rows), up to
    :data:`KEPT_MASK_CELLS` cells in all."""

    def __init__(self) -> None:
        self.masks: dict[tuple[int, int], Any] = {}
        self.cells = 0
        self.lock = threading.Lock()

    def get(self, X: NDArray[Any], start: int) -> Any:
        from gmmkit.core.missing import nan_mask

        key = (start, len(X))
        missing = self.masks.get(key)
        if missing is None:
            missing = nan_mask(X)
            with self.lock:
                if self.cells + X.size <= KEPT_MASK_CELLS:
                    self.masks[key] = missing
                    self.cells += X.size
        return missing


def _filled_call(
    func: Callable[[Chunk], T],
    fill: NDArray[Any],
    masks: _KeptMasks | None,
    chunk: Chunk,
) -> T:
    from gmmkit.core.missing import filled_chunk

    if masks is None:
        return func(filled_chunk(fill, chunk))
    return func(filled_chunk(fill, chunk, masks.get(chunk.X, chunk.start)))


class FilledEngine(Engine):
    """Chunks of another engine with NaN cells filled and marked (``Chunk.missing``).

    The EM core marginalises over the marked cells (:mod:`gmmkit.core.missing`); code
    that reads values directly (initialisation: k-means, hierarchical agglomeration,
    seeding samples) sees the fill values, the observed columns' means.  Chunks without
    NaN pass through unchanged.

    Parameters
    ----------
    inner : Engine
        Validated with NaN allowed.
    fill : ndarray of shape (D,)
    """

    def __init__(self, inner: Engine, fill: NDArray[Any]) -> None:
        from gmmkit.engines.memory import MemoryEngine

        self.inner = inner
        self.fill = np.asarray(fill, dtype=inner.dtype)
        # The chunks of an in-memory array are the same rows on every pass: their NaN
        # masks are found once and kept, read-only, by (start, rows), and with them
        # what the E-step derives from a mask alone (row groups by missingness
        # pattern, :func:`gmmkit.core.missing.chunk_statistics_missing`), which a
        # pass over incomplete rows otherwise pays again every EM iteration (up to a
        # budget of cells, KEPT_MASK_CELLS).
        self._masks: _KeptMasks | None = _KeptMasks() if type(inner) is MemoryEngine else None

    @property
    def n_samples(self) -> int:
        return self.inner.n_samples

    @property
    def n_features(self) -> int:
        return self.inner.n_features

    @property
    def dtype(self) -> np.dtype:
        return self.inner.dtype

    @property
    def sample_weight(self) -> NDArray[np.float64] | None:
        return getattr(self.inner, "sample_weight", None)

    def _fill_rows(self, rows: NDArray[Any]) -> NDArray[Any]:
        rows = np.asarray(rows)
        if rows.dtype.kind != "f":
            return rows
        return np.where(np.isnan(rows), self.fill.astype(rows.dtype), rows)

    def map_reduce(self, func: Callable[[Chunk], T]) -> T:
        return self.inner.map_reduce(partial(_filled_call, func, self.fill, self._masks))

    def map_rows(self, func: Callable[[Chunk], NDArray[Any]]) -> NDArray[Any]:
        return self.inner.map_rows(partial(_filled_call, func, self.fill, self._masks))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[NDArray[Any], NDArray[np.float64]]:
        rows, weights = self.inner.sample(n, rng)
        return self._fill_rows(rows), weights

    def sample_engine(self, n: int, rng: np.random.Generator) -> Engine:
        return FilledEngine(self.inner.sample_engine(n, rng), self.fill)

    @contextmanager
    def session(self) -> Iterator[Engine]:
        with self.inner.session():
            yield self

    def take(self, indices: NDArray[np.intp]) -> NDArray[Any]:
        return self._fill_rows(self.inner.take(indices))
