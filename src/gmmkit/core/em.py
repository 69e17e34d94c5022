"""The EM loop, identical for every engine: E-step statistics by map-reduce, M-step."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from gmmkit.core.covariance import CovarianceError
from gmmkit.core.kernel import kernel_coefficients
from gmmkit.core.mstep import MStepResult, m_step
from gmmkit.core.params import MixtureParams
from gmmkit.core.suffstats import SuffStats
from gmmkit.engines.base import Engine


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
        EM iterations: entries of ``lower_bounds``.
    lower_bound : float
        Mean (sample-weighted) log-likelihood at the last E-step.
    lower_bounds : list of float
        ``lower_bound`` at every iteration.
    reseeded : list of (iteration, component)
    n_passes : int
        Passes over the data (E-steps): ``n_iter`` plus SQUAREM's extrapolated ones.
    """

    params: MixtureParams
    converged: bool
    n_iter: int
    lower_bound: float
    lower_bounds: list[float] = field(default_factory=list)
    reseeded: list[tuple[int, int]] = field(default_factory=list)
    n_passes: int = 0


def e_step(
    engine: Engine, params: MixtureParams, label_weight: float = 1.0
) -> SuffStats:
    """Statistics of all rows under ``params`` (one pass over the data)."""
    coefs = kernel_coefficients(
        params, engine.dtype, engine.n_samples, fused=engine.fused_passes(params))
    return engine.kernel_statistics(coefs, label_weight)


#: Default convergence rule: stop when an EM step changes the total log-likelihood by
#: less than this fraction of it (``|dL| <= RTOL (1 + |L|)``, mclust's form with a
#: tighter tolerance than its 1e-5).  Unlike scikit-learn's absolute change of the *mean*
#: log-likelihood it does not depend on how the log-likelihood scales with N or with the
#: units of the data.
DEFAULT_RTOL = 1e-9
#: The same rule's floor when the kernel computes in float32: its log-densities carry
#: rounding of about 1e-7 relative, so a tighter test would never be met.
FLOAT32_RTOL = 1e-6


def squarem_pays(n_samples: int, params: MixtureParams) -> bool:
    """Whether SQUAREM's saved passes are worth its own work and memory.

    An extrapolation costs ``K D^3`` (log-Cholesky coordinates of three iterates and
    back) and holds four parameter sets of ``K D^2`` numbers; a pass over the data
    costs ``N K D^2`` for full and tied covariances.  With fewer rows than features
    (wide data: N = 50, D = 2000 held 1 GB of (D, D) matrices) a pass is the cheaper
    of the two and plain EM is faster.  Diagonal and spherical models always gain.
    """
    return params.layout not in ("full", "tied") or n_samples >= params.n_features


def run_em(
    engine: Engine,
    params: MixtureParams,
    reg_covar: float,
    tol: float | None,
    max_iter: int,
    label_weight: float = 1.0,
    callback: Callable[[int, float, float], None] | None = None,
    max_reseeds: int | None = None,
    accelerate: bool = False,
    rtol: float = DEFAULT_RTOL,
) -> EMResult:
    """Expectation-maximisation from ``params`` until converged or ``max_iter`` passes.

    Parameters
    ----------
    engine : Engine
    params : MixtureParams
        Starting parameters.
    reg_covar : float
    tol : float or None
        scikit-learn's rule: stop when the mean log-likelihood changes by less than
        ``tol``.  ``None``: stop when the total log-likelihood changes by at most ``rtol``
        of its size (``|dL| <= rtol (1 + |L|)``).
    max_iter : int
        Passes over the data (E-steps), extrapolated ones included.
    label_weight : float
        Weight of labelled rows (semi-supervised fits).
    callback : callable, optional
        Called as ``callback(n_iter, lower_bound, change)`` after every EM iteration.
    max_reseeds : int, optional
        Re-seedings of emptied components allowed (default ``2 * n_components``); past
        that an emptied component keeps its last mean with a near-zero weight.
    accelerate : bool
        SQUAREM (Varadhan & Roland 2008): after two EM steps, extrapolate along their
        path and take one EM step from there; kept only when the log-likelihood there is
        at least that after the plain steps, so the iterates' log-likelihood never
        decreases.  Engines see only E-steps at other parameters.  Plain EM runs instead
        when a pass costs less than the extrapolation (:func:`squarem_pays`).
    rtol : float
        At least :data:`FLOAT32_RTOL` for float32 engines.

    Returns
    -------
    EMResult
    """
    run = _EMRun(engine, params.covariance_type, reg_covar, tol, rtol, max_iter,
                 label_weight, callback,
                 2 * params.n_components if max_reseeds is None else max_reseeds)
    with engine.session():
        if accelerate and squarem_pays(engine.n_samples, params):
            run.squarem(params)
        else:
            run.plain(params)
    if not run.params.is_finite():  # defensive: the M-step is built never to produce this
        raise FloatingPointError("EM produced non-finite parameters")
    return EMResult(
        params=run.params,
        converged=run.converged,
        n_iter=len(run.lower_bounds),
        lower_bound=run.lower_bound,
        lower_bounds=run.lower_bounds,
        reseeded=run.reseeded,
        n_passes=run.n_iter,
    )


class _EMRun:
    """State of one EM run: iteration count, log-likelihood record, re-seeding budget."""

    def __init__(
        self,
        engine: Engine,
        covariance_type: str,
        reg_covar: float,
        tol: float | None,
        rtol: float,
        max_iter: int,
        label_weight: float,
        callback: Callable[[int, float, float], None] | None,
        max_reseeds: int,
    ) -> None:
        self.engine = engine
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.tol = tol
        self.rtol = max(rtol, FLOAT32_RTOL) if engine.dtype == np.float32 else rtol
        self.max_iter = max_iter
        self.label_weight = label_weight
        self.callback = callback
        self.max_reseeds = max_reseeds
        self.n_iter = 0
        self.lower_bound = -np.inf
        self.lower_bounds: list[float] = []
        self.reseeded: list[tuple[int, int]] = []
        self.reported_empty: set[int] = set()
        self.converged = False
        self.total_weight = 1.0
        self.params: MixtureParams

    def step(self, params: MixtureParams) -> tuple[float, MStepResult]:
        """One E-step at ``params`` (a pass over the data) and the M-step after it."""
        self.n_iter += 1
        stats = e_step(self.engine, params, self.label_weight)
        self.total_weight = stats.total_weight
        if not np.isfinite(stats.log_likelihood):
            raise FloatingPointError(
                "the log-likelihood is not finite; the data or the initial parameters "
                "give zero density to some rows (check for extreme values or increase "
                "reg_covar)"
            )
        allow_reseed = len(self.reseeded) < self.max_reseeds
        try:
            result = m_step(
                stats, self.covariance_type, self.reg_covar, previous=params,
                allow_reseed=allow_reseed,
            )
        except CovarianceError as exc:
            raise ValueError(
                "Fitting the mixture model failed because some components have "
                "ill-defined empirical covariance (for instance caused by singleton "
                "or collapsed samples). Try to decrease the number of components, "
                "or increase reg_covar."
            ) from exc
        kept_empty = set(result.empty) - set(result.reseeded) - self.reported_empty
        if kept_empty and not allow_reseed:
            self.reported_empty |= kept_empty
            warnings.warn(
                f"component(s) {sorted(kept_empty)} lost all responsibility at iteration "
                f"{self.n_iter}; the re-seeding budget ({self.max_reseeds}) is spent, so "
                "they keep their last mean with zero weight (decrease n_components)",
                EmptyComponentWarning,
                stacklevel=4,
            )
        if result.reseeded:
            # numbered as the iteration this step records (extrapolated passes are not)
            self.reseeded.extend((len(self.lower_bounds) + 1, k) for k in result.reseeded)
            warnings.warn(
                f"component(s) {list(result.reseeded)} lost all responsibility at "
                f"iteration {self.n_iter} and were re-seeded at the worst-explained sample",
                EmptyComponentWarning,
                stacklevel=4,
            )
        return stats.log_likelihood / stats.total_weight, result

    def record(self, lower_bound: float, result: MStepResult) -> bool:
        """Keep an EM iterate; True when it meets the convergence rule."""
        change = lower_bound - self.lower_bound
        self.lower_bound = lower_bound
        self.lower_bounds.append(lower_bound)
        self.params = result.params
        if self.callback is not None:
            self.callback(len(self.lower_bounds), lower_bound, change)
        if result.reseeded:
            return False
        if self.tol is not None:
            done = abs(change) < self.tol
        else:
            done = abs(change) <= self.rtol * (1.0 / self.total_weight + abs(lower_bound))
        self.converged = bool(done)
        return self.converged

    def plain(self, params: MixtureParams) -> None:
        self.params = params
        while self.n_iter < self.max_iter:
            lower_bound, result = self.step(self.params)
            if self.record(lower_bound, result):
                return

    def squarem(self, params: MixtureParams) -> None:
        """SQUAREM with the SqS3 step length and its adaptive upper bound (R's
        ``SQUAREM::squarem1`` defaults: steps in [1, step_max], step_max x4 when used)."""
        self.params = params
        space = _ParameterSpace(params)
        step_max = 1.0
        start = params
        guard, fallback = -np.inf, None
        while self.n_iter < self.max_iter:
            lower_bound, result = self.step(start)
            if lower_bound < guard and fallback is not None:
                # the step from the extrapolated point ended below the plain path
                start, guard, fallback, step_max = fallback, -np.inf, None, 1.0
                continue
            if self.record(lower_bound, result) or result.reseeded:
                start = result.params
                if self.converged:
                    return
                continue
            first = result.params
            if self.n_iter >= self.max_iter:
                return
            lower_bound_1, result = self.step(first)
            if self.record(lower_bound_1, result) or result.reseeded:
                start = result.params
                if self.converged:
                    return
                continue
            second = result.params
            alpha, candidate = space.extrapolate(start, first, second, step_max)
            start, guard, fallback = second, lower_bound_1, None
            if candidate is None or self.n_iter >= self.max_iter:
                if alpha >= step_max:  # the bound held the step back: allow longer ones
                    step_max *= 4.0
                continue
            lower_bound_x, result = self.step(candidate)
            if np.isfinite(lower_bound_x) and lower_bound_x >= lower_bound_1 and not (
                result.reseeded
            ):
                start, fallback = result.params, second
                if alpha >= step_max:
                    step_max *= 4.0
            elif alpha >= step_max:
                step_max = max(1.0, step_max / 4.0)


class _ParameterSpace:
    """Unconstrained coordinates of mixture parameters for extrapolation: log weights,
    means in units of the data's spread, log-Cholesky factors (log variances) of the
    covariances in the same units.  Any point maps back to valid parameters."""

    def __init__(self, params: MixtureParams) -> None:
        self.covariance_type = params.covariance_type
        self.layout = params.layout
        d = params.n_features
        full = np.asarray(params.covariances)
        if self.layout == "full":
            spread = np.einsum("k,kii->i", params.weights, full)
        elif self.layout == "tied":
            spread = np.diag(full).copy()
        elif self.layout == "diag":
            spread = params.weights @ full
        else:
            spread = np.full(d, params.weights @ full)
        spread = spread + params.weights @ (params.means - params.weights @ params.means) ** 2
        self.scale = np.sqrt(np.maximum(spread, np.finfo(np.float64).tiny))
        self.outer = np.multiply.outer(self.scale, self.scale)  # (D, D) covariance units
        self.centre = params.weights @ params.means
        self.tril = np.tril_indices(d)
        self.diagonal = self.tril[0] == self.tril[1]

    def vector(self, params: MixtureParams) -> NDArray[np.float64]:
        with np.errstate(divide="ignore"):
            parts = [np.log(params.weights), ((params.means - self.centre) / self.scale).ravel()]
        cov = np.asarray(params.covariances)
        if self.layout in ("full", "tied"):
            scaled = cov / self.outer
            chol = np.linalg.cholesky(scaled)[..., self.tril[0], self.tril[1]]
            chol[..., self.diagonal] = np.log(chol[..., self.diagonal])
            parts.append(chol.ravel())
        elif self.layout == "diag":
            parts.append(np.log(cov / self.scale**2).ravel())
        else:
            parts.append(np.log(cov))
        return np.concatenate(parts)

    def params(self, vector: NDArray[np.float64], like: MixtureParams) -> MixtureParams | None:
        k, d = like.n_components, like.n_features
        log_w = vector[:k]
        means = vector[k : k + k * d].reshape(k, d) * self.scale + self.centre
        rest = vector[k + k * d :]
        weights = np.exp(log_w - log_w.max())
        weights /= weights.sum()
        if self.layout in ("full", "tied"):
            packed = rest.reshape(-1, len(self.tril[0])).copy()
            packed[:, self.diagonal] = np.exp(packed[:, self.diagonal])
            chol = np.zeros((len(packed), d, d))
            chol[:, self.tril[0], self.tril[1]] = packed
            cov = chol @ chol.transpose(0, 2, 1) * self.outer
            covariances = cov[0] if self.layout == "tied" else cov
        elif self.layout == "diag":
            covariances = np.exp(rest.reshape(k, d)) * self.scale**2
        else:
            covariances = np.exp(rest)
        if not (np.isfinite(covariances).all() and np.isfinite(means).all()):
            return None
        if weights.min() <= 1e-300:
            return None
        try:
            return MixtureParams.from_covariances(
                weights, means, covariances, self.covariance_type
            )
        except CovarianceError:
            return None

    def extrapolate(
        self,
        start: MixtureParams,
        first: MixtureParams,
        second: MixtureParams,
        step_max: float,
    ) -> tuple[float, MixtureParams | None]:
        """SqS3 step ``alpha = |r| / |v|`` clipped to [1, step_max], and the point
        ``theta0 + 2 alpha r + alpha^2 v`` (None when it would equal ``second`` or is not
        a valid mixture)."""
        try:
            v0, v1, v2 = self.vector(start), self.vector(first), self.vector(second)
        except np.linalg.LinAlgError:
            return 1.0, None
        r = v1 - v0
        v = v2 - 2.0 * v1 + v0
        finite = np.isfinite(r) & np.isfinite(v)
        if not finite.all():
            return 1.0, None
        rr, vv = float(r @ r), float(v @ v)
        if vv <= 0.0 or rr <= 0.0:
            return 1.0, None
        alpha = min(max(np.sqrt(rr / vv), 1.0), step_max)
        if alpha <= 1.0:  # the extrapolated point is ``second`` itself
            return alpha, None
        return alpha, self.params(v0 + 2.0 * alpha * r + alpha * alpha * v, second)
