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


def check_sample_count(n_samples: float) -> None:
    """Refuse a sample size below one observation for BIC/ICL.

    Weights count observations (an integer weight acts as repeated rows), so ``n`` is
    their sum; with ``n < 1`` the penalty ``p log n`` changes sign and BIC would prefer the
    most complex model.

    Raises
    ------
    ValueError
    """
    if not n_samples >= 1.0:
        raise ValueError(
            f"the sample weights sum to {n_samples:.3g}: BIC and ICL count weights as "
            "observations (n = sum of weights) and need n >= 1; rescale sample_weight "
            "(e.g. to sum to the number of rows)"
        )


def bic(total_log_likelihood: float, n_params: int, n_samples: float) -> float:
    """Bayesian information criterion ``-2 log L + p log n`` (``n`` >= 1 observations)."""
    check_sample_count(n_samples)
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
