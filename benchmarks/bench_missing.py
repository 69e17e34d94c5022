"""Missing values inside EM: parameter recovery, imputation error, cost per iteration.

Three side-by-side tables from one run:

1. Parameter recovery on a known 3-component mixture (D = 5) with 10-40 % of cells
   missing completely at random (MCAR) and at random (MAR: columns 1..4 go missing with a
   probability that rises with the always-observed column 0).  gmmkit's EM over the
   observed values against listwise deletion (fit the complete rows only) and mean
   imputation followed by a fit.  Errors after matching components to the truth:
   mean distance in units of the true spread, relative Frobenius error of the
   covariances, absolute error of the weights; median over seeds.
2. Imputation error (RMSE on standardised columns, masked cells only) on scikit-learn's
   wine and breast-cancer tables with cells masked at random: GaussianMixtureImputer
   (K = 1; K and model chosen by the observed-data BIC; K, model and ``reg_covar``
   chosen by the error on observed cells hidden once more) against IterativeImputer and
   KNNImputer.
3. Cost of one E-step pass with 20 % of cells missing against the complete data on the
   same rows (one thread), D <= 16, K = 5 and 20, by the numpy path and, with numba
   installed, the compiled one (``--backend``: ``numpy``, ``numba`` or ``both``; by
   default the one a fit would use, see ``gmmkit._jit``); ``--types`` picks the
   covariance types (e.g. ``full,tied``).

Run: ``python benchmarks/bench_missing.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from contextlib import contextmanager

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import ortho_group

from gmmkit import GaussianMixture, GaussianMixtureImputer

K_TRUE, D_TRUE = 3, 5


def true_mixture(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = np.array([0.5, 0.3, 0.2])
    means = rng.normal(size=(K_TRUE, D_TRUE)) * 3.0
    covs = []
    for _ in range(K_TRUE):
        q = ortho_group.rvs(D_TRUE, random_state=rng)
        covs.append((q * rng.uniform(0.3, 2.0, size=D_TRUE)) @ q.T)
    return weights, means, np.array(covs)


def draw(weights, means, covs, n, rng) -> np.ndarray:
    z = rng.choice(len(weights), size=n, p=weights)
    X = np.empty((n, means.shape[1]))
    for k in range(len(weights)):
        rows = z == k
        X[rows] = rng.multivariate_normal(means[k], covs[k], size=rows.sum())
    return X


def mask(X: np.ndarray, rate: float, mechanism: str, rng) -> np.ndarray:
    """Cells to hide: MCAR everywhere, or MAR in columns 1.. driven by column 0."""
    n, d = X.shape
    if mechanism == "MCAR":
        return rng.random((n, d)) < rate
    # MAR: P(missing) = sigmoid(a * standardised x0 + b), b tuned to the overall rate
    score = (X[:, 0] - X[:, 0].mean()) / X[:, 0].std()
    lo, hi = -20.0, 20.0
    target = rate * d / (d - 1)  # column 0 is never missing
    for _ in range(60):
        b = 0.5 * (lo + hi)
        p = 1.0 / (1.0 + np.exp(-(2.0 * score + b)))
        lo, hi = (b, hi) if p.mean() < target else (lo, b)
    hidden = rng.random((n, d)) < p[:, None]
    hidden[:, 0] = False
    return hidden


def errors(fitted: GaussianMixture, weights, means, covs) -> tuple[float, float, float]:
    """Components matched to the truth by mean distance (Hungarian)."""
    cost = np.linalg.norm(fitted.means_[:, None, :] - means[None], axis=2)
    rows, cols = linear_sum_assignment(cost)
    spread = np.sqrt(np.trace(covs, axis1=1, axis2=2).mean() / means.shape[1])
    mean_err = float(np.mean(np.linalg.norm(fitted.means_[rows] - means[cols], axis=1))) / spread
    cov_err = float(np.mean([
        np.linalg.norm(fitted.covariances_[r] - covs[c]) / np.linalg.norm(covs[c])
        for r, c in zip(rows, cols)
    ]))
    weight_err = float(np.mean(np.abs(fitted.weights_[rows] - weights[cols])))
    return mean_err, cov_err, weight_err


def fit(X: np.ndarray, **kw) -> GaussianMixture:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(K_TRUE, random_state=0, **kw).fit(X)


def recovery(n: int, seeds: list[int], rates: list[float]) -> None:
    print(f"1. Parameter recovery (K={K_TRUE}, D={D_TRUE}, N={n}, median of {len(seeds)} "
          "seeds; lower is better)")
    print(f"{'mechanism':<6} {'rate':>5}  {'method':<22} {'mean err':>9} {'cov err':>8} "
          f"{'weight err':>10} {'rows used':>9}")
    for mechanism in ("MCAR", "MAR"):
        for rate in rates:
            table: dict[str, list[tuple[float, ...]]] = {}
            for seed in seeds:
                weights, means, covs = true_mixture(seed)
                rng = np.random.default_rng(seed + 100)
                X = draw(weights, means, covs, n, rng)
                hidden = mask(X, rate, mechanism, rng)
                Xm = np.where(hidden, np.nan, X)
                complete = ~hidden.any(axis=1)
                runs = {
                    "EM, marginalised": (fit(Xm, missing="marginalize"), n),
                    "listwise deletion": (
                        fit(X[complete]) if complete.sum() > 10 * K_TRUE else None,
                        int(complete.sum()),
                    ),
                    "mean imputation + fit": (
                        fit(np.where(hidden, np.nanmean(Xm, axis=0), X)), n
                    ),
                }
                for name, (model, used) in runs.items():
                    values = (*errors(model, weights, means, covs), used) if model else (
                        np.nan, np.nan, np.nan, used)
                    table.setdefault(name, []).append(values)
            for name, values in table.items():
                med = np.nanmedian(np.array(values, dtype=float), axis=0)
                print(f"{mechanism:<6} {rate:>5.0%}  {name:<22} {med[0]:>9.3f} {med[1]:>8.3f} "
                      f"{med[2]:>10.4f} {int(med[3]):>9d}")
        print()


def imputation(rates: list[float], seeds: list[int], ks: tuple[int, ...]) -> None:
    from sklearn.datasets import load_breast_cancer, load_wine
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer

    print("2. Imputation RMSE on masked cells (standardised columns; mean over seeds; "
          "lower is better)")
    header = (f"{'data':<14} {'rate':>5} {'gmm K=1':>8} {'gmm BIC':>8} {'gmm cells':>9} "
              f"{'Iterative':>10} {'KNN(5)':>8} {'sk/K=1':>7} {'sk/BIC':>7} {'sk/cells':>8}  "
              "models (BIC; cells)")
    print(header)
    for name, loader in (("wine", load_wine), ("breast_cancer", load_breast_cancer)):
        X = loader().data.astype(np.float64)
        X = (X - X.mean(axis=0)) / X.std(axis=0)
        for rate in rates:
            scores: dict[str, list[float]] = {}
            chosen: list[str] = []
            cv_chosen: list[str] = []
            for seed in seeds:
                rng = np.random.default_rng(seed)
                hidden = rng.random(X.shape) < rate
                hidden[hidden.all(axis=1), 0] = False  # keep one value per row
                Xm = np.where(hidden, np.nan, X)

                def rmse(filled: np.ndarray, X=X, hidden=hidden) -> float:
                    return float(np.sqrt(np.mean((filled[hidden] - X[hidden]) ** 2)))

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    single = GaussianMixtureImputer(1, random_state=0).fit(Xm)
                    best, best_bic, best_k = single, single.mixture_.bic(Xm), 1
                    for k in ks:
                        for cov in ("full", "VVI"):
                            try:
                                cand = GaussianMixtureImputer(
                                    k, covariance_type=cov, random_state=0, reg_covar=1e-4
                                ).fit(Xm)
                            except ValueError:
                                continue
                            bic = cand.mixture_.bic(Xm)
                            if bic < best_bic:
                                best, best_bic, best_k = cand, bic, k
                    scores.setdefault("k1", []).append(rmse(single.transform(Xm)))
                    scores.setdefault("bic", []).append(rmse(best.transform(Xm)))
                    chosen.append(f"{best_k}{best.covariance_type[:3]}")
                    picked = masked_cell_choice(Xm, seed)
                    scores.setdefault("cv", []).append(rmse(picked.transform(Xm)))
                    cv_chosen.append(
                        f"{picked.n_components}{picked.covariance_type[:3]}"
                        f"/{picked.reg_covar:g}")
                    scores.setdefault("iter", []).append(rmse(
                        IterativeImputer(max_iter=30, random_state=seed).fit_transform(Xm)))
                    scores.setdefault("knn", []).append(rmse(KNNImputer().fit_transform(Xm)))
            mean = {key: float(np.mean(v)) for key, v in scores.items()}
            sk = min(mean["iter"], mean["knn"])
            print(f"{name:<14} {rate:>5.0%} {mean['k1']:>8.4f} {mean['bic']:>8.4f} "
                  f"{mean['cv']:>9.4f} {mean['iter']:>10.4f} {mean['knn']:>8.4f} "
                  f"{sk / mean['k1']:>7.3f} {sk / mean['bic']:>7.3f} {sk / mean['cv']:>8.3f}  "
                  f"{','.join(chosen)}; {','.join(cv_chosen)}")
    print("   sk/...: the better scikit-learn imputer's RMSE over gmmkit's (> 1: gmmkit is "
          f"better).  BIC: K in 1..{max(ks)}, full or VVI, by the observed-data BIC.  cells: "
          "K, model and reg_covar from a small grid by the error on 10 % of the observed "
          "cells hidden again (no use of the masked truth)")
    print()


#: (n_components, covariance_type, reg_covar) tried by :func:`masked_cell_choice`.
IMPUTER_GRID = ((1, "full", 1e-6), (2, "full", 1e-2), (3, "EEE", 1e-6), (2, "full", 1e-1),
                (3, "full", 1e-1))


def masked_cell_choice(Xm: np.ndarray, seed: int) -> GaussianMixtureImputer:
    """The imputer of :data:`IMPUTER_GRID` with the lowest error on 10 % of the observed
    cells hidden once more, refitted on all observed cells."""
    rng = np.random.default_rng(seed + 1000)
    held = ~np.isnan(Xm) & (rng.random(Xm.shape) < 0.1)
    held[np.isnan(np.where(held, np.nan, Xm)).all(axis=1)] = False
    train = np.where(held, np.nan, Xm)
    best, best_error = None, np.inf
    for k, covariance_type, reg in IMPUTER_GRID:
        imputer = GaussianMixtureImputer(k, covariance_type=covariance_type, reg_covar=reg,
                                         random_state=0)
        try:
            filled = imputer.fit(train).transform(train)
        except ValueError:
            continue
        error = float(np.mean((filled[held] - Xm[held]) ** 2))
        if error < best_error:
            best, best_error = imputer, error
    assert best is not None
    return best.fit(Xm)


@contextmanager
def backend_set(backend: str):
    """The missing-value E-step on ``backend`` (``numpy`` or ``numba``) meanwhile."""
    from gmmkit import _jit

    before = os.environ.get(_jit.ENVIRONMENT)
    os.environ[_jit.ENVIRONMENT] = "1" if backend == "numba" else "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ[_jit.ENVIRONMENT]
        else:
            os.environ[_jit.ENVIRONMENT] = before


def backends_of(choice: str) -> list[str]:
    """The paths ``--backend`` asks for, those that can run."""
    from gmmkit import _jit

    if choice == "auto":
        return [_jit.backend()]
    wanted = ["numpy", "numba"] if choice == "both" else [choice]
    if "numba" in wanted and _jit._load() is None:
        print("   (numba is not installed: the numpy path only)")
        wanted.remove("numba")
    return wanted or ["numpy"]


def cost(
    n: int, dims: list[int], components: list[int], repeats: int, backend: str = "auto",
    types: tuple[str, ...] = ("full", "tied", "diag", "spherical"),
) -> None:
    """Seconds of one E-step pass (``em.e_step``: statistics and log-likelihood) over
    the same rows, complete and with 20 % of cells missing at random (by each of the
    ``backend`` paths: numpy, the compiled numba kernels, or both).

    Timed as the calling thread's CPU time (BLAS limited to one thread, the engines run
    in the calling thread): on a shared machine wall time also counts the other
    processes.  The two engines alternate ``repeats`` times and each keeps its fastest
    pass, so a busy moment does not land on one side only.  Each engine is chunked as a
    fit chunks it: the complete kernel's cache-sized chunks, and for the data with
    missing values the larger ones of ``GaussianMixture._incomplete_chunks``
    (:func:`gmmkit.core.missing.incomplete_chunk_rows`).
    """
    from threadpoolctl import threadpool_limits

    from gmmkit.core.covariance import get_covariance_type
    from gmmkit.core.em import e_step
    from gmmkit.core.missing import incomplete_chunk_rows
    from gmmkit.core.params import MixtureParams
    from gmmkit.engines.base import FilledEngine
    from gmmkit.engines.memory import MemoryEngine, default_chunk_rows

    paths = backends_of(backend)
    print(f"3. One E-step pass, 20 % of cells missing vs complete (N={n}, one thread, "
          f"CPU ms, fastest of {repeats} alternating passes; target <= 3x; missing-value "
          f"path: {' and '.join(paths)}; numba runs full and tied only)")
    print(f"{'covariance':<10} {'K':>3} {'D':>3} {'complete ms':>12} " + "".join(
        f"{path + ' ms':>11} {'ratio':>6} " for path in paths)
        + f"{'rows incomplete':>16} {'chunk rows':>13}")
    ratios: dict[tuple[str, int, str, int], float] = {}
    with threadpool_limits(1):
        for k in components:
            for covariance_type in types:
                layout = get_covariance_type(covariance_type).layout
                for d in dims:
                    rng = np.random.default_rng(d)
                    X = rng.normal(size=(n, d))
                    a = rng.normal(size=(k, d, d)) * 0.3 + np.eye(d)
                    full = a @ a.transpose(0, 2, 1)
                    covs = {
                        "full": full, "tied": full[0],
                        "diag": np.einsum("kii->ki", full),
                        "spherical": np.einsum("kii->k", full) / d,
                    }[layout]
                    params = MixtureParams.from_covariances(
                        np.full(k, 1 / k), rng.normal(size=(k, d)), covs, covariance_type)
                    hidden = rng.random(X.shape) < 0.2
                    rows = default_chunk_rows(d, k, 8, covariance_type)
                    incomplete_rows = max(rows, incomplete_chunk_rows(d, k, covariance_type))
                    engines = (
                        MemoryEngine(X, chunk_rows=rows, n_jobs=1),
                        FilledEngine(
                            MemoryEngine(np.where(hidden, np.nan, X),
                                         chunk_rows=incomplete_rows, n_jobs=1),
                            np.zeros(d)),
                    )
                    # the complete engine, then the incomplete one on each path
                    sides = [(engines[0], "numpy")] + [(engines[1], p) for p in paths]
                    best = [np.inf] * len(sides)
                    for engine, path in sides:  # untimed: caches, compiled code loaded
                        with backend_set(path):
                            e_step(engine, params)
                    for _ in range(repeats):
                        for side, (engine, path) in enumerate(sides):
                            with backend_set(path):
                                began = time.thread_time()
                                e_step(engine, params)
                                best[side] = min(best[side], time.thread_time() - began)
                    line = f"{covariance_type:<10} {k:>3} {d:>3} {best[0] * 1e3:>12.1f} "
                    for side, path in enumerate(paths, start=1):
                        ratios[path, k, covariance_type, d] = best[side] / best[0]
                        line += f"{best[side] * 1e3:>11.1f} {best[side] / best[0]:>6.2f} "
                    print(line + f"{hidden.any(axis=1).mean():>16.0%} "
                          f"{f'{rows}/{incomplete_rows}':>13}", flush=True)
    print()
    for path in paths:
        print(f"   ratio missing / complete, {path} path")
        for k in components:
            print(f"   K={k:<3} " + "".join(f"{'D=' + str(d):>8}" for d in dims))
            for covariance_type in types:
                print(f"   {covariance_type:<9} " + "".join(
                    f"{ratios[path, k, covariance_type, d]:>7.1f}x" for d in dims))
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--sections", default="123", help="which tables (e.g. 23)")
    parser.add_argument(
        "--backend", choices=("auto", "numpy", "numba", "both"), default="auto",
        help="the missing-value E-step path(s) of table 3 (auto: the one a fit uses)",
    )
    parser.add_argument(
        "--types", default="full,tied,diag,spherical",
        help="covariance types of table 3, comma-separated",
    )
    args = parser.parse_args()
    types = tuple(args.types.split(","))
    if args.quick:
        runs = {"1": lambda: recovery(600, [0], [0.2]),
                "2": lambda: imputation([0.2], [0], (2,)),
                "3": lambda: cost(5000, [4], [5], 1, args.backend, types)}
    else:
        runs = {"1": lambda: recovery(2000, [0, 1, 2], [0.1, 0.2, 0.4]),
                "2": lambda: imputation([0.1, 0.3], [0, 1], (2,)),
                "3": lambda: cost(30_000, [4, 8, 16], [5, 20], 7, args.backend, types)}
    for section in args.sections:
        runs[section]()


if __name__ == "__main__":
    main()
