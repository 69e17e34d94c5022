"""Missing values inside EM: marginal densities and conditional moments (Ghahramani &
Jordan 1994), with the same additive statistics as the chunk kernel.

A row with missing coordinates ``m`` and observed ones ``o`` has, under component ``k``,

* the marginal density ``N(x_o | mu_ko, Sigma_koo)`` of what was observed, which gives
  its responsibilities and its log-likelihood;
* the conditional mean ``xhat_km = mu_km + Sigma_kmo Sigma_koo^-1 (x_o - mu_ko)`` of the
  missing coordinates, which stands in for them in the first and second moments;
* the conditional covariance ``C_k = Sigma_kmm - Sigma_kmo Sigma_koo^-1 Sigma_kom``, added
  to the second moments on the ``m x m`` block.

The statistics are those of the complete-data E-step with ``x`` and ``x x'`` replaced by
their conditional expectations, taken around the same ``coefs.stats_reference`` rows and
in the same packed layout as :func:`gmmkit.core.kernel.chunk_statistics` (packed outer
products for full, pooled for tied, squares for diag, squared norm for spherical): the
two add, and the M-step of every covariance model is unchanged.

Full and tied covariances work from the precision ``P = Sigma^-1``: with ``z`` the row
minus ``mu_k`` (zero on the missing coordinates) and ``g = P z``, the conditional mean
is ``xhat_m = mu_m - P_mm^-1 g_m``, the conditional covariance is ``P_mm^-1``, and since
``xhat`` minimises the joint quadratic form over ``x_m``, the observed coordinates'
Mahalanobis distance is ``|U' (xhat - mu)|^2`` and ``log det Sigma_oo = log det Sigma +
log det P_mm``.  Only the small ``|m| x |m|`` blocks ``P_mm`` are factorised, once per
missingness pattern and component (batched over all patterns with the same number of
missing coordinates), and the per-row work is two stacked GEMMs per component.  Diagonal
and spherical covariances need no factorisation: missing coordinates are independent
of the observed ones.

Rows with nothing observed contribute nothing to a fit (their marginal density is one
whatever the parameters); :func:`observed_summary` counts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gmmkit.core.covariance import log_2pi, pack_symmetric
from gmmkit.core.kernel import (
    KernelCoefficients,
    chunk_statistics,
    log_resp_and_density,
    predict_chunk,
    proba_chunk,
    score_chunk,
)
from gmmkit.core.params import MixtureParams
from gmmkit.core.suffstats import SuffStats, worst_row

Array = NDArray[np.floating[Any]]

#: Values of the estimators' ``missing`` parameter.
MISSING_OPTIONS = ("error", "marginalize")

#: Incomplete rows are processed in blocks of at most this many ``rows x K x D`` values
#: (the conditional means of every component are held at once).
_BLOCK_VALUES = 1 << 20


def nan_error_hint() -> str:
    """What the NaN error of an estimator says about marginalisation."""
    return (
        "; to fit and predict with missing values (NaN) by marginalising over them, "
        "pass missing='marginalize'"
    )


def logsumexp(values: NDArray[np.float64], axis: int = 0) -> NDArray[np.float64]:
    """``log(sum(exp(values)))`` along ``axis`` without overflow (rows of ``-inf`` give
    ``-inf``); scipy's version spends more on array-API dispatch than on the sum here."""
    top = np.max(values, axis=axis, keepdims=True)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(values - safe), axis=axis, keepdims=True)) + safe
    return np.squeeze(out, axis=axis)


# --------------------------------------------------------------------------- conditionals
@dataclass(frozen=True)
class _Conditional:
    """Per-component conditional quantities of a block of rows.

    Attributes
    ----------
    log_joint : ndarray of shape (K, n)
        ``log pi_k + log N(x_o | mu_ko, Sigma_koo)``.
    residual : ndarray of shape (K, n, D)
        ``xhat_k - mu_k``: observed coordinates minus the mean, missing ones their
        conditional mean minus the mean.
    variance : ndarray of shape (K, n, D) or None
        Conditional variances of the missing coordinates (0 where observed): diagonal
        and spherical layouts.
    groups : list of (rows, pattern_of_row, pattern_index, covariance)
        Full and tied layouts, for the rows with ``s`` missing values: the rows (r,), the
        pattern of each (r,), each pattern's missing coordinates (p, s) and conditional
        covariances ``P_mm^-1`` (s, s, K or 1, p).
    unobserved : ndarray of bool, shape (n,)
        Rows with nothing observed: their ``log_joint`` is exactly ``log pi_k``.
    """

    log_joint: NDArray[np.float64]
    residual: NDArray[np.float64]
    variance: NDArray[np.float64] | None
    groups: list[tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]]
    unobserved: NDArray[np.bool_]


def _pattern_groups(
    missing: NDArray[np.bool_],
) -> list[tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]]:
    """Rows grouped by their number ``s >= 1`` of missing coordinates.

    Returns
    -------
    list of (rows, pattern_of_row, pattern_missing_index)
        ``rows`` (r,), the index of each row's pattern within the group (r,), and each
        distinct pattern's missing coordinates (p, s); plus the row's own (r, s)
        missing coordinates as the last item.
    """
    d = missing.shape[1]
    if d <= 20:  # patterns as integer codes, counted without sorting
        codes = missing.astype(np.int64) @ (np.int64(1) << np.arange(d, dtype=np.int64))
        present = np.flatnonzero(np.bincount(codes, minlength=1 << d))
        lookup = np.empty(1 << d, dtype=np.intp)
        lookup[present] = np.arange(len(present))
        inverse = lookup[codes]
        patterns = ((present[:, None] >> np.arange(d)) & 1).astype(bool)
    elif d <= 62:
        codes = missing.astype(np.int64) @ (np.int64(1) << np.arange(d, dtype=np.int64))
        _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        patterns = missing[first]
    else:
        patterns, inverse = np.unique(missing, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    sizes = patterns.sum(axis=1)
    groups = []
    for s in np.unique(sizes):
        if s == 0:
            continue
        chosen = np.flatnonzero(sizes == s)
        position = np.full(len(patterns), -1, dtype=np.intp)
        position[chosen] = np.arange(len(chosen))
        rows = np.flatnonzero(position[inverse] >= 0)
        pattern_of_row = position[inverse[rows]]
        index = np.nonzero(patterns[chosen])[1].reshape(len(chosen), int(s))
        groups.append((rows, pattern_of_row, index, index[pattern_of_row]))
    return groups


def _vector_log_joint(
    params: MixtureParams, X: Array, missing: NDArray[np.bool_], centre: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Diagonal and spherical layouts: the (K, n) log-joint of the observed coordinates as
    one GEMM, ``[o * xc^2, o * xc, o] @ W`` with ``xc = x - centre`` and ``o`` the
    observed mask, and that feature block (n, 3 D) and the observed mask as floats."""
    means = np.asarray(params.means, dtype=np.float64) - centre
    chol = np.asarray(params.precisions_cholesky, dtype=np.float64)
    factor = np.broadcast_to(chol[:, None] if params.layout == "spherical" else chol,
                             means.shape)
    precision = factor * factor  # (K, D)
    observed = (~missing).astype(np.float64)
    xc = np.asarray(X, dtype=np.float64) - centre
    xc *= observed
    features = np.hstack([xc * xc, xc, observed])  # (n, 3 D)
    with np.errstate(divide="ignore"):
        log_weights = np.log(np.asarray(params.weights, dtype=np.float64))
    coefficients = np.hstack([
        -0.5 * precision,
        precision * means,
        np.log(factor) - 0.5 * log_2pi() - 0.5 * precision * means * means,
    ])  # (K, 3 D)
    log_joint = np.dot(coefficients, features.T)
    log_joint += log_weights[:, None]
    return log_joint, features, observed


#: Up to this many missing coordinates the conditional precisions are factorised by
#: loops over their entries vectorised over patterns; beyond it by LAPACK per matrix.
_LOOPED_SIZE = 4


def _cholesky(block: NDArray[np.float64]) -> NDArray[np.float64]:
    """Lower Cholesky factors of a stack of small matrices stored matrix-index first,
    (s, s, B): a loop over the entries, each step one operation on a contiguous vector of
    B (LAPACK pays microseconds per matrix, and there is one per missingness pattern and
    component)."""
    s = block.shape[0]
    lower = np.zeros_like(block)
    for j in range(s):
        pivot = block[j, j].copy()
        for k in range(j):
            pivot -= lower[j, k] * lower[j, k]
        if not np.all(pivot > 0.0):
            raise np.linalg.LinAlgError("a conditional precision is not positive definite")
        np.sqrt(pivot, out=lower[j, j])
        for i in range(j + 1, s):
            value = block[i, j].copy()
            for k in range(j):
                value -= lower[i, k] * lower[j, k]
            np.divide(value, lower[j, j], out=lower[i, j])
    return lower


def _lower_inverse(lower: NDArray[np.float64]) -> NDArray[np.float64]:
    """Inverses of lower-triangular matrices stored as (s, s, B), by forward
    substitution on contiguous vectors of B."""
    s = lower.shape[0]
    inverse = np.zeros_like(lower)
    for i in range(s):
        np.divide(1.0, lower[i, i], out=inverse[i, i])
        for j in range(i):
            value = lower[i, j] * inverse[j, j]
            for k in range(j + 1, i):
                value += lower[i, k] * inverse[k, j]
            np.multiply(value, -inverse[i, i], out=inverse[i, j])
    return inverse


def _gram(factor: NDArray[np.float64]) -> NDArray[np.float64]:
    """``F' F`` for lower-triangular ``F`` stored as (s, s, B)."""
    s = factor.shape[0]
    out = np.empty_like(factor)
    for i in range(s):
        for j in range(i + 1):
            value = factor[i, i] * factor[i, j]
            for k in range(i + 1, s):
                value = value + factor[k, i] * factor[k, j]
            out[i, j] = value
            out[j, i] = value
    return out


def _conditional(params: MixtureParams, X: Array, missing: NDArray[np.bool_]) -> _Conditional:
    """Marginal log-densities, conditional means and covariances of rows ``X`` (n, D)
    with ``missing`` (n, D) coordinates (their values in ``X`` are ignored)."""
    X = np.asarray(X, dtype=np.float64)
    means = np.asarray(params.means, dtype=np.float64)
    chol = np.asarray(params.precisions_cholesky, dtype=np.float64)
    n = X.shape[0]
    n_components = len(means)
    observed = ~missing
    with np.errstate(divide="ignore"):
        log_weights = np.log(np.asarray(params.weights, dtype=np.float64))
    n_observed = observed.sum(axis=1)
    unobserved = n_observed == 0
    # z = x - mu_k on observed coordinates, 0 on missing ones: (K, n, D)
    residual = X[None, :, :] - means[:, None, :]
    residual *= observed
    if params.layout in ("diag", "spherical"):
        log_joint, _, _ = _vector_log_joint(params, X, missing, np.zeros(X.shape[1]))
        log_joint[:, unobserved] = log_weights[:, None]
        factor = np.broadcast_to(chol[:, None] if params.layout == "spherical" else chol,
                                 means.shape)
        variance = (1.0 / factor**2)[:, None, :] * missing
        return _Conditional(log_joint, residual, variance, [], unobserved)

    upper = chol[None] if params.layout == "tied" else chol  # (K or 1, D, D)
    precision = np.matmul(upper, upper.transpose(0, 2, 1))
    log_det_upper = np.sum(np.log(np.diagonal(upper, axis1=1, axis2=2)), axis=1)
    shared = len(upper) == 1
    gradient = np.empty_like(residual)  # P z, (K, n, D)
    for k in range(n_components):
        np.dot(residual[k], precision[0 if shared else k], out=gradient[k])
    log_det_pmm = np.zeros((n_components, n))
    groups = []
    n_shared = len(upper)
    for rows, pattern_of_row, pattern_index, row_index in _pattern_groups(missing):
        size, n_patterns = pattern_index.shape[1], len(pattern_index)
        # P_mm of every pattern and component, matrix index first: (s, s, K or 1, p)
        block = precision[:, pattern_index[:, :, None], pattern_index[:, None, :]]
        block = np.ascontiguousarray(block.transpose(2, 3, 0, 1)).reshape(
            size, size, n_shared * n_patterns
        )
        if size <= _LOOPED_SIZE:
            lower = _cholesky(block)
            diagonal = np.stack([lower[i, i] for i in range(size)])
            covariance = _gram(_lower_inverse(lower))
        else:  # LAPACK per matrix: fewer Python steps than s^3 / 3 vector operations
            stacked = np.ascontiguousarray(block.transpose(2, 0, 1))
            diagonal = np.diagonal(np.linalg.cholesky(stacked), axis1=1, axis2=2).T
            covariance = np.linalg.inv(stacked).transpose(1, 2, 0)
        log_det = 2.0 * np.sum(np.log(diagonal), axis=0).reshape(n_shared, n_patterns)
        covariance = covariance.reshape(size, size, n_shared, n_patterns)
        per_row = covariance[:, :, :, pattern_of_row]  # (s, s, K or 1, r)
        g_missing = np.ascontiguousarray(
            gradient[:, rows[:, None], row_index].transpose(2, 0, 1)
        )  # (s, K, r)
        solved = np.empty_like(g_missing)  # P_mm^-1 g_m
        for i in range(size):
            value = per_row[i, 0] * g_missing[0]
            for j in range(1, size):
                value += per_row[i, j] * g_missing[j]
            solved[i] = value
        residual[:, rows[:, None], row_index] = -solved.transpose(1, 2, 0)
        log_det_pmm[:, rows] = log_det[:, pattern_of_row]
        groups.append((rows, pattern_of_row, pattern_index, covariance))
    # the observed coordinates' Mahalanobis distance is the joint quadratic form at the
    # conditional mean (which minimises it over the missing coordinates): |U'(xhat - mu)|^2
    # as a sum of squares, not the Schur complement z'Pz - g_m' P_mm^-1 g_m, which
    # cancels (1e-8 absolute at condition numbers of 1e5)
    quad = np.empty((n_components, n))
    for k in range(n_components):
        white = np.dot(residual[k], upper[0 if shared else k])
        np.einsum("nd,nd->n", white, white, out=quad[k])
    log_joint = (
        log_weights[:, None]
        + log_det_upper[:, None]
        - 0.5 * log_det_pmm
        - 0.5 * n_observed * log_2pi()
        - 0.5 * quad
    )
    log_joint[:, unobserved] = log_weights[:, None]  # the marginal over nothing is 1
    return _Conditional(log_joint, residual, None, groups, unobserved)


def _blocks(n: int, n_components: int, n_features: int) -> range:
    step = max(16, _BLOCK_VALUES // max(n_components * n_features, 1))
    return range(0, n, step)


# --------------------------------------------------------------------------- statistics
def chunk_statistics_missing(
    coefs: KernelCoefficients,
    X: Array,
    missing: NDArray[np.bool_] | None,
    sample_weight: Array | None = None,
    labels: NDArray[np.integer] | None = None,
    label_weight: float = 1.0,
) -> SuffStats:
    """E-step statistics of a block with missing values.

    Complete rows go to :func:`gmmkit.core.kernel.chunk_statistics` unchanged (with
    ``missing`` None or all False the result is exactly the kernel's); incomplete rows
    contribute their conditional expectations of the kernel's statistics; rows with
    nothing observed contribute nothing (not even to ``n_samples``).

    Parameters
    ----------
    coefs : KernelCoefficients
        Of the current parameters (``coefs.params`` is read).
    X : ndarray of shape (n, D)
        Rows; the values at ``missing`` are ignored (but must not be NaN or infinity).
    missing : ndarray of bool, shape (n, D), or None
    sample_weight : ndarray of shape (n,), optional
    labels : ndarray of shape (n,), optional
        Known component (``-1`` unknown), as for the kernel.
    label_weight : float

    Returns
    -------
    SuffStats
    """
    if missing is None:
        return chunk_statistics(coefs, X, sample_weight, labels, label_weight)
    incomplete = missing.any(axis=1)
    if not incomplete.any():
        return chunk_statistics(coefs, X, sample_weight, labels, label_weight)
    complete = np.flatnonzero(~incomplete)
    partial_rows = np.flatnonzero(incomplete & ~missing.all(axis=1))
    parts = []

    def pick(values: Any, rows: NDArray[np.intp]) -> Any:
        return None if values is None else np.asarray(values)[rows]

    if len(complete):
        parts.append(
            chunk_statistics(
                coefs, X[complete], pick(sample_weight, complete), pick(labels, complete),
                label_weight,
            )
        )
    assert coefs.params is not None
    k, d = coefs.params.n_components, coefs.params.n_features
    blocks = _blocks(len(partial_rows), k, d)
    for start in blocks:
        rows = partial_rows[start : start + blocks.step]
        parts.append(
            _incomplete_statistics(
                coefs, X[rows], missing[rows], pick(sample_weight, rows), pick(labels, rows),
                label_weight,
            )
        )
    if not parts:
        return _no_statistics(coefs)
    return SuffStats.total(parts)


def _no_statistics(coefs: KernelCoefficients) -> SuffStats:
    """Statistics of no rows (a block whose every row has nothing observed)."""
    assert coefs.params is not None
    k, d = coefs.params.n_components, coefs.params.n_features
    q = coefs.covariance.n_quadratic(d)
    return SuffStats(
        nk=np.zeros(k),
        first=np.zeros((k, d)),
        second=np.zeros((1 if coefs.covariance.shared_quadratic else k, q)),
        log_likelihood=0.0,
        total_weight=0.0,
        n_samples=0,
        reference=coefs.stats_reference,
        worst_log_density=np.inf,
        worst_point=np.zeros(d),
    )


def _incomplete_statistics(
    coefs: KernelCoefficients,
    X: Array,
    missing: NDArray[np.bool_],
    sample_weight: Array | None,
    labels: NDArray[np.integer] | None,
    label_weight: float,
) -> SuffStats:
    params = coefs.params
    assert params is not None
    n, d = X.shape
    layout = coefs.covariance.layout
    vector = layout in ("diag", "spherical")
    means = np.asarray(params.means, np.float64)
    if vector:
        centre = coefs.reference
        log_joint, features, _ = _vector_log_joint(params, X, missing, centre)
        cond = None
    else:
        cond = _conditional(params, X, missing)
        log_joint = cond.log_joint
    log_norm = logsumexp(log_joint, axis=0)
    with np.errstate(invalid="ignore"):
        resp = np.exp(log_joint - log_norm)
    weight = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if labels is not None:
        labels = np.asarray(labels)
        labelled = np.flatnonzero(labels >= 0)
        if len(labelled):
            known = labels[labelled].astype(np.intp)
            weight = weight.copy()
            weight[labelled] *= label_weight
            log_norm = log_norm.copy()
            log_norm[labelled] = log_joint[known, labelled]
            resp[:, labelled] = 0.0
            resp[known, labelled] = 1.0
    resp_w = resp * weight
    nk = resp_w.sum(axis=1)
    offsets = means - coefs.stats_reference  # (K, D)
    if vector:
        # with a = reference_k - centre, o the observed mask, xc = o (x - centre):
        # xhat - reference_k = xc - o a + (1 - o) (mu_k - reference_k), and the expected
        # squares add the variances (1 - o) sigma_k^2 of the missing coordinates
        sums = np.dot(resp_w, features)  # (K, 3 D): [o xc^2, o xc, o] summed
        squares, linear, seen = sums[:, :d], sums[:, d : 2 * d], sums[:, 2 * d :]
        unseen = nk[:, None] - seen
        shift = coefs.stats_reference - centre
        chol = np.asarray(params.precisions_cholesky, dtype=np.float64)
        factor = np.broadcast_to(chol[:, None] if layout == "spherical" else chol, means.shape)
        first = linear - seen * shift + unseen * offsets
        second_d = (
            squares - 2.0 * shift * linear + seen * shift * shift
            + unseen * (offsets * offsets + 1.0 / (factor * factor))
        )
        second = second_d if layout == "diag" else second_d.sum(axis=1, keepdims=True)
    else:
        assert cond is not None
        centred = cond.residual
        centred += offsets[:, None, :]  # xhat_k - reference_k
        first = np.einsum("kn,knd->kd", resp_w, centred)
        scatter = np.empty((len(nk), d, d))
        for k in range(len(nk)):
            np.dot((centred[k] * resp_w[k][:, None]).T, centred[k], out=scatter[k])
        flat = scatter.reshape(len(nk), d * d)
        n_components = len(nk)
        for rows, pattern_of_row, pattern_index, covariance in cond.groups:
            # sum the responsibilities of each pattern's rows, then add the patterns'
            # conditional covariances into the (m, m) blocks: sum_rows r C
            n_patterns = len(pattern_index)
            slots = np.arange(n_components)[:, None] * n_patterns + pattern_of_row
            per_pattern = np.bincount(
                slots.ravel(), weights=resp_w[:, rows].ravel(),
                minlength=n_components * n_patterns,
            ).reshape(n_components, n_patterns)
            weighted = covariance * per_pattern  # (s, s, K, p)
            cells = pattern_index[:, :, None] * d + pattern_index[:, None, :]  # (p, s, s)
            cells = cells.transpose(1, 2, 0)[:, :, None, :] + (
                np.arange(n_components)[:, None] * (d * d)
            )  # (s, s, K, p)
            flat += np.bincount(
                cells.ravel(), weights=weighted.ravel(), minlength=n_components * d * d
            ).reshape(n_components, d * d)
        if layout == "tied":
            scatter = scatter.sum(axis=0, keepdims=True)
        second = pack_symmetric(scatter)
    positive = weight > 0
    if np.any(positive):
        candidates = np.where(positive, log_norm, np.inf)
        worst = worst_row(candidates)
        worst_value = float(candidates[worst])
        best = int(np.argmax(log_joint[:, worst]))
        worst_point = np.where(missing[worst], means[best], np.asarray(X[worst], np.float64))
        if cond is not None:
            worst_point = cond.residual[best, worst] + coefs.stats_reference[best]
    else:
        worst_value, worst_point = np.inf, np.zeros(d)
    return SuffStats(
        nk=nk,
        first=first,
        second=np.ascontiguousarray(second),
        log_likelihood=float(weight @ log_norm),
        total_weight=float(weight.sum()),
        n_samples=n,
        reference=coefs.stats_reference,
        worst_log_density=worst_value,
        worst_point=worst_point,
    )


# --------------------------------------------------------------------------- inference
def _split_rows(
    coefs: KernelCoefficients,
    X: Array,
    missing: NDArray[np.bool_] | None,
    complete_func: Any,
    incomplete_func: Any,
) -> Any:
    """``complete_func(coefs, X)`` on complete rows, ``incomplete_func(cond)`` on the
    others (by blocks), stitched back in row order."""
    if missing is None or not missing.any():
        return complete_func(coefs, X)
    incomplete = np.flatnonzero(missing.any(axis=1))
    complete = np.flatnonzero(~missing.any(axis=1))
    assert coefs.params is not None
    params = coefs.params
    pieces = []
    blocks = _blocks(len(incomplete), params.n_components, params.n_features)
    for start in blocks:
        rows = incomplete[start : start + blocks.step]
        pieces.append(incomplete_func(_conditional(params, X[rows], missing[rows])))
    part = np.concatenate(pieces, axis=0)
    out = np.empty((len(X), *part.shape[1:]), dtype=part.dtype)
    out[incomplete] = part
    if len(complete):
        out[complete] = complete_func(coefs, X[complete])
    return out


def _log_norm(cond: _Conditional) -> NDArray[np.float64]:
    log_norm = np.asarray(logsumexp(cond.log_joint, axis=0), dtype=np.float64)
    log_norm[cond.unobserved] = 0.0  # log 1, not the rounding of log(sum(weights))
    return log_norm


def _proba(cond: _Conditional) -> NDArray[np.float64]:
    return np.exp(cond.log_joint - logsumexp(cond.log_joint, axis=0)).T


def score_rows(
    coefs: KernelCoefficients, X: Array, missing: NDArray[np.bool_] | None
) -> NDArray[np.float64]:
    """Log-density of the observed coordinates of each row, shape (n,), float64
    (0 for a row with nothing observed)."""
    return _split_rows(coefs, X, missing, score_chunk, _log_norm)


def predict_rows(
    coefs: KernelCoefficients, X: Array, missing: NDArray[np.bool_] | None
) -> NDArray[np.intp]:
    """Most probable component of each row given its observed coordinates, shape (n,)."""
    return _split_rows(
        coefs, X, missing, predict_chunk, lambda c: np.argmax(c.log_joint, axis=0)
    )


def proba_rows(
    coefs: KernelCoefficients, X: Array, missing: NDArray[np.bool_] | None
) -> NDArray[np.float64]:
    """Responsibilities given the observed coordinates, shape (n, K), float64."""
    return _split_rows(coefs, X, missing, proba_chunk, _proba)


def map_log_resp_rows(
    coefs: KernelCoefficients, X: Array, missing: NDArray[np.bool_] | None
) -> NDArray[np.float64]:
    """Largest log responsibility of each row (for ICL), shape (n,)."""

    def complete(c: KernelCoefficients, rows: Array) -> NDArray[np.float64]:
        log_resp, _ = log_resp_and_density(c, rows)
        return np.max(log_resp, axis=1).astype(np.float64)

    def incomplete(cond: _Conditional) -> NDArray[np.float64]:
        return np.asarray(
            np.max(cond.log_joint, axis=0) - logsumexp(cond.log_joint, axis=0), np.float64
        )

    return _split_rows(coefs, X, missing, complete, incomplete)


def nearest_completion(
    params: MixtureParams, X: Array, missing: NDArray[np.bool_]
) -> tuple[NDArray[np.intp], NDArray[np.float64], NDArray[np.float64]]:
    """Each row completed under its most responsible component.

    Parameters
    ----------
    params : MixtureParams
    X : ndarray of shape (n, D)
        Rows; the values at ``missing`` are ignored (but must not be NaN or infinity).
    missing : ndarray of bool, shape (n, D)

    Returns
    -------
    component : ndarray of int, shape (n,)
        The component ``k`` of highest responsibility given the row's observed cells.
    residual : ndarray of shape (n, D)
        ``xhat_k - mu_k``: the observed cells minus the mean, the missing ones their
        conditional mean under ``k`` minus the mean.
    distance : ndarray of shape (n,)
        The observed cells' squared Mahalanobis distance to component ``k``
        (``(x_o - mu_ko)' Sigma_koo^-1 (x_o - mu_ko)``); since the conditional mean
        minimises the joint quadratic form over the missing cells, it is the full
        squared distance of the completed row.  0 for a row with nothing observed.
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    k = params.n_components
    component = np.zeros(n, dtype=np.intp)
    residual = np.zeros((n, d))
    blocks = _blocks(n, k, d)
    for start in blocks:
        rows = slice(start, start + blocks.step)
        cond = _conditional(params, X[rows], missing[rows])
        best = np.argmax(cond.log_joint, axis=0)
        component[rows] = best
        residual[rows] = cond.residual[best, np.arange(len(best))]
    chol = np.asarray(params.precisions_cholesky, dtype=np.float64)
    distance = np.zeros(n)
    for j in range(k):
        chosen = np.flatnonzero(component == j)
        if not len(chosen):
            continue
        part = residual[chosen]
        if params.layout in ("full", "tied"):
            white = np.dot(part, chol if params.layout == "tied" else chol[j])
        else:  # diag: one factor per feature, spherical: one per component
            white = part * chol[j]
        distance[chosen] = np.einsum("nd,nd->n", white, white)
    return component, residual, distance


# --------------------------------------------------------------------------- conditioning
@dataclass(frozen=True)
class ConditionalMixture:
    """The distribution of some coordinates given the others: a Gaussian mixture per row.

    Attributes
    ----------
    features : ndarray of int, shape (M,)
        The coordinates the distribution is over (those not given).
    weights : ndarray of shape (n, K)
        Posterior component probabilities of each row given its known coordinates.
    means : ndarray of shape (n, K, M)
        Conditional means of the coordinates per component.
    covariances : ndarray of shape (K, M, M)
        Conditional covariances per component (the same for every row).
    """

    features: NDArray[np.intp]
    weights: NDArray[np.float64]
    means: NDArray[np.float64]
    covariances: NDArray[np.float64]

    @property
    def mean(self) -> NDArray[np.float64]:
        """Conditional expectation of the coordinates, shape (n, M)."""
        return np.einsum("nk,nkm->nm", self.weights, self.means)

    @property
    def covariance(self) -> NDArray[np.float64]:
        """Conditional covariance of the coordinates (law of total covariance), shape
        (n, M, M)."""
        spread = self.means - self.mean[:, None, :]
        within = np.einsum("nk,kij->nij", self.weights, self.covariances)
        between = np.einsum("nk,nki,nkj->nij", self.weights, spread, spread)
        return np.asarray(within + between)

    def sample(self, random_state: Any = None) -> NDArray[np.float64]:
        """One draw of the coordinates for every row, shape (n, M)."""
        from sklearn.utils import check_random_state

        rng = check_random_state(random_state)
        n, k = self.weights.shape
        cumulative = np.cumsum(self.weights, axis=1)
        picks = (rng.uniform(size=(n, 1)) * cumulative[:, -1:] > cumulative).sum(axis=1)
        picks = np.minimum(picks, k - 1)
        lower = _psd_factor(self.covariances)  # (K, M, M)
        noise = rng.standard_normal((n, len(self.features)))
        shift = np.einsum("nij,nj->ni", lower[picks], noise)
        return np.asarray(self.means[np.arange(n), picks] + shift)


def _psd_factor(covariances: NDArray[np.float64]) -> NDArray[np.float64]:
    """``L`` with ``L L' = C`` for positive semi-definite ``C`` (K, M, M)."""
    eigval, eigvec = np.linalg.eigh(covariances)
    return np.asarray(eigvec * np.sqrt(np.maximum(eigval, 0.0))[:, None, :])


def conditional_expectation(
    params: MixtureParams, X: Array, missing: NDArray[np.bool_], random_state: Any = None,
    draw: bool = False,
) -> NDArray[np.float64]:
    """``X`` (n, D) with its ``missing`` cells replaced by their conditional expectation
    given the row's observed cells under the mixture -- or, with ``draw``, by one draw
    from their conditional distribution (a component drawn from the posterior
    weights, then the component's conditional Gaussian).  float64, a new array."""
    out = np.array(X, dtype=np.float64)
    rows = np.flatnonzero(missing.any(axis=1))
    if len(rows) == 0:
        return out
    rng = None
    if draw:
        from sklearn.utils import check_random_state

        rng = check_random_state(random_state)
    blocks = _blocks(len(rows), params.n_components, params.n_features)
    for start in blocks:
        block = rows[start : start + blocks.step]
        mask = missing[block]
        cond = _conditional(params, np.where(mask, 0.0, out[block]), mask)
        weights = _proba(cond)  # (r, K)
        filled = cond.residual + np.asarray(params.means, np.float64)[:, None, :]
        if rng is None:
            values = np.einsum("nk,knd->nd", weights, filled)
        else:
            values = _draw(params, cond, weights, filled, mask, rng)
        out[block] = np.where(mask, values, out[block])
    return out


def _draw(
    params: MixtureParams,
    cond: _Conditional,
    weights: NDArray[np.float64],
    filled: NDArray[np.float64],
    missing: NDArray[np.bool_],
    rng: Any,
) -> NDArray[np.float64]:
    """One draw of every row's missing cells from its conditional mixture, (n, D)."""
    n = len(weights)
    cumulative = np.cumsum(weights, axis=1)
    picks = np.minimum(
        (rng.uniform(size=(n, 1)) * cumulative[:, -1:] > cumulative).sum(axis=1),
        weights.shape[1] - 1,
    )
    rows = np.arange(n)
    values = filled[picks, rows].copy()  # conditional means of the drawn components
    noise = rng.standard_normal(values.shape)
    if cond.variance is not None:
        values += np.sqrt(cond.variance[picks, rows]) * noise
        return values
    for group_rows, pattern_of_row, pattern_index, covariance in cond.groups:
        size, n_shared, n_patterns = covariance.shape[0], covariance.shape[2], covariance.shape[3]
        stacked = covariance.reshape(size, size, -1).transpose(2, 0, 1)  # (Kp p, s, s)
        factors = _psd_factor(stacked).reshape(n_shared, n_patterns, size, size)
        component = 0 if n_shared == 1 else picks[group_rows]
        factor = factors[component, pattern_of_row]  # (r, s, s)
        index = pattern_index[pattern_of_row]  # (r, s)
        shift = np.einsum("rij,rj->ri", factor, noise[group_rows[:, None], index])
        values[group_rows[:, None], index] += shift
    return values


def conditional_mixture(
    params: MixtureParams, values: Array, given: NDArray[np.intp]
) -> ConditionalMixture:
    """The mixture of the coordinates not in ``given`` for rows whose ``given``
    coordinates are ``values`` (n, len(given))."""
    d = params.n_features
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    X = np.zeros((n, d))
    X[:, given] = values
    missing = np.ones((n, d), dtype=bool)
    missing[:, given] = False
    features = np.flatnonzero(missing[0]) if n else np.setdiff1d(np.arange(d), given)
    cond = _conditional(params, X, missing)
    weights = _proba(cond)
    filled = cond.residual + np.asarray(params.means, np.float64)[:, None, :]
    groups = cond.groups
    means = filled[:, :, features].transpose(1, 0, 2)
    m = len(features)
    if params.layout in ("full", "tied"):
        if groups and n:
            first_pattern = groups[0][3][:, :, :, 0].transpose(2, 0, 1)  # (K or 1, m, m)
            covariance = np.broadcast_to(first_pattern, (params.n_components, m, m))
        else:
            covariance = np.zeros((params.n_components, m, m))
    else:
        assert cond.variance is not None
        variances = cond.variance[:, 0, features] if n else np.zeros((params.n_components, m))
        covariance = variances[:, :, None] * np.eye(m)
    return ConditionalMixture(
        features=features.astype(np.intp),
        weights=weights,
        means=np.ascontiguousarray(means),
        covariances=np.array(covariance),
    )


# --------------------------------------------------------------------------- engines
@dataclass(frozen=True)
class ObservedSummary:
    """Additive summary of which values are present: weighted sums and weights of the
    observed values per column, and the rows with nothing observed (``n_unobserved``; of
    them ``n_unobserved_labelled`` have a known component, semi-supervised fits, and
    ``unobserved_weight`` is their total sample weight, of ``total_weight`` for all rows)."""

    sums: NDArray[np.float64]
    weights: NDArray[np.float64]
    n_unobserved: int
    n_incomplete: int
    n_unobserved_labelled: int = 0
    unobserved_weight: float = 0.0
    total_weight: float = 0.0

    def __add__(self, other: ObservedSummary) -> ObservedSummary:
        return ObservedSummary(
            self.sums + other.sums,
            self.weights + other.weights,
            self.n_unobserved + other.n_unobserved,
            self.n_incomplete + other.n_incomplete,
            self.n_unobserved_labelled + other.n_unobserved_labelled,
            self.unobserved_weight + other.unobserved_weight,
            self.total_weight + other.total_weight,
        )

    def fill_values(self) -> NDArray[np.float64]:
        """Weighted mean of every column's observed values, shape (D,).

        Raises
        ------
        ValueError
            When a column has no observed value (its distribution is not identified).
        """
        empty = np.flatnonzero(self.weights <= 0)
        if len(empty):
            raise ValueError(
                f"column(s) {empty.tolist()} of X have no observed (non-NaN) value with "
                "positive weight: a mixture cannot be fitted to them"
            )
        return self.sums / self.weights


def _summary_of_chunk(chunk: Any) -> ObservedSummary:
    X = np.asarray(chunk.X)
    missing = np.isnan(X)
    weight = (
        np.ones(len(X)) if chunk.sample_weight is None else np.asarray(chunk.sample_weight)
    )
    observed = (~missing).astype(np.float64)
    row_missing = missing.any(axis=1)
    unobserved = missing.all(axis=1) if X.shape[1] else np.zeros(len(X), dtype=bool)
    labelled = 0
    if chunk.labels is not None:
        labelled = int(np.count_nonzero(unobserved & (np.asarray(chunk.labels) >= 0)))
    return ObservedSummary(
        sums=weight @ np.where(missing, 0.0, X.astype(np.float64)),
        weights=weight @ observed,
        n_unobserved=int(unobserved.sum()),
        n_incomplete=int(row_missing.sum()),
        n_unobserved_labelled=labelled,
        unobserved_weight=float(weight @ unobserved),
        total_weight=float(weight.sum()),
    )


def observed_summary(engine: Any) -> ObservedSummary:
    """One pass: column means of the observed values, rows with nothing observed."""
    return engine.map_reduce(_summary_of_chunk)


def observed_rows(
    coefs: KernelCoefficients, X: Array, missing: NDArray[np.bool_] | None
) -> NDArray[np.float64]:
    """1.0 for each row with some observed value, 0.0 for a row with nothing observed
    (which does not enter a fit and is not counted in BIC's ``n``), shape (n,)."""
    if missing is None or not missing.shape[1]:
        return np.ones(len(X))
    return np.asarray(~missing.all(axis=1), dtype=np.float64)


def filled_chunk(fill: NDArray[Any], chunk: Any) -> Any:
    """``chunk`` with NaN replaced by ``fill`` and its ``missing`` mask set (the same
    chunk when it has no NaN)."""
    from dataclasses import replace

    X = chunk.X
    if X.dtype.kind != "f":
        return chunk
    missing = np.isnan(X)
    if not missing.any():
        return chunk
    filled = np.where(missing, np.asarray(fill, dtype=X.dtype), X)
    return replace(chunk, X=filled, missing=missing)


__all__ = [
    "MISSING_OPTIONS",
    "ConditionalMixture",
    "ObservedSummary",
    "chunk_statistics_missing",
    "conditional_expectation",
    "conditional_mixture",
    "filled_chunk",
    "map_log_resp_rows",
    "nearest_completion",
    "observed_summary",
    "predict_rows",
    "proba_rows",
    "score_rows",
]
