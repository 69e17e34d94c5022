"""The whitened evaluation of full covariances (wide data, few components).

For D = 64 and K = 16 the kernel evaluates every component by one (D, D + 1) GEMM on the
centred rows instead of packed quadratic features, and takes the second moments by one
SYRK per component.  It must give the statistics, log-densities, responsibilities and
fits of the definition: SciPy's densities, brute-force moments and scikit-learn's EM
from identical starting parameters.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

from gmmkit import GaussianMixture
from gmmkit.core import kernel
from gmmkit.core.kernel import (
    EXACT_WORK,
    chunk_statistics,
    kernel_coefficients,
    log_resp_and_density,
    predict_chunk,
    proba_chunk,
    score_chunk,
    whitened_evaluation,
)
from gmmkit.core.params import MixtureParams
from gmmkit.engines.memory import default_chunk_rows
from test_kernel_speedpaths import _reference_log_joint, _reference_statistics


def _wide_mixture(
    rng: np.random.Generator, n: int, d: int, k: int, spread: float
) -> tuple[MixtureParams, np.ndarray]:
    """Random full covariances (axis scales 0.5..1.5, random orientations), means
    ``spread`` apart on average, and ``n`` rows drawn from them."""
    means = rng.normal(scale=spread / np.sqrt(2 * d), size=(k, d)) + 3.0
    rotations = np.linalg.qr(rng.normal(size=(k, d, d)))[0]
    factors = rotations * rng.uniform(0.5, 1.5, size=(k, 1, d))
    covariances = factors @ np.swapaxes(factors, 1, 2)
    weights = rng.dirichlet(np.full(k, 4.0))
    labels = rng.choice(k, size=n, p=weights)
    X = rng.normal(size=(n, d))
    for j in range(k):
        mine = labels == j
        X[mine] = means[j] + X[mine] @ factors[j].T
    return MixtureParams.from_covariances(weights, means, covariances, "full"), X


def test_whitening_is_chosen_for_wide_data_with_few_components():
    assert whitened_evaluation("full", 64, 16)
    assert whitened_evaluation("full", 128, 32)
    assert not whitened_evaluation("full", 16, 32)  # measured 2.2x slower there
    assert not whitened_evaluation("full", 64, 64)
    assert not whitened_evaluation("full", 3, 2)
    assert not whitened_evaluation("diag", 64, 16)
    assert not whitened_evaluation("tied", 64, 16)
    params, _ = _wide_mixture(np.random.default_rng(0), 10, 64, 16, 20.0)
    assert kernel_coefficients(params, np.float64, 100_000).whitened is not None
    assert kernel_coefficients(params, np.float32, 100_000).whitened is not None
    # a small pass takes the exact centred evaluation, which needs no whitening matrices
    small = kernel_coefficients(params, np.float64, EXACT_WORK // 16)
    assert small.whitened is None and small.centred_offsets is not None
    # blocks carry centred rows only: more rows per block than packed features allow
    assert default_chunk_rows(64, 16, 8) > 4 * default_chunk_rows(64, 64, 8)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", ["plain", "weighted", "labelled"])
@pytest.mark.parametrize("spread", [6.0, 20.0])  # overlapping / separated components
def test_whitened_statistics_match_brute_force(dtype, case, spread):
    """Log-likelihood and moments (around the shared reference) equal the definition
    from SciPy's densities; separated components exercise the rows left out as
    negligible, labelled rows exact zeros."""
    rng = np.random.default_rng(1)
    n, d, k = 1500, 64, 6
    params, X = _wide_mixture(rng, n, d, k, spread)
    weight = rng.uniform(0.2, 3.0, size=n) if case == "weighted" else np.ones(n)
    labels = None
    if case == "labelled":
        labels = np.where(rng.uniform(size=n) < 0.3, rng.integers(0, k, n), -1)
    Xd = X.astype(dtype)
    coefs = kernel_coefficients(params, dtype, n_rows=100_000)
    assert coefs.whitened is not None and coefs.dtype == dtype
    assert coefs.own_centred is None  # every component around the shared reference
    Xref = Xd.astype(np.float64)  # the rows the kernel sees
    ref = _reference_statistics(params, Xref, weight, labels, 2.0)
    stats = chunk_statistics(
        coefs, Xd, None if case == "plain" else weight, labels, label_weight=2.0
    )
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    assert stats.log_likelihood == pytest.approx(ref["log_likelihood"], rel=rtol)
    tol = 1e-11 if dtype == np.float64 else 2e-5
    scale = ref["nk"].max()
    np.testing.assert_allclose(stats.nk, ref["nk"], rtol=tol, atol=tol * scale)
    for name in ("first", "second"):
        got, want = getattr(stats, name), ref[name]
        for j in range(k):
            np.testing.assert_allclose(
                got[j], want[j], rtol=tol, atol=tol * np.abs(want[j]).max() + 1e-300
            )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rows", [1000, 3])  # 3: all components in one stacked product
def test_whitened_scores_and_responsibilities_match_scipy(dtype, rows):
    rng = np.random.default_rng(2)
    params, X = _wide_mixture(rng, 1000, 64, 5, 8.0)
    X = X[:rows]
    assert (5 * 64 * rows <= kernel._STACKED_WHITE) is (rows == 3)
    Xd = X.astype(dtype)
    coefs = kernel_coefficients(params, dtype, n_rows=100_000)
    assert coefs.whitened is not None
    joint = _reference_log_joint(params, Xd.astype(np.float64))
    density = logsumexp(joint, axis=1)
    resp = np.exp(joint - density[:, None])
    rtol = 1e-13 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(score_chunk(coefs, Xd), density, rtol=rtol)
    log_resp, log_density = log_resp_and_density(coefs, Xd)
    np.testing.assert_allclose(log_density, density, rtol=rtol)
    np.testing.assert_allclose(
        np.exp(np.asarray(log_resp, np.float64)), resp, atol=1e-11 if dtype == np.float64 else 1e-4
    )
    np.testing.assert_allclose(proba_chunk(coefs, Xd), resp, atol=1e-11 if dtype == np.float64
                               else 1e-4)
    clear = np.sort(resp, axis=1)[:, -2] < 0.45
    np.testing.assert_array_equal(predict_chunk(coefs, Xd)[clear], np.argmax(joint, axis=1)[clear])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_whitened_with_a_tight_far_component_centres_it(dtype):
    """A near-constant component far from the reference in its own widths: the probe
    flags it, its log-densities come from the centred evaluation and its moments are
    taken around its own mean; the others keep the whitening GEMMs."""
    rng = np.random.default_rng(3)
    n, d, k = 1200, 32, 4
    params, X = _wide_mixture(rng, n, d, k, 10.0)
    covariances = params.covariances.copy()
    covariances[0] = np.eye(d) * 1e-8
    means = params.means.copy()
    means[0] += 40.0
    params = MixtureParams.from_covariances(params.weights, means, covariances, "full")
    X[: n // 5] = means[0] + 1e-4 * rng.normal(size=(n // 5, d))
    coefs = kernel_coefficients(params, dtype, n_rows=100_000)
    assert coefs.whitened is not None and coefs.dtype == np.float64  # float32 falls back
    np.testing.assert_array_equal(coefs.centred_components, [0])
    np.testing.assert_array_equal(coefs.own_centred, [0])
    centres = np.tile(coefs.reference, (k, 1))
    centres[0] = means[0]
    Xref = X.astype(dtype).astype(np.float64)
    ref = _reference_statistics(params, Xref, np.ones(n), reference=centres)
    stats = chunk_statistics(coefs, X.astype(dtype))
    np.testing.assert_array_equal(stats.reference, centres)
    assert stats.log_likelihood == pytest.approx(ref["log_likelihood"], rel=1e-12)
    # the tight component's first moments around its own mean are sums of +-1e-4 values
    # that cancel to ~1e-3; each carries the rounding of x - mu (eps |x|, |x| ~ 50), so
    # n eps |x| bounds their difference (seen: 1.7e-12 on an AMD EPYC, float32 rows)
    rounding = n * np.finfo(np.float64).eps * np.abs(Xref).max()
    for name in ("nk", "first", "second"):
        got, want = getattr(stats, name), ref[name]
        for j in range(k):
            np.testing.assert_allclose(
                got[j], want[j], rtol=1e-9,
                atol=1e-10 * np.abs(want[j]).max() + (rounding if name == "first" else 1e-300),
            )
    density = logsumexp(_reference_log_joint(params, Xref), axis=1)
    # the tight component's rows carry the rounding of x - ref (|x - ref| eps) in its
    # 1e-4 widths: 1e-12 of their log-densities, as the centred evaluation always has
    np.testing.assert_allclose(score_chunk(coefs, X.astype(dtype)), density, rtol=1e-11)


@pytest.mark.parametrize("max_iter", [1, 5])
def test_whitened_fit_matches_sklearn_at_identical_start(max_iter):
    """D = 64, K = 6 over 3500 rows (not a small pass): one E-step and M-step, and
    five iterations, from the same start as scikit-learn give its parameters,
    log-likelihood and responsibilities."""
    rng = np.random.default_rng(4)
    n, d, k = 3500, 64, 6
    truth, X = _wide_mixture(rng, n, d, k, 8.0)
    # a start EM has work to do from: shifted means, inflated covariances
    start = MixtureParams.from_covariances(
        np.full(k, 1.0 / k), truth.means + rng.normal(scale=0.5, size=(k, d)),
        truth.covariances * 2.0, "full",
    )
    assert kernel_coefficients(start, np.float64, n).whitened is not None
    init = {"weights_init": start.weights, "means_init": start.means,
            "precisions_init": start.precisions}
    settings = dict(max_iter=max_iter, tol=0.0, **init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = SklearnGaussianMixture(k, **settings).fit(X)
        ours = GaussianMixture(k, **settings).fit(X)
    assert ours.n_iter_ == reference.n_iter_ == max_iter
    assert ours.lower_bound_ == pytest.approx(reference.lower_bound_, rel=1e-11)
    np.testing.assert_allclose(ours.weights_, reference.weights_, rtol=1e-10)
    spread = X.std(axis=0)
    assert np.max(np.abs(ours.means_ - reference.means_) / spread) < 1e-10
    diag = np.sqrt(np.diagonal(reference.covariances_, axis1=1, axis2=2))
    scale = diag[:, :, None] * diag[:, None, :]
    assert np.max(np.abs(ours.covariances_ - reference.covariances_) / scale) < 1e-9
    np.testing.assert_allclose(ours.predict_proba(X), reference.predict_proba(X), atol=1e-9)
    np.testing.assert_allclose(ours.score_samples(X), reference.score_samples(X), rtol=1e-11)
