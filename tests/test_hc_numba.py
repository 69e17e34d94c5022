"""The VVV agglomeration's compiled kernels (``gmmkit.core._hc_jit``) against its numpy
path, bit for bit.

The kernels must give every pair cost the numpy path gives, to the last bit: the merges
reproduce R mclust's, exact ties included (duplicated rows, data on a grid), so a cost
that differs in its last bit can change the tree.  Each kernel is checked against the
numpy expressions it replaces, and whole agglomerations are run both ways with every
cost row recorded (the numpy path itself is checked against mclust in ``test_hc.py``).
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
from gmmkit.core.hc import _RTHALF, _VVV, _seq_rowsum, hc_partitions, hc_transform

kernels = _jit._load("_hc_jit")
if kernels is None:  # numba absent, or not importable with this numpy
    pytest.skip("numba is not importable", allow_module_level=True)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.int64)


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
    raise ValueError(kind)


def _record(monkeypatch: pytest.MonkeyPatch, compiled: bool, Z: np.ndarray,
            ks: list[int]) -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
    """Every initial cost block and every merge's cost row of a VVV run, and its labels."""
    monkeypatch.setenv(_jit.ENVIRONMENT, "1" if compiled else "0")
    rows: list[np.ndarray] = []

    class Recorded(_VVV):
        def initial_block(self, r0: int, r1: int) -> Any:
            out = super().initial_block(r0, r1)
            rows.append(out.copy())
            return out

        def merge(self, a: int, b: int, lg: int, D: Any) -> Any:
            out = super().merge(a, b, lg, D)
            rows.append(out.copy())
            return out

    crit = Recorded(Z)
    assert (crit.jit is not None) is compiled
    with np.errstate(all="ignore"):
        parts = hc_module._agglomerate(crit, len(Z), ks)
    return rows, parts


@pytest.mark.parametrize(
    ("kind", "n", "p"),
    [("normal", 80, 2), ("normal", 150, 3), ("mixture", 300, 5), ("mixture", 400, 9),
     ("duplicated", 200, 4), ("grid", 250, 3), ("grid", 120, 6), ("scaled", 200, 4),
     ("mixture", 90, 40), ("normal", 30, 12)],
)
@pytest.mark.parametrize("use", ["SVD", "VARS"])
def test_agglomeration_costs_are_bitwise_the_numpy_paths(
    kind: str, n: int, p: int, use: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every pair cost of a whole agglomeration (n > p and n <= p clusters, singletons,
    stored factors, iold's factor) and so every partition, with and without numba."""
    Z = hc_transform(_data(kind, n, p, seed=n + p), use)
    ks = list(range(1, n + 1))
    ref_rows, ref_parts = _record(monkeypatch, False, Z, ks)
    rows, parts = _record(monkeypatch, True, Z, ks)
    assert len(rows) == len(ref_rows)
    for t, (got, want) in enumerate(zip(rows, ref_rows, strict=True)):
        assert got.shape == want.shape, t
        np.testing.assert_array_equal(_bits(got), _bits(want), err_msg=f"cost row {t}")
    for k in ks:
        np.testing.assert_array_equal(parts[k], ref_parts[k])


def test_hc_partitions_same_with_and_without_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    X = _data("mixture", 500, 7, seed=4)
    monkeypatch.setenv(_jit.ENVIRONMENT, "0")
    want = hc_partitions(X, range(1, 30))
    monkeypatch.setenv(_jit.ENVIRONMENT, "1")
    got = hc_partitions(X, range(1, 30))
    for k in range(1, 30):
        np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.parametrize(("p", "n", "m"), [(1, 7, 5), (2, 40, 39), (5, 100, 63), (17, 300, 1)])
def test_pair_costs_kernel(p: int, n: int, m: int) -> None:
    """pair_costs against the numpy expressions of hcvvv's loop over j."""
    rng = np.random.default_rng(p * n)
    xT = rng.normal(size=(p, n)) * rng.uniform(0.1, 10.0, size=(p, 1))
    tr = rng.uniform(0.0, 5.0, n)
    cnt = rng.integers(1, 40, n).astype(np.float64)
    a, alpha, beta = n // 2 if m > n // 2 else 0, 0.37, 1.0
    V = np.full((p, n), np.nan)
    out = [np.empty(m) for _ in range(5)]
    kernels.pair_costs(xT, tr, cnt, a, m, alpha, beta, V, *out)
    rij, si, sj, trc, base = out

    ri, rj = cnt[a], cnt[:m]
    want_rij = ri + rj
    q = 1.0 / want_rij
    want_si, want_sj = np.sqrt(ri * q), np.sqrt(rj * q)
    want_v = xT[:, :m] * want_si - xT[:, a][:, None] * want_sj
    want_trc = (tr[a] + tr[:m]) + _seq_rowsum(want_v * want_v)
    want_base = beta * (want_trc + alpha) / want_rij
    for got, want in [(rij, want_rij), (si, want_si), (sj, want_sj), (V[:, :m], want_v),
                      (trc, want_trc), (base, want_base)]:
        np.testing.assert_array_equal(_bits(got), _bits(want))
    assert np.isnan(V[:, m:]).all()  # columns past m untouched


def test_stack_kernel() -> None:
    rng = np.random.default_rng(5)
    p, n = 6, 30
    G = rng.normal(size=(n, p, p))
    mem = rng.normal(size=(p, p))
    V = rng.normal(size=(p, n)) * 3.0
    ids = np.array([3, 0, 29, 7, 7], dtype=np.intp)
    out = np.empty((len(ids), p, p))
    kernels.stack(G, ids, mem, V, out)
    Vm = V[:, ids].T
    want = (G[ids] + mem) + Vm[:, :, None] * Vm[:, None, :]
    np.testing.assert_array_equal(_bits(out), _bits(want))


@pytest.mark.parametrize(("p", "r0", "r1"), [(1, 0, 9), (3, 0, 40), (8, 17, 50)])
def test_initial_block_kernel(p: int, r0: int, r1: int) -> None:
    rng = np.random.default_rng(p + r1)
    xT = rng.normal(size=(p, 60)) * 7.0
    out = np.empty((r1 - r0, r1))
    kernels.initial_block(xT, r0, r1, out)
    want = np.zeros((r1 - r0, r1))
    for c in range(p):
        d = (xT[c, r0:r1, None] - xT[c, None, :r1]) * _RTHALF
        want = d * d if c == 0 else want + d * d
    np.testing.assert_array_equal(_bits(out), _bits(want))


def test_environment_switches_the_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    Z = np.random.default_rng(0).normal(size=(10, 3))
    monkeypatch.setenv(_jit.ENVIRONMENT, "0")
    assert _jit.hc_kernels() is None and _VVV(Z).jit is None
    monkeypatch.setenv(_jit.ENVIRONMENT, "1")
    assert _jit.hc_kernels() is kernels and _VVV(Z).jit is kernels


def test_kernels_once_loading_numba_pays(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset GMMKIT_NUMBA: agglomerations stay on the numpy path until their work
    (n^2 p, this one's included) reaches _JIT_WORK, then use the kernels for good."""
    monkeypatch.delenv(_jit.ENVIRONMENT, raising=False)
    monkeypatch.setattr(hc_module, "_numpy_work", 0.0)
    assert hc_module._vvv_kernels(2000, 64) is kernels  # n^2 p past _JIT_WORK alone
    assert hc_module._vvv_kernels(50, 2) is kernels  # loaded now
    monkeypatch.setattr(hc_module, "_numpy_work", 0.0)
    small = 1797 * 1797 * 17
    runs = [hc_module._vvv_kernels(1797, 17) is kernels for _ in range(6)]
    first = int(np.ceil(hc_module._JIT_WORK / small)) - 1  # the one that reaches it
    assert runs == [False] * first + [True] * (6 - first)
    monkeypatch.setenv(_jit.ENVIRONMENT, "0")
    assert hc_module._vvv_kernels(2000, 64) is None


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
