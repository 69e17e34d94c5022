"""The chunk kernel keeps its block-sized arrays in per-thread workspace buffers reused
from call to call: nothing it returns may live in them.  Results of one call must
survive later calls on other rows (same thread, same block size, so the same buffer
memory) and calls in other threads, and still match SciPy's densities."""

from __future__ import annotations

import copy
import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from _helpers import random_params
from gmmkit.core.kernel import (
    chunk_statistics,
    kernel_coefficients,
    log_resp_and_density,
    predict_chunk,
    proba_chunk,
    score_chunk,
)
from gmmkit.core.params import MixtureParams

# (covariance type, D, K): full D = 20 with 3 components is evaluated by whitening each
# component; K = 1 makes the (n, K) results' transposes contiguous
CASES = [
    ("full", 3, 4),
    ("full", 20, 3),
    ("full", 2, 1),
    ("tied", 3, 4),
    ("diag", 5, 4),
    ("spherical", 2, 3),
]
N_ROWS = 700

#: the numpy kernel's paths (the fused compiled kernel has tests of its own)
pytestmark = pytest.mark.usefixtures("numpy_kernel")


def _params(cov_type: str, d: int, k: int) -> MixtureParams:
    return random_params(
        np.random.default_rng(d * 10 + k), k, d, cov_type, scale=3.0, spread=(0.3, 3.0),
        ridge=0.5, equal_weights=True,
    )


def _dense(params: MixtureParams) -> np.ndarray:
    k, d = params.n_components, params.n_features
    cov = params.covariances
    return {
        "full": lambda: cov,
        "tied": lambda: np.broadcast_to(cov, (k, d, d)),
        "diag": lambda: np.stack([np.diag(c) for c in cov]),
        "spherical": lambda: np.stack([c * np.eye(d) for c in cov]),
    }[params.covariance_type]()


def _rows(params: MixtureParams, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    which = rng.integers(0, params.n_components, N_ROWS)
    return params.means[which] + rng.normal(size=(N_ROWS, params.n_features))


def _reference(params: MixtureParams, X: np.ndarray) -> dict[str, np.ndarray]:
    """Log-densities, responsibilities and n_k from SciPy's densities."""
    covs = _dense(params)
    joint = np.column_stack([
        np.log(params.weights[j]) + multivariate_normal(params.means[j], covs[j]).logpdf(X)
        for j in range(params.n_components)
    ]).reshape(len(X), -1)
    density = logsumexp(joint, axis=1)
    resp = np.exp(joint - density[:, None])
    return {"score": density, "proba": resp, "nk": resp.sum(axis=0)}


def _outputs(coefs, X: np.ndarray) -> dict[str, np.ndarray]:
    stats = chunk_statistics(coefs, X)
    log_resp, log_density = log_resp_and_density(coefs, X)
    return {
        "nk": stats.nk,
        "first": stats.first,
        "second": stats.second,
        "worst_point": stats.worst_point,
        "score": score_chunk(coefs, X),
        "proba": proba_chunk(coefs, X),
        "predict": predict_chunk(coefs, X),
        "log_resp": np.asarray(log_resp),
        "log_density": log_density,
    }


def _assert_matches_reference(out: dict[str, np.ndarray], ref: dict[str, np.ndarray], dtype):
    rtol = 1e-9 if dtype == np.float64 else 2e-4
    atol = 1e-9 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(out["score"], ref["score"], rtol=rtol)
    np.testing.assert_allclose(out["log_density"], ref["score"], rtol=rtol)
    np.testing.assert_allclose(out["proba"], ref["proba"], atol=atol)
    np.testing.assert_allclose(np.exp(out["log_resp"].astype(np.float64)), ref["proba"], atol=atol)
    np.testing.assert_allclose(out["nk"], ref["nk"], rtol=rtol, atol=atol * N_ROWS)
    clear = np.sort(ref["proba"], axis=1)[:, -2] < 0.4 if ref["proba"].shape[1] > 1 else ...
    np.testing.assert_array_equal(out["predict"][clear], np.argmax(ref["proba"], axis=1)[clear])


@pytest.mark.parametrize(("cov_type", "d", "k"), CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_rows", [None, 10], ids=["expansion", "centred"])
def test_results_survive_later_calls_in_the_same_thread(cov_type, d, k, dtype, n_rows):
    params = _params(cov_type, d, k)
    coefs = kernel_coefficients(params, dtype, n_rows)
    X1, X2 = _rows(params, 1), _rows(params, 2)
    first = _outputs(coefs, X1.astype(dtype))
    saved = copy.deepcopy(first)
    # the same block size again: the same buffers, now holding other rows' blocks
    second = _outputs(coefs, X2.astype(dtype))
    _outputs(coefs, np.vstack([X2, X1]).astype(dtype))  # a larger block
    for name, value in first.items():
        np.testing.assert_array_equal(value, saved[name], err_msg=name)
        for other in second.values():
            assert not np.shares_memory(value, other), name
    _assert_matches_reference(first, _reference(params, X1.astype(dtype)), dtype)
    _assert_matches_reference(second, _reference(params, X2.astype(dtype)), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_results_survive_calls_in_a_thread_pool(dtype):
    """Many blocks over four threads, every case and path interleaved: each result
    still matches SciPy's values for its own rows once all have finished."""
    tasks = []
    for (cov_type, d, k), n_rows, seed in itertools.product(CASES, [None, 10], range(3)):
        params = _params(cov_type, d, k)
        tasks.append((params, kernel_coefficients(params, dtype, n_rows), _rows(params, seed)))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda t: _outputs(t[1], t[2].astype(dtype)), tasks * 2))
    for (params, _, X), out in zip(tasks * 2, results, strict=True):
        _assert_matches_reference(out, _reference(params, X.astype(dtype)), dtype)
