"""Additive sufficient statistics of a Gaussian mixture E-step."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gmmkit.core.covariance import pack_symmetric

Array = NDArray[np.floating[Any]]


#: Rows whose log-density is within this fraction (of ``1 + |lowest|``) of the lowest
#: are tied for "worst row": the first of them in row order is kept.  Near-ties are
#: common on degenerate data (repeated rows, collapsed components), and rounding that
#: differs between devices or BLAS builds must not change which row re-seeds an emptied
#: component, so that the NumPy and torch engines fit such data alike.  The tolerance
#: is that of the kernel's log-densities, not of float64: with components collapsed onto
#: single points (covariance ``reg_covar``), rows that are equally well explained come
#: out 4e-10 relative apart between the NumPy and torch kernels (the expansion's terms
#: are ~1e8 there), so 1e-10 was too tight.
WORST_TIE = 1e-8

#: Relative tolerance under which two multi-start lower bounds, or two k-means
#: distances, are tied (the plan's order, or the first centre, wins).
ROUNDING_TIE = 1e-10


def tie_limit(lowest: float) -> float:
    """Largest log-density tied with ``lowest`` under :data:`WORST_TIE`."""
    if not np.isfinite(lowest):
        return lowest
    return lowest + WORST_TIE * (1.0 + abs(lowest))


def worst_row(log_density: NDArray[np.floating[Any]], lowest: float | None = None) -> int:
    """Index of the worst row of a non-empty vector: the first one tied with the lowest
    value (see :data:`WORST_TIE`).  ``lowest``: that value, where the caller has it."""
    values = np.asarray(log_density)
    if lowest is None:
        lowest = float(values.min())
    return int(np.argmax(values <= tie_limit(lowest)))


@dataclass(frozen=True, eq=False)
class SuffStats:
    """Responsibility-weighted sums over a set of rows, all float64.

    ``a + b`` is the statistics of the union of the rows of ``a`` and ``b``; the
    operation is associative and commutative (up to floating-point rounding), so
    chunks may be reduced in any grouping: sequentially, in threads, or as a tree
    on a Dask cluster.

    Attributes
    ----------
    nk : ndarray of shape (K,)
        Summed (sample-weighted) responsibilities per component.
    first : ndarray of shape (K, D)
        Sums of ``resp * (x - reference[k])``.
    second : ndarray of shape (K, Q), or (1, Q) when the covariance is tied
        Sums of ``resp *`` quadratic features of ``x - reference[k]`` (packed outer
        products for full/tied, squares for diag, squared norm for spherical); for
        tied the pooled sum is over all rows, around the common row of ``reference``.
    log_likelihood : float
        Sum of ``weight * log p(x)`` over the rows (the complete-data term for
        labelled rows in semi-supervised fits).
    total_weight : float
        Sum of sample weights.
    n_samples : int
        Number of rows.
    reference : ndarray of shape (K, D)
        Row ``k`` is the point component ``k``'s moments are taken around (the shared
        reference for ordinary components, the component's previous mean for
        ill-conditioned ones, all rows equal for tied); equal in both operands of ``+``.
    worst_log_density : float
        Lowest log-density among the rows (``inf`` if there are none).
    worst_point : ndarray of shape (D,)
        The row reaching it: where an emptied component is re-seeded.
    """

    nk: Array
    first: Array
    second: Array
    log_likelihood: float
    total_weight: float
    n_samples: int
    reference: Array
    worst_log_density: float
    worst_point: Array

    def __add__(self, other: SuffStats) -> SuffStats:
        if not isinstance(other, SuffStats):
            return NotImplemented
        if self.reference is not other.reference and not np.array_equal(
            self.reference, other.reference
        ):
            raise ValueError("cannot add SuffStats taken around different reference points")
        # the first operand's rows come first: it wins ties (see WORST_TIE)
        worst = (
            self
            if self.worst_log_density <= tie_limit(other.worst_log_density)
            else other
        )
        return SuffStats(
            nk=self.nk + other.nk,
            first=self.first + other.first,
            second=self.second + other.second,
            log_likelihood=self.log_likelihood + other.log_likelihood,
            total_weight=self.total_weight + other.total_weight,
            n_samples=self.n_samples + other.n_samples,
            reference=self.reference,
            worst_log_density=worst.worst_log_density,
            worst_point=worst.worst_point,
        )

    def recentred(self, reference: Array, layout: str) -> SuffStats:
        """The same statistics taken around other points (exact up to rounding).

        With ``delta = reference_old[k] - reference[k]`` the rows' offsets become
        ``x - reference[k] = (x - reference_old[k]) + delta``, so ``first' = first + nk
        delta`` and the quadratic sums gain the cross terms: ``second' = second + first
        delta' + delta first' + nk delta delta'`` (packed) for full, ``second + 2 first
        delta + nk delta^2`` for diag, ``second + 2 first . delta + nk |delta|^2`` for
        spherical; tied's pooled sum is over all rows, whose weights and offsets are the
        sums of ``nk`` and ``first`` over the components.

        Parameters
        ----------
        reference : ndarray of shape (K, D)
            The new points (all rows equal for tied).
        layout : {"full", "tied", "diag", "spherical"}
            How ``second`` is packed (:func:`gmmkit.core.covariance.covariance_layout`).

        Returns
        -------
        SuffStats
        """
        reference = np.asarray(reference, dtype=np.float64)
        if reference.shape != self.first.shape:
            raise ValueError(
                f"reference should have shape {self.first.shape}, got {reference.shape}"
            )
        delta = self.reference - reference  # (K, D)
        nk, first = self.nk, self.first
        if layout == "tied":
            if not np.all(reference == reference[0]):
                raise ValueError("tied statistics are taken around one point: rows must be equal")
            delta_row = delta[0]
            rows_first = first.sum(axis=0)
            cross = np.outer(rows_first, delta_row)
            shift = cross + cross.T + nk.sum() * np.outer(delta_row, delta_row)
            second = self.second + pack_symmetric(shift)[None, :]
        elif layout == "full":
            cross = first[:, :, None] * delta[:, None, :]
            shift = cross + cross.transpose(0, 2, 1)
            shift += nk[:, None, None] * delta[:, :, None] * delta[:, None, :]
            second = self.second + pack_symmetric(shift)
        elif layout == "diag":
            second = self.second + 2.0 * first * delta + nk[:, None] * delta**2
        elif layout == "spherical":
            second = self.second + (
                2.0 * np.sum(first * delta, axis=1) + nk * np.sum(delta**2, axis=1)
            )[:, None]
        else:
            raise ValueError(f"unknown covariance layout {layout!r}")
        return SuffStats(
            nk=nk,
            first=first + nk[:, None] * delta,
            second=second,
            log_likelihood=self.log_likelihood,
            total_weight=self.total_weight,
            n_samples=self.n_samples,
            reference=reference,
            worst_log_density=self.worst_log_density,
            worst_point=self.worst_point,
        )

    @staticmethod
    def total(parts: Iterable[SuffStats]) -> SuffStats:
        """Sum of an iterable of statistics, in the order given."""
        return reduce(lambda a, b: a + b, parts)
