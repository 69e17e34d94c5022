"""Stepwise (online) EM: a mini-batch's statistics blended into a running average.

Stepwise EM (Cappé & Moulines 2009; Liang & Klein 2009) keeps a running average ``s``
of the *per-row* sufficient statistics and, for every mini-batch ``B`` (E-step at the
current parameters), updates::

    s <- (1 - step) s + step * S(B) / W(B)          (W(B): the batch's total weight)

then runs the ordinary M-step on ``s``.  The M-step divides every sum by ``n_k``, so a
normalised average is all it needs.  Both terms must be taken around the same points:
the batch's statistics come around the kernel's reference, the running ones around the
previous parameters' means, so both are re-centred (:meth:`SuffStats.recentred`, exact)
onto the current parameters' means first, where the M-step's ``S / n - m m'`` cancels
least.

Step sizes ``step_t = (t + learning_offset) ** -learning_decay`` (``t`` = updates before
this one) satisfy Robbins-Monro's conditions for ``0.5 < learning_decay <= 1`` (the
running average then converges to a stationary point of the likelihood); a constant
step instead forgets old batches geometrically, with a memory of about ``1 / step``
batches, so that the model follows a drifting distribution.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from gmmkit.core.covariance import CovarianceError, get_covariance_type, pack_symmetric
from gmmkit.core.em import e_step
from gmmkit.core.mstep import m_step
from gmmkit.core.params import MixtureParams
from gmmkit.core.suffstats import SuffStats
from gmmkit.engines.base import Engine

#: scikit-learn's online LDA defaults (``learning_offset=10``, ``learning_decay=0.7``):
#: the second batch gets a step of 0.19 (the first one initialises), the 1000th one
#: 0.0079.  Untuned, one pass of 10^7 rows in 10^4-row batches (8 components, 2-D)
#: ended 0.007 % below exact EM's mean log-likelihood per row, and 10^6 rows (16
#: components, 8-D) 0.003 % below (benchmarks/bench_online.py).
DEFAULT_LEARNING_OFFSET = 10.0
DEFAULT_LEARNING_DECAY = 0.7


def step_size(
    n_steps: int,
    learning_offset: float = DEFAULT_LEARNING_OFFSET,
    learning_decay: float = DEFAULT_LEARNING_DECAY,
    learning_rate: float | None = None,
) -> float:
    """Weight of the next batch in the running average.

    Parameters
    ----------
    n_steps : int
        Updates made before this one (at least 1: the first batch initialises the
        average with weight 1).
    learning_offset, learning_decay : float
        ``(n_steps + learning_offset) ** -learning_decay``.
    learning_rate : float, optional
        A constant step instead (exponential forgetting).

    Returns
    -------
    float in (0, 1]
    """
    if learning_rate is not None:
        return float(learning_rate)
    return float(min(1.0, (n_steps + learning_offset) ** -learning_decay))


def canonical_reference(params: MixtureParams) -> np.ndarray:
    """Points the running statistics are kept around, (K, D) float64: every component's
    mean, or for tied (one pooled second moment) the mixture's mean in every row."""
    means = np.asarray(params.means, dtype=np.float64)
    if params.layout == "tied":
        centre = np.asarray(params.weights, dtype=np.float64) @ means
        return np.tile(centre, (len(means), 1))
    return means.copy()


def implied_statistics(
    params: MixtureParams, reg_covar: float, reference: np.ndarray | None = None
) -> SuffStats:
    """Per-row statistics whose M-step gives back ``params``: the expected statistics
    of one row drawn from the mixture, with ``reg_covar`` taken off the covariances.

    Used to enter a model fitted by ``fit`` (or loaded without running statistics) into
    the running average, and to give a re-seeded component statistics that match it.

    Parameters
    ----------
    params : MixtureParams
    reg_covar : float
    reference : ndarray of shape (K, D), optional
        Default :func:`canonical_reference`.

    Returns
    -------
    SuffStats
        ``total_weight`` 1, ``nk`` the weights.
    """
    cov_type = get_covariance_type(params.covariance_type)
    layout = cov_type.layout
    weights = np.asarray(params.weights, dtype=np.float64)
    means = np.asarray(params.means, dtype=np.float64)
    reference = canonical_reference(params) if reference is None else reference
    centred = means - reference
    d = means.shape[1]
    covariances = np.asarray(params.covariances, dtype=np.float64)
    if layout in ("full", "tied"):
        scatter = covariances - reg_covar * np.eye(d)
        outer = centred[:, :, None] * centred[:, None, :]
        if layout == "tied":
            pooled = scatter + np.tensordot(weights, outer, axes=1)
            second = pack_symmetric(pooled)[None, :]
        else:
            second = weights[:, None] * pack_symmetric(scatter + outer)
    elif layout == "diag":
        second = weights[:, None] * (np.maximum(covariances - reg_covar, 0.0) + centred**2)
    else:
        variance = np.maximum(covariances - reg_covar, 0.0)
        second = (weights * (d * variance + np.sum(centred**2, axis=1)))[:, None]
    return SuffStats(
        nk=weights.copy(),
        first=weights[:, None] * centred,
        second=np.ascontiguousarray(second),
        log_likelihood=0.0,
        total_weight=1.0,
        n_samples=1,
        reference=reference,
        worst_log_density=np.inf,
        worst_point=np.zeros(d),
    )


def blend(
    running: SuffStats, batch: SuffStats, step: float, layout: str, reference: np.ndarray
) -> SuffStats:
    """``(1 - step) running + step * batch / batch.total_weight``, around ``reference``.

    Parameters
    ----------
    running : SuffStats
        Per-row statistics (``total_weight`` 1).
    batch : SuffStats
        Sums over one mini-batch.
    step : float in (0, 1]
    layout : str
    reference : ndarray of shape (K, D)

    Returns
    -------
    SuffStats
        Per-row statistics around ``reference``; the batch's log-likelihood, row count
        and worst row.
    """
    old = running.recentred(reference, layout)
    new = batch.recentred(reference, layout)
    scale = step / batch.total_weight
    keep = 1.0 - step
    return SuffStats(
        nk=keep * old.nk + scale * new.nk,
        first=keep * old.first + scale * new.first,
        second=keep * old.second + scale * new.second,
        log_likelihood=batch.log_likelihood,
        total_weight=1.0,
        n_samples=batch.n_samples,
        reference=reference,
        worst_log_density=batch.worst_log_density,
        worst_point=batch.worst_point,
    )


@dataclass(frozen=True)
class OnlineStep:
    """Outcome of one stepwise-EM update.

    Attributes
    ----------
    params : MixtureParams
        Parameters after the M-step (float64).
    running : SuffStats
        The updated per-row running statistics (around the E-step parameters' means).
    lower_bound : float
        Mean (sample-weighted) log-likelihood of the batch under the E-step parameters.
    reseeded : tuple of int
        Components that emptied and were moved to the batch's worst-explained row.
    empty : tuple of int
        All components found empty.
    """

    params: MixtureParams
    running: SuffStats
    lower_bound: float
    reseeded: tuple[int, ...]
    empty: tuple[int, ...]


def online_step(
    engine: Engine,
    params: MixtureParams,
    running: SuffStats | None,
    step: float,
    reg_covar: float,
    allow_reseed: bool = True,
) -> OnlineStep:
    """One stepwise-EM update: E-step on the batch, blend, M-step.

    Parameters
    ----------
    engine : Engine
        The mini-batch (one pass of the chunk kernel).
    params : MixtureParams
        Current parameters (float64): the E-step's.
    running : SuffStats or None
        Per-row running statistics; None starts the average from this batch (``step``
        is then ignored).
    step : float in (0, 1]
    reg_covar : float
    allow_reseed : bool
        Move a component that emptied onto the batch's worst-explained row.

    Returns
    -------
    OnlineStep
    """
    batch = e_step(engine, params)
    if not np.isfinite(batch.log_likelihood):
        raise FloatingPointError(
            "the log-likelihood of the batch is not finite; the current parameters give "
            "zero density to some rows (check for extreme values or increase reg_covar)"
        )
    layout = params.layout
    reference = canonical_reference(params)
    if running is None:
        running, step = batch, 1.0  # weight 0 on it: any statistics with the shapes
    blended = blend(running, batch, step, layout, reference)
    # the emptiness test and a re-seeded component's weight use one row's share of the
    # average (``total_weight / n_samples``): a row of this batch carries step / n
    for_m_step = replace(blended, n_samples=max(1, round(batch.n_samples / step)))
    try:
        result = m_step(
            for_m_step, params.covariance_type, reg_covar, previous=params,
            allow_reseed=allow_reseed,
        )
    except CovarianceError as exc:
        raise ValueError(
            "the M-step failed because some components have ill-defined covariance "
            "(for instance singleton or collapsed samples); decrease n_components or "
            "increase reg_covar"
        ) from exc
    if result.reseeded:
        blended = _with_component_statistics(
            blended, implied_statistics(result.params, reg_covar, reference),
            result.reseeded, layout,
        )
    return OnlineStep(
        params=result.params,
        running=blended,
        lower_bound=batch.log_likelihood / batch.total_weight,
        reseeded=result.reseeded,
        empty=result.empty,
    )


def _with_component_statistics(
    stats: SuffStats, implied: SuffStats, components: tuple[int, ...], layout: str
) -> SuffStats:
    """``stats`` with the rows of ``components`` replaced by ``implied``'s (both around
    the same reference; tied keeps its pooled second moment)."""
    rows = list(components)
    nk, first, second = stats.nk.copy(), stats.first.copy(), stats.second.copy()
    nk[rows] = implied.nk[rows]
    first[rows] = implied.first[rows]
    if layout != "tied":
        second[rows] = implied.second[rows]
    return replace(stats, nk=nk, first=first, second=second)
