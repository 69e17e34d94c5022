"""The torch engine (CPU build in CI): fits equal the NumPy engine's, which the rest of the
suite checks against scikit-learn, scipy and mclust; and one fit against scikit-learn
directly at identical starting parameters."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

torch = pytest.importorskip("torch")

from gmmkit import GaussianMixture  # noqa: E402
from gmmkit.apps.semisupervised import SemiSupervisedGaussianMixture  # noqa: E402
from gmmkit.core.covariance import MODEL_NAMES  # noqa: E402
from gmmkit.core.em import EmptyComponentWarning, e_step  # noqa: E402
from gmmkit.core.params import MixtureParams  # noqa: E402
from gmmkit.engines import torch_engine  # noqa: E402
from gmmkit.engines.memory import MemoryEngine  # noqa: E402
from gmmkit.engines.torch_engine import TorchEngine  # noqa: E402

FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_")


#: Where the engine runs: the CPU build of torch in CI; on a machine with a GPU,
#: ``GMMKIT_TEST_TORCH_DEVICE=cuda pytest tests/test_engines_torch.py`` runs every
#: comparison with the NumPy engine on the device.
DEVICE = os.environ.get("GMMKIT_TEST_TORCH_DEVICE", "cpu")


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Any:
    # torch's CPU threads spin against the other processes of a 2-core CI box (a small
    # GEMM measured 30x slower on two threads); one thread is what the tests need
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _fit(X: Any, k: int, **settings: Any) -> GaussianMixture:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", EmptyComponentWarning)
        return GaussianMixture(k, random_state=0, **settings).fit(X)


def _assert_same_fit(got: GaussianMixture, expected: GaussianMixture, rtol: float) -> None:
    for name in FITTED:
        a, b = np.asarray(getattr(got, name)), np.asarray(getattr(expected, name))
        assert np.all(np.isfinite(a)), name
        scale = np.max(np.abs(b))
        assert np.max(np.abs(a - b)) <= rtol * scale, (name, np.max(np.abs(a - b)) / scale)
    assert got.n_iter_ == expected.n_iter_
    assert got.lower_bound_ == pytest.approx(expected.lower_bound_, rel=rtol, abs=rtol)


def _four_components(model: str, means: np.ndarray, cov: np.ndarray) -> MixtureParams:
    """Parameters of ``model`` with weights (0.1, 0.4, 0.3, 0.2), from four full (D, D)
    covariances reduced to the model's layout (tied: the second one)."""
    from gmmkit.core.covariance import get_covariance_type

    covariances = {
        "full": cov,
        "tied": cov[1],
        "diag": np.array([np.diag(c) for c in cov]),
        "spherical": np.array([np.mean(np.diag(c)) for c in cov]),
    }[get_covariance_type(model).layout]
    return MixtureParams.from_covariances(
        np.array([0.1, 0.4, 0.3, 0.2]), means, covariances, model
    )


def _blobs(n: int, d: int = 3, centers: int = 4, seed: int = 0) -> np.ndarray:
    X, _ = make_blobs(n_samples=n, n_features=d, centers=centers, cluster_std=1.3,
                      random_state=seed)
    return X


# --------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("covariance_type", MODEL_NAMES)
def test_every_model_equals_the_numpy_engine(covariance_type: str, monkeypatch: Any) -> None:
    # 6000 rows x 4 components is past the kernel's exact-evaluation threshold, so the
    # feature expansion and its probes run; the numpy input also streams through a
    # device budget of a quarter of it (chunk by chunk, on every pass)
    X = _blobs(6000)
    settings: dict[str, Any] = dict(
        covariance_type=covariance_type, init_params="kmeans", max_iter=25
    )
    expected = _fit(X, 4, **settings)
    resident = _fit(X, 4, device=DEVICE, **settings)
    _assert_same_fit(resident, expected, 1e-10)
    from_tensor = _fit(torch.from_numpy(X), 4, **settings)
    _assert_same_fit(from_tensor, expected, 1e-10)
    monkeypatch.setattr(torch_engine, "MEMORY_BUDGET", X.nbytes // 4)
    assert TorchEngine(X, device=DEVICE).streamed
    streamed = _fit(X, 4, device=DEVICE, **settings)
    _assert_same_fit(streamed, expected, 1e-10)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical", "EVE"])
def test_default_start_equals_the_numpy_engine(covariance_type: str) -> None:
    # the default em-EM search (hierarchical start, k-means, k-means++, SQUAREM) on small
    # data, where the kernel evaluates every component centred on its own mean
    X = _blobs(400, d=2, centers=3, seed=4)
    expected = _fit(X, 3, covariance_type=covariance_type)
    got = _fit(X, 3, covariance_type=covariance_type, device=DEVICE)
    _assert_same_fit(got, expected, 1e-10)


def test_the_torch_kernel_runs(monkeypatch: Any) -> None:
    """The fit's E-steps are the engine's own (not the NumPy kernel on host copies)."""
    calls = {"stats": 0, "nearest": 0, "host": 0}
    own_stats, own_nearest = TorchEngine.kernel_statistics, TorchEngine.nearest_statistics
    host_chunks = TorchEngine.chunks

    def stats(self: Any, *args: Any) -> Any:
        calls["stats"] += 1
        return own_stats(self, *args)

    def nearest(self: Any, *args: Any) -> Any:
        calls["nearest"] += 1
        return own_nearest(self, *args)

    def chunks(self: Any) -> Any:
        calls["host"] += 1
        return host_chunks(self)

    monkeypatch.setattr(TorchEngine, "kernel_statistics", stats)
    monkeypatch.setattr(TorchEngine, "nearest_statistics", nearest)
    monkeypatch.setattr(TorchEngine, "chunks", chunks)
    model = _fit(_blobs(3000), 4, init_params="kmeans", device=DEVICE, max_iter=10,
                 acceleration="none")
    assert calls["stats"] == model.n_iter_ >= 2
    assert calls["nearest"] == 1
    assert calls["host"] == 0


def test_statistics_equal_with_weights_labels_and_far_rows() -> None:
    """One E-step's statistics, with every branch of the kernel at once: sample weights,
    labelled rows, rows so far out that the expansion cannot evaluate them, and a
    near-singular component (centred on its own mean)."""
    rng = np.random.default_rng(1)
    X = _blobs(9000)
    X[:3] = [[1e9, 0.0, 0.0], [0.0, -3e8, 1e8], [1e12, 1e12, -1e12]]
    weight = rng.uniform(0.0, 3.0, size=len(X))
    labels = np.where(rng.uniform(size=len(X)) < 0.1, rng.integers(0, 4, len(X)), -1)
    means = np.array([[-8.0, 8.0, 5.0], [0.0, 0.0, 0.0], [5.0, -2.0, 1.0], [20.0, 0.0, 2.0]])
    cov = np.array([np.eye(3) * s for s in (1.0, 2.0, 0.5, 1.0)])
    cov[3] = np.diag([1.0, 1.0, 1e-9])  # near-singular: probes send it to its own mean
    for model in ("full", "tied", "diag", "spherical", "VEV", "EEI"):
        params = _four_components(model, means, cov)
        expected = e_step(MemoryEngine(X, weight, labels, chunk_rows=1000), params, 0.5)
        got = e_step(TorchEngine(X, weight, labels, device=DEVICE, chunk_rows=2500), params, 0.5)
        for name in ("nk", "first", "second"):
            a, b = getattr(got, name), getattr(expected, name)
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11 * np.abs(b).max(),
                                       err_msg=f"{model} {name}")
        np.testing.assert_array_equal(got.reference, expected.reference)
        assert got.log_likelihood == pytest.approx(expected.log_likelihood, rel=1e-12)
        assert got.total_weight == pytest.approx(expected.total_weight, rel=1e-13)
        assert got.worst_log_density == pytest.approx(expected.worst_log_density, rel=1e-12)
        np.testing.assert_array_equal(got.worst_point, expected.worst_point)


def test_per_row_kernels_equal_the_numpy_engine() -> None:
    """score / predict / proba / largest log responsibility of every row, with rows too
    far out for the expansion and a near-singular component, as the numpy kernel gives
    them (the torch kernel's feature-major blocks are transposed back for (n, K))."""
    from gmmkit.core.kernel import kernel_coefficients

    X = _blobs(3000)
    X[:3] = [[1e9, 0.0, 0.0], [0.0, -3e8, 1e8], [1e12, 1e12, -1e12]]
    means = np.array([[-8.0, 8.0, 5.0], [0.0, 0.0, 0.0], [5.0, -2.0, 1.0], [20.0, 0.0, 2.0]])
    cov = np.array([np.eye(3) * s for s in (1.0, 2.0, 0.5, 1.0)])
    for singular in (False, True):
        if singular:
            cov[3] = np.diag([1.0, 1.0, 1e-9])
        for model in ("full", "tied", "diag", "spherical"):
            params = _four_components(model, means, cov)
            coefs = kernel_coefficients(params, np.float64)
            expected_engine = MemoryEngine(X, chunk_rows=700)
            got_engine = TorchEngine(X, device=DEVICE, chunk_rows=1100)
            for kind in ("score", "predict", "proba", "map_log_resp"):
                expected = expected_engine.kernel_rows(coefs, kind)
                got = got_engine.kernel_rows(coefs, kind)
                assert got.shape == expected.shape, (model, kind)
                if kind == "predict":
                    np.testing.assert_array_equal(got, expected, err_msg=model)
                else:
                    np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-12,
                                               err_msg=f"{model} {kind} {singular}")


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_kmeans_assignment_statistics_on_the_device(covariance_type: str) -> None:
    """The k-means start's hard-assignment statistics equal the host computation."""
    X = _blobs(5000, seed=8)
    weight = np.random.default_rng(2).uniform(0.0, 2.0, len(X))
    centres = X[[0, 10, 20, 30]]
    reference = X.mean(axis=0)
    expected = MemoryEngine(X, weight).nearest_statistics(covariance_type, centres, reference)
    got = TorchEngine(X, weight, device=DEVICE, chunk_rows=1500).nearest_statistics(
        covariance_type, centres, reference
    )
    for name in ("nk", "first", "second", "reference"):
        a, b = getattr(got, name), getattr(expected, name)
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())
    assert got.total_weight == pytest.approx(expected.total_weight, rel=1e-13)


def test_sample_weight_equals_the_numpy_engine() -> None:
    X = _blobs(3000, seed=2)
    weight = np.random.default_rng(3).integers(0, 4, len(X)).astype(float)
    settings: dict[str, Any] = dict(random_state=0, init_params="kmeans", max_iter=40)
    expected = GaussianMixture(4, **settings).fit(X, sample_weight=weight)
    got = GaussianMixture(4, device=DEVICE, **settings).fit(X, sample_weight=weight)
    _assert_same_fit(got, expected, 1e-10)
    tensor = GaussianMixture(4, **settings).fit(
        torch.from_numpy(X), sample_weight=torch.from_numpy(weight)
    )
    _assert_same_fit(tensor, expected, 1e-10)


def test_semi_supervised_labels_equal_the_numpy_engine() -> None:
    X, y = make_blobs(n_samples=3000, n_features=2, centers=3, random_state=6)
    partial = np.where(np.random.default_rng(0).uniform(size=len(y)) < 0.05, y, -1)
    expected = SemiSupervisedGaussianMixture(alpha=2.0, tol=1e-6).fit(X, partial)
    got = SemiSupervisedGaussianMixture(alpha=2.0, tol=1e-6, device=DEVICE).fit(X, partial)
    _assert_same_fit(got, expected, 1e-10)
    np.testing.assert_array_equal(got.transduction_, expected.transduction_)


def test_matches_scikit_learn_at_identical_start() -> None:
    """An independent reference: scikit-learn's EM from the same parameters, same rule."""
    X = _blobs(5000, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = SklearnGaussianMixture(4, max_iter=1, random_state=0).fit(X)
        inits = dict(weights_init=start.weights_, means_init=start.means_,
                     precisions_init=start.precisions_)
        reference = SklearnGaussianMixture(4, tol=1e-10, max_iter=15, **inits).fit(X)
    got = _fit(torch.from_numpy(X), 4, tol=1e-10, max_iter=15, acceleration="none", **inits)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(got, name), getattr(reference, name), rtol=1e-8,
                                   atol=1e-10)
    assert got.n_iter_ == reference.n_iter_


# --------------------------------------------------------------------------- float32
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_float32_close_to_the_numpy_engine(covariance_type: str) -> None:
    X = _blobs(6000).astype(np.float32)
    settings: dict[str, Any] = dict(
        covariance_type=covariance_type, init_params="kmeans", max_iter=30
    )
    expected = _fit(X, 4, **settings)
    got = _fit(torch.from_numpy(X), 4, **settings)
    for name in FITTED:
        a, b = getattr(got, name), getattr(expected, name)
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
    proba = got.predict_proba(torch.from_numpy(X))
    assert proba.dtype == torch.float32
    np.testing.assert_allclose(proba.numpy(), expected.predict_proba(X), atol=1e-4)


def test_float32_ignores_a_global_tf32_setting() -> None:
    """TF32/bf16 products (a global torch setting) would break the float32 probes' error
    bound: the engine computes its GEMMs in full float32 and leaves the setting as found."""
    X = _blobs(6000).astype(np.float32)
    expected = _fit(X, 4, init_params="kmeans", max_iter=30)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        got = _fit(torch.from_numpy(X), 4, init_params="kmeans", max_iter=30)
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(previous)
    np.testing.assert_allclose(got.means_, expected.means_, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- hard data
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical", "VEE"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_degenerate_data_fit_without_nan(covariance_type: str, dtype: type) -> None:
    # a constant column, duplicated rows, fewer distinct points than components, a far
    # outlier: what tests/test_degenerate.py fits with the NumPy engine
    X, _ = make_blobs(n_samples=300, n_features=2, centers=3, random_state=0)
    constant = np.column_stack([X[:, 0], np.full(len(X), 7.25), X[:, 1]])
    few = np.repeat(np.random.default_rng(2).normal(scale=3.0, size=(3, 2)), 20, axis=0)
    outlier = np.vstack([X, [[1e7, -1e7]]])
    for data, k in ((constant, 3), (np.vstack([X, X]), 2), (few, 5), (outlier, 3)):
        data = data.astype(dtype)
        expected = _fit(data, k, covariance_type=covariance_type, init_params="kmeans")
        got = _fit(torch.from_numpy(data), k, covariance_type=covariance_type,
                   init_params="kmeans")
        for name in FITTED:
            assert np.all(np.isfinite(getattr(got, name))), name
        tensor = torch.from_numpy(data)
        for output in (got.score_samples(tensor), got.predict_proba(tensor)):
            assert bool(torch.isfinite(output).all())
        rtol = 1e-8 if dtype == np.float64 else 1e-3
        np.testing.assert_allclose(got.means_, expected.means_, rtol=rtol,
                                   atol=rtol * np.abs(data).max())


# --------------------------------------------------------------------------- inference
def test_predictions_are_tensors_for_tensor_input() -> None:
    X = _blobs(2000)
    model = _fit(X, 4, init_params="kmeans")
    tensor = torch.from_numpy(X)
    scores, labels, proba = (
        model.score_samples(tensor), model.predict(tensor), model.predict_proba(tensor)
    )
    for value in (scores, labels, proba):
        assert isinstance(value, torch.Tensor)
    np.testing.assert_allclose(scores.numpy(), model.score_samples(X), rtol=1e-12)
    np.testing.assert_array_equal(labels.numpy(), model.predict(X))
    np.testing.assert_allclose(proba.numpy(), model.predict_proba(X), atol=1e-13)
    assert model.score(tensor) == pytest.approx(model.score(X), rel=1e-12)
    assert model.bic(tensor) == pytest.approx(model.bic(X), rel=1e-12)
    assert model.icl(tensor) == pytest.approx(model.icl(X), rel=1e-12)
    # numpy input with a device set gives numpy arrays
    model.set_params(device=DEVICE)
    assert isinstance(model.predict_proba(X), np.ndarray)


# --------------------------------------------------------------------------- bad input
def test_bad_tensors_are_refused_with_the_row() -> None:
    X = torch.from_numpy(_blobs(100))
    X[37, 1] = float("nan")
    with pytest.raises(ValueError, match=r"NaN \(first at row 37\)"):
        GaussianMixture(2).fit(X)
    with pytest.raises(ValueError, match="Expected 2D"):
        GaussianMixture(2).fit(torch.zeros(10))
    big = torch.from_numpy(_blobs(100)).float()
    big[5, 0] = 1e30
    with pytest.raises(ValueError, match="first at row 5"):
        GaussianMixture(2).fit(big)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_device_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"cuda.*is_available\(\) is False"):
        GaussianMixture(2, device="cuda").fit(_blobs(100))


def test_device_without_torch_is_a_clear_error(monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    monkeypatch.delitem(sys.modules, "gmmkit.engines.torch_engine")
    with pytest.raises(ImportError, match=r"gmmkit\[torch\]"):
        GaussianMixture(2, device="cpu").fit(_blobs(100))


# --------------------------------------------------------------------------- benchmark
@pytest.mark.slow
def test_gpu_benchmark_quick_mode_runs(tmp_path: Any) -> None:
    """benchmarks/bench_gpu.py cannot rot: --quick runs every section on CPU torch (its
    times are reported by the script, never asserted)."""
    import re
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
    out_file = tmp_path / "table.txt"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--out", str(out_file)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = result.stdout.split("## Summary")[1]
    for method in ("gmmkit-torch (cpu)", "gmmkit-cpu", "scikit-learn", "gmmx", "pomegranate"):
        rows = [line for line in summary.splitlines()
                if re.search(rf"float(32|64)\s+{re.escape(method)}", line)]
        assert len(rows) == 4, method  # two cases x two dtypes
    for line in summary.splitlines():
        if "gmmkit-" in line:
            assert "failed" not in line and "skipped" not in line, line
    assert "% of fp32 GEMM" in summary
    assert out_file.read_text().strip().endswith(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_gpu_benchmark_torch_only_mode_runs() -> None:
    """The lead's quick device check (``--only torch --profile``) runs too: four timing
    lines (two cases x two dtypes) with the profiler's table after each."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--only", "torch", "--profile"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if "per-iter" in line]
    assert len(lines) == 4, result.stdout[-3000:]
    assert all("pass" in line and "coefficients" in line for line in lines)
    assert result.stdout.count("Self CPU time total") == 4


def test_float32_rows_under_a_float64_kernel_equal_the_numpy_engine() -> None:
    """float32 data whose coefficients fall back to float64 (here: asked for directly)
    give the numpy kernel's float64 statistics."""
    from gmmkit.core.kernel import kernel_coefficients

    X = _blobs(2000).astype(np.float32)
    params = MixtureParams.from_covariances(
        np.array([0.5, 0.5]), np.array([[0.0, 1.0, 2.0], [5.0, -2.0, 1.0]]),
        np.array([np.eye(3), 2.0 * np.eye(3)]), "full",
    )
    coefs = kernel_coefficients(params, np.float64)
    expected = MemoryEngine(X, chunk_rows=500).kernel_statistics(coefs)
    got = TorchEngine(X, device=DEVICE, chunk_rows=900).kernel_statistics(coefs)
    for name in ("nk", "first", "second"):
        np.testing.assert_allclose(getattr(got, name), getattr(expected, name), rtol=1e-11,
                                   err_msg=name)
    assert got.log_likelihood == pytest.approx(expected.log_likelihood, rel=1e-12)


def test_reused_blocks_are_per_thread() -> None:
    """The kernel's reused blocks (``_Workspace``) are per thread: two threads passing over
    one engine at once get the statistics of a lone pass each."""
    from concurrent.futures import ThreadPoolExecutor

    from gmmkit.core.kernel import kernel_coefficients

    X = _blobs(6000)
    engine = TorchEngine(X, device=DEVICE, chunk_rows=700)
    coefs = [
        kernel_coefficients(MixtureParams.from_covariances(
            np.array([0.5, 0.5]), means, np.array([np.eye(3), 2.0 * np.eye(3)]), "full",
        ), np.float64)
        for means in (np.array([[0.0, 1.0, 2.0], [5.0, -2.0, 1.0]]),
                      np.array([[-8.0, 8.0, 5.0], [1.0, 1.0, 1.0]]))
    ]
    alone = [engine.kernel_statistics(c).second for c in coefs]
    with ThreadPoolExecutor(2) as pool:
        for _ in range(3):
            together = list(pool.map(lambda c: engine.kernel_statistics(c).second, coefs))
            for a, b in zip(together, alone, strict=True):
                np.testing.assert_array_equal(a, b)
