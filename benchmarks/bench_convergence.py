"""Per-iteration cost over the whole course of fits run to convergence.

``python benchmarks/bench_convergence.py`` (part of ``make bench``; ``--quick`` for tiny
sizes).  For every workload and dtype, gmmkit fits from common starting parameters
(plain EM, its default convergence rule, every iteration timed through
``gmmkit.fit_progress``); scikit-learn is warm-started from the *same* parameters at the
start of the fit and again from gmmkit's parameters a few iterations before its end, and
runs its own loop there (``_e_step`` entries timed), so early and late iterations are
compared on equal footing without running scikit-learn for hundreds of slow iterations.

Printed per workload and dtype: iterations to convergence, gmmkit's median time per
iteration early (first 10 %) and late (last 10 %), its mean over the whole fit and its
slowest iteration; scikit-learn's median early and late; the ratios; the arithmetic
floor (``benchmarks/run.py``: flops at the measured GEMM rate plus ``N K`` exponentials
at the measured ``exp`` rate) and the share of it gmmkit reaches early and late; and how
many iterations evaluated some components centred on their own means or fell back from
float32 to float64 ("fused": every pass went to the fused compiled kernel, which does
both).  The machine is shared: compare the ratios, which come from one run;
``--repeat N`` fits N times and keeps each iteration's fastest time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run import Floor, Workload, fmt_ratio, fmt_s, initial_parameters, make_data, measure_floor


@dataclass(frozen=True)
class Case:
    workload: Workload
    data: str  # "pixels", "digits", or "mixture" (run.make_data)
    max_iter: int


def pixels(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """``n`` RGB pixels drawn (with replacement) from scikit-learn's two sample photos
    (integer colours, with flat regions that make some components tight), and a start:
    ``k`` random pixels as means, the covariance of the first 50k rows for every
    component, equal weights.  At ``n = 1M`` one component becomes tight after ~36
    iterations (its expansion error passes 1e-12) and stays so."""
    from sklearn.datasets import load_sample_image

    px = np.vstack([load_sample_image(name).reshape(-1, 3)
                    for name in ("china.jpg", "flower.jpg")])
    rng = np.random.default_rng(seed)
    X = px[rng.integers(0, len(px), n)].astype(np.float64)
    means = X[rng.choice(n, k, replace=False)]
    cov = np.cov(X[:50_000].T) + 1e-6 * np.eye(3)
    init = {"weights_init": np.full(k, 1.0 / k), "means_init": means,
            "precisions_init": np.tile(np.linalg.inv(cov), (k, 1, 1))}
    return X, init


def digits_pca() -> np.ndarray:
    """scikit-learn's 1797 digits projected on their first 17 principal axes (85 % of
    the variance, the generation tutorials' recipe)."""
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    return PCA(n_components=17, random_state=0).fit_transform(load_digits().data)


def cases(quick: bool) -> list[Case]:
    scale = 100 if quick else 1
    return [
        Case(Workload("pixels full D=3 K=20", 1_000_000 // scale, 3, 20, "full"), "pixels",
             30 if quick else 200),
        Case(Workload("digits PCA full D=17 K=100", 1797, 17, 100, "full"), "digits",
             20 if quick else 300),
        Case(Workload("full D=64 K=16", 100_000 // scale, 64, 16, "full"), "mixture",
             10 if quick else 100),
        Case(Workload("1-D exam scores K=2", 800_000 // scale, 1, 2, "full", kind="exam"),
             "mixture", 20 if quick else 300),
        Case(Workload("diag D=16 K=32", 100_000 // scale, 16, 32, "diag"), "mixture",
             20 if quick else 300),
    ]


def load(case: Case) -> tuple[np.ndarray, dict[str, Any] | None]:
    """The data, and the common start when the workload has its own."""
    if case.data == "pixels":
        return pixels(case.workload.n, case.workload.k)
    if case.data == "digits":
        return digits_pca(), None
    return make_data(case.workload), None


class KernelPaths:
    """Counts, per E-step, which evaluation the kernel chose (instrumentation only)."""

    def __init__(self) -> None:
        import gmmkit.core.em as em

        self.em = em
        self.original = em.kernel_coefficients
        self.centred = 0
        self.float64 = 0
        self.calls = 0
        self.fused = 0

    def __enter__(self) -> KernelPaths:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            coefs = self.original(*args, **kwargs)
            if kwargs.get("fused"):  # the fused kernel: every component centred, float64
                self.fused += 1
                return coefs
            self.calls += 1
            self.centred += coefs.centred_offsets is not None
            self.float64 += coefs.dtype == np.float64
            return coefs

        self.em.kernel_coefficients = wrapped
        return self

    def __exit__(self, *exc: object) -> None:
        self.em.kernel_coefficients = self.original

    def cells(self, single: bool) -> list[str]:
        """The table's "centred passes" and "float64 passes" cells: of the passes the
        numpy kernel evaluated (the fused kernel's, counted apart, are both)."""
        fused = f" +{self.fused} fused" if self.fused else ""
        if not self.calls:
            return ["fused", "fused" if single else "-"]
        return [f"{self.centred}/{self.calls}{fused}",
                f"{self.float64}/{self.calls}{fused}" if single else "-"]


def gmmkit_fit(case: Case, X: np.ndarray, init: dict[str, Any],
               max_iter: int) -> tuple[Any, list[float], float]:
    """Plain EM to gmmkit's default convergence rule; seconds of iterations 2.. (the
    first interval would include validation) and the whole fit's seconds."""
    from gmmkit import GaussianMixture
    from gmmkit.mixture import fit_progress

    stamps: list[float] = []
    model = GaussianMixture(case.workload.k, covariance_type=case.workload.covariance_type,
                            max_iter=max_iter, acceleration="none", **init)
    start = time.perf_counter()
    with fit_progress(lambda *_: stamps.append(time.perf_counter())):
        model.fit(X)
    total = time.perf_counter() - start
    return model, list(np.diff(stamps)), total


def sklearn_timed(w: Workload, X: np.ndarray, init: dict[str, Any],
                  iters: int) -> tuple[list[float], Any]:
    """Seconds of each of ``iters`` scikit-learn EM iterations warm-started from
    ``init`` (between the entries of its ``_e_step``), and the fitted model."""
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(w.k, covariance_type=w.covariance_type, max_iter=iters, tol=0.0,
                            **init)
    stamps: list[float] = []
    e_step = model._e_step

    def timed(*args: Any, **kwargs: Any) -> Any:
        stamps.append(time.perf_counter())
        return e_step(*args, **kwargs)

    model._e_step = timed  # type: ignore[method-assign]
    model.fit(X)
    return list(np.diff(stamps)), model  # iters + 1 E-steps: the last is fit's final one


def sklearn_iterations(case: Case, X: np.ndarray, init: dict[str, Any],
                       iters: int) -> list[float]:
    """Seconds of ``iters`` scikit-learn EM iterations warm-started from ``init``."""
    try:
        return sklearn_timed(case.workload, X, init, iters)[0]
    except ValueError as exc:  # e.g. its Cholesky fails on float32 pixels
        print(f"   scikit-learn failed on {case.workload.name} ({X.dtype}): "
              f"{str(exc)[:90]}...", flush=True)
        return [float("nan")]


def params_as_init(model: Any) -> dict[str, Any]:
    return {"weights_init": model.weights_, "means_init": model.means_,
            "precisions_init": model.precisions_}


def fastest(runs: list[list[float]]) -> list[float]:
    """Per position, the smallest of equally long timing lists (repeats of one run);
    the first list when their lengths differ."""
    if len({len(run) for run in runs}) != 1:
        return runs[0]
    return list(np.min(np.array(runs), axis=0))


def run_case(case: Case, dtype: Any, floor: Floor, sk_iters: int,
             max_iter: int | None, repeat: int = 1) -> list[str]:
    w = case.workload
    X, init = load(case)
    X = X.astype(dtype)
    w = Workload(w.name, len(X), X.shape[1], w.k, w.covariance_type, w.kind)
    if init is None:
        init = initial_parameters(X, w)
    with KernelPaths() as paths:
        model, times, total = gmmkit_fit(case, X, init, max_iter or case.max_iter)
    runs, totals = [times], [total]
    for _ in range(repeat - 1):  # the same deterministic fit: same iterations
        _, again, total = gmmkit_fit(case, X, init, max_iter or case.max_iter)
        runs.append(again)
        totals.append(total)
    times, total = fastest(runs), min(totals)
    n_iter = int(model.n_iter_)
    edge = max(3, len(times) // 10)
    early, late = np.median(times[:edge]), np.median(times[-edge:])
    sk_early = np.median(fastest(
        [sklearn_iterations(case, X, init, sk_iters) for _ in range(repeat)]))
    # scikit-learn from gmmkit's parameters a few iterations before the end
    back = max(1, min(n_iter - 1, sk_iters + 1))
    before_end, _, _ = gmmkit_fit(case, X, init, n_iter - back)
    sk_late = np.median(fastest(
        [sklearn_iterations(case, X, params_as_init(before_end), sk_iters)
         for _ in range(repeat)]))
    f = floor.seconds(w, dtype)
    converged = "yes" if model.converged_ else "no (cap)"
    return [w.name, np.dtype(dtype).name, f"{n_iter} {converged}", fmt_s(total),
            fmt_s(early), fmt_s(late), fmt_s(float(np.mean(times))), fmt_s(max(times)),
            fmt_s(sk_early), fmt_s(sk_late), fmt_ratio(sk_early, early),
            fmt_ratio(sk_late, late), fmt_s(f), f"{f / early:.0%}", f"{f / late:.0%}",
            *paths.cells(np.dtype(dtype) == np.float32)]


def main() -> None:
    from run import print_table

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    parser.add_argument("--only", default="", help="comma-separated words a workload "
                        "name must contain one of (e.g. pixels,digits)")
    parser.add_argument("--sklearn-iters", type=int, default=3,
                        help="scikit-learn iterations timed at the start and at the end")
    parser.add_argument("--max-iter", type=int, default=None,
                        help="cap on gmmkit's iterations (default: per workload)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="fits per workload and library; each timed iteration is "
                        "the fastest of them (load spikes on a shared machine hit "
                        "single runs)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import sklearn

    import gmmkit

    print(f"gmmkit {gmmkit.__version__}, scikit-learn {sklearn.__version__}, numpy "
          f"{np.__version__}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f} at start\n")
    floor = measure_floor(args.quick)
    print(f"floor: GEMM float64 {floor.gemm64 / 1e9:.0f} / float32 {floor.gemm32 / 1e9:.0f} "
          f"GFLOP/s, exp float64 {floor.exp64 / 1e9:.2f} / float32 "
          f"{floor.exp32 / 1e9:.2f} G/s (all cores)\n")
    rows = []
    words = [w for w in args.only.split(",") if w]
    for case in cases(args.quick):
        if words and not any(word in case.workload.name for word in words):
            continue
        for dtype in (np.float64, np.float32):
            rows.append(run_case(case, dtype, floor, args.sklearn_iters, args.max_iter,
                                 max(1, args.repeat)))
            print("  ".join(rows[-1]), flush=True)
    print()
    print("Fits to convergence from common starting parameters, every iteration timed "
          "(gmmkit: plain EM, default rule; scikit-learn: warm-started at the start and "
          "near the end)")
    print_table(["workload", "dtype", "iters", "gmmkit fit", "early/iter", "late/iter",
                 "mean/iter", "slowest", "sklearn early", "sklearn late", "ratio early",
                 "ratio late", "floor", "of floor early", "of floor late",
                 "centred passes", "float64 passes"], rows)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
