"""Initial parameters: from k-means, k-means++, random responsibilities, random rows,
or the user's own weights/means/precisions."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gmmkit.core._cache import LRUCache, content_digest
from gmmkit.core.covariance import get_covariance_type
from gmmkit.core.kernel import hard_statistics, partition_statistics
from gmmkit.core.kmeans import kmeans, kmeans_plusplus, nearest_centre
from gmmkit.core.mstep import m_step
from gmmkit.core.params import MixtureParams
from gmmkit.core.suffstats import SuffStats
from gmmkit.engines.base import Chunk, Engine, blockwise

Array = NDArray[np.floating[Any]]

#: Starts :func:`initial_parameters` makes; ``"auto"`` (several of them, see
#: :mod:`gmmkit.core.starts`) is chosen in the estimator.
INIT_METHODS = ("hc", "kmeans", "k-means++", "random", "random_from_data")


def _nearest_stats(
    covariance_type: str, centres: Array, reference: Array, chunk: Chunk
) -> SuffStats:
    labels, _ = nearest_centre(chunk.X, centres, reference)
    return partition_statistics(
        get_covariance_type(covariance_type), chunk.X, labels, len(centres), reference,
        chunk.sample_weight,
    )


#: Random responsibilities are drawn per fixed block of this many rows, each block from
#: its own stream, so they do not depend on how an engine cuts or schedules its chunks.
_RANDOM_BLOCK = 1024


def random_responsibilities(
    seed: int, n_components: int, start: int, n_rows: int
) -> NDArray[np.float64]:
    """Uniform random responsibilities of rows ``start .. start + n_rows``, shape
    (n_rows, K), normalised per row; a row's values depend only on ``seed`` and its index."""
    if n_rows == 0:
        return np.empty((0, n_components))
    first = start // _RANDOM_BLOCK
    last = (start + n_rows - 1) // _RANDOM_BLOCK
    blocks = [
        np.random.default_rng([seed, block]).uniform(size=(_RANDOM_BLOCK, n_components))
        for block in range(first, last + 1)
    ]
    offset = start - first * _RANDOM_BLOCK
    resp = np.concatenate(blocks)[offset : offset + n_rows]
    resp /= resp.sum(axis=1, keepdims=True)
    return resp


def _random_stats(
    covariance_type: str, n_components: int, seed: int, reference: Array, chunk: Chunk
) -> SuffStats:
    resp = random_responsibilities(seed, n_components, chunk.start, len(chunk.X))
    return hard_statistics(
        get_covariance_type(covariance_type), chunk.X, resp, reference, chunk.sample_weight
    )


def _selected_rows_stats(
    covariance_type: str, rows: NDArray[np.intp], reference: Array, chunk: Chunk
) -> SuffStats:
    n = len(chunk.X)
    resp = np.zeros((n, len(rows)))
    local = rows - chunk.start
    inside = (local >= 0) & (local < n)
    resp[local[inside], np.flatnonzero(inside)] = 1.0
    return hard_statistics(
        get_covariance_type(covariance_type), chunk.X, resp, reference, chunk.sample_weight
    )


#: k-means results kept for reuse: model selection starts every covariance model of one
#: K from the same generator state on the same data, and gets the same centres.  Keyed by
#: the data's content (arrays up to _KMEANS_CACHE_BYTES), K and the generator's state.
_KMEANS_CACHE_BYTES = 16 << 20
_kmeans_cache: LRUCache[tuple[Array, Mapping[str, Any]]] = LRUCache(16)


def _shared_kmeans(engine: Engine, n_components: int, rng: np.random.Generator) -> Array:
    """:func:`kmeans`, reused when the in-memory data, ``K`` and the generator's state
    repeat (the generator is left in the state the computation leaves it in)."""
    X = getattr(engine, "X", None)
    if not isinstance(X, np.ndarray) or X.nbytes > _KMEANS_CACHE_BYTES:
        return kmeans(engine, n_components, rng)
    weights = getattr(engine, "sample_weight", None)
    key = (content_digest(X, weights), n_components, repr(rng.bit_generator.state))
    cached = _kmeans_cache.get(key)
    if cached is not None:
        rng.bit_generator.state = cached[1]
        return cached[0].copy()
    centres = kmeans(engine, n_components, rng)
    _kmeans_cache.put(key, (centres.copy(), rng.bit_generator.state))
    return centres


def initial_parameters(
    engine: Engine,
    n_components: int,
    covariance_type: str,
    init_params: str,
    rng: np.random.Generator,
    reg_covar: float,
    weights_init: Array | None = None,
    means_init: Array | None = None,
    precisions_init: Array | None = None,
) -> MixtureParams:
    """Starting parameters for EM, with scikit-learn's semantics.

    Responsibilities from ``init_params`` give weights, means and covariances through
    the M-step; user-supplied ``weights_init``, ``means_init`` and ``precisions_init``
    then replace their counterparts.  When all three are given the data are not read.

    Parameters
    ----------
    engine : Engine
    n_components : int
    covariance_type : str
    init_params : {"hc", "kmeans", "k-means++", "random", "random_from_data"}
        ``"hc"``: mclust's default start: its model-based hierarchical agglomeration
        (on at most 2000 rows), or for one-dimensional data its quantile classes.
    rng : numpy Generator
    reg_covar : float
    weights_init : ndarray of shape (K,), optional
    means_init : ndarray of shape (K, D), optional
    precisions_init : ndarray, optional
        Shape of the covariance type.

    Returns
    -------
    MixtureParams
    """
    if weights_init is not None and means_init is not None and precisions_init is not None:
        return MixtureParams.from_precisions(
            weights_init, means_init, precisions_init, covariance_type
        )

    sample, sample_weight = engine.sample(10_000, rng)
    reference = np.average(np.asarray(sample, dtype=np.float64), axis=0, weights=sample_weight)
    # values a row of the dense starts holds: responsibilities and a feature row
    width = n_components + engine.n_features**2
    if init_params == "hc":
        from gmmkit.core.starts import hc_parameters

        params = hc_parameters(engine, n_components, covariance_type, rng, reg_covar)
        stats = None
    elif init_params == "kmeans":
        centres = _shared_kmeans(engine, n_components, rng)
        stats = engine.nearest_statistics(covariance_type, centres, reference)
    elif init_params == "k-means++":
        seed_rows, seed_weight = engine.sample(100_000, rng)
        centres = kmeans_plusplus(seed_rows, n_components, rng, seed_weight)
        stats = engine.nearest_statistics(covariance_type, centres, reference)
    elif init_params == "random":
        seed = int(rng.integers(2**63 - 1))
        stats = engine.map_reduce(blockwise(
            partial(_random_stats, covariance_type, n_components, seed, reference), width))
    elif init_params == "random_from_data":
        rows = np.sort(rng.choice(engine.n_samples, size=n_components, replace=False))
        stats = engine.map_reduce(
            blockwise(partial(_selected_rows_stats, covariance_type, rows, reference), width))
    else:
        raise ValueError(f"init_params must be one of {INIT_METHODS}, got {init_params!r}")

    if stats is not None:
        params = m_step(stats, covariance_type, reg_covar, allow_reseed=False).params
    if weights_init is None and means_init is None and precisions_init is None:
        return params
    weights = params.weights if weights_init is None else np.asarray(weights_init, np.float64)
    means = params.means if means_init is None else np.asarray(means_init, np.float64)
    if precisions_init is None:
        return MixtureParams(
            weights=weights,
            means=means,
            covariances=params.covariances,
            precisions_cholesky=params.precisions_cholesky,
            covariance_type=covariance_type,
        )
    return MixtureParams.from_precisions(weights, means, precisions_init, covariance_type)
