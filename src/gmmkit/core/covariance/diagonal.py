"""Diagonal models: ``Sigma_k = lambda_k A_k`` with diagonal ``A_k`` (``det A_k = 1``),
stored as (K, D) variances.

The volume/shape constraints act on a vector of variances per component; the
ellipsoidal models with variable orientation apply the same functions to each
component's eigenvalues (:func:`constrain_volume_shape`).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from gmmkit.core.covariance._base import (
    Array,
    DiagLayout,
    compiled_mstep,
    compiled_operand,
    register,
)

#: Inner iterations of the alternating M-steps stop at this relative change of their
#: objective (or after ``MAX_INNER_ITER`` steps); both halves of every step maximise
#: the expected complete-data log-likelihood, so each step increases it.
INNER_RTOL = 1e-12
MAX_INNER_ITER = 500


def _geometric_mean(values: Array) -> Array:
    """``det(diag(v))^(1/D)`` of each row, shape (K,)."""
    return np.exp(np.mean(np.log(values), axis=-1))


def volume_shape_objective(nk: Array, values: Array, variances: Array) -> float:
    """``-0.5 sum_k n_k sum_j (log s_kj + v_kj / s_kj)``: the covariance part of Q for
    variances ``s`` along axes whose scatter per unit weight is ``v``, both (K, D)."""
    return float(-0.5 * nk @ np.sum(np.log(variances) + values / variances, axis=1))


def constrain_volume_shape(
    nk: Array,
    values: Array,
    volume: str,
    shape: str,
    previous: Array | None = None,
    kernels: ModuleType | None = None,
) -> Array:
    """Variances ``lambda_k a_k`` (``prod_j a_kj = 1``) maximising Q given the scatter
    per unit weight ``values`` along fixed axes.

    Parameters
    ----------
    nk : ndarray of shape (K,)
    values : ndarray of shape (K, D)
        Positive ``diag(W_k) / n_k`` (or eigenvalues, in the same order per component).
    volume, shape : {"E", "V"}
        Equal or variable across components.
    previous : ndarray of shape (K, D), optional
        Variances the iteration of the variable-volume, equal-shape model also starts
        from (it is convex in the log-parameters, so the start changes only the cost).
    kernels : module, optional
        :mod:`gmmkit.core._mstep_jit` (:func:`~gmmkit.core.covariance._base.compiled_mstep`):
        that iteration runs compiled.

    Returns
    -------
    ndarray of shape (K, D)
    """
    if volume == "V" and shape == "V":
        return values
    if not np.all(values > 0.0):
        # a zero variance (a singular scatter, reg_covar = 0) has no volume to pool:
        # returned as it is, for the M-step's check to name the problem
        return np.array(values, dtype=np.float64)
    if volume == "E" and shape == "E":
        return np.broadcast_to(nk @ values / nk.sum(), values.shape).copy()
    if volume == "E":  # variable shape: A_k = v_k / |v_k|^(1/D), lambda pooled
        volumes = _geometric_mean(values)
        return (nk @ volumes / nk.sum()) * values / volumes[:, None]
    # variable volume, equal shape (Celeux & Govaert 1995): alternate A and lambda_k
    start = previous if previous is not None else values
    if kernels is not None:
        return kernels.volume_equal_shape(
            *map(compiled_operand, (nk, values, start)), INNER_RTOL, MAX_INNER_ITER
        )
    lam = _geometric_mean(start)
    best = -np.inf
    for _ in range(MAX_INNER_ITER):
        shape_vec = nk @ (values / lam[:, None])
        shape_vec /= _geometric_mean(shape_vec)
        lam = np.mean(values / shape_vec, axis=1)
        variances = lam[:, None] * shape_vec
        objective = volume_shape_objective(nk, values, variances)
        if objective - best <= INNER_RTOL * abs(objective):
            break
        best = objective
    return variances


@register
class EEI(DiagLayout):
    """Equal volume and shape, axis-aligned: one diagonal covariance for all components."""

    model = "EEI"

    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        return n_features

    def constrain(self, nk: Array, scatter: Array, previous: Array | None) -> Array:
        return constrain_volume_shape(nk, scatter, "E", "E")


@register
class VEI(DiagLayout):
    """Variable volume, equal shape, axis-aligned."""

    model = "VEI"

    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        return n_components + n_features - 1

    def constrain(self, nk: Array, scatter: Array, previous: Array | None) -> Array:
        kernels = compiled_mstep(self.layout, *scatter.shape)
        return constrain_volume_shape(nk, scatter, "V", "E", previous, kernels)


@register
class EVI(DiagLayout):
    """Equal volume, variable shape, axis-aligned."""

    model = "EVI"

    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        return 1 + n_components * (n_features - 1)

    def constrain(self, nk: Array, scatter: Array, previous: Array | None) -> Array:
        return constrain_volume_shape(nk, scatter, "E", "V")


@register
class VVI(DiagLayout):
    """Variable volume and shape, axis-aligned (scikit-learn's ``"diag"``)."""

    model = "VVI"

    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        return n_components * n_features


register(VVI, "diag")
