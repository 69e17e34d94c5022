"""What every engine provides: chunks of rows, mapped and reduced.

Engines decide *where chunks come from* and *how results are combined*; they hold
no statistics code.  The EM core hands them a pure function ``Chunk -> T`` whose
results add (``SuffStats``, ``KMeansStats``) or concatenate (per-row predictions).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

T = TypeVar("T")


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
    """

    X: NDArray[Any]
    sample_weight: NDArray[np.float64] | None
    labels: NDArray[np.intp] | None
    start: int


class Engine(ABC):
    """A source of row chunks that can map a function over them and combine results."""

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
        """Up to ``n`` rows drawn uniformly without replacement, and their weights.

        When ``n >= n_samples`` all rows are returned in order (so seeding on small
        data is the same as seeding on the data itself).
        """

    @contextmanager
    def session(self) -> Iterator[Engine]:
        """Hold resources (thread pools, clients) across many passes; a no-op by default."""
        yield self

    def take(self, indices: NDArray[np.intp]) -> NDArray[Any]:
        """Rows at the given positions, in the given order."""
        raise NotImplementedError(f"{type(self).__name__} cannot take rows by index")
