"""Small data with many tight components (the digits-generation case): the own-mean
moments summed over each component's non-negligible rows only, and the stacked
Cholesky factorisation of the M-step, against brute-force references (SciPy densities,
scikit-learn's precision factors)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

import gmmkit.core.kernel as kernel
from gmmkit.core.covariance import (
    CovarianceError,
    cholesky_precision,
    pack_symmetric,
    repair_positive_definite,
)
from gmmkit.core.kernel import chunk_statistics, kernel_coefficients
from gmmkit.core.params import MixtureParams

#: the numpy kernel's paths (the fused compiled kernel has tests of its own)
pytestmark = pytest.mark.usefixtures("numpy_kernel")


def _tight_clusters(cov_type: str, collapse: bool = False) -> tuple[MixtureParams, np.ndarray]:
    """30 tight clusters (widths 1e-3..1e-2) spread over a 100-wide box, 30 rows each:
    every component's expansion around the shared reference loses accuracy, and each
    one's responsibility is negligible outside its own rows.  ``collapse``: cluster 0's
    rows share their first coordinate exactly (a zero scatter on that axis)."""
    rng = np.random.default_rng(3)
    k, d, per = 30, 4, 30
    means = rng.uniform(0.0, 100.0, size=(k, d))
    spreads = rng.uniform(1e-3, 1e-2, size=k)
    if cov_type == "full":
        a = rng.normal(size=(k, d, d))
        cov = (a @ a.transpose(0, 2, 1) / d + np.eye(d)) * spreads[:, None, None] ** 2
    else:
        cov = rng.uniform(0.5, 1.5, size=(k, d)) * spreads[:, None] ** 2
    params = MixtureParams.from_covariances(np.full(k, 1.0 / k), means, cov, cov_type)
    dense = cov if cov_type == "full" else np.stack([np.diag(c) for c in cov])
    X = np.vstack([rng.multivariate_normal(means[j], dense[j], size=per) for j in range(k)])
    if collapse:
        X[:per, 0] = means[0, 0]
    return params, X


def _brute_force_own_moments(params: MixtureParams, X: np.ndarray, weight: np.ndarray):
    dense = (
        params.covariances
        if params.covariance_type == "full"
        else np.stack([np.diag(c) for c in params.covariances])
    )
    log_joint = np.column_stack([
        np.log(params.weights[j]) + multivariate_normal(params.means[j], dense[j]).logpdf(X)
        for j in range(params.n_components)
    ])
    resp = np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True)) * weight[:, None]
    first, second = [], []
    for j in range(params.n_components):
        diff = X - params.means[j]
        first.append(resp[:, j] @ diff)
        scatter = (diff * resp[:, j, None]).T @ diff
        second.append(pack_symmetric(scatter) if params.covariance_type == "full"
                      else np.diag(scatter))
    return resp.sum(axis=0), np.array(first), np.array(second)


@pytest.mark.parametrize("cov_type", ["full", "diag"])
@pytest.mark.parametrize("weighted", [False, True])
def test_sparse_own_mean_moments_match_brute_force(cov_type, weighted, monkeypatch):
    params, X = _tight_clusters(cov_type)
    weight = (np.random.default_rng(1).uniform(0.2, 3.0, len(X)) if weighted
              else np.ones(len(X)))
    taken = []
    original = kernel._sparse_moments

    def spy(*args, **kwargs):
        taken.append(original(*args, **kwargs))
        return taken[-1]

    monkeypatch.setattr(kernel, "_sparse_moments", spy)
    coefs = kernel_coefficients(params, np.float64, n_rows=10**6)  # not a small pass
    np.testing.assert_array_equal(coefs.own_centred, np.arange(params.n_components))
    stats = chunk_statistics(coefs, X, weight if weighted else None)
    assert len(taken) == 1 and np.all(taken[0])  # every component summed its own rows only
    nk, first, second = _brute_force_own_moments(params, X, weight)
    np.testing.assert_array_equal(stats.reference, params.means)
    np.testing.assert_allclose(stats.nk, nk, rtol=1e-10)
    for j in range(params.n_components):
        np.testing.assert_allclose(stats.first[j], first[j], rtol=1e-8,
                                   atol=1e-9 * np.abs(second[j]).max() ** 0.5 * nk[j] ** 0.5)
        np.testing.assert_allclose(stats.second[j], second[j], rtol=1e-8,
                                   atol=1e-10 * np.abs(second[j]).max())


def test_collapsed_axis_falls_back_to_every_row(monkeypatch):
    """A zero scatter on one axis leaves no room for the left-out rows' bound: that
    component is summed over every row, and the moments still equal brute force."""
    params, X = _tight_clusters("diag", collapse=True)
    taken = []
    original = kernel._sparse_moments

    def spy(*args, **kwargs):
        taken.append(original(*args, **kwargs))
        return taken[-1]

    monkeypatch.setattr(kernel, "_sparse_moments", spy)
    coefs = kernel_coefficients(params, np.float64, n_rows=10**6)
    stats = chunk_statistics(coefs, X)
    assert len(taken) == 1 and not taken[0][0] and np.all(taken[0][1:])
    nk, first, second = _brute_force_own_moments(params, X, np.ones(len(X)))
    np.testing.assert_allclose(stats.nk, nk, rtol=1e-10)
    np.testing.assert_allclose(stats.first[0], first[0], rtol=1e-8,
                               atol=1e-12 * np.abs(first).max())
    np.testing.assert_allclose(stats.second[0], second[0], rtol=1e-8,
                               atol=1e-10 * np.abs(second[0]).max())


def test_stacked_cholesky_matches_scikit_learn_and_names_failures():
    rng = np.random.default_rng(7)
    k, d = 12, 6
    a = rng.normal(size=(k, d, d))
    covs = a @ a.transpose(0, 2, 1) + 1e-3 * np.eye(d)
    got = cholesky_precision(covs, "full")
    want = _compute_precision_cholesky(covs, "full")
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())
    assert np.all(np.tril(got, -1) == 0.0)
    covs[5, 2, 2] = -1.0  # not positive definite
    with pytest.raises(CovarianceError, match="not positive definite"):
        cholesky_precision(covs, "full")
    covs[5, 2, 2] = np.nan
    with pytest.raises(CovarianceError, match="not positive definite"):
        cholesky_precision(covs, "full")


def test_repair_clips_only_the_indefinite_covariances():
    """The M-step's repair (rounding left some covariances indefinite, as float32
    moments of collapsed components do): positive-definite matrices come back as their
    symmetric part, indefinite ones with their eigenvalues clipped at zero plus
    reg_covar on the same eigenvectors (NumPy's eigendecomposition as reference)."""
    rng = np.random.default_rng(8)
    k, d, reg = 12, 5, 1e-6
    a = rng.normal(size=(k, d, d))
    covs = a @ a.transpose(0, 2, 1) + 1e-3 * np.eye(d)
    bad = [3, 9]
    for j in bad:  # one negative eigenvalue
        values, vectors = np.linalg.eigh(covs[j])
        values[0] = -1e-4
        covs[j] = (vectors * values) @ vectors.T
    covs += 1e-12 * rng.normal(size=covs.shape)  # not exactly symmetric
    with pytest.raises(CovarianceError):
        cholesky_precision(covs, "full")
    repaired = repair_positive_definite(covs, "full", reg)
    symmetric = 0.5 * (covs + covs.transpose(0, 2, 1))
    good = np.setdiff1d(np.arange(k), bad)
    np.testing.assert_array_equal(repaired[good], symmetric[good])
    for j in bad:
        values, vectors = np.linalg.eigh(symmetric[j])
        want = (vectors * (np.maximum(values, 0.0) + reg)) @ vectors.T
        np.testing.assert_allclose(repaired[j], want, rtol=1e-10, atol=1e-13)
    factors = cholesky_precision(repaired, "full")
    np.testing.assert_allclose(
        factors @ factors.transpose(0, 2, 1), np.linalg.inv(repaired), rtol=1e-6
    )


@pytest.mark.parametrize("cov_type", ["full", "diag"])
def test_screened_centred_evaluation_matches_brute_force(cov_type, monkeypatch):
    """With many tight components most (component, row) log-joints lie far below their
    row's largest: the E-step evaluates only the others centred, and the statistics,
    log-likelihood (labelled rows included: they read their known component's value)
    equal brute force from SciPy densities."""
    params, X = _tight_clusters(cov_type)
    evaluated = []
    original = kernel._centred_log_joint_pairs

    def spy(coefs, xc_t, components, cols):
        # distinct rows evaluated per component (padding repeats one)
        evaluated.extend(len(np.unique(c)) for c in cols)
        return original(coefs, xc_t, components, cols)

    monkeypatch.setattr(kernel, "_centred_log_joint_pairs", spy)
    # three broad components the expansion evaluates accurately, beside the tight ones
    rng = np.random.default_rng(2)
    d = X.shape[1]
    broad_means = rng.uniform(0.0, 100.0, size=(3, d))
    broad = (np.tile(400.0 * np.eye(d), (3, 1, 1)) if cov_type == "full"
             else np.full((3, d), 400.0))
    k = params.n_components + 3
    params = MixtureParams.from_covariances(
        np.full(k, 1.0 / k), np.vstack([params.means, broad_means]),
        np.concatenate([params.covariances, broad]), cov_type)
    X = np.vstack([X, rng.multivariate_normal(broad_means[0], 400.0 * np.eye(d), size=60)])
    labels = np.where(rng.uniform(size=len(X)) < 0.2, rng.integers(0, k, len(X)), -1)
    mixed = kernel_coefficients(params, np.float64, n_rows=10**6)
    assert mixed.centred_components is not None
    np.testing.assert_array_equal(mixed.centred_components, np.arange(k - 3))
    for labelled in (None, labels):
        evaluated.clear()
        stats = chunk_statistics(mixed, X, None, labelled, label_weight=2.0)
        assert len(evaluated) == k - 3 and max(evaluated) < len(X) // 4
        dense = (params.covariances if cov_type == "full"
                 else np.stack([np.diag(c) for c in params.covariances]))
        log_joint = np.column_stack([
            np.log(params.weights[j])
            + multivariate_normal(params.means[j], dense[j]).logpdf(X) for j in range(k)
        ])
        norm = logsumexp(log_joint, axis=1)
        resp = np.exp(log_joint - norm[:, None])
        weight = np.ones(len(X))
        if labelled is not None:
            known = labelled >= 0
            resp[known] = np.eye(k)[labelled[known]]
            norm[known] = log_joint[known, labelled[known]]
            weight[known] = 2.0
        assert stats.log_likelihood == pytest.approx(weight @ norm, rel=1e-12)
        np.testing.assert_allclose(stats.nk, weight @ resp, rtol=1e-10)


def test_pair_groups_cover_every_entry_once():
    """The padded groups behind the stacked centred evaluation and own-mean moments:
    every row with entries appears in exactly one group, its real columns are its
    entries in order (brute force: ``flatnonzero``), and padding repeats the last one.
    Skewed counts split the rows into groups by count."""
    rng = np.random.default_rng(0)
    split = 0
    for _ in range(60):
        rows, n = rng.integers(1, 40), rng.integers(1, 3000)
        density = rng.uniform(0.0, 0.5) * rng.uniform(size=(rows, 1)) ** rng.uniform(1, 8)
        mask = rng.uniform(size=(rows, n)) < density
        groups, crowded = kernel._pair_groups(mask)
        assert len(crowded) == 0
        split += len(groups) > 1
        seen = np.zeros(rows, dtype=int)
        for members, cols, real in groups:
            for r, c, keep in zip(members, cols, real):
                seen[r] += 1
                np.testing.assert_array_equal(c[keep], np.flatnonzero(mask[r]))
                assert keep[0] and np.all(c[~keep] == c[keep][-1])
        np.testing.assert_array_equal(seen, mask.any(axis=1))
        # rows with more than `most` entries are handed back instead of grouped
        most = int(np.median(mask.sum(axis=1)))
        groups, crowded = kernel._pair_groups(mask, most)
        np.testing.assert_array_equal(crowded, np.flatnonzero(mask.sum(axis=1) > most))
        grouped = np.concatenate([members for members, _, _ in groups] or [[]])
        np.testing.assert_array_equal(
            np.sort(grouped), np.flatnonzero(mask.any(axis=1) & (mask.sum(axis=1) <= most))
        )
    assert split > 0
