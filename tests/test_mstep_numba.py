"""The compiled iterations of the constrained M-steps (``gmmkit.core._mstep_jit``)
against the numpy loops they replace.

Both take the same steps with the same stopping rule, so from the same statistics they
must reach the same expected complete-data log-likelihood to rounding -- from scratch (up
to 500 steps) and from the previous covariances (ten).  The covariances themselves agree
less closely where the slow majorisation steps of EVE and VVE are still moving when the
objective's change falls below the 1e-12 rule: rounding decides on which step that
happens (a 1e-12 change of Q is a ~1e-6 change of the axes, and the steps shrink
slowly).  ``test_covariance_models.py`` checks both paths against
a brute-force maximiser of the expected complete-data log-likelihood.
"""

from __future__ import annotations

import numpy as np
import pytest

from gmmkit import GaussianMixture, _jit
from gmmkit.core.covariance import get_covariance_type
from gmmkit.core.covariance._base import compiled_mstep

if _jit._load("_mstep_jit") is None:  # numba absent, or not importable with this numpy
    pytest.skip("numba is not importable", allow_module_level=True)

ITERATIVE = ["VEI", "VEV", "VEE", "EVE", "VVE"]


def _problem(k: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, per-component scatters and a nearby previous M-step's covariances, with
    spreads over two orders of magnitude and unrelated orientations."""
    rng = np.random.default_rng(seed)
    nk = rng.uniform(1.0, 60.0, size=k)

    def scatters() -> np.ndarray:
        a = rng.normal(size=(k, d, d)) * rng.uniform(0.1, 10.0, size=(k, 1, d))
        return a @ a.transpose(0, 2, 1) / d + 1e-3 * np.eye(d)

    scatter = scatters()
    return nk, scatter, scatter + 0.2 * scatters()


def _matrices(covariances: np.ndarray, d: int) -> np.ndarray:
    return covariances if covariances.ndim == 3 else covariances[:, :, None] * np.eye(d)


def _q(nk: np.ndarray, scatter: np.ndarray, sigma: np.ndarray) -> float:
    """``-0.5 sum_k n_k (log det Sigma_k + tr(S_k Sigma_k^-1))``."""
    log_det = np.linalg.slogdet(sigma)[1]
    trace = np.einsum("kij,kji->k", scatter, np.linalg.inv(sigma))
    return float(-0.5 * nk @ (log_det + trace))


def _constrain(model: str, nk: np.ndarray, scatter: np.ndarray, previous: np.ndarray | None,
               monkeypatch: pytest.MonkeyPatch, setting: str) -> np.ndarray:
    monkeypatch.setenv(_jit.ENVIRONMENT, setting)
    cov = get_covariance_type(model)
    if cov.layout == "diag":
        scatter = np.diagonal(scatter, axis1=1, axis2=2).copy()
        previous = None if previous is None else np.diagonal(previous, axis1=1, axis2=2).copy()
    return cov.constrain(nk, scatter.copy(), None if previous is None else previous.copy())


@pytest.mark.parametrize("warm", [False, True])
@pytest.mark.parametrize("model", ITERATIVE)
def test_compiled_m_step_equals_numpys(
    model: str, warm: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for seed in range(40):
        k, d = 2 + seed % 8, 2 + seed % 5
        nk, scatter, previous = _problem(k, d, seed)
        start = previous if warm else None
        numpy = _constrain(model, nk, scatter, start, monkeypatch, "0")
        compiled = _constrain(model, nk, scatter, start, monkeypatch, "1")
        case = f"{model} K={k} D={d} seed={seed}"
        q_numpy, q_compiled = (_q(nk, scatter, _matrices(c, d)) for c in (numpy, compiled))
        assert q_compiled == pytest.approx(q_numpy, rel=1e-11), case
        np.testing.assert_allclose(compiled, numpy, rtol=1e-3, atol=1e-6 * np.abs(numpy).max(),
                                   err_msg=case)
        if warm:  # ten steps: the same steps on both paths
            np.testing.assert_allclose(compiled, numpy, rtol=1e-9,
                                       atol=1e-12 * np.abs(numpy).max(), err_msg=case)


@pytest.mark.parametrize("model", ["EVE", "VVE", "VEE"])
def test_compiled_m_step_ends_on_a_singular_scatter(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scatter with zero directions (``reg_covar = 0``) makes the majorisers overflow:
    the compiled loop ends (LAPACK's SVD of a matrix with infinities did not return) and
    returns the model's shape for the M-step's check to judge, as numpy's does."""
    nk, scatter, _ = _problem(3, 3, 7)
    scatter[1] = np.outer([1.0, 2.0, 0.5], [1.0, 2.0, 0.5])  # rank one
    with np.errstate(all="ignore"):
        numpy = _constrain(model, nk, scatter, None, monkeypatch, "0")
        compiled = _constrain(model, nk, scatter, None, monkeypatch, "1")
    assert compiled.shape == numpy.shape == scatter.shape


def test_compiled_m_step_only_where_the_e_step_is_compiled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(_jit.ENVIRONMENT, "1")
    assert compiled_mstep("full", 9, 4) is not None
    assert compiled_mstep("diag", 100, 8) is not None
    assert compiled_mstep("full", 3, 12) is None  # numba would be loaded for it alone
    assert compiled_mstep("full", 100, 8) is None
    monkeypatch.setenv(_jit.ENVIRONMENT, "0")
    assert compiled_mstep("full", 9, 4) is None


@pytest.mark.parametrize("model", ITERATIVE)
def test_fits_with_and_without_the_compiled_m_step_agree(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whole fits (every M-step, warm and from scratch) reach the same optimum; the
    compiled E-step is kept on both sides so only the M-step differs."""
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 1.0, -2.0], [-3.0, 3.0, 1.0]])
    X = np.vstack([c + rng.normal(size=(120, 3)) @ rng.normal(size=(3, 3)) for c in centres])
    calls: list[str] = []

    class Counted:
        def __getattr__(self, name: str) -> object:
            calls.append(name)
            return getattr(_jit._load("_mstep_jit"), name)

    fits = {}
    for compiled in (False, True):
        kernels = Counted() if compiled else None
        monkeypatch.setattr(_jit, "mstep_kernels", lambda kernels=kernels: kernels)
        model_fit = GaussianMixture(3, covariance_type=model, random_state=0).fit(X)
        fits[compiled] = model_fit.score(X)
    assert len(calls) > 10  # every M-step of the compiled fit
    assert fits[True] == pytest.approx(fits[False], rel=1e-9)
