"""SQUAREM against plain EM: passes over the data and time to convergence, same starts.

Every case starts both runs from the same parameters (a fitted k-means start) and runs
them to gmmkit's default convergence rule (``tol=None``); only ``acceleration``
differs.  Printed per case: passes (E-steps, SQUAREM's extrapolated ones included),
wall time, and the final log-likelihood of each.  Data: mclust's example data sets
(``tests/fixtures/mclust``), where EM crawls on overlapping components.

Run ``python benchmarks/bench_squarem.py`` (``--quick`` for a smoke-test subset).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from gmmkit.core.em import run_em
from gmmkit.core.init import initial_parameters
from gmmkit.engines.memory import MemoryEngine

ROOT = Path(__file__).resolve().parents[1]
CASES = [
    ("faithful", "VVV", 4), ("faithful", "EEE", 3), ("faithful", "VVI", 6),
    ("faithful", "VEV", 3), ("faithful", "EVE", 4), ("iris", "VVV", 4),
    ("banknote", "EEE", 4), ("diabetes", "VVV", 4), ("wreath", "VVV", 8),
    ("chevron", "EEV", 6), ("GvHD.pos", "VVV", 6), ("GvHD.pos", "VVI", 8),
]
QUICK = CASES[:2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two cases only")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from _mclust import load_dataset

    header = (f"{'data set':9s} {'model':5s} {'K':>2s}  {'plain passes':>12s} {'s':>6s}  "
              f"{'SQUAREM passes':>14s} {'s':>6s}  {'pass ratio':>10s}  {'loglik diff':>11s}")
    print(header)
    print("-" * len(header))
    ratios = []
    for dataset, model, k in QUICK if args.quick else CASES:
        X = load_dataset(dataset)
        engine = MemoryEngine(X)
        start = initial_parameters(engine, k, model, "kmeans", np.random.default_rng(0), 1e-6)
        runs = []
        for accelerate in (False, True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                began = time.perf_counter()
                result = run_em(engine, start, 1e-6, tol=None, max_iter=100_000,
                                accelerate=accelerate)
                runs.append((result, time.perf_counter() - began))
        (plain, t_plain), (fast, t_fast) = runs
        ratio = plain.n_passes / fast.n_passes
        ratios.append(ratio)
        diff = (fast.lower_bound - plain.lower_bound) * len(X)
        print(f"{dataset:9s} {model:5s} {k:2d}  {plain.n_passes:12d} {t_plain:6.2f}  "
              f"{fast.n_passes:14d} {t_fast:6.2f}  {ratio:10.2f}  {diff:11.2e}")
    print(f"\nSUMMARY SQUAREM: median {np.median(ratios):.2f}x fewer passes "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f}) over {len(ratios)} cases")


if __name__ == "__main__":
    main()
