"""GPU benchmark: gmmkit's torch engine against gmmkit on the CPU, scikit-learn and the GPU
peers (gmmx, pomegranate, pycave) where they are importable.

Run from the repository root (gmmkit need not be installed)::

    PYTHONPATH=src python3 benchmarks/bench_gpu.py --out gpu-table.txt
    PYTHONPATH=src python3 benchmarks/bench_gpu.py --quick      # tiny, CPU torch
    PYTHONPATH=src python3 benchmarks/bench_gpu.py --only torch [--profile]   # seconds

``--only torch`` times gmmkit-torch alone on both cases (no peers, no end-to-end fits):
per EM iteration, one E-step pass with fixed coefficients (device work, synchronised),
and the host's coefficients (precision probes) per iteration; ``--profile`` adds the
torch.profiler table of one pass's device kernels.

Cases: N = 10^7 rows, full covariances, D = 16 / K = 32 and D = 3 / K = 20, in float32 and
float64.  Every library starts from the same parameters.  Per-iteration time is one E-step
plus M-step, timed over a few iterations after a warm-up one (gmmkit: ``run_em`` on its
engine; scikit-learn: ``_e_step`` + ``_m_step`` on a row subsample, scaled linearly to N;
peers: their fit loop for m iterations, after a first call that compiles / warms up).
End-to-end time is a fit on the host array with the library's own start and convergence
rule (scikit-learn: ``init_params="random_from_data"``, since its k-means start alone takes
minutes at this size; gmmx: from the common start, its k-means being scikit-learn's), at
most ``--max-iter`` passes; on the CPU its passes are capped further so that one
fit takes about ``--cpu-seconds`` (the table says where a run was capped).

The device's float32 GEMM rate is measured first (an n x n x n product, TF32 off), and the
D = 16 rows report which fraction of it gmmkit-torch's iteration reaches, counting the
kernel's two GEMMs: ``2 x 2 N K F`` flops with ``F = D (D + 1) / 2 + D + 1``.

Every section has a time guard (``--budget`` seconds in all, default 280): what would not
fit is reported as skipped.  Nothing is asserted; the script prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# JAX would otherwise reserve 75% of the GPU before torch runs, and keep what it used
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("XLA_PYTHON_CLIENT_ALLOCATOR", "platform")

import numpy as np

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]


@dataclass
class Row:
    case: str
    dtype: str
    method: str
    per_iter: float | None = None
    e2e: float | None = None
    e2e_iters: str = ""
    note: str = ""


@dataclass
class Bench:
    quick: bool
    budget: float
    cpu_seconds: float
    max_iter: int
    device: str
    start: float = field(default_factory=time.perf_counter)
    rows: list[Row] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)

    def say(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)


def _sync() -> None:
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text[:90]


# --------------------------------------------------------------------------- data
def make_data(n: int, d: int, k: int, device: str, seed: int = 0) -> tuple[Any, Any]:
    """Rows of a random mixture of ``k`` full-covariance Gaussians, float64, generated on
    ``device`` (in chunks) and copied to the host; and the generating means."""
    g = torch.Generator(device=device).manual_seed(seed)
    means = torch.randn((k, d), generator=g, device=device, dtype=torch.float64) * 4.0
    a = torch.randn((k, d, d), generator=g, device=device, dtype=torch.float64) / np.sqrt(d)
    chol = torch.linalg.cholesky(a @ a.mT + 0.3 * torch.eye(d, device=device, dtype=torch.float64))
    X = torch.empty((n, d), dtype=torch.float64, device=device)
    step = 1 << 20
    for s in range(0, n, step):
        m = min(step, n - s)
        labels = torch.randint(0, k, (m,), generator=g, device=device)
        z = torch.randn((m, d, 1), generator=g, device=device, dtype=torch.float64)
        X[s : s + m] = means[labels] + (chol[labels] @ z)[..., 0]
    return X, means


def start_params(X_host: np.ndarray, k: int) -> Any:
    """The common starting point: equal weights, k spread rows as means, the data's
    covariance for every component."""
    from gmmkit.core.params import MixtureParams

    rng = np.random.default_rng(1)
    rows = np.asarray(X_host[rng.choice(min(len(X_host), 100_000), size=k, replace=False)],
                      dtype=np.float64)
    sample = np.asarray(X_host[:100_000], dtype=np.float64)
    cov = np.cov(sample.T).reshape(X_host.shape[1], X_host.shape[1])
    cov = np.broadcast_to(cov, (k, *cov.shape)).copy()
    return MixtureParams.from_covariances(np.full(k, 1.0 / k), rows, cov, "full")


# --------------------------------------------------------------------------- GEMM floor
def gemm_rate(device: str, quick: bool) -> float:
    """Measured float32 GEMM rate of the device in flop/s (TF32 off)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    n = 1024 if quick else 8192
    a = torch.randn((n, n), device=device, dtype=torch.float32)
    b = torch.randn((n, n), device=device, dtype=torch.float32)
    a @ b
    _sync()
    best = float("inf")
    for _ in range(3 if quick else 5):
        t = time.perf_counter()
        a @ b
        _sync()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best


# --------------------------------------------------------------------------- methods
def gmmkit_per_iter(engine: Any, params: Any, iters: int) -> float:
    from gmmkit.core.em import run_em

    run_em(engine, params, 1e-6, tol=0.0, max_iter=1)  # warm-up: kernels, allocator, pool
    _sync()
    t = time.perf_counter()
    run_em(engine, params, 1e-6, tol=0.0, max_iter=iters)
    _sync()
    return (time.perf_counter() - t) / iters


def gmmkit_e2e(
    X: Any, k: int, max_iter: int, device: str | None, n_starts: int = 6
) -> tuple[float, str]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from gmmkit import GaussianMixture

    model = GaussianMixture(k, max_iter=max_iter, random_state=0, device=device,
                            n_starts=n_starts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t = time.perf_counter()
        model.fit(X)
        _sync()
        elapsed = time.perf_counter() - t
    return elapsed, f"{model.n_iter_}{'' if model.converged_ else '*'}"


def sklearn_per_iter(X_host: np.ndarray, params: Any, rows: int) -> float:
    """``_e_step`` + ``_m_step`` on ``rows`` rows, scaled to all of them."""
    from sklearn.mixture import GaussianMixture as Sk

    sub = X_host[:rows]
    gm = Sk(params.n_components, covariance_type="full", max_iter=1,
            weights_init=params.weights, means_init=params.means,
            precisions_init=params.precisions, init_params="random_from_data")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(sub[: min(len(sub), 20_000)])
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        _, log_resp = gm._e_step(sub)
        gm._m_step(sub, log_resp)
        best = min(best, time.perf_counter() - t)
    return best * len(X_host) / len(sub)


def sklearn_e2e(X_host: np.ndarray, k: int, max_iter: int) -> tuple[float, str]:
    import warnings

    from sklearn.mixture import GaussianMixture as Sk

    # its cheapest own start: k-means (its default) alone takes minutes on 10^7 rows
    gm = Sk(k, covariance_type="full", max_iter=max_iter, init_params="random_from_data",
            random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        gm.fit(X_host)
        elapsed = time.perf_counter() - t
    return elapsed, f"{gm.n_iter_}{'' if gm.converged_ else '*'}"


def gmmx_runs(X_host: np.ndarray, params: Any, iters: int, max_iter: int,
              dtype: str) -> tuple[float, float, str]:
    import jax

    if jax.default_backend() != "gpu":
        raise RuntimeError(f"jax has no GPU backend here ({jax.default_backend()})")
    import jax.numpy as jnp
    from gmmx import EMFitter, GaussianMixtureModelJax

    x = jax.device_put(jnp.asarray(X_host))
    gmm = GaussianMixtureModelJax.from_squeezed(
        means=jnp.asarray(params.means, dtype=x.dtype),
        covariances=jnp.asarray(params.covariances, dtype=x.dtype),
        weights=jnp.asarray(params.weights, dtype=x.dtype),
    )
    fitter = EMFitter(max_iter=iters, tol=-float("inf"))
    jax.block_until_ready(fitter.fit(x, gmm))  # compiles
    t = time.perf_counter()
    # the fit is jitted: its own block_until_ready is traced away, results come async
    timed = jax.block_until_ready(fitter.fit(x, gmm))
    per_iter = (time.perf_counter() - t) / iters
    if int(timed.n_iter) != iters:
        raise RuntimeError(f"gmmx ran {int(timed.n_iter)} iterations, not {iters}")
    full = EMFitter(max_iter=max_iter)  # gmmx's own rule (tol 1e-3 on the mean LL)
    t = time.perf_counter()
    result = jax.block_until_ready(full.fit(x, gmm))
    e2e = time.perf_counter() - t
    n = int(result.n_iter)
    return per_iter, e2e, f"{n}{'' if bool(result.converged) else '*'}"


def _pomegranate() -> Any:
    try:
        import apricot  # noqa: F401
    except ImportError:
        # pomegranate imports apricot-select (numba) at import time for initialisations
        # its mixture does not use here; a stand-in keeps the import working offline
        stub = types.ModuleType("apricot")

        class _Missing:
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                raise ImportError("apricot-select is not installed")

        stub.FacilityLocationSelection = _Missing  # type: ignore[attr-defined]
        stub.FeatureBasedSelection = _Missing  # type: ignore[attr-defined]
        sys.modules["apricot"] = stub
    from pomegranate.distributions import Normal
    from pomegranate.gmm import GeneralMixtureModel

    return Normal, GeneralMixtureModel


def pomegranate_runs(X_dev: Any, params: Any, iters: int, max_iter: int,
                     device: str) -> tuple[float, float, str]:
    Normal, GeneralMixtureModel = _pomegranate()
    dtype = X_dev.dtype

    def given() -> Any:
        dists = [
            Normal(means=torch.as_tensor(params.means[j], dtype=dtype),
                   covs=torch.as_tensor(params.covariances[j], dtype=dtype),
                   covariance_type="full")
            for j in range(params.n_components)
        ]
        return GeneralMixtureModel(
            dists, priors=torch.as_tensor(params.weights, dtype=dtype), max_iter=iters,
            tol=-float("inf"),
        ).to(device)

    given().fit(X_dev)  # warm-up
    model = given()
    _sync()
    t = time.perf_counter()
    model.fit(X_dev)
    _sync()
    per_iter = (time.perf_counter() - t) / iters
    model = GeneralMixtureModel(
        [Normal(covariance_type="full") for _ in range(params.n_components)],
        max_iter=max_iter,
    ).to(device)
    t = time.perf_counter()
    model.fit(X_dev)
    _sync()
    return per_iter, time.perf_counter() - t, f"<={max_iter}"


def pycave_runs(X_dev: Any, k: int, iters: int, max_iter: int) -> tuple[float, float, str]:
    from pycave.bayes import GaussianMixture as PyCave

    def fit(epochs: int) -> float:
        gm = PyCave(num_components=k, covariance_type="full", init_strategy="kmeans",
                    batch_size=1 << 20, trainer_params=dict(accelerator="gpu", devices=1,
                                                            max_epochs=epochs,
                                                            enable_progress_bar=False))
        t = time.perf_counter()
        gm.fit(X_dev)
        return time.perf_counter() - t

    one = fit(1)
    more = fit(1 + iters)
    e2e = fit(max_iter)
    return (more - one) / iters, e2e, f"<={max_iter}"


# --------------------------------------------------------------------------- driver
def run_case(b: Bench, n: int, d: int, k: int, rate: float | None) -> None:
    case = f"N={n:.0e} D={d} K={k}"
    b.say(f"\n## {case} full")
    X64, _ = make_data(n, d, k, b.device)
    for dtype in ("float32", "float64"):
        if b.left() < 20:
            b.rows.append(Row(case, dtype, "all", note="skipped (time budget)"))
            continue
        tdtype = torch.float32 if dtype == "float32" else torch.float64
        X_dev = X64.to(dtype=tdtype)
        run_dtype(Run(b, case, n, d, k, dtype, X_dev, X_dev.cpu().numpy(), rate))
        del X_dev


@dataclass
class Run:
    """One case in one dtype: the data on the device and on the host."""

    b: Bench
    case: str
    n: int
    d: int
    k: int
    dtype: str
    X_dev: Any
    X_host: np.ndarray
    rate: float | None

    def __post_init__(self) -> None:
        self.params = start_params(self.X_host, self.k)
        self.gpu_iters = 3 if self.b.quick else 10
        self.cpu_iters = 2 if self.b.quick else 1
        self.starts = 2 if self.b.quick else 6  # the default search, shortened in --quick

    def record(self, method: str, func: Callable[[Run], Row], need: float) -> None:
        b = self.b
        if b.left() < need:
            b.rows.append(Row(self.case, self.dtype, method, note="skipped (time budget)"))
            b.say(f"  {method:16s} skipped (time budget)")
            return
        t = time.perf_counter()
        try:
            row = func(self)
        except ImportError as exc:
            row = Row(self.case, self.dtype, method,
                      note=f"not installed ({exc.name or _short(exc)})")
        except Exception as exc:
            traceback.print_exc(limit=2, file=sys.stderr)
            row = Row(self.case, self.dtype, method, note="failed: " + _short(exc))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        b.rows.append(row)
        b.say(f"  {method:16s} per-iter {_fmt(row.per_iter)}  end-to-end {_fmt(row.e2e)} "
              f"({row.e2e_iters})  {row.note}   [{time.perf_counter() - t:.0f} s]")

    def row(self, method: str, per: float | None, e2e: float | None = None,
            iters: str = "", note: str = "") -> Row:
        return Row(self.case, self.dtype, method, per, e2e, iters, note)


def _torch_row(r: Run) -> Row:
    from gmmkit.engines.torch_engine import TorchEngine

    engine = TorchEngine(r.X_dev, device=r.b.device, n_components=r.k)  # chunks as in a fit
    per = gmmkit_per_iter(engine, r.params, r.gpu_iters)
    del engine
    note = ""
    if r.rate is not None:
        f = r.d * (r.d + 1) // 2 + r.d + 1
        achieved = 2 * 2 * r.n * r.k * f / per
        note = f"{achieved / 1e9:.0f} Gflop/s = {100 * achieved / r.rate:.1f}% of fp32 GEMM"
    e2e, iters = gmmkit_e2e(r.X_host, r.k, r.b.max_iter, r.b.device, r.starts)
    return r.row(f"gmmkit-torch ({r.b.device})", per, e2e, iters, note)


def _cpu_row(r: Run) -> Row:
    from gmmkit.engines.memory import MemoryEngine

    per = gmmkit_per_iter(MemoryEngine(r.X_host), r.params, r.cpu_iters)
    cap = _cap(r.b, per)
    e2e, iters = gmmkit_e2e(r.X_host, r.k, cap, None, r.starts)
    return r.row("gmmkit-cpu", per, e2e, iters,
                 "" if cap >= r.b.max_iter else f"capped at {cap} passes")


def _sklearn_row(r: Run) -> Row:
    rows = min(r.n, 20_000 if r.b.quick else 500_000)
    per = sklearn_per_iter(r.X_host, r.params, rows)
    cap = _cap(r.b, per)
    note = "" if rows == r.n else f"per-iter: {rows:.0e} rows x {r.n / rows:.0f}"
    if cap < 2:
        return r.row("scikit-learn", per, note=(note + "; e2e not run (cap)").lstrip("; "))
    e2e, iters = sklearn_e2e(r.X_host, r.k, cap)
    if cap < r.b.max_iter:
        note += f"; capped at {cap} iterations"
    return r.row("scikit-learn", per, e2e, iters, note.lstrip("; "))


def _out_of_memory(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return "out of memory" in text or "resource_exhausted" in text or "outofmemory" in text


def _or_tenth(r: Run, method: str, run: Callable[[Any, Any], tuple[float, float, str]],
              note: str = "") -> Row:
    """``run(X_host_or_dev, rows)`` on all rows; when that runs out of device memory, on
    a tenth of them with the per-iteration time scaled by ten (and said so)."""
    try:
        per, e2e, iters = run(r.X_host, r.X_dev)
        return r.row(method, per, e2e, iters, note)
    except Exception as exc:
        if not _out_of_memory(exc):
            raise
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    m = r.n // 10
    per, e2e, iters = run(r.X_host[:m], r.X_dev[:m])
    return r.row(method, per * 10, e2e, iters,
                 f"out of memory at N={r.n:.0e}: per-iter from N={m:.0e} x 10, e2e at "
                 f"N={m:.0e}" + (f"; {note}" if note else ""))


def _gmmx_row(r: Run) -> Row:
    if r.dtype != "float32":
        import gmmx  # noqa: F401  (reports "not installed" when absent)

        return r.row("gmmx (jax)", None, note="float32 only (gmmx checks its arrays)")
    return _or_tenth(
        r, "gmmx (jax)",
        lambda host, dev: gmmx_runs(host, r.params, r.gpu_iters, r.b.max_iter, r.dtype),
        "e2e from the common start, JIT included",
    )


def _pomegranate_row(r: Run) -> Row:
    return _or_tenth(
        r, "pomegranate",
        lambda host, dev: pomegranate_runs(dev, r.params, r.gpu_iters, r.b.max_iter,
                                           r.b.device),
    )


def _pycave_row(r: Run) -> Row:
    import pycave  # noqa: F401  (reports "not installed" when absent)

    if r.b.device == "cpu":
        return r.row("pycave", None, note="run on GPU only")
    per, e2e, iters = pycave_runs(r.X_dev, r.k, r.gpu_iters, r.b.max_iter)
    return r.row("pycave", per, e2e, iters)


def run_dtype(r: Run) -> None:
    cpu = 3 * r.b.cpu_seconds
    r.record("gmmkit-torch", _torch_row, 15)
    r.record("gmmkit-cpu", _cpu_row, cpu)
    r.record("scikit-learn", _sklearn_row, cpu)
    r.record("pomegranate", _pomegranate_row, 30)
    r.record("pycave", _pycave_row, 30)
    r.record("gmmx", _gmmx_row, 30)  # last: JAX keeps device memory of its own


def _cap(b: Bench, per_iter: float) -> int:
    """Passes a CPU end-to-end fit may take to last about ``cpu_seconds`` (its start
    costing a few passes more)."""
    return int(max(1, min(b.max_iter, b.cpu_seconds / max(per_iter, 1e-9) - 3)))


def _fmt(value: float | None) -> str:
    if value is None:
        return "      -"
    return f"{value:7.3f}s" if value >= 0.01 else f"{value * 1e3:6.2f}ms"


def table(b: Bench) -> None:
    b.say("\n## Summary (seconds; ratio = per-iteration time / gmmkit-torch's)")
    b.say(f"{'case':22s} {'dtype':8s} {'method':20s} {'per-iter':>10s} {'ratio':>7s} "
          f"{'end-to-end':>11s} {'iters':>6s}  note")
    for row in b.rows:
        base = next((r.per_iter for r in b.rows if r.case == row.case and r.dtype == row.dtype
                     and r.method.startswith("gmmkit-torch")), None)
        ratio = (f"{row.per_iter / base:6.1f}x" if base and row.per_iter else "      -")
        b.say(f"{row.case:22s} {row.dtype:8s} {row.method:20s} {_fmt(row.per_iter):>10s} "
              f"{ratio:>7s} {_fmt(row.e2e):>11s} {row.e2e_iters:>6s}  {row.note}")
    b.say("(iters: EM iterations of the end-to-end fit; * = stopped by the cap, not converged)")


def torch_micro(b: Bench, n: int, d: int, k: int, profile: bool) -> None:
    """gmmkit-torch alone: per-iteration, per-pass and host-coefficient times."""
    from gmmkit.core.kernel import kernel_coefficients
    from gmmkit.engines.torch_engine import TorchEngine

    X64, _ = make_data(n, d, k, b.device)
    for dtype in (torch.float32, torch.float64):
        X = X64.to(dtype=dtype)
        params = start_params(X[:100_000].cpu().numpy(), k)
        engine = TorchEngine(X, device=b.device, n_components=k)
        iters = 3 if b.quick else 10
        per = gmmkit_per_iter(engine, params, iters)
        t = time.perf_counter()
        for _ in range(iters):
            coefs = kernel_coefficients(params, np.dtype(str(dtype).split(".")[-1]), n)
        host = (time.perf_counter() - t) / iters
        engine.kernel_statistics(coefs)
        _sync()
        t = time.perf_counter()
        for _ in range(iters):
            engine.kernel_statistics(coefs)
        _sync()
        one_pass = (time.perf_counter() - t) / iters
        b.say(f"  gmmkit-torch {str(dtype)[6:]:8s} N={n:.0e} D={d} K={k}: per-iter "
              f"{1e3 * per:7.1f} ms  pass {1e3 * one_pass:7.1f} ms  coefficients "
              f"{1e3 * host:5.1f} ms  ({coefs.dtype} kernel, {engine.chunk_rows} rows a chunk)")
        if profile:
            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as torch_profile

            activities = [ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(ProfilerActivity.CUDA)
            with torch_profile(activities=activities) as prof:
                engine.kernel_statistics(coefs)
                _sync()
            key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
            b.say(prof.key_averages().table(sort_by=key, row_limit=14, max_name_column_width=40))
        del engine, X
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes on the CPU build of torch (a smoke run)")
    parser.add_argument("--out", help="also write the report to this file")
    parser.add_argument("--budget", type=float, default=270.0, help="seconds in all")
    parser.add_argument("--cpu-seconds", type=float, default=8.0,
                        help="about how long one CPU end-to-end fit may take")
    parser.add_argument("--max-iter", type=int, default=100,
                        help="passes of an end-to-end fit at most")
    parser.add_argument("--rows", type=int, default=10**7,
                        help="N of the two cases (default 10^7)")
    parser.add_argument("--only", choices=["torch"],
                        help="time only gmmkit-torch (per iteration, per pass, host part)")
    parser.add_argument("--profile", action="store_true",
                        help="with --only torch: the device kernels of one pass")
    args = parser.parse_args(argv)
    if torch is None:
        print("torch is not installed: nothing to benchmark (pip install 'gmmkit[torch]')")
        return 0
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda and not args.quick else "cpu"
    b = Bench(args.quick, args.budget, args.cpu_seconds if not args.quick else 1.0,
              args.max_iter if not args.quick else 20, device)
    b.say("# gmmkit GPU benchmark" + (" (--quick: tiny data, CPU torch)" if args.quick else ""))
    b.say(f"torch {torch.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    if cuda:
        b.say(f"device: {torch.cuda.get_device_name(0)}")
    elif not args.quick:
        b.say("no CUDA device (torch.cuda.is_available() is False): the GPU figures need a "
              "CUDA machine; --quick runs the script on tiny data with CPU torch")
        return 0
    else:
        b.say("no CUDA device: torch runs on the CPU")
    if device == "cpu":
        # torch's CPU threads spin against BLAS threads and other processes on small
        # machines (a small GEMM measured 30x slower on two threads)
        torch.set_num_threads(1)
    rate = None
    try:
        rate = gemm_rate(device, args.quick)
        b.say(f"{device} float32 GEMM rate (measured, TF32 off): {rate / 1e12:.2f} Tflop/s")
    except Exception as exc:  # pragma: no cover
        b.say(f"GEMM rate not measured: {_short(exc)}")
    cases = [(4_000, 16, 8), (4_000, 3, 5)] if args.quick else [
        (args.rows, 16, 32), (args.rows, 3, 20)]
    if args.only == "torch":
        for n, d, k in cases:
            torch_micro(b, n, d, k, args.profile)
    else:
        for n, d, k in cases:
            run_case(b, n, d, k, rate)
        table(b)
    b.say(f"total {time.perf_counter() - b.start:.0f} s")
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("\n".join(b.lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
