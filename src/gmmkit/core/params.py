"""Mixture parameters as a small immutable value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gmmkit.core.covariance import (
    cholesky_precision,
    covariance_layout,
    covariances_from_precisions,
    get_covariance_type,
    precisions_from_cholesky,
)

Array = NDArray[np.floating[Any]]


@dataclass(frozen=True, eq=False)
class MixtureParams:
    """Parameters of a Gaussian mixture.

    Attributes
    ----------
    weights : ndarray of shape (K,)
        Mixing proportions, positive and summing to one.
    means : ndarray of shape (K, D)
    covariances : ndarray
        (K, D, D) full, (D, D) tied, (K, D) diag, (K,) spherical.
    precisions_cholesky : ndarray
        Same shape as ``covariances``; ``precision = U @ U.T`` for full/tied,
        ``1 / sqrt(variance)`` for diag/spherical.
    covariance_type : str
    """

    weights: Array
    means: Array
    covariances: Array
    precisions_cholesky: Array
    covariance_type: str

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.means.shape[1])

    @property
    def layout(self) -> str:
        """How the covariances are stored: ``"full"``, ``"tied"``, ``"diag"`` or
        ``"spherical"`` (see :func:`gmmkit.core.covariance.covariance_layout`)."""
        return covariance_layout(self.covariance_type)

    @property
    def precisions(self) -> Array:
        """Precision matrices (or vectors/scalars), same shape as ``covariances``."""
        return precisions_from_cholesky(self.precisions_cholesky, self.covariance_type)

    @classmethod
    def from_covariances(
        cls, weights: Array, means: Array, covariances: Array, covariance_type: str
    ) -> MixtureParams:
        """Build from covariances; raises ``CovarianceError`` if one is not positive definite."""
        get_covariance_type(covariance_type)
        covariances = np.asarray(covariances, dtype=np.float64)
        return cls(
            weights=np.asarray(weights, dtype=np.float64),
            means=np.asarray(means, dtype=np.float64),
            covariances=covariances,
            precisions_cholesky=cholesky_precision(covariances, covariance_type),
            covariance_type=covariance_type,
        )

    @classmethod
    def from_precisions(
        cls, weights: Array, means: Array, precisions: Array, covariance_type: str
    ) -> MixtureParams:
        """Build from precision matrices (scikit-learn's ``precisions_init``)."""
        precisions = np.asarray(precisions, dtype=np.float64)
        covariances = covariances_from_precisions(precisions, covariance_type)
        return cls.from_covariances(weights, means, covariances, covariance_type)

    def replace(self, **changes: object) -> MixtureParams:
        """A copy with some fields replaced (covariances also refresh the Cholesky factors)."""
        fields = {
            "weights": self.weights,
            "means": self.means,
            "covariances": self.covariances,
            "covariance_type": self.covariance_type,
        }
        fields.update(changes)
        if "precisions_cholesky" in changes:
            return MixtureParams(
                weights=fields["weights"],  # type: ignore[arg-type]
                means=fields["means"],  # type: ignore[arg-type]
                covariances=fields["covariances"],  # type: ignore[arg-type]
                precisions_cholesky=changes["precisions_cholesky"],  # type: ignore[arg-type]
                covariance_type=str(fields["covariance_type"]),
            )
        return MixtureParams.from_covariances(
            fields["weights"],  # type: ignore[arg-type]
            fields["means"],  # type: ignore[arg-type]
            fields["covariances"],  # type: ignore[arg-type]
            str(fields["covariance_type"]),
        )

    def derived(self) -> dict[Any, Any]:
        """A cache of values derived from these parameters, which lives and dies with them
        (:func:`gmmkit.core.kernel.kept_coefficients`); not part of the value: neither
        pickled nor copied."""
        kept = self.__dict__.get("_derived")
        if kept is None:
            kept = {}
            object.__setattr__(self, "_derived", kept)
        return kept

    def __getstate__(self) -> dict[str, Any]:
        return {name: value for name, value in self.__dict__.items() if name != "_derived"}

    def is_finite(self) -> bool:
        return bool(
            np.all(np.isfinite(self.weights))
            and np.all(np.isfinite(self.means))
            and np.all(np.isfinite(self.covariances))
            and np.all(np.isfinite(self.precisions_cholesky))
        )
