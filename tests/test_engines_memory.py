"""The in-memory engine's chunks: data cut into a multiple of ``n_jobs`` equal chunks,
and the work other than the E-step run on blocks of large chunks (``blockwise``)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from gmmkit.engines.memory import MemoryEngine


@pytest.mark.parametrize(("n", "n_jobs", "rows"), [
    (800_000, 2, 100_000), (800_000, 1, 131_072), (262_144, 2, 131_072),
    (300_000, 2, 75_000), (300_001, 3, 100_001), (131_073, 2, 65_537),
])
def test_memory_chunks_shared_evenly_between_workers(n: int, n_jobs: int, rows: int) -> None:
    X = np.zeros((n, 1))
    engine = MemoryEngine(X, chunk_rows=131_072, n_jobs=n_jobs)
    chunks = list(engine.chunks())
    assert [c.start for c in chunks] == list(range(0, n, rows))
    assert max(len(c.X) for c in chunks) == rows <= 131_072
    assert sum(len(c.X) for c in chunks) == n
    assert len(chunks) % n_jobs == 0


def test_blockwise_splits_large_chunks_into_blocks_that_add_up() -> None:
    """Work other than the E-step (the starts' dense responsibilities, k-means
    distances) runs on blocks of a large chunk: each a Chunk of its own rows, weights,
    labels, mask and start, the results added as one chunk's would be."""
    from gmmkit.core.init import _random_stats
    from gmmkit.engines.base import BLOCK_VALUES, Chunk, blockwise

    rng = np.random.default_rng(5)
    n, k = 5000, 8
    X = rng.normal(size=(n, 3))
    chunk = Chunk(X=X, sample_weight=rng.uniform(size=n), labels=np.arange(n),
                  start=7000, missing=np.zeros((n, 3), bool))
    seen: list[tuple[int, int]] = []

    def record(c: Chunk) -> int:
        assert c.sample_weight is not None and c.labels is not None and c.missing is not None
        assert len(c.sample_weight) == len(c.labels) == len(c.missing) == len(c.X)
        offset = c.start - 7000
        np.testing.assert_array_equal(c.labels, np.arange(offset, offset + len(c.X)))
        seen.append((c.start, len(c.X)))
        return len(c.X)

    width = BLOCK_VALUES // 1000
    assert blockwise(record, width)(chunk) == n
    assert seen == [(7000 + a, min(1000, n - a)) for a in range(0, n, 1000)]
    seen.clear()
    assert blockwise(record, 1)(chunk) == n and seen == [(7000, n)]
    # the random start's statistics do not depend on the blocks (rounding aside)
    reference = X.mean(axis=0)
    whole = _random_stats("full", k, 3, reference, chunk)
    blocks = blockwise(partial(_random_stats, "full", k, 3, reference), width)(chunk)
    np.testing.assert_allclose(blocks.nk, whole.nk, rtol=1e-12)
    np.testing.assert_allclose(blocks.second, whole.second, rtol=1e-12)


@pytest.mark.parametrize("numba", [True, False])
@pytest.mark.parametrize(("layout", "d", "k"), [("full", 3, 5), ("diag", 12, 4)])
def test_per_row_results_written_into_one_array_match_scipy(
    monkeypatch: pytest.MonkeyPatch, numba: bool, layout: str, d: int, k: int
) -> None:
    """Every chunk writes its rows of the engine's one result (fused or numpy kernel,
    with a row far from every component): score, predict, predict_proba and the largest
    log responsibility against scipy."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    from _helpers import full_covariances, random_params
    from gmmkit import _jit
    from gmmkit.core.kernel import kernel_coefficients

    if not numba:
        monkeypatch.setenv(_jit.ENVIRONMENT, "0")
    rng = np.random.default_rng(d + k)
    params = random_params(rng, k, d, layout)
    n = 5003
    X = params.means[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    X[4000] = 1e3
    cov = full_covariances(params)
    log_joint = np.column_stack([
        np.log(params.weights[j]) + multivariate_normal(params.means[j], cov[j]).logpdf(X)
        for j in range(k)])
    density = logsumexp(log_joint, axis=1)
    log_resp = log_joint - density[:, None]
    engine = MemoryEngine(X, chunk_rows=1000, n_jobs=2)
    assert len(list(engine.chunks())) == 6
    coefs = kernel_coefficients(params, np.float64, fused=engine.fused_passes(params))
    with engine.session():
        score = engine.kernel_rows(coefs, "score")
        labels = engine.kernel_rows(coefs, "predict")
        proba = engine.kernel_rows(coefs, "proba")
        largest = engine.kernel_rows(coefs, "map_log_resp")
    np.testing.assert_allclose(score, density, rtol=1e-12)
    np.testing.assert_array_equal(labels, np.argmax(log_joint, axis=1))
    np.testing.assert_allclose(proba, np.exp(log_resp), rtol=0, atol=1e-12)
    np.testing.assert_allclose(largest, log_resp.max(axis=1), rtol=0, atol=1e-10)
    assert labels.dtype == np.intp and proba.shape == (n, k)
