"""Compiled (numba) inner iterations of the constrained covariance models' M-steps.

Imported only through :func:`gmmkit._jit.mstep_kernels` (numba is an optional
dependency).  Five of mclust's models have no closed-form M-step and iterate inside it,
in three loops:

* :func:`volume_equal_shape`: variable volume, equal shape along fixed axes (VEI, and
  VEV on each component's eigenvalues), Celeux & Govaert (1995);
* :func:`vee`: variable volume, equal shape and orientation (VEE), ``lambda_k`` and
  ``C = D A D'`` in turn;
* :func:`equal_orientation`: equal orientation, variable shape (EVE, VVE), the
  majorisation-minimisation steps of Browne & McNicholas (2014) for the common axes
  alternating with the diagonal model in them.

Each is the loop of its numpy reference in :mod:`gmmkit.core.covariance` step for step:
the same updates, the same stopping rule (the objective's relative change at most
``rtol``, or ``steps`` iterations) and the same early exits, so both reach the same
objective to rounding (sums here run in loop order, numpy's through BLAS and pairwise
summation; VEE's determinant and inverse come from a Cholesky factor written out here,
numpy's from LAPACK's LU; the SVD from scipy's LAPACK here).  Where the slow steps of
EVE and VVE are still moving when the objective's change falls below ``rtol``, rounding
can decide on which step the loops stop, and the covariances then differ by what the
steps left (up to ~1e-5 relative from scratch).  On the numpy path each step is a dozen
small numpy calls (50-100 us at a few features, ten steps every M-step of EVE and VVE);
here it is a few microseconds.

Compiled with ``cache=True`` (to ``__pycache__`` beside this file, or numba's user
cache directory) and ``nogil=True``.  The loops are written out element by element: each
array method or whole-array assignment costs numba a few tenths of a second to compile,
once per environment (with them the three kernels took about 8 s to compile, without
them 4.3 s).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_jit = njit(cache=True, nogil=True)


@_jit
def _objective(nk, values, variances):  # pragma: no cover
    """``-0.5 sum_k n_k sum_j (log s_kj + v_kj / s_kj)``, as
    :func:`gmmkit.core.covariance.diagonal.volume_shape_objective`."""
    total = 0.0
    for k in range(values.shape[0]):
        row = 0.0
        for j in range(values.shape[1]):
            row += math.log(variances[k, j]) + values[k, j] / variances[k, j]
        total += nk[k] * row
    return -0.5 * total


@_jit
def _log_geometric_mean(values):  # pragma: no cover
    total = 0.0
    for j in range(len(values)):
        total += math.log(values[j])
    return total / len(values)


@_jit
def volume_equal_shape(nk, values, start, rtol, max_iter):  # pragma: no cover
    """Variances ``lambda_k a`` (``prod_j a_j = 1``) maximising Q given the scatter per
    unit weight ``values`` (K, D) along fixed axes, from the volumes of ``start``
    (K, D): :func:`gmmkit.core.covariance.diagonal.constrain_volume_shape`'s
    variable-volume, equal-shape loop.  ``values`` must be positive."""
    k_count, d = values.shape
    lam = np.empty(k_count)
    for k in range(k_count):
        lam[k] = math.exp(_log_geometric_mean(start[k]))
    shape = np.empty(d)
    variances = np.empty((k_count, d))
    best = -np.inf
    for _ in range(max_iter):
        for j in range(d):
            shape[j] = 0.0
        for k in range(k_count):
            for j in range(d):
                shape[j] += nk[k] * (values[k, j] / lam[k])
        scale = math.exp(_log_geometric_mean(shape))
        for j in range(d):
            shape[j] /= scale
        for k in range(k_count):
            total = 0.0
            for j in range(d):
                total += values[k, j] / shape[j]
            lam[k] = total / d
            for j in range(d):
                variances[k, j] = lam[k] * shape[j]
        objective = _objective(nk, values, variances)
        if objective - best <= rtol * abs(objective):
            break
        best = objective
    return variances


@_jit
def _log_det_inverse(a, inverse):  # pragma: no cover
    """``log det a`` of a symmetric positive definite ``a`` (D, D), with its inverse
    written to ``inverse``, from its Cholesky factor; NaN (and a NaN inverse) where a
    pivot is not positive."""
    d = a.shape[0]
    low = np.zeros((d, d))
    log_det = 0.0
    for j in range(d):
        pivot = a[j, j]
        for m in range(j):
            pivot -= low[j, m] * low[j, m]
        if not pivot > 0.0:
            for i in range(d):
                for m in range(d):
                    inverse[i, m] = np.nan
            return np.nan
        low[j, j] = math.sqrt(pivot)
        log_det += 2.0 * math.log(low[j, j])
        for i in range(j + 1, d):
            total = a[i, j]
            for m in range(j):
                total -= low[i, m] * low[j, m]
            low[i, j] = total / low[j, j]
    # inverse = L^-T L^-1, column by column: L y = e_c, then L' x = y
    column = np.empty(d)
    for c in range(d):
        for i in range(d):
            total = 1.0 if i == c else 0.0
            for m in range(i):
                total -= low[i, m] * column[m]
            column[i] = total / low[i, i]
        for i in range(d - 1, -1, -1):
            total = column[i]
            for m in range(i + 1, d):
                total -= low[m, i] * column[m]
            column[i] = total / low[i, i]
        for i in range(d):
            inverse[i, c] = column[i]
    return log_det


@_jit
def vee(nk, scatter, start, steps, rtol):  # pragma: no cover
    """VEE's covariances ``lambda_k C`` (``det C = 1``) from the scatters ``S_k``
    (K, D, D) and the volumes of ``start`` (K, D, D, positive definite): the loop of
    :meth:`gmmkit.core.covariance.ellipsoidal.VEE._alternate`."""
    k_count, d = scatter.shape[0], scatter.shape[1]
    inverse = np.empty((d, d))
    lam = np.empty(k_count)
    for k in range(k_count):
        lam[k] = math.exp(_log_det_inverse(start[k], inverse) / d)
    common = np.empty((d, d))
    best = -np.inf
    for _ in range(steps):
        for i in range(d):
            for j in range(d):
                common[i, j] = 0.0
        for k in range(k_count):
            weight = nk[k] / lam[k]
            for i in range(d):
                for j in range(d):
                    common[i, j] += weight * scatter[k, i, j]
        scale = math.exp(_log_det_inverse(common, inverse) / d)
        for i in range(d):
            for j in range(d):
                common[i, j] /= scale
                inverse[i, j] *= scale
        objective = 0.0
        for k in range(k_count):
            trace = 0.0
            for i in range(d):
                for j in range(d):
                    trace += scatter[k, i, j] * inverse[j, i]
            lam[k] = trace / d
            objective += nk[k] * (d * math.log(lam[k]) + d)
        objective *= -0.5
        if objective - best <= rtol * abs(objective):
            break
        best = objective
    out = np.empty((scatter.shape[0], scatter.shape[1], scatter.shape[2]))
    for k in range(k_count):
        for i in range(d):
            for j in range(d):
                out[k, i, j] = lam[k] * common[i, j]
    return out


@_jit
def _rotation(h, out):  # pragma: no cover
    """The orthogonal matrix nearest ``h`` (``U V'`` of its SVD), written to ``out``."""
    u, _, vt = np.linalg.svd(h)
    _product(u, vt, out)


@_jit
def _product(a, b, out):  # pragma: no cover
    """``out = a @ b`` for small square matrices (a BLAS call costs more here)."""
    d = a.shape[0]
    for i in range(d):
        for m in range(d):
            total = 0.0
            for j in range(d):
                total += a[i, j] * b[j, m]
            out[i, m] = total


@_jit
def _all_finite(a):  # pragma: no cover
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            if not math.isfinite(a[i, j]):
                return False
    return True


@_jit
def equal_orientation(
    nk, scatter, weighted, top, axes, steps, equal_volume, rtol
):  # pragma: no cover
    """EVE's (``equal_volume``) or VVE's covariances ``D diag(s_k) D'`` from the
    scatters ``S_k`` (K, D, D), ``W_k = n_k S_k`` and their largest eigenvalues ``top``
    (K,), starting from the axes ``axes`` (D, D): the loop of
    :meth:`gmmkit.core.covariance.ellipsoidal._EqualOrientation._alternate`."""
    k_count, d = scatter.shape[0], scatter.shape[1]
    start = axes
    axes = np.empty((d, d))
    for i in range(d):
        for j in range(d):
            axes[i, j] = start[i, j]
    new_axes = np.empty((d, d))
    shifted = np.empty((scatter.shape[0], scatter.shape[1], scatter.shape[2]))
    for k in range(k_count):
        for i in range(d):
            for j in range(d):
                shifted[k, i, j] = (top[k] if i == j else 0.0) - weighted[k, i, j]
    rotated = np.empty((k_count, d))
    variances = np.empty((k_count, d))
    inverse = np.empty((k_count, d))
    volumes = np.empty(k_count)
    h = np.empty((d, d))
    product = np.empty((d, d))
    total_weight = 0.0
    for k in range(k_count):
        total_weight += nk[k]
    best = -np.inf
    for _ in range(steps):
        # diag(D' S_k D)
        for k in range(k_count):
            _product(scatter[k], axes, product)
            for i in range(d):
                total = 0.0
                for j in range(d):
                    total += axes[j, i] * product[j, i]
                rotated[k, i] = total
        positive = True
        for k in range(k_count):
            for j in range(d):
                if not rotated[k, j] > 0.0:
                    positive = False
        for k in range(k_count):
            for j in range(d):
                variances[k, j] = rotated[k, j]
        if positive and equal_volume:
            # A_k = v_k / |v_k|^(1/D), lambda pooled
            pooled = 0.0
            for k in range(k_count):
                volumes[k] = math.exp(_log_geometric_mean(rotated[k]))
                pooled += nk[k] * volumes[k]
            pooled /= total_weight
            for k in range(k_count):
                for j in range(d):
                    variances[k, j] = pooled * rotated[k, j] / volumes[k]
            for k in range(k_count):
                for j in range(d):
                    if not variances[k, j] > 0.0:
                        positive = False
        if not positive:
            break  # a singular scatter (reg_covar = 0)
        objective = _objective(nk, rotated, variances)
        if objective - best <= rtol * abs(objective):
            break
        best = objective
        for k in range(k_count):
            for j in range(d):
                inverse[k, j] = 1.0 / variances[k, j]
        # (1) W_k = w_k I - (w_k I - W_k): maximise tr(D' sum_k (w_k I - W_k) D_t L_k)
        for i in range(d):
            for m in range(d):
                h[i, m] = 0.0
        for k in range(k_count):
            _product(shifted[k], axes, product)
            for i in range(d):
                for m in range(d):
                    h[i, m] += product[i, m] * inverse[k, m]
        if not _all_finite(h):
            break
        _rotation(h, new_axes)
        # (2) L_k = l_k I - (l_k I - L_k): maximise tr(D' sum_k W_k D_t (l_k I - L_k))
        for i in range(d):
            for m in range(d):
                h[i, m] = 0.0
        for k in range(k_count):
            largest = inverse[k, 0]
            for j in range(1, d):
                largest = max(largest, inverse[k, j])
            _product(weighted[k], new_axes, product)
            for i in range(d):
                for m in range(d):
                    h[i, m] += product[i, m] * (largest - inverse[k, m])
        if not _all_finite(h):
            break
        _rotation(h, axes)
    out = np.empty((scatter.shape[0], scatter.shape[1], scatter.shape[2]))
    for k in range(k_count):
        for i in range(d):
            for m in range(d):
                total = 0.0
                for j in range(d):
                    total += axes[i, j] * variances[k, j] * axes[m, j]
                out[k, i, m] = total
    return out
