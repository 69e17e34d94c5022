"""The M-step: parameters from sufficient statistics alone (never from data)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gmmkit.core.covariance import (
    CovarianceError,
    cholesky_precision,
    get_covariance_type,
    repair_positive_definite,
)
from gmmkit.core.params import MixtureParams
from gmmkit.core.suffstats import SuffStats

_EPS = float(np.finfo(np.float64).eps)

#: A component whose summed responsibility is below this fraction of one average
#: sample's weight is considered empty.
EMPTY_FRACTION = 1e-8


#: Without ``reg_covar`` a covariance is singular when a variance is below rounding of
#: its mean (``(SINGULAR_RELATIVE * |mu|)^2``, or not a normal float), or when its
#: correlation matrix has an eigenvalue below ``SINGULAR_RELATIVE``: rounding then
#: decides whether a Cholesky factor exists, and the density it gives is meaningless.
SINGULAR_RELATIVE = 1e-12
_TINY = float(np.finfo(np.float64).tiny) * 2.0**52  # below it products go subnormal


def _check_well_defined(covariances: np.ndarray, means: np.ndarray, layout: str) -> None:
    """Raise :class:`CovarianceError` when a covariance is numerically singular.

    Used only with ``reg_covar=0``, where scikit-learn fails on collapsed samples and
    rounding otherwise leaves tiny positive eigenvalues (subnormal covariances and
    precisions near ``1e300``) instead of an error.
    """
    k = len(means)
    if layout in ("full", "tied"):
        mats = np.broadcast_to(covariances, (k, *covariances.shape[-2:]))
        variances = np.diagonal(mats, axis1=1, axis2=2)
    elif layout == "diag":
        mats = None
        variances = covariances
    else:
        mats = None
        variances = np.broadcast_to(np.asarray(covariances)[:, None], means.shape)
    floor = np.maximum((SINGULAR_RELATIVE * np.abs(means)) ** 2, _TINY)
    singular = ~np.all(variances > floor, axis=1)
    if mats is not None and not np.any(singular):
        scale = 1.0 / np.sqrt(variances)
        correlations = mats * scale[:, :, None] * scale[:, None, :]
        smallest = np.linalg.eigvalsh(correlations)[:, 0]
        singular = ~(smallest > SINGULAR_RELATIVE)
    if np.any(singular):
        raise CovarianceError(
            f"the covariance of component(s) {np.flatnonzero(singular).tolist()} is "
            "ill-defined: singular (collapsed or linearly dependent samples) and "
            "reg_covar=0; increase reg_covar (e.g. 1e-6) or decrease n_components"
        )


@dataclass(frozen=True)
class MStepResult:
    """New parameters, the components that had to be re-seeded, and all components found
    empty (those not re-seeded keep their previous mean with a near-zero weight)."""

    params: MixtureParams
    reseeded: tuple[int, ...]
    empty: tuple[int, ...] = ()


def m_step(
    stats: SuffStats,
    covariance_type: str,
    reg_covar: float,
    previous: MixtureParams | None = None,
    allow_reseed: bool = True,
) -> MStepResult:
    """Maximise the expected complete-data log-likelihood given ``stats``.

    Parameters
    ----------
    stats : SuffStats
        Accumulated over all rows.
    covariance_type : str
    reg_covar : float
        Non-negative value added to the covariance diagonal.
    previous : MixtureParams, optional
        Parameters the statistics were computed with; an empty component falls back to
        its previous mean when it cannot be re-seeded.
    allow_reseed : bool
        Move an empty component onto the worst-explained row seen in the E-step.

    Returns
    -------
    MStepResult
    """
    cov = get_covariance_type(covariance_type)
    raw_nk = stats.nk
    mean_weight = stats.total_weight / max(stats.n_samples, 1)
    empty = raw_nk < EMPTY_FRACTION * mean_weight
    # scikit-learn's floor keeps every weight and division finite
    nk = raw_nk + 10.0 * _EPS
    centred_means = stats.first / nk[:, None]
    reseeded: list[int] = []
    if empty.any():
        fallback = (
            previous.means - stats.reference
            if previous is not None
            else np.zeros_like(centred_means)
        )
        for k in np.flatnonzero(empty):
            if allow_reseed and np.isfinite(stats.worst_log_density) and not reseeded:
                centred_means[k] = stats.worst_point - stats.reference[k]
                reseeded.append(int(k))
            else:
                centred_means[k] = fallback[k]
    covariances = cov.covariances_from_moments(
        nk,
        centred_means,
        stats.second,
        stats.total_weight,
        reg_covar,
        previous=None if previous is None else previous.covariances,
    )
    if empty.any() and cov.layout != "tied":
        full_weight = ~empty
        pooled = (
            np.tensordot(nk[full_weight], covariances[full_weight], axes=1) / nk[full_weight].sum()
            if full_weight.any()
            else covariances[0]
        )
        covariances[empty] = pooled
    if reseeded:
        nk = nk.copy()
        nk[reseeded] = max(mean_weight, 10.0 * _EPS)
    weights = nk / nk.sum()
    means = stats.reference + centred_means
    if reg_covar == 0.0:
        _check_well_defined(covariances, means, cov.layout)
    try:
        precisions_cholesky = cholesky_precision(covariances, covariance_type)
    except CovarianceError:
        # rounding left a (near-)singular matrix indefinite: clip its eigenvalues
        covariances = repair_positive_definite(covariances, covariance_type, reg_covar)
        precisions_cholesky = cholesky_precision(covariances, covariance_type)
    params = MixtureParams(
        weights=weights,
        means=means,
        covariances=covariances,
        precisions_cholesky=precisions_cholesky,
        covariance_type=covariance_type,
    )
    return MStepResult(
        params=params,
        reseeded=tuple(reseeded),
        empty=tuple(np.flatnonzero(empty).tolist()),
    )
