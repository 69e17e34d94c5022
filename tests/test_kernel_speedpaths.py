"""Correctness of the chunk kernel's fast paths against independent references.

The kernel works feature-major, folds the normalisation and sample weights into one
per-row scale, whitens ``tied`` with one GEMM and sizes blocks for the cache; every one
of those choices must leave the statistics, log-densities, predictions and
responsibilities equal (up to rounding) to a direct computation with SciPy's
``multivariate_normal.logpdf`` and to scikit-learn.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture as SKGaussianMixture

import gmmkit.core.kernel as kernel
from _helpers import LONG_DOUBLE_FINER, long_log_density_upper
from gmmkit.core.covariance import pack_symmetric
from gmmkit.core.em import e_step
from gmmkit.core.kernel import (
    chunk_statistics,
    features,
    hard_statistics,
    kernel_coefficients,
    log_joint,
    log_resp_and_density,
    predict_chunk,
    proba_chunk,
    score_chunk,
)
from gmmkit.core.params import MixtureParams
from gmmkit.engines.memory import MemoryEngine, default_chunk_rows

COV_TYPES = ["full", "tied", "diag", "spherical"]

#: the numpy kernel's paths (the fused compiled kernel has tests of its own)
pytestmark = pytest.mark.usefixtures("numpy_kernel")


def _random_params(rng: np.random.Generator, k: int, d: int, cov_type: str) -> MixtureParams:
    means = rng.normal(scale=2.0, size=(k, d))
    if cov_type == "full":
        a = rng.normal(size=(k, d, d))
        cov = a @ a.transpose(0, 2, 1) + 0.5 * np.eye(d)
    elif cov_type == "tied":
        a = rng.normal(size=(d, d))
        cov = a @ a.T + 0.5 * np.eye(d)
    elif cov_type == "diag":
        cov = rng.uniform(0.3, 3.0, size=(k, d))
    else:
        cov = rng.uniform(0.3, 3.0, size=k)
    return MixtureParams.from_covariances(rng.dirichlet(np.ones(k) * 2), means, cov, cov_type)


def _dense_covariances(params: MixtureParams) -> np.ndarray:
    k, d = params.n_components, params.n_features
    cov = params.covariances
    if params.covariance_type == "full":
        return cov
    if params.covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if params.covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(d) for c in cov])


def _reference_log_joint(params: MixtureParams, X: np.ndarray) -> np.ndarray:
    covs = _dense_covariances(params)
    return np.column_stack(
        [
            np.log(params.weights[k]) + multivariate_normal(params.means[k], covs[k]).logpdf(X)
            for k in range(params.n_components)
        ]
    ).reshape(len(X), -1)


def _reference_statistics(params, X, weight, labels=None, label_weight=1.0, reference=None):
    """Statistics straight from the definition: softmax of SciPy log-densities, moments
    around ``reference`` (K, D) (default: every row the weighted mean of the means)."""
    log_prob = _reference_log_joint(params, X)
    log_norm = logsumexp(log_prob, axis=1)
    resp = np.exp(log_prob - log_norm[:, None])
    weight = weight.copy()
    if labels is not None:
        lab = np.flatnonzero(labels >= 0)
        resp[lab] = 0.0
        resp[lab, labels[lab]] = 1.0
        log_norm[lab] = log_prob[lab, labels[lab]]
        weight[lab] *= label_weight
    wr = resp * weight[:, None]
    d = X.shape[1]
    if reference is None:
        reference = np.tile(params.weights @ params.means, (params.n_components, 1))
    first, seconds = [], []
    for j, centre in enumerate(reference):
        xc = X - centre
        outer = pack_symmetric(xc[:, :, None] * xc[:, None, :])
        first.append(wr[:, j] @ xc)
        seconds.append({
            "full": wr[:, j] @ outer,
            "tied": weight @ outer,
            "diag": wr[:, j] @ xc**2,
            "spherical": wr[:, j] @ np.sum(xc**2, axis=1, keepdims=True),
        }[params.covariance_type])
    second = np.stack(seconds[:1] if params.covariance_type == "tied" else seconds)
    return {
        "nk": wr.sum(axis=0),
        "first": np.stack(first),
        "second": second,
        "log_likelihood": float(weight @ log_norm),
        "worst": float(np.min(np.where(weight > 0, log_norm, np.inf))),
        "d": d,
    }


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("d", [1, 3, 6])
@pytest.mark.parametrize("case", ["plain", "weighted", "labelled"])
def test_chunk_statistics_match_scipy_reference(cov_type, d, case):
    rng = np.random.default_rng(d * 31 + len(cov_type))
    k, n = 5, 700
    params = _random_params(rng, k, d, cov_type)
    X = rng.normal(scale=3.0, size=(n, d))
    weight = np.ones(n) if case == "plain" else rng.uniform(0.0, 3.0, size=n)
    labels = None
    label_weight = 1.0
    if case == "labelled":
        labels = np.where(rng.uniform(size=n) < 0.3, rng.integers(0, k, size=n), -1)
        label_weight = 2.5
    ref = _reference_statistics(params, X, weight, labels, label_weight)
    coefs = kernel_coefficients(params, np.float64)
    stats = chunk_statistics(
        coefs, X, None if case == "plain" else weight, labels, label_weight
    )
    for name in ("nk", "first", "second"):
        np.testing.assert_allclose(getattr(stats, name), ref[name], rtol=1e-9, atol=1e-9)
    assert stats.log_likelihood == pytest.approx(ref["log_likelihood"], rel=1e-11)
    assert stats.worst_log_density == pytest.approx(ref["worst"], rel=1e-11)
    assert stats.total_weight == pytest.approx(
        weight.sum() if labels is None else (weight * np.where(labels >= 0, 2.5, 1.0)).sum()
    )


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_float32_path_accumulates_to_float64_accuracy(cov_type):
    rng = np.random.default_rng(7)
    d, k, n = 4, 6, 20_000
    params = _random_params(rng, k, d, cov_type)
    X = rng.normal(scale=2.0, size=(n, d)).astype(np.float32)
    exact = e_step(MemoryEngine(X.astype(np.float64), chunk_rows=4096), params)
    fast = e_step(MemoryEngine(X, chunk_rows=4096), params)
    assert fast.nk.dtype == np.float64 and fast.second.dtype == np.float64
    assert fast.log_likelihood == pytest.approx(exact.log_likelihood, rel=1e-5)
    np.testing.assert_allclose(fast.nk, exact.nk, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(fast.first, exact.first, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_inference_matches_scikit_learn(cov_type):
    rng = np.random.default_rng(11)
    d, k, n = 3, 4, 900
    params = _random_params(rng, k, d, cov_type)
    X = rng.normal(scale=3.0, size=(n, d))
    sk = SKGaussianMixture(n_components=k, covariance_type=cov_type)
    sk.weights_ = params.weights
    sk.means_ = params.means
    sk.covariances_ = params.covariances
    sk.precisions_cholesky_ = params.precisions_cholesky
    coefs = kernel_coefficients(params, np.float64)
    np.testing.assert_allclose(score_chunk(coefs, X), sk.score_samples(X), rtol=1e-12)
    np.testing.assert_allclose(proba_chunk(coefs, X), sk.predict_proba(X), atol=1e-12)
    np.testing.assert_array_equal(predict_chunk(coefs, X), sk.predict(X))
    log_resp, density = log_resp_and_density(coefs, X)
    assert log_resp.shape == (n, k)
    np.testing.assert_allclose(np.exp(log_resp), sk.predict_proba(X), atol=1e-12)
    np.testing.assert_allclose(density, sk.score_samples(X), rtol=1e-12)
    # the row-major helpers stay consistent with the feature-major kernel
    phi = features(coefs.covariance, X, coefs.reference_compute, coefs.dtype)
    np.testing.assert_allclose(log_joint(coefs, phi), _reference_log_joint(params, X), rtol=1e-10)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_hard_statistics_match_definition(cov_type):
    rng = np.random.default_rng(3)
    d, k, n = 3, 4, 300
    X = rng.normal(size=(n, d))
    labels = rng.integers(0, k, size=n)
    resp = np.eye(k)[labels]
    weight = rng.uniform(0.5, 2.0, size=n)
    reference = X.mean(axis=0)
    from gmmkit.core.covariance import get_covariance_type

    stats = hard_statistics(get_covariance_type(cov_type), X, resp, reference, weight)
    xc = X - reference
    wr = resp * weight[:, None]
    np.testing.assert_allclose(stats.nk, wr.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.first, wr.T @ xc, rtol=1e-10, atol=1e-12)
    if cov_type == "full":
        outer = pack_symmetric(xc[:, :, None] * xc[:, None, :])
        np.testing.assert_allclose(stats.second, wr.T @ outer, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("d, k", [(1, 2), (3, 20), (16, 32), (64, 16)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunking_does_not_change_statistics(d, k, dtype):
    """Any block size (the cache-sized default, odd sizes, one block) gives the same sums."""
    rng = np.random.default_rng(d + k)
    n = 3001
    params = _random_params(rng, k, d, "full")
    X = rng.normal(scale=2.0, size=(n, d)).astype(dtype)
    # the coefficients e_step derives for a pass over n rows (small passes go centred)
    whole = chunk_statistics(kernel_coefficients(params, dtype, n), X)
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    for rows in (default_chunk_rows(d, k, np.dtype(dtype).itemsize), 257, 1000):
        stats = e_step(MemoryEngine(X, chunk_rows=rows, n_jobs=2), params)
        assert stats.n_samples == n
        assert stats.log_likelihood == pytest.approx(whole.log_likelihood, rel=rtol)
        np.testing.assert_allclose(stats.nk, whole.nk, rtol=rtol, atol=rtol * n)
        np.testing.assert_allclose(
            stats.second, whole.second, rtol=rtol, atol=rtol * np.abs(whole.second).max()
        )


def test_default_chunk_rows_is_cache_sized():
    for d, k in [(1, 2), (3, 20), (16, 32), (64, 16), (200, 5)]:
        for itemsize in (4, 8):
            rows = default_chunk_rows(d, k, itemsize)
            assert 64 <= rows <= 65536
    # wider features give fewer rows
    assert default_chunk_rows(64, 16, 8) < default_chunk_rows(16, 32, 8)
    assert default_chunk_rows(16, 32, 8) < default_chunk_rows(3, 20, 8)


def test_lloyd_chunk_matches_definition_and_integer_weights():
    from gmmkit.core.kmeans import lloyd_chunk
    from gmmkit.engines.base import Chunk

    rng = np.random.default_rng(5)
    X = rng.normal(size=(500, 3))
    centres = rng.normal(size=(6, 3))
    reference = X.mean(axis=0)
    d2 = ((X[:, None, :] - centres[None]) ** 2).sum(-1)
    labels = d2.argmin(axis=1)
    stats = lloyd_chunk(centres, reference, Chunk(X, None, None, 0))
    np.testing.assert_allclose(stats.counts, np.bincount(labels, minlength=6))
    np.testing.assert_allclose(
        stats.sums, np.stack([(X[labels == k] - reference).sum(0) for k in range(6)]), atol=1e-10
    )
    assert stats.inertia == pytest.approx(d2.min(axis=1).sum(), rel=1e-10)
    assert stats.farthest_distance == pytest.approx(d2.min(axis=1).max(), rel=1e-10)
    w = rng.integers(0, 4, size=len(X))
    weighted = lloyd_chunk(centres, reference, Chunk(X, w.astype(float), None, 0))
    repeated = lloyd_chunk(centres, reference, Chunk(np.repeat(X, w, axis=0), None, None, 0))
    np.testing.assert_allclose(weighted.sums, repeated.sums, atol=1e-9)
    np.testing.assert_allclose(weighted.counts, repeated.counts)
    assert weighted.inertia == pytest.approx(repeated.inertia, rel=1e-10)


def test_multiresolution_kmeans_is_as_good_as_scikit_learn_on_large_data():
    """Sample-then-refine k-means reaches scikit-learn's full-data inertia (within 1%)."""
    from sklearn.cluster import KMeans

    from gmmkit.core.kmeans import SEEDING_SAMPLE, kmeans, nearest_centre

    rng = np.random.default_rng(2)
    k, n = 8, SEEDING_SAMPLE + 50_000
    true_centres = rng.uniform(-20, 20, size=(k, 4))
    X = true_centres[rng.integers(0, k, size=n)] + rng.normal(size=(n, 4))
    centres = kmeans(MemoryEngine(X, chunk_rows=16_384), k, np.random.default_rng(0))
    _, dist = nearest_centre(X, centres, X.mean(axis=0))
    sk = KMeans(k, n_init=1, random_state=0).fit(X)
    assert dist.sum() <= 1.01 * sk.inertia_


def test_float32_falls_back_to_float64_when_expansion_would_cancel():
    """Components 300 widths from the reference: float32 expansion would lose ~5e-3 of a
    log-density, so the kernel computes those iterations in float64 (and stays exact)."""
    from gmmkit.core.kernel import FLOAT32_TOLERANCE, expansion_error

    d = 2
    near = MixtureParams.from_covariances(
        np.array([0.5, 0.5]), np.array([[0.0, 0.0], [4.0, 0.0]]), np.tile(np.eye(d), (2, 1, 1)),
        "full",
    )
    far = MixtureParams.from_covariances(
        np.array([0.5, 0.5]), np.array([[0.0, 0.0], [300.0, 0.0]]),
        np.tile(np.eye(d), (2, 1, 1)), "full",
    )
    assert kernel_coefficients(near, np.float32).dtype == np.float32
    coefs = kernel_coefficients(far, np.float32)
    assert coefs.dtype == np.float64
    # the probe measures the expansion's real error: large in float32, tiny in float64
    assert expansion_error(kernel_coefficients(far, np.float64), far) < 1e-12
    single = kernel_coefficients(near, np.float32)
    assert expansion_error(single, near) <= FLOAT32_TOLERANCE

    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(500, d)), rng.normal(size=(500, d)) + np.array([300.0, 0.0])])
    X32 = X.astype(np.float32)
    got = chunk_statistics(coefs, X32)
    exact = chunk_statistics(kernel_coefficients(far, np.float64), X32.astype(np.float64))
    assert got.log_likelihood == pytest.approx(exact.log_likelihood, rel=1e-12)
    np.testing.assert_allclose(got.second, exact.second, rtol=1e-12)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_float32_is_skipped_only_where_its_probe_check_fails(cov_type, monkeypatch):
    """float32 data skip the float32 probe check when the components' spread around the
    reference makes it hopeless; wherever they do, the float32 expansion's measured
    error is indeed past FLOAT32_TOLERANCE (so the float64 evaluation costs no
    accuracy), and the check is still run where float32 can pass."""
    from gmmkit.core.kernel import FLOAT32_TOLERANCE, _float32_hopeless, expansion_error

    rng = np.random.default_rng(6)
    base = _random_params(rng, 4, 3, cov_type)
    skipped = tried = 0
    for widths in [1.0, 10.0, 100.0, 1e3, 1e4, 1e5]:
        params = MixtureParams.from_covariances(
            base.weights, base.means * widths, base.covariances, cov_type
        )
        with monkeypatch.context() as patch:  # the plain expansion, whatever its error
            patch.setattr(kernel, "FLOAT64_TOLERANCE", np.inf)
            coefs = kernel_coefficients(params, np.float64)
        single = _as_float32(coefs)
        centred = params.means - coefs.reference
        spread = np.sum(centred * coefs.covariance.precision_times(
            params.precisions_cholesky, centred), axis=1)
        rows, owner = kernel._probe_rows(params)
        rows = rows.astype(np.float32).astype(np.float64)
        exact = kernel._centred_at_probes(params, (rows, owner))
        if _float32_hopeless(spread, exact):
            skipped += 1
            assert expansion_error(single, params) > FLOAT32_TOLERANCE
            assert kernel_coefficients(params, np.float32).dtype == np.float64
        else:
            tried += 1
    assert skipped and tried


def _as_float32(coefs):
    """The float64 coefficients rounded to float32: the plain expansion in float32."""
    return dataclasses.replace(
        coefs,
        dtype=np.dtype(np.float32),
        reference_compute=coefs.reference.astype(np.float32),
        weights_t=coefs.weights_t.astype(np.float32),
        whitening=None if coefs.whitening is None else coefs.whitening.astype(np.float32),
    )


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_expansion_error_probe_matches_observed_error(cov_type):
    """The probe's estimate is the error the kernel really makes on a component's rows
    (within a factor of a few), in float32 where it is measurable."""
    from gmmkit.core.kernel import expansion_error

    rng = np.random.default_rng(4)
    params = _random_params(rng, 3, 4, cov_type)
    params = MixtureParams.from_covariances(
        params.weights, params.means * 8.0, params.covariances, cov_type
    )
    coefs = kernel_coefficients(params, np.float64)
    single = _as_float32(coefs)
    X = np.vstack([
        rng.multivariate_normal(m, c, size=300)
        for m, c in zip(params.means, _dense_covariances(params))
    ]).astype(np.float32)
    exact = _reference_score(params, X.astype(np.float64))
    observed = np.max(np.abs(score_chunk(single, X) - exact))
    # the estimate is relative to the size of the log-densities
    estimate = expansion_error(single, params) * max(1.0, float(np.mean(np.abs(exact))))
    assert estimate > 0.0
    assert observed / 10.0 <= estimate <= observed * 10.0


def _reference_score(params, X):
    return logsumexp(_reference_log_joint(params, X), axis=1)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_near_singular_components_are_evaluated_centred(cov_type):
    """A component with fewer rows than features has precision ~1/reg_covar; expanding
    around the shared reference would lose ~1e-9 per log-density.  The kernel then
    centres every component on its own mean and matches scikit-learn to 1e-10."""
    from gmmkit.core.kernel import FLOAT64_TOLERANCE, expansion_error

    rng = np.random.default_rng(0)
    d, k = 3, 3
    X = rng.normal(size=(40, d)) * 3.0
    means = np.array([[5.0, -4.0, 3.0], [-6.0, 2.0, 1.0], [0.5, 0.5, 0.5]])
    cov = {
        "full": np.stack([np.diag([1e-6, 1e-6, 2.0]), np.eye(d), np.eye(d) * 4.0]),
        "tied": np.diag([1e-6, 1.0, 2.0]),
        "diag": np.array([[1e-6, 1e-6, 2.0], [1.0, 1.0, 1.0], [4.0, 4.0, 4.0]]),
        "spherical": np.array([1e-6, 1.0, 4.0]),
    }[cov_type]
    params = MixtureParams.from_covariances(np.array([0.2, 0.5, 0.3]), means, cov, cov_type)
    coefs = kernel_coefficients(params, np.float64)
    assert coefs.centred_offsets is not None
    expanded = dataclasses.replace(
        coefs, centred_offsets=None, centred_factors=None, centred_constants=None
    )
    assert expansion_error(expanded, params) > FLOAT64_TOLERANCE
    sk = SKGaussianMixture(n_components=k, covariance_type=cov_type)
    sk.weights_, sk.means_ = params.weights, params.means
    sk.covariances_, sk.precisions_cholesky_ = params.covariances, params.precisions_cholesky
    np.testing.assert_allclose(score_chunk(coefs, X), sk.score_samples(X), rtol=1e-10)
    np.testing.assert_allclose(proba_chunk(coefs, X), sk.predict_proba(X), atol=1e-10)
    stats = chunk_statistics(coefs, X)
    # the near-singular component's moments are taken around its own mean (tied: the
    # pooled moment keeps the shared centre), the others' around the shared reference
    expected_centres = np.tile(coefs.reference, (k, 1))
    if cov_type == "tied":
        assert coefs.own_centred is None
    else:
        assert 0 in coefs.own_centred
        expected_centres[coefs.own_centred] = means[coefs.own_centred]
    np.testing.assert_array_equal(stats.reference, expected_centres)
    ref = _reference_statistics(params, X, np.ones(len(X)), reference=expected_centres)
    assert stats.log_likelihood == pytest.approx(ref["log_likelihood"], rel=1e-10)
    np.testing.assert_allclose(stats.nk, ref["nk"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(stats.first, ref["first"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(stats.second, ref["second"], rtol=1e-9, atol=1e-9)
    phi = features(coefs.covariance, X, coefs.reference_compute, coefs.dtype)
    np.testing.assert_allclose(log_joint(coefs, phi), _reference_log_joint(params, X),
                               rtol=1e-10)


def test_default_chunk_rows_counts_the_features_of_the_covariance_type():
    # D = 4, K = 8: blocks of every layout are cut by the cache budget, not the floor
    # of rows that amortises a chunk's fixed cost
    full = default_chunk_rows(4, 8, 8, "full")
    assert default_chunk_rows(4, 8, 8) == full
    assert full < default_chunk_rows(4, 8, 8, "tied") == default_chunk_rows(4, 8, 8, "diag")
    assert default_chunk_rows(4, 8, 8, "diag") < default_chunk_rows(4, 8, 8, "spherical")
    # more features never give more rows; wide full blocks still stay a few MiB
    diag = default_chunk_rows(16, 32, 8, "diag")
    assert default_chunk_rows(16, 32, 8, "full") < diag <= default_chunk_rows(
        16, 32, 8, "spherical"
    )
    assert default_chunk_rows(64, 64, 8) * (64 * 65 // 2 + 65) * 8 <= 4 << 20
    # D = 64, K = 16 is whitened: its blocks hold 3 D + 1 values a row, not packed ones
    assert default_chunk_rows(64, 16, 8) * (3 * 64 + 1) * 8 <= 4 << 20


def test_far_components_do_not_change_sums_through_the_exp_floor():
    """Shifted log-probabilities below -600 are raised to it before exp (numpy's exp is
    7x slower below -708): statistics, log-likelihood and log-responsibilities are still
    those of the exact computation."""
    rng = np.random.default_rng(8)
    d, k = 2, 3
    means = np.array([[0.0, 0.0], [80.0, 0.0], [0.0, -80.0]])
    params = MixtureParams.from_covariances(
        np.array([0.3, 0.3, 0.4]), means, np.tile(np.eye(d), (k, 1, 1)), "full"
    )
    X = means[rng.integers(0, k, size=600)] + rng.normal(size=(600, d))
    ref = _reference_statistics(params, X, np.ones(len(X)))
    coefs = kernel_coefficients(params, np.float64)
    stats = chunk_statistics(coefs, X)
    assert stats.log_likelihood == pytest.approx(ref["log_likelihood"], rel=1e-12)
    np.testing.assert_allclose(stats.nk, ref["nk"], rtol=1e-12, atol=1e-200)
    log_resp, density = log_resp_and_density(coefs, X)
    exact = _reference_log_joint(params, X)
    exact -= logsumexp(exact, axis=1, keepdims=True)
    assert exact.min() < -1000.0  # the premise: far below the floor
    np.testing.assert_allclose(log_resp, exact, rtol=1e-10)
    np.testing.assert_allclose(density, _reference_score(params, X), rtol=1e-12)
    assert proba_chunk(coefs, X).min() < 1e-250


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("far_share", [0.05, 0.6])
def test_rows_outside_the_unshifted_exp_window_match_reference(cov_type, far_share):
    """Log-joints are exponentiated without each row's shift when the components allow
    it; rows whose density falls below the window (far out, some beyond the far-row
    repair) are evaluated again with the shift -- a few of them, or past a quarter of
    the block the whole block -- and everything still matches the SciPy reference."""
    rng = np.random.default_rng(17 + len(cov_type))
    d, k, n = 3, 4, 800
    params = _random_params(rng, k, d, cov_type)
    X = rng.normal(scale=2.0, size=(n, d))
    far = np.flatnonzero(rng.uniform(size=n) < far_share)
    away = rng.normal(size=(len(far), d))
    X[far] += 300.0 * away / np.linalg.norm(away, axis=1, keepdims=True)
    X[far[:3]] *= 1e5
    coefs = kernel_coefficients(params, np.float64)
    assert coefs.unshifted_exp
    # float32 keeps the shifted form, which the torch engine evaluates alike
    single = kernel_coefficients(params, np.float32)
    assert single.dtype == np.float32 and not single.unshifted_exp
    reference_density = _reference_score(params, X)
    outside = reference_density < -460.0  # the premise: the far rows leave the window
    assert outside[far].all() and outside.sum() == len(far)
    assert (len(far) > n // 4) == (far_share > 0.25)
    ref = _reference_statistics(params, X, np.ones(n))
    stats = chunk_statistics(coefs, X)
    for name in ("nk", "first", "second"):
        np.testing.assert_allclose(
            getattr(stats, name), ref[name], rtol=1e-9, atol=1e-9 * np.abs(ref[name]).max()
        )
    assert stats.log_likelihood == pytest.approx(ref["log_likelihood"], rel=1e-11)
    assert stats.worst_log_density == pytest.approx(ref["worst"], rel=1e-11)
    np.testing.assert_allclose(score_chunk(coefs, X), reference_density, rtol=1e-12)


def test_unshifted_exp_is_not_tried_when_densities_leave_its_window():
    """Components so tight that their densities pass the window's top (exp(40)) are
    exponentiated with each row's shift from the start, and still match SciPy."""
    rng = np.random.default_rng(3)
    d, k = 6, 3
    means = rng.normal(scale=1e-6, size=(k, d))
    params = MixtureParams.from_covariances(
        np.full(k, 1.0 / k), means, np.full((k, d), 1e-14), "diag"
    )
    X = means[rng.integers(0, k, size=300)] + rng.normal(scale=1e-7, size=(300, d))
    coefs = kernel_coefficients(params, np.float64)
    assert not coefs.unshifted_exp
    ref = _reference_statistics(params, X, np.ones(len(X)))
    assert np.max(_reference_score(params, X)) > 40.0  # the premise
    stats = chunk_statistics(coefs, X)
    np.testing.assert_allclose(stats.nk, ref["nk"], rtol=1e-9, atol=1e-9)
    assert stats.log_likelihood == pytest.approx(ref["log_likelihood"], rel=1e-11)


def _mixed_accuracy_params(cov_type: str) -> tuple[MixtureParams, np.ndarray]:
    """Six components: two that the shared-reference expansion cannot evaluate to
    1e-12 (a near-singular one and one far out in its own widths), four ordinary ones;
    and rows drawn from all six, pixel-like (integer-valued colours near 0..255)."""
    rng = np.random.default_rng(21)
    d, k = 3, 6
    means = np.array([
        [120.0, 130.0, 110.0], [40.0, 60.0, 50.0], [200.0, 190.0, 170.0],
        [90.0, 150.0, 60.0], [250.0, 250.0, 250.0], [5.0, 3.0, 240.0],
    ])
    spreads = np.array([30.0, 20.0, 25.0, 15.0, 1e-3, 0.05])
    if cov_type == "full":
        a = rng.normal(size=(k, d, d))
        cov = (a @ a.transpose(0, 2, 1) + np.eye(d)) * spreads[:, None, None] ** 2 / d
    elif cov_type == "tied":
        cov = np.diag([1e-4, 1e-4, 4.0])
    elif cov_type == "diag":
        cov = rng.uniform(0.5, 1.5, size=(k, d)) * spreads[:, None] ** 2
    else:
        cov = spreads**2
    params = MixtureParams.from_covariances(
        np.array([0.25, 0.2, 0.2, 0.15, 0.1, 0.1]), means, cov, cov_type
    )
    dense = _dense_covariances(params)
    labels = rng.integers(0, k, size=900)
    X = np.stack([rng.multivariate_normal(means[j], dense[j]) for j in labels])
    X[labels == 4] = np.round(X[labels == 4], 3)  # nearly constant colour
    return params, X


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", ["plain", "weighted", "labelled"])
def test_mixed_accurate_and_inaccurate_components_match_brute_force(cov_type, dtype, case):
    """Only the components whose expansion loses accuracy are evaluated centred on
    their own means; the others keep the one GEMM.  Log-likelihood, statistics (the
    inaccurate components' around their own means), scores, responsibilities and
    predictions equal a brute-force float64 computation from SciPy's densities."""
    from gmmkit.core.kernel import FLOAT64_TOLERANCE, expansion_errors

    params, X = _mixed_accuracy_params(cov_type)
    k = params.n_components
    rng = np.random.default_rng(5)
    weight = rng.uniform(0.2, 3.0, size=len(X)) if case == "weighted" else np.ones(len(X))
    labels = None
    if case == "labelled":
        labels = np.where(rng.uniform(size=len(X)) < 0.2, rng.integers(0, k, len(X)), -1)
    Xd = X.astype(dtype)
    coefs = kernel_coefficients(params, dtype, n_rows=len(X) * 100)  # not a small pass
    assert coefs.dtype == np.float64  # float32 falls back: the expansion would cancel
    errors = expansion_errors(
        dataclasses.replace(coefs, centred_offsets=None, centred_components=None), params
    )
    inaccurate = np.flatnonzero(errors > FLOAT64_TOLERANCE)
    # the premise: a true mix (tied has one shared precision, so all or none)
    assert 0 < len(inaccurate) < k or cov_type == "tied"
    if 0 < len(inaccurate) < k:
        np.testing.assert_array_equal(coefs.centred_components, inaccurate)
        assert coefs.quadratic
    if cov_type != "tied":
        np.testing.assert_array_equal(coefs.own_centred, inaccurate)
    centres = np.tile(coefs.reference, (k, 1))
    if cov_type != "tied":
        centres[inaccurate] = params.means[inaccurate]
    Xref = Xd.astype(np.float64)  # the rows the kernel sees
    ref = _reference_statistics(params, Xref, weight, labels, 2.0, reference=centres)
    stats = chunk_statistics(
        coefs, Xd, None if case == "plain" else weight, labels, label_weight=2.0
    )
    np.testing.assert_array_equal(stats.reference, centres)
    assert stats.log_likelihood == pytest.approx(ref["log_likelihood"], rel=1e-12)
    scale = ref["nk"].max()
    np.testing.assert_allclose(stats.nk, ref["nk"], rtol=1e-10, atol=1e-12 * scale)
    for name in ("first", "second"):
        got, want = getattr(stats, name), ref[name]
        for j in range(len(want)):
            tol = 1e-10 * np.abs(want[j]).max() + 1e-300
            np.testing.assert_allclose(got[j], want[j], rtol=1e-9, atol=tol)
    exact_joint = _reference_log_joint(params, Xref)
    density = logsumexp(exact_joint, axis=1)
    np.testing.assert_allclose(score_chunk(coefs, Xd), density, rtol=1e-12,
                               atol=1e-12 * np.abs(density).mean())
    resp = np.exp(exact_joint - logsumexp(exact_joint, axis=1, keepdims=True))
    np.testing.assert_allclose(proba_chunk(coefs, Xd), resp, atol=1e-11)
    clear = np.sort(resp, axis=1)[:, -2] < 0.45  # rows without a near tie
    np.testing.assert_array_equal(predict_chunk(coefs, Xd)[clear],
                                  np.argmax(exact_joint, axis=1)[clear])


@pytest.mark.parametrize("cov_type", ["full", "diag"])
def test_mixed_path_covariances_of_tight_components_match_centred_reference(cov_type):
    """End to end through the engine (several chunks, two threads): the M-step's
    covariance of a near-constant component far from the reference, from statistics
    taken around its own mean, equals the weighted covariance of its rows computed
    directly (centred two-pass formula in float64)."""
    from gmmkit.core.mstep import m_step

    params, X = _mixed_accuracy_params(cov_type)
    X = np.vstack([X] * 4)
    engine = MemoryEngine(X, chunk_rows=512, n_jobs=2)
    stats = e_step(engine, params)
    assert engine.n_samples * params.n_components > 20_000  # not the small-pass path
    coefs = kernel_coefficients(params, np.float64, engine.n_samples)
    assert coefs.centred_components is not None
    new = m_step(stats, cov_type, reg_covar=0.0, previous=params).params
    log_prob = _reference_log_joint(params, X)
    resp = np.exp(log_prob - logsumexp(log_prob, axis=1, keepdims=True))
    for j in coefs.centred_components:
        r = resp[:, j]
        mean = r @ X / r.sum()
        xc = X - mean
        cov = (xc * r[:, None]).T @ xc / r.sum()
        want = cov if cov_type == "full" else np.diag(cov)
        np.testing.assert_allclose(new.means[j], mean, rtol=1e-13)
        np.testing.assert_allclose(new.covariances[j], want, rtol=1e-7,
                                   atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("cov_type", ["full", "diag", "spherical"])
def test_every_component_inaccurate_skips_quadratic_features(cov_type):
    """When every component's expansion loses accuracy the blocks carry no quadratic
    features and no statistics GEMM runs; the results still equal brute force."""
    params, X = _mixed_accuracy_params(cov_type)
    tight = {
        "full": params.covariances * 1e-8,
        "diag": params.covariances * 1e-8,
        "spherical": params.covariances * 1e-8,
    }[cov_type]
    params = MixtureParams.from_covariances(params.weights, params.means, tight, cov_type)
    coefs = kernel_coefficients(params, np.float64, n_rows=len(X) * 100)
    assert coefs.centred_offsets is not None and coefs.centred_components is None
    assert not coefs.quadratic
    np.testing.assert_array_equal(coefs.own_centred, np.arange(params.n_components))
    ref = _reference_statistics(params, X, np.ones(len(X)), reference=params.means)
    stats = chunk_statistics(coefs, X)
    assert stats.log_likelihood == pytest.approx(ref["log_likelihood"], rel=1e-12)
    np.testing.assert_allclose(stats.nk, ref["nk"], rtol=1e-9, atol=1e-12 * len(X))
    for name in ("first", "second"):
        want = ref[name]
        np.testing.assert_allclose(getattr(stats, name), want, rtol=1e-8,
                                   atol=1e-10 * np.abs(want).max())


@pytest.mark.skipif(not LONG_DOUBLE_FINER, reason="long double is no finer than float64 here")
def test_tied_centred_evaluation_whitening_once_matches_long_double():
    """A shared covariance of condition number 3e7 (D=9, K=20) fails the expansion's
    probes for every component; where its own probes allow it the centred evaluation
    whitens the block once and subtracts ``U' (mu_k - ref)``.  Scores, responsibilities
    and the log-likelihood equal a long-double reference within 1e-12 of the
    log-densities; with a narrower covariance far from the reference the probes reject
    it and the per-component evaluation stays."""
    rng = np.random.default_rng(9)  # bench_missing.py's parameters at D=9, K=20
    d, k = 9, 20
    rng.normal(size=(30_000, d))
    a = rng.normal(size=(k, d, d)) * 0.3 + np.eye(d)
    cov = a[0] @ a[0].T  # condition number 3e7
    means = rng.normal(size=(k, d))
    params = MixtureParams.from_covariances(np.full(k, 1 / k), means, cov, "tied")
    coefs = kernel_coefficients(params, np.float64, n_rows=10**6)
    assert np.linalg.cond(cov) > 1e7
    assert coefs.centred_offsets is not None and coefs.centred_components is None
    assert coefs.centred_white_offsets is not None
    labels = rng.integers(0, k, size=400)
    X = means[labels] + rng.normal(size=(400, d)) @ np.linalg.cholesky(cov).T
    joint = np.log(params.weights) + np.stack(
        [long_log_density_upper(X, means[j], params.precisions_cholesky) for j in range(k)],
        axis=1)
    density = logsumexp(joint, axis=1)
    np.testing.assert_allclose(
        score_chunk(coefs, X), density, rtol=0, atol=1e-12 * np.abs(density).mean())
    resp = np.exp(joint - density[:, None])
    np.testing.assert_allclose(proba_chunk(coefs, X), resp, atol=1e-11)
    assert chunk_statistics(coefs, X).log_likelihood == pytest.approx(density.sum(), rel=1e-12)
    # far and narrow: the whitening's rounding grows with |x - ref|; the probes say no
    far = MixtureParams.from_covariances(
        np.full(k, 1 / k), means * 1e3, cov * 1e-2, "tied")
    far_coefs = kernel_coefficients(far, np.float64, n_rows=10**6)
    assert far_coefs.centred_offsets is not None
    assert far_coefs.centred_white_offsets is None


def test_inference_coefficients_kept_until_the_parameters_change() -> None:
    """Inference derives the coefficients once per fitted parameters, and again when a
    fitted array is changed in place (the results then follow the new values, as
    scikit-learn's would)."""
    import gc

    from gmmkit import GaussianMixture

    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(-2, 1, (300, 2)), rng.normal(3, 0.5, (200, 2))])
    gm = GaussianMixture(2, random_state=0).fit(X)
    params = gm.params_
    first = kernel.kept_coefficients(params, np.float64, fused=True)
    assert kernel.kept_coefficients(params, np.float64, fused=True) is first
    assert kernel.kept_coefficients(params, np.float64) is not first
    assert kernel.kept_coefficients(params, np.float32, fused=True) is not first

    sk = SKGaussianMixture(2, random_state=0).fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        setattr(sk, name, getattr(gm, name).copy())
    gm.score_samples(X[:3])
    gm.means_[0] += 0.5  # in place: the same array as params_.means
    sk.means_[0] += 0.5
    np.testing.assert_allclose(gm.score_samples(X), sk.score_samples(X), rtol=1e-12)
    np.testing.assert_array_equal(gm.predict(X), sk.predict(X))
    assert kernel.kept_coefficients(params, np.float64, fused=True) is not first

    # kept with the parameters: neither pickled nor copied with them
    import copy
    import pickle

    assert "_derived" in params.__dict__
    assert "_derived" not in pickle.loads(pickle.dumps(params)).__dict__
    assert "_derived" not in copy.deepcopy(params).__dict__
    assert "_derived" not in pickle.loads(pickle.dumps(gm)).params_.__dict__
    ref = __import__("weakref").ref(params)
    del gm, params, first
    gc.collect()
    assert ref() is None
