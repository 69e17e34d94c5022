"""Fixtures shared by test modules."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

# CI (.ci/run sets GMMKIT_CI=1) draws the same property-test examples on every run, so a
# red build is reproducible from its log rather than one random draw; a local
# `make test` keeps exploring new examples.  Loaded here, before the test modules'
# @settings are built on it.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("GMMKIT_CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    """One ``distributed.LocalCluster`` (two single-threaded worker processes) for every
    module that needs one: starting it takes seconds.  A module connects its own
    ``distributed.Client`` and closes it, so no client outlives its tests (the
    local-scheduler tests run without one).  One retry per task: a task that keeps
    killing workers fails fast."""
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            # a worker that imports numba's compiler for the fused kernel sits at
            # 330 MB; at 400 MiB the nanny paused it (80 %) and the tests hung
            memory_limit="1GiB",
            dashboard_address=None,
            silence_logs=50,
        )
    with cluster:
        yield cluster


@pytest.fixture
def numpy_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """The numpy chunk kernel, not the compiled fused one (``GMMKIT_NUMBA=0``): for the
    tests of the numpy kernel's own paths, which without it would run the fused kernel
    wherever numba is installed."""
    from gmmkit import _jit

    monkeypatch.setenv(_jit.ENVIRONMENT, "0")

