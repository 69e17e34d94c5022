"""Sample weights brought to a common scale, exactly, for every engine.

A fit depends on the weights only through their ratios, but sums of weights do not:
weights of ``1e-20`` made the total log-likelihood so small that the convergence rule
``|dL| <= 1e-9 (1 + |L|)`` stopped EM at once, weights of ``1e300`` overflow it.  Every
engine therefore multiplies the weights by one power of two (exact in floating point)
that brings their mean into ``[1, 2)``; weights already there, integer counts among
them, are unchanged bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray


class WeightSummary:
    """Running maximum, scaled sum and smallest positive value of weights seen in parts.

    Parts are added with :meth:`add`; the sum is kept relative to the running maximum,
    so weights near ``1e308`` do not overflow it.
    """

    def __init__(self) -> None:
        self.count = 0
        self.top = 0.0
        self.relative_sum = 0.0  # sum of weights / top
        self.smallest_positive = math.inf

    def add(self, part: NDArray[np.float64]) -> None:
        """Account for one slice of validated (finite, non-negative) weights."""
        self.count += len(part)
        if not len(part):
            return
        part_top = float(part.max())
        if part_top <= 0.0:
            return
        if part_top > self.top:
            self.relative_sum *= self.top / part_top
            self.top = part_top
        self.relative_sum += float(np.sum(part / self.top))
        self.smallest_positive = min(self.smallest_positive, float(part[part > 0].min()))

    def scale(self) -> float:
        """The power of two that brings the mean weight into ``[1, 2)``.

        Raises
        ------
        ValueError
            When the weights span more than float64's range (the smallest non-zero
            weights would vanish after scaling).
        """
        if self.top <= 0.0 or self.count == 0:
            raise ValueError("sample_weight is zero for every sample")
        mean = self.top * (self.relative_sum / self.count)
        _, exponent = math.frexp(mean)
        scale = math.ldexp(1.0, 1 - exponent)
        if self.smallest_positive * scale == 0.0:
            raise ValueError(
                "sample_weight spans more than float64's range: the smallest non-zero weights "
                f"({self.smallest_positive:.3g}) vanish next to the mean ({mean:.3g})"
            )
        return scale


def weight_scale(weight: NDArray[np.float64]) -> float:
    """:meth:`WeightSummary.scale` of one in-memory weight vector."""
    summary = WeightSummary()
    summary.add(weight)
    return summary.scale()
