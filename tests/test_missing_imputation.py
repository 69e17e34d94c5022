"""GaussianMixtureImputer and GaussianMixture.condition against brute-force conditional
Gaussians (numpy solves on the fitted covariances, scipy densities for the weights)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from _helpers import full_covariances
from gmmkit import GaussianMixture, GaussianMixtureImputer


def _brute_force_fill(params, X: np.ndarray) -> np.ndarray:
    """Per row: posterior weights from scipy's densities of the observed coordinates,
    per-component regression mu_m + S_mo S_oo^-1 (x_o - mu_o) by numpy solves."""
    covs = full_covariances(params)
    out = X.copy()
    for i, x in enumerate(X):
        m = np.isnan(x)
        if not m.any():
            continue
        o = ~m
        logs, fills = [], []
        for k in range(params.n_components):
            mu, S = params.means[k], covs[k]
            if o.any():
                logs.append(np.log(params.weights[k])
                            + multivariate_normal(mu[o], S[np.ix_(o, o)]).logpdf(x[o]))
                fills.append(mu[m] + S[np.ix_(m, o)] @ np.linalg.solve(S[np.ix_(o, o)],
                                                                       x[o] - mu[o]))
            else:
                logs.append(np.log(params.weights[k]))
                fills.append(mu[m])
        w = np.exp(np.array(logs) - logsumexp(logs))
        out[i, m] = w @ np.array(fills)
    return out


def _data(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.vstack([
        rng.multivariate_normal([0, 0, 0], [[1, 0.8, 0.3], [0.8, 1, 0.5], [0.3, 0.5, 1]], 150),
        rng.multivariate_normal([4, -3, 2], [[1, -0.6, 0], [-0.6, 1, 0.2], [0, 0.2, 0.5]], 150),
    ])
    X[rng.random(X.shape) < 0.25] = np.nan
    return X


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical", "VEV"])
def test_imputation_is_the_conditional_expectation(covariance_type: str) -> None:
    X = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer = GaussianMixtureImputer(2, covariance_type=covariance_type,
                                         random_state=0).fit(X)
    filled = imputer.transform(X)
    assert not np.isnan(filled).any()
    np.testing.assert_array_equal(filled[~np.isnan(X)], X[~np.isnan(X)])
    np.testing.assert_allclose(filled, _brute_force_fill(imputer.mixture_.params_, X),
                               rtol=1e-10, atol=1e-10)


def test_draws_follow_the_conditional_distribution() -> None:
    X = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer = GaussianMixtureImputer(2, sample_posterior=True, random_state=0).fit(X)
    row = np.array([[2.0, np.nan, np.nan]])
    many = np.repeat(row, 20_000, axis=0)
    draws = imputer.transform(many)[:, 1:]
    cond = imputer.mixture_.condition([2.0], given=[0])
    np.testing.assert_array_equal(cond.features, [1, 2])
    # 20 000 draws: means within 4 standard errors, covariances within 5 %
    se = np.sqrt(np.diag(cond.covariance[0]) / len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - cond.mean[0]) < 4 * se)
    np.testing.assert_allclose(np.cov(draws.T), cond.covariance[0], rtol=0.05, atol=0.02)
    # different seeds: different imputations; the same seed: the same ones
    a = imputer.set_params(random_state=1).transform(many[:50])
    b = imputer.set_params(random_state=1).transform(many[:50])
    c = imputer.set_params(random_state=2).transform(many[:50])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "tied"])
def test_condition_matches_brute_force(covariance_type: str) -> None:
    X = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(2, covariance_type=covariance_type, missing="marginalize",
                             random_state=0).fit(X)
    params = gm.params_
    covs = full_covariances(params)
    values = np.array([[0.5, 1.0], [3.0, 2.5]])
    cond = gm.condition(values, given=[2, 0])  # order of 'given' follows the values
    np.testing.assert_array_equal(cond.features, [1])
    for i, (x2, x0) in enumerate(values):
        o, m = np.array([0, 2]), np.array([1])
        xo = np.array([x0, x2])
        logs = [np.log(params.weights[k])
                + multivariate_normal(params.means[k][o], covs[k][np.ix_(o, o)]).logpdf(xo)
                for k in range(2)]
        w = np.exp(np.array(logs) - logsumexp(logs))
        np.testing.assert_allclose(cond.weights[i], w, rtol=1e-10)
        for k in range(2):
            S = covs[k]
            gain = S[np.ix_(m, o)] @ np.linalg.inv(S[np.ix_(o, o)])
            np.testing.assert_allclose(
                cond.means[i, k], params.means[k][m] + gain @ (xo - params.means[k][o]),
                rtol=1e-10)
            np.testing.assert_allclose(cond.covariances[k],
                                       S[np.ix_(m, m)] - gain @ S[np.ix_(o, m)], rtol=1e-10)
    with pytest.raises(ValueError, match="distinct feature indices"):
        gm.condition(values, given=[0, 0])
    with pytest.raises(ValueError, match="shape"):
        gm.condition(values, given=[0])


def test_pipeline_ready() -> None:
    X = _data()
    y = (np.arange(len(X)) >= 150).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = make_pipeline(GaussianMixtureImputer(2, random_state=0),
                              LogisticRegression()).fit(X, y)
    assert model.score(X, y) > 0.9


@parametrize_with_checks([GaussianMixtureImputer(random_state=0)])
def test_sklearn_estimator_checks(estimator, check) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)
