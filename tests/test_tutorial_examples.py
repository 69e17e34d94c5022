"""The classic tutorial examples, as tests against the known generating truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from gmmkit import GaussianMixture


# --------------------------------------------------------------------------- 1-D
def _one_dimensional(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.concatenate(
        [rng.normal(0.0, 0.35, 2000), rng.normal(1.0, 0.2, 2000), rng.normal(3.0, 0.3, 3000)]
    )
    return x[:, None]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_one_dimensional_three_components(seed: int, tol: float) -> None:
    """N(0, 0.35^2) x 2000, N(1, 0.2^2) x 2000, N(3, 0.3^2) x 3000: means within 0.05
    (with the default tol, and converged more tightly)."""
    X = _one_dimensional(seed)
    # scikit-learn's settings (a tol, one k-means start): one EM path, so that the
    # three covariance types below follow it to the same stop
    model = GaussianMixture(3, tol=tol, max_iter=1000, init_params="kmeans",
                            random_state=0).fit(X)
    order = np.argsort(model.means_[:, 0])
    means = model.means_[order, 0]
    np.testing.assert_allclose(means, [0.0, 1.0, 3.0], atol=0.05)
    if tol == 1e-6:
        np.testing.assert_allclose(np.sqrt(model.covariances_[order, 0, 0]),
                                   [0.35, 0.2, 0.3], atol=0.03)
        np.testing.assert_allclose(model.weights_[order], [2 / 7, 2 / 7, 3 / 7], atol=0.03)
    # the same model in every covariance type (they coincide in one dimension)
    for covariance_type in ("diag", "spherical"):
        other = GaussianMixture(3, covariance_type=covariance_type, tol=tol, max_iter=1000,
                                init_params="kmeans", random_state=0).fit(X)
        np.testing.assert_allclose(np.sort(other.means_[:, 0]), means, atol=1e-6)


# --------------------------------------------------------------------------- anisotropic
def _anisotropic() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(n_samples=1000, random_state=170)
    return X @ np.array([[0.6, -0.5], [-0.5, 0.9]]), y


def test_anisotropic_blobs_full_covariance_beats_kmeans() -> None:
    X, y = _anisotropic()
    model = GaussianMixture(3, covariance_type="full", random_state=0).fit(X)
    ari = adjusted_rand_score(y, model.predict(X))
    kmeans_ari = adjusted_rand_score(y, KMeans(3, n_init=10, random_state=0).fit_predict(X))
    assert ari >= 0.95
    assert kmeans_ari < 0.85  # k-means' round clusters cut the sheared ones
    assert ari - kmeans_ari > 0.1


@pytest.mark.parametrize("random_state", range(5))
def test_anisotropic_blobs_do_not_depend_on_the_seed(random_state: int) -> None:
    X, y = _anisotropic()
    model = GaussianMixture(3, covariance_type="full", random_state=random_state).fit(X)
    assert adjusted_rand_score(y, model.predict(X)) >= 0.95


# --------------------------------------------------------------------------- unequal variance
def test_blobs_with_unequal_variances() -> None:
    """``cluster_std=[1.0, 2.5, 0.5]``, 3000 points: clusters and their widths recovered.

    The clusters overlap, so no classifier reaches ARI 1; the yardstick is the Bayes
    classifier that knows the generating parameters."""
    stds = np.array([1.0, 2.5, 0.5])
    X, y, centres = make_blobs(n_samples=3000, cluster_std=stds, random_state=170,
                               return_centers=True)
    model = GaussianMixture(3, covariance_type="full", random_state=0).fit(X)
    labels = model.predict(X)

    proportions = np.bincount(y) / len(y)
    truth_density = np.column_stack([
        p * multivariate_normal(c, s**2 * np.eye(2)).pdf(X)
        for p, c, s in zip(proportions, centres, stds)
    ])
    bayes_ari = adjusted_rand_score(y, truth_density.argmax(axis=1))
    ari = adjusted_rand_score(y, labels)
    assert ari >= 0.95
    assert ari >= bayes_ari - 0.01

    # match fitted components to true clusters by their means
    match = [int(np.argmin(np.linalg.norm(model.means_ - c, axis=1))) for c in centres]
    assert sorted(match) == [0, 1, 2]
    np.testing.assert_allclose(model.means_[match], centres, atol=0.15)
    fitted_stds = np.sqrt(np.diagonal(model.covariances_[match], axis1=1, axis2=2))
    np.testing.assert_allclose(fitted_stds, np.repeat(stds[:, None], 2, axis=1), rtol=0.1)
    np.testing.assert_allclose(model.weights_[match], proportions, atol=0.02)
    # round clusters: the off-diagonal covariance is near zero
    off_diagonal = model.covariances_[match][:, 0, 1] / stds**2
    assert np.all(np.abs(off_diagonal) < 0.1)

    # spherical covariance is the right model here and must recover the widths as well
    spherical = GaussianMixture(3, covariance_type="spherical", random_state=0).fit(X)
    match = [int(np.argmin(np.linalg.norm(spherical.means_ - c, axis=1))) for c in centres]
    np.testing.assert_allclose(np.sqrt(spherical.covariances_[match]), stds, rtol=0.1)
    assert spherical.bic(X) < model.bic(X)  # fewer parameters, same fit


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_dimensional_three_components_with_defaults(seed: int) -> None:
    """gmmkit's defaults (several starts, converged): the same three components, and the
    three one-dimensional spellings of the model agree to the convergence rule."""
    X = _one_dimensional(seed)
    fits = [GaussianMixture(3, covariance_type=c, random_state=0).fit(X)
            for c in ("full", "diag", "V")]
    means = np.sort(fits[0].means_[:, 0])
    np.testing.assert_allclose(means, [0.0, 1.0, 3.0], atol=0.05)
    for other in fits[1:]:
        np.testing.assert_allclose(np.sort(other.means_[:, 0]), means, atol=1e-4)
        assert abs(other.lower_bound_ - fits[0].lower_bound_) <= 1e-8 * abs(fits[0].lower_bound_)
