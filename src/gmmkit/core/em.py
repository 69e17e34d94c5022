"""The EM loop, identical for every engine: E-step statistics by map-reduce, M-step."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from gmmkit.core.covariance import CovarianceError
from gmmkit.core.kernel import KernelCoefficients, chunk_statistics, kernel_coefficients
from gmmkit.core.mstep import m_step
from gmmkit.core.params import MixtureParams
from gmmkit.core.suffstats import SuffStats
from gmmkit.engines.base import Chunk, Engine


class EmptyComponentWarning(UserWarning):
    """A component lost all its responsibility and was moved (re-seeded)."""


@dataclass
class EMResult:
    """Outcome of one EM run.

    Attributes
    ----------
    params : MixtureParams
        Parameters after the last M-step.
    converged : bool
    n_iter : int
    lower_bound : float
        Mean (sample-weighted) log-likelihood at the last E-step.
    lower_bounds : list of float
        ``lower_bound`` at every iteration.
    reseeded : list of (iteration, component)
    """

    params: MixtureParams
    converged: bool
    n_iter: int
    lower_bound: float
    lower_bounds: list[float] = field(default_factory=list)
    reseeded: list[tuple[int, int]] = field(default_factory=list)


def _stats_of_chunk(coefs: KernelCoefficients, label_weight: float, chunk: Chunk) -> SuffStats:
    return chunk_statistics(coefs, chunk.X, chunk.sample_weight, chunk.labels, label_weight)


def e_step(
    engine: Engine, params: MixtureParams, label_weight: float = 1.0
) -> SuffStats:
    """Statistics of all rows under ``params`` (one pass over the data)."""
    coefs = kernel_coefficients(params, engine.dtype)
    return engine.map_reduce(partial(_stats_of_chunk, coefs, label_weight))


def run_em(
    engine: Engine,
    params: MixtureParams,
    reg_covar: float,
    tol: float,
    max_iter: int,
    label_weight: float = 1.0,
    callback: Callable[[int, float, float], None] | None = None,
    max_reseeds: int | None = None,
) -> EMResult:
    """Expectation-maximisation from ``params`` until the mean log-likelihood changes by
    less than ``tol`` or ``max_iter`` iterations have run (scikit-learn's rule).

    Parameters
    ----------
    engine : Engine
    params : MixtureParams
        Starting parameters.
    reg_covar : float
    tol : float
    max_iter : int
    label_weight : float
        Weight of labelled rows (semi-supervised fits).
    callback : callable, optional
        Called as ``callback(n_iter, lower_bound, change)`` after every iteration.
    max_reseeds : int, optional
        Re-seedings of emptied components allowed (default ``2 * n_components``); past
        that an emptied component keeps its last mean with a near-zero weight.

    Returns
    -------
    EMResult
    """
    covariance_type = params.covariance_type
    if max_reseeds is None:
        max_reseeds = 2 * params.n_components
    lower_bound = -np.inf
    lower_bounds: list[float] = []
    reseeded: list[tuple[int, int]] = []
    reported_empty: set[int] = set()
    converged = False
    n_iter = 0
    with engine.session():
        for n_iter in range(1, max_iter + 1):
            previous_bound = lower_bound
            stats = e_step(engine, params, label_weight)
            if not np.isfinite(stats.log_likelihood):
                raise FloatingPointError(
                    "the log-likelihood is not finite; the data or the initial parameters "
                    "give zero density to some rows (check for extreme values or increase "
                    "reg_covar)"
                )
            allow_reseed = len(reseeded) < max_reseeds
            try:
                step = m_step(
                    stats,
                    covariance_type,
                    reg_covar,
                    previous=params,
                    allow_reseed=allow_reseed,
                )
            except CovarianceError as exc:
                raise ValueError(
                    "Fitting the mixture model failed because some components have "
                    "ill-defined empirical covariance (for instance caused by singleton "
                    "or collapsed samples). Try to decrease the number of components, "
                    "or increase reg_covar."
                ) from exc
            params = step.params
            lower_bound = stats.log_likelihood / stats.total_weight
            lower_bounds.append(lower_bound)
            change = lower_bound - previous_bound
            if callback is not None:
                callback(n_iter, lower_bound, change)
            kept_empty = set(step.empty) - set(step.reseeded) - reported_empty
            if kept_empty and not allow_reseed:
                reported_empty |= kept_empty
                warnings.warn(
                    f"component(s) {sorted(kept_empty)} lost all responsibility at iteration "
                    f"{n_iter}; the re-seeding budget ({max_reseeds}) is spent, so they keep "
                    "their last mean with zero weight (decrease n_components)",
                    EmptyComponentWarning,
                    stacklevel=2,
                )
            if step.reseeded:
                reseeded.extend((n_iter, k) for k in step.reseeded)
                warnings.warn(
                    f"component(s) {list(step.reseeded)} lost all responsibility at "
                    f"iteration {n_iter} and were re-seeded at the worst-explained sample",
                    EmptyComponentWarning,
                    stacklevel=2,
                )
                continue
            if abs(change) < tol:
                converged = True
                break
    if not params.is_finite():  # defensive: the M-step is built never to produce this
        raise FloatingPointError("EM produced non-finite parameters")
    return EMResult(
        params=params,
        converged=converged,
        n_iter=n_iter,
        lower_bound=lower_bound,
        lower_bounds=lower_bounds,
        reseeded=reseeded,
    )
