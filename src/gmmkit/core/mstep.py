"""The M-step: parameters from sufficient statistics alone (never from data)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gmmkit.core.covariance import cholesky_precision, get_covariance_type
from gmmkit.core.params import MixtureParams
from gmmkit.core.suffstats import SuffStats

_EPS = float(np.finfo(np.float64).eps)

#: A component whose summed responsibility is below this fraction of one average
#: sample's weight is considered empty.
EMPTY_FRACTION = 1e-8


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
    if np.any(empty):
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
    if np.any(empty) and cov.layout != "tied":
        full_weight = ~empty
        pooled = (
            np.tensordot(nk[full_weight], covariances[full_weight], axes=1) / nk[full_weight].sum()
            if np.any(full_weight)
            else covariances[0]
        )
        covariances[empty] = pooled
    if reseeded:
        nk = nk.copy()
        nk[reseeded] = max(mean_weight, 10.0 * _EPS)
    weights = nk / nk.sum()
    params = MixtureParams(
        weights=weights,
        means=stats.reference + centred_means,
        covariances=covariances,
        precisions_cholesky=cholesky_precision(covariances, covariance_type),
        covariance_type=covariance_type,
    )
    return MStepResult(
        params=params,
        reseeded=tuple(reseeded),
        empty=tuple(int(k) for k in np.flatnonzero(empty)),
    )
