"""The compiled (numba) E-step over rows with missing values against the numpy path
(``GMMKIT_NUMBA=0``, the reference) and against brute force: full and tied
covariances, shared and per-row missingness patterns, sample weights, labels, rows with
nothing or everything observed, float32 input, chunks of one and several blocks.

Skipped where numba is not installed (``pip install 'gmmkit[fast]'``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

pytest.importorskip("numba")

from _helpers import full_covariances
from gmmkit import GaussianMixture, _jit
from gmmkit.core import kernel as kernel_module
from gmmkit.core import missing as missing_module
from gmmkit.core.kernel import kernel_coefficients
from gmmkit.core.missing import chunk_statistics_missing
from gmmkit.core.params import MixtureParams
from gmmkit.core.suffstats import SuffStats

if _jit._load() is None:  # numba present but not importable with this numpy
    pytest.skip("numba is not importable", allow_module_level=True)


def _params(layout: str, k: int, d: int, seed: int, spread: float = 2.0) -> MixtureParams:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(k, d, d)) * 0.4 + np.eye(d)
    full = a @ a.transpose(0, 2, 1)
    return MixtureParams.from_covariances(
        rng.dirichlet(np.ones(k) * 3), spread * rng.normal(size=(k, d)) + 5.0,
        full if layout == "full" else full[0], layout,
    )


def _rows(n: int, d: int, rate: float, seed: int, shared: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rows with cells missing at random (``shared``: from a handful of patterns, else
    nearly one pattern a row), some with nothing and some with everything observed."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * 2.0 + 5.0
    if shared:
        table = rng.random((6, d)) < rate
        missing = table[rng.integers(0, len(table), n)]
    else:
        missing = rng.random((n, d)) < rate
    missing[:3] = True  # nothing observed
    missing[3:6] = False  # everything observed
    return X, missing


def _statistics(
    monkeypatch: pytest.MonkeyPatch, compiled: bool, params: MixtureParams, X: np.ndarray,
    missing: np.ndarray, **kw: Any,
) -> SuffStats:
    monkeypatch.setenv(_jit.ENVIRONMENT, "1" if compiled else "0")
    coefs = kernel_coefficients(params, np.float64)
    return chunk_statistics_missing(coefs, np.where(missing, 1e3, X), missing, **kw)


def _assert_close(a: SuffStats, b: SuffStats, rtol: float = 1e-10) -> None:
    for name in ("nk", "first", "second"):
        x, y = getattr(a, name), getattr(b, name)
        scale = max(1.0, float(np.max(np.abs(y))))
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * scale, err_msg=name)
    assert a.log_likelihood == pytest.approx(b.log_likelihood, rel=rtol)
    assert a.total_weight == pytest.approx(b.total_weight, rel=1e-14)
    assert a.n_samples == b.n_samples
    assert a.worst_log_density == pytest.approx(b.worst_log_density, rel=rtol)
    np.testing.assert_allclose(a.worst_point, b.worst_point, rtol=1e-9, atol=1e-9)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The layouts the compiled conditional evaluated (to check it ran, or did not)."""
    seen: list[str] = []
    original = missing_module._compiled_conditional

    def spy(kernels: Any, params: MixtureParams, *args: Any) -> Any:
        seen.append(params.layout)
        return original(kernels, params, *args)

    def schur_spy(coefs: Any, *args: Any) -> Any:
        seen.append("full")
        return schur(coefs, *args)

    def tied_schur_spy(coefs: Any, *args: Any) -> Any:
        seen.append("tied")
        return tied_schur(coefs, *args)

    schur = missing_module._schur_statistics
    tied_schur = missing_module._tied_schur_statistics
    monkeypatch.setattr(missing_module, "_compiled_conditional", spy)
    monkeypatch.setattr(missing_module, "_schur_statistics", schur_spy)
    monkeypatch.setattr(missing_module, "_tied_schur_statistics", tied_schur_spy)
    return seen


CASES = [
    # layout, K, D, rate, shared patterns
    ("full", 1, 8, 0.2, False),
    ("full", 3, 9, 0.2, False),
    ("full", 3, 12, 0.4, True),
    ("full", 5, 8, 0.2, True),  # shared patterns
    ("full", 8, 8, 0.2, True),  # many components: the Schur form
    ("full", 5, 16, 0.2, False),
    ("tied", 1, 3, 0.3, False),
    ("tied", 3, 5, 0.2, True),
    ("tied", 4, 9, 0.3, False),
    ("tied", 6, 16, 0.2, False),
]


@pytest.mark.parametrize(("layout", "k", "d", "rate", "shared"), CASES)
@pytest.mark.parametrize("extras", ["plain", "weighted"])
def test_compiled_statistics_match_numpy(
    layout: str, k: int, d: int, rate: float, shared: bool, extras: str,
    monkeypatch: pytest.MonkeyPatch, calls: list[str],
) -> None:
    params = _params(layout, k, d, seed=d + k)
    X, missing = _rows(700, d, rate, seed=d, shared=shared)
    kw: dict[str, Any] = {}
    if extras == "weighted":
        rng = np.random.default_rng(1)
        kw = {
            "sample_weight": rng.uniform(0.2, 3.0, len(X)),
            "labels": np.where(rng.random(len(X)) < 0.2, rng.integers(0, k, len(X)), -1),
            "label_weight": 2.5,
        }
    reference = _statistics(monkeypatch, False, params, X, missing, **kw)
    assert not calls
    compiled = _statistics(monkeypatch, True, params, X, missing, **kw)
    assert calls and set(calls) == {layout}
    _assert_close(compiled, reference)


def _brute_force(params: MixtureParams, X: np.ndarray, missing: np.ndarray, reference):
    """nk, first, packed second and log-likelihood, row by row with scipy's densities."""
    covs = full_covariances(params)
    means = np.asarray(params.means)
    k, d = means.shape
    nk, first, second = np.zeros(k), np.zeros((k, d)), np.zeros((k, d, d))
    log_likelihood = 0.0
    for x, m in zip(X, missing):
        o = ~m
        if not o.any():
            continue
        log_joint = np.log(params.weights) + np.array([
            multivariate_normal(means[j][o], covs[j][np.ix_(o, o)]).logpdf(x[o])
            for j in range(k)
        ])
        log_likelihood += logsumexp(log_joint)
        resp = np.exp(log_joint - logsumexp(log_joint))
        for j in range(k):
            s = covs[j]
            gain = s[np.ix_(m, o)] @ np.linalg.inv(s[np.ix_(o, o)])
            xhat = x.copy()
            xhat[m] = means[j][m] + gain @ (x[o] - means[j][o])
            c = np.zeros((d, d))
            c[np.ix_(m, m)] = s[np.ix_(m, m)] - gain @ s[np.ix_(o, m)]
            centred = xhat - reference[j]
            nk[j] += resp[j]
            first[j] += resp[j] * centred
            second[j] += resp[j] * (np.outer(centred, centred) + c)
    rows, cols = np.triu_indices(d)
    if params.layout == "tied":
        packed = second.sum(axis=0)[rows, cols][None]
    else:
        packed = second[:, rows, cols]
    return nk, first, packed, log_likelihood


def _schur_and_brute_force(
    monkeypatch: pytest.MonkeyPatch, params: MixtureParams, X: np.ndarray,
    missing: np.ndarray,
) -> tuple[SuffStats, tuple[Any, ...]]:
    """The Schur form's statistics of the rows (asserting it applies to ``params``) and
    :func:`_brute_force`'s of the same rows, around the same centres."""
    coefs = kernel_coefficients(params, np.float64)
    assert missing_module._schur_applies(coefs)
    stats = _statistics(monkeypatch, True, params, X, missing)
    return stats, _brute_force(params, X, missing, coefs.stats_reference)


def _assert_cancellation_summed(
    monkeypatch: pytest.MonkeyPatch, params: MixtureParams, X: np.ndarray,
    missing: np.ndarray,
) -> None:
    """The cancellation tests' check: the log-likelihood within 1e-12 of scipy's."""
    stats, (nk, first, _, log_likelihood) = _schur_and_brute_force(
        monkeypatch, params, X, missing)
    assert stats.log_likelihood == pytest.approx(log_likelihood, rel=1e-12)
    np.testing.assert_allclose(stats.nk, nk, rtol=1e-10)
    np.testing.assert_allclose(stats.first, first, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("layout", ["full", "tied"])
def test_compiled_statistics_match_brute_force(
    layout: str, monkeypatch: pytest.MonkeyPatch, calls: list[str]
) -> None:
    params = _params(layout, 3, 8, seed=11)
    X, missing = _rows(120, 8, 0.3, seed=12, shared=False)
    stats = _statistics(monkeypatch, True, params, X, missing)
    assert calls
    nk, first, second, log_likelihood = _brute_force(
        params, X, missing, kernel_coefficients(params, np.float64).stats_reference)
    np.testing.assert_allclose(stats.nk, nk, rtol=1e-10)
    np.testing.assert_allclose(stats.first, first, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(stats.second, second, rtol=1e-9, atol=1e-8)
    assert stats.log_likelihood == pytest.approx(log_likelihood, rel=1e-11)


def test_compiled_far_components_and_large_blocks(
    monkeypatch: pytest.MonkeyPatch, calls: list[str]
) -> None:
    """Components 100 widths apart (the tied distance is summed directly for most rows)
    and more rows than one batch of the full kernels (256) and one block."""
    monkeypatch.setattr(missing_module, "_BLOCK_VALUES", 4000)
    for layout in ("full", "tied"):
        params = _params(layout, 3, 10, seed=5, spread=100.0)
        X, missing = _rows(2000, 10, 0.25, seed=6, shared=False)
        X = X + np.asarray(params.means)[np.arange(len(X)) % 3] - 5.0
        _assert_close(
            _statistics(monkeypatch, True, params, X, missing),
            _statistics(monkeypatch, False, params, X, missing),
        )
    assert set(calls) == {"full", "tied"}


def test_compiled_float32_input(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    for layout in ("full", "tied"):
        params = _params(layout, 3, 9, seed=2)
        X, missing = _rows(400, 9, 0.2, seed=3, shared=False)
        X = X.astype(np.float32)
        _assert_close(
            _statistics(monkeypatch, True, params, X, missing),
            _statistics(monkeypatch, False, params, X, missing),
        )
    assert set(calls) == {"full", "tied"}


@pytest.mark.parametrize("layout", ["full", "tied"])
def test_schur_form_with_float32_coefficients(
    layout: str, monkeypatch: pytest.MonkeyPatch, calls: list[str]
) -> None:
    """float32 data whose kernel computes in float32: the Schur form evaluates the
    incomplete rows with the float64 coefficients (its corrections assume their
    accuracy) and equals the numpy path, which works in float64 too."""
    rng = np.random.default_rng(4)
    a = rng.normal(size=(5, 12, 12)) * 0.1 + np.eye(12)
    full = a @ a.transpose(0, 2, 1)
    params = MixtureParams.from_covariances(  # near the origin: float32 is accurate
        np.full(5, 0.2), rng.normal(size=(5, 12)), full if layout == "full" else full[0],
        layout)
    X, missing = _rows(600, 12, 0.2, seed=5, shared=False)
    filled = np.where(missing, 0.0, X - 5.0).astype(np.float32)
    coefs = kernel_coefficients(params, np.float32)
    assert coefs.dtype == np.float32
    assert missing_module._schur_applies(coefs)
    monkeypatch.setenv(_jit.ENVIRONMENT, "0")
    reference = chunk_statistics_missing(coefs, filled, missing)
    assert not calls
    monkeypatch.setenv(_jit.ENVIRONMENT, "1")
    # the complete rows through the numpy float32 kernel in both runs (the fused one
    # would compute them in float64)
    monkeypatch.setattr(kernel_module, "FUSED_BANDS", {})
    _assert_close(chunk_statistics_missing(coefs, filled, missing), reference, rtol=1e-9)
    assert calls == [layout]


@pytest.mark.parametrize("layout", ["full", "tied"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_schur_form_inference_matches_numpy(
    layout: str, dtype: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scores, responsibilities, predictions and the largest log responsibilities of
    incomplete rows (some with nothing observed, among complete ones) from the Schur
    form's log-joint equal the numpy path's, and scipy's brute force."""
    from gmmkit.core.missing import map_log_resp_rows, predict_rows, proba_rows, score_rows

    d = 12
    params = _params(layout, 6, d, seed=7)
    X, missing = _rows(500, d, 0.25, seed=8, shared=False)
    filled = np.where(missing, 0.0, X).astype(dtype)
    coefs = kernel_coefficients(params, dtype)
    assert missing_module._schur_applies(coefs)
    got, want = {}, {}
    for compiled, out in (("1", got), ("0", want)):
        monkeypatch.setenv(_jit.ENVIRONMENT, compiled)
        out["score"] = score_rows(coefs, filled, missing)
        out["proba"] = proba_rows(coefs, filled, missing)
        out["predict"] = predict_rows(coefs, filled, missing)
        out["map"] = map_log_resp_rows(coefs, filled, missing)
    np.testing.assert_allclose(got["score"], want["score"], rtol=1e-10)
    np.testing.assert_allclose(got["proba"], want["proba"], atol=1e-10)
    np.testing.assert_allclose(got["map"], want["map"], atol=1e-10)
    clear = np.sort(want["proba"], axis=1)[:, -2] < 0.45
    np.testing.assert_array_equal(got["predict"][clear], want["predict"][clear])
    covs = params.covariances if layout == "full" else np.broadcast_to(
        params.covariances, (6, d, d))
    rows = filled.astype(np.float64)
    for i in np.flatnonzero(missing.any(axis=1) & ~missing.all(axis=1))[:40]:
        o = ~missing[i]
        joint = [np.log(params.weights[k]) + multivariate_normal(
            params.means[k][o], covs[k][np.ix_(o, o)]).logpdf(rows[i, o]) for k in range(6)]
        assert got["score"][i] == pytest.approx(logsumexp(joint), rel=1e-9)
    assert np.all(got["score"][missing.all(axis=1)] == 0.0)


@pytest.mark.filterwarnings("ignore::UserWarning")  # short fit; rows with nothing observed
def test_schur_form_estimator_inference_matches_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fitted model's ``score_samples``, ``predict_proba`` and ``score`` of incomplete
    rows (its engine keeps the masks and the Schur groups between calls) equal the numpy
    path's."""
    X, missing = _rows(800, 6, 0.3, seed=11, shared=False)
    Xm = np.where(missing, np.nan, X)
    monkeypatch.setenv(_jit.ENVIRONMENT, "1")
    model = GaussianMixture(
        5, missing="marginalize", random_state=0, n_init=1, init_params="kmeans", max_iter=5
    ).fit(Xm[6:])
    got = [model.score_samples(Xm), model.predict_proba(Xm), model.score(Xm)]
    again = model.score_samples(Xm)
    monkeypatch.setenv(_jit.ENVIRONMENT, "0")
    want = [model.score_samples(Xm), model.predict_proba(Xm), model.score(Xm)]
    np.testing.assert_allclose(got[0], want[0], rtol=1e-10)
    np.testing.assert_allclose(got[1], want[1], atol=1e-10)
    assert got[2] == pytest.approx(want[2], rel=1e-10)
    np.testing.assert_array_equal(again, got[0])


def test_complete_data_never_reaches_the_kernels(
    monkeypatch: pytest.MonkeyPatch, calls: list[str]
) -> None:
    params = _params("full", 3, 9, seed=2)
    X, _ = _rows(300, 9, 0.2, seed=3, shared=False)
    none = np.zeros(X.shape, dtype=bool)
    with_numba = _statistics(monkeypatch, True, params, X, none)
    without = _statistics(monkeypatch, False, params, X, none)
    assert not calls
    # the complete-data kernel itself is the fused compiled one with numba: equal to
    # rounding, not bit for bit
    for name in ("nk", "first", "second"):
        value = getattr(with_numba, name)
        np.testing.assert_allclose(
            value, getattr(without, name), rtol=0, atol=1e-12 * np.abs(value).max())
    assert with_numba.log_likelihood == pytest.approx(without.log_likelihood, rel=1e-13)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("layout", ["full", "tied"])
def test_compiled_fit_matches_numpy(layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole fit (EM iterations through the engines) lands on the same model."""
    rng = np.random.default_rng(7)
    X = np.concatenate([rng.normal(size=(300, 8)) + 4 * j for j in range(3)])
    X[rng.random(X.shape) < 0.2] = np.nan
    models = []
    for flag in ("0", "1"):
        monkeypatch.setenv(_jit.ENVIRONMENT, flag)
        models.append(GaussianMixture(
            3, covariance_type=layout, missing="marginalize", random_state=0, max_iter=30,
            tol=0.0,
        ).fit(X))
    numpy_model, compiled_model = models
    assert compiled_model.n_iter_ == numpy_model.n_iter_
    np.testing.assert_allclose(compiled_model.means_, numpy_model.means_, rtol=1e-8)
    np.testing.assert_allclose(
        compiled_model.covariances_, numpy_model.covariances_, rtol=1e-8, atol=1e-10)
    assert compiled_model.lower_bound_ == pytest.approx(numpy_model.lower_bound_, rel=1e-10)


def test_not_positive_definite_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """A conditional precision that is not positive definite (here NaN) raises as in
    the numpy path instead of leaving NaN in the statistics."""
    from dataclasses import replace

    params = _params("full", 2, 8, seed=1)
    broken = np.array(params.precisions_cholesky, dtype=np.float64)
    broken[1, 3, 3] = np.nan
    params = replace(params, precisions_cholesky=broken)
    X, missing = _rows(200, 8, 0.3, seed=2, shared=False)
    for flag in (False, True):
        with pytest.raises(np.linalg.LinAlgError):
            _statistics(monkeypatch, flag, params, X, missing)
    # an indefinite P_mm (the kernels' own check): two rows missing coordinates 0 and 1
    kernels = _jit.kernels()
    assert kernels is not None
    mask = np.array([[True, True], [True, True], [False, False]])  # (D, n)
    precision = np.eye(3)[None].copy()
    precision[0, 0, 1] = precision[0, 1, 0] = 2.0
    assert kernels.factorise(mask, precision, np.empty(3), np.empty((1, 1))) != 0


def test_environment_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, expected in (("0", False), ("off", False), ("no", False), ("1", True), ("", True)):
        monkeypatch.setenv(_jit.ENVIRONMENT, value)
        assert _jit.enabled() is expected
        assert _jit.backend() == ("numba" if expected else "numpy")
    monkeypatch.delenv(_jit.ENVIRONMENT)
    assert _jit.available()


@pytest.mark.parametrize("d", [2, 5])
def test_compiled_full_below_the_batch_size(
    d: int, monkeypatch: pytest.MonkeyPatch, calls: list[str]
) -> None:
    """Full covariances below 8 features keep the numpy path (faster there); the kernels'
    row-at-a-time branch for them still matches it."""
    params = _params("full", 3, d, seed=d)
    X, missing = _rows(300, d, 0.3, seed=d, shared=False)
    _statistics(monkeypatch, True, params, X, missing)
    assert not calls
    monkeypatch.setattr(missing_module, "_COMPILED_FULL_FEATURES", 1)
    _assert_close(
        _statistics(monkeypatch, True, params, X, missing),
        _statistics(monkeypatch, False, params, X, missing),
    )
    assert calls == ["full"]


# --------------------------------------------------------------------------- Schur form
def _schur_case(
    k: int, d: int, seed: int, spread: float = 2.0, tight: float = 1.0
) -> tuple[MixtureParams, np.ndarray, np.ndarray]:
    """Parameters (component 0 ``tight`` times narrower) and rows drawn from them with a
    fifth of the cells missing."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(k, d, d)) * 0.4 + np.eye(d)
    full = a @ a.transpose(0, 2, 1)
    full[0] *= tight**2
    means = spread * rng.normal(size=(k, d)) + 5.0
    params = MixtureParams.from_covariances(rng.dirichlet(np.ones(k) * 3), means, full, "full")
    z = rng.integers(0, k, 400)
    X = means[z] + np.einsum("nij,nj->ni", np.linalg.cholesky(full)[z], rng.normal(size=(400, d)))
    missing = rng.random(X.shape) < 0.2
    missing[:2] = True
    return params, X, missing


@pytest.mark.parametrize(
    ("k", "d", "spread", "tight"),
    [
        (4, 8, 2.0, 1.0),  # shared reference
        (6, 12, 40.0, 0.05),  # far, narrow components: accumulated around their own means
        (3, 40, 2.0, 1.0),  # wide: the kernel whitens (no packed quadratic features)
        (9, 10, 3.0, 1.0),  # as many components as take the Schur form by default
    ],
)
def test_schur_form_matches_brute_force(
    k: int, d: int, spread: float, tight: float, monkeypatch: pytest.MonkeyPatch,
    calls: list[str],
) -> None:
    """The Schur form (the complete kernel on the rows filled at the centre, corrected per
    pattern) against scipy's marginal densities and conditional moments row by row (it
    takes full covariances from ``_SCHUR_COMPONENTS`` components on; here from one)."""
    monkeypatch.setattr(missing_module, "_SCHUR_COMPONENTS", 1)
    params, X, missing = _schur_case(k, d, seed=d, spread=spread, tight=tight)
    stats, (nk, first, second, log_likelihood) = _schur_and_brute_force(
        monkeypatch, params, X, missing)
    assert calls == ["full"]
    np.testing.assert_allclose(stats.nk, nk, rtol=1e-9, atol=1e-12)
    scale = np.max(np.abs(second))
    np.testing.assert_allclose(stats.first, first, rtol=1e-9, atol=1e-9 * np.max(np.abs(first)))
    np.testing.assert_allclose(stats.second, second, rtol=1e-9, atol=1e-9 * scale)
    assert stats.log_likelihood == pytest.approx(log_likelihood, rel=1e-11)


def test_schur_form_cancellation_is_summed_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows of a narrow component far from the centre whose missing coordinate its
    observed twin nearly determines: the Schur form cancels ~1e9 in whitened units
    there, and the distance must be summed again to stay within 1e-12 of the density."""
    monkeypatch.setattr(missing_module, "_SCHUR_COMPONENTS", 1)
    rng = np.random.default_rng(3)
    d = 8
    far = np.eye(d) * 0.01
    far[0, 1] = far[1, 0] = 0.01 * 0.99999
    covariances = np.stack([far, np.eye(d)])
    means = np.stack([np.full(d, 1000.0), np.zeros(d)])
    params = MixtureParams.from_covariances(np.array([0.5, 0.5]), means, covariances, "full")
    X = np.concatenate([
        rng.multivariate_normal(means[0], far, 100), rng.normal(size=(100, d))])
    missing = np.zeros(X.shape, dtype=bool)
    missing[:100, 1] = True
    missing[100:, 3] = True
    _assert_cancellation_summed(monkeypatch, params, X, missing)


def test_schur_form_pattern_groups_and_blocks(
    monkeypatch: pytest.MonkeyPatch, calls: list[str]
) -> None:
    """Chunks split into several groups of rows (each factorising its own patterns) and
    blocks, with weights and labels, equal the numpy path."""
    monkeypatch.setattr(missing_module, "_SCHUR_COMPONENTS", 1)
    monkeypatch.setattr(missing_module, "_SCHUR_PATTERN_VALUES", 2000)
    monkeypatch.setattr(missing_module, "_BLOCK_VALUES", 20_000)
    params, X, missing = _schur_case(5, 10, seed=4)
    X, missing = np.concatenate([X] * 3), np.concatenate([missing] * 3)
    groups = missing_module._schur_groups(missing[missing.any(axis=1) & ~missing.all(axis=1)], 5)
    assert len(groups) > 1 and len(groups[0].blocks) > 1
    rng = np.random.default_rng(1)
    kw: dict[str, Any] = {
        "sample_weight": rng.uniform(0.2, 3.0, len(X)),
        "labels": np.where(rng.random(len(X)) < 0.2, rng.integers(0, 5, len(X)), -1),
        "label_weight": 2.5,
    }
    compiled = _statistics(monkeypatch, True, params, X, missing, **kw)
    assert calls == ["full"]
    _assert_close(compiled, _statistics(monkeypatch, False, params, X, missing, **kw))


def test_schur_form_not_positive_definite_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN in a precision factor raises in the Schur form's factorisation too, as the
    numpy path does, instead of leaving NaN in the statistics."""
    from dataclasses import replace

    monkeypatch.setattr(missing_module, "_SCHUR_COMPONENTS", 1)
    params = _params("full", 2, 8, seed=1)
    broken = np.array(params.precisions_cholesky, dtype=np.float64)
    broken[1, 3, 3] = np.nan
    params = replace(params, precisions_cholesky=broken)
    X, missing = _rows(200, 8, 0.3, seed=2, shared=False)
    with pytest.raises(np.linalg.LinAlgError):
        _statistics(monkeypatch, True, params, X, missing)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_schur_form_fit_matches_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole fit with as many components as take the Schur form lands on the numpy
    path's model (iterations through the engines, components that tighten on the way)."""
    schur = missing_module._schur_statistics
    passes: list[int] = []

    def spy(*args: Any) -> Any:
        passes.append(1)
        return schur(*args)

    monkeypatch.setattr(missing_module, "_schur_statistics", spy)
    rng = np.random.default_rng(8)
    X = np.concatenate([rng.normal(size=(150, 9)) * (0.5 + j % 3) + 3 * j for j in range(8)])
    X[rng.random(X.shape) < 0.2] = np.nan
    models = []
    for flag in ("0", "1"):
        monkeypatch.setenv(_jit.ENVIRONMENT, flag)
        models.append(GaussianMixture(
            8, covariance_type="full", missing="marginalize", random_state=0, max_iter=25,
            tol=0.0, init_params="kmeans",
        ).fit(X))
    assert len(passes) >= 25
    numpy_model, compiled_model = models
    assert compiled_model.n_iter_ == numpy_model.n_iter_
    np.testing.assert_allclose(compiled_model.means_, numpy_model.means_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(
        compiled_model.covariances_, numpy_model.covariances_, rtol=1e-7, atol=1e-9)
    assert compiled_model.lower_bound_ == pytest.approx(numpy_model.lower_bound_, rel=1e-10)


def test_tied_schur_form_matches_brute_force(
    monkeypatch: pytest.MonkeyPatch, calls: list[str]
) -> None:
    """The tied Schur form (one factorisation per pattern for all components) against
    scipy row by row, and with weights and labels against the numpy path."""
    params = _params("tied", 4, 12, seed=12)
    X, missing = _rows(300, 12, 0.25, seed=13, shared=False)
    stats, (nk, first, second, log_likelihood) = _schur_and_brute_force(
        monkeypatch, params, X, missing)
    assert calls == ["tied"]
    np.testing.assert_allclose(stats.nk, nk, rtol=1e-10)
    np.testing.assert_allclose(stats.first, first, rtol=1e-9, atol=1e-9 * np.max(np.abs(first)))
    np.testing.assert_allclose(stats.second, second, rtol=1e-9, atol=1e-9 * np.max(np.abs(second)))
    assert stats.log_likelihood == pytest.approx(log_likelihood, rel=1e-11)
    rng = np.random.default_rng(1)
    kw: dict[str, Any] = {
        "sample_weight": rng.uniform(0.2, 3.0, len(X)),
        "labels": np.where(rng.random(len(X)) < 0.2, rng.integers(0, 4, len(X)), -1),
        "label_weight": 2.5,
    }
    _assert_close(
        _statistics(monkeypatch, True, params, X, missing, **kw),
        _statistics(monkeypatch, False, params, X, missing, **kw),
    )


def test_tied_schur_form_cancellation_is_summed_directly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the full test: a narrow shared covariance whose two first coordinates nearly
    determine each other, rows of a component far from the centre missing one of them."""
    rng = np.random.default_rng(4)
    d = 10
    shared = np.eye(d) * 0.01
    shared[0, 1] = shared[1, 0] = 0.01 * 0.99999
    means = np.stack([np.full(d, 1000.0), np.zeros(d)])
    params = MixtureParams.from_covariances(np.array([0.5, 0.5]), means, shared, "tied")
    X = np.concatenate([
        rng.multivariate_normal(means[0], shared, 100),
        rng.multivariate_normal(means[1], shared, 100)])
    missing = np.zeros(X.shape, dtype=bool)
    missing[:100, 1] = True
    missing[100:, 4] = True
    _assert_cancellation_summed(monkeypatch, params, X, missing)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_tied_schur_form_fit_matches_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole tied fit with enough features for the Schur form lands on the numpy
    path's model."""
    schur = missing_module._tied_schur_statistics
    passes: list[int] = []

    def spy(*args: Any) -> Any:
        passes.append(1)
        return schur(*args)

    monkeypatch.setattr(missing_module, "_tied_schur_statistics", spy)
    rng = np.random.default_rng(9)
    X = np.concatenate([rng.normal(size=(200, 12)) + 4 * j for j in range(4)])
    X[rng.random(X.shape) < 0.2] = np.nan
    models = []
    for flag in ("0", "1"):
        monkeypatch.setenv(_jit.ENVIRONMENT, flag)
        models.append(GaussianMixture(
            4, covariance_type="tied", missing="marginalize", random_state=0, max_iter=25,
            tol=0.0,
        ).fit(X))
    assert len(passes) >= 25
    numpy_model, compiled_model = models
    assert compiled_model.n_iter_ == numpy_model.n_iter_
    np.testing.assert_allclose(compiled_model.means_, numpy_model.means_, rtol=1e-8)
    np.testing.assert_allclose(
        compiled_model.covariances_, numpy_model.covariances_, rtol=1e-8, atol=1e-10)
    assert compiled_model.lower_bound_ == pytest.approx(numpy_model.lower_bound_, rel=1e-10)
