"""The fused compiled E-step (:mod:`gmmkit.core._fused_jit`, full, diagonal and
spherical covariances at few features) against brute force: scipy's Gaussian
log-densities, ``logsumexp`` and the weighted moments summed row by row; its
vectorised ``exp`` against numpy's; and the kernel's choice of it.

Skipped where numba is not installed (``pip install 'gmmkit[fast]'``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

pytest.importorskip("numba")

from _helpers import LONG_DOUBLE_FINER, full_covariances, random_params
from gmmkit import _jit
from gmmkit.core import kernel as kernel_module
from gmmkit.core.kernel import (
    FUSED_BANDS,
    chunk_statistics,
    fused_applies,
    kernel_coefficients,
)
from gmmkit.core.params import MixtureParams

if _jit._load("_fused_jit") is None:  # numba present but not importable with this numpy
    pytest.skip("numba is not importable", allow_module_level=True)

from gmmkit.core import _fused_jit


@pytest.mark.skipif(not LONG_DOUBLE_FINER, reason="long double is float64 here")
def test_exp_within_an_ulp_of_long_double_and_floors_below_708() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([
        -rng.uniform(0.0, 708.0, 200_000), -rng.exponential(1.0, 10_000),
        [0.0, -0.0, -1e-300, -708.0, -np.log(2.0), -700.5],
    ])
    out = np.empty_like(x)
    _fused_jit.exp_array(x, out)
    exact = np.exp(x.astype(np.longdouble))
    ulps = np.abs(out - exact) / np.spacing(exact.astype(np.float64))
    assert float(ulps.max()) <= 1.0  # 0.90 measured; numpy's own exp: 0.69
    assert out[-6:-4].tolist() == [1.0, 1.0]
    below = np.array([-708.0001, -745.0, -800.0, -1e300, -np.inf])
    zeros = np.empty_like(below)
    _fused_jit.exp_array(below, zeros)
    assert zeros.tolist() == [0.0] * 5


@pytest.mark.skipif(not LONG_DOUBLE_FINER, reason="long double is float64 here")
def test_log_within_an_ulp_of_long_double() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([
        np.exp(rng.uniform(-700.0, 700.0, 100_000)), rng.uniform(0.5, 2.0, 100_000),
        1.0 + rng.normal(scale=1e-6, size=1000),
        [1.0, 2.0, 0.5, np.sqrt(2.0), np.nextafter(np.sqrt(2.0), 2.0), 2.2250738585072014e-308,
         1.7976931348623157e308],
    ])
    out = np.empty_like(x)
    _fused_jit.log_array(x, out)
    exact = np.log(x.astype(np.longdouble))
    ulps = np.abs(out - exact) / np.spacing(np.abs(exact).astype(np.float64))
    assert float(ulps.max()) <= 1.0
    assert out[-7:-4].tolist() == [0.0, np.log(2.0), -np.log(2.0)]


def _brute_force(
    params: MixtureParams, X: np.ndarray, weight: np.ndarray | None, refs: np.ndarray
) -> dict[str, np.ndarray | float]:
    """The statistics by scipy, row by row sums in float64."""
    X = X.astype(np.float64)
    cov = full_covariances(params)
    k, d = params.n_components, params.n_features
    with np.errstate(divide="ignore"):
        log_joint = np.column_stack([
            np.log(params.weights[j]) + multivariate_normal(params.means[j], cov[j]).logpdf(X)
            for j in range(k)
        ]).reshape(len(X), k)
    log_density = logsumexp(log_joint, axis=1)
    resp = np.exp(log_joint - log_density[:, None])
    w = np.ones(len(X)) if weight is None else weight
    resp *= w[:, None]
    first = np.empty((k, d))
    layout = params.layout
    q = {"full": d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": d, "spherical": 1}[layout]
    second = np.empty((k, q))
    upper = np.triu_indices(d)
    for j in range(k):
        y = X - refs[j]
        first[j] = resp[:, j] @ y
        outer = np.einsum("n,na,nb->ab", resp[:, j], y, y)
        second[j] = {
            "full": outer[upper], "tied": outer[upper], "diag": np.diag(outer),
            "spherical": [np.trace(outer)],
        }[layout]
    if layout == "tied":  # one pooled sum over every row, around the common reference
        y = X - refs[0]
        second = np.einsum("n,na,nb->ab", w, y, y)[upper][None, :]
    return {
        "nk": resp.sum(axis=0), "first": first, "second": second,
        "log_likelihood": float(w @ log_density), "log_density": log_density,
    }


def _close(a: np.ndarray, b: np.ndarray, scale: float, rtol: float = 1e-12) -> None:
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize(
    ("layout", "d", "k"),
    [("full", 1, 2), ("full", 2, 5), ("full", 3, 20), ("full", 5, 3), ("full", 8, 7),
     ("tied", 1, 3), ("tied", 3, 20), ("tied", 8, 5), ("diag", 1, 1), ("diag", 4, 6),
     ("diag", 16, 9), ("spherical", 2, 4),
     ("spherical", 16, 5)],
)
@pytest.mark.parametrize("weighted", [False, True])
def test_statistics_match_brute_force(layout: str, d: int, k: int, weighted: bool) -> None:
    rng = np.random.default_rng(d * 100 + k)
    params = random_params(rng, k, d, layout)
    # more rows than a tile, not a multiple of it; a row far from every component
    n = 3 * _fused_jit.TILE + 17
    X = params.means[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    X[5] = 60.0
    weight = rng.uniform(0.0, 2.0, n) if weighted else None
    coefs = kernel_coefficients(params, np.float64)
    assert kernel_module._fused_kernels(coefs, d, None) is not None
    stats = chunk_statistics(coefs, X, weight)
    ref = _brute_force(params, X, weight, coefs.stats_reference)
    n_scale = float(np.sum(ref["nk"]))
    _close(stats.nk, ref["nk"], n_scale)
    _close(stats.first, ref["first"], float(np.abs(ref["first"]).max()) + n_scale)
    _close(stats.second, ref["second"], float(np.abs(ref["second"]).max()))
    assert stats.log_likelihood == pytest.approx(ref["log_likelihood"], rel=1e-13)
    density = np.asarray(ref["log_density"])
    worst = int(np.argmin(density if weight is None else np.where(weight > 0, density, np.inf)))
    assert stats.worst_log_density == pytest.approx(density[worst], rel=1e-13)
    np.testing.assert_array_equal(stats.worst_point, X[worst])


@pytest.mark.parametrize("compute", [np.float64, np.float32])
def test_float32_rows_zero_weight_component_and_own_centred_references(compute: type) -> None:
    """float32 rows read as they are (with float32 coefficients too: the fused kernel
    computes in float64 whatever they say), a component of weight 0 (its log-joint
    ``-inf``), and moments around the components' own means where the coefficients ask
    for them."""
    rng = np.random.default_rng(7)
    params = random_params(rng, 4, 3, "full")
    weights = params.weights.copy()
    # (float32 coefficients' own probes do not take a weight of 0: a float64 matter)
    weights[2] = 0.0 if compute == np.float64 else weights[2]
    params = MixtureParams.from_covariances(
        weights / weights.sum(), params.means, params.covariances, "full")
    X = (params.means[rng.integers(0, 4, 500)] + rng.normal(size=(500, 3))).astype(np.float32)
    coefs = kernel_coefficients(params, compute)
    refs = coefs.stats_reference.copy()
    refs[1] = params.means[1]
    from dataclasses import replace

    coefs = replace(coefs, stats_reference=refs)
    stats = chunk_statistics(coefs, X)
    ref = _brute_force(params, X, None, refs)
    assert stats.nk[2] == 0.0 or compute == np.float32
    _close(stats.nk, ref["nk"], 500.0)
    _close(stats.first, ref["first"], float(np.abs(ref["first"]).max()) + 500.0)
    _close(stats.second, ref["second"], float(np.abs(ref["second"]).max()))
    assert stats.log_likelihood == pytest.approx(ref["log_likelihood"], rel=1e-13)


@pytest.mark.parametrize(("layout", "d", "k"), [("full", 3, 5), ("diag", 16, 8),
                                                ("tied", 2, 4), ("spherical", 1, 3)])
def test_float32_rows_widen_exactly_as_a_float64_copy(layout: str, d: int, k: int) -> None:
    """float32 rows go to the fused kernels as they are (no float64 copy of the block):
    every statistic, log-density and per-row result equals the float64 copy's bit for
    bit, since the tiles widen them exactly."""
    rng = np.random.default_rng(d + k)
    params = random_params(rng, k, d, layout)
    n = 2 * _fused_jit.TILE + 9
    X32 = (params.means[rng.integers(0, k, n)] + rng.normal(size=(n, d))).astype(np.float32)
    X64 = X32.astype(np.float64)
    assert kernel_module._compiled_rows(X32) is X32
    coefs = kernel_coefficients(params, np.float64, fused=True)
    single, double = chunk_statistics(coefs, X32), chunk_statistics(coefs, X64)
    for name in ("nk", "first", "second", "log_likelihood", "worst_log_density"):
        np.testing.assert_array_equal(getattr(single, name), getattr(double, name))
    for kind in kernel_module.ROW_KINDS:
        np.testing.assert_array_equal(kernel_module.rows_chunk(coefs, X32, kind),
                                      kernel_module.rows_chunk(coefs, X64, kind))


def test_chosen_only_where_it_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    for layout, bands in FUSED_BANDS.items():
        d_last, k_last = bands[-1]
        cases = [(d_last, 2, True), (d_last + 1, 2, False)]
        if k_last is not None:
            cases += [(d_last, k_last, True), (d_last, k_last + 1, False)]
        for d, k, expected in cases:
            coefs = kernel_coefficients(random_params(rng, k, d, layout), np.float64)
            chosen = kernel_module._fused_kernels(coefs, d, None) is not None
            assert chosen is expected, (layout, d, k)
            labels = np.zeros(5, dtype=np.intp)
            assert kernel_module._fused_kernels(coefs, d, labels) is None
    assert fused_applies("full", 3, 10_000) and fused_applies("tied", 3, 10_000)
    # float32 rows too: the fused kernel reads them and computes in float64
    single = kernel_coefficients(random_params(rng, 3, 2, "full", scale=0.5), np.float32)
    assert single.dtype == np.float32
    assert kernel_module._fused_kernels(single, 2, None) is not None
    monkeypatch.setenv(_jit.ENVIRONMENT, "0")
    coefs = kernel_coefficients(random_params(rng, 3, 2, "full"), np.float64)
    assert kernel_module._fused_kernels(coefs, 2, None) is None


@pytest.mark.parametrize(
    ("layout", "d", "k"),
    [("full", 1, 2), ("full", 3, 20), ("full", 8, 7), ("tied", 3, 6), ("diag", 4, 6),
     ("diag", 16, 9), ("spherical", 2, 4), ("spherical", 16, 5)],
)
@pytest.mark.parametrize("rows_dtype", [np.float64, np.float32])
def test_per_row_inference_matches_brute_force(
    layout: str, d: int, k: int, rows_dtype: type
) -> None:
    """``score_chunk``, ``predict_chunk``, ``proba_chunk`` and ``map_log_resp_chunk``
    by the fused kernel against scipy's log-densities: a row far from every component
    (its log-joints near -1800), a component of weight 0, more rows than a tile."""
    rng = np.random.default_rng(d * 10 + k)
    params = random_params(rng, k, d, layout)
    weights = params.weights.copy()
    weights[-1] = 0.0
    params = MixtureParams.from_covariances(
        weights / weights.sum(), params.means, params.covariances, layout)
    n = 2 * _fused_jit.TILE + 31
    X = (params.means[rng.integers(0, k, n)] + rng.normal(size=(n, d))).astype(rows_dtype)
    X[3] = 60.0
    coefs = kernel_coefficients(params, np.float64)
    assert kernel_module._fused_kernels(coefs, d, None) is not None
    cov = full_covariances(params)
    rows = X.astype(np.float64)
    with np.errstate(divide="ignore"):
        log_joint = np.column_stack([
            np.log(params.weights[j]) + multivariate_normal(params.means[j], cov[j]).logpdf(rows)
            for j in range(k)
        ]).reshape(n, k)
    density = logsumexp(log_joint, axis=1)
    log_resp = log_joint - density[:, None]

    score = kernel_module.score_chunk(coefs, X)
    assert score.dtype == np.float64 and score.shape == (n,)
    np.testing.assert_allclose(score, density, rtol=1e-13)
    proba = kernel_module.proba_chunk(coefs, X)
    assert proba.shape == (n, k) and proba.flags.c_contiguous
    np.testing.assert_allclose(proba, np.exp(log_resp), rtol=0, atol=1e-13)
    assert np.all(proba[:, -1] == 0.0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-14)
    labels = kernel_module.predict_chunk(coefs, X)
    assert labels.dtype == np.intp
    np.testing.assert_array_equal(labels, np.argmax(log_joint, axis=1))
    best = kernel_module.map_log_resp_chunk(coefs, X)
    np.testing.assert_allclose(best, log_resp.max(axis=1), rtol=0, atol=1e-13)


def test_per_row_inference_agrees_with_the_numpy_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """The estimator's score_samples, predict and predict_proba through the fused
    kernel and through the numpy kernel (``GMMKIT_NUMBA=0``) agree."""
    from gmmkit import GaussianMixture

    rng = np.random.default_rng(11)
    X = np.vstack([rng.normal(size=(3000, 3)), rng.normal(4.0, 0.3, size=(2000, 3)),
                   rng.normal(-3.0, 2.0, size=(1000, 3))])
    gm = GaussianMixture(3, random_state=0).fit(X)
    fused = (gm.score_samples(X), gm.predict(X), gm.predict_proba(X))
    monkeypatch.setenv(_jit.ENVIRONMENT, "0")
    plain = (gm.score_samples(X), gm.predict(X), gm.predict_proba(X))
    np.testing.assert_allclose(fused[0], plain[0], rtol=1e-12)
    np.testing.assert_array_equal(fused[1], plain[1])
    np.testing.assert_allclose(fused[2], plain[2], rtol=0, atol=1e-12)


def test_chunks_sized_for_the_fused_kernel_only_where_it_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gmmkit import GaussianMixture
    from gmmkit.engines.memory import FUSED_CHUNK_ROWS, default_chunk_rows

    assert default_chunk_rows(3, 20, 8) == FUSED_CHUNK_ROWS
    assert default_chunk_rows(16, 32, 8, "diag") == FUSED_CHUNK_ROWS
    cache_sized = default_chunk_rows(3, 20, 8, fused=False)
    assert cache_sized < FUSED_CHUNK_ROWS
    assert default_chunk_rows(16, 32, 8, "full") < FUSED_CHUNK_ROWS  # out of its bands
    assert default_chunk_rows(10, 4, 8, "tied") < FUSED_CHUNK_ROWS
    # labelled rows go to the numpy kernel: its cache-sized chunks
    X = np.random.default_rng(0).normal(size=(50, 3))
    gm = GaussianMixture(20)
    assert gm._engine(X).chunk_rows == FUSED_CHUNK_ROWS
    assert gm._engine(X, labels=np.full(50, -1)).chunk_rows == cache_sized
    monkeypatch.setenv(_jit.ENVIRONMENT, "0")
    assert default_chunk_rows(3, 20, 8) == cache_sized


@pytest.mark.parametrize("layout", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("weighted", [False, True])
def test_rows_beyond_far_log_joint_are_left_to_the_exact_evaluation(
    layout: str, weighted: bool
) -> None:
    """Rows whose log-joints are all below -1e10 (the rounding of their distances swamps
    the components' differences) or overflow are left out of the fused sums and
    evaluated by the numpy kernel's exact far-row path: the statistics equal that
    kernel's, and nothing is NaN."""
    rng = np.random.default_rng(2)
    d, k = 3, 2
    covariances = {"full": np.stack([np.eye(d) * 1e-12] * k), "tied": np.eye(d) * 1e-12,
                   "diag": np.full((k, d), 1e-12), "spherical": np.full(k, 1e-12)}[layout]
    params = MixtureParams.from_covariances(
        np.array([0.4, 0.6]), np.array([[0.0, 0.0, 0.0], [1e-5, 0.0, 0.0]]), covariances, layout)
    X = np.vstack([rng.normal(size=(300, d)) * 1e-6, [[1e10, 0.0, 0.0]], [[1e5, -1e5, 2.0]],
                   rng.normal(size=(10, d)) * 1e-6])
    weight = rng.uniform(0.5, 2.0, len(X)) if weighted else None
    coefs = kernel_coefficients(params, np.float64)
    assert kernel_module._fused_kernels(coefs, d, None) is not None
    fused = chunk_statistics(coefs, X, weight)
    plain = kernel_module._numpy_statistics(coefs, X, weight)
    for name in ("nk", "first", "second"):
        np.testing.assert_allclose(
            getattr(fused, name), getattr(plain, name), rtol=1e-9, atol=1e-9 * len(X))
    assert fused.log_likelihood == pytest.approx(plain.log_likelihood, rel=1e-12)
    assert fused.worst_log_density == pytest.approx(plain.worst_log_density, rel=1e-12)
    np.testing.assert_array_equal(fused.worst_point, [1e10, 0.0, 0.0])
    assert (fused.n_samples, fused.total_weight) == (plain.n_samples, plain.total_weight)
    # distances that overflow: finite statistics, a log-likelihood of -inf
    overflow = chunk_statistics(coefs, np.vstack([X, [[1e149, 1e149, 1e149]]]))
    assert np.all(np.isfinite(overflow.nk)) and np.all(np.isfinite(overflow.second))
    assert overflow.log_likelihood == -np.inf and overflow.n_samples == len(X) + 1


@pytest.mark.parametrize(("layout", "d", "k"), [("full", 3, 20), ("tied", 2, 4), ("diag", 5, 6)])
@pytest.mark.parametrize("numba", [True, False])
def test_fused_coefficients_skip_the_probes_and_are_exact_on_every_path(
    monkeypatch: pytest.MonkeyPatch, layout: str, d: int, k: int, numba: bool
) -> None:
    """Coefficients for a fused pass take no probes and sum every component's moments
    around its own mean (tied: its pooled moment around the common reference); where a
    block reaches the numpy kernel after all (numba off here: the engine's promise was
    wrong) they are still exact."""
    rng = np.random.default_rng(11)
    params = random_params(rng, k, d, layout)
    n = 2 * _fused_jit.TILE + 5
    X = params.means[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    weight = rng.uniform(0.0, 2.0, n)

    def no_probes(*args: object) -> None:
        raise AssertionError("a fused pass probed the expansion")

    monkeypatch.setattr(kernel_module, "_probe_rows", no_probes)
    if not numba:
        monkeypatch.setenv(_jit.ENVIRONMENT, "0")
    coefs = kernel_coefficients(params, np.float64, fused=True)
    assert (kernel_module._fused_kernels(coefs, d, None) is not None) is numba
    expected_refs = (
        np.tile(params.weights @ params.means, (k, 1)) if layout == "tied" else params.means)
    np.testing.assert_allclose(coefs.stats_reference, expected_refs, rtol=1e-15)
    stats = chunk_statistics(coefs, X, weight)
    ref = _brute_force(params, X, weight, coefs.stats_reference)
    _close(stats.nk, ref["nk"], float(weight.sum()))
    _close(stats.first, ref["first"], float(np.abs(ref["first"]).max()) + weight.sum())
    _close(stats.second, ref["second"], float(np.abs(ref["second"]).max()))
    assert stats.log_likelihood == pytest.approx(ref["log_likelihood"], rel=1e-13)


def test_engines_promise_fused_passes_only_for_unlabelled_complete_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gmmkit import GaussianMixture
    from gmmkit.engines.base import FilledEngine
    from gmmkit.engines.memory import MemoryEngine

    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 3))
    inside = random_params(rng, 4, 3, "full")
    outside = random_params(rng, 4, 10, "full")  # beyond the fused bands
    engine = MemoryEngine(X)
    assert engine.fused_passes(inside)
    assert not MemoryEngine(rng.normal(size=(300, 10))).fused_passes(outside)
    assert not MemoryEngine(X, labels=np.full(300, -1)).fused_passes(inside)
    assert not FilledEngine(engine, np.zeros(3)).fused_passes(inside)
    probed: list[int] = []
    probe_rows = kernel_module._probe_rows

    def counted(params: MixtureParams) -> tuple[np.ndarray, np.ndarray]:
        probed.append(params.n_components)
        return probe_rows(params)

    monkeypatch.setattr(kernel_module, "_probe_rows", counted)
    big = rng.normal(size=(30_000, 3))  # past EXACT_WORK: passes that would probe
    GaussianMixture(4, random_state=0, max_iter=20).fit(big)
    assert probed == []
    monkeypatch.setenv(_jit.ENVIRONMENT, "0")  # the numpy kernel: it probes
    GaussianMixture(4, random_state=0, max_iter=20).fit(big)
    assert probed
