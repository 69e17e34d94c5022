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
minus ``mu_k`` (any value on the missing coordinates) and ``g = P z``, the conditional
mean is one Newton step, ``xhat_m = x_m - P_mm^-1 g_m`` (exact for a quadratic), the
conditional covariance is ``P_mm^-1``, and since ``xhat`` minimises the joint quadratic
form over ``x_m``, the observed coordinates' Mahalanobis distance is ``|U' (xhat -
mu)|^2`` and ``log det Sigma_oo = log det Sigma + log det P_mm``.  Only the small
``|m| x |m|`` blocks ``P_mm`` are factorised, once per missingness pattern and component.

The E-step sorts each block's rows by number of missing coordinates, then pattern, so
that a group (same number missing) and each pattern within it are contiguous rows, and
holds them feature-major, (D, n): per-pattern results reach the rows by ``repeat``,
per-row sums reach the patterns by ``reduceat``, the factorisations run as a few vector
operations per matrix entry over all the group's patterns (and components) at once, and
the rows' missing cells are gathered and corrected through one flat index.

* Full: the residuals ``xhat_k - mu_k`` of every component, (K, D, n), from two batched
  GEMMs (``P_k z_k``, then ``U_k' r_k``) and one correction per missing cell; second
  moments by one batched GEMM around the means, moved to the reference.  With many
  components (:data:`_PATTERN_COMPONENTS`), groups whose patterns have many rows each
  are evaluated per pattern like the complete-data kernel (:class:`_PatternPart`).
* Tied: ``P_mm`` depends on the pattern only and the conditional mean is linear in the
  mean, ``xhat_k = centre + xbar + E t_k`` (``xbar`` per row, ``t_k`` per pattern, all
  patterns' from one GEMM against their ``P_mm^-1`` embedded column by column), so the
  per-row work is a few (D, n) GEMMs and (K, n) additions; the observed distance is
  expanded around the centre with a rounding guard (:data:`_EXPANSION_LIMIT`) and the
  statistics are sums of per-row and per-pattern terms, no (K, D, n) array.
* Diagonal and spherical: no factorisation (missing coordinates are independent of the
  observed ones); one feature block ``[o xc^2 (or its sum); o xc; o]`` and two GEMMs.

With numba installed (``gmmkit[fast]``), the statistics' per-row path of full (below
:data:`_SCHUR_COMPONENTS` components, from 8 features on) and tied covariances (below
:data:`_SCHUR_TIED_FEATURES` features) runs compiled kernels instead, the same mathematics
row by row (:mod:`gmmkit.core._missing_jit`, switched in :func:`_sorted_conditional`
through :mod:`gmmkit._jit`); ``GMMKIT_NUMBA=0`` keeps the numpy path above, the
reference.  Scores and predictions of incomplete rows take the Schur form below where the
statistics do (its log-joint alone, :func:`_schur_inference`); imputation and
conditional distributions take the numpy path.

The Schur form (compiled kernels; full covariances from :data:`_SCHUR_COMPONENTS`
components, tied ones from :data:`_SCHUR_TIED_FEATURES` features): the complete kernel
itself evaluates the rows with their missing cells at its centre ``c`` (``y = x - c``, 0
there), whose quadratic form ``z' P z`` (``z = y - a_k``, ``a_k = mu_k - c``) is the
observed distance plus ``t' P_mm^-1 t`` with ``t = (P z)_m`` -- whatever ``z_m`` is --
and the conditional mean is ``xhat_m = c_m - P_mm^-1 t``. So the kernel's log-joint and
moments are corrected per missing cell: ``t`` from one GEMM per coordinate over the rows
missing it (full; one product of all rows for tied), ``t' P_mm^-1 t`` and ``P_mm^-1 t``
from ``F = L^-1`` (``P_mm = L L'``) in ``O(s^2)`` a row and component (``O(s)`` for
tied), the cross moments ``sum r y u'`` again by GEMMs. The distinct patterns of a chunk
share their factorisations through their prefix tree (row ``c`` of ``L`` and of ``F``
depends only on the first ``c + 1`` missing coordinates); where the cancellation in
``z' P z - t' P_mm^-1 t`` could round beyond the kernel's tolerance the distance is summed
directly (:func:`_schur_statistics`, :func:`_tied_schur_statistics`).

Rows with nothing observed contribute nothing to a fit (their marginal density is one
whatever the parameters); :func:`observed_summary` counts them.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gmmkit import _jit
from gmmkit.core._workspace import workspace
from gmmkit.core.covariance import covariance_layout, log_2pi, pack_symmetric
from gmmkit.core.kernel import (
    _FEATURES,
    _LOG_JOINT,
    KernelCoefficients,
    _complete_features_t,
    _feature_block_t,
    _log_joint_of_features_t,
    _quadratic,
    _reference_second_moments,
    chunk_statistics,
    map_log_resp_chunk,
    predict_chunk,
    proba_chunk,
    score_chunk,
)
from gmmkit.core.params import MixtureParams
from gmmkit.core.suffstats import SuffStats, worst_row

Array = NDArray[np.floating[Any]]

#: Values of the estimators' ``missing`` parameter.
MISSING_OPTIONS = ("error", "marginalize")

#: Incomplete rows are processed in blocks of at most this many values of the largest
#: arrays: ``rows x K x D`` where the conditional means of every component are held at
#: once (full covariances, and conditional means for inference), ``rows x (K + 3 D)``
#: otherwise.
_BLOCK_VALUES = 1 << 20


#: The statistics of a block keep their block-sized arrays in one buffer per thread,
#: reused from block to block: freed and allocated again, they would be returned to the
#: system and faulted in afresh each time, which costs 0.5-1 ms per MB on virtual
#: machines -- more than the arithmetic on them.  A buffer over
#: :data:`~gmmkit.core._workspace.WORKSPACE_LIMIT` (4M float64 values) is not kept.
def _scratch(values: int) -> NDArray[np.float64]:
    """A float64 buffer of ``values`` entries, the same memory on every call in a thread
    (for arrays that do not outlive the caller)."""
    return workspace("missing.scratch", values)


#: What :func:`chunk_statistics_missing` derives from a read-only mask alone (rows by
#: number missing, blocks, missingness patterns), by the mask's ``id``, while the mask
#: lives.  An engine over in-memory data hands the same read-only masks to every pass
#: (:class:`gmmkit.engines.base.FilledEngine`), so the grouping is found once per fit
#: instead of once per EM iteration; writeable masks are not kept.
_MASK_STORE: dict[int, tuple[weakref.ref[Any], dict[Any, Any]]] = {}


def _mask_store(missing: NDArray[np.bool_]) -> dict[Any, Any] | None:
    """The store of a read-only mask (a new empty one the first time), or None for a
    writeable mask."""
    if missing.flags.writeable:
        return None
    key = id(missing)
    entry = _MASK_STORE.get(key)
    if entry is not None and entry[0]() is missing:
        return entry[1]

    def forget(ref: weakref.ref[Any], key: int = key) -> None:
        if _MASK_STORE.get(key, (None,))[0] is ref:
            del _MASK_STORE[key]

    store: dict[Any, Any] = {}
    _MASK_STORE[key] = (weakref.ref(missing, forget), store)
    return store


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


# --------------------------------------------------------------------------- patterns
@dataclass(frozen=True, eq=False)
class _Group:
    """The rows of a block with the same number ``s >= 1`` of missing coordinates: rows
    ``start:stop`` of the block sorted by :func:`_patterns`, each pattern's rows in turn.

    Attributes
    ----------
    start, stop : int
        The group's rows in the sorted block.
    rows : ndarray of int, shape (r,)
        The same rows in the block's own order.
    index : ndarray of int, shape (p, s)
        Each pattern's missing coordinates, ascending.
    counts : ndarray of int, shape (p,), or None
        Rows per pattern; None when each row is its own pattern (``p == r``).
    coordinates : ndarray of int, shape (s, r)
        Each row's missing coordinates.
    memo : dict
        Index arrays derived from the above (:meth:`cells`, :meth:`pattern_sums`),
        kept with the group: a block's grouping is kept across EM iterations
        (:func:`_mask_store`).
    """

    start: int
    stop: int
    rows: NDArray[np.intp]
    index: NDArray[np.intp]
    counts: NDArray[np.intp] | None
    coordinates: NDArray[np.intp]
    memo: dict[Any, NDArray[np.intp]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    @property
    def size(self) -> int:
        return int(self.index.shape[1])

    def cells(self, n: int) -> NDArray[np.intp]:
        """Flat positions of the rows' missing cells in a feature-major (D, n) array of
        the sorted block, (s, r); not to be written to."""
        out = self.memo.get(n)
        if out is None:
            out = self.memo[n] = self.coordinates * n + np.arange(self.start, self.stop)
        return out

    def per_row(self, values: NDArray[Any]) -> NDArray[Any]:
        """Per-pattern values (..., p) repeated for each row, (..., r)."""
        return values if self.counts is None else np.repeat(values, self.counts, axis=-1)

    def pattern_sums(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        """Per-row values (m, r) summed over each pattern's rows, (m, p)."""
        if self.counts is None:
            return values
        starts = self.memo.get("starts")
        if starts is None:
            starts = self.memo["starts"] = np.cumsum(self.counts) - self.counts
        return np.add.reduceat(values, starts, axis=1)


@dataclass(frozen=True, eq=False)
class _Patterns:
    """The rows of a block sorted by number of missing coordinates, then pattern.

    Attributes
    ----------
    order : ndarray of int, shape (n,)
        Row ``i`` of the sorted block is row ``order[i]`` of the block.
    groups : list of _Group
        In increasing number of missing coordinates; the rows before the first group
        have none.
    """

    order: NDArray[np.intp]
    groups: list[_Group]

    def tail(self, first: int) -> _Patterns:
        """The groups from number ``first`` on, their rows counted from its start (the
        rows of the earlier groups taken away)."""
        if first == 0:
            return self
        offset = self.groups[first].start if first < len(self.groups) else len(self.order)
        groups = [
            replace(g, start=g.start - offset, stop=g.stop - offset) for g in self.groups[first:]
        ]
        return _Patterns(self.order[offset:], groups)

    def unsort(self, values: NDArray[Any], axis: int = -1) -> NDArray[Any]:
        """Values along ``axis`` in sorted row order, back in the block's order."""
        out = np.empty_like(values)
        index: list[Any] = [slice(None)] * values.ndim
        index[axis] = self.order
        out[tuple(index)] = values
        return out


#: Each pattern group whose rows mostly have patterns of their own (more distinct
#: patterns than this fraction of its rows) is factorised per row: no per-row gathers.
_OWN_PATTERNS = 0.8


def _patterns(missing: NDArray[np.bool_]) -> _Patterns:
    """Group the rows of a block by their missingness pattern."""
    n, d = missing.shape
    row_bits = max(1, int(n - 1).bit_length())
    size_bits = int(d).bit_length()
    if d <= 52 and size_bits + d + row_bits <= 62:
        # one sort of unique integer keys (size, pattern code, row): rows ranked by
        # (number missing, code), each pattern's rows in the block's order
        bits = np.ldexp(1.0, np.arange(d))  # a float GEMM is exact below 2^53
        codes = np.dot(np.ascontiguousarray(missing).view(np.uint8).astype(np.float64), bits)
        codes = codes.astype(np.int64)
        keys = ((np.bitwise_count(codes).astype(np.int64) << d) | codes) << row_bits
        keys |= np.arange(n, dtype=np.int64)
        keys.sort()
        order = (keys & ((1 << row_bits) - 1)).astype(np.intp)
        keys >>= row_bits
        starts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
        starts = np.concatenate([[0], starts]) if n else starts
        counts = np.diff(np.append(starts, n))
        present = keys[starts] & ((1 << d) - 1)
        sizes = (keys[starts] >> d).astype(np.intp)
        table = ((present[:, None] >> np.arange(d)) & 1).astype(bool)
    else:
        if d <= 62:
            codes = missing.astype(np.int64) @ (np.int64(1) << np.arange(d, dtype=np.int64))
            present, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
            sizes = np.bitwise_count(present).astype(np.intp)
            table = ((present[:, None] >> np.arange(d)) & 1).astype(bool)
        else:
            table, inverse, counts = np.unique(
                missing, axis=0, return_inverse=True, return_counts=True
            )
            sizes = table.sum(axis=1)
        inverse = np.asarray(inverse).reshape(-1)
        # patterns ranked by (size, code): one stable sort of the rows by rank
        ranking = np.lexsort((np.arange(len(sizes)), sizes))
        rank = np.empty(len(sizes), dtype=np.intp)
        rank[ranking] = np.arange(len(sizes))
        keys = rank[inverse]
        order = np.argsort(
            keys.astype(np.uint16) if len(sizes) <= 1 << 16 else keys, kind="stable"
        )
        sizes, counts, table = sizes[ranking], counts[ranking], table[ranking]
    bounds = np.cumsum(counts)
    # every pattern's missing coordinates, ascending, patterns in rank order
    all_index = np.flatnonzero(table) % max(d, 1)  # (2-d nonzero costs 10x more)
    index_bounds = np.concatenate([[0], np.cumsum(sizes)])
    groups = []
    group_sizes = np.unique(sizes)
    edges = np.searchsorted(sizes, np.append(group_sizes, np.max(sizes, initial=0) + 1))
    for number, s in enumerate(group_sizes):
        if s == 0:
            continue
        first, last = int(edges[number]), int(edges[number + 1])
        start = int(bounds[first] - counts[first])
        stop = int(bounds[last - 1])
        index = all_index[index_bounds[first] : index_bounds[last]].reshape(
            last - first, int(s))
        group_counts = counts[first:last]
        own = last - first >= _OWN_PATTERNS * (stop - start)
        if own and last - first == stop - start:
            coordinates = np.ascontiguousarray(index.T)
        else:
            coordinates = np.ascontiguousarray(np.repeat(index, group_counts, axis=0).T)
        groups.append(_Group(
            start, stop, order[start:stop], coordinates.T if own else index,
            None if own else group_counts, coordinates,
        ))
    return _Patterns(order, groups)


# --------------------------------------------------------------------------- factorisation
#: Up to this many missing coordinates, stacks of at least ``_LOOPED_STACK`` conditional
#: precisions are inverted by loops over their entries vectorised over the matrices;
#: others by sweeps over whole matrices (fewer Python steps, more arithmetic).  Measured:
#: loops 1.4-2.5x faster on 2000-5000 matrices, sweeps 1.3-2x faster on 30-120.
_LOOPED_SIZE = 5
_LOOPED_STACK = 300

#: Stacks of at least this many matrices are inverted by the loops whatever their size:
#: the sweeps' (s, s, B) temporaries then cost more than the loops' Python steps
#: (measured 2-4x slower at s = 6-8 and 4000 matrices).
_LOOPED_ALWAYS = 2000


def _factorise(
    block: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Log-determinants and inverses of a stack of small symmetric positive definite
    matrices stored matrix-index first, (s, s, B): each step is one operation on a
    contiguous vector of B (LAPACK pays about a microsecond per matrix, and there is one
    per missingness pattern and component).

    Returns
    -------
    log_det : ndarray of shape (B,)
    inverse : ndarray of shape (s, s, B)
    """
    s = block.shape[0]
    # the pivots are checked once at the end (a failed one leaves NaN or infinity behind)
    with np.errstate(all="ignore"):
        if s == 1:
            pivot = block[0, 0]
            _check_pivot(pivot)
            return np.log(pivot), (1.0 / pivot)[None, None]
        stack = block.shape[2]
        if s <= 2 or (s <= _LOOPED_SIZE and stack >= _LOOPED_STACK) or stack >= _LOOPED_ALWAYS:
            lower = _cholesky(block)
            diagonal = np.stack([lower[i][i] for i in range(s)])
            _check_pivot(diagonal)
            log_det = 2.0 * np.sum(np.log(diagonal), axis=0)
            return log_det, _inverse_of_cholesky(lower)
        log_det, pivots, inverse = _sweep(block)
        _check_pivot(pivots)
        return log_det, inverse


def _check_pivot(pivot: NDArray[np.float64]) -> None:
    if not np.all(pivot > 0.0) or not np.all(np.isfinite(pivot)):
        raise np.linalg.LinAlgError("a conditional precision is not positive definite")


def _cholesky(block: NDArray[np.float64]) -> list[list[NDArray[np.float64]]]:
    """Lower Cholesky factors of (s, s, B) as nested lists ``lower[i][j]`` (j <= i) of
    vectors of B."""
    s = block.shape[0]
    lower: list[list[NDArray[np.float64]]] = []
    for i in range(s):
        row: list[NDArray[np.float64]] = []
        for j in range(i + 1):
            value = block[i, j].copy()
            for k in range(j):
                value -= row[k] * lower[j][k] if j < i else row[k] * row[k]
            if i == j:
                np.sqrt(value, out=value)
            else:
                value /= lower[j][j]
            row.append(value)
        lower.append(row)
    return lower


def _inverse_of_cholesky(lower: list[list[NDArray[np.float64]]]) -> NDArray[np.float64]:
    """``(L L')^-1`` from the lower factors of :func:`_cholesky`, (s, s, B)."""
    s = len(lower)
    # F = L^-1 (lower triangular) by forward substitution
    inv: list[list[NDArray[np.float64]]] = []
    for i in range(s):
        diag = 1.0 / lower[i][i]
        row = []
        for j in range(i):
            value = lower[i][j] * inv[j][j]
            for k in range(j + 1, i):
                value += lower[i][k] * inv[k][j]
            value *= -diag
            row.append(value)
        row.append(diag)
        inv.append(row)
    out = np.empty((s, s, len(lower[0][0])))
    for i in range(s):  # (F' F)_ij = sum_{k >= max(i, j)} F_ki F_kj
        for j in range(i + 1):
            value = inv[i][i] * inv[i][j]
            for k in range(i + 1, s):
                value += inv[k][i] * inv[k][j]
            out[i, j] = value
            out[j, i] = value
    return out


def _sweep(
    block: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """:func:`_factorise` by the sweep operator on every pivot in turn (Goodnight 1979):
    ``s`` steps on the whole stack; the pivots (returned, (s, B)) are the successive
    Schur complements."""
    s = block.shape[0]
    work = block.copy()
    # the (s, s, B) update in one buffer: freshly allocated at every step it is faulted
    # in afresh (near the allocator's mmap threshold)
    outer = np.empty_like(work)
    log_det = np.zeros(block.shape[2])
    pivots = np.empty((s, block.shape[2]))
    for k in range(s):
        pivot = pivots[k]
        pivot[...] = work[k, k]
        log_det += np.log(pivot)
        column = work[:, k] / pivot  # (s, B)
        np.multiply(work[:, k][:, None, :], column[None, :, :], out=outer)
        work -= outer
        work[:, k] = column
        work[k, :] = column
        work[k, k] = -1.0 / pivot
    work *= -1.0
    return log_det, pivots, work


def _precision_blocks(
    precision: NDArray[np.float64], index: NDArray[np.intp]
) -> NDArray[np.float64]:
    """``P_mm`` of every precision (K', D, D) and pattern (p, s), as (s, s, K' p)."""
    k, d = precision.shape[0], precision.shape[1]
    cells = index.T[:, None, :] * d + index.T[None, :, :]  # (s, s, p)
    flat = (np.arange(k) * (d * d))[None, None, :, None] + cells[:, :, None, :]
    s = index.shape[1]
    return np.take(precision.reshape(-1), flat).reshape(s, s, k * len(index))


# --------------------------------------------------------------------------- conditionals
@dataclass(frozen=True, eq=False)
class _Conditional:
    """Per-component conditional quantities of a block of rows.

    Attributes
    ----------
    log_joint : ndarray of shape (K, n)
        ``log pi_k + log N(x_o | mu_ko, Sigma_koo)``.
    variance : ndarray of shape (K, n, D) or None
        Conditional variances of the missing coordinates (0 where observed): diagonal
        and spherical layouts.
    groups : list of (group, covariance)
        Full and tied layouts: each :class:`_Group` and the conditional covariances
        ``P_mm^-1`` of its patterns, (s, s, K or 1, p).
    unobserved : ndarray of bool, shape (n,)
        Rows with nothing observed: their ``log_joint`` is exactly ``log pi_k``.
    make_residual : callable
        Returns ``residual`` (computed on demand: the tied E-step needs only the
        per-row and per-pattern parts in ``tied``).
    tied : _TiedParts or None
    patterns : _Patterns or None
        Full and tied layouts: the rows of every array here are in the sorted order of
        ``patterns`` (:func:`_sorted_conditional`) unless it is None.
    spare : ndarray or None
        Full layout: free room of the residual's feature-major shape (K, D, n).
    pattern_part : _PatternPart or None
        The statistics' first rows evaluated per pattern (:func:`_pattern_part`); then
        ``log_joint`` and ``unobserved`` cover all rows, ``groups``, ``tied``,
        ``residual`` and ``spare`` only the rows after ``pattern_part.stop``.
    compiled : _Compiled or None
        The block evaluated by the compiled kernels (:func:`_compiled_conditional`):
        then only ``log_joint``, ``unobserved`` and ``patterns`` are set, and the
        moments and conditional means come from ``compiled``.
    """

    log_joint: NDArray[np.float64]
    variance: NDArray[np.float64] | None
    groups: list[tuple[_Group, NDArray[np.float64]]]
    unobserved: NDArray[np.bool_]
    make_residual: Any
    tied: _TiedParts | None = None
    patterns: _Patterns | None = None
    spare: NDArray[np.float64] | None = None
    pattern_part: _PatternPart | None = None
    compiled: _Compiled | None = None

    @cached_property
    def residual(self) -> NDArray[np.float64]:
        """``xhat_k - mu_k``, (K, n, D): observed coordinates minus the mean, missing ones
        their conditional mean minus the mean."""
        return np.asarray(self.make_residual())


@dataclass(frozen=True, eq=False)
class _TiedParts:
    """The conditional means of a tied model, split into a part per row and a part per
    pattern and component: ``xhat_k - centre = xbar + E t_k`` on a row whose pattern's
    missing coordinates are ``E``.

    Attributes
    ----------
    centre : ndarray of shape (D,)
    xbar : ndarray of shape (D, n)
        The conditional mean of each row (feature-major) when every component's mean is
        ``centre``, relative to ``centre``.
    spread, room : ndarray of shape (D, n)
        Free room (for the statistics).
    pulled : ndarray of shape (K, D)
        ``b_k = P (mu_k - centre)``.
    buffer : ndarray of shape ((2 K + D) S + 2 K n,)
        Room for the per-pattern shifts (K, S) -- ``S`` the patterns' missing
        coordinates in all, columns ordered (group, coordinate, pattern) -- for a second
        (K, S) array, a (D, S) one and two (K, n) ones (the log-joint and work space).
    n_components : int
    coordinates : ndarray of int, shape (S,)
        The coordinate of each column.
    columns : list of (int, int)
        Per group, its columns ``start, stop``.
    shifts : list of ndarray of shape (K, s, p)
        Per group, ``t_k = P_mm^-1 (P (mu_k - centre))_m`` of each pattern (views of the
        shift block).
    """

    centre: NDArray[np.float64]
    xbar: NDArray[np.float64]
    spread: NDArray[np.float64]
    room: NDArray[np.float64]
    pulled: NDArray[np.float64]
    buffer: NDArray[np.float64]
    n_components: int
    coordinates: NDArray[np.intp]
    columns: list[tuple[int, int]]
    shifts: list[NDArray[np.float64]]

    @classmethod
    def allocate(
        cls,
        centre: NDArray[np.float64],
        xbar: NDArray[np.float64],
        spread: NDArray[np.float64],
        room: NDArray[np.float64],
        pulled: NDArray[np.float64],
        total: int,
        scratch: bool,
    ) -> _TiedParts:
        d, n = xbar.shape
        k = len(pulled)
        buffer = _tied_buffer((2 * k + d) * total + 2 * k * n, scratch)
        coordinates = np.empty(total, dtype=np.intp)
        return cls(centre, xbar, spread, room, pulled, buffer, k, coordinates, [], [])

    def _region(self, first: int, rows: int, cols: int) -> NDArray[np.float64]:
        return self.buffer[first : first + rows * cols].reshape(rows, cols)

    @property
    def shift_block(self) -> NDArray[np.float64]:
        """The shifts ``t_k`` of every pattern, (K, S)."""
        return self._region(0, self.n_components, len(self.coordinates))

    @property
    def scaled_block(self) -> NDArray[np.float64]:
        """Room for a second (K, S) array."""
        k, total = self.n_components, len(self.coordinates)
        return self._region(k * total, k, total)

    def basis(self, d: int) -> NDArray[np.float64]:
        """Room for a (D, S) array (also viewed as (S, D) by :meth:`onehot`)."""
        k, total = self.n_components, len(self.coordinates)
        return self._region(2 * k * total, d, total)

    def onehot(self, d: int) -> NDArray[np.float64]:
        k, total = self.n_components, len(self.coordinates)
        return self._region(2 * k * total, total, d)

    def log_joint(self, n: int) -> NDArray[np.float64]:
        """Room for the (K, n) log-joint."""
        k = self.n_components
        return self._region(len(self.buffer) - 2 * k * n, k, n)

    def work(self, n: int) -> NDArray[np.float64]:
        """Room for a (K, n) array."""
        k = self.n_components
        return self._region(len(self.buffer) - k * n, k, n)


def _vector_features(
    params: MixtureParams,
    X: Array,
    missing: NDArray[np.bool_],
    centre: NDArray[np.float64],
    scratch: bool = False,
) -> NDArray[np.float64]:
    """Diagonal and spherical layouts: the feature-major block ``[q; o xc; o]`` (F, n) with
    ``xc = x - centre``, ``o`` the observed mask and ``q`` the squares ``o xc^2`` per
    coordinate (diag) or their sum (spherical); in the thread's :func:`_scratch` buffer
    with ``scratch``."""
    n, d = X.shape
    q = 1 if params.layout == "spherical" else d
    size = (q + 2 * d) * n
    features = (_scratch(size) if scratch else np.empty(size)).reshape(q + 2 * d, n)
    centred, observed = features[q : q + d], features[q + d :]
    np.subtract(np.asarray(X).T, centre[:, None], out=centred, casting="unsafe")
    # bool to float from a contiguous transpose: 2-3x faster than from the strided one
    np.subtract(1.0, np.ascontiguousarray(missing.T).view(np.uint8), out=observed)
    centred *= observed
    if q == 1:
        np.einsum("dn,dn->n", centred, centred, out=features[0])
    else:
        np.multiply(centred, centred, out=features[:d])
    return features


def _vector_scales(params: MixtureParams) -> NDArray[np.float64]:
    """Per-coordinate precision Cholesky factors of diag and spherical layouts, (K, D)."""
    chol = np.asarray(params.precisions_cholesky, dtype=np.float64)
    shape = (params.n_components, params.n_features)
    return np.broadcast_to(chol[:, None] if params.layout == "spherical" else chol, shape)


def _vector_log_joint(
    params: MixtureParams,
    X: Array,
    missing: NDArray[np.bool_],
    centre: NDArray[np.float64],
    scratch: bool = False,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Diagonal and spherical layouts: the (K, n) log-joint of the observed coordinates as
    one GEMM on :func:`_vector_features`, and that block."""
    means = np.asarray(params.means, dtype=np.float64) - centre
    factor = _vector_scales(params)
    precision = factor * factor  # (K, D)
    quadratic = -0.5 * (precision[:, :1] if params.layout == "spherical" else precision)
    coefficients = np.hstack([
        quadratic,
        precision * means,
        np.log(factor) - 0.5 * log_2pi() - 0.5 * precision * means * means,
    ])  # (K, F)
    features = _vector_features(params, X, missing, centre, scratch)
    log_joint = np.dot(coefficients, features)
    log_joint += _log_weights(params)[:, None]
    return log_joint, features


def _centre(params: MixtureParams) -> NDArray[np.float64]:
    """The kernel's expansion point: the weighted mean of the means."""
    return np.asarray(params.weights @ params.means, dtype=np.float64)


def _constants(params: MixtureParams) -> NDArray[np.float64]:
    """``log pi_k + log det U_k - D log(2 pi) / 2`` (K,) of full and tied layouts: the
    complete-data log-joint less half the squared whitened distance."""
    upper = np.asarray(params.precisions_cholesky, dtype=np.float64)
    if params.layout == "tied":
        log_det = np.sum(np.log(np.diag(upper)))
    else:
        log_det = np.sum(np.log(np.diagonal(upper, axis1=1, axis2=2)), axis=1)
    return _log_weights(params) + log_det - (0.5 * log_2pi()) * params.n_features


def _log_weights(params: MixtureParams) -> NDArray[np.float64]:
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(params.weights, dtype=np.float64))


def _conditional(
    params: MixtureParams,
    X: Array,
    missing: NDArray[np.bool_],
    centre: NDArray[np.float64] | None = None,
) -> _Conditional:
    """Marginal log-densities, conditional means and covariances of rows ``X`` (n, D)
    with ``missing`` (n, D) coordinates (their values in ``X`` are ignored), rows in the
    block's order."""
    X = np.asarray(X, dtype=np.float64)
    if centre is None:
        centre = _centre(params)
    if params.layout in ("diag", "spherical"):
        unobserved = ~_row_any(~missing)
        log_joint, _ = _vector_log_joint(params, X, missing, centre)
        log_joint[:, unobserved] = _log_weights(params)[:, None]
        means = np.asarray(params.means, dtype=np.float64)
        variance = (1.0 / _vector_scales(params) ** 2)[:, None, :] * missing

        def residual() -> NDArray[np.float64]:
            out = X[None, :, :] - means[:, None, :]
            out *= ~missing
            return out

        return _Conditional(log_joint, variance, [], unobserved, residual)
    patterns = _patterns(missing)
    cond = _sorted_conditional(params, X, missing, centre, patterns)
    return _Conditional(
        patterns.unsort(cond.log_joint),
        None,
        cond.groups,
        patterns.unsort(cond.unobserved),
        lambda: patterns.unsort(cond.residual, axis=1),
    )


def _sorted_conditional(
    params: MixtureParams,
    X: Array,
    missing: NDArray[np.bool_],
    centre: NDArray[np.float64],
    patterns: _Patterns,
    rows: NDArray[np.intp] | None = None,
    scratch: bool = False,
    sorted_missing: NDArray[np.bool_] | None = None,
) -> _Conditional:
    """Full and tied layouts: :func:`_conditional` of the rows of a block in the sorted
    order of ``patterns``, and in that order.

    ``X`` holds the block's rows at ``rows`` (all of them if None); ``missing`` is the
    block's, ``sorted_missing`` (if given) the same in the sorted order, (D, n).  With
    ``scratch`` the block-sized arrays live in the thread's :func:`_scratch` buffer:
    the result must not outlive the caller.
    """
    n, d = missing.shape
    order = patterns.order if rows is None else rows[patterns.order]
    block = np.take(X, order, axis=0)
    if sorted_missing is None:
        sorted_missing = np.ascontiguousarray(np.take(missing, patterns.order, axis=0).T)
    # groups whose patterns have many rows each go to the per-pattern kernel (the
    # statistics only: inference keeps one path)
    algebra = _pattern_algebra(params, block, centre, patterns) if scratch else []
    stop = algebra[-1][0].stop if algebra else 0
    tail = n - stop
    features = d * (d + 1) // 2 + d + 1
    # the compiled kernels (numba, the statistics only) take the per-row path's rows as
    # they are
    compiled = scratch and (params.layout == "tied" or d >= _COMPILED_FULL_FEATURES)
    kernels = _jit.kernels() if compiled else None
    spares = 3 if params.layout == "tied" else 2 * params.n_components
    values = features * stop + (0 if kernels else (1 + spares) * d * tail)
    space = _scratch(values) if scratch else np.empty(values)
    pattern_part = None
    if stop:
        phi = space[: features * stop].reshape(features, stop)
        pattern_part = _pattern_part(
            params, phi, block[:stop], sorted_missing[:, :stop], centre, algebra
        )
    per_row = patterns.tail(len(algebra))
    unobserved = np.zeros(tail, dtype=bool)
    if per_row.groups and per_row.groups[-1].size == d:
        unobserved[per_row.groups[-1].start :] = True
    if kernels is not None:  # numba: the rows one by one, compiled
        cond = _compiled_conditional(
            kernels, params, block[stop:], sorted_missing[:, stop:], centre, per_row,
            unobserved)
    else:
        # the per-row path for the other rows, feature-major (D, n): long inner loops at
        # small D
        rest = space[features * stop :]
        shifted = rest[: d * tail].reshape(d, tail)
        spare = rest[d * tail :].reshape(spares, d, tail)
        if params.layout == "tied":
            np.subtract(block[stop:].T, centre[:, None], out=shifted, casting="unsafe")
            shifted[sorted_missing[:, stop:]] = 0.0
            cond = _tied_conditional(
                params, shifted, spare, centre, per_row, unobserved, scratch)
        else:
            np.logical_not(sorted_missing[:, stop:], out=shifted, casting="unsafe")
            cond = _full_conditional(
                params, block[stop:], shifted, spare, per_row, unobserved)
    cond.log_joint[:, unobserved] = _log_weights(params)[:, None]  # the marginal over nothing is 1
    if pattern_part is None:
        return cond
    return replace(
        cond,
        log_joint=np.concatenate([pattern_part.log_joint, cond.log_joint], axis=1),
        unobserved=np.concatenate([np.zeros(stop, dtype=bool), unobserved]),
        pattern_part=pattern_part,
    )


#: Full covariances with at least this many components evaluate the groups of rows
#: whose missingness patterns have at least ``_PATTERN_ROWS`` rows each on average per
#: pattern (:func:`_pattern_part`): the per-row path costs ``K`` small products per row,
#: the per-pattern path one feature block and two GEMMs.  Measured (D = 4 and 8, shared
#: patterns): 1.1x slower at K = 5, 1.2x faster at K = 10, 1.3-1.7x faster at K = 20;
#: the tied per-row path is nearly independent of ``K`` and always faster.
_PATTERN_COMPONENTS = 8
_PATTERN_ROWS = 32

#: The per-pattern expansion of the observed Mahalanobis distance around the centre
#: rounds by about ``2 eps |S|_F (|x - centre|^2 + |mu - centre|^2)`` (measured 5-50x
#: below it); groups where that passes this (absolute, in log-density units) take the
#: per-row path, which sums the distance of each row from each mean directly.
_PATTERN_ROUNDING = 1e-10


@dataclass(frozen=True, eq=False)
class _PatternPart:
    """Rows ``0:stop`` of a sorted block, evaluated per pattern as the complete-data
    kernel evaluates a block: one feature block ``phi = [packed xc xc'; xc; 1]`` (F, stop)
    of the centred rows (0 where missing), and per pattern one GEMM against the
    coefficients of the observed coordinates' marginal densities, ``Sigma_oo^-1`` of each
    component.  The statistics follow per pattern and component from the feature block's
    responsibility-weighted sums: the conditional mean is affine in the row,
    ``xhat - centre = xc + E (t_k - G_k xc)``.

    Attributes
    ----------
    stop : int
    centre : ndarray of shape (D,)
    log_joint : ndarray of shape (K, stop)
    features : ndarray of shape (F, stop)
    groups : list of (group, gain, shift, covariance)
        ``G_k = P_mm^-1 P_m.`` (K or 1, p, s, D), ``t_k = P_mm^-1 (P (mu_k - centre))_m``
        (K, p, s) and ``P_mm^-1`` (K or 1, p, s, s) of each pattern.
    """

    stop: int
    centre: NDArray[np.float64]
    log_joint: NDArray[np.float64]
    features: NDArray[np.float64]
    groups: list[tuple[_Group, NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]]



def _pattern_bounds(group: _Group) -> NDArray[np.intp]:
    """Each pattern's first row in a group with shared patterns, and the group's end,
    (p + 1,)."""
    assert group.counts is not None
    return np.concatenate([[group.start], group.start + np.cumsum(group.counts)])


def _pattern_algebra(
    params: MixtureParams,
    block: Array,
    centre: NDArray[np.float64],
    patterns: _Patterns,
) -> list[tuple[_Group, NDArray[np.float64], NDArray[np.float64]]]:
    """The leading groups eligible for :func:`_pattern_part` (full covariances with many
    components, the block's first rows, many rows per pattern, rounding within
    :data:`_PATTERN_ROUNDING`), each with the log-determinant and inverse of its
    patterns' ``Sigma_oo``, (K p,) and (o, o, K p)."""
    groups = patterns.groups
    if params.layout != "full" or params.n_components < _PATTERN_COMPONENTS:
        return []
    if not groups or groups[0].start != 0:
        return []
    d = block.shape[1]
    eligible = []
    for group in groups:
        if group.counts is None or group.stop - group.start < _PATTERN_ROWS * len(group.index):
            break
        eligible.append(group)
    if not eligible:
        return []
    covariance = np.asarray(params.covariances, dtype=np.float64)
    covariance = covariance[None] if params.layout == "tied" else covariance
    offsets = np.asarray(params.means, dtype=np.float64) - centre
    # |x - centre|^2 over the observed cells of any row is at most the sum of the
    # columns' largest squares (the fill values of missing cells count too: looser)
    rows = np.asarray(block[: eligible[-1].stop])
    reach = np.maximum(np.max(rows, axis=0) - centre, centre - np.min(rows, axis=0))
    energy = float(reach @ reach) + float(np.max(np.sum(offsets**2, axis=1)))
    out = []
    for group in eligible:
        observed = np.ones((len(group.index), d), dtype=bool)
        observed[np.arange(len(group.index))[:, None], group.index] = False
        observed_index = np.nonzero(observed)[1].reshape(len(group.index), d - group.size)
        log_det, inverse = _factorise(_precision_blocks(covariance, observed_index))
        size = float(np.sqrt(np.max(np.sum(inverse**2, axis=(0, 1)))))
        if 2.0 * np.finfo(np.float64).eps * size * energy > _PATTERN_ROUNDING:
            break
        out.append((group, log_det, inverse))
    return out


def _pattern_part(
    params: MixtureParams,
    phi: NDArray[np.float64],
    block: Array,
    sorted_missing: NDArray[np.bool_],
    centre: NDArray[np.float64],
    algebra: list[tuple[_Group, NDArray[np.float64], NDArray[np.float64]]],
) -> _PatternPart:
    """Fill ``phi`` (F, stop) from the sorted rows ``block[:stop]`` and evaluate them per
    pattern (see :class:`_PatternPart`)."""
    d = np.asarray(block).shape[1]
    q = d * (d + 1) // 2
    stop = phi.shape[1]
    centred = phi[q : q + d]
    np.subtract(np.asarray(block).T, centre[:, None], out=centred, casting="unsafe")
    centred[sorted_missing] = 0.0
    start = 0
    for i in range(d):  # packed upper triangle, row by row (the kernel's order)
        np.multiply(centred[i], centred[i:], out=phi[start : start + d - i])
        start += d - i
    phi[-1] = 1.0
    upper = np.asarray(params.precisions_cholesky, dtype=np.float64)
    upper = upper[None] if params.layout == "tied" else upper
    precision = np.matmul(upper, upper.transpose(0, 2, 1))  # (K', D, D)
    offsets = np.asarray(params.means, dtype=np.float64) - centre  # (K, D)
    n_components = len(offsets)
    shared = len(precision)
    pulled = np.matmul(precision, offsets[:, :, None])[:, :, 0]  # P_k (mu_k - centre)
    rows_i, rows_j = _triangle(d)
    halved = np.where(rows_i == rows_j, 0.5, 1.0)
    log_weights = _log_weights(params)
    log_joint = np.empty((n_components, stop))
    groups = []
    for group, log_det, inverse in algebra:
        size, n_patterns = group.size, len(group.index)
        observed = d - size
        # S = Sigma_oo^-1 embedded in D x D, (K', p, D, D)
        embedded = np.zeros((shared, n_patterns, d, d))
        observed_mask = np.ones((n_patterns, d), dtype=bool)
        observed_mask[np.arange(n_patterns)[:, None], group.index] = False
        observed_index = np.nonzero(observed_mask)[1].reshape(n_patterns, observed)
        square = inverse.reshape(observed, observed, shared, n_patterns).transpose(2, 3, 0, 1)
        embedded[
            :, np.arange(n_patterns)[:, None, None], observed_index[:, :, None],
            observed_index[:, None, :],
        ] = square
        moved = np.matmul(embedded, offsets[:, None, :, None])[..., 0]  # S (mu - centre)
        coefficients = np.empty((n_components, n_patterns, phi.shape[0]))
        coefficients[:, :, :q] = -embedded[:, :, rows_i, rows_j] * halved
        coefficients[:, :, q : q + d] = moved
        coefficients[:, :, -1] = (
            log_weights[:, None]
            - 0.5 * log_det.reshape(shared, n_patterns)
            - 0.5 * observed * log_2pi()
            - 0.5 * np.einsum("kpd,kd->kp", moved, offsets)
        )
        bounds = _pattern_bounds(group)
        for j in range(n_patterns):
            a, b = bounds[j], bounds[j + 1]
            log_joint[:, a:b] = np.dot(coefficients[:, j], phi[:, a:b])
        # conditional means: G = P_mm^-1 P_m. and t = P_mm^-1 (P (mu - centre))_m
        _, mm_inverse = _factorise(_precision_blocks(precision, group.index))
        covariance = mm_inverse.reshape(size, size, shared, n_patterns).transpose(2, 3, 0, 1)
        gain = np.matmul(covariance, precision[:, group.index, :])  # (K', p, s, D)
        shift = np.matmul(covariance, pulled[:, group.index][..., None])[..., 0]  # (K, p, s)
        groups.append((group, gain, shift, covariance))
    return _PatternPart(stop, centre, log_joint, phi, groups)


def _pattern_moments(
    part: _PatternPart, resp_w: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """First moments (K, D) and second moments (K, D, D) around the centre of the rows
    of ``part`` (``resp_w`` (K, stop)): per pattern the feature block's weighted sums
    ``M0, M1, M2``, then with ``xhat_m = t - G xc``: ``sum r xhat_m xc' = t M1' - G M2``
    and ``sum r xhat_m xhat_m' = G M2 G' - G M1 t' - t M1' G' + M0 t t' + M0 P_mm^-1``."""
    phi = part.features
    f = len(phi)
    d = int((np.sqrt(8 * f + 1) - 3) / 2)
    q = d * (d + 1) // 2
    n_components = len(resp_w)
    rows_i, rows_j = _triangle(d)
    total = np.zeros((f, n_components))
    first = np.zeros(n_components * d)
    second = np.zeros(n_components * d * d)
    component = np.arange(n_components)[:, None, None]
    for group, gain, shift, covariance in part.groups:
        n_patterns = len(group.index)
        bounds = _pattern_bounds(group)
        sums = np.empty((n_patterns, f, n_components))
        for j in range(n_patterns):
            a, b = bounds[j], bounds[j + 1]
            np.dot(phi[:, a:b], resp_w[:, a:b].T, out=sums[j])
        total += sums.sum(axis=0)
        weight = sums[:, -1].T  # M0 (K, p)
        linear = sums[:, q : q + d].transpose(2, 0, 1)  # M1 (K, p, D)
        square = np.empty((n_components, n_patterns, d, d))  # M2
        square[:, :, rows_i, rows_j] = sums[:, :q].transpose(2, 0, 1)
        square[:, :, rows_j, rows_i] = sums[:, :q].transpose(2, 0, 1)
        across = shift[..., None] * linear[:, :, None, :] - np.matmul(gain, square)  # (K,p,s,D)
        mean = shift * weight[..., None] - np.matmul(gain, linear[..., None])[..., 0]  # (K,p,s)
        block = (
            mean[..., None] * shift[:, :, None, :]
            - np.matmul(across, gain.transpose(0, 1, 3, 2))
            + weight[..., None, None] * covariance
        )  # (K, p, s, s)
        index = group.index[None]  # (1, p, s)
        first += np.bincount((component * d + index).ravel(), mean.ravel(), n_components * d)
        cross = np.bincount(
            (component[..., None] * (d * d) + index[..., None] * d + np.arange(d)).ravel(),
            across.ravel(), n_components * d * d,
        ).reshape(n_components, d, d)
        second += (cross + cross.transpose(0, 2, 1)).reshape(-1)
        second += np.bincount(
            (component[..., None] * (d * d) + index[..., None] * d + index[:, :, None, :])
            .ravel(),
            block.ravel(), n_components * d * d,
        )
    first = first.reshape(n_components, d) + total[q : q + d].T
    square = np.empty((n_components, d, d))
    square[:, rows_i, rows_j] = total[:q].T
    square[:, rows_j, rows_i] = total[:q].T
    return first, second.reshape(n_components, d, d) + square


def _observed_constant(
    params: MixtureParams, patterns: _Patterns, n: int, log_det_pmm: list[NDArray[np.float64]]
) -> NDArray[np.float64]:
    """``log pi_k + log det U_k - log det(P_mm) / 2 - |o| log(2 pi) / 2``, (K, n), with
    ``log_det_pmm`` (K or 1, p) per group."""
    constant = _constants(params)
    out = np.empty((len(constant), n))
    first = patterns.groups[0].start if patterns.groups else n
    out[:, :first] = constant[:, None]
    for group, log_det in zip(patterns.groups, log_det_pmm):
        per_pattern = (constant + (0.5 * log_2pi()) * group.size)[:, None] - 0.5 * log_det
        out[:, group.start : group.stop] = group.per_row(per_pattern)
    return out


def _full_conditional(
    params: MixtureParams,
    rows: Array,
    observed: NDArray[np.float64],
    spare: NDArray[np.float64],
    patterns: _Patterns,
    unobserved: NDArray[np.bool_],
) -> _Conditional:
    """Full covariances, sorted ``rows`` (n, D) with ``observed`` (D, n) 1.0 where
    observed, 0.0 where missing, and room for two (K, D, n) arrays in ``spare``:
    conditional means by one Newton step from the rows filled with each component's mean
    (exact for a quadratic), ``xhat_m = mu_m - P_mm^-1 (P (x - mu))_m``.

    ``x - mu_k`` is taken from the rows themselves and multiplied by ``P_k``: through
    the centre, ``P_k (x - c) - P_k (mu_k - c)`` cancels for a component far from it,
    and its rounding, times the condition number, reached 1e-6 of a row's
    log-density (condition number 2e9, the centre 300 standard deviations away)."""
    d, n = observed.shape
    upper = np.asarray(params.precisions_cholesky, dtype=np.float64)  # (K, D, D)
    n_components = len(upper)
    precision = np.matmul(upper, upper.transpose(0, 2, 1))
    means = np.asarray(params.means, dtype=np.float64)
    # z_k = x - mu_k, zero at the missing coordinates, (K, D, n)
    residual, work = spare[:n_components], spare[n_components:]
    np.subtract(np.asarray(rows).T[None, :, :], means[:, :, None], out=residual,
                casting="unsafe")
    residual *= observed
    np.matmul(precision, residual, out=work)  # P_k z_k
    # the rows' missing cells of every component through one index, (K, s r)
    flat_residual = residual.reshape(n_components, d * n)
    flat_work = work.reshape(n_components, d * n)
    log_dets, groups = [], []
    for group in patterns.groups:
        size, n_patterns = group.size, len(group.index)
        log_det, inverse = _factorise(_precision_blocks(precision, group.index))
        inverse = inverse.reshape(size, size, n_components, n_patterns)
        cells = group.cells(n).reshape(-1)
        gradient = np.take(flat_work, cells, axis=1).reshape(n_components, size, -1)
        step = _solve(group.per_row(inverse), gradient.transpose(1, 0, 2))  # (s, K, r)
        moved = np.take(flat_residual, cells, axis=1)
        moved -= step.transpose(1, 0, 2).reshape(n_components, -1)
        flat_residual[:, cells] = moved
        log_dets.append(log_det.reshape(n_components, n_patterns))
        groups.append((group, inverse))
    # the observed coordinates' Mahalanobis distance is the joint quadratic form at the
    # conditional mean (which minimises it over the missing coordinates): |U'(xhat - mu)|^2
    # as a sum of squares, not the Schur complement z'Pz - g_m' P_mm^-1 g_m, which
    # cancels (1e-8 absolute at condition numbers of 1e5)
    np.matmul(upper.transpose(0, 2, 1), residual, out=work)
    quad = np.einsum("kdn,kdn->kn", work, work)
    log_joint = _observed_constant(params, patterns, n, log_dets)
    quad *= 0.5
    log_joint -= quad
    return _Conditional(
        log_joint, None, groups, unobserved, lambda: residual.transpose(0, 2, 1),
        patterns=patterns, spare=work,
    )


def _solve(matrices: NDArray[np.float64], vectors: NDArray[np.float64]) -> NDArray[np.float64]:
    """``A v`` for matrices (s, s, ...) and vectors (s, ...) with one more axis at most."""
    if len(vectors) == 1:
        return np.asarray(matrices[0] * vectors)
    spec = "ijkr,jkr->ikr" if vectors.ndim == 3 else "ijr,jr->ir"
    return np.asarray(np.einsum(spec, matrices, vectors))


#: The tied E-step expands the observed Mahalanobis distance ``|w + v_k|^2`` (``w`` a
#: row's whitened conditional mean, ``v_k`` its pattern's and component's whitened
#: shift) into ``|w|^2 - 2 w.U'(mu_k - centre) + |v_k|^2`` with ``|v_k|^2 = |U'(mu_k -
#: centre)|^2 - c_k``, whose rounding is about ``2 eps (|w|^2 + |U'(mu_k - centre)|^2)``;
#: rows where that sum exceeds half this bound (``1e-12`` of the log-density) are summed
#: as ``|w + v_k|^2`` directly.
_EXPANSION_LIMIT = 4096.0

def _tied_buffer(values: int, scratch: bool) -> NDArray[np.float64]:
    """A float64 buffer of ``values`` entries for the tied E-step's (K, S) and (K, n)
    arrays: with ``scratch`` the same memory on every call in a thread (a second buffer
    beside :func:`_scratch`, whose memory holds the block's (D, n) arrays meanwhile)."""
    return workspace("missing.tied", values) if scratch else np.empty(values)


def _tied_factorise(
    block: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """:func:`_factorise` of one stack of ``P_mm`` (at most one per row): by the sweep
    operator, measured 1.1-1.6x faster than the looped Cholesky factors on the tied
    E-step's stacks of 25-1000 matrices (s = 2..8)."""
    s = block.shape[0]
    if s == 1:
        return _factorise(block)
    with np.errstate(all="ignore"):  # the pivots are checked once at the end
        log_det, pivots, inverse = _sweep(block)
    _check_pivot(pivots)
    return log_det, inverse


#: Groups with at most this many patterns (and missing coordinates) are factorised
#: together, each ``P_mm`` padded to the largest size with an identity block (one
#: sweep instead of one per group: the Python steps, not the arithmetic, cost at these
#: sizes).
_PADDED_PATTERNS = 128
_PADDED_SIZE = 6


def _tied_factorisations(
    precision: NDArray[np.float64], groups: list[_Group]
) -> list[tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """Log-determinants (p,) and inverses (s, s, p) of every group's ``P_mm``."""
    out: list[Any] = [None] * len(groups)
    small = [
        i for i, g in enumerate(groups)
        if len(g.index) <= _PADDED_PATTERNS and g.size <= _PADDED_SIZE
    ]
    if len(small) > 1:
        d = len(precision)
        width = max(groups[i].size for i in small)
        # padded slot j of a pattern reads coordinate D + j of blockdiag(P, I)
        augmented = np.zeros((d + width, d + width))
        augmented[:d, :d] = precision
        augmented[d:, d:] = np.eye(width)
        index = np.concatenate([
            np.hstack([
                groups[i].index,
                np.broadcast_to(
                    d + np.arange(groups[i].size, width),
                    (len(groups[i].index), width - groups[i].size),
                ),
            ])
            for i in small
        ])
        # the padded pivots are 1 and come last: the real entries are swept exactly as
        # alone, and the log-determinants gain log 1 = 0
        log_det, inverse = _tied_factorise(_precision_blocks(augmented[None], index))
        start = 0
        for i in small:
            size, stop = groups[i].size, start + len(groups[i].index)
            out[i] = (log_det[start:stop], np.ascontiguousarray(inverse[:size, :size, start:stop]))
            start = stop
    for i, group in enumerate(groups):
        if out[i] is None:
            out[i] = _tied_factorise(_precision_blocks(precision[None], group.index))
    return out


def _tied_conditional(
    params: MixtureParams,
    shifted: NDArray[np.float64],
    spare: NDArray[np.float64],
    centre: NDArray[np.float64],
    patterns: _Patterns,
    unobserved: NDArray[np.bool_],
    scratch: bool = False,
) -> _Conditional:
    """Tied covariance, sorted rows ``shifted = x - centre`` feature-major (D, n), 0
    where missing, and room for three more in ``spare``: ``P_mm`` depends on the pattern
    only, and the conditional mean is linear in the component's mean, ``xhat_k = centre +
    xbar + E t_k`` with ``t_k = P_mm^-1 b_km`` and ``b_k = P (mu_k - centre)``.

    Every pattern's ``t_k`` comes from one GEMM of the (K, D) matrix of the ``b_k``
    with the patterns' ``P_mm^-1`` embedded column by column in a (D, S) matrix (``S``
    the patterns' missing coordinates in all); the observed distance needs per row
    ``|w|^2`` of the whitened ``w = U' xbar``, one (K, D) x (D, n) GEMM ``w . U'(mu_k -
    centre)``, and per pattern ``c_k = b_km . t_k`` -- per row and component only
    additions.  The (K, S) and (K, n) arrays live in :func:`_tied_buffer` (reused with
    ``scratch``): freshly allocated, their pages cost more than the arithmetic."""
    d, n = shifted.shape
    upper = np.asarray(params.precisions_cholesky, dtype=np.float64)  # (D, D)
    precision = upper @ upper.T
    offsets = np.asarray(params.means, dtype=np.float64) - centre  # mu_k - centre
    n_components = len(offsets)
    whitened_means = offsets @ upper  # U' (mu_k - centre), (K, D)
    pulled = whitened_means @ upper.T  # b_k = P (mu_k - centre), (K, D)
    mean_norms = np.einsum("kd,kd->k", whitened_means, whitened_means)
    gradient, white = spare[0], spare[1]
    np.dot(precision, shifted, out=gradient)  # P (x - centre), missing coordinates at 0
    xbar = shifted  # (D, n)
    flat_xbar = xbar.reshape(-1)
    flat_gradient = gradient.reshape(-1)
    total = sum(g.size * len(g.index) for g in patterns.groups)
    # the gradient's room is free once the rows' conditional means are in
    parts = _TiedParts.allocate(centre, xbar, spare[2], gradient, pulled, total, scratch)
    basis = parts.basis(d)  # column (j, pattern): P_mm^-1 e_j on the pattern's coordinates
    basis.fill(0.0)
    flat_basis = basis.reshape(-1)
    log_dets, groups = [], []
    start = 0
    factorisations = _tied_factorisations(precision, patterns.groups)
    for group, (log_det, inverse) in zip(patterns.groups, factorisations):
        size, n_patterns = group.size, len(group.index)
        cells = group.cells(n)  # (s, r)
        flat_xbar[cells] = -_solve(group.per_row(inverse), np.take(flat_gradient, cells))
        index = group.index.T  # (s, p)
        stop = start + size * n_patterns
        parts.coordinates[start:stop] = index.reshape(-1)
        column = np.arange(start, stop).reshape(1, size, n_patterns)
        flat_basis[(index[:, None, :] * total + column).reshape(-1)] = inverse.reshape(-1)
        log_dets.append(log_det)
        groups.append((group, inverse[:, :, None, :]))
        parts.columns.append((start, stop))
        start = stop
    shift_block = parts.shift_block
    np.dot(pulled, basis, out=shift_block)  # t_k of every pattern, (K, S)
    # c_k / 2 = (b_km / 2) . t_k, summed per pattern below
    halves = parts.scaled_block
    np.take(0.5 * pulled, parts.coordinates, axis=1, out=halves)
    halves *= shift_block
    # log_joint = constant - |w + v_k|^2 / 2, expanded (see _EXPANSION_LIMIT)
    np.dot(upper.T, xbar, out=white)  # w, (D, n)
    norms = np.einsum("dn,dn->n", white, white)
    log_joint = parts.log_joint(n)
    np.dot(whitened_means, white, out=log_joint)  # (K, n)
    constant = _constants(params)
    first = patterns.groups[0].start if patterns.groups else n
    if first:  # complete rows: v = -U' (mu_k - centre), summed directly
        direct = white[None, :, :first] - whitened_means[:, :, None]
        log_joint[:, :first] = constant[:, None] - 0.5 * np.einsum("kdn,kdn->kn", direct, direct)
    rest = log_joint[:, first:]
    rest -= 0.5 * norms[first:]
    rest += (constant - 0.5 * mean_norms)[:, None]
    limit = 0.5 * _EXPANSION_LIMIT - (float(np.max(mean_norms)) if n_components else 0.0)
    work = parts.work(n)
    for group, (start, stop), log_det in zip(patterns.groups, parts.columns, log_dets):
        size, n_patterns = group.size, len(group.index)
        shift = shift_block[:, start:stop].reshape(n_components, size, n_patterns)
        parts.shifts.append(shift)
        half = halves[:, start:stop].reshape(n_components, size, n_patterns)
        part = log_joint[:, group.start : group.stop]
        base = (0.5 * size * log_2pi()) - 0.5 * log_det  # (p,)
        if group.counts is None:
            part += base
            for j in range(size):
                part += half[:, j]
        else:
            c = half.sum(axis=1)  # (K, p)
            c += base
            rows = work[:, : group.stop - group.start]
            np.take(c, group.per_row(np.arange(n_patterns)), axis=1, out=rows)
            part += rows
        local = np.flatnonzero(norms[group.start : group.stop] > limit)
        if len(local):
            pattern = local if group.counts is None else np.repeat(
                np.arange(n_patterns), group.counts)[local]
            moved = np.empty((len(local), n_components, d))
            moved[:] = -offsets
            moved[
                np.arange(len(local))[:, None, None], np.arange(n_components)[None, :, None],
                group.index[pattern][:, None, :],
            ] += shift[:, :, pattern].transpose(2, 0, 1)
            exact = white[:, group.start + local].T[:, None, :] + moved @ upper  # (l, K, D)
            base = constant[:, None] + (0.5 * size * log_2pi()) - 0.5 * log_det[pattern]
            part[:, local] = base - 0.5 * np.einsum("lkd,lkd->kl", exact, exact)
    shifts = parts.shifts

    def residual() -> NDArray[np.float64]:
        out = xbar[None, :, :] - offsets[:, :, None]  # (K, D, n)
        flat = out.reshape(-1)
        component = (np.arange(n_components) * (n * d))[:, None, None]
        for (group, _), shift in zip(groups, shifts):
            flat[component + group.cells(n)[None]] += group.per_row(shift)
        return out.transpose(0, 2, 1)

    return _Conditional(
        log_joint, None, groups, unobserved, residual, parts, patterns=patterns
    )


# --------------------------------------------------------------------------- compiled
#: Full covariances take the compiled kernels from this many features on: below, the
#: numpy path's operations over all the rows at once are as fast or faster (measured
#: K=5, D=4: 2.7 ms a pass against 3.5; D=8: 7.6 against 7.1).
_COMPILED_FULL_FEATURES = 8


@dataclass(frozen=True, eq=False)
class _Compiled:
    """A block of sorted rows evaluated by the compiled kernels (numba,
    :mod:`gmmkit.core._missing_jit`), full and tied layouts: what the kernels' second
    pass, the statistics, reads.

    Attributes
    ----------
    kernels : module
    layout : str
    block : ndarray of shape (n, D)
        The sorted rows, float64 (values at missing cells ignored).
    missing : ndarray of bool, shape (D, n)
        Their missing cells, feature-major.
    centre : ndarray of shape (D,)
    means : ndarray of shape (K, D)
    precision : ndarray of shape (K, D, D), or (D, D) tied
    inverses : ndarray
        Each pattern's ``P_mm^-1`` (per component for full covariances), packed.
    kept : ndarray
        Full: each row's conditional means minus the means; tied: each pattern's shifts
        ``t_k``; as the first pass wrote them.
    xbar : ndarray of shape (n, D) or None
        Tied: each row's conditional mean minus the centre when every mean is the
        centre.
    """

    kernels: Any
    layout: str
    block: NDArray[np.float64]
    missing: NDArray[np.bool_]
    centre: NDArray[np.float64]
    means: NDArray[np.float64]
    precision: NDArray[np.float64]
    inverses: NDArray[np.float64]
    kept: NDArray[np.float64]
    xbar: NDArray[np.float64] | None = None

    def moments(
        self,
        resp_w: NDArray[np.float64],
        weight: NDArray[np.float64] | None,
        reference: NDArray[np.float64],
        offsets: NDArray[np.float64],
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """First moments (K, D) and second moments (K or 1, D, D) around ``reference``,
        as :func:`_conditional_moments` (``offsets`` is ``means - reference``)."""
        n_components, d = self.means.shape
        nk = resp_w.sum(axis=1)
        resp_w = np.ascontiguousarray(resp_w, dtype=np.float64)
        if self.layout == "full":
            around_mean = np.empty((n_components, d))
            scatter = np.empty((n_components, d, d))
            _compiled_status(self.kernels.full_moments(
                self.block, self.missing, self.means, resp_w, self.inverses, self.kept,
                around_mean, scatter,
            ))
            return _moved_full(around_mean, scatter, nk, offsets), scatter
        assert self.xbar is not None
        row_weight = np.ones(len(self.block)) if weight is None else np.asarray(
            weight, dtype=np.float64)
        first = np.empty((n_components, d))
        pooled = np.empty((d, d))
        _compiled_status(self.kernels.tied_moments(
            self.missing, self.xbar, resp_w, row_weight, self.inverses, self.kept, first,
            pooled,
        ))
        first += np.dot(resp_w, self.xbar)
        weighted = self.xbar if weight is None else self.xbar * np.sqrt(row_weight)[:, None]
        pooled += np.dot(weighted.T, weighted)
        return _moved_tied(first, pooled, nk, self.centre, reference)

    def conditional_mean(self, k: int, row: int) -> NDArray[np.float64]:
        """``xhat_k`` of one sorted row."""
        precision = self.precision[k] if self.layout == "full" else self.precision
        return _row_conditional_mean(
            self.block[row], self.missing[:, row], precision, self.means[k])


def _compiled_status(status: int) -> None:
    """Raise for a compiled kernel's failure status (as :func:`_check_pivot`)."""
    if status:
        raise np.linalg.LinAlgError("a conditional precision is not positive definite")


def _compiled_conditional(
    kernels: Any,
    params: MixtureParams,
    block: Array,
    sorted_missing: NDArray[np.bool_],
    centre: NDArray[np.float64],
    patterns: _Patterns,
    unobserved: NDArray[np.bool_],
) -> _Conditional:
    """Full and tied layouts: the log-joint of the sorted rows ``block`` (n, D) by the
    compiled kernels, for the statistics (:meth:`_Compiled.moments`); as
    :func:`_full_conditional` and :func:`_tied_conditional` in the per-row path of
    :func:`_sorted_conditional`."""
    n, d = block.shape
    rows = np.ascontiguousarray(block, dtype=np.float64)
    missing = np.ascontiguousarray(sorted_missing)
    upper = np.ascontiguousarray(params.precisions_cholesky, dtype=np.float64)
    means = np.ascontiguousarray(params.means, dtype=np.float64)
    log_weights = _log_weights(params)
    n_components = len(means)
    log_joint = np.empty((n_components, n))
    tied = params.layout == "tied"
    n_patterns, packed, coordinates, cells = kernels.sizes(missing)
    if tied:
        precision = upper @ upper.T
        stacked = precision[None]
    else:
        precision = np.matmul(upper, upper.transpose(0, 2, 1))
        stacked = precision
    # every pattern's P_mm^-1 and log det P_mm (per component unless tied)
    inverses = np.empty(len(stacked) * packed)
    log_det = np.empty((n_patterns, len(stacked)))
    _compiled_status(kernels.factorise(missing, stacked, inverses, log_det))
    if tied:
        offsets = means - centre
        white_means = offsets @ upper  # U' (mu_k - centre), (K, D)
        pulled = white_means @ upper.T  # P (mu_k - centre)
        constant = _constants(params)
        xbar = np.empty((n, d))
        shifts = np.empty(n_components * coordinates)
        _compiled_status(kernels.tied_log_joint(
            rows, missing, centre, precision, upper,
            np.ascontiguousarray(white_means.T), np.ascontiguousarray(pulled.T), constant,
            log_weights, inverses, log_det, log_joint, xbar, shifts,
        ))
        compiled = _Compiled(
            kernels, "tied", rows, missing, centre, means, precision, inverses, shifts, xbar)
    else:
        constant = _constants(params)
        steps = np.empty(n_components * cells)
        _compiled_status(kernels.full_log_joint(
            rows, missing, means, precision, upper,
            np.ascontiguousarray(upper.transpose(0, 2, 1)), constant, log_weights, inverses,
            log_det, log_joint, steps,
        ))
        compiled = _Compiled(
            kernels, "full", rows, missing, centre, means, precision, inverses, steps)

    def residual() -> NDArray[np.float64]:
        raise NotImplementedError("the compiled E-step keeps no conditional means")

    return _Conditional(
        log_joint, None, [], unobserved, residual, patterns=patterns, compiled=compiled
    )


# --------------------------------------------------------------------------- Schur form
#: The Schur form (:func:`_schur_statistics`) factorises each distinct missingness
#: pattern of a group of rows once per component (through their prefix tree); a group's
#: factors hold at most about this many values (``K s^2`` a pattern bounds them), and a
#: chunk whose patterns would hold more is split into groups of rows.
_SCHUR_PATTERN_VALUES = 1 << 22


@dataclass(frozen=True, eq=False)
class _SchurBlock:
    """Rows of a :class:`_SchurGroup` evaluated together (one complete-kernel block).

    Attributes
    ----------
    rows : ndarray of int32, shape (n,)
        Their positions among the chunk's rows that the caller passes.
    pattern : ndarray of int32, shape (n,)
        Each row's pattern in its group.
    row_start : ndarray of int32, shape (n + 1,)
    row_cells : ndarray of int32, shape (cells,)
        Row ``i``'s missing cells (coordinates increasing) are at ``row_cells[
        row_start[i]:row_start[i + 1]]`` of the arrays over cells, which hold the cells
        coordinate by coordinate: coordinate ``j``'s at ``coord_start[j]:coord_start[j
        + 1]``, of the rows ``cell_rows`` there.
    cell_rows : ndarray of int32, shape (cells,)
    coord_start : ndarray of intp, shape (D + 1,)
    fill_at, fill_column : ndarray of int32, shape (cells,)
        The missing cells' positions in the flattened (n, D) block and their columns.
    """

    rows: NDArray[np.int32]
    pattern: NDArray[np.int32]
    row_start: NDArray[np.int32]
    row_cells: NDArray[np.int32]
    cell_rows: NDArray[np.int32]
    coord_start: NDArray[np.intp]
    fill_at: NDArray[np.int32]
    fill_column: NDArray[np.int32]

    def row_missing(self, row: int) -> NDArray[np.bool_]:
        """The missing mask (D,) of the block's row ``row``."""
        mask = np.zeros(len(self.coord_start) - 1, dtype=bool)
        mask[self.fill_column[self.row_start[row] : self.row_start[row + 1]]] = True
        return mask


@dataclass(frozen=True, eq=False)
class _SchurGroup:
    """Rows whose distinct patterns are factorised together, through their prefix tree
    (:func:`gmmkit.core._missing_jit.pattern_trie`).

    Attributes
    ----------
    sizes : ndarray of int64, shape (P,)
        Each pattern's number of missing coordinates ``s``.
    index : ndarray of int32, shape (P, D)
        Each pattern's missing coordinates, increasing, in its first ``s`` entries (-1
        after); the patterns in lexicographic order.
    path : ndarray of int32, shape (P, D)
        The node of each prefix of each pattern.
    parent, depth, coordinate, start : ndarray of int64, shape (nodes,)
        The tree's nodes; ``start`` where each node's rows of ``L`` and ``F`` begin, in
        stores of ``values`` entries.
    values : int
    blocks : list of _SchurBlock
    """

    sizes: NDArray[np.int64]
    index: NDArray[np.int32]
    path: NDArray[np.int32]
    parent: NDArray[np.int64]
    depth: NDArray[np.int64]
    coordinate: NDArray[np.int64]
    start: NDArray[np.int64]
    values: int
    blocks: list[_SchurBlock]


def _schur_block_rows(n_features: int, n_components: int) -> int:
    """Rows of a :class:`_SchurBlock`: :data:`_BLOCK_VALUES` values of the feature block,
    the log-joint and the arrays over cells (a quarter of the coordinates missing)."""
    features = n_features * (n_features + 1) // 2 + n_features + 1
    per_row = features + n_components + (2 * n_components + n_features) * n_features // 4
    return int(min(max(_BLOCK_VALUES // per_row, 256), 8192))


def _pattern_keys(missing: NDArray[np.bool_]) -> NDArray[Any]:
    """One sortable key per row of ``missing`` (n, D), ordered as the rows' masks read as
    bit strings (coordinate 0 first): the patterns that share a prefix of missing
    coordinates are contiguous in the keys' order.  Up to 64 features an unsigned
    integer (fast to sort), beyond the packed bytes."""
    n, d = missing.shape
    packed = np.packbits(missing, axis=1)  # coordinate 0 the high bit of byte 0
    if d <= 64:
        wide = np.zeros((n, 8), dtype=np.uint8)
        wide[:, : packed.shape[1]] = packed
        return wide.view(">u8").ravel()
    packed = np.ascontiguousarray(packed)
    return packed.view(np.dtype((np.void, packed.shape[1]))).ravel()


def _schur_groups(
    missing: NDArray[np.bool_], n_components: int
) -> list[_SchurGroup]:
    """The :class:`_SchurGroup` s of a chunk's rows with ``missing`` (n, D) (each with
    something missing and something observed).  Paid once per fit for an in-memory
    engine's chunks, every pass for streamed ones: sorts, counts and masked copies."""
    kernels = _jit.kernels()
    assert kernels is not None
    n, d = missing.shape
    cells_per_row = _row_counts(missing)
    # the distinct patterns bound the factors' size: split the rows if they would pass
    # the budget (K s^2 a pattern; each row its own pattern at worst)
    keys = _pattern_keys(missing)
    order = np.argsort(keys)
    sorted_keys = keys[order]
    new = np.ones(n, dtype=bool)
    new[1:] = sorted_keys[1:] != sorted_keys[:-1]
    firsts = order[new]
    values = n_components * float(np.sum(cells_per_row[firsts].astype(np.float64) ** 2))
    parts = max(1, int(np.ceil(values / _SCHUR_PATTERN_VALUES)))
    block_rows = _schur_block_rows(d, n_components)
    groups = []
    for rows in np.array_split(np.arange(n), parts):
        if not len(rows):
            continue
        if parts > 1:
            order = rows[np.argsort(keys[rows])]
            sorted_keys = keys[order]
            new = np.ones(len(rows), dtype=bool)
            new[1:] = sorted_keys[1:] != sorted_keys[:-1]
        # rows pattern by pattern, patterns in their keys' order (prefixes contiguous):
        # each block reads a run of the factors, in order, and a pattern's rows read
        # its factors once (a group's factors pass any cache)
        sorted_pattern = (np.cumsum(new) - 1).astype(np.int32)
        distinct = missing[order[new]]
        sizes = cells_per_row[order[new]].astype(np.int64)
        index = np.full((len(sizes), d), -1, dtype=np.int32)
        where = np.nonzero(distinct)
        offsets = np.repeat(np.cumsum(sizes) - sizes, sizes)
        index[where[0], np.arange(len(where[0])) - offsets] = where[1]
        path = np.empty((len(sizes), d), dtype=np.int32)
        most = int(sizes.sum())
        parent, depth, coordinate, start = (np.empty(most, dtype=np.int64) for _ in range(4))
        nodes, values = kernels.pattern_trie(
            index, sizes, path, parent, depth, coordinate, start, n_components)
        # (kept for the engine's life with the mask: 32-bit indices, as a block holds
        # fewer than 2^31 cells)
        sorted_rows = order.astype(np.int32)
        blocks = []
        for begin in range(0, len(sorted_rows), block_rows):
            part = sorted_rows[begin : begin + block_rows]
            blocks.append(_schur_block_layout(
                part, missing[part], sorted_pattern[begin : begin + block_rows]))
        groups.append(_SchurGroup(
            sizes=sizes, index=index, path=path, parent=parent[:nodes],
            depth=depth[:nodes], coordinate=coordinate[:nodes], start=start[:nodes],
            values=int(values), blocks=blocks,
        ))
    return groups


def _schur_block_layout(
    rows: NDArray[np.int32], missing: NDArray[np.bool_], pattern: NDArray[np.int32]
) -> _SchurBlock:
    """The :class:`_SchurBlock` of rows ``rows`` with ``missing`` (n, D) and patterns
    ``pattern`` (:func:`gmmkit.core._missing_jit.block_layout`)."""
    kernels = _jit.kernels()
    assert kernels is not None
    n, d = missing.shape
    cells = int(np.count_nonzero(missing))
    row_start = np.empty(n + 1, dtype=np.int32)
    coord_start = np.empty(d + 1, dtype=np.intp)
    row_cells, cell_rows, fill_at, fill_column = (
        np.empty(cells, dtype=np.int32) for _ in range(4))
    kernels.block_layout(
        np.ascontiguousarray(missing), row_start, row_cells, cell_rows, coord_start,
        fill_at, fill_column)
    return _SchurBlock(
        rows=rows, pattern=pattern, row_start=row_start, row_cells=row_cells,
        cell_rows=cell_rows, coord_start=coord_start, fill_at=fill_at,
        fill_column=fill_column,
    )


#: The Schur form takes full covariances from this many components on, at any number
#: of features: measured (20 % missing at random, one thread, each path alone in its
#: process with its own chunks, milliseconds a pass of 30 000 rows, Schur / compiled
#: per-row / numpy) K=3: 2.11 / 2.93 / 1.77 at D=3, 2.59 / 3.78 / 2.10 at D=4, 5.74 /
#: 4.56 / 4.92 at D=8, 16.1 / 14.6 / 19.8 at D=16; K=4: 1.41 / 2.28 / 1.57 at D=2, 2.66
#: / 4.53 / 3.10 at D=4, 5.13 / 5.18 / 5.69 at D=8, 9.72 / 9.77 / 15.9 at D=12, 17.2 /
#: 17.0 / 30.2 at D=16; K=5: 3.03 / 5.50 / 4.57 at D=4, 4.71 / 8.65 / 6.63 at D=6, 6.68
#: / 6.98 at D=8, 20.4 / 21.1 at D=16; K=7: 7.59 / 8.72 at D=8, 23.9 / 30.1 at D=16;
#: K=10 D=4 3.94 / 5.92 / 5.67; K=20 D=2 3.45 / 5.03 / 4.65.  Below, the compiled
#: per-row path from :data:`_COMPILED_FULL_FEATURES` features on, the numpy path under.
_SCHUR_COMPONENTS = 4

#: Tied covariances take the Schur form from this many features on: measured as above
#: (Schur / per-row), K=5: 3.36 / 3.02 at D=6, 3.79 / 3.99 at D=8, 4.96 / 4.92 at D=10;
#: K=20: 6.43 / 5.34 at D=6, 7.63 / 6.80 at D=8; at D=16 the Schur form is 1.4x faster
#: (K=5 and K=20).
_SCHUR_TIED_FEATURES = 10


def _schur_chosen(layout: str, n_features: int, n_components: int) -> bool:
    """Whether covariances of this layout and size take the Schur form (numba
    available)."""
    if layout == "tied":
        return n_features >= _SCHUR_TIED_FEATURES and _jit.available()
    return layout == "full" and n_components >= _SCHUR_COMPONENTS and _jit.available()


def _schur_applies(coefs: KernelCoefficients) -> bool:
    """Whether :func:`_schur_statistics` evaluates blocks of these coefficients:
    covariances of :func:`_schur_chosen` layout and size.  It evaluates them in float64
    (:attr:`KernelCoefficients.in_float64`), so float32 coefficients qualify where the
    float64 ones take the statistics around the same centres."""
    if coefs.params is None or not _schur_chosen(
        coefs.covariance.layout, coefs.params.n_features, coefs.params.n_components
    ):
        return False
    return coefs.dtype == np.float64 or np.array_equal(
        coefs.in_float64.stats_reference, coefs.stats_reference)


def _schur_statistics(
    coefs: KernelCoefficients,
    X: Array,
    rows: NDArray[np.intp],
    groups: list[_SchurGroup],
    sample_weight: Array | None,
    labels: NDArray[np.integer] | None,
    label_weight: float,
) -> SuffStats:
    """Statistics of the rows ``rows`` of a chunk (full covariances, each row with
    something missing and something observed; ``groups`` from :func:`_schur_groups`)
    in the Schur form: the complete-data kernel's log-joint and moments of the rows
    with their missing cells at the centre ``c``, corrected by the algebra of the
    missing coordinates.

    For any filling ``z`` of a row's missing coordinates (here ``z = y - a_k``, ``y``
    the row minus the centre with 0 at the missing cells, ``a_k = mu_k - c``), the
    observed distance is ``z' P z - t' P_mm^-1 t`` with ``t = (P z)_m``, the conditional
    mean ``xhat_m = c_m - P_mm^-1 t`` and the conditional covariance ``P_mm^-1``.
    ``t = (P_k y)_m - (P_k a_k)_m``: the first term by one GEMM per coordinate over the
    rows missing it, as are the cross moments ``sum r y u'``; the rest is ``O(s^2)``
    per row and component (:func:`gmmkit.core._missing_jit.schur_log_joint`), each
    distinct pattern of a group factorised once per component.  The moments of all
    blocks are summed before they are packed."""
    kernels = _jit.kernels()
    assert kernels is not None and coefs.params is not None
    n_components = coefs.params.n_components
    sums = _schur_sums(coefs)
    for group in groups:
        inverses, log_det = _factorise_group(kernels, group, sums.by_component)
        totals = workspace("missing.schur.totals", (len(group.sizes), n_components))
        totals[...] = 0.0
        for block in group.blocks:
            _schur_block(
                coefs, kernels, X, rows[block.rows], block, group, inverses, log_det,
                totals, sums, sample_weight, labels, label_weight)
        sums.conditional += _group_conditional(kernels, group, totals, inverses)
    return sums.statistics(coefs, X, rows)


def _schur_sums(coefs: KernelCoefficients) -> _SchurSums:
    """The parameters' arrays that :func:`_schur_statistics` shares with its blocks, and
    its sums, zero."""
    params = coefs.params
    assert params is not None
    n_components, d = params.n_components, params.n_features
    reference = np.asarray(coefs.reference, dtype=np.float64)
    upper = np.asarray(params.precisions_cholesky, dtype=np.float64)
    precision = np.matmul(upper, upper.transpose(0, 2, 1))
    offsets = np.asarray(params.means, dtype=np.float64) - reference
    return _SchurSums(
        precision=precision,
        by_component=np.ascontiguousarray(precision.transpose(1, 2, 0)),  # (D, D, K)
        offsets=offsets,
        pulled=np.ascontiguousarray(np.einsum("kij,kj->ik", precision, offsets)),  # (D, K)
        factor=np.ascontiguousarray(upper.transpose(0, 2, 1)),
        constant=_constants(params),
        reference=reference,
        features=np.zeros((n_components, 0)),
        # sum r u u' and sum r P_mm^-1 (lower triangles), sum r (y u' + u y')
        lower=np.zeros((d, d, n_components)),
        conditional=np.zeros((d, d, n_components)),
        square=np.zeros((n_components, d, d)),
        shift=np.zeros((d, n_components)),
    )


def _factorise_group(
    kernels: Any, group: _SchurGroup, by_component: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The rows of ``F = L^-1`` of every node of a group's prefix tree (a store of
    ``group.values``) and the log-determinants of the nodes' prefix blocks (nodes, K),
    for the precisions ``by_component`` (D, D, K) -- in this thread's workspace, as the
    blocks' arrays: freed and allocated again every pass they would be faulted in
    afresh."""
    width = by_component.shape[2]
    lower = workspace("missing.schur.lower", group.values)
    inverses = workspace("missing.schur.inverses", group.values)
    pivots = workspace("missing.schur.pivots", (len(group.parent), width))
    _compiled_status(kernels.factorise_trie(
        group.parent, group.depth, group.coordinate, group.start, by_component, lower,
        inverses, pivots))
    # log det P_mm of each prefix: its pivots' logarithms (numpy's, vectorised)
    log_det = np.log(pivots, out=pivots)
    kernels.tree_sums(group.parent, log_det)
    return inverses, log_det


def _group_conditional(
    kernels: Any, group: _SchurGroup, totals: NDArray[np.float64],
    inverses: NDArray[np.float64],
) -> NDArray[np.float64]:
    """The conditional covariances' part of the second moments, ``sum_p totals[p, k]
    P_k,mm^-1`` (lower triangles, (D, D, K)), node by node."""
    d = group.index.shape[1]
    conditional = np.empty((d, d, totals.shape[1]))
    through = workspace("missing.schur.through", (len(group.parent), totals.shape[1]))
    _compiled_status(kernels.schur_conditional(
        totals, group.sizes, group.path, group.parent, group.depth, group.coordinate,
        group.start, inverses, through, conditional))
    return conditional


@dataclass(eq=False, kw_only=True)
class _SchurTally:
    """The log-likelihood, weight and rows of the Schur form's blocks so far, and their
    worst row: (log-density, row of the chunk, its best component, its mask)."""

    log_likelihood: float = 0.0
    total_weight: float = 0.0
    n_samples: int = 0
    worst: tuple[float, int, int, NDArray[np.bool_]] | None = None

    def tally(
        self,
        rows: NDArray[np.intp],
        block: _SchurBlock,
        log_norm: NDArray[np.float64],
        best_of: NDArray[np.float64],
        weight: NDArray[np.float64],
    ) -> None:
        """Add a block's rows (``best_of`` (K, n): what picks a row's best component)."""
        self.log_likelihood += float(weight @ log_norm)
        self.total_weight += float(weight.sum())
        self.n_samples += len(rows)
        positive = weight > 0
        if np.any(positive):
            candidates = np.where(positive, log_norm, np.inf)
            worst = worst_row(candidates)
            if self.worst is None or candidates[worst] < self.worst[0]:
                best = int(np.argmax(best_of[:, worst]))
                self.worst = (float(candidates[worst]), int(rows[worst]), best,
                              block.row_missing(worst))

    def worst_point(
        self, X: Array, reference: NDArray[np.float64], precision: NDArray[np.float64],
        means: NDArray[np.float64],
    ) -> tuple[float, NDArray[np.float64]]:
        """The worst row's log-density and conditional mean under its best component
        (``precision`` (K, D, D), or (D, D) shared)."""
        if self.worst is None:
            return np.inf, np.zeros(len(reference))
        value, row, best, missing = self.worst
        filled = np.where(missing, reference, np.asarray(X[row], dtype=np.float64))
        shared = precision if precision.ndim == 2 else precision[best]
        return value, _row_conditional_mean(filled, missing, shared, means[best])


@dataclass(eq=False, kw_only=True)
class _SchurSums(_SchurTally):
    """What :func:`_schur_statistics` shares with its blocks and sums over them: the
    parameters' derived arrays, the sums, and the worst row so far."""

    precision: NDArray[np.float64]
    by_component: NDArray[np.float64]
    offsets: NDArray[np.float64]
    pulled: NDArray[np.float64]
    factor: NDArray[np.float64]
    constant: NDArray[np.float64]
    reference: NDArray[np.float64]
    features: NDArray[np.float64]
    lower: NDArray[np.float64]
    conditional: NDArray[np.float64]
    square: NDArray[np.float64]
    shift: NDArray[np.float64]
    own_first: NDArray[np.float64] | None = None
    own_second: NDArray[np.float64] | None = None

    def statistics(self, coefs: KernelCoefficients, X: Array, rows: NDArray[np.intp]) -> SuffStats:
        """The :class:`SuffStats` of every block."""
        params = coefs.params
        assert params is not None
        d = params.n_features
        q = self.features.shape[1] - d - 1
        square = self.square + _mirrored(self.lower + self.conditional)
        second = np.asarray(pack_symmetric(square), dtype=np.float64)
        if q > 0:  # (else the whitened kernel's blocks added theirs to ``square``)
            second += self.features[:, :q]
        first = self.features[:, -d - 1 : -1] - self.shift.T
        own = coefs.own_centred
        if own is not None and self.own_first is not None and self.own_second is not None:
            first[own] = self.own_first
            second[own] = pack_symmetric(
                self.own_second + _mirrored(self.conditional[:, :, own]))
        worst_value, worst_point = self.worst_point(
            X, self.reference, self.precision, np.asarray(params.means, dtype=np.float64))
        return SuffStats(
            nk=self.features[:, -1].copy(),
            first=np.ascontiguousarray(first),
            second=np.ascontiguousarray(second, dtype=np.float64),
            log_likelihood=self.log_likelihood,
            total_weight=self.total_weight,
            n_samples=self.n_samples,
            reference=coefs.stats_reference,
            worst_log_density=worst_value,
            worst_point=worst_point,
        )


def _schur_block(
    coefs: KernelCoefficients,
    kernels: Any,
    X: Array,
    rows: NDArray[np.intp],
    block: _SchurBlock,
    group: _SchurGroup,
    inverses: NDArray[np.float64],
    log_det: NDArray[np.float64],
    totals: NDArray[np.float64],
    sums: _SchurSums,
    sample_weight: Array | None,
    labels: NDArray[np.integer] | None,
    label_weight: float,
) -> None:
    """One :class:`_SchurBlock` of :func:`_schur_statistics`, added to ``sums`` (its
    patterns' responsibilities to ``totals`` (P, K), for the conditional
    covariances)."""
    params = coefs.params
    assert params is not None
    n_components, d = params.n_components, params.n_features
    log_joint, phi_t, y, gathered, segments, gradient = _schur_block_log_joint(
        coefs, kernels, X, rows, block, group, inverses, log_det, sums)
    q = phi_t.shape[0] - d - 1
    cells_shape = gradient.shape
    log_norm, resp, resp_w, weight, labelled = _responsibilities(
        log_joint, rows, sample_weight, labels, label_weight)
    resp_w = np.ascontiguousarray(resp_w)
    # the complete kernel's moments of the filled rows around the reference
    if q:
        features = np.dot(phi_t, resp_w.T).T  # (K, F)
    else:
        first = np.dot(y, resp_w.T).T
        features = np.hstack([first, resp_w.sum(axis=1)[:, None]])
        sums.square += _unpacked(_reference_second_moments(y, resp_w, coefs.own_centred), d)
    sums.features = features if not sums.features.size else sums.features + features
    weighted = workspace("missing.schur.weighted", cells_shape)
    shift = np.empty((d, n_components))
    lower = np.empty((d, d, n_components))
    _compiled_status(kernels.schur_moments(
        resp_w, gradient, weighted, block.pattern, group.sizes, group.index,
        block.row_start, block.row_cells, totals, shift, lower,
    ))
    # xhat - c = y - u on the missing block: S - sum r (y u' + u y') + sum r u u'
    sums.lower += lower
    sums.shift += shift
    for j, cells in segments:
        cross = np.dot(gathered[cells].T, weighted[cells]).T  # (K, D): sum r u_j y
        sums.square[:, :, j] -= cross
        sums.square[:, j, :] -= cross
    own = coefs.own_centred
    if own is not None:  # these around their own means, from the rows themselves
        own_first, own_second = _schur_own_moments(
            y, block, gradient, resp_w, sums.offsets, own)
        if sums.own_first is None or sums.own_second is None:
            sums.own_first, sums.own_second = own_first, own_second
        else:
            sums.own_first += own_first
            sums.own_second += own_second
    sums.tally(rows, block, log_norm, resp if labelled is None else log_joint, weight)


def _schur_block_log_joint(
    coefs: KernelCoefficients,
    kernels: Any,
    X: Array,
    rows: NDArray[np.intp],
    block: _SchurBlock,
    group: _SchurGroup,
    inverses: NDArray[np.float64],
    log_det: NDArray[np.float64],
    sums: _SchurSums,
) -> tuple[
    NDArray[np.float64], Array, NDArray[np.float64], NDArray[np.float64],
    list[tuple[int, slice]], NDArray[np.float64],
]:
    """The observed coordinates' log-joint (K, n) of a block's rows in the Schur form,
    with what :func:`_schur_rows` returns and ``u = P_k,mm^-1 t`` of every missing cell
    (cells, K) (:func:`gmmkit.core._missing_jit.schur_log_joint`); all of it in this
    thread's workspace."""
    log_joint, phi_t, y, gathered, segments = _schur_rows(
        coefs, X, rows, block, sums.reference)
    # (P_k y)_j of every missing cell, one GEMM per coordinate over the rows missing it
    gradient = workspace("missing.schur.gradient", (len(block.cell_rows), len(sums.offsets)))
    by_row = sums.precision.transpose(2, 1, 0)  # [j] is (D, K): P_k[j, :] by columns
    for j, cells in segments:
        np.dot(gathered[cells], by_row[j], out=gradient[cells])
    _compiled_status(kernels.schur_log_joint(
        log_joint, gradient, sums.pulled, np.ascontiguousarray(y), sums.offsets,
        sums.factor, sums.constant, block.pattern, group.sizes, group.index, group.path,
        group.start, inverses, log_det, block.row_start, block.row_cells,
    ))
    return log_joint, phi_t, y, gathered, segments, gradient


def _tied_schur_statistics(
    coefs: KernelCoefficients,
    X: Array,
    rows: NDArray[np.intp],
    groups: list[_SchurGroup],
    sample_weight: Array | None,
    labels: NDArray[np.integer] | None,
    label_weight: float,
) -> SuffStats:
    """The Schur form of :func:`_schur_statistics` for a tied covariance: one ``P``, so
    each distinct pattern is factorised once for all components (``groups`` built with
    one component), ``t_k = g - b_k,m`` splits into a part per row (``g = (P y)_m``, by
    one matrix-vector product per coordinate) and one per pattern and component
    (``b_k = P a_k``), and so do ``F t_k`` and the conditional means: a row and
    component cost ``O(s)`` (:func:`gmmkit.core._missing_jit.tied_schur_log_joint`)."""
    kernels = _jit.kernels()
    assert kernels is not None and coefs.params is not None
    params = coefs.params
    n_components = params.n_components
    sums = _tied_schur_sums(coefs)
    for group in groups:
        parts = _tied_group(kernels, group, sums)
        totals = workspace("missing.schur.totals", (len(group.sizes), n_components))
        totals[...] = 0.0
        for block in group.blocks:
            _tied_schur_block(
                coefs, kernels, X, rows[block.rows], block, group, parts, totals, sums,
                sample_weight, labels, label_weight)
        kernels.tied_pattern_moments(
            totals, parts.steps, parts.step_start, group.sizes, group.index, sums.lower,
            sums.shift)
        # the conditional covariance, sum_i w_i P_mm^-1
        sums.lower += _group_conditional(
            kernels, group, np.ascontiguousarray(totals.sum(axis=1)[:, None]),
            parts.inverses)[:, :, 0]
    pooled = sums.pooled + _mirrored(sums.lower[:, :, None])[0]
    # xhat_k - c = y - u_k: first moments less sum r_k u_k (rows' part, less patterns')
    first = sums.first + sums.shift.T
    worst_value, worst_point = sums.worst_point(
        X, sums.reference, sums.precision, np.asarray(params.means, dtype=np.float64))
    return SuffStats(
        nk=sums.nk,
        first=np.ascontiguousarray(first),
        second=np.asarray(pack_symmetric(pooled), dtype=np.float64)[None, :],
        log_likelihood=sums.log_likelihood,
        total_weight=sums.total_weight,
        n_samples=sums.n_samples,
        reference=coefs.stats_reference,
        worst_log_density=worst_value,
        worst_point=worst_point,
    )


def _tied_schur_sums(coefs: KernelCoefficients) -> _TiedSchurSums:
    """The parameters' arrays that :func:`_tied_schur_statistics` shares with its blocks,
    and its sums, zero."""
    params = coefs.params
    assert params is not None
    n_components, d = params.n_components, params.n_features
    reference = np.asarray(coefs.reference, dtype=np.float64)
    upper = np.asarray(params.precisions_cholesky, dtype=np.float64)
    precision = upper @ upper.T
    offsets = np.asarray(params.means, dtype=np.float64) - reference
    return _TiedSchurSums(
        precision=precision,
        factor=np.ascontiguousarray(upper.T),
        offsets=offsets,
        pulled=np.ascontiguousarray(precision @ offsets.T),  # (D, K)
        constant=_constants(params),
        reference=reference,
        first=np.zeros((n_components, d)),
        nk=np.zeros(n_components),
        pooled=np.zeros((d, d)),
        lower=np.zeros((d, d)),
        shift=np.zeros((d, n_components)),
    )


@dataclass(frozen=True, eq=False)
class _TiedGroup:
    """A tied group's factors (:func:`_factorise_group`) and its per-node and
    per-pattern parts of ``F t_k`` and ``P_mm^-1 t_k``: ``shifts`` (nodes, K) ``e_k``
    and ``steps`` ``F' e_k``, (s, K) a pattern from ``step_start``."""

    inverses: NDArray[np.float64]
    log_det: NDArray[np.float64]
    shifts: NDArray[np.float64]
    steps: NDArray[np.float64]
    step_start: NDArray[np.int64]


def _tied_group(kernels: Any, group: _SchurGroup, sums: _TiedSchurSums) -> _TiedGroup:
    """The :class:`_TiedGroup` of ``group`` (in this thread's workspace)."""
    n_components = sums.pulled.shape[1]
    inverses, log_det = _factorise_group(
        kernels, group, np.ascontiguousarray(sums.precision[:, :, None]))
    shifts = workspace("missing.schur.shifts", (len(group.parent), n_components))
    kernels.tied_node_shifts(
        group.parent, group.depth, group.coordinate, group.start, inverses, sums.pulled,
        shifts)
    step_start = (np.cumsum(group.sizes) - group.sizes) * n_components
    steps = workspace("missing.schur.steps", int(group.sizes.sum()) * n_components)
    kernels.tied_pattern_steps(
        group.sizes, group.path, group.start, inverses, shifts, step_start, steps)
    return _TiedGroup(inverses, log_det, shifts, steps, step_start)


@dataclass(eq=False, kw_only=True)
class _TiedSchurSums(_SchurTally):
    """What :func:`_tied_schur_statistics` shares with its blocks and sums over them:
    ``first`` (K, D) and ``pooled`` (D, D) around the centre as they stand (the complete
    kernel's moments less the rows' parts of the corrections), ``lower`` (D, D) the lower
    triangle of the corrections' square terms, ``shift`` (D, K) their per-pattern part
    of the first moments (added)."""

    precision: NDArray[np.float64]
    factor: NDArray[np.float64]
    offsets: NDArray[np.float64]
    pulled: NDArray[np.float64]
    constant: NDArray[np.float64]
    reference: NDArray[np.float64]
    first: NDArray[np.float64]
    nk: NDArray[np.float64]
    pooled: NDArray[np.float64]
    lower: NDArray[np.float64]
    shift: NDArray[np.float64]


def _tied_schur_block(
    coefs: KernelCoefficients,
    kernels: Any,
    X: Array,
    rows: NDArray[np.intp],
    block: _SchurBlock,
    group: _SchurGroup,
    parts: _TiedGroup,
    totals: NDArray[np.float64],
    sums: _TiedSchurSums,
    sample_weight: Array | None,
    labels: NDArray[np.integer] | None,
    label_weight: float,
) -> None:
    """One :class:`_SchurBlock` of :func:`_tied_schur_statistics`, added to ``sums``:
    the per-row parts of the corrections as (D, n) blocks, zero where observed, so that
    the products with the rows are GEMMs."""
    log_joint, y, steps_rows = _tied_block_log_joint(
        coefs, kernels, X, rows, block, group, parts, sums)
    d, n = y.shape
    log_norm, resp, resp_w, weight, labelled = _responsibilities(
        log_joint, rows, sample_weight, labels, label_weight)
    resp_w = np.ascontiguousarray(resp_w)
    bar = workspace("missing.schur.bar", (d, n))
    bar[...] = 0.0
    _compiled_status(kernels.tied_schur_moments(
        resp_w, np.ascontiguousarray(weight, dtype=np.float64), steps_rows, parts.steps,
        parts.step_start, block.pattern, group.sizes, group.index, totals, bar, sums.lower,
    ))
    # the complete kernel's moments of the filled rows around the centre, less the
    # rows' parts of the corrections: sum w y y' - sum (y bar' + bar y'), sum r_k (y -
    # F'h) (the patterns' parts are added after)
    # ... the two in one product: the symmetric part of y (w y - 2 bar)'
    bar *= -2.0
    bar += y if sample_weight is None and labelled is None else y * weight
    product = np.dot(y, bar.T)
    product += product.T
    product *= 0.5
    sums.pooled += product
    sums.first += np.dot(resp_w, np.subtract(y, steps_rows, out=steps_rows).T)
    sums.nk += resp_w.sum(axis=1)
    sums.tally(rows, block, log_norm, resp if labelled is None else log_joint, weight)


def _tied_block_log_joint(
    coefs: KernelCoefficients,
    kernels: Any,
    X: Array,
    rows: NDArray[np.intp],
    block: _SchurBlock,
    group: _SchurGroup,
    parts: _TiedGroup,
    sums: _TiedSchurSums,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The observed coordinates' log-joint (K, n) of a block's rows in the tied Schur
    form, the rows minus the centre ``y`` (D, n) and ``F' h`` at their missing cells
    (D, n, zero elsewhere) (:func:`gmmkit.core._missing_jit.tied_schur_log_joint`); all
    of it in this thread's workspace."""
    log_joint, _, y, _, _ = _schur_rows(coefs, X, rows, block, sums.reference, False)
    y = np.ascontiguousarray(y)
    pulled_rows = workspace("missing.schur.pulled_rows", y.shape)
    np.dot(sums.precision, y, out=pulled_rows)  # P y of every row
    steps_rows = workspace("missing.schur.steps_rows", y.shape)
    steps_rows[...] = 0.0
    _compiled_status(kernels.tied_schur_log_joint(
        log_joint, pulled_rows, steps_rows, parts.shifts, parts.steps, parts.step_start,
        y, sums.offsets, sums.factor, sums.constant, block.pattern, group.sizes,
        group.index, group.path, group.start, parts.inverses, parts.log_det,
    ))
    return log_joint, y, steps_rows


def _schur_rows(
    coefs: KernelCoefficients,
    X: Array,
    rows: NDArray[np.intp],
    block: _SchurBlock,
    reference: NDArray[np.float64],
    cells: bool = True,
) -> tuple[
    NDArray[np.float64], Array, NDArray[np.float64], NDArray[np.float64],
    list[tuple[int, slice]],
]:
    """The complete kernel's log-joint (K, n) and feature block of a block's rows with
    their missing cells at ``reference``, the rows minus it (D, n) (0 at the missing
    cells), those of each missing cell (cells, D), coordinate by coordinate (none
    unless ``cells``), and each coordinate's cells.  The block-sized arrays live in
    this thread's workspace (the kernel's slots for the feature and log-joint blocks:
    nothing of the complete rows' call is alive)."""
    d = len(reference)
    kernels = _jit.kernels()
    assert kernels is not None and coefs.dtype == np.float64
    phi_t, xc_t = _feature_block_t(
        coefs.covariance, len(rows), d, coefs.dtype, _quadratic(coefs), _FEATURES)
    kernels.gather_centred(np.asarray(X), rows, coefs.reference_compute, block.fill_at, xc_t)
    y: NDArray[np.float64] = np.asarray(xc_t, dtype=np.float64)
    _complete_features_t(coefs.covariance, phi_t, d)
    # rows far out may overflow here, as in the complete kernel's own blocks
    with np.errstate(over="ignore", invalid="ignore"):
        log_joint_t = _log_joint_of_features_t(coefs, phi_t, d, None, _LOG_JOINT)
    gathered = workspace("missing.schur.gathered", (len(block.cell_rows) if cells else 0, d))
    if cells:
        np.take(y.T, block.cell_rows, axis=0, out=gathered, mode="clip")
    bounds = block.coord_start
    segments = [(j, slice(bounds[j], bounds[j + 1])) for j in range(d)
                if bounds[j + 1] > bounds[j]]
    return np.asarray(log_joint_t, dtype=np.float64), phi_t, y, gathered, segments


def _unpacked(packed: NDArray[np.float64], d: int) -> NDArray[np.float64]:
    """Symmetric (K, D, D) matrices from their packed upper triangles (K, Q)."""
    out = np.empty((len(packed), d, d))
    upper_rows, upper_cols = np.triu_indices(d)
    out[:, upper_rows, upper_cols] = packed
    out[:, upper_cols, upper_rows] = packed
    return out


def _mirrored(lower: NDArray[np.float64]) -> NDArray[np.float64]:
    """Symmetric (K, D, D) matrices from their lower triangles, (D, D, K)."""
    square = lower.transpose(2, 0, 1).copy()
    square += np.tril(square, -1).transpose(0, 2, 1)
    return square


def _schur_own_moments(
    y: NDArray[np.float64],
    block: _SchurBlock,
    steps: NDArray[np.float64],
    resp_w: NDArray[np.float64],
    offsets: NDArray[np.float64],
    own: NDArray[np.intp],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """First (K', D) and second moments (K', D, D) of the components ``own`` around
    their own means, for :func:`_schur_block` (whose ``steps`` (cells, K) hold ``u``,
    ``xhat_m - c = -u``): the residual ``xhat - mu_k`` is ``y - a_k`` on the observed
    coordinates and ``-u - a_km`` on the missing ones (``y`` is 0 there), summed from
    the rows as the kernel does for such components (no moment around the centre is
    moved: a component far from it would cancel them), one product a component; the
    conditional covariances are added by the caller."""
    d, n = y.shape
    cells = (np.repeat(np.arange(d), np.diff(block.coord_start)), block.cell_rows)
    residual = workspace("missing.schur.own_residual", (d, n))
    weighted = workspace("missing.schur.own_weighted", (d, n))
    firsts = np.empty((len(own), d))
    seconds = np.empty((len(own), d, d))
    for at, k in enumerate(own):
        np.subtract(y, offsets[k][:, None], out=residual)
        residual[cells] -= steps[:, k]
        np.multiply(residual, resp_w[k], out=weighted)
        np.dot(residual, weighted.T, out=seconds[at])
        np.sum(weighted, axis=1, out=firsts[at])
    return firsts, seconds


def _row_conditional_mean(
    row: NDArray[np.float64],
    missing: NDArray[np.bool_],
    precision: NDArray[np.float64],
    mean: NDArray[np.float64],
) -> NDArray[np.float64]:
    """One row (D,) with its ``missing`` coordinates replaced by their conditional mean
    under the component of ``precision`` (D, D) and ``mean`` (D,)."""
    out = np.array(row, dtype=np.float64)
    if missing.any():
        observed = ~missing
        gradient = precision[np.ix_(missing, observed)] @ (out[observed] - mean[observed])
        out[missing] = mean[missing] - np.linalg.solve(
            precision[np.ix_(missing, missing)], gradient)
    return out


def _moved_full(
    around_mean: NDArray[np.float64],
    scatter: NDArray[np.float64],
    nk: NDArray[np.float64],
    offsets: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Moments around the means (K, D) and (K, D, D) moved to ``means - offsets``: the
    second in place (``S + m o' + o m' + n o o'``), the first returned."""
    cross = around_mean[:, :, None] * offsets[:, None, :]
    scatter += cross
    scatter += cross.transpose(0, 2, 1)
    scatter += nk[:, None, None] * offsets[:, :, None] * offsets[:, None, :]
    return around_mean + nk[:, None] * offsets


def _moved_tied(
    first: NDArray[np.float64],
    pooled: NDArray[np.float64],
    nk: NDArray[np.float64],
    centre: NDArray[np.float64],
    reference: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Tied moments around ``centre`` (K, D) and (D, D) moved to ``reference`` (K, D):
    ``S + sum_k (m_k o_k' + o_k m_k' + n_k o_k o_k')``, in place."""
    move = centre - reference  # (K, D)
    moved_first = np.dot(first.T, move)
    pooled += moved_first + moved_first.T + np.dot(move.T * nk, move)
    first += nk[:, None] * move
    return first, pooled


#: Chunks of full covariances in the Schur form hold this many times the values of
#: one block of the other paths (:func:`incomplete_chunk_rows`).
_SCHUR_CHUNK_BLOCKS = 16


def _row_values(layout: str, k: int, d: int, cells: float) -> int:
    """Values of the largest arrays of the statistics per incomplete row (the block
    budget of :data:`_BLOCK_VALUES`), ``cells`` missing coordinates a row on average:
    ``K D`` for full covariances (every component's conditional means at once), ``K +
    3 D`` otherwise, and for tied ones the (K, S) and (K, n) arrays of
    :func:`_tied_buffer` besides, ``S`` up to the block's missing cells (every row its
    own pattern)."""
    if layout == "full":
        return k * d
    if layout == "tied":
        return k + 3 * d + 2 * k + int(np.ceil((2 * k + d) * cells))
    return k + 3 * d


def incomplete_chunk_rows(n_features: int, n_components: int, covariance_type: str) -> int:
    """Rows of one block of the E-step over incomplete rows (:data:`_BLOCK_VALUES`
    values of its largest arrays, a quarter of the coordinates missing for tied
    covariances), between 64 and 65536: what an engine's chunks of data with missing
    values may hold (see :func:`gmmkit.engines.memory.default_chunk_rows`)."""
    layout = covariance_layout(covariance_type)
    per_row = _row_values(layout, n_components, n_features, n_features / 4)
    values = _BLOCK_VALUES
    if _schur_chosen(layout, n_features, n_components):
        # the Schur form factorises each distinct pattern of a chunk once (in blocks of
        # its own size): the larger the chunk, the more rows share each factorisation
        values *= _SCHUR_CHUNK_BLOCKS
    return int(min(max(values // max(per_row, 1), 64), 65536))


def _blocks(n: int, values_per_row: int) -> range:
    """Starts of equal blocks of about :data:`_BLOCK_VALUES` values (at most a quarter
    more): no small last block paying a whole block's fixed cost."""
    step = max(16, _BLOCK_VALUES // max(values_per_row, 1))
    count = max(1, -(-n // (step + step // 4)))
    return range(0, n, max(1, -(-n // count)))


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
    store = _mask_store(missing)
    split = None if store is None else store.get("rows")
    if split is None:
        per_row_missing = _row_counts(missing)
        complete = np.flatnonzero(per_row_missing == 0)
        partial_rows = np.flatnonzero(
            (per_row_missing > 0) & (per_row_missing < missing.shape[1]))
        cells = float(np.mean(per_row_missing[partial_rows])) if len(partial_rows) else 0.0
        split = complete, partial_rows, cells
        if store is not None:
            store["rows"] = split
    complete, partial_rows, cells = split
    if len(complete) == len(missing):
        return chunk_statistics(coefs, X, sample_weight, labels, label_weight)
    parts = []

    def pick(values: Any, rows: NDArray[np.intp]) -> Any:
        return None if values is None else np.take(np.asarray(values), rows, axis=0)

    if len(complete):
        parts.append(
            chunk_statistics(
                coefs, pick(X, complete), pick(sample_weight, complete),
                pick(labels, complete), label_weight,
            )
        )
    assert coefs.params is not None
    k, d = coefs.params.n_components, coefs.params.n_features
    layout = coefs.covariance.layout
    blocks = _blocks(len(partial_rows), _row_values(layout, k, d, cells))
    if len(partial_rows) and _schur_applies(coefs):
        tied = layout == "tied"
        groups = _kept_schur_groups(missing, partial_rows, 1 if tied else k, store)
        statistics = _tied_schur_statistics if tied else _schur_statistics
        parts.append(statistics(
            coefs.in_float64, X, partial_rows, groups, sample_weight, labels, label_weight))
        return SuffStats.total(parts)
    grouped: list[Any] | None = None
    if store is not None:
        grouped = store.setdefault(
            ("blocks", layout in ("diag", "spherical"), blocks.step), [None] * len(blocks))
    for number, start in enumerate(blocks):
        rows = partial_rows[start : start + blocks.step]
        prepared = None if grouped is None else grouped[number]
        if prepared is None:
            prepared = _block_masks(layout, missing, rows)
            if grouped is not None:
                grouped[number] = prepared
        parts.append(_incomplete_statistics(
            coefs, X, rows, prepared, sample_weight, labels, label_weight))
    if not parts:
        return _no_statistics(coefs)
    return SuffStats.total(parts)


def _kept_schur_groups(
    missing: NDArray[np.bool_],
    partial_rows: NDArray[np.intp],
    width: int,
    store: dict[Any, Any] | None,
) -> list[_SchurGroup]:
    """:func:`_schur_groups` of a chunk's rows ``partial_rows`` (those with something
    missing and something observed, all of them) for ``width`` components, kept in the
    mask's ``store`` when there is one."""
    groups = None if store is None else store.get(("schur", width))
    if groups is None:
        groups = _schur_groups(np.take(missing, partial_rows, axis=0), width)
        if store is not None:
            store[("schur", width)] = groups
    return groups


def _schur_inference(
    coefs: KernelCoefficients, X: Array, rows: NDArray[np.intp], missing: NDArray[np.bool_]
) -> _Conditional:
    """The observed coordinates' log-joint (K, n) of the rows ``rows`` of a chunk with
    something missing (all of them: those with something observed are then the
    statistics' rows, whose groups a kept mask keeps) in the Schur form, as a
    :class:`_Conditional` that holds only ``log_joint`` and ``unobserved`` (what scores
    and predictions read)."""
    kernels = _jit.kernels()
    assert kernels is not None and coefs.params is not None
    coefs = coefs.in_float64
    params = coefs.params
    assert params is not None
    row_missing = np.take(missing, rows, axis=0)
    unobserved = ~_row_any(~row_missing)
    log_joint = np.empty((params.n_components, len(rows)))
    log_joint[:, unobserved] = _log_weights(params)[:, None]
    # rows with something observed, as positions among ``rows`` and of the chunk
    at = np.flatnonzero(~unobserved)
    if not len(at):
        return _Conditional(log_joint, None, [], unobserved, None)
    partial = rows[at]
    tied = params.layout == "tied"
    groups = _kept_schur_groups(
        missing, partial, 1 if tied else params.n_components, _mask_store(missing))
    if tied:
        tied_sums = _tied_schur_sums(coefs)
        for group in groups:
            parts = _tied_group(kernels, group, tied_sums)
            for block in group.blocks:
                block_joint, _, _ = _tied_block_log_joint(
                    coefs, kernels, X, partial[block.rows], block, group, parts, tied_sums)
                log_joint[:, at[block.rows]] = block_joint
    else:
        sums = _schur_sums(coefs)
        for group in groups:
            inverses, log_det = _factorise_group(kernels, group, sums.by_component)
            for block in group.blocks:
                block_joint = _schur_block_log_joint(
                    coefs, kernels, X, partial[block.rows], block, group, inverses,
                    log_det, sums)[0]
                log_joint[:, at[block.rows]] = block_joint
    return _Conditional(log_joint, None, [], unobserved, None)


def _row_counts(mask: NDArray[np.bool_]) -> NDArray[np.integer[Any]]:
    """``mask.sum(axis=1)``, column by column (see :func:`_row_any`)."""
    d = mask.shape[1]
    if d > 64 or d == 0:
        return np.asarray(mask.sum(axis=1))
    out = mask[:, 0].astype(np.uint8)
    for j in range(1, d):
        out += mask[:, j]
    return out


def _row_any(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """``mask.any(axis=1)``, column by column: numpy's reduction over a short inner axis
    costs 10x more."""
    if mask.shape[1] > 64 or mask.shape[1] == 0:
        return np.asarray(mask.any(axis=1))
    out = mask[:, 0].copy()
    for j in range(1, mask.shape[1]):
        out |= mask[:, j]
    return out


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


@cache
def _triangle(size: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """``np.triu_indices(size)``, cached (it costs more than the sums it indexes)."""
    rows, cols = np.triu_indices(size)
    return rows, cols


def _covariance_sums(
    groups: list[tuple[_Group, NDArray[np.float64]]],
    resp_w: NDArray[np.float64],
    d: int,
    extra: list[NDArray[np.float64]] | None = None,
) -> NDArray[np.float64]:
    """``sum_rows r_k E P_mm^-1 E'`` (sorted rows) on the upper triangles, (K', D, D) with
    K' the covariances' component axis (1: pooled); ``extra`` (s, s, K', p) per group is
    added to the patterns' weighted covariances first."""
    n_components = groups[0][1].shape[2] if groups else resp_w.shape[0]
    all_cells, all_weights = [], []
    for number, (group, covariance) in enumerate(groups):
        weights = resp_w[:, group.start : group.stop]
        if n_components == 1:
            weights = weights.sum(axis=0, keepdims=True)
        weighted = covariance * group.pattern_sums(weights)
        if extra is not None:
            weighted += extra[number]
        upper_i, upper_j = _triangle(group.size)
        index = group.index.T  # (s, p)
        cells = index[upper_i] * d + index[upper_j]  # (t, p)
        cells = cells[:, None, :] + (np.arange(n_components) * (d * d))[:, None]
        all_cells.append(cells.ravel())
        all_weights.append(weighted[upper_i, upper_j].ravel())
    size = n_components * d * d
    out = np.zeros(size)
    if all_cells:
        out += np.bincount(np.concatenate(all_cells), np.concatenate(all_weights), size)
    square = out.reshape(n_components, d, d)
    return np.triu(square) + np.triu(square, 1).transpose(0, 2, 1)


def _block_masks(
    layout: str, missing: NDArray[np.bool_], rows: NDArray[np.intp]
) -> tuple[NDArray[np.bool_], _Patterns | None, NDArray[np.bool_] | None]:
    """What the statistics of the rows ``rows`` of a chunk derive from its ``missing``
    mask alone: for diagonal and spherical layouts the rows' mask (n, D), for full and
    tied ones their :func:`_patterns` and the mask in the sorted order, feature-major
    (D, n) (and in place of the rows' mask a read-only array of its shape)."""
    block_missing = np.take(missing, rows, axis=0)
    if layout in ("diag", "spherical"):
        return block_missing, None, None
    patterns = _patterns(block_missing)
    sorted_missing = np.ascontiguousarray(np.take(block_missing, patterns.order, axis=0).T)
    # the rows' own mask is not needed (nor kept) beside the sorted one
    return np.broadcast_to(np.False_, block_missing.shape), patterns, sorted_missing


def _incomplete_statistics(
    coefs: KernelCoefficients,
    X: Array,
    rows: NDArray[np.intp],
    prepared: tuple[NDArray[np.bool_], _Patterns | None, NDArray[np.bool_] | None],
    sample_weight: Array | None,
    labels: NDArray[np.integer] | None,
    label_weight: float,
) -> SuffStats:
    """Statistics of the rows ``rows`` of a chunk (each with something missing and
    something observed), ``prepared`` by :func:`_block_masks`."""
    params = coefs.params
    assert params is not None
    block_missing, patterns, sorted_missing = prepared
    n, d = block_missing.shape
    means = np.asarray(params.means, np.float64)
    centre = np.asarray(coefs.reference, dtype=np.float64)
    cond: _Conditional | None = None
    order: NDArray[np.intp] | None = None
    if patterns is None:
        log_joint, features = _vector_log_joint(
            params, np.take(X, rows, axis=0), block_missing, centre, scratch=True
        )
        block = rows
    else:  # rows sorted by pattern
        order = patterns.order
        block = rows[order]
        cond = _sorted_conditional(
            params, X, block_missing, centre, patterns, rows=rows, scratch=True,
            sorted_missing=sorted_missing,
        )
        log_joint = cond.log_joint
    log_norm, resp, resp_w, weight, labelled = _responsibilities(
        log_joint, block, sample_weight, labels, label_weight)
    nk = resp_w.sum(axis=1)
    offsets = means - coefs.stats_reference  # (K, D)
    if cond is None:
        # with a = reference_k - centre, o the observed mask, xc = o (x - centre):
        # xhat - reference_k = xc - o a + (1 - o) (mu_k - reference_k), and the expected
        # squares add the variances (1 - o) sigma_k^2 of the missing coordinates
        sums = np.dot(features, resp_w.T).T  # (K, F): [q, o xc, o] summed
        q = len(features) - 2 * d
        squares, linear, seen = sums[:, :q], sums[:, q : q + d], sums[:, q + d :]
        unseen = nk[:, None] - seen
        shift = coefs.stats_reference - centre
        first = linear - seen * shift + unseen * offsets
        rest = (
            seen * shift * shift - 2.0 * shift * linear
            + unseen * (offsets * offsets + 1.0 / _vector_scales(params) ** 2)
        )
        diag = coefs.covariance.layout == "diag"
        second = squares + (rest if diag else rest.sum(axis=1, keepdims=True))
    else:
        first, second = _conditional_moments(
            cond, resp_w, None if resp_w is resp else weight, coefs.stats_reference, offsets
        )
    positive = weight > 0
    if np.any(positive):
        candidates = np.where(positive, log_norm, np.inf)
        if order is None:
            worst = worst_row(candidates)
        else:  # the first worst row in the block's own order (ties go to the first)
            worst = _position(order, worst_row(_unsorted(candidates, order)))
        worst_value = float(candidates[worst])
        best = int(np.argmax((resp if labelled is None else log_joint)[:, worst]))
        if cond is None:
            worst_point = np.where(
                block_missing[worst], means[best], np.asarray(X[rows[worst]], np.float64)
            )
        else:
            worst_point = _conditional_mean(cond, params, best, worst)
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


def _responsibilities(
    log_joint: NDArray[np.float64],
    block: NDArray[np.intp],
    sample_weight: Array | None,
    labels: NDArray[np.integer] | None,
    label_weight: float,
) -> tuple[
    NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64],
    NDArray[np.intp] | None,
]:
    """Log-densities (n,), responsibilities (K, n), weighted responsibilities, row
    weights (n,) and labelled rows (or None) of the rows ``block`` of a chunk from their
    log-joint (K, n), which the responsibilities overwrite unless rows are labelled
    (a labelled row keeps its component and its complete-data log-joint)."""
    n = log_joint.shape[1]
    if sample_weight is not None:
        sample_weight = np.take(np.asarray(sample_weight), block)
    labelled: NDArray[np.intp] | None = None
    if labels is not None:
        labels = np.asarray(np.take(np.asarray(labels), block))
        labelled = np.flatnonzero(labels >= 0)
        known = labels[labelled].astype(np.intp)
        labelled_log = log_joint[known, labelled]
    # in place without labels (the worst row's best component is read from either)
    log_norm, resp = _normalise(log_joint if labelled is None else log_joint.copy())
    weight = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if labelled is not None and len(labelled):
        weight = weight.copy()
        weight[labelled] *= label_weight
        log_norm[labelled] = labelled_log
        resp[:, labelled] = 0.0
        resp[known, labelled] = 1.0
    resp_w = resp if sample_weight is None and labelled is None else resp * weight
    return log_norm, resp, resp_w, weight, labelled


def _normalise(
    log_joint: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Log-densities (n,) and responsibilities (K, n) of a (K, n) log-joint block, with
    one exponential per entry; the responsibilities overwrite ``log_joint``."""
    top = np.max(log_joint, axis=0)
    top[~np.isfinite(top)] = 0.0
    resp = log_joint
    resp -= top
    np.exp(resp, out=resp)
    total = resp.sum(axis=0)
    with np.errstate(divide="ignore"):
        log_norm = np.log(total)
    log_norm += top
    with np.errstate(invalid="ignore"):
        resp /= total
    return log_norm, resp


def _unsorted(values: NDArray[Any], order: NDArray[np.intp]) -> NDArray[Any]:
    out = np.empty_like(values)
    out[order] = values
    return out


def _position(order: NDArray[np.intp], row: int) -> int:
    """Where block row ``row`` sits in the sorted order."""
    return int(np.flatnonzero(order == row)[0])


def _conditional_moments(
    cond: _Conditional,
    resp_w: NDArray[np.float64],
    weight: NDArray[np.float64] | None,
    reference: NDArray[np.float64],
    offsets: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """First moments (K, D) and packed second moments (K or 1, Q) around ``reference``
    (K, D) of the sorted rows of ``cond``, full and tied layouts; ``offsets`` is
    ``means - reference`` and ``weight`` the rows' total responsibility (None: all 1)."""
    part = cond.pattern_part
    stop = 0 if part is None else part.stop
    tail = resp_w[:, stop:]
    nk = tail.sum(axis=1)
    if cond.compiled is not None:
        first, square = cond.compiled.moments(
            tail, None if weight is None else weight[stop:], reference, offsets
        )
        if square.ndim == 2:
            square = square[None]
    elif cond.tied is not None:
        first, pooled = _tied_moments(
            cond, tail, nk, reference, None if weight is None else weight[stop:]
        )
        square = pooled[None]
    else:
        first, square = _full_moments(cond, tail, nk, offsets)
    if part is not None:
        centred_first, centred_second = _pattern_moments(part, resp_w[:, :stop])
        # around the centre, moved to the reference: S + m o' + o m' + n o o'
        move = part.centre - reference  # (K, D)
        weights = resp_w[:, :stop].sum(axis=1)
        cross = centred_first[:, :, None] * move[:, None, :]
        centred_second += cross + cross.transpose(0, 2, 1)
        centred_second += weights[:, None, None] * move[:, :, None] * move[:, None, :]
        first = first + centred_first + weights[:, None] * move
        if cond.tied is not None:
            square = square + centred_second.sum(axis=0, keepdims=True)
        else:
            square = square + centred_second
    return first, np.asarray(pack_symmetric(square), dtype=np.float64)


def _conditional_mean(
    cond: _Conditional, params: MixtureParams, k: int, row: int
) -> NDArray[np.float64]:
    """``xhat_k`` of one sorted row (full and tied layouts)."""
    part = cond.pattern_part
    if part is not None and row < part.stop:
        d = params.n_features
        q = d * (d + 1) // 2
        centred = part.features[q : q + d, row]
        out = part.centre + centred
        for group, gain, shift, _ in part.groups:
            if group.start <= row < group.stop:
                j = int(np.searchsorted(_pattern_bounds(group), row, side="right")) - 1
                out[group.index[j]] += shift[k, j] - gain[min(k, len(gain) - 1), j] @ centred
        return np.asarray(out, dtype=np.float64)
    if part is not None:
        row -= part.stop
    if cond.compiled is not None:
        return cond.compiled.conditional_mean(k, row)
    if cond.tied is None:
        return np.asarray(cond.residual[k, row] + params.means[k], dtype=np.float64)
    out = cond.tied.centre + cond.tied.xbar[:, row]
    for (group, _), shift in zip(cond.groups, cond.tied.shifts):
        if group.start <= row < group.stop:
            local = row - group.start
            out[group.coordinates[:, local]] += group.per_row(shift[k])[:, local]
    return out


def _full_moments(
    cond: _Conditional,
    resp_w: NDArray[np.float64],
    nk: NDArray[np.float64],
    offsets: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """First moments (K, D) and second moments (K, D, D) around ``mu_k - offsets_k``
    (the statistics reference) of the conditional means plus the conditional
    covariances."""
    residual = cond.residual.transpose(0, 2, 1)  # xhat_k - mu_k, feature-major (K, D, n)
    d = residual.shape[1]
    around_mean = np.matmul(residual, resp_w[:, :, None])[:, :, 0]
    weighted = np.empty_like(residual) if cond.spare is None else cond.spare
    np.multiply(residual, resp_w[:, None, :], out=weighted)
    # one batched GEMM beats K SYRKs at these sizes
    scatter = np.matmul(weighted, residual.transpose(0, 2, 1))
    # moved from the means to the reference
    first = _moved_full(around_mean, scatter, nk, offsets)
    scatter += _full_covariance_sums(cond.groups, resp_w, d)
    return first, scatter


def _full_covariance_sums(
    groups: list[tuple[_Group, NDArray[np.float64]]], resp_w: NDArray[np.float64], d: int
) -> NDArray[np.float64]:
    """``sum_rows r_k E P_k,mm^-1 E'`` of every component (sorted rows), (K, D, D): the
    upper triangles of the patterns' weighted covariances, one weighted count per
    component over the same cells (no (t, K, p) index array)."""
    n_components = resp_w.shape[0]
    all_cells, all_weights = [], []
    for group, covariance in groups:
        upper_i, upper_j = _triangle(group.size)
        weights = group.pattern_sums(resp_w[:, group.start : group.stop])  # (K, p)
        # the upper triangle of each pattern's covariances, (K, t, p)
        weighted = covariance.transpose(2, 0, 1, 3)[:, upper_i, upper_j]
        weighted *= weights[:, None, :]
        index = group.index.T  # (s, p), ascending: the cells lie in the upper triangle
        all_cells.append((index[upper_i] * d + index[upper_j]).ravel())
        all_weights.append(weighted.reshape(n_components, -1))
    out = np.zeros((n_components, d, d))
    if all_cells:
        cells = np.concatenate(all_cells)
        weights = np.concatenate(all_weights, axis=1)
        flat = out.reshape(n_components, d * d)
        for k in range(n_components):
            flat[k] = np.bincount(cells, weights[k], d * d)
    diagonal = np.einsum("kii->ki", out).copy()
    out += out.transpose(0, 2, 1)
    np.einsum("kii->ki", out)[...] = diagonal
    return out


def _tied_moments(
    cond: _Conditional,
    resp_w: NDArray[np.float64],
    nk: NDArray[np.float64],
    reference: NDArray[np.float64],
    row_weight: NDArray[np.float64] | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """First moments (K, D) and the pooled second moment (D, D) around ``reference``
    from the per-row and per-pattern parts of the conditional means: with
    ``xhat_k - centre = xbar + E t_k`` they are sums of (D, n) GEMMs, one (K, S) x (S,
    D) GEMM for ``sum_rows r_k E t_k``, per row ``sum_k r_k t_k`` and per pattern
    ``sum_rows sum_k r_k t_k t_k'``, no (K, D, n) array.  ``row_weight`` is the rows'
    total responsibility (None: all 1)."""
    parts = cond.tied
    assert parts is not None
    xbar = parts.xbar  # (D, n)
    d, n = xbar.shape
    n_components = len(resp_w)
    first = np.dot(resp_w, xbar.T)  # (K, D)
    weighted = xbar if row_weight is None else xbar * np.sqrt(row_weight)
    pooled = np.dot(weighted, weighted.T)  # SYRK
    scaled = parts.scaled_block  # R_k t_k per pattern, R_k the pattern's responsibility
    spread = parts.spread  # sum_k r_k E t_k per row, (D, n)
    spread.fill(0.0)
    flat_spread = spread.reshape(-1)
    # sum_k r_k b_k per row, (D, n)
    flat_pulled = np.dot(parts.pulled.T, resp_w, out=parts.room).reshape(-1)
    square = np.zeros(d * d)
    for (group, covariance), shift, (start, stop) in zip(
        cond.groups, parts.shifts, parts.columns
    ):
        size, n_patterns = group.size, len(group.index)
        resp_rows = resp_w[:, group.start : group.stop]  # (K, r)
        per_pattern = group.pattern_sums(resp_rows)  # (K, p)
        moved = scaled[:, start:stop].reshape(n_components, size, n_patterns)
        np.multiply(shift, per_pattern[:, None, :], out=moved)
        # sum_k r_k t_k = P_mm^-1 (sum_k r_k b_k)_m per row
        cells = group.cells(n)
        flat_spread[cells] = _solve(group.per_row(covariance[:, :, 0]), np.take(flat_pulled, cells))
        # sum_rows (sum_k r_k t_k t_k' + w P_mm^-1) per pattern, (s, s, p)
        if row_weight is not None:
            weights = group.pattern_sums(row_weight[None, group.start : group.stop])[0]
        else:
            weights = np.ones(n_patterns) if group.counts is None else group.counts
        values = covariance[:, :, 0] * weights
        for j in range(size):
            block = np.einsum("kp,ksp->sp", moved[:, j], shift[:, j:])
            values[j, j:] += block
            values[j + 1 :, j] += block[1:]
        index = group.index.T  # (s, p)
        square += np.bincount(
            (index[:, None, :] * d + index[None, :, :]).reshape(-1), values.reshape(-1), d * d
        )
    pooled += square.reshape(d, d)
    if len(parts.coordinates):
        # sum_rows r_k E t_k: the scaled shifts summed by coordinate, one GEMM
        onehot = parts.onehot(d)
        onehot.fill(0.0)
        onehot.reshape(-1)[np.arange(len(parts.coordinates)) * d + parts.coordinates] = 1.0
        first += np.dot(scaled, onehot)
    cross = np.dot(xbar, spread.T)
    pooled += cross
    pooled += cross.T
    # moved from the centre to the reference
    return _moved_tied(first, pooled, nk, parts.centre, reference)


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
    assert coefs.params is not None
    params = coefs.params
    step = incomplete_chunk_rows(params.n_features, params.n_components, params.covariance_type)
    if len(X) > step:
        # no more rows at once than a fit's chunk of incomplete rows: the fused kernel's
        # chunks of 131072 rows held 220 MB here at D=8, K=64 (35 MB at 4096 rows)
        return np.concatenate([
            _split_rows(coefs, X[a : a + step], missing[a : a + step], complete_func,
                        incomplete_func)
            for a in range(0, len(X), step)
        ], axis=0)
    incomplete = np.flatnonzero(missing.any(axis=1))
    complete = np.flatnonzero(~missing.any(axis=1))
    if _schur_applies(coefs):
        part = incomplete_func(_schur_inference(coefs, X, incomplete, missing))
    else:
        pieces = []
        blocks = _blocks(len(incomplete), params.n_components * params.n_features)
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

    def incomplete(cond: _Conditional) -> NDArray[np.float64]:
        return np.asarray(
            np.max(cond.log_joint, axis=0) - logsumexp(cond.log_joint, axis=0), np.float64
        )

    return _split_rows(coefs, X, missing, map_log_resp_chunk, incomplete)


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
    blocks = _blocks(n, k * d)
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
    blocks = _blocks(len(rows), params.n_components * params.n_features)
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
    for group, covariance in cond.groups:
        size, n_shared, n_patterns = covariance.shape[0], covariance.shape[2], covariance.shape[3]
        stacked = covariance.reshape(size, size, -1).transpose(2, 0, 1)  # (Kp p, s, s)
        factors = _psd_factor(stacked).reshape(n_shared, n_patterns, size, size)
        component = 0 if n_shared == 1 else picks[group.rows]
        pattern = group.per_row(np.arange(n_patterns))
        factor = factors[component, pattern]  # (r, s, s)
        index = group.coordinates.T  # (r, s)
        shift = np.einsum("rij,rj->ri", factor, noise[group.rows[:, None], index])
        values[group.rows[:, None], index] += shift
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
            first_pattern = groups[0][1][:, :, :, 0].transpose(2, 0, 1)  # (K or 1, m, m)
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


def nan_mask(X: Array) -> NDArray[np.bool_] | bool:
    """The NaN cells of ``X``, read-only (a mask that may be kept and reused: the
    E-step keeps what it derives from it, :func:`_mask_store`), or False when there is
    none."""
    if X.dtype.kind != "f":
        return False
    missing = np.isnan(X)
    if not missing.any():
        return False
    missing.flags.writeable = False
    return missing


def filled_chunk(
    fill: NDArray[Any], chunk: Any, missing: NDArray[np.bool_] | bool | None = None
) -> Any:
    """``chunk`` with NaN replaced by ``fill`` and its ``missing`` mask set (the same
    chunk when it has no NaN); ``missing``, when given, is its :func:`nan_mask`."""
    X = chunk.X
    if missing is None:
        missing = nan_mask(X)
    if isinstance(missing, bool):
        return chunk
    fill = np.asarray(fill, dtype=X.dtype)
    store = _mask_store(missing)
    if store is None:
        return replace(chunk, X=np.where(missing, fill, X), missing=missing)
    # a kept mask keeps its cells' flat positions and columns (8 bytes a missing cell):
    # a copy and a scatter cost a third of ``np.where`` over every cell, each pass
    cells = store.get("cells")
    if cells is None:
        at = np.flatnonzero(missing)
        kind = np.int32 if missing.size < 2**31 else np.int64
        cells = at.astype(kind), (at % max(missing.shape[1], 1)).astype(kind)
        store["cells"] = cells
    filled = np.array(X, order="C", copy=True)
    filled.reshape(-1)[cells[0]] = fill[cells[1]]
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
