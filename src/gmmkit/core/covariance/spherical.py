"""Spherical models: ``Sigma_k = lambda_k I``, stored as (K,) variances."""

from __future__ import annotations

import numpy as np

from gmmkit.core.covariance._base import Array, SphericalLayout, register


@register
class EII(SphericalLayout):
    """Equal volume, spherical: one variance for all components and features (also
    ``"E"``, the equal-variance model of one-dimensional data)."""

    model = "EII"

    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        return 1

    def constrain(self, nk: Array, scatter: Array, previous: Array | None) -> Array:
        return np.full_like(scatter, nk @ scatter / nk.sum())


@register
class VII(SphericalLayout):
    """Variable volume, spherical: one variance per component (scikit-learn's
    ``"spherical"``; ``"V"`` for one-dimensional data)."""

    model = "VII"

    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        return n_components


register(EII, "E")
register(VII, "spherical", "V")
