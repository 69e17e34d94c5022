"""gmmkit against the Gaussian-mixture libraries that install on this machine.

``python benchmarks/peers.py`` (``--install`` first pip-installs the missing peers into
the running interpreter: ``pip install -e ".[bench]"`` does the same; ``--quick`` for
tiny sizes).  Every library starts from the *same* parameters (weights, means,
covariances from ``benchmarks/run.py``'s ``initial_parameters``) and runs a fixed number
of EM iterations; seconds per iteration are ``(t(1 + m) - t(1)) / m`` (the best of two),
so set-up, compilation (JAX) and final passes cancel, and the mean log-likelihood after
the same iterations is printed next to gmmkit's so that a fast but different computation
shows.  Peers that do not install or fail on a workload are listed with the reason, not
left out.

Peers: scikit-learn; pomegranate (v1, torch); gmmx (JAX); pycave (torch, lightning) is
tried but not installed: its last release pins torch<2 and numpy<2.
pomegranate and pycave need torch (``pip install torch==2.13.0`` takes the CPU build),
gmmx needs ``jax``.  All run on the CPU in float64, except gmmx, whose models hold
float32 arrays only (its column is a float32 fit).
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run import Workload, fmt_s, initial_parameters, make_data, print_table

#: Peer name -> (module to import, pip requirement).
PEERS: dict[str, tuple[str, str]] = {
    "scikit-learn": ("sklearn", "scikit-learn"),
    "pomegranate": ("pomegranate", "pomegranate>=1.0"),
    "pycave": ("pycave", "pycave"),
    "gmmx (float32)": ("gmmx", "gmmx"),
}

#: Peers ``--install`` leaves alone, and why.
NOT_INSTALLED = {
    "pycave": "pycave 3.0.1 (the latest) requires torch<2.0, numpy<2.0 and "
              "pytorch-lightning 1.4: installing it would downgrade torch and numpy",
}

#: A runner fits ``iters`` EM iterations from the common start and returns the mean
#: log-likelihood of the data at the parameters it ends with.
Runner = Callable[[np.ndarray, dict[str, Any], Workload, int], float]


def covariances_of(init: dict[str, Any], w: Workload) -> np.ndarray:
    prec = init["precisions_init"]
    if w.covariance_type == "full":
        return np.linalg.inv(prec)
    if w.covariance_type == "diag":
        return 1.0 / prec
    raise ValueError(f"peers.py runs full and diag, not {w.covariance_type}")


def run_gmmkit(X: np.ndarray, init: dict[str, Any], w: Workload, iters: int) -> float:
    from gmmkit import GaussianMixture

    model = GaussianMixture(w.k, covariance_type=w.covariance_type, max_iter=iters, tol=0.0,
                            acceleration="none", **init).fit(X)
    return float(model.score(X))


def run_sklearn(X: np.ndarray, init: dict[str, Any], w: Workload, iters: int) -> float:
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(w.k, covariance_type=w.covariance_type, max_iter=iters, tol=0.0,
                            **init).fit(X)
    return float(model.score(X))


def run_pomegranate(X: np.ndarray, init: dict[str, Any], w: Workload, iters: int) -> float:
    import torch
    from pomegranate.distributions import Normal
    from pomegranate.gmm import GeneralMixtureModel

    covs = covariances_of(init, w)
    dists = [Normal(means=torch.tensor(m), covs=torch.tensor(c),
                    covariance_type=w.covariance_type)
             for m, c in zip(init["means_init"], covs)]
    model = GeneralMixtureModel(dists, priors=torch.tensor(init["weights_init"]),
                                max_iter=iters, tol=0.0, inertia=0.0)
    Xt = torch.tensor(X)
    model.fit(Xt)
    return float(model.log_probability(Xt).mean())


def run_pycave(X: np.ndarray, init: dict[str, Any], w: Workload, iters: int) -> float:
    import torch
    from pycave.bayes import GaussianMixture

    # pycave takes initial means only (its covariances start from the data): its
    # iterations cost the same, its log-likelihoods differ from the others'
    model = GaussianMixture(w.k, covariance_type=w.covariance_type,
                            init_means=torch.tensor(init["means_init"]),
                            convergence_tolerance=0.0, batch_size=None,
                            trainer_params={"max_epochs": iters, "accelerator": "cpu",
                                            "enable_progress_bar": False,
                                            "enable_model_summary": False,
                                            "logger": False})
    model.fit(torch.tensor(X))
    return float(-model.score(torch.tensor(X)))


def run_gmmx(X: np.ndarray, init: dict[str, Any], w: Workload, iters: int) -> float:
    import jax
    from gmmx import EMFitter, GaussianMixtureModelJax

    if w.covariance_type != "full":
        raise ValueError("gmmx fits full covariances only")
    # gmmx checks for float32 (its models hold float32 arrays only)
    gmm = GaussianMixtureModelJax.from_squeezed(
        means=init["means_init"].astype(np.float32),
        covariances=covariances_of(init, w).astype(np.float32),
        weights=init["weights_init"].astype(np.float32))
    result = EMFitter(tol=0.0, max_iter=iters).fit(x=jax.numpy.asarray(X, np.float32),
                                                   gmm=gmm)
    jax.block_until_ready(result.gmm.means)
    return float(result.gmm.score(jax.numpy.asarray(X, np.float32)))


RUNNERS: dict[str, Runner] = {
    "gmmkit": run_gmmkit,
    "scikit-learn": run_sklearn,
    "pomegranate": run_pomegranate,
    "pycave": run_pycave,
    "gmmx (float32)": run_gmmx,
}


def install_missing() -> None:
    for name, (module, requirement) in PEERS.items():
        if name in NOT_INSTALLED:
            continue
        try:
            importlib.import_module(module)
        except Exception:
            print(f"installing {name} ({requirement}) ...", flush=True)
            done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", requirement],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                print(f"   {name} did not install: {done.stderr.strip()[-300:]}")


def available() -> dict[str, str]:
    """Peer -> '' when importable, else the reason it is not."""
    status = {}
    for name, (module, _) in PEERS.items():
        try:
            importlib.import_module(module)
            status[name] = ""
        except Exception as exc:  # ImportError, or a broken install raising anything
            status[name] = f"{type(exc).__name__}: {str(exc)[:120]}"
            if name in NOT_INSTALLED:
                status[name] += f" ({NOT_INSTALLED[name]})"
    return status


def per_iteration(runner: Runner, X: np.ndarray, init: dict[str, Any], w: Workload,
                  iters: int) -> tuple[float, float]:
    def timed(m: int) -> tuple[float, float]:
        start = time.perf_counter()
        value = runner(X, init, w, m)
        return time.perf_counter() - start, value

    base = min(timed(1)[0] for _ in range(2))
    runs = [timed(1 + iters) for _ in range(2)]
    return max(min(t for t, _ in runs) - base, 1e-9) / iters, runs[0][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--install", action="store_true",
                        help="pip-install the missing peers first")
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--iters", type=int, default=5, help="timed EM iterations")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.install:
        install_missing()
    status = available()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    for name, reason in status.items():
        print(f"  {name:13s} {'available' if not reason else 'NOT AVAILABLE: ' + reason}")
    print()
    scale = 100 if args.quick else 1
    workloads = [
        Workload("full D=3 K=20", 1_000_000 // scale, 3, 20, "full"),
        Workload("full D=17 K=100 (digits-sized)", 1797, 17, 100, "full"),
        Workload("full D=64 K=16", 100_000 // scale, 64, 16, "full"),
        Workload("1-D exam scores K=2", 800_000 // scale, 1, 2, "full", kind="exam"),
        Workload("diag D=16 K=32", 100_000 // scale, 16, 32, "diag"),
    ]
    rows = []
    failures = []
    for w in workloads:
        X = make_data(w)
        init = initial_parameters(X, w)
        t_gk, ll_gk = per_iteration(run_gmmkit, X, init, w, args.iters)
        row = [w.name, f"{w.n:,}", fmt_s(t_gk)]
        for name in PEERS:
            if status[name]:
                row.append("not installed")
                continue
            try:
                t, ll = per_iteration(RUNNERS[name], X, init, w, args.iters)
                row.append(f"{fmt_s(t)} ({t / t_gk:.1f}x, dLL {ll - ll_gk:+.1e})")
            except Exception as exc:
                row.append("failed")
                failures.append(f"{name} on {w.name}: {type(exc).__name__}: "
                                f"{str(exc)[:200]}")
                if os.environ.get("PEERS_TRACEBACK"):
                    traceback.print_exc()
        rows.append(row)
        print("  ".join(row), flush=True)
    print()
    print(f"Seconds per EM iteration from common starting parameters ({args.iters} timed), "
          "each peer's time over gmmkit's and its mean log-likelihood minus gmmkit's")
    print_table(["workload", "N", "gmmkit", *PEERS], rows)
    for line in failures:
        print("failed:", line)


if __name__ == "__main__":
    main()
