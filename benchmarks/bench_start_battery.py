"""A battery of large data sets for changes to the default start search (issue 12).

The mclust gate (``bench_mclust.py``) covers small data, where the em-EM search's short
runs and races use every row.  Past ``gmmkit.core.starts.SHORT_RUN_ROWS`` rows the
search runs on a sample, and a change there must be checked on large data: this script
fits ``GaussianMixture(K, covariance_type=..., random_state=0)`` with the defaults to
22 data sets of 60 000 - 150 000 rows (well separated, overlapping with unequal spreads
and weights, heavy-tailed t3 mixtures, moons, swiss roll, S curve, a uniform cube) and
every covariance type, and prints one JSON line per fit (wall time, final mean
log-likelihood, iterations).

Compare two versions of the library by running the script once per checkout and then
``--compare``, which prints total and median time ratios (best of the runs given) and
every fit whose final log-likelihood differs::

    PYTHONPATH=/path/to/old/src python benchmarks/bench_start_battery.py > old.jsonl
    PYTHONPATH=/path/to/new/src python benchmarks/bench_start_battery.py > new.jsonl
    python benchmarks/bench_start_battery.py --compare old.jsonl new.jsonl

Alternate old and new runs (and give several files, comma-separated, to each side) on a
shared machine: timings drift with its load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

COVARIANCE_TYPES = ("full", "diag", "tied", "spherical")


def mixture(n: int, d: int, k: int, seed: int, spread: float = 4.0,
            scales: tuple[float, float] = (0.4, 1.2), alpha: float = 5.0,
            dof: float | None = None) -> np.ndarray:
    """``n`` rows of a random ``k``-component mixture in ``d`` dimensions: means uniform in
    a cube of half-width ``spread * k ** (1/d)``, random orientations with axis scales in
    ``scales``, Dirichlet(``alpha``) weights; Student t rows with ``dof`` degrees of
    freedom when given."""
    rng = np.random.default_rng(seed)
    half_width = spread * k ** (1.0 / d)
    means = rng.uniform(-half_width, half_width, size=(k, d))
    rotations = np.linalg.qr(rng.normal(size=(k, d, d)))[0]
    factors = rotations * rng.uniform(*scales, size=(k, 1, d))
    weights = rng.dirichlet(np.full(k, alpha))
    labels = rng.choice(k, size=n, p=weights)
    z = rng.normal(size=(n, d))
    if dof:
        z /= np.sqrt(rng.chisquare(dof, size=(n, 1)) / dof)
    return means[labels] + np.einsum("nd,ned->ne", z, factors[labels])


def datasets(scale: float = 1.0) -> Iterator[tuple[str, np.ndarray, int]]:
    """(name, X, K) of the battery; ``scale`` multiplies every data set's rows."""
    from sklearn.datasets import make_moons, make_s_curve, make_swiss_roll

    def rows(n: int) -> int:
        return max(200, int(n * scale))

    shapes = [(60_000, 2, 5), (60_000, 5, 8), (150_000, 3, 12), (80_000, 10, 6),
              (60_000, 20, 4), (120_000, 8, 15)]
    for seed, (n, d, k) in enumerate(shapes):
        yield f"sep n={n} d={d} k={k}", mixture(rows(n), d, k, seed), k
        yield (f"overlap n={n} d={d} k={k}",
               mixture(rows(n), d, k, 100 + seed, spread=1.2, scales=(0.1, 2.0), alpha=1.0), k)
        yield f"t3 n={n} d={d} k={k}", mixture(rows(n), d, k, 200 + seed, spread=2.0, dof=3), k
    yield "moons", make_moons(rows(100_000), noise=0.08, random_state=0)[0], 8
    yield "swissroll", make_swiss_roll(rows(80_000), noise=0.3, random_state=0)[0], 10
    yield "scurve", make_s_curve(rows(80_000), noise=0.1, random_state=0)[0], 7
    yield "uniform cube d=4", np.random.default_rng(5).uniform(size=(rows(70_000), 4)), 6


def run(covariance_types: list[str], scale: float, only: str | None) -> None:
    import gmmkit
    from gmmkit.core import init, starts

    for name, X, k in datasets(scale):
        if only and not any(part in name for part in only.split(",")):
            continue
        for covariance_type in covariance_types:
            # the library caches starts per array: every fit pays for its own
            starts._hc_cache._entries.clear()
            init._kmeans_cache._entries.clear()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                began = time.perf_counter()
                model = gmmkit.GaussianMixture(k, covariance_type=covariance_type,
                                               random_state=0).fit(X)
                wall = time.perf_counter() - began
            print(json.dumps({
                "data": name, "k": k, "cov": covariance_type, "rows": len(X),
                "ll": float(model.score(X)), "t": wall, "it": int(model.n_iter_),
                "conv": bool(model.converged_), "version": gmmkit.__version__,
            }), flush=True)


def _load(paths: str) -> list[dict[tuple[str, str], dict[str, Any]]]:
    runs = []
    for path in paths.split(","):
        with open(path) as lines:
            runs.append({(r["data"], r["cov"]): r for r in map(json.loads, lines)})
    return runs


def compare(old_paths: str, new_paths: str, tolerance: float = 1e-6) -> None:
    """Total and median time ratios (old over new, best of each side's runs) and every
    fit whose final mean log-likelihood moved by more than ``tolerance``."""
    olds, news = _load(old_paths), _load(new_paths)
    keys = [key for key in olds[0] if all(key in run for run in olds + news)]
    best_old = {key: min(run[key]["t"] for run in olds) for key in keys}
    best_new = {key: min(run[key]["t"] for run in news) for key in keys}
    total_old, total_new = sum(best_old.values()), sum(best_new.values())
    print(f"{len(keys)} fits: total wall {total_old:.1f} s old, {total_new:.1f} s new "
          f"(old / new {total_old / total_new:.2f}); median per-fit old / new "
          f"{statistics.median(best_old[k] / best_new[k] for k in keys):.2f}")
    moved = 0
    for key in keys:
        change = news[0][key]["ll"] - olds[0][key]["ll"]
        if abs(change) > tolerance:
            moved += 1
            print(f"  {'higher' if change > 0 else 'LOWER '} {key[0]} {key[1]}: "
                  f"{change:+.5f} a row, {best_old[key]:.2f} s -> {best_new[key]:.2f} s")
    print(f"{moved} of {len(keys)} final log-likelihoods moved by more than {tolerance:g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cov", default=",".join(COVARIANCE_TYPES),
                        help="covariance types, comma-separated")
    parser.add_argument("--only", help="data sets whose name contains one of these")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every data set's rows (e.g. 0.01 for a smoke run)")
    parser.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"),
                        help="compare two outputs (comma-separated files for several runs)")
    args = parser.parse_args()
    if args.compare:
        compare(*args.compare)
    else:
        run(args.cov.split(","), args.scale, args.only)


if __name__ == "__main__":
    main()
