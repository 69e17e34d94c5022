"""The streamed lower-tail cut against the in-memory one (itself checked against sorting in
test_apps_anomaly.py) on values chosen to stress it: ties, signed zeros, infinities,
heavy tails, values spanning float64's range, zero and fractional weights, and bins so
small that every refinement pass runs."""

from __future__ import annotations

import numpy as np
import pytest

from gmmkit.core.tail import lower_tail_threshold, order_keys, streamed_lower_tail_threshold
from gmmkit.engines.memory import MemoryEngine

rng = np.random.default_rng(7)

VALUES = {
    "normal": rng.normal(size=3000),
    "tight cluster and extremes": np.r_[rng.normal(size=2000) * 1e-9 - 5.0, -1e300, 1e-300,
                                        -0.0, 0.0, -np.inf, 5e-324, -5e-324],
    "ties": np.round(rng.normal(size=3000), 1),
    "one value": np.full(50, 3.0),
    "mostly one value": np.r_[np.full(800, -2.0), rng.normal(size=10)],
    "heavy tails": rng.standard_cauchy(3000) ** 3,
    "wide range": -np.exp(rng.normal(size=3000) * 30),
}


def _first_column(X: np.ndarray) -> np.ndarray:
    return X[:, 0]


def test_order_keys_sort_as_the_values() -> None:
    values = np.r_[VALUES["tight cluster and extremes"], VALUES["wide range"], np.inf]
    keys = order_keys(values)
    order = np.argsort(keys, kind="stable")
    assert np.all(np.diff(values[order]) >= 0)
    assert order_keys(np.array([-0.0]))[0] == order_keys(np.array([0.0]))[0]


@pytest.mark.parametrize("name", list(VALUES))
@pytest.mark.parametrize("weights", ["none", "integer", "fractional"])
def test_streamed_cut_equals_the_in_memory_cut(name: str, weights: str) -> None:
    values = VALUES[name]
    weight = {
        "none": None,
        "integer": rng.integers(0, 4, len(values)).astype(float),
        "fractional": rng.exponential(size=len(values)) * (rng.random(len(values)) > 0.1),
    }[weights]
    if weight is not None and not np.any(weight):
        weight[0] = 1.0
    for fraction in (0.0, 0.001, 0.05, 0.5):
        expected = lower_tail_threshold(values, fraction, weight)
        for gathered in (1, 5, 1 << 18):  # 1: split down to single keys
            engine = MemoryEngine(values[:, None].copy(), weight, None, chunk_rows=701, n_jobs=1)
            cut = streamed_lower_tail_threshold(
                engine, _first_column, fraction, max_gathered_rows=gathered
            )
            assert cut == expected or (np.isnan(cut) and np.isnan(expected)), (
                fraction, gathered)


def test_passes_stay_few() -> None:
    values = rng.normal(size=20000) * 3 - 10

    class Counting(MemoryEngine):
        passes = 0

        def map_reduce(self, func):  # type: ignore[no-untyped-def]
            Counting.passes += 1
            return super().map_reduce(func)

    engine = Counting(values[:, None].copy(), None, None, chunk_rows=1000, n_jobs=1)
    cut = streamed_lower_tail_threshold(engine, _first_column, 0.01, max_gathered_rows=1000)
    assert cut == lower_tail_threshold(values, 0.01)
    assert Counting.passes <= 3  # sign and exponent, 12 more bits, then the values


def test_nan_values_are_refused() -> None:
    engine = MemoryEngine(np.array([[1.0], [np.nan]]), None, None, chunk_rows=1, n_jobs=1)
    with pytest.raises(ValueError, match="NaN"):
        streamed_lower_tail_threshold(engine, _first_column, 0.1)
