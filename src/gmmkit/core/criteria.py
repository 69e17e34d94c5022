"""Information criteria (scikit-learn's sign: lower is better)."""

from __future__ import annotations

import numpy as np

from gmmkit.core.covariance import get_covariance_type


def n_parameters(n_components: int, n_features: int, covariance_type: str) -> int:
    """Number of free parameters: covariances + means + (K - 1) weights."""
    cov = get_covariance_type(covariance_type)
    return (
        cov.n_covariance_parameters(n_components, n_features)
        + n_components * n_features
        + n_components
        - 1
    )


def bic(total_log_likelihood: float, n_params: int, n_samples: float) -> float:
    """Bayesian information criterion ``-2 log L + p log n``."""
    return float(-2.0 * total_log_likelihood + n_params * np.log(n_samples))


def aic(total_log_likelihood: float, n_params: int) -> float:
    """Akaike information criterion ``-2 log L + 2 p``."""
    return float(-2.0 * total_log_likelihood + 2.0 * n_params)


def icl(bic_value: float, classification_log_resp_sum: float) -> float:
    """Integrated completed likelihood (Biernacki et al. 2000), mclust's hard-assignment form.

    Parameters
    ----------
    bic_value : float
        BIC of the model.
    classification_log_resp_sum : float
        ``sum_i log t_i,map(i)``: the (sample-weighted) log responsibility of each row's
        most probable component; never positive.

    Returns
    -------
    float
        ``BIC - 2 * classification_log_resp_sum``, so ICL >= BIC.
    """
    return float(bic_value - 2.0 * classification_log_resp_sum)
