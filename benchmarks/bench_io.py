"""Data files: gmmkit's reader and writer (pyarrow) against pandas, on one 2M x 3 CSV.

Prints seconds (best of ``--repeat``) and the ratio pandas / gmmkit (above 1: gmmkit is
faster) for reading the CSV into a float64 array, one streamed pass over it, and writing
predict's table (2M rows: an integer label, five probabilities, a log-density).

    .venv/bin/python benchmarks/bench_io.py [--rows 2000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def best_of(func: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import pandas as pd

    import gmmkit
    from gmmkit.data import read_table, write_table

    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.rows, 3))
    print(f"load average {os.getloadavg()[0]:.2f}; {args.rows} rows")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.csv"
        pd.DataFrame(X, columns=["a", "b", "c"]).to_csv(path, index=False)
        print(f"{path.stat().st_size / 1e6:.0f} MB CSV, 3 float columns")
        ours, _ = read_table(path)
        theirs = pd.read_csv(path).to_numpy()
        assert np.array_equal(ours, theirs), "gmmkit and pandas read different values"
        t_read = best_of(lambda: read_table(path), args.repeat)
        t_pandas = best_of(lambda: pd.read_csv(path).to_numpy(), args.repeat)
        source = gmmkit.read_csv(path)
        t_stream = best_of(lambda: sum(len(b) for b in source.blocks(1 << 16)), args.repeat)

        labels = rng.integers(0, 5, args.rows)
        proba = rng.dirichlet(np.ones(5), args.rows)
        columns = [labels, *proba.T, rng.normal(size=args.rows)]
        names = ["label", *(f"p{k}" for k in range(5)), "log_density"]
        out = Path(folder) / "out.csv"
        t_write = best_of(lambda: write_table(out, columns, names), args.repeat)
        frame = pd.DataFrame(dict(zip(names, columns)))
        t_to_csv = best_of(lambda: frame.to_csv(io.StringIO(), index=False), 1)
    print(f"{'':34s}{'gmmkit':>10s}{'pandas':>10s}{'pandas/gmmkit':>15s}")
    print(f"{'read CSV into an array':34s}{t_read:10.3f}{t_pandas:10.3f}{t_pandas / t_read:15.2f}")
    print(f"{'one streamed pass (read_csv)':34s}{t_stream:10.3f}{'':10s}"
          f"{t_pandas / t_stream:15.2f}")
    print(f"{'write 7 columns (write_table)':34s}{t_write:10.3f}{t_to_csv:10.3f}"
          f"{t_to_csv / t_write:15.2f}")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
