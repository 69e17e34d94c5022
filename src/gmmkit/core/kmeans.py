"""k-means for initialisation, on the same chunked-statistics pattern as EM.

Seeding is greedy k-means++ (as scikit-learn) on the data, or on a uniform sample
when the data are large; Lloyd iterations then stream over all chunks through the
engine, so they run out of core and on Dask unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gmmkit.engines.base import Chunk, Engine

Array = NDArray[np.floating[Any]]

#: k-means++ seeding runs on at most this many rows (a uniform sample beyond it).
SEEDING_SAMPLE = 100_000


def squared_distances(X: Array, centres: Array) -> Array:
    """Squared Euclidean distances (n, K), computed by one GEMM and clipped at zero."""
    d2 = np.einsum("ij,ij->i", X, X)[:, None] - 2.0 * (X @ centres.T)
    d2 += np.einsum("ij,ij->i", centres, centres)[None, :]
    np.maximum(d2, 0.0, out=d2)
    return d2


def _weighted_pick(cumulative: Array, values: Array) -> NDArray[np.intp]:
    """Inverse-CDF selection: integer weights act exactly as repeated rows."""
    idx = np.searchsorted(cumulative, values, side="left")
    return np.minimum(idx, len(cumulative) - 1)


def kmeans_plusplus(
    X: Array,
    n_clusters: int,
    rng: np.random.Generator,
    sample_weight: Array | None = None,
    n_local_trials: int | None = None,
) -> Array:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; scikit-learn's variant).

    Parameters
    ----------
    X : ndarray of shape (n, D)
    n_clusters : int
    rng : numpy Generator
    sample_weight : ndarray of shape (n,), optional
    n_local_trials : int, optional
        Candidates tried per centre; default ``2 + log(n_clusters)``.

    Returns
    -------
    ndarray of shape (n_clusters, D), float64
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    centres = np.empty((n_clusters, X.shape[1]))
    cum_w = np.cumsum(w)
    first = _weighted_pick(cum_w, rng.uniform(size=1) * cum_w[-1])[0]
    centres[0] = X[first]
    closest = squared_distances(X, centres[:1])[:, 0]
    potential = float(closest @ w)
    for c in range(1, n_clusters):
        cumulative = np.cumsum(w * closest)
        if cumulative[-1] <= 0.0:  # fewer distinct points than clusters
            cumulative = cum_w
        picks = _weighted_pick(cumulative, rng.uniform(size=n_local_trials) * cumulative[-1])
        trial = squared_distances(X, X[picks]).T  # (trials, n)
        np.minimum(closest, trial, out=trial)
        trial_potential = trial @ w
        best = int(np.argmin(trial_potential))
        potential = float(trial_potential[best])
        closest = trial[best]
        centres[c] = X[picks[best]]
    del potential
    return centres


@dataclass(frozen=True, eq=False)
class KMeansStats:
    """Additive statistics of one Lloyd pass.

    Attributes
    ----------
    counts : ndarray of shape (K,)
        Weighted cluster sizes.
    sums : ndarray of shape (K, D)
        Weighted sums of ``x - reference`` per cluster.
    inertia : float
        Weighted sum of squared distances to the nearest centre.
    feature_sq : ndarray of shape (D,)
        Weighted sums of ``(x - reference)**2`` (for the data-scaled tolerance).
    total_weight : float
    farthest_distance : float
        Largest squared distance to a nearest centre (where an empty cluster moves).
    farthest_point : ndarray of shape (D,)
    """

    counts: Array
    sums: Array
    inertia: float
    feature_sq: Array
    total_weight: float
    farthest_distance: float
    farthest_point: Array

    def __add__(self, other: KMeansStats) -> KMeansStats:
        far = self if self.farthest_distance >= other.farthest_distance else other
        return KMeansStats(
            counts=self.counts + other.counts,
            sums=self.sums + other.sums,
            inertia=self.inertia + other.inertia,
            feature_sq=self.feature_sq + other.feature_sq,
            total_weight=self.total_weight + other.total_weight,
            farthest_distance=far.farthest_distance,
            farthest_point=far.farthest_point,
        )


def nearest_centre(X: Array, centres: Array, reference: Array) -> tuple[NDArray[np.intp], Array]:
    """Index of and squared distance to the nearest centre for each row."""
    xc = np.asarray(X, dtype=np.float64) - reference
    d2 = squared_distances(xc, centres - reference)
    labels = np.argmin(d2, axis=1)
    return labels, d2[np.arange(len(labels)), labels]


def lloyd_chunk(centres: Array, reference: Array, chunk: Chunk) -> KMeansStats:
    """Assignment step on one chunk and its additive statistics."""
    xc = np.asarray(chunk.X, dtype=np.float64) - reference
    k = centres.shape[0]
    d2 = squared_distances(xc, centres - reference)
    labels = np.argmin(d2, axis=1)
    mind = d2[np.arange(len(labels)), labels]
    w = np.ones(len(xc)) if chunk.sample_weight is None else chunk.sample_weight
    onehot = np.zeros((len(xc), k))
    onehot[np.arange(len(xc)), labels] = w
    far = int(np.argmax(np.where(w > 0, mind, -1.0))) if len(xc) else 0
    return KMeansStats(
        counts=onehot.sum(axis=0),
        sums=onehot.T @ xc,
        inertia=float(mind @ w),
        feature_sq=(xc * xc).T @ w,
        total_weight=float(w.sum()),
        farthest_distance=float(mind[far]) if len(xc) else -1.0,
        farthest_point=np.asarray(chunk.X[far], dtype=np.float64) if len(xc) else reference,
    )


def kmeans(
    engine: Engine,
    n_clusters: int,
    rng: np.random.Generator,
    max_iter: int = 100,
    tol: float = 1e-4,
) -> Array:
    """k-means++ seeding then Lloyd iterations streamed through ``engine``.

    Parameters
    ----------
    engine : Engine
    n_clusters : int
    rng : numpy Generator
    max_iter : int
        Lloyd passes at most.
    tol : float
        Stop when the squared centre shift is below ``tol`` times the mean feature
        variance (scikit-learn's rule).

    Returns
    -------
    ndarray of shape (n_clusters, D), float64
    """
    sample, sample_weight = engine.sample(SEEDING_SAMPLE, rng)
    centres = kmeans_plusplus(sample, n_clusters, rng, sample_weight)
    reference = np.average(np.asarray(sample, dtype=np.float64), axis=0, weights=sample_weight)
    threshold: float | None = None
    for _ in range(max_iter):
        stats: KMeansStats = engine.map_reduce(partial(lloyd_chunk, centres, reference))
        if threshold is None:
            mean = stats.sums.sum(axis=0) / stats.total_weight
            variance = stats.feature_sq / stats.total_weight - mean**2
            threshold = tol * float(np.mean(np.maximum(variance, 0.0)))
        new = centres.copy()
        filled = stats.counts > 0
        new[filled] = reference + stats.sums[filled] / stats.counts[filled, None]
        empty = np.flatnonzero(~filled)
        if len(empty):
            new[empty[0]] = stats.farthest_point
        shift = float(np.sum((new - centres) ** 2))
        centres = new
        if shift <= threshold and not len(empty):
            break
    return centres
