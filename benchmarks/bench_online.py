"""Stepwise EM (``partial_fit``, one pass) against exact batch EM, from the same start.

Issue 14's acceptance run: 10^7 rows streamed in batches of 10^4 from a Gaussian mixture
(8-32 components, 2-16 dimensions).  The stream is generated block by block from a seed
per block, so memory stays flat and every pass of exact EM sees the same rows.  Both
fits start from the same parameters (k-means on the first batch); exact EM runs to
gmmkit's default convergence rule on the streamed rows (a callable source, SQUAREM on).

Printed per case: mean log-likelihood per row of both models over all the streamed rows
(one scoring pass each) and their relative gap (target: online within 0.5 %), wall time
of both fits, and the time of one ``partial_fit`` call against the chunk kernel's time on
that batch (one E-step pass of :func:`gmmkit.core.em.e_step`, ``kernel_coefficients``
included): median over batches, and their difference (the per-batch constant).

Run ``python benchmarks/bench_online.py`` (``--quick`` shrinks the stream to a smoke test;
``--rows`` / ``--batch`` override the sizes).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Iterator

import numpy as np

from gmmkit import GaussianMixture
from gmmkit.core.em import e_step
from gmmkit.core.init import initial_parameters
from gmmkit.engines.memory import MemoryEngine, default_chunk_rows

#: (components, features, covariance type)
CASES = [(8, 2, "full"), (16, 8, "full"), (32, 16, "diag"), (32, 16, "full")]
QUICK_CASES = [(8, 2, "full"), (16, 8, "diag")]


class MixtureStream:
    """Rows of a fixed random Gaussian mixture, generated block by block (block ``i`` from
    seed ``(seed, i)``): the same rows on every pass, never more than a block in memory."""

    def __init__(self, k: int, d: int, n_rows: int, batch: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.n_rows, self.batch, self.seed = n_rows, batch, seed
        self.weights = rng.dirichlet(np.full(k, 5.0))
        # centres spread so that neighbouring components overlap a little
        self.means = rng.normal(scale=2.5 * k ** (1.0 / d), size=(k, d))
        factors = rng.normal(scale=0.5, size=(k, d, d)) + np.eye(d)
        self.factors = factors  # covariance = factor @ factor.T

    def block(self, i: int) -> np.ndarray:
        n = min(self.batch, self.n_rows - i * self.batch)
        rng = np.random.default_rng((self.seed, i))
        z = rng.choice(len(self.weights), size=n, p=self.weights)
        noise = rng.standard_normal((n, self.means.shape[1]))
        return self.means[z] + np.einsum("nij,nj->ni", self.factors[z], noise)

    @property
    def n_blocks(self) -> int:
        return -(-self.n_rows // self.batch)

    def __call__(self) -> Iterator[np.ndarray]:
        return (self.block(i) for i in range(self.n_blocks))


def mean_log_likelihood(model: GaussianMixture, stream: MixtureStream) -> float:
    total = 0.0
    for i in range(stream.n_blocks):
        total += float(np.sum(model.score_samples(stream.block(i))))
    return total / stream.n_rows


def run_case(k: int, d: int, cov: str, n_rows: int, batch: int, kernel_every: int) -> None:
    stream = MixtureStream(k, d, n_rows, batch)
    first = stream.block(0)
    start = initial_parameters(
        MemoryEngine(first), k, cov, "kmeans", np.random.default_rng(0), 1e-6
    )
    init = {
        "weights_init": start.weights,
        "means_init": start.means,
        "precisions_init": start.precisions,
    }
    chunk_rows = default_chunk_rows(d, k, 8, cov)

    online = GaussianMixture(k, covariance_type=cov, **init)
    t_calls, t_kernel = [], []
    began = time.perf_counter()
    for i in range(stream.n_blocks):
        X = stream.block(i)  # generation is not timed
        if i % kernel_every == 0 and i > 0:
            t0 = time.perf_counter()
            e_step(MemoryEngine(X, chunk_rows=chunk_rows), online.params_)
            t_kernel.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        online.partial_fit(X)
        t_calls.append(time.perf_counter() - t0)
    t_online = float(np.sum(t_calls))
    t_online_wall = time.perf_counter() - began

    exact = GaussianMixture(k, covariance_type=cov, max_iter=MAX_ITER, **init)
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exact.fit(stream)
    t_exact = time.perf_counter() - began

    ll_online = mean_log_likelihood(online, stream)
    ll_exact = mean_log_likelihood(exact, stream)
    gap = (ll_exact - ll_online) / abs(ll_exact)
    call = float(np.median(t_calls[1:]))
    kernel = float(np.median(t_kernel)) if t_kernel else float("nan")
    # on a shared machine the minimum is the cost, the median includes others' load
    call_min = float(np.min(t_calls[1:]))
    kernel_min = float(np.min(t_kernel)) if t_kernel else float("nan")
    print(
        f"{k:>3d} {d:>3d} {cov:>5s} {n_rows:>9.0e} {batch:>6d} | "
        f"{ll_exact:>11.5f} {ll_online:>11.5f} {100 * gap:>8.4f}% | "
        f"{t_exact:>8.1f} {exact.n_iter_:>5d}{'' if exact.converged_ else '*'} "
        f"{t_online:>8.1f} ({t_online_wall:>7.1f}) | "
        f"{1e3 * call:>7.2f} {1e3 * kernel:>7.2f} {1e3 * (call - kernel):>6.2f} | "
        f"{1e3 * call_min:>7.2f} {1e3 * kernel_min:>7.2f} {1e3 * (call_min - kernel_min):>6.2f}",
        flush=True,
    )


MAX_ITER = 1000


def main() -> None:
    global MAX_ITER
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny stream, two cases")
    parser.add_argument("--rows", type=int, default=None, help="rows per stream (1e7)")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per batch (1e4)")
    parser.add_argument("--case", type=int, action="append", help="case index (repeatable)")
    parser.add_argument("--max-iter", type=int, default=1000, help="exact EM pass limit")
    args = parser.parse_args()
    MAX_ITER = args.max_iter
    rows = args.rows or (20_000 if args.quick else 10_000_000)
    batch = 1_000 if args.quick else args.batch
    cases = QUICK_CASES if args.quick else [CASES[i] for i in (args.case or range(len(CASES)))]
    print(f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")
    print(
        "  K   D   cov      rows  batch |  exact LL/row online LL/row      gap | "
        " exact s iters online s (wall)  | median: call kernel  diff | "
        "min: call  kernel  diff (ms per batch)"
    )
    print("-" * 150)
    for k, d, cov in cases:
        run_case(k, d, cov, rows, batch, kernel_every=10)
    print("gap: (exact - online) / |exact| of the mean log-likelihood per row over the "
          "streamed rows; * exact EM stopped at --max-iter; online s: sum of partial_fit "
          "calls (wall: with generating the stream); call: one partial_fit, kernel: "
          "e_step on the same batch (every 10th), median and minimum over batches")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
