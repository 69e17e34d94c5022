"""The chunk kernel: E-step in log space fused with sufficient-statistic accumulation.

For centred rows ``xc = x - ref`` the weighted Gaussian log-density of every component
is linear in the feature row ``phi(x) = [q(xc), xc, 1]`` where ``q`` are the quadratic
features of the covariance type (packed outer products, squares or squared norm)::

    log(pi_k N(x | mu_k, Sigma_k)) = phi(x) @ W[:, k]

so the E-step for a block of rows is one GEMM ``Phi @ W`` followed by a log-sum-exp,
and the sufficient statistics of the block are one more GEMM ``resp.T @ Phi``.  Both
costs are ``N K (D (D + 1) / 2 + D + 1)`` multiply-adds for ``full``: half of the
Cholesky formulation's ``N K D^2``.  Only (rows x features) and (rows x K) blocks
exist at any time.

For ``tied`` the quadratic term is shared by all components, so it is computed once
per row instead (``Phi[:, :Q] @ a``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gmmkit.core.covariance import CovarianceType, get_covariance_type, log_2pi
from gmmkit.core.params import MixtureParams
from gmmkit.core.suffstats import SuffStats

Array = NDArray[np.floating[Any]]


@dataclass(frozen=True, eq=False)
class KernelCoefficients:
    """Everything the chunk kernel needs, derived once per EM iteration from parameters.

    Attributes
    ----------
    covariance : CovarianceType
    reference : ndarray of shape (D,), float64
        Centre of the features (the weighted mean of the component means).
    reference_compute : ndarray of shape (D,), compute dtype
    weights_matrix : ndarray of shape (Q + D + 1, K), or (D + 1, K) when tied
        Coefficients of the feature row; the last row holds the constants.
    shared_quadratic : ndarray of shape (Q,) or None
        Coefficients of the shared quadratic term (tied only).
    dtype : numpy dtype
        Compute dtype (float32 or float64).
    """

    covariance: CovarianceType
    reference: NDArray[np.float64]
    reference_compute: Array
    weights_matrix: Array
    shared_quadratic: Array | None
    dtype: np.dtype

    @property
    def n_components(self) -> int:
        return int(self.weights_matrix.shape[1])


def kernel_coefficients(
    params: MixtureParams, dtype: np.dtype | type = np.float64
) -> KernelCoefficients:
    """Feature coefficients of the weighted log-densities of all components.

    Parameters
    ----------
    params : MixtureParams
    dtype : float32 or float64
        The dtype the kernel computes in; statistics are always returned in float64.
    """
    dtype = np.dtype(dtype)
    cov = get_covariance_type(params.covariance_type)
    d = params.n_features
    reference = params.weights @ params.means
    centred = params.means - reference
    precision_means = cov.precision_times(params.precisions_cholesky, centred)  # (K, D)
    log_det = cov.log_det_cholesky(params.precisions_cholesky, d)
    with np.errstate(divide="ignore"):
        log_weights = np.log(params.weights)
    constants = (
        log_weights
        + log_det
        - 0.5 * d * log_2pi()
        - 0.5 * np.sum(centred * precision_means, axis=1)
    )
    quad = cov.quadratic_coefficients(params.precisions_cholesky)
    linear = np.vstack([precision_means.T, constants[None, :]])
    if cov.shared_quadratic:
        weights_matrix = linear
        shared = quad.astype(dtype)
    else:
        weights_matrix = np.vstack([quad, linear])
        shared = None
    return KernelCoefficients(
        covariance=cov,
        reference=reference,
        reference_compute=reference.astype(dtype),
        weights_matrix=np.ascontiguousarray(weights_matrix, dtype=dtype),
        shared_quadratic=shared,
        dtype=dtype,
    )


def features(cov: CovarianceType, X: Array, reference: Array, dtype: np.dtype) -> Array:
    """Feature block ``[q(x - ref), x - ref, 1]`` of shape (n, Q + D + 1)."""
    n, d = X.shape
    q = cov.n_quadratic(d)
    phi = np.empty((n, q + d + 1), dtype=dtype)
    xc = phi[:, q : q + d]
    np.subtract(X, reference, out=xc, casting="unsafe")
    cov.quadratic_features(xc, phi[:, :q])
    phi[:, q + d] = 1.0
    return phi


def log_joint(coefs: KernelCoefficients, phi: Array) -> Array:
    """``log(pi_k N(x | k))`` for every row and component, shape (n, K), compute dtype."""
    if coefs.shared_quadratic is None:
        return phi @ coefs.weights_matrix
    q = len(coefs.shared_quadratic)
    out = phi[:, q:] @ coefs.weights_matrix
    out += (phi[:, :q] @ coefs.shared_quadratic)[:, None]
    return out


def _normalise_in_place(log_prob: Array) -> Array:
    """Turn ``log_prob`` (n, K) into responsibilities in place; return ``log p(x)`` (n,)."""
    row_max = log_prob.max(axis=1, keepdims=True)
    np.subtract(log_prob, row_max, out=log_prob)
    np.exp(log_prob, out=log_prob)
    total = log_prob.sum(axis=1, keepdims=True)
    np.divide(log_prob, total, out=log_prob)
    log_norm = np.log(total[:, 0])
    log_norm += row_max[:, 0]
    return log_norm


def chunk_statistics(
    coefs: KernelCoefficients,
    X: Array,
    sample_weight: Array | None = None,
    labels: NDArray[np.integer] | None = None,
    label_weight: float = 1.0,
) -> SuffStats:
    """E-step on one block of rows, returning its additive statistics.

    Parameters
    ----------
    coefs : KernelCoefficients
        From :func:`kernel_coefficients` of the current parameters.
    X : ndarray of shape (n, D)
    sample_weight : ndarray of shape (n,), optional
    labels : ndarray of shape (n,), optional
        Known component of each row, ``-1`` where unknown.  A labelled row keeps its
        component (one-hot responsibility), is weighted by ``label_weight``, and
        contributes its complete-data log-likelihood.
    label_weight : float
        Weight of labelled rows relative to unlabelled ones.

    Returns
    -------
    SuffStats
    """
    cov = coefs.covariance
    n, d = X.shape
    phi = features(cov, X, coefs.reference_compute, coefs.dtype)
    resp = log_joint(coefs, phi)

    labelled: NDArray[np.intp] | None = None
    if labels is not None:
        labelled = np.flatnonzero(labels >= 0)
        if len(labelled) == 0:
            labelled = None
    if labelled is not None:
        assert labels is not None
        known = labels[labelled]
        labelled_log_density = resp[labelled, known].astype(np.float64)

    log_norm = _normalise_in_place(resp).astype(np.float64, copy=False)

    weight = (
        np.ones(n, dtype=np.float64)
        if sample_weight is None
        else np.asarray(sample_weight, dtype=np.float64)
    )
    if labelled is not None:
        weight = weight.copy()
        weight[labelled] *= label_weight
        log_norm = log_norm.copy()
        log_norm[labelled] = labelled_log_density
        resp[labelled] = 0.0
        resp[labelled, known] = 1.0
    if sample_weight is not None or labelled is not None:
        resp *= weight.astype(coefs.dtype)[:, None]

    q = cov.n_quadratic(d)
    if cov.shared_quadratic:
        lin = (resp.T @ phi[:, q:]).astype(np.float64)
        second = (weight.astype(coefs.dtype) @ phi[:, :q]).astype(np.float64)[None, :]
    else:
        moments = (resp.T @ phi).astype(np.float64)
        lin = moments[:, q:]
        second = moments[:, :q]

    if n:
        candidates = np.where(weight > 0, log_norm, np.inf)
        worst = int(np.argmin(candidates))
        worst_value = float(candidates[worst])
        worst_point = np.asarray(X[worst], dtype=np.float64)
    else:
        worst_value, worst_point = np.inf, np.zeros(d)
    return SuffStats(
        nk=lin[:, -1].copy(),
        first=lin[:, :d].copy(),
        second=second,
        log_likelihood=float(weight @ log_norm),
        total_weight=float(weight.sum()),
        n_samples=n,
        reference=coefs.reference,
        worst_log_density=worst_value,
        worst_point=worst_point,
    )


def hard_statistics(
    cov: CovarianceType,
    X: Array,
    resp: Array,
    reference: Array,
    sample_weight: Array | None = None,
) -> SuffStats:
    """Statistics of rows with given responsibilities (for initialisation).

    Parameters
    ----------
    cov : CovarianceType
    X : ndarray of shape (n, D)
    resp : ndarray of shape (n, K)
        Responsibilities (one-hot for hard assignments).
    reference : ndarray of shape (D,)
    sample_weight : ndarray of shape (n,), optional
    """
    n, d = X.shape
    phi = features(cov, X, reference, np.dtype(np.float64))
    resp = np.asarray(resp, dtype=np.float64)
    weight = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    resp = resp * weight[:, None]
    q = cov.n_quadratic(d)
    moments = resp.T @ phi
    if cov.shared_quadratic:
        second = (weight @ phi[:, :q])[None, :]
    else:
        second = moments[:, :q]
    return SuffStats(
        nk=moments[:, -1].copy(),
        first=moments[:, q : q + d].copy(),
        second=second,
        log_likelihood=0.0,
        total_weight=float(weight.sum()),
        n_samples=n,
        reference=reference,
        worst_log_density=np.inf,
        worst_point=np.zeros(d),
    )


def log_resp_and_density(coefs: KernelCoefficients, X: Array) -> tuple[Array, NDArray[np.float64]]:
    """Log responsibilities (n, K) in compute dtype and log-density (n,) in float64."""
    phi = features(coefs.covariance, X, coefs.reference_compute, coefs.dtype)
    log_prob = log_joint(coefs, phi)
    row_max = log_prob.max(axis=1, keepdims=True)
    shifted = log_prob - row_max
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    shifted -= log_norm
    density = (log_norm[:, 0].astype(np.float64) + row_max[:, 0])
    return shifted, density


def score_chunk(coefs: KernelCoefficients, X: Array) -> NDArray[np.float64]:
    """Log-density ``log p(x)`` of each row, shape (n,), float64."""
    return log_resp_and_density(coefs, X)[1]


def predict_chunk(coefs: KernelCoefficients, X: Array) -> NDArray[np.intp]:
    """Most probable component of each row, shape (n,)."""
    phi = features(coefs.covariance, X, coefs.reference_compute, coefs.dtype)
    return np.argmax(log_joint(coefs, phi), axis=1)


def proba_chunk(coefs: KernelCoefficients, X: Array) -> NDArray[np.float64]:
    """Responsibilities of each row, shape (n, K), float64."""
    log_resp = log_resp_and_density(coefs, X)[0]
    return np.exp(log_resp.astype(np.float64))
