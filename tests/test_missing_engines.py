"""Missing values out of core: a memory-mapped .npy, a chunked callable source and Dask
(local scheduler and a LocalCluster) give the in-memory fit; NaN passes the engines'
block checks only with missing="marginalize"."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _helpers import assert_same_fit, initial_parameters, three_blobs
from gmmkit import GaussianMixture

CHUNK = 256


def _data(n: int = 3000, seed: int = 0) -> np.ndarray:
    X = three_blobs(n, seed)
    rng = np.random.default_rng(seed + 1)
    X[rng.random(X.shape) < 0.2] = np.nan
    X[5] = np.nan  # a row with nothing observed
    return X


def _fit(X: Any, covariance_type: str, init: dict[str, Any], **kw: Any) -> GaussianMixture:
    gm = GaussianMixture(
        3, covariance_type=covariance_type, tol=1e-8, max_iter=30, chunk_rows=CHUNK,
        missing="marginalize", **init, **kw,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gm.fit(X)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, dict[str, Any]]:
    X = _data()
    complete = X[~np.isnan(X).any(axis=1)]
    return X, initial_parameters(complete, "full")


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_memmap_fit_equals_in_memory(
    tmp_path: Path, data: tuple[np.ndarray, dict[str, Any]], covariance_type: str
) -> None:
    X, init = data
    if covariance_type == "diag":
        init = {**init, "precisions_init": np.array([np.diag(p) for p in init["precisions_init"]])}
    reference = _fit(X, covariance_type, init)
    path = tmp_path / "x.npy"
    np.save(path, X)
    streamed = _fit(np.load(path, mmap_mode="r"), covariance_type, init)
    assert_same_fit(reference, streamed)
    np.testing.assert_allclose(
        streamed.score_samples(np.load(path, mmap_mode="r")), reference.score_samples(X),
        rtol=1e-12,
    )
    with pytest.raises(ValueError, match=r"NaN \(first at row \d+\).*missing=.marginalize."):
        GaussianMixture(3, chunk_rows=CHUNK).fit(np.load(path, mmap_mode="r"))


def test_callable_source_fit_equals_in_memory(data: tuple[np.ndarray, dict[str, Any]]) -> None:
    X, init = data

    def blocks() -> Iterator[np.ndarray]:
        for start in range(0, len(X), 700):
            yield X[start : start + 700]

    reference = _fit(X, "full", init)
    assert_same_fit(reference, _fit(blocks, "full", init))
    with pytest.raises(ValueError, match="missing='marginalize'"):
        GaussianMixture(3).fit(blocks)


def test_infinity_is_refused_even_when_marginalising(tmp_path: Path) -> None:
    X = _data()
    X[7, 1] = np.inf
    path = tmp_path / "x.npy"
    np.save(path, X)
    with pytest.raises(ValueError, match=r"infinity \(first at row 7\)"):
        GaussianMixture(3, missing="marginalize").fit(np.load(path, mmap_mode="r"))


def test_dask_fit_equals_in_memory(data: tuple[np.ndarray, dict[str, Any]]) -> None:
    da = pytest.importorskip("dask.array")
    X, init = data
    reference = _fit(X, "full", init)
    assert_same_fit(reference, _fit(da.from_array(X, chunks=(1024, 3)), "full", init))
    with pytest.raises(ValueError, match="NaN"):
        GaussianMixture(3).fit(da.from_array(X, chunks=(1024, 3)))


@pytest.mark.slow
def test_dask_local_cluster_fit_equals_in_memory(
    data: tuple[np.ndarray, dict[str, Any]], dask_cluster: Any,
) -> None:
    da = pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")
    X, init = data
    reference = _fit(X, "full", init)
    with distributed.Client(dask_cluster):
        fitted = _fit(da.from_array(X, chunks=(1024, 3)), "full", init)
        assert_same_fit(reference, fitted)
        np.testing.assert_allclose(
            fitted.predict_proba(da.from_array(X, chunks=(1024, 3))),
            reference.predict_proba(X), rtol=1e-10, atol=1e-12,
        )


@pytest.mark.parametrize(("covariance_type", "k", "d"), [("full", 8, 9), ("tied", 3, 12)])
def test_schur_form_out_of_core_equals_in_memory(
    tmp_path: Path, covariance_type: str, k: int, d: int
) -> None:
    """Sizes that take the compiled Schur form (numba installed): a memory-mapped file
    and Dask, whose chunks' masks are found again every pass, give the in-memory fit."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(size=(250, d)) * (1 + j % 2) + 4 * j for j in range(k)])
    X[rng.random(X.shape) < 0.2] = np.nan
    complete = X[~np.isnan(X).any(axis=1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = GaussianMixture(
            k, covariance_type=covariance_type, max_iter=1, random_state=0).fit(complete)
    init = {"weights_init": start.weights_, "means_init": start.means_,
            "precisions_init": start.precisions_}

    def fit(data: Any) -> GaussianMixture:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return GaussianMixture(
                k, covariance_type=covariance_type, tol=1e-8, max_iter=15, chunk_rows=512,
                missing="marginalize", **init,
            ).fit(data)

    reference = fit(X)
    path = tmp_path / "x.npy"
    np.save(path, X)
    streamed = fit(np.load(path, mmap_mode="r"))
    assert_same_fit(reference, streamed)
    # scores of incomplete rows (the Schur form's log-joint), chunk by chunk
    np.testing.assert_allclose(
        streamed.score_samples(np.load(path, mmap_mode="r")), reference.score_samples(X),
        rtol=1e-10)
    da = pytest.importorskip("dask.array")
    fitted = fit(da.from_array(X, chunks=(700, d)))
    assert_same_fit(reference, fitted)
    np.testing.assert_allclose(
        np.asarray(fitted.predict_proba(da.from_array(X, chunks=(700, d)))),
        reference.predict_proba(X), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_predictions_of_large_chunks_go_in_blocks_of_a_fits_chunk(
    covariance_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per-row results over rows with missing cells are computed in blocks of at most
    ``incomplete_chunk_rows`` rows (the fused kernel's chunks are 131072 rows): the same
    values as in one block."""
    from gmmkit.core import missing as missing_module
    from gmmkit.core.kernel import kernel_coefficients

    rng = np.random.default_rng(4)
    X = _data(600)
    X[rng.random(X.shape) < 0.2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GaussianMixture(3, covariance_type=covariance_type, missing="marginalize",
                                random_state=0).fit(X)
    coefs = kernel_coefficients(model.params_, np.float64)
    filled = np.where(np.isnan(X), 0.0, X)
    mask = np.isnan(X)
    whole = {kind: getattr(missing_module, f"{kind}_rows")(coefs, filled, mask)
             for kind in ("score", "predict", "proba", "map_log_resp")}
    calls: list[int] = []
    original = missing_module._split_rows

    def counted(coefs_: Any, rows: Any, *args: Any) -> Any:
        calls.append(len(rows))
        return original(coefs_, rows, *args)

    monkeypatch.setattr(missing_module, "incomplete_chunk_rows", lambda *args: 128)
    monkeypatch.setattr(missing_module, "_split_rows", counted)
    for kind, expected in whole.items():
        calls.clear()
        got = getattr(missing_module, f"{kind}_rows")(coefs, filled, mask)
        assert max(calls[1:]) <= 128 and len(calls) == 1 + 5, calls
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
