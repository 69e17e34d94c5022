"""Dask: EM over dask.array / DataFrame blocks on a real distributed.LocalCluster.

The reference is the in-memory fit from the same initial parameters; the Dask fit sums
the same per-chunk statistics in a different (tree) order, so the two agree to rounding.
Fault tests kill worker processes mid-fit: the fit must complete with the same result
(the scheduler recomputes lost blocks) or fail with a clear error, never return
different parameters.
"""

from __future__ import annotations

import os
import signal
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from _helpers import (
    assert_same_fit,
    fit_from,
    initial_parameters,
    relative_error,
    three_blobs,
)
from gmmkit import GaussianMixture
from gmmkit.engines import DaskEngine
from gmmkit.mixture import fit_progress

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
CHUNK = 512
BLOCK = 4 * CHUNK


def _data(n: int = 6000, seed: int = 0, dtype: Any = np.float64) -> np.ndarray:
    return three_blobs(n, seed, dtype)


def _fit(X: Any, covariance_type: str, init: dict[str, Any], **kw: Any) -> GaussianMixture:
    return fit_from(X, covariance_type, init, max_iter=30, chunk_rows=CHUNK, **kw)


# ------------------------------------------------------------ local scheduler (no client)
def test_local_scheduler_fit_equals_in_memory() -> None:
    assert distributed.client._get_global_client() is None
    X = _data()
    init = initial_parameters(X, "full")
    reference = _fit(X, "full", init)
    fitted = _fit(da.from_array(X, chunks=(BLOCK, 3)), "full", init)
    assert_same_fit(reference, fitted)


# ------------------------------------------------------------ LocalCluster
@pytest.fixture(scope="module")
def client(dask_cluster: Any) -> Iterator[Any]:
    with distributed.Client(dask_cluster) as c:
        yield c


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_cluster_fit_equals_in_memory(client: Any, covariance_type: str) -> None:
    X = _data()
    init = initial_parameters(X, covariance_type)
    reference = _fit(X, covariance_type, init)
    assert reference.n_iter_ > 5
    fitted = _fit(da.from_array(X, chunks=(BLOCK, 3)), covariance_type, init)
    assert_same_fit(reference, fitted)


def test_float32_and_uneven_blocks(client: Any) -> None:
    X = _data(dtype=np.float32)
    init = initial_parameters(X.astype(np.float64), "diag")
    reference = _fit(X, "diag", init)
    fitted = _fit(da.from_array(X, chunks=(BLOCK, 3)), "diag", init)
    # float32 data give float32 fitted arrays, as in scikit-learn (statistics are float64)
    assert fitted.means_.dtype == reference.means_.dtype == np.float32
    assert_same_fit(reference, fitted)
    # blocks not aligned with chunks: different float32 partial sums, same fit to float32
    uneven = _fit(da.from_array(X, chunks=(1000, 1)), "diag", init)
    assert relative_error(reference.means_, uneven.means_) < 1e-5


def test_fit_from_random_state_equals_in_memory(client: Any) -> None:
    """k-means initialisation draws the same sample rows, so the whole fit agrees."""
    X = _data()
    # three starts: one of each kind the default plan has (agglomeration, k-means,
    # k-means++); each start is some 40 round trips to the cluster
    kw = {"n_components": 3, "random_state": 3, "chunk_rows": CHUNK, "n_init": 2,
          "n_starts": 3}
    reference = GaussianMixture(**kw).fit(X)
    fitted = GaussianMixture(**kw).fit(da.from_array(X, chunks=(BLOCK, 3)))
    assert_same_fit(reference, fitted)


def test_dataframe_and_weights(client: Any) -> None:
    X = _data()
    weight = np.random.default_rng(1).integers(0, 3, size=len(X)).astype(float)
    init = initial_parameters(X, "full")
    reference = GaussianMixture(3, chunk_rows=CHUNK, max_iter=8, tol=0.0, **init)
    frame = dd.from_pandas(pd.DataFrame(X, columns=["a", "b", "c"]), chunksize=BLOCK)
    fitted = GaussianMixture(**reference.get_params())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference.fit(X, sample_weight=weight)
        fitted.fit(frame, sample_weight=weight)
    assert list(fitted.feature_names_in_) == ["a", "b", "c"]
    assert_same_fit(reference, fitted)


def test_predict_and_score_samples_are_lazy(client: Any) -> None:
    X = _data()
    gm = GaussianMixture(3, random_state=0).fit(X)
    dX = da.from_array(X, chunks=(1500, 3))
    labels = gm.predict(dX)
    log_density = gm.score_samples(dX)
    proba = gm.predict_proba(dX)
    for result in (labels, log_density, proba):
        assert isinstance(result, da.Array)
    assert labels.chunks[0] == dX.chunks[0] and proba.shape == (len(X), 3)
    np.testing.assert_array_equal(labels.compute(), gm.predict(X))
    np.testing.assert_allclose(log_density.compute(), gm.score_samples(X), rtol=1e-13)
    np.testing.assert_allclose(proba.compute(), gm.predict_proba(X), atol=1e-13)
    assert gm.score(dX) == pytest.approx(gm.score(X), rel=1e-12)


def test_nan_raises_clear_error(client: Any) -> None:
    X = _data()
    X[4321, 2] = np.nan
    gm = GaussianMixture(3, random_state=0)
    with pytest.raises(ValueError, match=r"NaN \(first at row 4321\)"):
        gm.fit(da.from_array(X, chunks=(BLOCK, 3)))
    assert not hasattr(gm, "means_")


def test_parameters_travel_data_does_not(client: Any) -> None:
    """Once persisted, EM passes move parameters and statistics, not the blocks."""
    X = _data(60_000)
    dX = da.from_array(X, chunks=(10_000, 3)).persist()
    distributed.wait(dX)
    engine = DaskEngine(dX, chunk_rows=CHUNK)
    init = initial_parameters(X[:6000], "full")
    from gmmkit.core.em import run_em
    from gmmkit.core.params import MixtureParams

    params = MixtureParams.from_precisions(
        init["weights_init"], init["means_init"], init["precisions_init"], "full"
    )

    def transferred() -> int:
        counts = client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total)
        return int(sum(counts.values()))

    with engine.session():
        run_em(engine, params, reg_covar=1e-6, tol=0.0, max_iter=1)  # warm up
        before = transferred()
        run_em(engine, params, reg_covar=1e-6, tol=0.0, max_iter=5)
        moved = transferred() - before
    # an engine shipping the data each pass would move >= 5 * X.nbytes; work stealing
    # may legitimately move the odd block to an idle worker
    assert moved < X.nbytes / 2, moved


# ------------------------------------------------------------ faults (run last)
def _worker_pids(client: Any) -> dict[str, int]:
    return dict(client.run(os.getpid))


class _BlockComputations:
    """Scheduler plugin counting how often blocks of the input array are computed."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.count = 0

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        name = key[0] if isinstance(key, tuple) else key
        if finish == "memory" and str(name).startswith(self.prefix):
            self.count += 1


def test_worker_killed_mid_fit_gives_same_result(client: Any) -> None:
    X = _data(20_000)
    init = initial_parameters(X, "full")
    reference = _fit(X, "full", init)
    dX = da.from_array(X, chunks=(BLOCK, 3))
    computed = _BlockComputations(dX.name)
    client.cluster.scheduler.add_plugin(computed, name="block-computations")
    pids = _worker_pids(client)
    killed: list[int] = []

    def kill_after_first_iteration(n_iter: int, lower_bound: float, change: float) -> None:
        if n_iter == 1:
            # the worker holding most of the persisted blocks
            holding = client.has_what()
            address = max(pids, key=lambda a: len(holding.get(a, ())))
            assert holding[address]
            os.kill(pids[address], signal.SIGKILL)
            killed.append(pids[address])

    try:
        with fit_progress(kill_after_first_iteration):
            fitted = _fit(dX, "full", init)
    finally:
        client.cluster.scheduler.remove_plugin(name="block-computations")
    assert killed
    assert computed.count > dX.numblocks[0]  # lost blocks were recomputed
    client.wait_for_workers(2, timeout=60)
    assert killed[0] not in _worker_pids(client).values()
    assert_same_fit(reference, fitted)


def _exit_in_worker(block: np.ndarray) -> np.ndarray:
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:  # not in a worker (meta computation): harmless
        return block
    os._exit(1)


def test_task_that_keeps_killing_workers_fails_clearly(client: Any) -> None:
    X = _data()
    poisoned = da.from_array(X, chunks=(BLOCK, 3)).map_blocks(_exit_in_worker, dtype=X.dtype)
    gm = GaussianMixture(3, random_state=0, **initial_parameters(X, "full"))
    with pytest.raises(RuntimeError, match="Dask workers died repeatedly"):
        gm.fit(poisoned)
    assert not hasattr(gm, "means_")
    client.wait_for_workers(2, timeout=60)
