"""1-D helpers: a level-switching series, a large two-peaked score column, densities against
scipy, and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import gmmkit

LEVELS = np.array([24.5, 35.0, 44.4])


def level_series(seed: int = 0, n: int = 50, noise: float = 0.9):
    """A sensor switching between three operating levels (a sticky Markov chain)."""
    rng = np.random.default_rng(seed)
    state = 0
    states = []
    for _ in range(n):
        if rng.random() > 0.8:
            state = int(rng.choice([s for s in range(3) if s != state]))
        states.append(state)
    states = np.array(states)
    assert np.bincount(states, minlength=3).min() >= 8
    return LEVELS[states] + rng.normal(0, noise, n), states


@pytest.mark.parametrize("noise", [0.9, 0.05])
def test_three_levels_without_underflow(noise):
    series, states = level_series(noise=noise)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / underflow / divide-by-zero anywhere
        fit = gmmkit.fit_1d(series, 3, random_state=0)
        log_density = fit.log_pdf(series)
    # the naive product of densities underflows on this data; the fit must not
    assert np.all(np.isfinite(log_density))
    assert np.all(np.isfinite(fit.means)) and np.all(fit.stds > 0)
    assert np.all(np.diff(fit.means) > 5.0)  # three distinct, sorted means
    np.testing.assert_allclose(fit.means, LEVELS, atol=4 * noise)
    np.testing.assert_allclose(fit.weights, np.bincount(states) / len(states), atol=1e-9)
    np.testing.assert_array_equal(fit.predict(series), states)
    # scikit-learn, on its own, finds the same mixture
    sk = SkGaussianMixture(3, n_init=5, random_state=0, tol=1e-8).fit(series[:, None])
    order = np.argsort(sk.means_[:, 0])
    np.testing.assert_allclose(fit.means, sk.means_[order, 0], atol=1e-3 * noise + 1e-6)


def test_densities_against_scipy():
    series, _ = level_series()
    fit = gmmkit.fit_1d(series, 3, random_state=0)
    grid = np.linspace(15, 55, 801)
    reference = np.column_stack(
        [w * norm(m, s).pdf(grid) for w, m, s in zip(fit.weights, fit.means, fit.stds)]
    )
    np.testing.assert_allclose(fit.component_pdfs(grid), reference, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(fit.pdf(grid), reference.sum(axis=1), rtol=1e-10)
    np.testing.assert_allclose(fit.pdf(grid), np.exp(fit.model.score_samples(grid[:, None])),
                               rtol=1e-8)
    assert integrate.trapezoid(fit.pdf(grid), grid) == pytest.approx(1.0, abs=1e-6)
    proba = fit.predict_proba(grid)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba, fit.model.predict_proba(grid[:, None]), atol=1e-8)
    # the model itself is reordered to match: component 0 has the lowest mean
    np.testing.assert_array_equal(fit.model.predict(series[:, None]), fit.predict(series))
    assert fit.model.means_[:, 0].tolist() == sorted(fit.model.means_[:, 0].tolist())
    x, labels = fit.sample(10)
    assert x.shape == labels.shape == (10,)


def test_large_two_peaked_scores():
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0.25, 0.06, 560_000), rng.normal(0.7, 0.1, 240_000)])
    fit = gmmkit.fit_1d(scores, 2, random_state=0)
    np.testing.assert_allclose(fit.means, [0.25, 0.7], atol=2e-3)
    np.testing.assert_allclose(fit.stds, [0.06, 0.1], atol=2e-3)
    np.testing.assert_allclose(fit.weights, [0.7, 0.3], atol=3e-3)


def test_k_by_criterion_and_equal_variance():
    series, _ = level_series()
    fit = gmmkit.fit_1d(series, range(1, 6), random_state=0)
    assert fit.n_components == 3
    assert fit.selection is not None and len(fit.selection.rows) == 5
    tied = gmmkit.fit_1d(series, 3, equal_variance=True, random_state=0)
    assert np.all(tied.stds == tied.stds[0])
    np.testing.assert_allclose(tied.means, LEVELS, atol=3)


def test_accepts_lists_columns_float32_and_weights():
    series, _ = level_series()
    from_list = gmmkit.fit_1d(series.tolist(), 3, random_state=0)
    from_column = gmmkit.fit_1d(series[:, None], 3, random_state=0)
    np.testing.assert_allclose(from_list.means, from_column.means)
    single = gmmkit.fit_1d(series.astype(np.float32), 3, random_state=0)
    np.testing.assert_allclose(single.means, from_list.means, atol=1e-3)
    weight = np.random.default_rng(0).integers(1, 4, len(series))
    weighted = gmmkit.fit_1d(series, 3, sample_weight=weight, random_state=0)
    repeated = gmmkit.fit_1d(np.repeat(series, weight), 3, random_state=0)
    np.testing.assert_allclose(weighted.means, repeated.means, atol=1e-6)


@pytest.mark.parametrize(
    ("x", "kwargs", "error", "match"),
    [
        (np.zeros((5, 2)), {}, ValueError, "1-D"),
        (np.array([1.0, np.nan, 2.0]), {}, ValueError, "NaN"),
        (np.array(["a", "b"]), {}, TypeError, "numeric"),
        (np.arange(5.0), {"n_components": 6}, ValueError, "larger than the number of samples"),
        (np.arange(5.0), {"n_components": 0}, ValueError, ">= 1"),
        (np.arange(5.0), {"n_components": [2, 3], "criterion": "x"}, ValueError, "criterion"),
    ],
)
def test_bad_input(x, kwargs, error, match):
    with pytest.raises(error, match=match):
        gmmkit.fit_1d(x, **kwargs)


def test_any_covariance_model_is_one_of_mclusts_two():
    """In one dimension a model is E (one variance) or V (one each), by its first letter."""
    series, _ = level_series()
    equal = gmmkit.fit_1d(series, 3, covariance_type="EEI", random_state=0)
    assert equal.model.covariance_type == "EEI"
    assert np.all(equal.stds == equal.stds[0])
    tied = gmmkit.fit_1d(series, 3, equal_variance=True, random_state=0)
    np.testing.assert_allclose(equal.stds, tied.stds, rtol=1e-6)
    np.testing.assert_allclose(equal.means, tied.means, rtol=1e-6)
    variable = gmmkit.fit_1d(series, 3, covariance_type="VEV", random_state=0)
    assert variable.model.covariance_type == "VEV"
    assert len(np.unique(variable.stds)) == 3
    full = gmmkit.fit_1d(series, 3, random_state=0)
    np.testing.assert_allclose(variable.means, full.means, rtol=1e-6)
    np.testing.assert_allclose(variable.stds, full.stds, rtol=1e-5)
    # several models are compared, as Mclust(x) compares E and V
    chosen = gmmkit.fit_1d(series, range(1, 5), covariance_type=("E", "V"), random_state=0)
    assert chosen.n_components == 3
    assert list(chosen.selection.bic_table().columns) == ["E", "V"]
    with pytest.raises(ValueError, match="not both"):
        gmmkit.fit_1d(series, 3, equal_variance=True, covariance_type="V")
