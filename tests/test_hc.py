"""Model-based hierarchical agglomeration (``gmmkit.core.hc``) against independent references.

(a) R's mclust: ``hc()`` merge pairs and ``hclass(hc(X, modelName, use), G)`` for
    G = 1..9 on faithful, iris, synthetic 3-D and 6-D sets and two 1-D sets, stored in
    ``fixtures/hc/mclust_hc_reference.json`` by ``fixtures/hc/make_hc_reference.R``
    (mclust 6.0.0), so no R is needed here.
(b) EII (and the 1-D "E") against scipy's Ward linkage.
(c) the VVV criterion against an exhaustive search written from its definition.
(d) edge cases: tiny n, k = n, k = 1, d = 1, duplicated rows, constant columns.
"""

from __future__ import annotations

import itertools
import json
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.cluster.hierarchy import cut_tree, ward

from gmmkit import _jit
from gmmkit.core.hc import _VVV, _cut, _merges, _seq_rowsum, hc_partitions, hc_transform

FIXTURE = Path(__file__).parent / "fixtures" / "hc" / "mclust_hc_reference.json"
KS = range(1, 10)


def _agglomerate(crit: Any, n: int, ks: list[int]) -> dict[int, np.ndarray]:
    """The numpy path's agglomeration with ``crit``, cut at each ``k`` in ``ks``."""
    return _cut(n, _merges(crit, n, min(ks)), ks)


@cache
def _reference() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


def _case_ids() -> list[str]:
    return [f"{c['dataset']}-{c['model']}-{c['use']}" for c in _reference()["cases"]]


def _case(case_id: str) -> tuple[dict[str, Any], np.ndarray]:
    ref = _reference()
    case = ref["cases"][_case_ids().index(case_id)]
    return case, np.array(ref["datasets"][case["dataset"]], dtype=np.float64)


def _mclust_data(case: dict[str, Any], X: np.ndarray) -> np.ndarray:
    """The data as mclust's hc() transformed them (attr(hc, "data"))."""
    if case["use"] == "VARS":
        return X
    return np.array(_reference()["transformed"][f"{case['dataset']}/{case['use']}"])


def _hclass_all(merges: list[list[int]], n: int) -> dict[int, np.ndarray]:
    """Partitions at every number of clusters from hc()'s merge pairs, as hclass() cuts."""
    lab = np.arange(n)
    out = {n: lab.copy()}
    for t, (i, j) in enumerate(merges):
        lo, hi = min(i, j) - 1, max(i, j) - 1
        lab[lab == hi] = lo
        out[n - t - 1] = lab.copy()
    return out


def _canonical(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0, 1, ... in order of first appearance."""
    _, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.intp)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inv.ravel()]


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to a permutation of the labels (adjusted Rand index 1)."""
    return bool(np.array_equal(_canonical(a), _canonical(b)))


def _as_sets(labels: np.ndarray) -> set[frozenset[int]]:
    return {frozenset(np.flatnonzero(labels == g).tolist()) for g in np.unique(labels)}


# ----------------------------------------------------------------- (a) R's mclust


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("case_id", _case_ids())
def test_matches_mclust(case_id: str, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """hclass(hc(X, model, use), G) for G = 1..9 from the raw data, label for label, and
    every cut of the tree on the data exactly as mclust transformed them -- with VVV's
    compiled kernels (numba, where importable) and without (``GMMKIT_NUMBA=0``).

    Both number the groups in order of first appearance (mclust's partconv), so the
    labels themselves agree, not only the partitions.  The whole tree is compared on
    mclust's own transformed data because from the raw data our SVD differs from R's
    LAPACK in the last bits, which can resolve exact ties of gridded data (faithful,
    iris) the other way for EII far down the tree (k > 9 here).
    """
    if backend == "numba" and _jit._load("_hc_jit") is None:
        pytest.skip("numba is not importable")
    monkeypatch.setenv(_jit.ENVIRONMENT, "1" if backend == "numba" else "0")
    case, X = _case(case_id)
    Z = _mclust_data(case, X)
    n = Z.shape[0]
    tree = hc_partitions(Z, range(1, n + 1), model=case["model"], use="VARS")
    theirs = _hclass_all(case["merges"], n)
    assert [k for k in range(1, n + 1) if not _same_partition(tree[k], theirs[k])] == []

    ours = tree if case["use"] == "VARS" else hc_partitions(X, KS, case["model"], case["use"])
    for k in KS:
        expected = np.asarray(case["partitions"][str(k)])
        np.testing.assert_array_equal(ours[k] + 1, expected, err_msg=f"k={k}")


@pytest.mark.parametrize("key", ["faithful/SVD", "iris/SVD", "syn3/SVD", "syn6/SVD", "syn1/SVD"])
def test_svd_transform_matches_mclust(key: str) -> None:
    """hc_transform(X, "SVD") is attr(hc(X, use = "SVD"), "data") up to column signs."""
    ref = _reference()
    X = np.array(ref["datasets"][key.split("/")[0]], dtype=np.float64)
    theirs = np.array(ref["transformed"][key], dtype=np.float64).reshape(len(X), -1)
    ours = hc_transform(X, "SVD")
    assert ours.shape == theirs.shape
    signs = np.sign(np.sum(ours * theirs, axis=0))
    np.testing.assert_allclose(ours * signs, theirs, rtol=0, atol=1e-13 * np.abs(theirs).max())


def test_std_transform_is_bitwise_r_scale() -> None:
    """ "STD" reproduces R's scale() (long-double column means and sums) to the bit."""
    X = np.array(_reference()["datasets"]["iris"], dtype=np.float64)
    ours = hc_transform(X, "STD")
    mean = X.mean(axis=0)
    sd = X.std(axis=0, ddof=1)
    np.testing.assert_allclose(ours, (X - mean) / sd, rtol=1e-14, atol=1e-14)


def test_mclust_factor_storage_decides_merges() -> None:
    """hcvvv reads back stored factors with their first row in every row; with true
    scatter matrices the faithful/VARS tree leaves mclust's from 64 clusters down."""
    case, X = _case("faithful-VVV-VARS")
    theirs = _hclass_all(case["merges"], len(X))
    textbook = _agglomerate(_VVV(X, mclust_storage=False), len(X), list(KS))
    assert any(not _same_partition(textbook[k], theirs[k]) for k in KS)
    ours = hc_partitions(X, KS, model="VVV", use="VARS")
    assert all(_same_partition(ours[k], theirs[k]) for k in KS)


# ------------------------------------------------------------ (b) Ward / scipy


@pytest.mark.parametrize("use", ["VARS", "SVD"])
def test_eii_is_ward(use: str) -> None:
    rng = np.random.default_rng(11)
    X = np.concatenate([rng.normal(c, s, size=(40, 3)) for c, s in ((0, 1), (4, 0.5), (-3, 2))])
    n = len(X)
    ours = hc_partitions(X, range(1, n), model="EII", use=use)
    # (cut_tree mislabels the k = n column when it is asked for several k at once)
    cuts = cut_tree(ward(hc_transform(X, use)), n_clusters=list(range(1, n)))
    for k in range(1, n):
        assert _same_partition(ours[k], cuts[:, k - 1]), k


def test_e_is_one_dimensional_ward() -> None:
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(0, 1, 50), rng.normal(6, 2, 40)])
    n = len(x)
    ours = hc_partitions(x[:, None], range(1, n), model="E", use="VARS")
    cuts = cut_tree(ward(x[:, None]), n_clusters=list(range(1, n)))
    assert all(_same_partition(ours[k], cuts[:, k - 1]) for k in range(1, n))


# ------------------------------------------- (c) VVV criterion, exhaustive search


def _vvv_term(Y: np.ndarray, alpha: float) -> float:
    """n log(det(W/n) [n > p] + (tr W + alpha)/n), from the definition (beta = 1)."""
    m, p = Y.shape
    R = Y - Y.mean(axis=0)
    W = R.T @ R
    val = (np.trace(W) + alpha) / m
    if m > p:
        val += np.linalg.det(W / m)
    return m * np.log(val)


def _brute_force_vvv(X: np.ndarray) -> dict[int, set[frozenset[int]]]:
    """Greedy agglomeration by exhaustive search over all pairs at every step."""
    n, p = X.shape
    alpha = float(np.sum((X - X.mean(axis=0)) ** 2) / (n * p))
    clusters = [frozenset([i]) for i in range(n)]
    out = {n: set(clusters)}
    while len(clusters) > 1:
        best = None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                A, B = sorted(clusters[a]), sorted(clusters[b])
                cost = _vvv_term(X[A + B], alpha) - _vvv_term(X[A], alpha) - _vvv_term(X[B], alpha)
                if best is None or cost < best[0]:
                    best = (cost, a, b)
        assert best is not None
        _, a, b = best
        merged = clusters[a] | clusters[b]
        clusters = [c for i, c in enumerate(clusters) if i not in (a, b)] + [merged]
        out[len(clusters)] = set(clusters)
    return out


def test_vvv_first_merge_minimises_the_criterion() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(12, 3)) * np.array([1.0, 3.0, 0.5])
    n = len(X)
    (pair,) = [g for g in _as_sets(hc_partitions(X, [n - 1], "VVV", "VARS")[n - 1]) if len(g) == 2]
    assert _brute_force_vvv(X)[n - 1] == {pair} | {
        frozenset([i]) for i in range(n) if i not in pair
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_vvv_criterion_whole_sequence(seed: int) -> None:
    """With true scatter matrices, every merge is the exhaustive-search minimum."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(0, 1, (6, 2)), rng.normal(3, [0.3, 2.0], (5, 2))])
    n = len(X)
    ours = _agglomerate(_VVV(X, mclust_storage=False), n, list(range(1, n + 1)))
    brute = _brute_force_vvv(X)
    for k in range(1, n + 1):
        assert _as_sets(ours[k]) == brute[k], k


def test_vvv_without_determinants_is_storage_free() -> None:
    """With n <= p no determinant enters, so mclust's factor storage cannot matter."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(7, 8))
    ours = hc_partitions(X, range(1, 8), "VVV", "VARS")
    brute = _brute_force_vvv(X)
    assert all(_as_sets(ours[k]) == brute[k] for k in range(1, 8))


# ------------------------------------------------------------------ (d) edge cases


def _check_labels(parts: dict[int, np.ndarray], n: int) -> None:
    for k, lab in parts.items():
        assert lab.shape == (n,)
        assert lab.dtype == np.intp
        assert sorted(np.unique(lab).tolist()) == list(range(k))
        # numbered in order of first appearance
        _, first = np.unique(lab, return_index=True)
        assert np.all(np.diff(first) > 0)


def _check_nested(parts: dict[int, np.ndarray]) -> None:
    ks = sorted(parts)
    for lo, hi in itertools.pairwise(ks):
        coarse, fine = parts[lo], parts[hi]
        for g in np.unique(fine):
            assert len(np.unique(coarse[fine == g])) == 1


@pytest.mark.parametrize("model", ["VVV", "EII"])
@pytest.mark.parametrize("use", ["SVD", "VARS"])
def test_partitions_are_valid_and_nested(model: str, use: str) -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 4))
    parts = hc_partitions(X, range(1, 61), model, use)
    _check_labels(parts, 60)
    _check_nested(parts)
    np.testing.assert_array_equal(parts[60], np.arange(60))
    np.testing.assert_array_equal(parts[1], np.zeros(60, dtype=np.intp))


def test_tiny_n() -> None:
    assert hc_partitions(np.array([[1.0, 2.0]]), [1])[1].tolist() == [0]
    parts = hc_partitions(np.array([[0.0, 1.0], [2.0, 5.0]]), [1, 2])
    assert parts[1].tolist() == [0, 0] and parts[2].tolist() == [0, 1]
    for model in ("V", "E", "VVV", "EII"):
        assert hc_partitions(np.array([3.0, 1.0, 2.0]), [1, 2, 3], model)[2].shape == (3,)


def test_ks_handling() -> None:
    X = np.random.default_rng(0).normal(size=(20, 2))
    parts = hc_partitions(X, [np.int64(3), 2, 3])
    assert sorted(parts) == [2, 3]
    assert hc_partitions(X, []) == {}
    with pytest.raises(ValueError, match="k must be <= n"):
        hc_partitions(X, [21])
    with pytest.raises(ValueError, match=">= 1"):
        hc_partitions(X, [0])
    with pytest.raises(ValueError, match="integers"):
        hc_partitions(X, [2.5])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="k must be <= n"):
        hc_partitions(np.ones((1, 3)), [2])


def test_bad_input() -> None:
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="finite"):
        hc_partitions(np.where(np.eye(10, 2) > 0, np.nan, X), [2])
    with pytest.raises(ValueError, match="model"):
        hc_partitions(X, [2], model="VVI")
    with pytest.raises(ValueError, match="use"):
        hc_partitions(X, [2], use="RND")
    with pytest.raises(ValueError, match="one-dimensional"):
        hc_partitions(X, [2], model="V")


@pytest.mark.parametrize("model", ["V", "E", "VVV", "EII"])
@pytest.mark.parametrize("use", ["SVD", "VARS"])
def test_one_dimensional(model: str, use: str) -> None:
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0, 1, 30), rng.normal(8, 1, 30)])
    parts = hc_partitions(x, range(1, 10), model, use)
    _check_labels(parts, 60)
    _check_nested(parts)
    assert _as_sets(parts[2]) == {frozenset(range(30)), frozenset(range(30, 60))}


@pytest.mark.parametrize("model", ["VVV", "EII"])
@pytest.mark.parametrize("use", ["SVD", "VARS"])
def test_duplicated_rows(model: str, use: str) -> None:
    rng = np.random.default_rng(6)
    points = rng.normal(size=(5, 3)) * 5
    X = np.repeat(points, [6, 1, 4, 9, 2], axis=0)[rng.permutation(22)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parts = hc_partitions(X, range(1, 23), model, use)
    _check_labels(parts, 22)
    _check_nested(parts)
    # five distinct points: at k = 5 each group is one point's copies
    assert _as_sets(parts[5]) == _as_sets(np.unique(X, axis=0, return_inverse=True)[1].ravel())


@pytest.mark.parametrize("model", ["VVV", "EII"])
@pytest.mark.parametrize("use", ["SVD", "VARS", "STD", "PCS", "PCR", "SPH"])
def test_constant_and_collinear_columns(model: str, use: str) -> None:
    rng = np.random.default_rng(7)
    Y = rng.normal(size=(40, 2))
    X = np.column_stack([np.full(40, 3.0), Y[:, 0], Y[:, 1], 2 * Y[:, 0], np.zeros(40)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Z = hc_transform(X, use)
        parts = hc_partitions(X, range(1, 41), model, use)
    assert np.isfinite(Z).all()
    _check_labels(parts, 40)
    _check_nested(parts)


@pytest.mark.parametrize("model", ["VVV", "EII", "V", "E"])
@pytest.mark.parametrize("use", ["SVD", "VARS"])
def test_all_rows_identical(model: str, use: str) -> None:
    X = np.full((9, 1 if model in ("V", "E") else 3), 2.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parts = hc_partitions(X, range(1, 10), model, use)
    _check_labels(parts, 9)
    _check_nested(parts)


@pytest.mark.parametrize("p", [1, 2, 3, 8, 9, 16, 17, 64, 65])
def test_row_sums_are_sequential(p: int) -> None:
    """The squared norms that decide VVV merges are summed row after row, as mclust's
    reference ``ddot`` does: ``_seq_rowsum`` against a left-to-right Python sum, on
    values spread over many magnitudes (pairwise or blocked summation differs)."""
    rng = np.random.default_rng(p)
    for m in (1, 2, 3, 7, 8, 9, 100, 1000):
        buf = np.empty((p, 1200))
        W = buf[:, :m]  # as in the agglomeration: a view of a wider buffer
        W[...] = rng.standard_normal((p, m)) * 10.0 ** rng.integers(-8, 9, size=(p, m))
        ref = [0.0] * m
        for k in range(m):
            acc = float(W[0, k])
            for c in range(1, p):
                acc = acc + float(W[c, k])
            ref[k] = acc
        assert _seq_rowsum(W).tolist() == ref


def test_agglomeration_runs_on_one_blas_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Called outside a fit, hc_partitions limits BLAS to one thread as a fit does (on
    the numpy path its merges are thousands of tiny BLAS calls), and restores the
    settings it found."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from gmmkit.core import hc

    monkeypatch.setenv(_jit.ENVIRONMENT, "0")  # the compiled path calls no BLAS

    def blas_threads() -> list[int]:
        return [info["num_threads"] for info in threadpool_info()
                if info["user_api"] == "blas"]

    seen: list[list[int]] = []
    merges = hc._merges

    def spy(*args: Any) -> list[tuple[int, int]]:
        seen.append(blas_threads())
        return merges(*args)

    monkeypatch.setattr(hc, "_merges", spy)
    X = np.random.default_rng(3).normal(size=(60, 4))
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        assert before and all(n == 2 for n in before)
        parts = hc_partitions(X, KS)
        assert blas_threads() == before
    assert seen and all(n == 1 for n in seen[0])
    monkeypatch.setattr(hc, "_merges", merges)
    with threadpool_limits(limits=2, user_api="blas"):
        again = hc._hc_partitions(X, list(KS), "VVV", "SVD")  # BLAS left threaded
    assert all(np.array_equal(parts[k], again[k]) for k in KS)
