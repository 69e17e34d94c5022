"""The em-EM start search's shortcuts: nearest-centre statistics from each cluster's
own rows, and runner-ups at an optimum already continued are skipped."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

from gmmkit import GaussianMixture
from gmmkit.core import starts
from gmmkit.core.em import EMResult
from gmmkit.core.init import _nearest_stats
from gmmkit.core.params import MixtureParams
from gmmkit.engines.base import Chunk


def _brute_force(X, weights, labels, k, reference):
    """Per-cluster weighted count, first moment and upper-triangle second moments
    (row by row) of ``x - reference``, by explicit loops."""
    d = X.shape[1]
    nk = np.zeros(k)
    first = np.zeros((k, d))
    second = np.zeros((k, d * (d + 1) // 2))
    for x, w, j in zip(X - reference, weights, labels):
        nk[j] += w
        first[j] += w * x
        second[j] += w * np.array([x[a] * x[b] for a in range(d) for b in range(a, d)])
    return nk, first, second


def _expected_second(second, covariance_type, d):
    """The layout's quadratic statistics from the brute force's packed outer products."""
    diagonal = [a * d - a * (a - 1) // 2 for a in range(d)]  # (a, a) in the packed rows
    return {
        "full": second,
        "tied": second.sum(axis=0, keepdims=True),
        "diag": second[:, diagonal],
        "spherical": second[:, diagonal].sum(axis=1, keepdims=True),
    }[covariance_type]


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_nearest_statistics_match_a_brute_force(covariance_type):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(240, 5)) * [1.0, 3.0, 0.5, 2.0, 1.0] + 10.0
    weights = rng.uniform(0.0, 2.0, size=len(X))
    weights[::7] = 0.0
    centres = np.vstack([X[:3], np.full(5, 1e3)])  # the last cluster stays empty
    reference = X.mean(axis=0)
    stats = _nearest_stats(covariance_type, centres, reference,
                           Chunk(X, weights, None, 0))
    labels = np.argmin(((X[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
    nk, first, second = _brute_force(X, weights, labels, len(centres), reference)
    np.testing.assert_allclose(stats.nk, nk, rtol=1e-12)
    np.testing.assert_allclose(stats.first, first, rtol=1e-10, atol=1e-10)
    expected = _expected_second(second, covariance_type, X.shape[1])
    np.testing.assert_allclose(stats.second, expected, rtol=1e-10, atol=1e-10)
    assert stats.total_weight == pytest.approx(weights.sum(), rel=1e-12)
    assert stats.nk[-1] == 0.0


@pytest.mark.parametrize("covariance_type", ["VVV", "EEE", "VVI", "VII"])
def test_hc_parameters_are_the_classes_moments(covariance_type, monkeypatch):
    """The hierarchical start's parameters, with its classes fixed, are the classes'
    proportions, means and (pooled, diagonal, averaged) biased covariances plus
    reg_covar, computed here by numpy per class."""
    from gmmkit.engines.memory import MemoryEngine

    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(loc=c, size=(60, 3)) * [1.0, 2.0, 0.5] for c in (0, 4, 8)])
    X[60:120] = X[60:120] @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 1.0]])
    labels = np.repeat([2, 0, 1], 60)
    monkeypatch.setattr(starts, "hc_labels", lambda rows, k: labels)
    monkeypatch.setattr(starts, "hc_rows", lambda engine, rng: (X, np.ones(len(X))))
    reg = 1e-6
    params = starts.hc_parameters(MemoryEngine(X), 3, covariance_type,
                                  np.random.default_rng(0), reg)
    classes = [X[labels == j] for j in range(3)]
    scatters = np.stack([np.cov(c, rowvar=False, bias=True) for c in classes])
    expected = {
        "VVV": scatters + reg * np.eye(3),
        "EEE": (scatters * 60).sum(axis=0) / len(X) + reg * np.eye(3),
        "VVI": np.einsum("kii->ki", scatters) + reg,
        "VII": np.einsum("kii->k", scatters) / 3 + reg,
    }[covariance_type]
    np.testing.assert_allclose(params.weights, np.full(3, 1 / 3), rtol=1e-12)
    np.testing.assert_allclose(params.means, [c.mean(axis=0) for c in classes], rtol=1e-10)
    np.testing.assert_allclose(params.covariances, expected, rtol=1e-9)


def _run(weights, means, covariances, covariance_type):
    params = MixtureParams.from_covariances(
        np.asarray(weights, float), np.asarray(means, float), np.asarray(covariances, float),
        covariance_type,
    )
    return EMResult(params=params, converged=False, n_iter=8, lower_bound=-1.0)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_same_optimum_is_a_close_permutation_and_nothing_looser(covariance_type):
    weights = np.array([0.5, 0.3, 0.2])
    means = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 20.0]])
    full = np.array([[[4.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 9.0]],
                     [[2.0, -0.5], [-0.5, 1.0]]])
    cov = {"full": full, "tied": full[0], "diag": np.einsum("kii->ki", full),
           "spherical": np.array([2.0, 5.0, 1.5])}[covariance_type]
    base = _run(weights, means, cov, covariance_type)
    order = [2, 0, 1]
    permuted_cov = cov if covariance_type == "tied" else cov[order]
    near = _run(weights[order] * (1 + np.array([0.01, -0.01, 0.0])),
                means[order] + 0.01, permuted_cov * 1.005, covariance_type)
    assert starts._same_optimum(near, [base])
    # a mean 0.1 of its standard deviation away (sd >= 1 here: 0.1 is enough)
    far_mean = means.copy()
    far_mean[1, 0] += 0.3
    assert not starts._same_optimum(_run(weights, far_mean, cov, covariance_type), [base])
    # weights 10 % off
    shifted = np.array([0.45, 0.33, 0.22])
    assert not starts._same_optimum(_run(shifted, means, cov, covariance_type), [base])
    # variances 10 % larger
    assert not starts._same_optimum(_run(weights, means, cov * 1.1, covariance_type), [base])
    # two of one's components on one of the other's
    merged = means.copy()
    merged[2] = merged[0] + 0.001
    assert not starts._same_optimum(_run(weights, merged, cov, covariance_type), [base])


def test_a_runner_up_at_the_leaders_optimum_is_not_continued(monkeypatch):
    """Two separated clusters: every start reaches one optimum; the runner-up is
    skipped, and the fit still matches scikit-learn's many-restart optimum."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0.0, 1.0, 3000), rng.normal(8.0, 2.0, 2000)])[:, None]
    continued = []
    original = starts._continue

    def counting(*args, **kwargs):
        continued.append(args[1].lower_bound)
        return original(*args, **kwargs)

    monkeypatch.setattr(starts, "_continue", counting)
    model = GaussianMixture(2, random_state=0).fit(X)
    assert len(continued) == 1
    reference = SklearnGaussianMixture(2, n_init=5, tol=1e-10, max_iter=2000,
                                       random_state=0).fit(X)
    assert model.score(X) >= reference.score(X) - 1e-7
