"""Generation in a PCA space: scikit-learn's digits, PCA against scikit-learn, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.utils.estimator_checks import check_estimator

import gmmkit
from _helpers import assert_model_structure
from gmmkit.apps._common import full_covariances


@pytest.fixture(scope="module")
def digits():
    return load_digits().data


@pytest.fixture(scope="module")
def generator(digits):
    return gmmkit.PCAGaussianMixtureGenerator(range(1, 9), random_state=0).fit(digits)


def test_pca_matches_scikit_learn(digits, generator):
    pca = PCA(0.99).fit(digits)
    assert generator.n_pca_components_ == pca.n_components_ == 41
    np.testing.assert_allclose(generator.components_, pca.components_, atol=1e-8)
    np.testing.assert_allclose(generator.explained_variance_, pca.explained_variance_,
                               rtol=1e-8)
    np.testing.assert_allclose(generator.transform(digits), pca.transform(digits), atol=1e-8)
    np.testing.assert_allclose(generator.inverse_transform(pca.transform(digits)),
                               pca.inverse_transform(pca.transform(digits)), atol=1e-8)


def test_k_is_chosen_by_bic(digits, generator):
    table = generator.selection_.table
    assert list(table["n_components"]) == list(range(1, 9))
    sound = table[~table["degenerate"]]
    assert generator.n_components_ == int(sound.loc[sound["bic"].idxmin(), "n_components"])
    assert generator.mixture_ is generator.selection_.best
    assert generator.n_components_ > 1


def test_hundred_new_digits(digits, generator):
    samples, components = generator.sample(100)
    assert samples.shape == (100, 64)
    assert components.shape == (100,)
    assert set(np.unique(components)) <= set(range(generator.n_components_))
    # pixel intensities stay in the digits' range 0..16
    assert samples.min() >= 0 and samples.max() <= 16
    assert samples.std() > 1.0  # not a constant image
    # generated digits are as likely under the model as the real ones, and far more than
    # noise with the same pixel range
    train = generator.score_samples(digits)
    generated = generator.score_samples(samples)
    noise = generator.score_samples(np.random.default_rng(0).uniform(0, 16, size=(100, 64)))
    assert abs(generated.mean() - train.mean()) < train.std()
    assert noise.mean() < train.mean() - 10 * train.std()
    # different samples for a different random_state; reproducible for the same one
    again, _ = generator.sample(100)
    np.testing.assert_array_equal(samples, again)
    other, _ = generator.sample(100, random_state=1)
    assert not np.array_equal(samples, other)


def test_unclipped_samples_follow_the_mixture(digits):
    generator = gmmkit.PCAGaussianMixtureGenerator(
        3, variance=0.9, clip=False, random_state=0
    ).fit(digits)
    assert generator.selection_ is None
    samples, _ = generator.sample(20_000)
    # in the PCA space the samples' mean is the mixture's mean
    mixture_mean = generator.mixture_.weights_ @ generator.mixture_.means_
    sample_mean = generator.transform(samples).mean(axis=0)
    np.testing.assert_allclose(sample_mean, mixture_mean, atol=0.15)
    # and they lie in the principal subspace: projection is lossless
    np.testing.assert_allclose(generator.inverse_transform(generator.transform(samples)),
                               samples, atol=1e-8)


def test_whitening(digits):
    generator = gmmkit.PCAGaussianMixtureGenerator(
        2, variance=0.8, whiten=True, random_state=0
    ).fit(digits)
    Z = generator.transform(digits)
    np.testing.assert_allclose(Z.var(axis=0, ddof=1), 1.0, rtol=1e-8)
    pca = PCA(0.8, whiten=True).fit(digits)
    np.testing.assert_allclose(Z, pca.transform(digits), atol=1e-8)
    samples, _ = generator.sample(50)
    assert samples.shape == (50, 64)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"variance": 0.0}, ValueError, "variance"),
        ({"variance": 1.5}, ValueError, "variance"),
        ({"n_components": 5000}, ValueError, "larger than the number of samples"),
        ({"n_components": []}, ValueError, "empty"),
        ({"covariance_type": "banded"}, ValueError, "covariance type"),
    ],
)
def test_bad_parameters(digits, kwargs, error, match):
    with pytest.raises(error, match=match):
        gmmkit.PCAGaussianMixtureGenerator(**{"n_components": 2, **kwargs}).fit(digits[:300])


def test_bad_calls(digits):
    generator = gmmkit.PCAGaussianMixtureGenerator(2, variance=0.8, random_state=0)
    with pytest.raises(ValueError, match="zero variance"):
        generator.fit(np.ones((10, 4)))
    generator.fit(digits[:300])
    with pytest.raises(ValueError, match="n_samples"):
        generator.sample(0)
    with pytest.raises(ValueError, match="shape"):
        generator.inverse_transform(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="features"):
        generator.transform(np.zeros((3, 5)))


def test_passes_scikit_learn_checks():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(gmmkit.PCAGaussianMixtureGenerator(2, variance=0.9, random_state=0))


def test_an_mclust_model_end_to_end(digits):
    generator = gmmkit.PCAGaussianMixtureGenerator((2, 3), variance=0.8, covariance_type="VEV",
                                                   tol=1e-3, random_state=0).fit(digits[:500])
    assert generator.mixture_.covariance_type == "VEV"
    assert_model_structure(generator.mixture_)
    assert list(generator.selection_.bic_table().columns) == ["VEV"]
    samples, labels = generator.sample(40, random_state=0)
    assert samples.shape == (40, 64) and labels.shape == (40,)
    assert samples.min() >= digits[:500].min() and samples.max() <= digits[:500].max()
    assert np.all(np.isfinite(generator.score_samples(samples)))


@pytest.mark.parametrize("covariance_type", ["VEV", "EEI", "EII", "EVE"])
def test_samples_of_an_mclust_model_follow_it(covariance_type):
    """GaussianMixture.sample (which the generator and ``gmmkit sample`` use) draws from
    the model's covariances whatever their storage layout."""
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal([0, 0, 0], 1.0, (200, 3)), rng.normal([8, 0, 4], 1.0, (200, 3))])
    model = gmmkit.GaussianMixture(2, covariance_type=covariance_type, tol=1e-3,
                                   random_state=0).fit(X)
    draws, labels = model.sample(40_000)
    covariances = full_covariances(model.params_)
    for k in range(2):
        rows = draws[labels == k]
        assert len(rows) / len(draws) == pytest.approx(model.weights_[k], abs=0.01)
        np.testing.assert_allclose(rows.mean(axis=0), model.means_[k], atol=0.05)
        np.testing.assert_allclose(np.cov(rows.T), covariances[k], atol=0.06)
