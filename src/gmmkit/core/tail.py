"""The lower-tail cut of an anomaly detector, in memory and streamed exactly.

:func:`lower_tail_threshold` sorts the values.  :func:`streamed_lower_tail_threshold`
finds the same cut on data too large to hold, in a few passes over an
:class:`~gmmkit.engines.base.Engine` and memory independent of the number of rows:

1. Each value is mapped to a 64-bit key that sorts as the value does (its IEEE bits,
   sign-flipped).  A pass builds a weighted histogram of the keys over 4096 bins
   spanning the current key range; the bin holding the target rank becomes the range
   of the next pass.  The first pass bins by sign and exponent, each later one by the
   next 12 bits, so a bin's values are ever closer and heavy tails cost nothing.
2. When the bin holding the target has at most :data:`MAX_GATHERED_ROWS` rows, one more
   pass gathers its values (with their weights) and the largest value below it.

The cut is then computed from those values by the very rule the in-memory function
applies to all of them (:func:`_cut`), with the weight below the bin added in.  Sums of
weights are formed in another order than in memory, so with non-integer weights they
may differ in the last bits; the relative slack of ``1e-12`` on the target weight
absorbs that.  Unit and integer weights are summed exactly, and the cut is then the
in-memory one bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Rows of the target bin gathered in memory at most (values and weights: 16 bytes each);
#: a fuller bin is split by one more histogram pass.
MAX_GATHERED_ROWS = 1 << 18

_BIN_BITS = 12
_SIGN = np.uint64(1 << 63)

#: ``(n,) rows -> (n,) float64 values``, e.g. log-densities of the rows of a chunk.
ValueFunction = Callable[[NDArray[Any]], NDArray[np.float64]]


def tail_limit(fraction: float, total_weight: float) -> float:
    """The weight the rows strictly below the cut may carry at most, with a tiny
    relative slack so that rounding of cumulative sums does not move the cut."""
    return fraction * total_weight * (1.0 + 1e-12)


def _cut(
    distinct: NDArray[np.float64],
    cumulative: NDArray[np.float64],
    limit: float,
    previous: float | None,
) -> float:
    """The cut among sorted distinct values with cumulative weights ``cumulative``.

    ``previous`` is the largest value below ``distinct[0]``, or None when there is none.
    """
    first_inside = min(int(np.searchsorted(cumulative, limit, side="right")), len(distinct) - 1)
    above = float(distinct[first_inside])
    if first_inside > 0:
        below = float(distinct[first_inside - 1])
    elif previous is not None:
        below = previous
    else:
        # nothing in the tail: cut just below the smallest value
        return above - max(abs(above) * 1e-9, 1e-12)
    return 0.5 * (below + above)


def lower_tail_threshold(
    values: NDArray[np.float64], fraction: float, weight: NDArray[np.float64] | None = None
) -> float:
    """A cut such that the rows strictly below it carry at most ``fraction`` of the weight.

    The cut lies midway between the largest value inside the tail and the next larger value,
    so recomputing the values with different rounding (another row block, a repeated row)
    does not move a row across it.  With unit weights and distinct values exactly
    ``floor(fraction * n)`` rows lie below; an integer weight acts exactly as repeating
    the row.

    Parameters
    ----------
    values : ndarray of shape (n,)
    fraction : float in [0, 1)
    weight : ndarray of shape (n,), optional

    Returns
    -------
    float
    """
    w = np.ones(len(values)) if weight is None else np.asarray(weight, np.float64)
    # equal values share one side of the cut; rows of zero weight do not exist
    distinct, inverse = np.unique(values[w > 0], return_inverse=True)
    cumulative = np.cumsum(np.bincount(inverse, weights=w[w > 0])).astype(np.float64)
    return _cut(distinct, cumulative, tail_limit(fraction, float(cumulative[-1])), None)


# ----------------------------------------------------------------------------- streamed
def order_keys(values: NDArray[np.float64]) -> NDArray[np.uint64]:
    """Unsigned 64-bit keys that sort as the float64 ``values`` do (``-0.0`` as ``0.0``).

    Parameters
    ----------
    values : ndarray of shape (n,), float64, without NaN

    Returns
    -------
    ndarray of shape (n,), uint64
    """
    bits = (np.asarray(values, dtype=np.float64) + 0.0).view(np.uint64)  # -0.0 + 0.0 = 0.0
    return np.where(bits >= _SIGN, ~bits, bits | _SIGN)


def _positive_rows(
    value_of: ValueFunction, X: NDArray[Any], weight: NDArray[np.float64] | None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Values and weights of a chunk's rows of non-zero weight."""
    values = np.asarray(value_of(X), dtype=np.float64)
    if np.isnan(values).any():
        raise ValueError("a row's value is NaN; no lower-tail cut exists")
    if weight is None:
        return values, np.ones(len(values))
    weight = np.asarray(weight, dtype=np.float64)
    keep = weight > 0
    return values[keep], weight[keep]


@dataclass(frozen=True)
class _Histogram:
    """Weights and row counts of keys ``low + (b << shift) ... + ((b + 1) << shift) - 1``."""

    weight: NDArray[np.float64]
    count: NDArray[np.int64]

    def __add__(self, other: _Histogram) -> _Histogram:
        return _Histogram(self.weight + other.weight, self.count + other.count)


def _histogram(
    value_of: ValueFunction, low: int, shift: int, n_bins: int, X: NDArray[Any],
    weight: NDArray[np.float64] | None,
) -> _Histogram:
    """Rows of keys ``low .. low + (n_bins << shift) - 1`` in ``n_bins`` bins."""
    values, w = _positive_rows(value_of, X, weight)
    keys = order_keys(values)
    inside = keys >= np.uint64(low)
    bins = (keys[inside] - np.uint64(low)) >> np.uint64(shift)
    in_range = bins < n_bins
    b = bins[in_range].astype(np.intp)
    return _Histogram(
        np.bincount(b, weights=w[inside][in_range], minlength=n_bins).astype(np.float64),
        np.bincount(b, minlength=n_bins).astype(np.int64),
    )


@dataclass(frozen=True)
class _Gathered:
    """Distinct values of one key range with their weights, and the largest value below
    the range (None: none seen).  Adding two is O(1): parts are kept as a tree and
    merged once, by :meth:`merged`, however many chunks contributed."""

    values: NDArray[np.float64] | None
    weight: NDArray[np.float64] | None
    below: float | None
    parts: tuple[_Gathered, _Gathered] | None = None
    size: int = 0

    def __add__(self, other: _Gathered) -> _Gathered:
        below = _max(self.below, other.below)
        if other.size == 0:
            return _Gathered(self.values, self.weight, below, self.parts, self.size)
        if self.size == 0:
            return _Gathered(other.values, other.weight, below, other.parts, other.size)
        return _Gathered(None, None, below, (self, other), self.size + other.size)

    def merged(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Sorted distinct values and their total weights."""
        values: list[NDArray[np.float64]] = []
        weights: list[NDArray[np.float64]] = []
        stack: list[_Gathered] = [self]
        while stack:  # iterative: a sequential fold nests one level per chunk
            node = stack.pop()
            if node.parts is not None:
                stack.extend(node.parts)
            elif node.values is not None and node.weight is not None:
                values.append(node.values)
                weights.append(node.weight)
        return _distinct(np.concatenate(values), np.concatenate(weights))


def _max(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _distinct(
    values: NDArray[np.float64], weight: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    distinct, inverse = np.unique(values, return_inverse=True)
    total = np.bincount(inverse, weights=weight, minlength=len(distinct))
    return distinct, total.astype(np.float64, copy=False)


def _gather(
    value_of: ValueFunction, low: int, shift: int, X: NDArray[Any],
    weight: NDArray[np.float64] | None,
) -> _Gathered:
    values, w = _positive_rows(value_of, X, weight)
    keys = order_keys(values)
    is_below = keys < np.uint64(low)
    below = float(values[is_below].max()) if is_below.any() else None
    inside = ~is_below
    inside[inside] = ((keys[inside] - np.uint64(low)) >> np.uint64(shift)) == 0
    if not inside.any():
        return _Gathered(None, None, below)
    distinct, total = _distinct(values[inside], w[inside])
    return _Gathered(distinct, total, below, None, len(distinct))


def streamed_lower_tail_threshold(
    engine: Any,
    value_of: ValueFunction,
    fraction: float,
    *,
    max_gathered_rows: int = MAX_GATHERED_ROWS,
) -> float:
    """:func:`lower_tail_threshold` of ``value_of`` over an engine's rows, streamed.

    Parameters
    ----------
    engine : Engine
        Its ``map_reduce`` is called a few times (two to five passes; see the module
        notes); chunk weights, when present, weigh the rows.
    value_of : callable ``(n, D) rows -> (n,) float64``
        Must return the same values for a row on every pass.
    fraction : float in [0, 1)
    max_gathered_rows : int
        Most rows whose values are held in memory at once.

    Returns
    -------
    float
        Equal to ``lower_tail_threshold(values, fraction, weight)`` of all the rows'
        values and weights (bit for bit with integer weights; see the module notes).
    """
    low, span = 0, 64  # the keys in play: low .. low + 2**span - 1
    below_weight = 0.0  # of the rows whose keys are below low
    limit: float | None = None
    while True:
        shift = max(0, span - _BIN_BITS)
        n_bins = 1 << (span - shift)
        histogram: _Histogram = engine.map_reduce(
            lambda chunk, low=low, shift=shift, n_bins=n_bins: _histogram(
                value_of, low, shift, n_bins, chunk.X, chunk.sample_weight
            )
        )
        cumulative = below_weight + np.cumsum(histogram.weight)
        if limit is None:  # the first pass sees every row
            if not histogram.count.any():
                raise ValueError("no row has a positive weight")
            limit = tail_limit(fraction, float(cumulative[-1]))
        last = int(np.flatnonzero(histogram.count)[-1])
        target = min(int(np.searchsorted(cumulative, limit, side="right")), last)
        if target > 0:
            below_weight = float(cumulative[target - 1])
        low += target << shift
        span = shift
        if histogram.count[target] <= max_gathered_rows or span == 0:
            break
    gathered: _Gathered = engine.map_reduce(
        lambda chunk: _gather(value_of, low, span, chunk.X, chunk.sample_weight)
    )
    distinct, weight = gathered.merged()
    return _cut(distinct, below_weight + np.cumsum(weight), limit, gathered.below)
