"""Ellipsoidal models ``Sigma_k = lambda_k D_k A_k D_k'``: EEE (stored as one tied
matrix) and the seven stored as (K, D, D) matrices.

With variable orientation (``**V``) each ``D_k`` is the eigenvector matrix of the
component's scatter, and the volume/shape constraint acts on its eigenvalues in
decreasing order (Celeux & Govaert 1995).  With equal orientation and shape (``VEE``)
``lambda_k`` and ``C = D A D'`` alternate in closed form.  With equal orientation and
variable shape (``EVE``, ``VVE``) the common ``D`` is found by the majorisation-
minimisation step of Browne & McNicholas (2014) alternating with the diagonal model
in ``D``'s axes.  Every half-step maximises the expected complete-data log-likelihood,
and the iterations start from the previous covariances too, so an M-step never lowers
it (a generalised EM).
"""

from __future__ import annotations

import numpy as np

from gmmkit.core.covariance._base import (
    Array,
    FullLayout,
    TiedLayout,
    compiled_mstep,
    compiled_operand,
    register,
)
from gmmkit.core.covariance.diagonal import (
    INNER_RTOL,
    MAX_INNER_ITER,
    constrain_volume_shape,
    volume_shape_objective,
)

#: Inner steps of the common-orientation M-step when it starts from the previous axes.
WARM_INNER_ITER = 10


def _orthogonal_dof(n_features: int) -> int:
    return n_features * (n_features - 1) // 2


def _eigh_descending(matrices: Array) -> tuple[Array, Array]:
    """Eigenvalues (K, D), decreasing and floored above zero, and eigenvectors (K, D, D)."""
    values, vectors = np.linalg.eigh(matrices)
    values = values[:, ::-1]
    vectors = vectors[:, :, ::-1]
    floor = np.finfo(np.float64).tiny + 1e-300
    return np.maximum(values, floor), vectors


def _from_axes(vectors: Array, variances: Array) -> Array:
    """``V_k diag(s_k) V_k'`` for (K, D, D) or (D, D) axes and (K, D) variances."""
    if vectors.ndim == 3:
        return np.einsum("kij,kj,klj->kil", vectors, variances, vectors)
    return np.einsum("ij,kj,lj->kil", vectors, variances, vectors)


class _VariableOrientation(FullLayout):
    volume: str
    shape: str

    def constrain(self, nk: Array, scatter: Array, previous: Array | None) -> Array:
        values, vectors = _eigh_descending(scatter)
        if self.volume == "V" and self.shape == "E":  # the one iterative case: VEV
            prev_values = None if previous is None else _eigh_descending(previous)[0]
            kernels = compiled_mstep(self.layout, *scatter.shape[:2])
            variances = constrain_volume_shape(nk, values, "V", "E", prev_values, kernels)
        else:
            variances = constrain_volume_shape(nk, values, self.volume, self.shape)
        return _from_axes(vectors, variances)


@register
class EEV(_VariableOrientation):
    """Equal volume and shape, variable orientation."""

    model, volume, shape = "EEV", "E", "E"

    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        return n_features + n_components * _orthogonal_dof(n_features)


@register
class VEV(_VariableOrientation):
    """Variable volume, equal shape, variable orientation."""

    model, volume, shape = "VEV", "V", "E"

    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        return n_components + n_features - 1 + n_components * _orthogonal_dof(n_features)


@register
class EVV(_VariableOrientation):
    """Equal volume, variable shape and orientation."""

    model, volume, shape = "EVV", "E", "V"

    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        return 1 + n_components * (n_features - 1) + n_components * _orthogonal_dof(n_features)


@register
class VVV(FullLayout):
    """Unconstrained (scikit-learn's ``"full"``)."""

    model = "VVV"

    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        return n_components * n_features * (n_features + 1) // 2


@register
class EEE(TiedLayout):
    """One covariance matrix for all components (scikit-learn's ``"tied"``)."""

    model = "EEE"

    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        return n_features * (n_features + 1) // 2


@register
class VEE(FullLayout):
    """Variable volume, equal shape and orientation: ``Sigma_k = lambda_k C``."""

    model = "VEE"

    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        return n_components + n_features - 1 + _orthogonal_dof(n_features)

    def constrain(self, nk: Array, scatter: Array, previous: Array | None) -> Array:
        # from the previous volumes (a GEM step, continued by the next EM iteration),
        # or from each component's own volume
        start, steps = (
            (scatter, MAX_INNER_ITER) if previous is None else (previous, WARM_INNER_ITER)
        )
        kernels = compiled_mstep(self.layout, *scatter.shape[:2])
        if kernels is not None:
            return kernels.vee(*map(compiled_operand, (nk, scatter, start)), steps, INNER_RTOL)
        return self._alternate(nk, scatter, start, steps)

    @staticmethod
    def _alternate(nk: Array, scatter: Array, start: Array, steps: int) -> Array:
        d = scatter.shape[-1]
        lam = np.exp(np.linalg.slogdet(start)[1] / d)
        best = -np.inf
        for _ in range(steps):
            common = np.tensordot(nk / lam, scatter, axes=1)
            common /= np.exp(np.linalg.slogdet(common)[1] / d)
            lam = np.einsum("kij,ji->k", scatter, np.linalg.inv(common)) / d
            # -0.5 sum_k n_k (D log lam_k + tr(S_k C^-1) / lam_k) with det C = 1
            objective = float(-0.5 * nk @ (d * np.log(lam) + d))
            if objective - best <= INNER_RTOL * abs(objective):
                break
            best = objective
        return lam[:, None, None] * common


class _EqualOrientation(FullLayout):
    """Common axes ``D`` and per-component variances along them (EVE, VVE)."""

    volume: str

    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        volumes = 1 if self.volume == "E" else n_components
        return volumes + n_components * (n_features - 1) + _orthogonal_dof(n_features)

    def constrain(self, nk: Array, scatter: Array, previous: Array | None) -> Array:
        if previous is None:
            start = np.tensordot(nk, scatter, axes=1)
        else:
            # any positive combination of the previous matrices has their common axes
            mix = 1.0 + np.arange(len(previous)) * (np.sqrt(5.0) - 1.0) / 2.0
            start = np.tensordot(mix, previous, axes=1)
        # from the previous axes a few steps suffice (each one raises Q, and the next EM
        # iteration goes on from here: an ECM step); from scratch, iterate to the end
        steps = MAX_INNER_ITER if previous is None else WARM_INNER_ITER
        axes = np.linalg.eigh(start)[1]
        weighted = nk[:, None, None] * scatter  # W_k
        # W_k's largest eigenvalue bounds the curvature of the first majoriser
        top = np.linalg.eigvalsh(weighted)[:, -1]
        kernels = compiled_mstep(self.layout, *scatter.shape[:2])
        if kernels is not None:
            return kernels.equal_orientation(
                *map(compiled_operand, (nk, scatter, weighted, top, axes)), steps,
                self.volume == "E", INNER_RTOL,
            )
        return self._alternate(nk, scatter, weighted, top, axes, steps)

    def _alternate(
        self, nk: Array, scatter: Array, weighted: Array, top: Array, axes: Array, steps: int
    ) -> Array:
        """Variances given ``D`` in closed form, then the two majorisation steps of
        Browne & McNicholas (2014) for ``D`` given the variances, until Q settles
        (``weighted``: ``W_k = n_k S_k``; ``top``: their largest eigenvalues)."""
        shifted = top[:, None, None] * np.eye(scatter.shape[-1]) - weighted
        best = -np.inf
        for _ in range(steps):
            rotated = np.einsum("ji,kjl,li->ki", axes, scatter, axes)  # diag(D' S_k D)
            variances = constrain_volume_shape(nk, rotated, self.volume, "V")
            if not np.all(variances > 0.0):
                break  # a singular scatter (reg_covar = 0): see _rotation
            objective = volume_shape_objective(nk, rotated, variances)
            if objective - best <= INNER_RTOL * abs(objective):
                break
            best = objective
            with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                inverse = 1.0 / variances
                # (1) W_k = w_k I - (w_k I - W_k): maximise tr(D' sum_k (w_k I - W_k) D_t L_k)
                h = np.einsum("kij,jl,kl->il", shifted, axes, inverse)
                if not np.all(np.isfinite(h)):
                    break  # a singular scatter (reg_covar = 0): see _rotation
                new_axes = _rotation(h)
                # (2) L_k = l_k I - (l_k I - L_k): maximise tr(D' sum_k W_k D_t (l_k I - L_k))
                h = np.einsum("kij,jl,kl->il", weighted, new_axes,
                              inverse.max(axis=1)[:, None] - inverse)
                if not np.all(np.isfinite(h)):
                    break
            axes = _rotation(h)
        return _from_axes(axes, variances)


def _rotation(h: Array) -> Array:
    """The orthogonal matrix nearest ``h`` (``U V'`` of its SVD).  ``h`` must be finite:
    with a singular scatter (``reg_covar = 0``) a variance along the axes is zero or
    underflows, the majorisers overflow, and LAPACK's SVD of a matrix with infinities
    or NaN did not return (a fit hung); the loop stops first and the M-step's check of
    the covariances names the problem."""
    u, _, vt = np.linalg.svd(h)
    return u @ vt


@register
class EVE(_EqualOrientation):
    """Equal volume and orientation, variable shape."""

    model, volume = "EVE", "E"


@register
class VVE(_EqualOrientation):
    """Variable volume and shape, equal orientation."""

    model, volume = "VVE", "V"


register(VVV, "full")
register(EEE, "tied")
