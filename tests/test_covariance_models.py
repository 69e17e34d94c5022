"""mclust's fourteen covariance models: every M-step against a brute-force numerical
maximiser of the expected complete-data log-likelihood, and the model structure of what
the M-step returns."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pytest
from scipy import optimize

from _mclust import fitted_params, load_dataset, reference
from gmmkit.core.covariance import (
    MODEL_NAMES,
    get_covariance_type,
    pack_symmetric,
    unpack_symmetric,
)
from gmmkit.core.kernel import kernel_coefficients, score_chunk
from gmmkit.core.params import MixtureParams

D = 3
K = 3


@pytest.fixture(params=["compiled", "numpy"])
def mstep_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both implementations of the iterative M-steps (VEI, VEV, VEE, EVE, VVE): the
    compiled loops (:mod:`gmmkit.core._mstep_jit`, used at these sizes where numba is
    installed) and numpy's (``GMMKIT_NUMBA=0``)."""
    from gmmkit import _jit

    if request.param == "compiled" and _jit._load("_mstep_jit") is None:
        pytest.skip("numba is not importable")
    monkeypatch.setenv(_jit.ENVIRONMENT, "1" if request.param == "compiled" else "0")
    return str(request.param)


def _random_problem(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``n_k`` and per-component scatter ``S_k = W_k / n_k`` of distinct shapes,
    sizes and orientations, shape (K,) and (K, D, D)."""
    rng = np.random.default_rng(seed)
    nk = rng.uniform(5.0, 50.0, size=K)
    scatter = np.empty((K, D, D))
    for k in range(K):
        a = rng.normal(size=(D, D)) * rng.uniform(0.3, 3.0, size=D)
        scatter[k] = a @ a.T / D + 0.05 * np.eye(D)
    return nk, scatter


def _as_matrices(covariances: np.ndarray, layout: str) -> np.ndarray:
    if layout == "full":
        return covariances
    if layout == "tied":
        return np.broadcast_to(covariances, (K, D, D))
    if layout == "diag":
        return np.stack([np.diag(c) for c in covariances])
    return covariances[:, None, None] * np.eye(D)


def _m_step(model: str, nk: np.ndarray, scatter: np.ndarray) -> np.ndarray:
    """The model's M-step from statistics taken around each component's own mean."""
    cov = get_covariance_type(model)
    if cov.layout in ("full", "tied"):
        second = pack_symmetric(scatter * nk[:, None, None])
    elif cov.layout == "diag":
        second = np.diagonal(scatter, axis1=1, axis2=2) * nk[:, None]
    else:
        second = np.trace(scatter, axis1=1, axis2=2)[:, None] * nk[:, None]
    if cov.layout == "tied":
        second = second.sum(axis=0, keepdims=True)
    out = cov.covariances_from_moments(nk, np.zeros((K, D)), second, float(nk.sum()), 0.0)
    return _as_matrices(out, cov.layout)


def _neg_q(nk: np.ndarray, scatter: np.ndarray, sigmas: np.ndarray) -> float:
    """``sum_k n_k (log det Sigma_k + tr(S_k Sigma_k^-1))`` (minus twice Q's covariance part)."""
    sign, logdet = np.linalg.slogdet(sigmas)
    if np.any(sign <= 0):
        return np.inf
    trace = np.einsum("kii->k", np.linalg.solve(sigmas, scatter))
    return float(nk @ (logdet + trace))


def _skew(theta: np.ndarray) -> np.ndarray:
    """(R, D (D - 1) / 2) -> (R, D, D) skew-symmetric matrices."""
    a = np.zeros((len(theta), D, D))
    a[:, *np.triu_indices(D, 1)] = theta
    return a - a.transpose(0, 2, 1)


def _brute_force_covariances(model: str, theta: np.ndarray) -> np.ndarray:
    """``lambda_k D_k A_k D_k'`` from free parameters in mclust's decomposition: log
    volumes, log shapes summing to zero, and rotations (Cayley transforms)."""
    _, shape, _ = model
    n_vol, n_shape, n_rot = _sizes(model)
    parts = np.split(theta, np.cumsum([n_vol, n_shape]))
    vol = np.broadcast_to(np.exp(parts[0]), (K,))
    if shape == "I":
        log_shape = np.zeros((K, D))
    else:
        free = parts[1].reshape(-1, D - 1)
        log_shape = np.broadcast_to(np.hstack([free, -free.sum(axis=1, keepdims=True)]), (K, D))
    rot = parts[2].reshape(-1, D * (D - 1) // 2) if n_rot else np.zeros((1, 0))
    rotations = np.broadcast_to(_cayley(_skew(rot)) if n_rot else np.eye(D), (K, D, D))
    return np.einsum("k,kij,kj,klj->kil", vol, rotations, np.exp(log_shape), rotations)


def _cayley(skew: np.ndarray) -> np.ndarray:
    """Rotations ``(I - A)^-1 (I + A)`` of skew matrices (every rotation without a -1
    eigenvalue: enough for a maximiser started at several random points)."""
    eye = np.eye(D)
    return np.linalg.solve(eye - skew, eye + skew)


def _sizes(model: str) -> tuple[int, int, int]:
    """How many free parameters :func:`_brute_force_covariances` takes for the volumes,
    the shapes and the rotations."""
    volume, shape, orientation = model
    return (
        1 if volume == "E" else K,
        {"I": 0, "E": D - 1, "V": K * (D - 1)}[shape],
        {"I": 0, "E": D * (D - 1) // 2, "V": K * D * (D - 1) // 2}[orientation],
    )


def _batched_neg_q(model: str, nk: np.ndarray, scatter: np.ndarray) -> Any:
    """:func:`_neg_q` of :func:`_brute_force_covariances` for a batch of parameter vectors,
    (P, n) -> (P,): the maximiser's objective, evaluated tens of thousands of times, and
    its finite differences in one call.  With ``D_k`` orthogonal, ``log det Sigma_k`` is
    the sum of the log eigenvalues ``log(lambda_k A_k)`` and ``tr(S_k Sigma_k^-1)`` that of
    ``diag(D_k' S_k D_k)`` over the eigenvalues, so nothing is factorised."""
    n_vol, n_shape, n_rot = _sizes(model)
    upper = np.triu_indices(D, 1)
    eye = np.eye(D)

    def neg_q(theta: np.ndarray) -> np.ndarray:
        p = len(theta)
        log_eigenvalues = np.zeros((p, K, D))
        log_eigenvalues += theta[:, :n_vol, None]
        if n_shape:
            free = theta[:, n_vol : n_vol + n_shape].reshape(p, -1, D - 1)
            log_eigenvalues[..., :-1] += free
            log_eigenvalues[..., -1:] -= free.sum(axis=2, keepdims=True)
        if n_rot:
            skew = np.zeros((p, n_rot * 2 // (D * (D - 1)), D, D))
            skew[..., upper[0], upper[1]] = theta[:, n_vol + n_shape :].reshape(
                p, -1, D * (D - 1) // 2)
            skew -= skew.swapaxes(-1, -2)
            rotations = np.linalg.solve(eye - skew, eye + skew)  # as _cayley
            rotated = ((scatter @ rotations) * rotations).sum(axis=-2)  # diag(D' S D)
        else:
            rotated = np.diagonal(scatter, axis1=1, axis2=2)
        return (log_eigenvalues.sum(axis=-1)
                + (rotated * np.exp(-log_eigenvalues)).sum(axis=-1)) @ nk

    return neg_q


@cache
def _brute_force(model: str, seed: int) -> float:
    """The best of five BFGS runs from random points (central-difference gradients), its
    value taken by :func:`_neg_q` on the matrices :func:`_brute_force_covariances` builds,
    as the M-step's result is scored."""
    nk, scatter = _random_problem(seed)
    neg_q = _batched_neg_q(model, nk, scatter)

    def gradient(theta: np.ndarray) -> np.ndarray:
        step = np.finfo(float).eps ** (1 / 3) * np.maximum(1.0, np.abs(theta))
        up, down = theta + np.diag(step), theta - np.diag(step)
        values = neg_q(np.vstack([up, down]))
        return (values[: len(theta)] - values[len(theta) :]) / (np.diag(up) - np.diag(down))

    rng = np.random.default_rng(100 + seed)
    best = (np.inf, np.zeros(0))
    for _ in range(5):
        start = rng.normal(scale=0.7, size=sum(_sizes(model)))
        res = optimize.minimize(
            lambda t: float(neg_q(t[None])[0]),
            start,
            jac=gradient,
            method="BFGS",
            options={"gtol": 1e-9, "maxiter": 5000},
        )
        if res.fun < best[0]:
            best = (float(res.fun), res.x)
    value = _neg_q(nk, scatter, _brute_force_covariances(model, best[1]))
    assert value == pytest.approx(best[0], rel=1e-12)  # the two ways of scoring agree
    return value


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_m_step_maximises_expected_log_likelihood(
    model: str, seed: int, mstep_path: str
) -> None:
    nk, scatter = _random_problem(seed)
    ours = _neg_q(nk, scatter, _m_step(model, nk, scatter))
    brute = _brute_force(model, seed)
    # at least as good as the numerical optimum, and no better than rounding allows
    assert ours <= brute + 1e-7 * abs(brute)
    assert ours >= brute - 1e-6 * abs(brute)


def _decompose(sigma: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    values, vectors = np.linalg.eigh(sigma)
    volume = float(np.prod(values) ** (1.0 / D))
    return volume, values[::-1] / volume, vectors[:, ::-1]


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_m_step_returns_the_model_structure(model: str, mstep_path: str) -> None:
    nk, scatter = _random_problem(3)
    sigmas = _m_step(model, nk, scatter)
    volume, shape, orientation = model
    parts = [_decompose(s) for s in sigmas]
    volumes = np.array([p[0] for p in parts])
    shapes = np.array([p[1] for p in parts])
    if volume == "E":
        np.testing.assert_allclose(volumes, volumes[0], rtol=1e-9)
    if shape == "E":
        np.testing.assert_allclose(shapes, shapes[:1].repeat(K, 0), rtol=1e-8)
    if shape == "I":
        np.testing.assert_allclose(shapes, 1.0, rtol=1e-9)
    if orientation == "I":
        for s in sigmas:
            np.testing.assert_array_equal(s, np.diag(np.diag(s)))
    if orientation == "E" and shape != "I":
        # every Sigma_k is diagonal in the first one's eigenvectors
        axes = parts[0][2]
        for s in sigmas:
            rotated = axes.T @ s @ axes
            off = rotated - np.diag(np.diag(rotated))
            assert np.abs(off).max() <= 1e-8 * np.abs(rotated).max()


@pytest.mark.parametrize("model", ["VEI", "VEE", "EVE", "VVE", "VEV"])
def test_iterative_m_step_never_lowers_the_objective_from_previous(
    model: str, mstep_path: str
) -> None:
    """Started from the previous covariances, an iterative M-step ends at least as high
    as those covariances (a generalised EM step, whatever local optimum is nearby)."""
    nk, scatter = _random_problem(4)
    cov = get_covariance_type(model)
    for seed in range(5):
        previous_nk, previous_scatter = _random_problem(10 + seed)
        previous = _m_step(model, previous_nk, previous_scatter)
        stored = (
            previous
            if cov.layout == "full"
            else np.diagonal(previous, axis1=1, axis2=2).copy()
        )
        second = (
            pack_symmetric(scatter * nk[:, None, None])
            if cov.layout == "full"
            else np.diagonal(scatter, axis1=1, axis2=2) * nk[:, None]
        )
        out = cov.covariances_from_moments(
            nk, np.zeros((K, D)), second, float(nk.sum()), 0.0, previous=stored
        )
        assert _neg_q(nk, scatter, _as_matrices(out, cov.layout)) <= _neg_q(
            nk, scatter, previous
        ) + 1e-9 * abs(_neg_q(nk, scatter, previous))


# --------------------------------------------------------------------------- against mclust
def test_parameter_counts_equal_mclusts() -> None:
    from gmmkit.core.criteria import n_parameters

    grid = reference()["n_params"]
    assert len(grid) > 250
    for row in grid:
        assert n_parameters(row["G"], row["d"], row["model"]) == row["df"], row


def _stored(model: str, sigma: np.ndarray) -> np.ndarray:
    """mclust's (K, d, d) sigma in the model's layout."""
    layout = get_covariance_type(model).layout
    if layout == "full":
        return sigma
    if layout == "tied":
        return sigma[0]
    if layout == "diag":
        return np.diagonal(sigma, axis1=1, axis2=2).copy()
    return sigma[:, 0, 0].copy()


@pytest.mark.parametrize("case", range(len(fitted_params())))
def test_log_likelihood_at_mclusts_parameters_equals_mclusts(case: int) -> None:
    """gmmkit's kernel at mclust's fitted parameters gives mclust's own log-likelihood
    (its ``estep`` at those parameters), for every model in the fixtures."""
    entry = fitted_params()[case]
    model = entry["model"]
    X = load_dataset(entry["dataset"])
    params = MixtureParams.from_covariances(
        entry["pro"], entry["mean"], _stored(model, entry["sigma"]), model
    )
    total = float(score_chunk(kernel_coefficients(params), X).sum())
    assert abs(total - entry["loglik_at_params"]) <= 1e-9 * abs(entry["loglik_at_params"])


@pytest.mark.parametrize("d", [1, 5, 63, 64, 97])
def test_pack_unpack_symmetric_match_triangle_indices(d: int) -> None:
    """Both (un)packing paths (fancy indexing below 64 features, row slices from 64 on)
    give numpy's upper triangle, row by row, and invert each other."""
    rng = np.random.default_rng(d)
    a = rng.normal(size=(3, d, d))
    sym = a + a.transpose(0, 2, 1)
    rows, cols = np.triu_indices(d)
    packed = pack_symmetric(sym)
    np.testing.assert_array_equal(packed, sym[:, rows, cols])
    np.testing.assert_array_equal(unpack_symmetric(packed, d), sym)


def test_full_m_step_repairs_an_indefinite_scatter_from_rounding() -> None:
    """The unconstrained full M-step factors each covariance once; a scatter left
    indefinite by rounding (reg_covar=0 is refused as singular, so a tiny reg_covar) is
    repaired by clipping eigenvalues, giving a positive-definite covariance."""
    from gmmkit.core.mstep import m_step
    from gmmkit.core.suffstats import SuffStats

    rng = np.random.default_rng(0)
    d = 4
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    scatter = (basis * np.array([1.0, 1.0, 1.0, -1e-13])) @ basis.T  # indefinite by a hair
    nk = np.array([10.0])
    stats = SuffStats(
        nk=nk,
        first=np.zeros((1, d)),
        second=pack_symmetric(scatter[None] * nk[:, None, None]),
        log_likelihood=0.0,
        total_weight=10.0,
        n_samples=10,
        reference=np.zeros((1, d)),
        worst_log_density=-np.inf,
        worst_point=np.zeros(d),
    )
    params = m_step(stats, "VVV", reg_covar=1e-15).params
    eigvals = np.linalg.eigvalsh(params.covariances[0])
    assert eigvals.min() > 0
    np.testing.assert_allclose(params.covariances[0], scatter, atol=1e-12)


@pytest.mark.timeout(120, method="thread")  # a hang inside LAPACK ignores signals
@pytest.mark.parametrize("model", MODEL_NAMES)
@pytest.mark.parametrize("init_params", ["kmeans", "auto"])
def test_a_constant_column_without_reg_covar_ends_with_an_error_or_a_fit(
    model: str, init_params: str
) -> None:
    """A constant column with reg_covar = 0 makes every scatter singular.  EVE and VVE's
    axes iteration then fed infinities to LAPACK's SVD, which never returned (a fit hung
    for good, found by a fuzz); every model must end, with finite covariances or with
    the error that names reg_covar."""
    from gmmkit import GaussianMixture

    for seed in range(3):
        X = np.random.default_rng(seed).normal(size=(300, 6))
        X[:, 0] = 7.0
        try:
            model_ = GaussianMixture(5, covariance_type=model, init_params=init_params,
                                     reg_covar=0.0, random_state=0).fit(X)
        except ValueError as exc:
            assert "reg_covar" in str(exc)
            continue
        assert np.all(np.isfinite(model_.covariances_))
        assert np.all(np.isfinite(model_.score_samples(X)))
