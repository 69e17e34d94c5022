"""Helpers shared by test modules.

Data and comparisons for the out-of-core engine tests (streaming, Dask): both compare an
out-of-core fit with the in-memory fit of the same rows started from the same
parameters, on the same three-cluster data.  :func:`set_field` edits model-file
metadata for the model-file tests.  :func:`run_cli` runs the command line in-process.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from gmmkit import GaussianMixture

RTOL = 1e-10


def three_blobs(n: int, seed: int = 0, dtype: Any = np.float64) -> np.ndarray:
    """``n`` rows of three well-separated, axis-scaled Gaussian clusters in 3-D, shape (n, 3)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [2.0, 1.0, -2.0], [-1.5, 2.5, 1.0]])
    z = rng.integers(0, 3, size=n)
    X = centres[z] + rng.normal(size=(n, 3)) * np.array([1.0, 0.5, 2.0])
    return X.astype(dtype)


def relative_error(a: Any, b: Any) -> float:
    """Largest absolute difference relative to the largest magnitude of ``a``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300))


def assert_same_fit(a: GaussianMixture, b: GaussianMixture, rtol: float = RTOL) -> None:
    """Same iterations, lower bound and fitted parameters to ``rtol``."""
    assert a.n_iter_ == b.n_iter_
    assert abs(a.lower_bound_ - b.lower_bound_) <= rtol * abs(a.lower_bound_)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert relative_error(getattr(a, name), getattr(b, name)) <= rtol, name


def initial_parameters(X: np.ndarray, covariance_type: str) -> dict[str, Any]:
    """``*_init`` arguments from a short in-memory fit (deliberately not converged)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(
            3, covariance_type=covariance_type, max_iter=1, random_state=0,
            init_params="k-means++",
        ).fit(X)
    return {
        "weights_init": gm.weights_,
        "means_init": gm.means_,
        "precisions_init": gm.precisions_,
    }


def fit_from(
    X: Any,
    covariance_type: str,
    init: dict[str, Any],
    *,
    max_iter: int,
    chunk_rows: int,
    **kw: Any,
) -> GaussianMixture:
    """A 3-component fit of ``X`` from ``init`` with tol=1e-8 (convergence warnings off)."""
    gm = GaussianMixture(
        3, covariance_type=covariance_type, tol=1e-8, max_iter=max_iter,
        chunk_rows=chunk_rows, **init, **kw,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gm.fit(X)


def assert_model_structure(model: Any, rtol: float = 1e-6) -> None:
    """The fitted covariances have the structure mclust's name of the model says:
    ``Sigma_k = lambda_k D_k A_k D_k'`` with volume ``lambda``, shape ``A`` and
    orientation ``D`` Equal across components, Variable, or the Identity."""
    from gmmkit.apps._common import full_covariances
    from gmmkit.core.covariance import get_covariance_type

    name = get_covariance_type(model.covariance_type).model
    covs = full_covariances(model.params_)
    d = covs.shape[-1]
    eigenvalues, _ = np.linalg.eigh(covs)
    volume = np.prod(eigenvalues, axis=1) ** (1.0 / d)
    shape = eigenvalues / volume[:, None]
    volume_rule, shape_rule, orientation_rule = name
    if volume_rule == "E":
        np.testing.assert_allclose(volume, volume[0], rtol=rtol, err_msg=f"{name}: volume")
    if shape_rule == "E":
        np.testing.assert_allclose(shape, shape[:1].repeat(len(shape), 0), rtol=rtol,
                                   err_msg=f"{name}: shape")
    if shape_rule == "I":
        np.testing.assert_allclose(shape, 1.0, rtol=rtol, err_msg=f"{name}: shape")
    off_diagonal = ~np.eye(d, dtype=bool)
    scale = np.abs(covs).max()
    if orientation_rule == "I":
        assert np.abs(covs[:, off_diagonal]).max() <= rtol * scale, f"{name}: orientation"
    if orientation_rule == "E":
        _, axes = np.linalg.eigh(covs[0])
        rotated = np.einsum("ji,kjl,lm->kim", axes, covs, axes)  # D' Sigma_k D
        assert np.abs(rotated[:, off_diagonal]).max() <= 1e-5 * scale, f"{name}: orientation"


def set_field(path: Sequence[str], value: Any) -> Callable[[dict, dict], None]:
    """An edit of a model file's metadata, ``edit(metadata, arrays)``, that sets the
    entry at ``path`` (keys from the top of the metadata) to ``value``."""

    def edit(meta: dict, arrays: dict) -> None:
        target = meta
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return edit


def full_covariances(params: Any) -> np.ndarray:
    """(K, D, D) covariance matrices of any layout's ``MixtureParams``, for brute-force
    references written with full matrices."""
    cov = np.asarray(params.covariances, dtype=np.float64)
    k, d = params.n_components, params.n_features
    if params.layout == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if params.layout == "diag":
        return np.array([np.diag(c) for c in cov])
    if params.layout == "spherical":
        return np.array([c * np.eye(d) for c in cov])
    return cov


def run_cli(*args: object) -> subprocess.CompletedProcess[str]:
    """``gmmkit ARGS`` in this process through ``gmmkit.cli.main``: its exit status, stdout
    and stderr, as a subprocess would give them (stderr is not a terminal either), without
    the interpreter start and imports of one (about two seconds a command)."""
    from gmmkit import cli

    argv = [str(arg) for arg in args]
    stdout, stderr = io.StringIO(), io.StringIO()
    code: Any = 0
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    return subprocess.CompletedProcess(
        ["gmmkit", *argv], 0 if code is None else code, stdout.getvalue(), stderr.getvalue()
    )


def random_params(
    rng: np.random.Generator, k: int, d: int, covariance_type: str, *, scale: float = 2.0,
    spread: tuple[float, float] = (0.2, 2.0), ridge: float = 0.3, equal_weights: bool = False,
) -> Any:
    """Random mixture parameters of ``covariance_type`` (full, tied, diag, spherical):
    means ``N(0, scale^2)``, full/tied covariances ``A A' / D + ridge I``, diagonal and
    spherical variances uniform in ``spread``; Dirichlet(2) or equal weights."""
    from gmmkit.core.params import MixtureParams

    weights = np.full(k, 1.0 / k) if equal_weights else rng.dirichlet(np.ones(k) * 2.0)
    means = rng.normal(scale=scale, size=(k, d))
    if covariance_type == "full":
        a = rng.normal(size=(k, d, d))
        cov = a @ a.transpose(0, 2, 1) / d + ridge * np.eye(d)
    elif covariance_type == "tied":
        a = rng.normal(size=(d, d))
        cov = a @ a.T / d + ridge * np.eye(d)
    elif covariance_type == "diag":
        cov = rng.uniform(*spread, size=(k, d))
    else:
        cov = rng.uniform(*spread, size=k)
    return MixtureParams.from_covariances(weights, means, cov, covariance_type)


#: Whether numpy's long double is finer than float64 here (x86's 64-bit mantissa), so
#: that :func:`long_log_density` is a reference for float64 code.
LONG_DOUBLE_FINER = bool(np.finfo(np.longdouble).eps < 1e-18)


def long_log_density(X: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``log N(x | mean, cov)`` of each row of ``X`` (n, s), shape (n,), computed in long
    double (x86's 64-bit mantissa: 2 000 times finer than float64) by a Cholesky
    factorisation written out; ``cov`` (s, s) is taken exactly as given."""
    r = np.atleast_2d(X).astype(np.longdouble) - mean.astype(np.longdouble)
    a = cov.astype(np.longdouble)
    s = a.shape[0]
    lower = np.zeros((s, s), dtype=np.longdouble)
    for i in range(s):
        for j in range(i + 1):
            value = a[i, j] - np.sum(lower[i, :j] * lower[j, :j])
            lower[i, j] = np.sqrt(value) if i == j else value / lower[j, j]
    y = np.zeros_like(r)
    for i in range(s):
        y[:, i] = (r[:, i] - y[:, :i] @ lower[i, :i]) / lower[i, i]
    half_log_2pi = np.log(np.longdouble(2) * np.pi) / 2
    log_density = (
        -0.5 * np.sum(y * y, axis=1) - np.sum(np.log(np.diag(lower))) - s * half_log_2pi)
    return log_density.astype(np.float64)


def long_log_density_upper(X: np.ndarray, mean: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """:func:`long_log_density` of the Gaussian whose precision is ``upper upper'``
    (a model's ``precisions_cholesky``, taken exactly as given): ``|U' (x - mean)|^2``
    and ``log det U`` in long double."""
    r = np.atleast_2d(X).astype(np.longdouble) - mean.astype(np.longdouble)
    u = upper.astype(np.longdouble)
    z = r @ u
    s = u.shape[0]
    half_log_2pi = np.log(np.longdouble(2) * np.pi) / 2
    log_density = (
        -0.5 * np.sum(z * z, axis=1) + np.sum(np.log(np.abs(np.diag(u)))) - s * half_log_2pi)
    return log_density.astype(np.float64)
