"""Side-by-side benchmark of gmmkit against scikit-learn.

Run ``make bench`` (or ``python benchmarks/run.py``; ``--quick`` for small sizes,
``--full`` to add the runs that take scikit-learn many minutes, ``--only diag,exam`` for
sections 1-3 on the workloads named so).  One process times both
libraries on the *same* arrays with the *same* initial parameters and iteration counts;
peak memory is measured in child processes (````VmHWM``, the high-water resident set size).

Sections
--------
1. machine floor: GEMM rate (both cores) and ``exp`` throughput;
2. per EM iteration, float64, identical init: time of each, ratio, log-likelihood
   difference, and the fraction of the arithmetic floor gmmkit reaches;
3. float32 against float64 (speed-up and log-likelihood agreement);
4. inference (``score_samples``, ``predict``, ``predict_proba``);
5. end-to-end default ``fit`` of each library (default k-means init, default tol);
6. peak memory of fits;
7. scaling N = 1e4 .. 1e7 (D=8, K=16): time per iteration and peak memory;
8. N = 1e7, D = 3, K = 20: peak RSS of a default fit;
9. small data: inference on 1 and 100 rows, default fits of small data sets.

Per-iteration times are ``(t(fit, m iterations) - t(fit, 0 iterations)) / m`` so that
validation and initialisation cancel; gmmkit's are the minimum over repeats.  Timings
on a shared machine are noisy: compare the ratios, which come from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

MB = 1024.0 * 1024.0


# ----------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Workload:
    name: str
    n: int
    d: int
    k: int
    covariance_type: str
    kind: str = "mixture"  # or "exam"
    sklearn_iters: int = 2  # iterations timed for scikit-learn (it is slow)
    issue_seconds: float = float("nan")  # scikit-learn s/iteration quoted in issue 3


def make_data(w: Workload, seed: int = 0, dtype: Any = np.float64) -> np.ndarray:
    """Draw ``w.n`` rows from a random mixture, in blocks (no N-sized temporaries)."""
    rng = np.random.default_rng(seed)
    if w.kind == "exam":
        # two-peaked exam scores on a 0..100 scale
        X = np.empty((w.n, 1), dtype=dtype)
        upper = rng.uniform(size=w.n) < 0.4
        X[:, 0] = np.where(upper, rng.normal(82.0, 6.0, w.n), rng.normal(58.0, 11.0, w.n))
        np.clip(X, 0.0, 100.0, out=X)
        return X
    spread = 4.0 * w.k ** (1.0 / max(w.d, 1))
    means = rng.uniform(-spread, spread, size=(w.k, w.d))
    # random orientation, axis scales 0.4..1.2: condition numbers up to 9
    rotations = np.linalg.qr(rng.normal(size=(w.k, w.d, w.d)))[0]
    factors = rotations * rng.uniform(0.4, 1.2, size=(w.k, 1, w.d))
    weights = rng.dirichlet(np.full(w.k, 5.0))
    X = np.empty((w.n, w.d), dtype=dtype)
    block = 1 << 16
    for start in range(0, w.n, block):
        stop = min(start + block, w.n)
        labels = rng.choice(w.k, size=stop - start, p=weights)
        z = rng.normal(size=(stop - start, w.d))
        rows = np.empty_like(z)
        for k in range(w.k):
            mine = labels == k
            rows[mine] = means[k] + z[mine] @ factors[k].T
        X[start:stop] = rows
    return X


def initial_parameters(X: np.ndarray, w: Workload, seed: int = 1) -> dict[str, Any]:
    """Identical starting point for both libraries: random rows as means, the data
    covariance for every component, equal weights."""
    rng = np.random.default_rng(seed)
    sample = np.asarray(X[rng.choice(len(X), size=min(len(X), 50_000), replace=False)], float)
    means = np.asarray(X[rng.choice(len(X), size=w.k, replace=False)], dtype=np.float64)
    cov = np.atleast_2d(np.cov(sample, rowvar=False)) + 1e-6 * np.eye(w.d)
    prec = np.linalg.inv(cov)
    precisions = {
        "full": np.tile(prec, (w.k, 1, 1)),
        "tied": prec,
        "diag": np.tile(1.0 / np.diag(cov), (w.k, 1)),
        "spherical": np.full(w.k, 1.0 / np.mean(np.diag(cov))),
    }[w.covariance_type]
    return {
        "weights_init": np.full(w.k, 1.0 / w.k),
        "means_init": means,
        "precisions_init": precisions,
    }


# ----------------------------------------------------------------------------- helpers
def best_of(func: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def fmt_s(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "n/a"
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.1f} ms"


def fmt_ratio(numerator: float, denominator: float) -> str:
    """``numerator / denominator`` as ``12.3x``, ``n/a`` where either is not a time."""
    if not (numerator > 0.0 and denominator > 0.0):  # nan or 0
        return "n/a"
    return f"{numerator / denominator:.1f}x"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in
              enumerate(headers)]
    print("  ".join(h.ljust(wd) for h, wd in zip(headers, widths)))
    print("  ".join("-" * wd for wd in widths))
    for row in rows:
        print("  ".join(c.ljust(wd) for c, wd in zip(row, widths)))
    print(flush=True)


def gmmkit_model(w: Workload, **kwargs: Any) -> Any:
    from gmmkit import GaussianMixture

    return GaussianMixture(n_components=w.k, covariance_type=w.covariance_type, **kwargs)


def sklearn_model(w: Workload, **kwargs: Any) -> Any:
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(n_components=w.k, covariance_type=w.covariance_type, **kwargs)


def fixed_fit(factory: Callable[..., Any], w: Workload, X: np.ndarray, init: dict[str, Any],
              iters: int) -> tuple[float, Any]:
    model = factory(w, max_iter=iters, tol=0.0, init_params="random_from_data", **init)
    start = time.perf_counter()
    model.fit(X)
    return time.perf_counter() - start, model


def per_iteration(factory: Callable[..., Any], w: Workload, X: np.ndarray,
                  init: dict[str, Any], iters: int, repeat: int) -> tuple[float, float]:
    """Seconds per EM iteration, and the lower bound after ``1 + iters`` iterations.

    ``(t(1 + iters) - t(1)) / iters``: validation, initialisation and scikit-learn's
    final E-step cancel (scikit-learn cannot fit with ``max_iter=0`` from given
    precisions).
    """
    base = min(fixed_fit(factory, w, X, init, 1)[0] for _ in range(repeat))
    runs = [fixed_fit(factory, w, X, init, 1 + iters) for _ in range(repeat)]
    elapsed = min(t for t, _ in runs)
    # at tiny sizes the difference can drown in the noise: n/a, not 0 s and a 1e8x ratio
    per_iter = (elapsed - base) / iters if elapsed > base else float("nan")
    return per_iter, float(runs[0][1].lower_bound_)


# ----------------------------------------------------------------------------- floor
@dataclass(frozen=True)
class Floor:
    gemm64: float  # flop/s, all cores
    gemm32: float
    exp64: float  # exp/s, all cores
    exp32: float
    cores: int

    def seconds(self, w: Workload, dtype: Any = np.float64) -> float:
        """Arithmetic floor of one E-step + statistics pass (issue 3's definition)."""
        n, d, k = w.n, w.d, w.k
        flops = {
            "full": 2.0 * n * k * d * d,
            "tied": 2.0 * n * d * d + 4.0 * n * k * d,
            "diag": 8.0 * n * k * d,
            "spherical": 4.0 * n * k * d,
        }[w.covariance_type]
        f32 = np.dtype(dtype) == np.float32
        return flops / (self.gemm32 if f32 else self.gemm64) + n * k / (
            self.exp32 if f32 else self.exp64
        )


def measure_floor(quick: bool) -> Floor:
    cores = os.cpu_count() or 1
    size = 1000 if quick else 2000
    rates = []
    for dtype in (np.float64, np.float32):
        a = np.random.default_rng(0).random((size, size)).astype(dtype)
        t = best_of(lambda a=a: a @ a, 3 if quick else 5)
        rates.append(2.0 * size**3 / t)
    exps = []
    x = -np.random.default_rng(1).random(1 << 18) * 30.0
    for dtype in (np.float64, np.float32):
        xd = x.astype(dtype)
        out = np.empty_like(xd)
        with threadpool_limits(1):
            t = best_of(lambda xd=xd, out=out: np.exp(xd, out=out), 20)
        exps.append(cores * len(xd) / t)
    return Floor(rates[0], rates[1], exps[0], exps[1], cores)


# ----------------------------------------------------------------------------- children
def peak_rss_mb() -> float:
    """High-water resident set size of this process, in MiB.

    ``VmHWM`` belongs to the process's own address space; ``ru_maxrss`` would also
    carry the parent's peak across ``fork``/``exec``.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_main(spec_json: str) -> None:
    """Run one fit in this (child) process and print its peak RSS as JSON."""
    spec = json.loads(spec_json)
    w = Workload(**spec["workload"])
    warnings.simplefilter("ignore")
    factory = gmmkit_model if spec["library"] == "gmmkit" else sklearn_model
    factory(w)  # import the library before measuring
    X = make_data(w, dtype=np.dtype(spec["dtype"]))
    data_mb = X.nbytes / MB
    before = peak_rss_mb()
    if spec["mode"] == "fixed":
        init = initial_parameters(X, w)
        kwargs = dict(max_iter=spec["iters"], tol=0.0, init_params="random_from_data", **init)
    else:
        kwargs = dict(random_state=0, max_iter=spec["iters"])
    model = factory(w, **kwargs)
    start = time.perf_counter()
    model.fit(X)
    elapsed = time.perf_counter() - start
    peak = peak_rss_mb()
    print(json.dumps({"data_mb": data_mb, "before_mb": before, "peak_mb": peak,
                      "seconds": elapsed, "lower_bound": float(model.lower_bound_),
                      "n_iter": int(model.n_iter_)}))


def run_child(library: str, w: Workload, mode: str, iters: int,
              dtype: str = "float64") -> dict[str, float]:
    spec = {"workload": w.__dict__, "library": library, "mode": mode, "iters": iters,
            "dtype": dtype}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--full", action="store_true",
                        help="also the runs where scikit-learn takes many minutes")
    parser.add_argument("--only", default="",
                        help="comma-separated words a workload name must contain one of "
                        "(e.g. diag,exam): sections 1-3 for those workloads only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child)
        return
    warnings.simplefilter("ignore")
    quick = args.quick
    scale = 200 if quick else 1
    repeat = 1 if quick else 3
    m_gk = 3 if quick else 10  # gmmkit iterations timed per run

    import sklearn

    import gmmkit
    from gmmkit.core.kernel import kernel_coefficients

    print(f"gmmkit {gmmkit.__version__}, scikit-learn {sklearn.__version__}, numpy "
          f"{np.__version__}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f} at start{'  [--quick]' if quick else ''}\n")

    floor = measure_floor(quick)
    print("1. Machine floor")
    print(f"   GEMM float64 {floor.gemm64 / 1e9:.0f} GFLOP/s, float32 "
          f"{floor.gemm32 / 1e9:.0f} GFLOP/s (all cores); exp float64 "
          f"{floor.exp64 / 1e9:.2f} G/s, float32 {floor.exp32 / 1e9:.2f} G/s "
          f"({floor.cores} cores x one-core rate)\n")

    workloads = [
        Workload("full D=16 K=32", 200_000 // scale, 16, 32, "full", issue_seconds=2.06),
        Workload("full D=3 K=20 (pixels)", 1_000_000 // scale, 3, 20, "full",
                 issue_seconds=7.49),
        Workload("full D=64 K=16", 100_000 // scale, 64, 16, "full", issue_seconds=17.9),
        Workload("diag D=16 K=32", 200_000 // scale, 16, 32, "diag", issue_seconds=0.275),
        Workload("1-D exam scores K=2", 800_000 // scale, 1, 2, "full", kind="exam"),
    ]
    words = [word for word in args.only.split(",") if word]
    if words:
        workloads = [w for w in workloads if any(word in w.name for word in words)]
    data = {w.name: make_data(w) for w in workloads}
    inits = {w.name: initial_parameters(data[w.name], w) for w in workloads}

    # 2. per iteration, float64
    rows = []
    per_iter: dict[str, float] = {}
    for w in workloads:
        X, init = data[w.name], inits[w.name]
        t_gk, _ = per_iteration(gmmkit_model, w, X, init, m_gk, repeat)
        t_sk, lb_sk = per_iteration(sklearn_model, w, X, init, w.sklearn_iters,
                                    1 if quick else 2)
        # lower bound after the same number of iterations as scikit-learn's run
        _, model = fixed_fit(gmmkit_model, w, X, init, 1 + w.sklearn_iters)
        per_iter[w.name] = t_gk
        rel = abs(float(model.lower_bound_) - lb_sk) / abs(lb_sk)
        issue = "" if quick or w.issue_seconds != w.issue_seconds else (
            f"{w.issue_seconds / t_gk:.0f}x")
        rows.append([w.name, f"{w.n:,}", fmt_s(t_sk), fmt_s(t_gk), fmt_ratio(t_sk, t_gk),
                     issue, f"{rel:.1e}", fmt_s(floor.seconds(w)),
                     f"{floor.seconds(w) / t_gk:.0%}"])
    print("2. Per EM iteration (E-step + statistics + M-step), float64, identical init")
    print("   ('vs issue': against the scikit-learn times quoted in issue 3)")
    print_table(["workload", "N", "sklearn", "gmmkit", "ratio", "vs issue", "rel |dLL|",
                 "floor", "of floor"], rows)

    # 3. float32 vs float64
    rows = []
    for w in workloads:
        X32 = data[w.name].astype(np.float32)
        init = inits[w.name]
        t32, _ = per_iteration(gmmkit_model, w, X32, init, m_gk, repeat)
        t64 = per_iter[w.name]
        _, m32 = fixed_fit(gmmkit_model, w, X32, init, m_gk)
        _, m64 = fixed_fit(gmmkit_model, w, data[w.name], init, m_gk)
        rel = abs(m32.lower_bound_ - m64.lower_bound_) / abs(m64.lower_bound_)
        # float32 kernels run only while the expansion is accurate (else float64)
        kernel_dtype = kernel_coefficients(m32.params_, np.float32).dtype
        rows.append([w.name, fmt_s(t64), fmt_s(t32), f"{t64 / t32:.2f}x", f"{rel:.1e}",
                     f"{floor.seconds(w, np.float32) / t32:.0%}",
                     "float32" if kernel_dtype == np.float32 else "float64 (fallback)"])
    print("3. gmmkit float32 against float64 (per iteration)")
    print_table(["workload", "float64", "float32", "speed-up", "rel |dLL|", "of floor",
                 "kernel at end"], rows)
    if words:
        print(f"(--only: sections 4-8 skipped) load average {os.getloadavg()[0]:.2f} at end")
        return

    # 4. inference
    rows = []
    for w in workloads[:2] + workloads[3:4]:
        X, init = data[w.name], inits[w.name]
        _, gk = fixed_fit(gmmkit_model, w, X, init, 1)
        _, sk = fixed_fit(sklearn_model, w, X, init, 1)
        for method in ("score_samples", "predict", "predict_proba"):
            t_g = best_of(lambda gk=gk, method=method, X=X: getattr(gk, method)(X), repeat)
            t_s = best_of(lambda sk=sk, method=method, X=X: getattr(sk, method)(X), 1)
            same = np.allclose(getattr(gk, method)(X), getattr(sk, method)(X), rtol=1e-9,
                               atol=1e-9) if method != "predict" else float(
                np.mean(gk.predict(X) == sk.predict(X)))
            rows.append([w.name, method, fmt_s(t_s), fmt_s(t_g), fmt_ratio(t_s, t_g),
                         str(same)])
    print("4. Inference (fitted parameters identical)")
    print_table(["workload", "method", "sklearn", "gmmkit", "ratio", "agree"], rows)

    # 5. end-to-end default fit
    rows = []
    for w in workloads:
        if w.d >= 64 and not (args.full or quick):
            rows.append([w.name, "skipped (--full): sklearn needs ~18 s per iteration",
                         "", "", "", "", "", "", ""])
            continue
        X = data[w.name]
        # scikit-learn's default settings on both sides, spelled out for gmmkit (whose
        # own defaults run several starts to a tight convergence rule)
        gk = gmmkit_model(w, random_state=0, init_params="kmeans", tol=1e-3, max_iter=100)
        t_g = best_of(lambda gk=gk, X=X: gk.fit(X), 1)
        sk = sklearn_model(w, random_state=0)
        t_s = best_of(lambda sk=sk, X=X: sk.fit(X), 1)
        gd = gmmkit_model(w, random_state=0)
        t_d = best_of(lambda gd=gd, X=X: gd.fit(X), 1)
        gk_ll, sk_ll, gd_ll = float(gk.score(X)), float(sk.score(X)), float(gd.score(X))
        rows.append([w.name, fmt_s(t_s), f"{sk.n_iter_}", fmt_s(t_g), f"{gk.n_iter_}",
                     fmt_ratio(t_s, t_g), f"{sk_ll:.5f} / {gk_ll:.5f}", fmt_s(t_d),
                     f"{gd_ll:.5f}"])
    print("5. End-to-end fit with scikit-learn's defaults (kmeans init, tol=1e-3, max_iter=100)"
          " on both sides, and gmmkit's own defaults, float64")
    print_table(["workload", "sklearn", "iters", "gmmkit", "iters", "ratio",
                 "mean log-lik sklearn / gmmkit", "gmmkit defaults", "its mean log-lik"],
                rows)

    # 6. peak memory of fixed-iteration fits
    rows = []
    for w in workloads[:1] if quick else workloads:
        g = run_child("gmmkit", w, "fixed", 2)
        if w.d >= 64 and not (args.full or quick):
            s_peak = "skipped (--full)"
        else:
            s_peak = f"{run_child('sklearn', w, 'fixed', 1)['peak_mb']:.0f} MB"
        rows.append([w.name, f"{g['data_mb']:.0f} MB", f"{g['before_mb']:.0f} MB", s_peak,
                     f"{g['peak_mb']:.0f} MB", f"{g['peak_mb'] - g['before_mb']:.0f} MB"])
    print("6. Peak RSS of a fit (child process; 'before' = library imported, data made)")
    print_table(["workload", "data", "before fit", "sklearn peak", "gmmkit peak",
                 "gmmkit fit extra"], rows)

    # 7. scaling
    rows = []
    sizes = [2_000, 20_000] if quick else [
        10_000, 100_000, 1_000_000, 10_000_000]
    for n in sizes:
        w = Workload("scaling", n, 8, 16, "full")
        X = make_data(w)
        init = initial_parameters(X, w)
        # enough iterations that the difference t(1 + m) - t(1) is well above the noise
        iters = 20 if n <= 100_000 else 5 if n <= 1_000_000 else 3
        t_gk, _ = per_iteration(gmmkit_model, w, X, init, iters, repeat if n < 10**7 else 1)
        if n <= 1_000_000 or args.full:
            t_sk, _ = per_iteration(sklearn_model, w, X, init, 10 if n <= 100_000 else 2,
                                    1 if quick or n > 1_000_000 else 2)
        else:
            t_sk = float("nan")
        del X
        mem = run_child("gmmkit", w, "fixed", 2)
        rows.append([f"{n:,}", fmt_s(t_sk), fmt_s(t_gk), f"{t_gk / n * 1e9:.0f} ns",
                     fmt_ratio(t_sk, t_gk),
                     f"{mem['data_mb']:.0f} MB", f"{mem['peak_mb']:.0f} MB",
                     f"{mem['peak_mb'] - mem['before_mb']:.0f} MB"])
    print("7. Scaling, full D=8 K=16: time per iteration and peak RSS (gmmkit)")
    print_table(["N", "sklearn/iter", "gmmkit/iter", "gmmkit per row", "ratio", "data",
                 "peak RSS", "fit extra"], rows)

    # 8. N = 1e7, D = 3, K = 20 default fit memory
    n_big = 20_000 if quick else 10_000_000
    w = Workload("big", n_big, 3, 20, "full")
    big = run_child("gmmkit", w, "default", 100)
    print(f"8. N={n_big:,} D=3 K=20 default gmmkit fit: {fmt_s(big['seconds'])}, "
          f"{big['n_iter']} iterations, data {big['data_mb']:.0f} MB, peak RSS "
          f"{big['peak_mb']:.0f} MB (target < 1536 MB; before the fit "
          f"{big['before_mb']:.0f} MB)\n")
    small_data(quick)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


def per_call(func: Callable[[], Any], budget: float = 0.2, loops: int = 5) -> float:
    """Seconds of one call of a fast ``func``: the best of ``loops`` loops of about
    ``budget`` seconds each."""
    func()
    start = time.perf_counter()
    func()
    calls = max(1, int(budget / max(time.perf_counter() - start, 1e-6)))
    return min(best_of(func, 1) if calls == 1 else
               best_of(lambda: [func() for _ in range(calls)], 1) / calls
               for _ in range(loops))


def small_data(quick: bool) -> None:
    """9. Small data: inference on a few rows (a one-row ``predict`` in a loop is how
    streams of events are scored) and default fits of small data sets."""
    from sklearn.datasets import load_iris

    from gmmkit.core.starts import _hc_cache

    models = [Workload("full D=3 K=5", 3000, 3, 5, "full"),
              Workload("diag D=16 K=32", 4000, 16, 32, "diag"),
              Workload("full D=17 K=100", 5000, 17, 100, "full"),
              Workload("full D=64 K=16", 3000, 64, 16, "full")]
    timing = (0.01, 1) if quick else (0.2, 5)
    rows = []
    for w in models[:1] if quick else models:
        X = make_data(w)
        init = initial_parameters(X, w)
        _, gk = fixed_fit(gmmkit_model, w, X, init, 2)
        _, sk = fixed_fit(sklearn_model, w, X, init, 2)
        for n in (1, 100):
            batch = X[:n]
            for method in ("score_samples", "predict", "predict_proba"):
                t_g = per_call(lambda m=gk, f=method, b=batch: getattr(m, f)(b), *timing)
                t_s = per_call(lambda m=sk, f=method, b=batch: getattr(m, f)(b), *timing)
                rows.append([w.name, str(n), method, f"{t_s * 1e6:.0f} us",
                             f"{t_g * 1e6:.0f} us", fmt_ratio(t_s, t_g)])
    print("9a. Inference on a few rows (same fitted parameters; per call, best of 5 loops)")
    print_table(["model", "rows", "method", "sklearn", "gmmkit", "ratio"], rows)

    rng = np.random.default_rng(0)
    blobs = rng.normal(size=(2000, 5)) + rng.integers(0, 4, (2000, 1)) * 3.0
    sets = [("iris K=3", load_iris().data, 3), ("2000 x 5 K=8", blobs, 8)]
    rows = []
    for name, X, k in sets:
        w = Workload(name, len(X), X.shape[1], k, "full")
        fits = []
        for factory in (sklearn_model, gmmkit_model):
            model = factory(w, random_state=0)
            model.fit(X)  # (compiled kernels, once per process: not timed)

            def fit(m: Any = model, X: np.ndarray = X) -> None:
                # each a first fit of these data: no agglomeration kept from the last
                _hc_cache.clear()
                m.fit(X)

            seconds = best_of(fit, 1 if quick else 3)
            fits.append((seconds, float(model.score(X)), int(model.n_iter_)))
        (t_s, ll_s, it_s), (t_g, ll_g, it_g) = fits
        rows.append([name, fmt_s(t_s), str(it_s), f"{ll_s:.5f}", fmt_s(t_g), str(it_g),
                     f"{ll_g:.5f}", fmt_ratio(t_s, t_g)])
    print("9b. Default fits of small data sets (each library's defaults, float64; every "
          "fit pays gmmkit's agglomeration, as a first fit of the data does)")
    print_table(["data", "sklearn", "iters", "mean log-lik", "gmmkit", "iters",
                 "mean log-lik", "ratio"], rows)


if __name__ == "__main__":
    main()
