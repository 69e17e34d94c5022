"""The compiled agglomeration (``gmmkit.core._hc_jit``) against the numpy path.

Both reproduce R mclust's merges (``test_hc.py`` checks each against mclust's trees).
The compiled loop does the numpy path's arithmetic operation for operation except for
VVV's determinants and the logarithms (LAPACK's and numpy's there, written out here),
so the merges must be the same -- exact ties included: duplicated rows and data on a
grid have equal operands on both paths -- and their costs equal to rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from gmmkit import _jit
from gmmkit.core import hc as hc_module
from gmmkit.core.hc import _VVV, _VarV, _Ward, hc_partitions, hc_transform

kernels = _jit._load("_hc_jit")
if kernels is None:  # numba absent, or not importable with this numpy
    pytest.skip("numba is not importable", allow_module_level=True)

CRITERIA: dict[str, Any] = {"VVV": _VVV, "EII": _Ward, "E": _Ward, "V": _VarV}


def _data(kind: str, n: int, p: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.normal(size=(n, p))
    if kind == "mixture":
        centres = rng.normal(scale=5.0, size=(4, p))
        return centres[rng.integers(0, 4, n)] + rng.normal(size=(n, p)) * rng.uniform(0.2, 2, p)
    if kind == "duplicated":
        base = rng.normal(size=(max(1, n // 3), p))
        return base[rng.integers(0, len(base), n)]
    if kind == "grid":
        return rng.integers(0, 3, size=(n, p)).astype(np.float64)
    if kind == "scaled":
        return rng.normal(size=(n, p)) * 10.0 ** rng.integers(-8, 9, size=p)
    if kind == "huge":  # determinants and l**p beyond the float range: logarithms
        return rng.normal(size=(n, p)) * 1e100
    raise ValueError(kind)


def _numpy_run(key: str, Z: np.ndarray, **options: Any) -> tuple[list[tuple[int, int]],
                                                                 np.ndarray]:
    """The numpy path's merges, and the cost of each (the pair's entry when chosen)."""
    heights: list[float] = []

    class Recorded(CRITERIA[key]):  # type: ignore[misc, valid-type]
        def merge(self, a: int, b: int, lg: int, D: Any) -> Any:
            heights.append(float(D[a, b]))
            return super().merge(a, b, lg, D)

    merges = hc_module._merges(Recorded(Z, **options), len(Z), 1)
    return merges, np.array(heights)


def _compare(key: str, Z: np.ndarray, mclust_storage: bool = True) -> None:
    options = {} if key != "VVV" or mclust_storage else {"mclust_storage": False}
    want, want_h = _numpy_run(key, Z, **options)
    got, got_h = hc_module._compiled_merges(kernels, key, Z, 1, mclust_storage)
    assert [tuple(m) for m in got.tolist()] == want
    finite = np.isfinite(want_h)
    np.testing.assert_array_equal(np.isfinite(got_h), finite)
    np.testing.assert_allclose(got_h[finite], want_h[finite], rtol=1e-9,
                               atol=1e-9 * np.abs(want_h[finite]).max(initial=1.0))


@pytest.mark.parametrize(
    ("kind", "n", "p"),
    [("normal", 80, 2), ("normal", 150, 3), ("mixture", 300, 5), ("mixture", 400, 9),
     ("duplicated", 200, 4), ("grid", 250, 3), ("grid", 120, 6), ("scaled", 200, 4),
     ("mixture", 90, 40), ("normal", 30, 12), ("huge", 60, 5)],
)
@pytest.mark.parametrize("use", ["SVD", "VARS"])
@pytest.mark.parametrize("key", ["VVV", "EII"])
def test_agglomeration_is_the_numpy_paths(kind: str, n: int, p: int, use: str,
                                          key: str) -> None:
    """Every merge of a whole agglomeration (clusters of n > p and n <= p rows,
    singletons, stored factors, iold's factor) and its cost."""
    _compare(key, hc_transform(_data(kind, n, p, seed=n + p), use))


@pytest.mark.parametrize("kind", ["normal", "mixture", "duplicated", "grid"])
@pytest.mark.parametrize("key", ["V", "E"])
def test_one_dimensional_agglomeration_is_the_numpy_paths(kind: str, key: str) -> None:
    _compare(key, hc_transform(_data(kind, 300, 1, seed=7), "VARS"))


@pytest.mark.parametrize("kind", ["mixture", "duplicated"])
def test_true_scatter_agglomeration_is_the_numpy_paths(kind: str) -> None:
    """Without mclust's factor storage (each cluster's true scatter matrix)."""
    _compare("VVV", hc_transform(_data(kind, 200, 4, seed=3), "SVD"), mclust_storage=False)


def test_hc_partitions_same_with_and_without_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    X = _data("mixture", 500, 7, seed=4)
    monkeypatch.setenv(_jit.ENVIRONMENT, "0")
    want = hc_partitions(X, range(1, 30))
    monkeypatch.setenv(_jit.ENVIRONMENT, "1")
    got = hc_partitions(X, range(1, 30))
    for k in range(1, 30):
        np.testing.assert_array_equal(got[k], want[k])


def test_partial_agglomeration_stops_at_the_smallest_k() -> None:
    Z = hc_transform(_data("mixture", 100, 3, seed=1), "SVD")
    merges, heights = hc_module._compiled_merges(kernels, "VVV", Z, 7)
    assert merges.shape == (93, 2) and heights.shape == (93,)
    full, _ = hc_module._compiled_merges(kernels, "VVV", Z, 1)
    np.testing.assert_array_equal(merges, full[:93])


def test_environment_switches_the_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_jit.ENVIRONMENT, "0")
    assert _jit.hc_kernels() is None and hc_module._hc_kernels(5000, 64) is None
    monkeypatch.setenv(_jit.ENVIRONMENT, "1")
    assert _jit.hc_kernels() is kernels and hc_module._hc_kernels(10, 2) is kernels


def test_kernels_once_loading_numba_pays(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset GMMKIT_NUMBA: agglomerations stay on the numpy path until the time it
    costs beyond the compiled path (this one's included) reaches _JIT_LOAD -- at once
    where numba is loaded and the agglomeration has _JIT_MIN_ROWS rows -- then use the
    kernels for good."""
    monkeypatch.delenv(_jit.ENVIRONMENT, raising=False)
    monkeypatch.setattr(hc_module, "_foregone", 0.0)
    monkeypatch.setattr(hc_module, "sys", type("S", (), {"modules": {}}))  # numba unloaded
    assert hc_module._saving(1938, 64) > hc_module._JIT_LOAD  # the D=64 workload's sample
    assert hc_module._hc_kernels(1938, 64) is kernels
    assert hc_module._hc_kernels(5, 2) is kernels  # loaded now
    monkeypatch.setattr(hc_module, "_foregone", 0.0)
    small = hc_module._saving(1000, 5)
    runs = [hc_module._hc_kernels(1000, 5) is kernels for _ in range(8)]
    first = int(np.ceil(hc_module._JIT_LOAD / small)) - 1  # the one that reaches it
    assert 0 < first < 8
    assert runs == [False] * first + [True] * (8 - first)
    monkeypatch.setattr(hc_module, "_foregone", 0.0)
    monkeypatch.setattr(hc_module, "sys", type("S", (), {"modules": {"numba": None}}))
    assert hc_module._hc_kernels(hc_module._JIT_MIN_ROWS - 1, 5) is None
    assert hc_module._hc_kernels(hc_module._JIT_MIN_ROWS, 5) is kernels
    monkeypatch.setenv(_jit.ENVIRONMENT, "0")
    assert hc_module._hc_kernels(5000, 64) is None


def test_saving_grows_with_rows_and_dimensions() -> None:
    assert hc_module._saving(2000, 64) > hc_module._saving(2000, 5) > hc_module._saving(
        1000, 5)


def test_small_one_off_agglomeration_does_not_import_numba() -> None:
    """Importing numba is part of what the kernels must pay back: a fresh process
    running one small agglomeration (GMMKIT_NUMBA unset) does not import it."""
    code = (
        "import sys, numpy as np\n"
        "from gmmkit.core.hc import hc_partitions\n"
        "hc_partitions(np.random.default_rng(0).normal(size=(200, 5)), [1, 2, 3])\n"
        "print('numba' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != _jit.ENVIRONMENT}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"
