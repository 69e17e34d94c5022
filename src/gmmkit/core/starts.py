"""Robust starting parameters: several kinds of start, short EM runs, continue the best.

This is the "em-EM" strategy of Biernacki, Celeux & Govaert (2003): EM from a single
start stops at the local optimum nearest to it, and which optimum a k-means or a
hierarchical start lands near varies with the data.  Every start in :data:`PLAN`
(mclust's model-based hierarchical agglomeration, k-means, several k-means++ draws)
gets a few accelerated EM passes; the best third (:data:`KEEP_EVERY`) continue to
convergence and the highest log-likelihood wins.  On large data the short runs use a
random sample of :data:`SHORT_RUN_ROWS` rows, so the search costs a bounded amount
whatever N is.
"""

from __future__ import annotations

import warnings
import weakref
from functools import cmp_to_key, partial
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import lapack

from gmmkit.core._cache import LRUCache, content_digest
from gmmkit.core.covariance import get_covariance_type
from gmmkit.core.em import EmptyComponentWarning, EMResult, run_em
from gmmkit.core.hc import hc_partitions
from gmmkit.core.kernel import fused_module, partition_statistics
from gmmkit.core.mstep import m_step
from gmmkit.core.params import MixtureParams
from gmmkit.core.suffstats import ROUNDING_TIE
from gmmkit.engines.base import Engine

#: Kinds of start, in order: the first ``n_starts`` are used, and past the end further
#: independent k-means++ draws.
PLAN = ("hc", "kmeans", "k-means++", "k-means++", "k-means++", "k-means++")
#: Starts :class:`~gmmkit.GaussianMixture` runs by default (``n_starts``).
DEFAULT_STARTS = len(PLAN)
#: EM passes each start gets before the comparison.
SHORT_PASSES = 10
#: One start in this many (at least one) is continued to convergence.
KEEP_EVERY = 3
#: Starts on wide data (fewer rows than features, full or tied covariances): there a
#: short run's ten passes cost ten M-steps of ``K D^3`` each -- far more than the
#: passes over the data they are meant to save -- and every run kept for comparison
#: holds ``2 K D^2`` numbers (128 MB at K = 2, D = 2000); mclust's start and k-means.
WIDE_STARTS = 2
#: Rows of the sample the short runs use on larger data (all rows below this).
SHORT_RUN_ROWS = 50_000
#: Rows the hierarchical agglomeration runs on (mclust's default subset size).
HC_ROWS = 2000
#: Agglomerations kept for reuse (model selection fits many K and models to one sample).
_hc_cache: LRUCache[dict[int, NDArray[np.intp]]] = LRUCache(8)


def hc_labels(X: NDArray[Any], n_components: int) -> NDArray[np.intp]:
    """mclust's default hierarchical start for ``X``: VVV agglomeration of the scaled SVD
    of the data (V for one-dimensional data), cut at ``n_components`` clusters.

    One agglomeration serves K = 1 .. max(9, K) and is cached by the data's content, so
    model selection over many models and K runs it once.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    top = max(9, n_components)
    key = (content_digest(X), top)
    cached = _hc_cache.get(key)
    if cached is None:
        model = "V" if X.shape[1] == 1 else "VVV"
        ks = range(1, min(top, len(X)) + 1)
        cached = hc_partitions(X, ks, model=model, use="VARS" if X.shape[1] == 1 else "SVD")
        _hc_cache.put(key, cached)
    return cached[n_components]


def quantile_labels(x: NDArray[Any], n_components: int) -> NDArray[np.intp]:
    """mclust's start for one-dimensional data (``qclass``): classes between the
    ``k / K`` quantiles of ``x``."""
    edges = np.quantile(x, np.linspace(0.0, 1.0, n_components + 1)[1:-1])
    labels = np.searchsorted(edges, x, side="left")
    if len(np.unique(labels)) < n_components:  # ties at the quantiles: fall back to ranks
        labels = np.minimum(np.argsort(np.argsort(x, kind="stable")) * n_components // len(x),
                            n_components - 1)
    return labels.astype(np.intp)


def hc_rows(engine: Engine, rng: np.random.Generator) -> tuple[NDArray[Any], NDArray[np.float64]]:
    """The rows the agglomeration sees: all of them up to :data:`HC_ROWS`, else a sample
    (and their weights)."""
    n = engine.n_samples
    if n <= HC_ROWS:
        try:
            rows = np.asarray(engine.take(np.arange(n)))
        except NotImplementedError:
            pass
        else:
            weights = getattr(engine, "sample_weight", None)
            if weights is None:
                return rows, np.ones(n)
            weights = np.asarray(weights, np.float64)
            kept = weights > 0  # a zero-weight row is not part of the data
            return rows[kept], weights[kept]
    return engine.sample(HC_ROWS, rng)


def hc_parameters(
    engine: Engine,
    n_components: int,
    covariance_type: str,
    rng: np.random.Generator,
    reg_covar: float,
) -> MixtureParams:
    """Parameters of ``covariance_type`` from the hierarchical partition's classes."""
    rows, weights = hc_rows(engine, rng)
    if len(rows) < n_components:
        raise ValueError(
            f"the hierarchical start needs at least {n_components} distinct rows, "
            f"got {len(rows)}"
        )
    layout = get_covariance_type(covariance_type).layout
    # the fit's compiled E-step loads numba anyway: then the agglomeration runs compiled
    fused_module(layout, rows.shape[1], n_components)
    labels = (
        quantile_labels(np.asarray(rows)[:, 0], n_components)
        if rows.shape[1] == 1
        else hc_labels(rows, n_components)
    )
    rows64 = np.asarray(rows, dtype=np.float64)
    reference = np.average(rows64, axis=0, weights=weights)
    stats = partition_statistics(
        get_covariance_type(covariance_type), rows64, labels, n_components, reference,
        weights,
    )
    return m_step(stats, covariance_type, reg_covar, allow_reseed=False).params


def _seen_before(params: MixtureParams, seen: list[NDArray[Any]]) -> bool:
    """Whether ``params``' means equal (up to order, to 1e-9 of their spread) one of the
    ``seen`` mean arrays; appends them when not."""
    means = params.means[np.lexsort(params.means.T[::-1])]
    scale = 1e-9 * (np.abs(means).max() + 1.0)
    for other in seen:
        ordered = other[np.lexsort(other.T[::-1])]
        if np.allclose(means, ordered, rtol=0.0, atol=scale):
            return True
    seen.append(params.means)
    return False


def multistart(
    engine: Engine,
    n_components: int,
    covariance_type: str,
    rng: np.random.Generator,
    reg_covar: float,
    tol: float | None,
    max_iter: int,
    accelerate: bool,
    label_weight: float = 1.0,
    callback: Any = None,
    n_starts: int = DEFAULT_STARTS,
) -> EMResult:
    """Fit from the best of ``n_starts`` starts (see the module's description).

    Returns
    -------
    EMResult
        Of the best start; ``n_iter``, ``lower_bounds`` and ``reseeded`` cover its short
        run too when that ran on the same data (not on a sample).
    """
    from gmmkit.core.init import initial_parameters

    short_engine = engine
    if engine.n_samples > SHORT_RUN_ROWS:
        short_engine = engine.sample_engine(SHORT_RUN_ROWS, rng)
    make = partial(
        initial_parameters, short_engine, n_components, covariance_type, rng=rng,
        reg_covar=reg_covar,
    )
    short: list[EMResult] = []
    seen: list[NDArray[Any]] = []
    error: Exception | None = None
    # one component has one optimum: any start reaches it
    plan = (*PLAN, *["k-means++"] * max(0, n_starts - len(PLAN)))[:n_starts]
    if n_components == 1:
        plan = ("kmeans",)
    elif _wide(engine.n_samples, engine.n_features, covariance_type):
        plan = plan[:WIDE_STARTS]
    n_kept = max(1, len(plan) // KEEP_EVERY)
    # a fit never runs more than max_iter passes on the data, short runs included
    short_passes = min(SHORT_PASSES, max_iter) if short_engine is engine else SHORT_PASSES
    for kind in plan:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", EmptyComponentWarning)
                start = make(init_params=kind)
                if _seen_before(start, seen):  # k-means and its ++ draws often agree
                    continue
                short.append(
                    run_em(
                        short_engine, start, reg_covar, tol=None, max_iter=short_passes,
                        label_weight=label_weight, accelerate=True,
                    )
                )
                del start
                # only the runs that can still be continued stay alive: each holds
                # K (D, D) matrices twice (128 MB at K = 2, D = 2000)
                short = _leaders(short, n_kept)
        except (ValueError, FloatingPointError) as exc:
            error = exc
    if not short:
        assert error is not None
        raise error
    kept = short
    best: EMResult | None = None
    continued: list[EMResult] = []  # short runs already continued (or skipped as such)
    for candidate in kept:
        budget = max_iter - candidate.n_passes if short_engine is engine else max_iter
        if budget <= 0:  # max_iter spent on the short runs: keep the best of them
            if tol is not None:  # they stopped by the default rule, not the caller's tol
                candidate.converged = False
            if best is None or _better(candidate, best):
                best = candidate
            continue
        if best is not None:
            # a runner-up gets as many passes as the winner needed (x RACE_FACTOR), and
            # goes on only if it is ahead by then: a slow crawl behind the best is dropped
            budget = min(budget, max(RACE_MIN_PASSES, RACE_FACTOR * best.n_passes))
            # one near a start already continued is skipped: it would end at the same
            # optimum (unless the best run is collapsed: a sound run beats it, _compare)
            if not collapsed(best.params) and _same_optimum(candidate, continued):
                continue
        continued.append(candidate)
        result = _continue(engine, candidate, short_engine is engine, reg_covar, tol, budget,
                           label_weight, accelerate, callback)
        if best is not None and not result.converged and budget < max_iter:
            if not _better(result, best):
                continue
            result = _continue(engine, result, True, reg_covar, tol,
                               max_iter - result.n_passes, label_weight, accelerate, callback)
        if best is None or _better(result, best):
            best = result
    assert best is not None
    return best


def _wide(n_samples: int, n_features: int, covariance_type: str) -> bool:
    """Fewer rows than features with (D, D) covariances: parameter work dominates."""
    layout = get_covariance_type(covariance_type).layout
    return layout in ("full", "tied") and n_samples < n_features


def _leaders(runs: list[EMResult], n_kept: int) -> list[EMResult]:
    """The ``n_kept`` best-ranked runs with distinct means, best first.

    A solution with a component collapsed onto a few repeated values (the likelihood's
    spikes on integer-valued data) ranks after every sound one.  A run left out now is
    never chosen later (later runs only push it further down, and a duplicate stays
    behind the run it duplicates), so calling this after every new run keeps exactly
    what one call on all runs would.
    """
    kept: list[EMResult] = []
    # stable: ties keep the order of the plan
    for candidate in sorted(runs, key=cmp_to_key(_compare)):
        if len(kept) == n_kept:
            break
        if not _seen_before(candidate.params, [k.params.means for k in kept]):
            kept.append(candidate)
    return kept


#: Passes a runner-up start gets, relative to the best one's (at least RACE_MIN_PASSES).
RACE_FACTOR = 3
RACE_MIN_PASSES = 20
#: Relative distance under which a runner-up's short-run parameters are those of a start
#: already continued: means within this many of the other's standard deviations, weights
#: and (co)variances within this fraction (of the variances' geometric means).
SAME_OPTIMUM = 0.02


def _variances(params: MixtureParams) -> NDArray[np.float64]:
    """Per-component, per-feature variances, shape (K, D)."""
    cov = np.asarray(params.covariances, dtype=np.float64)
    k, d = params.n_components, params.n_features
    if params.layout == "full":
        return np.einsum("kii->ki", cov).copy()
    if params.layout == "tied":
        return np.tile(np.diag(cov), (k, 1))
    if params.layout == "diag":
        return cov.copy()
    return np.repeat(cov[:, None], d, axis=1)


def _same_optimum(run: EMResult, others: list[EMResult]) -> bool:
    """Whether ``run``'s parameters equal one of ``others``' up to the order of the
    components and :data:`SAME_OPTIMUM` (k-means and k-means++ starts often reach one
    optimum by slightly different paths: EM from two such nearby points ends at the
    same optimum, and which of the two stops a hair higher is decided by the slack of
    the convergence rule, not by a better fit)."""
    return any(_close(run.params, other.params) for other in others)


def _close(a: MixtureParams, b: MixtureParams) -> bool:
    if a.n_components != b.n_components or a.layout != b.layout:
        return False
    sd = np.sqrt(np.maximum(_variances(b), np.finfo(np.float64).tiny))
    # each of a's components against b's nearest one: the largest standardised mean
    # difference over the features (one component at a time: no (K, K, D) block)
    match = np.empty(a.n_components, dtype=np.intp)
    for i, mean in enumerate(a.means):
        gaps = (np.abs(b.means - mean) / sd).max(axis=1)
        match[i] = np.argmin(gaps)
        if gaps[match[i]] > SAME_OPTIMUM:
            return False
    if len(np.unique(match)) != a.n_components:
        return False
    if np.any(np.abs(a.weights - b.weights[match]) > SAME_OPTIMUM * b.weights[match]):
        return False
    cov_a = np.asarray(a.covariances, dtype=np.float64)
    cov_b = np.asarray(b.covariances, dtype=np.float64)
    if a.layout == "full":
        cov_b = cov_b[match]
        scale = sd[match][:, :, None] * sd[match][:, None, :]
    elif a.layout == "tied":
        scale = np.outer(sd[0], sd[0])
    else:
        cov_b = cov_b[match]
        scale = cov_b
    return bool(np.all(np.abs(cov_a - cov_b) <= SAME_OPTIMUM * scale))


def _compare(result: EMResult, other: EMResult) -> int:
    """Order of runs: sound before collapsed, then the higher log-likelihood; -1 when
    ``result`` comes first, 0 for a tie.  Log-likelihoods within rounding of each other
    (:data:`~gmmkit.core.suffstats.ROUNDING_TIE`) tie, and ties keep the order of the plan:
    on degenerate data several starts reach one optimum with its components permuted,
    and rounding that differs between engines (NumPy, torch on a GPU) must not pick
    another of them."""
    sound = (not collapsed(result.params), not collapsed(other.params))
    if sound[0] != sound[1]:
        return -1 if sound[0] else 1
    if result.lower_bound > _tie_limit_above(other.lower_bound):
        return -1
    if other.lower_bound > _tie_limit_above(result.lower_bound):
        return 1
    return 0


def _tie_limit_above(value: float) -> float:
    return value + ROUNDING_TIE * (1.0 + abs(value)) if np.isfinite(value) else value


def _better(result: EMResult, other: EMResult) -> bool:
    return _compare(result, other) < 0


def _continue(
    engine: Engine,
    previous: EMResult,
    same_path: bool,
    reg_covar: float,
    tol: float | None,
    max_iter: int,
    label_weight: float,
    accelerate: bool,
    callback: Any,
) -> EMResult:
    """EM from ``previous.params``; when ``same_path`` (the same data), the result
    reports ``previous``'s iterations too."""
    result = run_em(
        engine, previous.params, reg_covar, tol=tol, max_iter=max(max_iter, 1),
        label_weight=label_weight, accelerate=accelerate, callback=callback,
    )
    if same_path:
        result.reseeded = previous.reseeded + [
            (iteration + previous.n_iter, k) for iteration, k in result.reseeded
        ]
        result.n_iter += previous.n_iter
        result.n_passes += previous.n_passes
        result.lower_bounds[:0] = previous.lower_bounds
    return result


#: A component whose variance along some direction is below this fraction of the
#: mixture's is collapsed (the same default as model selection's degeneracy flag).
COLLAPSE_RATIO = 1e-4


_COLLAPSED: weakref.WeakKeyDictionary[MixtureParams, bool] = weakref.WeakKeyDictionary()


def collapsed(params: MixtureParams) -> bool:
    """Whether some component's variance along some direction is below
    :data:`COLLAPSE_RATIO` of the whole mixture's along it.

    The eigenvalues of ``L^-1 C_k L^-T`` (``L L'`` the mixture's covariance) are all at
    least ``r`` exactly when ``C_k - r L L'`` is positive semi-definite, which one
    Cholesky factorisation per component tells (an eigendecomposition and two GEMMs
    per component took seconds at ``D = 2000``).  Memoised per parameters object: the
    ranking of starts asks about the same runs repeatedly.
    """
    known = _COLLAPSED.get(params)
    if known is None:
        known = _COLLAPSED[params] = _collapsed(params)
    return known


def _collapsed(params: MixtureParams) -> bool:
    k, d = params.n_components, params.n_features
    cov = np.asarray(params.covariances)
    if params.layout == "tied":
        return False  # one shared matrix cannot collapse onto one component's values
    if params.layout == "full":
        mats = cov
    elif params.layout == "diag":
        mats = np.zeros((k, d, d))
        mats[:, np.arange(d), np.arange(d)] = cov
    else:
        mats = cov[:, None, None] * np.eye(d)
    centre = params.weights @ params.means
    offsets = params.means - centre
    total = np.tensordot(params.weights, mats, axes=1) + (offsets.T * params.weights) @ offsets
    if not np.all(np.isfinite(total)) or lapack.dpotrf(total, lower=1)[1] != 0:
        return False
    for mat in mats:
        if lapack.dpotrf(mat - COLLAPSE_RATIO * total, lower=1)[1] != 0:
            return True
    return False
