"""Model-based hierarchical agglomeration: R mclust's ``hc()`` start for EM.

Banfield & Raftery (1993) and Fraley (1998, "Algorithms for model-based Gaussian
hierarchical clustering", SIAM J. Sci. Comput. 20:270-281): starting from singletons,
repeatedly merge the pair of clusters whose merge increases the classification
log-likelihood criterion least; one agglomeration gives a partition for every number
of clusters.  This module reproduces mclust (version 6.x) -- ``R/mbahc.R`` and the
Fortran ``hcvvv``, ``hceii``, ``hc1v`` and ``hc1e`` of ``src/mclust.f`` -- including its
regularisation, its data transformations (``mclust.options("hcUse")``) and the order in
which it breaks ties.

The criteria, for a cluster ``C`` of ``n`` rows with scatter matrix
``W = sum_{x in C} (x - mean)(x - mean)^T`` in ``p`` dimensions:

``"VVV"`` (``hcvvv``/``vvvtij``/``det2mc``)
    ``term(C) = n log(det(W/n) + beta (tr W + alpha)/n)``, with the determinant only
    when ``n > p`` (a cluster of ``n <= p`` rows uses ``n log(beta (tr W + alpha)/n)``),
    singletons ``log(beta alpha)``; ``alpha = traceW(Z / sqrt(n p))`` -- the mean
    per-column (biased) variance of the transformed data -- floored at machine epsilon,
    ``beta = 1`` (``hcVVV(alpha = 1, beta = 1)``).  A merge costs
    ``term(A u B) - term(A) - term(B)``.  The traces are exact, but the scatter
    matrix in the determinant is not always ``W``: ``hcvvv`` stores the triangular
    factor of a merged cluster with its first row copied into every row, and reads
    that back whenever the cluster is not the one merged last (see :class:`_VVV`).
    That is reproduced, because it changes which clusters mclust merges.
``"EII"`` / ``"E"`` (``hceii`` / ``hc1e``)
    Ward's criterion: the increase ``n_A n_B / (n_A + n_B) |mean_A - mean_B|^2`` in the
    within-cluster sum of squares, updated by the Lance-Williams recurrence.
``"V"`` (``hc1v``, one-dimensional)
    ``term(C) = n log((W + alpha)/n)``, singletons ``log(alpha)``, with ``alpha`` equal to
    machine epsilon: ``hcV`` computes ``min(var(x), eps)`` (sic) and ``hc1v`` floors it at
    ``eps``.

Ties: mclust keeps the cluster pairs in a packed lower triangle (pair ``i < j`` at
``(j-1)(j-2)/2 + i``), takes the *last* minimum in that order (``.le.`` comparisons),
puts the merged cluster in slot ``i`` and moves the last slot into slot ``j``.  The
same bookkeeping is kept here, and the arithmetic of the Fortran (operation order,
sequential dot products of the reference BLAS, cached versus recomputed terms) is
followed, so that exact ties -- duplicated rows, data on a grid -- resolve as in mclust.
Only the determinants differ in the last bits (mclust updates Givens QR factors; here
the scatter matrices are updated and factorised), which matters only for near-ties.

Unlike mclust, duplicated rows need no special treatment (``hc()`` never forwards its
``dupPartition`` default, so mclust starts from singletons too), and a transformed
column that is not finite -- a zero singular value under ``"SVD"``/``"SPH"`` -- is
dropped rather than passed on as ``Inf``/``NaN``.

With numba (``gmmkit[fast]``) the whole agglomeration -- every model, the initial
all-pairs costs, each merge and the bookkeeping of the row minima -- runs compiled
(:func:`gmmkit.core._hc_jit.agglomerate`), 3-5 times faster at 2000 rows (where the
numpy path spends most of its time in the interpreter, a few dozen small numpy calls
per merge).  It does the same floating-point operations in the same order except for
what the numpy path leaves to LAPACK and numpy's logarithm (VVV's determinants; see
that module), which agree to rounding: the merges are the same but for near-ties.  It
is used once loading numba pays (see :func:`_hc_kernels`).
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gmmkit import _jit
from gmmkit._blas import one_blas_thread

__all__ = ["HC_MODELS", "HC_USES", "hc_partitions", "hc_transform"]

FloatArray = NDArray[np.float64]

#: Models of :func:`hc_partitions` ("V"/"E" are for one-dimensional data).
HC_MODELS = ("VVV", "EII", "V", "E")

#: Transformations of mclust's ``hc(use=)`` (``mclust.options("hcUse")``) supported here;
#: ``"RND"`` (random pairs) is no transformation and is not offered.
HC_USES = ("SVD", "VARS", "STD", "PCS", "PCR", "SPH")

#: ``.Machine$double.eps`` in R and ``EPSMAX`` in mclust.f.
_EPS = 2.220446049250313e-16

#: ``rthalf`` / ``sqrthf`` in mclust.f (equal to ``sqrt(0.5)`` in double precision).
_RTHALF = 0.7071067811865476

#: Largest magnitude of the (transformed) data: beyond it sums of squares overflow.
_MAX_ABS = 1e150

#: Matrices of a determinant stack factorised before the rest (see :func:`_det`).
_PROBE = 16

#: Rows per block for the initial all-pairs costs (keeps temporaries in cache).
_BLOCK_ELEMS = 1 << 16

#: Seconds loading the compiled agglomeration costs in a process that has not imported
#: numba (the import 0.25 s, numba's start-up and the cached kernel 0.15 s; 0.03 s once
#: numba has run).
_JIT_LOAD = 0.45
#: Rows from which an agglomeration runs compiled at once where numba is imported.
_JIT_MIN_ROWS = 300

#: Seconds the numpy path has spent in this process beyond what the compiled
#: agglomeration would have (estimated by :func:`_saving`), ``inf`` once compiled.
_foregone = 0.0


def _saving(n: int, p: int) -> float:
    """Seconds the compiled agglomeration of ``n`` rows in ``p`` dimensions saves over
    the numpy path: measured at 2000 rows on the 2-core development machine (0.29 s at
    D=5, 0.38 s at D=16, 1.3 s at D=64: the merges' interpreter overhead and, growing
    with D, the numpy path's per-merge determinant work), quadratic in the rows."""
    return (n / 2000.0) ** 2 * (0.2 + 0.017 * p)


def _hc_kernels(n: int, p: int) -> ModuleType | None:
    """The compiled agglomeration's module for ``n`` rows in ``p`` dimensions, or None
    for the numpy path.  As in ski rental, the numpy path runs until the time it has
    cost in this process beyond the compiled one's, with this agglomeration's, reaches
    :data:`_JIT_LOAD`; from then on the compiled one.  Where numba is already imported
    (a fit's compiled E-step), agglomerations of :data:`_JIT_MIN_ROWS` rows or more use
    it at once.  ``GMMKIT_NUMBA=1`` uses it always, ``=0`` never."""
    global _foregone
    if not _jit.enabled():
        return None
    loaded = "numba" in sys.modules and n >= _JIT_MIN_ROWS
    saving = _saving(n, p)
    if not (_jit.forced() or loaded) and _foregone + saving < _JIT_LOAD:
        _foregone += saving
        return None
    kernels = _jit.hc_kernels()
    if kernels is not None:
        _foregone = math.inf
    return kernels


# --------------------------------------------------------------------------- helpers


def _seq_sumsq(V: FloatArray) -> FloatArray:
    """Column sums of squares of ``V`` (p, m), summed over the rows in order.

    That is the order of the reference BLAS ``ddot`` mclust links against (left to
    right), so equal inputs give bit-identical sums; ``accumulate`` is sequential by
    definition, unlike ``sum``, which may sum pairwise.
    """
    return np.add.accumulate(V * V, axis=0)[-1]


def _seq_rowsum(W: FloatArray) -> FloatArray:
    """``W[0] + W[1] + ...`` (each column of ``W`` (p, m) summed over its rows in order).

    ``np.add.reduce`` over the first axis of an array whose rows are contiguous adds
    whole rows to an accumulator, one after the other -- sequential, as needed (and
    checked by the tests) -- and is several times faster than a loop over the rows or
    ``accumulate``; with a single column, though, it runs along that column and sums
    pairwise, so that case is summed here in order.
    """
    if W.shape[1] >= 2 and W.strides[1] == W.itemsize:
        return np.add.reduce(W, axis=0)
    return _seq_rowsum_loop(W)


def _seq_rowsum_loop(W: FloatArray) -> FloatArray:
    """``W[0] + W[1] + ...`` by a loop over the rows."""
    out = W[0].copy()
    for c in range(1, W.shape[0]):
        out += W[c]
    return out


def _seq_colsum_ld(A: FloatArray) -> NDArray[np.longdouble]:
    """Column sums accumulated sequentially in long double (R's ``colMeans``/``sum``)."""
    acc = np.zeros(A.shape[1], dtype=np.longdouble)
    for row in A.astype(np.longdouble):
        acc += row
    return acc


def _r_scale(Y: FloatArray, scale: bool) -> FloatArray:
    """R's ``scale(Y, center = TRUE, scale = scale)``, rounding as R does."""
    n = Y.shape[0]
    center = (_seq_colsum_ld(Y) / n).astype(np.float64)
    Yc = Y - center
    if not scale:
        return Yc
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # as R: Inf, NaN
        ss = _seq_colsum_ld(Yc * Yc).astype(np.float64)
        return Yc / np.sqrt(ss / max(1, n - 1))


def _drop_nonfinite_cols(Y: FloatArray) -> FloatArray:
    """mclust's ``dropCols``: keep the columns whose values are all finite."""
    return Y[:, np.isfinite(Y).all(axis=0)]


def _seq_matmul(A: FloatArray, B: FloatArray) -> FloatArray:
    """``A @ B`` summed in the reference ``dgemm`` order (sequentially over the inner index)."""
    out = np.zeros((A.shape[0], B.shape[1]))
    for l in range(A.shape[1]):
        out = out + A[:, l : l + 1] * B[l, :]
    return out


def _svd_v_d(Y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Right singular vectors (columns) and singular values of ``Y`` (``svd(Y, nu = 0)``)."""
    _, d, vt = np.linalg.svd(Y, full_matrices=False)
    return vt.T.copy(), d


def hc_transform(X: ArrayLike, use: str = "SVD") -> FloatArray:
    """The data as mclust's ``hc(data, use = use)`` hands them to the agglomeration.

    Follows the ``switch(use, ...)`` of ``hc`` in mclust's ``R/mbahc.R``
    (``scale()`` centres by the column means and scales by the ``n - 1`` standard
    deviations; ``dropCols`` drops columns with non-finite values):

    ``"VARS"``
        ``X`` as it is.
    ``"STD"``
        ``scale(X)``, constant columns dropped.
    ``"PCR"``
        ``scale(X)``, constant columns dropped, times the right singular vectors.
    ``"PCS"``
        centred ``X`` times its right singular vectors.
    ``"SPH"``
        centred ``X`` times ``V diag(1/sqrt(d))`` from the SVD of the biased covariance.
    ``"SVD"`` (mclust's default ``hcUse``)
        ``S = scale(X)`` with constant columns dropped, then ``S V diag(1/sqrt(d))``
        from ``svd(S) = U diag(d) V'`` -- that is ``U diag(sqrt(d))``.

    Where mclust would divide by a zero singular value (and pass ``Inf``/``NaN`` on),
    the non-finite column is dropped.  If no column is left the result is one column
    of zeros (every row alike).

    Parameters
    ----------
    X : array_like of shape (n, d) or (n,)
        Finite data.
    use : {"SVD", "VARS", "STD", "PCS", "PCR", "SPH"}

    Returns
    -------
    ndarray of shape (n, q), float64
        ``q <= d`` columns (``q = min(n, d)`` at most for the SVD-based ones).
    """
    Y = _as_data(X)
    key = str(use).upper()
    n = Y.shape[0]
    if key == "VARS":
        Z = Y.copy()
    elif key == "STD":
        Z = _drop_nonfinite_cols(_r_scale(Y, scale=True))
    elif key == "PCR":
        S = _drop_nonfinite_cols(_r_scale(Y, scale=True))
        Z = _seq_matmul(S, _svd_v_d(S)[0]) if S.shape[1] else S
    elif key == "PCS":
        C = _r_scale(Y, scale=False)
        Z = _drop_nonfinite_cols(_seq_matmul(C, _svd_v_d(C)[0]))
    elif key == "SPH":
        C = _r_scale(Y, scale=False)
        sigma = _seq_matmul(C.T, C) / n  # var(C) * (n - 1)/n, up to rounding
        v, d = _svd_v_d(sigma)
        with np.errstate(divide="ignore", invalid="ignore"):
            Z = _drop_nonfinite_cols(_seq_matmul(C, v) * (1.0 / np.sqrt(d)))
    elif key == "SVD":
        S = _drop_nonfinite_cols(_r_scale(Y, scale=True))
        if S.shape[1]:
            v, d = _svd_v_d(S)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                Z = _drop_nonfinite_cols(_seq_matmul(S, v) * (1.0 / np.sqrt(d)))
        else:
            Z = S
    else:
        raise ValueError(f"use must be one of {HC_USES}, got {use!r}")
    if Z.shape[1] == 0:
        Z = np.zeros((n, 1))
    return np.ascontiguousarray(Z, dtype=np.float64)


def _as_data(X: ArrayLike) -> FloatArray:
    Y = np.asarray(X, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2:
        raise ValueError(f"X must be 2-D (n, d), got shape {Y.shape}")
    if Y.shape[0] < 1 or Y.shape[1] < 1:
        raise ValueError(f"X must have at least one row and one column, got shape {Y.shape}")
    if not np.isfinite(Y).all():
        raise ValueError("X must be finite (no NaN or inf)")
    return Y


def _vvv_alpha(Z: FloatArray, alpha: float = 1.0) -> float:
    """hcVVV's ``alpha * traceW(data / sqrt(n p))``, floored at eps (also in hcvvv)."""
    n, p = Z.shape
    return max(alpha * _trace_w(Z / np.sqrt(float(n * p))), _EPS)


def _powers(n: int, p: int) -> FloatArray:
    """``l**p`` for ``l = 0 .. 2n`` (``2n``: a cluster of ``n`` with itself)."""
    with np.errstate(over="ignore"):
        return np.arange(2 * n + 1, dtype=np.float64) ** p


def _trace_w(Y: FloatArray) -> float:
    """mclust's ``traceW`` (Fortran ``mcltrw``): sum of squares about the column means."""
    n = Y.shape[0]
    fac = 1.0 / np.sqrt(float(n))
    u = np.add.accumulate(fac * Y, axis=0)[-1]
    Yc = Y + (-fac) * u
    ss = 0.0
    for col in np.add.accumulate(Yc * Yc, axis=0)[-1]:
        ss = ss + float(col)
    return ss


# ----------------------------------------------------------------- the agglomeration


class _Criterion:
    """Model-specific part: pair costs for a freshly merged cluster, cluster summaries."""

    def initial_block(self, r0: int, r1: int) -> FloatArray:
        """Costs of all singleton pairs (i, j), i in [r0, r1), j in [0, r1)."""
        raise NotImplementedError

    def merge(self, a: int, b: int, lg: int, D: FloatArray) -> FloatArray:
        """Merge slot ``b`` into slot ``a`` (``a < b``) and move slot ``lg - 1`` into ``b``.

        Returns the costs of merging the new cluster in ``a`` with every slot
        ``0 .. lg - 2`` after the move (entry ``a`` is ignored).  ``D`` holds the pair
        costs before the merge and must not be modified.
        """
        raise NotImplementedError


class _Ward(_Criterion):
    """``hceii`` / ``hc1e``: Ward's sum-of-squares increase, Lance-Williams updates."""

    def __init__(self, Z: FloatArray) -> None:
        s = np.sqrt(1.0 / 2.0)
        self.xs = s * Z  # v = sj*x(i) - si*x(j) with si = sj = sqrt(1/2)
        self.cnt = np.ones(Z.shape[0])

    def initial_block(self, r0: int, r1: int) -> FloatArray:
        xs = self.xs
        diff = xs[r0:r1, None, 0] - xs[None, :r1, 0]
        acc = diff * diff
        for c in range(1, xs.shape[1]):
            np.subtract(xs[r0:r1, None, c], xs[None, :r1, c], out=diff)
            np.multiply(diff, diff, out=diff)
            np.add(acc, diff, out=acc)
        return acc

    def merge(self, a: int, b: int, lg: int, D: FloatArray) -> FloatArray:
        cnt = self.cnt
        last = lg - 1
        si, sj = cnt[a], cnt[b]
        sij = si + sj
        dold = D[a, b]
        rj = cnt[:lg]
        dij = (rj + si) * D[a, :lg] + (rj + sj) * D[b, :lg]
        dij = (dij - rj * dold) / (rj + sij)
        cnt[a] = sij
        if b != last:
            cnt[b] = cnt[last]
            dij[b] = dij[last]
        return dij[:last]


class _VarV(_Criterion):
    """``hc1v``: one-dimensional, unequal variances, ``alpha = eps``."""

    def __init__(self, Z: FloatArray) -> None:
        if Z.shape[1] != 1:
            raise ValueError(f'model "V" is for one-dimensional data, got {Z.shape[1]} columns')
        n = Z.shape[0]
        self.alpha = _EPS  # hcV: min(alpha * var, eps), then max(ALPHA, EPSMAX) in hc1v
        self.alflog = float(np.log(self.alpha))
        self.x = Z[:, 0].copy()  # sqrt(n_k) * mean_k
        self.tr = np.zeros(n)
        self.term = np.full(n, self.alflog)
        self.cnt = np.ones(n)

    def initial_block(self, r0: int, r1: int) -> FloatArray:
        s = np.sqrt(1.0 * (1.0 / 2.0))
        sx = s * self.x
        temp = sx[r0:r1, None] - sx[None, :r1]
        trc = 0.0 + temp * temp
        trm = 2.0 * np.log((trc + self.alpha) / 2.0)
        return trm - (self.alflog + self.alflog)

    def _pair(self, a: int, nk: Any, xk: Any, trk: Any) -> tuple[Any, Any, float, Any]:
        """Trace and term of cluster ``a`` merged with clusters of sizes ``nk``, means
        ``xk / sqrt(nk)`` and traces ``trk`` (hc1v's loops); also the weights."""
        na = float(self.cnt[a])
        rij = na + nk
        qij = 1.0 / rij
        si = np.sqrt(na * qij)
        sj = np.sqrt(nk * qij)
        temp = sj * self.x[a] - si * xk
        trc = (self.tr[a] + trk) + temp * temp
        return trc, rij * np.log((trc + self.alpha) / rij), si, sj

    def merge(self, a: int, b: int, lg: int, D: FloatArray) -> FloatArray:
        x, tr, term, cnt = self.x, self.tr, self.term, self.cnt
        last = lg - 1
        trc, trm, si, sj = self._pair(a, float(cnt[b]), x[b], tr[b])
        x[a] = si * x[a] + sj * x[b]
        tr[a], term[a], cnt[a] = trc, trm, cnt[a] + cnt[b]
        if b != last:
            x[b], tr[b], term[b], cnt[b] = x[last], tr[last], term[last], cnt[last]
        m = lg - 1
        _, trm_k, _, _ = self._pair(a, cnt[:m], x[:m], tr[:m])
        return trm_k - (term[a] + term[:m])


class _VVV(_Criterion):
    """``hcvvv``: unconstrained covariances, regularised by ``alpha`` and ``beta``.

    ``hcvvv`` keeps each cluster's scatter as a triangular factor ``R`` (``R'R = W``)
    and merges factors by Givens rotations (``mclrup``).  When it stores the factor of
    a merged cluster in the rows of its members it copies the *first* row of ``R``
    into every row (``call dcopy(p, r(1,1), p, x(l,1), n)`` after label 200), so the
    factor read back later has rows ``R[0, t:]``, ``t < min(n_k - 1, p)``: its Gram
    matrix is ``(r r') * C`` with ``r = R[0]`` and ``C[a, b] = min(a, b, q - 1) + 1``.
    The cluster merged last (``iold``) still has its true factor in memory.  These
    Gram matrices are reproduced here, since they decide which merges mclust makes.
    """

    def __init__(
        self, Z: FloatArray, alpha: float = 1.0, beta: float = 1.0, mclust_storage: bool = True
    ) -> None:
        n, p = Z.shape
        self.p = p
        # False: keep every cluster's true scatter (the textbook criterion), for tests
        self.mclust_storage = mclust_storage
        self.alpha = _vvv_alpha(Z, alpha)
        self.beta = float(beta)
        self.ablog = float(np.log(self.beta * self.alpha))
        self.xT = np.ascontiguousarray(Z.T)  # column k: sqrt(n_k) * mean_k
        self.tr = np.zeros(n)
        self.term = np.full(n, self.ablog)
        self.cnt = np.ones(n)
        self.icnt = np.ones(n, dtype=np.intp)
        self.pw = _powers(n, p)
        self.G = np.zeros((n, p, p))  # Gram matrix of each cluster's stored factor
        self.r1 = np.zeros((n, p))  # first row of each cluster's factor
        self.mem = np.zeros((p, p))  # Gram matrix of iold's factor held in memory
        idx = np.arange(p)
        cmin = np.minimum(idx[:, None], idx[None, :])
        # multiplicity of each entry in the Gram matrix of a q-row stored factor
        self.ctab = [np.minimum(cmin, q - 1) + 1.0 for q in range(p + 1)]
        self.iold = -1  # slot of the last merged cluster (-1: none yet)
        self.buf_v = np.empty((p, n))
        self.buf_w = np.empty((p, n))
        self.buf_m = np.empty((0, p, p))
        self.buf_o = np.empty((0, p, p))
        self.cache_trc: FloatArray = np.empty(0)
        self.cache_trm: FloatArray = np.empty(0)
        self.cache_si: FloatArray = np.empty(0)
        self.cache_sj: FloatArray = np.empty(0)

    def _pair_costs(
        self, a: int, m: int
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        """``v = si x(j) - sj x(iold)`` for the slots ``j < m`` against the new cluster in
        ``a``, as the columns of ``V`` (p, m), with ``rij``, ``si``, ``sj``, the merged
        traces and ``beta (trc + alpha) / rij``: hcvvv's loop over j, operation for
        operation (the squared norms summed over the coordinates in order, ddot's)."""
        xT, tr, cnt = self.xT, self.tr, self.cnt
        V = self.buf_v[:, :m]
        ri = cnt[a]
        rj = cnt[:m]
        rij_k = ri + rj
        qij_k = 1.0 / rij_k
        si_k = np.sqrt(ri * qij_k)
        sj_k = np.sqrt(rj * qij_k)
        xa = xT[:, a]
        # in preallocated buffers: the same operations, operand for operand
        np.multiply(xT[:, :m], si_k, out=V)
        W = self.buf_w[:, :m]
        np.multiply(xa[:, None], sj_k, out=W)
        V -= W
        np.multiply(V, V, out=W)
        ss = _seq_rowsum(W)
        trc_k = (tr[a] + tr[:m]) + ss
        base = self.beta * (trc_k + self.alpha) / rij_k
        return V, rij_k, si_k, sj_k, trc_k, base

    def initial_block(self, r0: int, r1: int) -> FloatArray:
        xT = self.xT
        diff = xT[0, r0:r1, None] - xT[0, None, :r1]
        diff *= _RTHALF
        acc = diff * diff
        for c in range(1, xT.shape[0]):
            np.subtract(xT[c, r0:r1, None], xT[c, None, :r1], out=diff)
            np.multiply(diff, _RTHALF, out=diff)
            np.multiply(diff, diff, out=diff)
            np.add(acc, diff, out=acc)
        # trmij = two*log(BETA*(trcij+ALPHA)/two); dij = trmij - (termi + termj)
        trm = 2.0 * np.log(self.beta * (acc + self.alpha) / 2.0)
        return trm - (self.ablog + self.ablog)

    def merge(self, a: int, b: int, lg: int, D: FloatArray) -> FloatArray:
        xT, tr, term, cnt, G, r1 = self.xT, self.tr, self.term, self.cnt, self.G, self.r1
        p = self.p
        last = lg - 1
        na, nb = float(cnt[a]), float(cnt[b])
        rij = na + nb
        qij = 1.0 / rij
        si = math.sqrt(na * qij)
        sj = math.sqrt(nb * qij)
        if self.iold in (a, b):
            # hcvvv keeps trop/tmop and the factor from its loop over iold's pairs.
            k = b if self.iold == a else a
            trc = float(self.cache_trc[k])
            trm = float(self.cache_trm[k])
            # v as hcvvv's loop computed it (same operands, same operations)
            v = self.cache_si[k] * xT[:, k] - self.cache_sj[k] * xT[:, self.iold]
            M = self.mem + G[k]
            first = r1[self.iold]
        else:
            if na == 1.0 and nb == 1.0:
                v = (xT[:, a] - xT[:, b]) * _RTHALF
                trc = float(_seq_sumsq(v[:, None])[0])
                if self.iold < 0:  # first merge: values of the initial loop
                    trm = 2.0 * math.log(self.beta * (trc + self.alpha) / 2.0)
                else:  # a pair chosen off iold's row: tmop = dopt + (termi + termj)
                    trm = float(D[a, b] + (term[a] + term[b]))
            else:
                v = sj * xT[:, a] - si * xT[:, b]
                trc = float((tr[a] + tr[b]) + _seq_sumsq(v[:, None])[0])
                trm = float(D[a, b] + (term[a] + term[b]))
            # the factor is rebuilt from the stored ones, the higher slot's first
            M = G[a] + G[b]
            first = r1[b] if nb > 1.0 else (r1[a] if na > 1.0 else v)
        M += v[:, None] * v[None, :]
        # First row of the merged factor: M[0]/sqrt(M[0,0]); with an all-zero first
        # column the Givens rotations leave the first row loaded in place.
        m00 = float(M[0, 0])
        row = M[0] / math.sqrt(m00) if m00 > 0.0 else np.array(first)
        self.mem = M
        r1[a] = row
        if self.mclust_storage:
            G[a] = (row[:, None] * row[None, :]) * self.ctab[min(int(rij) - 1, p)]
        else:
            G[a] = M
        xT[:, a] = si * xT[:, a] + sj * xT[:, b]
        tr[a], term[a], cnt[a] = trc, trm, rij
        self.icnt[a] += self.icnt[b]
        if b != last:
            xT[:, b] = xT[:, last]
            tr[b], term[b], cnt[b] = tr[last], term[last], cnt[last]
            self.icnt[b] = self.icnt[last]
            G[b] = G[last]
            r1[b] = r1[last]
        self.iold = a

        # Costs of the new cluster (slot a) against slots 0..m-1: hcvvv's loops on iold.
        m = lg - 1
        ri = rij
        V, rij_k, si_k, sj_k, trc_k, base = self._pair_costs(a, m)
        if ri + 1.0 > p:  # every merged cluster has more than p rows
            trm_k = rij_k * self._det_log(slice(0, m), a, m, V, base)
        else:
            trm_k = rij_k * np.log(base)  # vvvtij for l <= p
            big = np.flatnonzero(rij_k > p)
            if big.size:  # the determinant enters where l > p
                trm_k[big] = rij_k[big] * self._det_log(big, a, m, V[:, big], base)
        self.cache_trc, self.cache_trm = trc_k, trm_k
        self.cache_si, self.cache_sj = si_k, sj_k
        return trm_k - (term[a] + term[:m])

    def _stacks(self, size: int) -> tuple[FloatArray, FloatArray]:
        """Two work stacks of ``size`` ``p x p`` matrices (grown as needed, reused)."""
        if self.buf_m.shape[0] < size:
            grow = min(max(size, 2 * self.buf_m.shape[0]), self.G.shape[0])
            self.buf_m = np.empty((grow, self.p, self.p))
            self.buf_o = np.empty((grow, self.p, self.p))
        return self.buf_m[:size], self.buf_o[:size]

    def _det_log(
        self,
        sel: slice | NDArray[np.intp],
        a: int,
        m: int,
        Vs: FloatArray,
        base: FloatArray,
    ) -> FloatArray:
        """``vvvtij / l`` for ``l > p``: ``log(det(R'R / l) + beta (tr + alpha) / l)``,
        for the candidates ``sel`` (with their ``v`` in the columns of ``Vs``); ``R'R``
        stacks iold's factor (held in memory), the other cluster's stored factor and
        ``v``."""
        ns = Vs.shape[1]
        nz = np.flatnonzero(self.cnt[:m][sel] > 1.0)
        if nz.size < ns:
            # singletons have no stored factor: det(mem + v v') = det(mem) + v' adj(mem) v
            adj, dmem = _adjugate(self.mem)
            det = dmem + np.einsum("ij,ij->j", adj @ Vs, Vs)
        else:
            det = np.empty(ns)
        if nz.size:
            ids = nz if isinstance(sel, slice) else sel[nz]
            Mb, outer = self._stacks(nz.size)
            Vm = Vs[:, nz].T
            np.take(self.G, ids, axis=0, out=Mb)
            Mb += self.mem
            np.multiply(Vm[:, :, None], Vm[:, None, :], out=outer)
            Mb += outer
            det[nz] = _det(Mb)
        lcount = self.icnt[a] + self.icnt[:m][sel]
        b = base[sel]
        val = np.log(np.abs(det) / self.pw[lcount] + b)  # (errstate set by _merges)
        if not np.isfinite(val.sum()):  # det or l**p overflowed: work on logarithms
            idx = np.flatnonzero(~np.isfinite(val))
            vb = Vs[:, idx].T
            ids = idx if isinstance(sel, slice) else sel[idx]
            Mb = self.G[ids] + self.mem + vb[:, :, None] * vb[:, None, :]
            _, logabs = np.linalg.slogdet(Mb)
            lf = lcount[idx].astype(np.float64)
            val[idx] = np.logaddexp(logabs - self.p * np.log(lf), np.log(b[idx]))
        return val


def _det(M: FloatArray) -> FloatArray:
    """Determinants of a stack of small matrices (closed forms up to 3 x 3)."""
    p = M.shape[-1]
    if p == 1:
        return M[:, 0, 0].copy()
    if p == 2:
        return M[:, 0, 0] * M[:, 1, 1] - M[:, 0, 1] * M[:, 1, 0]
    if p == 3:
        c0 = M[:, 1, 1] * M[:, 2, 2] - M[:, 1, 2] * M[:, 2, 1]
        c1 = M[:, 1, 0] * M[:, 2, 2] - M[:, 1, 2] * M[:, 2, 0]
        c2 = M[:, 1, 0] * M[:, 2, 1] - M[:, 1, 1] * M[:, 2, 0]
        return M[:, 0, 0] * c0 - M[:, 0, 1] * c1 + M[:, 0, 2] * c2
    try:  # positive definite but for degenerate data; Cholesky is the cheapest
        # One singular matrix sends the whole stack to slogdet (the values of every
        # determinant depend on it).  Such stacks are common with mclust's stored
        # factors, and the singular matrices come early: a few are tried first.
        head = min(M.shape[0], _PROBE)
        L = np.linalg.cholesky(M[:head])
        if head < M.shape[0]:
            L = np.concatenate([L, np.linalg.cholesky(M[head:])])
    except np.linalg.LinAlgError:
        sign, logabs = np.linalg.slogdet(M)
        with np.errstate(over="ignore"):
            return sign * np.exp(logabs)
    d = np.einsum("kii->ki", L).prod(axis=1)
    return d * d


def _adjugate(A: FloatArray) -> tuple[FloatArray, float]:
    """Adjugate and determinant of a symmetric positive semi-definite matrix.

    ``det(A + v v') = det(A) + v' adj(A) v`` holds whether or not ``A`` is singular.
    """
    p = A.shape[0]
    if p == 1:
        return np.ones((1, 1)), float(A[0, 0])
    if p == 2:
        adj = np.array([[A[1, 1], -A[0, 1]], [-A[1, 0], A[0, 0]]])
        return adj, float(A[0, 0] * A[1, 1] - A[0, 1] * A[1, 0])
    if p == 3:
        # rows: the cross products c1 x c2, c2 x c0, c0 x c1 of the columns c of A,
        # each component a product minus a product (as np.cross, without its overhead)
        (a00, a01, a02), (a10, a11, a12), (a20, a21, a22) = A.tolist()
        adj = np.array(
            [
                [a11 * a22 - a21 * a12, a21 * a02 - a01 * a22, a01 * a12 - a11 * a02],
                [a12 * a20 - a22 * a10, a22 * a00 - a02 * a20, a02 * a10 - a12 * a00],
                [a10 * a21 - a20 * a11, a20 * a01 - a00 * a21, a00 * a11 - a10 * a01],
            ]
        )
        return adj, float(adj[0] @ A[:, 0])
    lam, Q = np.linalg.eigh(A)
    # c_i = prod_{j != i} lam_j, without dividing by a (possibly zero) lam_i
    L = np.tile(lam, (p, 1))
    np.fill_diagonal(L, 1.0)
    return (Q * L.prod(axis=1)) @ Q.T, float(lam.prod())


def _merges(crit: _Criterion, n: int, kmin: int) -> list[tuple[int, int]]:
    """The merges down to ``kmin`` clusters, as slot pairs (see :func:`_agglomerate_run`)."""
    # Overflow (absurdly scaled data) is caught where it matters (_VVV._det_log);
    # one errstate for the whole run instead of one per merge.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _agglomerate_run(crit, n, kmin)


def _cut(
    n: int, merges: Iterable[tuple[int, int]], ks: Iterable[int]
) -> dict[int, NDArray[np.intp]]:
    """Labels at each ``k`` in ``ks`` (numbered in order of first appearance) after the
    ``merges`` of :func:`_agglomerate_run`: slot ``j`` into slot ``i``, then the last
    slot moved into ``j``."""
    want = set(ks)
    out: dict[int, NDArray[np.intp]] = {}
    members: list[list[int]] = [[i] for i in range(n)]

    def snapshot(lg: int) -> None:
        lab = np.empty(n, dtype=np.intp)
        sizes = [len(mem) for mem in members[:lg]]
        lab[np.fromiter(itertools.chain.from_iterable(members[:lg]), np.intp, n)] = np.repeat(
            np.arange(lg), sizes
        )
        out[lg] = _first_appearance(lab)

    lg = n
    if lg in want:
        snapshot(lg)
    for i, j in merges:
        members[i].extend(members[j])
        if j != lg - 1:
            members[j] = members[lg - 1]
        members.pop()
        lg -= 1
        if lg in want:
            snapshot(lg)
    return out


def _agglomerate_run(crit: _Criterion, n: int, kmin: int) -> list[tuple[int, int]]:
    """The agglomeration proper, on the numpy path: its merges down to ``kmin`` clusters.

    Slots ``0 .. lg-1`` hold the current clusters; merge ``(i, j)`` (``i < j``) merges
    slot ``j`` into slot ``i`` and moves the last slot into ``j``.  ``D`` (symmetric,
    ``+inf`` on the diagonal) holds the pair costs.  For each row ``j >= 1``,
    ``rmin[j]`` is the minimum of ``D[j, :j]`` and ``rarg[j]`` the last column attaining
    it -- mclust's packed order -- or, where ``stale[j]``, only a lower bound of that
    minimum, made exact when the row comes up (the generic algorithm of Muellner 2011,
    section 3.1).  :func:`gmmkit.core._hc_jit.agglomerate` is the same loop compiled.
    """
    merges: list[tuple[int, int]] = []
    if n <= kmin:
        return merges

    D = np.empty((n, n))
    rmin = np.full(n, np.inf)
    rarg = np.zeros(n, dtype=np.intp)
    stale = np.zeros(n, dtype=bool)
    rows_per_block = max(1, _BLOCK_ELEMS // n)
    for r0 in range(0, n, rows_per_block):
        r1 = min(n, r0 + rows_per_block)
        blk = crit.initial_block(r0, r1)
        D[r0:r1, :r1] = blk
        D[:r1, r0:r1] = blk.T
        rr = np.arange(r0, r1)
        blk[np.arange(r1)[None, :] >= rr[:, None]] = np.inf
        idx = r1 - 1 - np.argmin(blk[:, ::-1], axis=1)
        rmin[rr] = blk[np.arange(r1 - r0), idx]
        rarg[rr] = idx
    np.fill_diagonal(D, np.inf)

    def exact_row(r: int) -> None:
        row = D[r, :r]
        c = r - 1 - int(row[::-1].argmin())
        rmin[r] = row[c]
        rarg[r] = c
        stale[r] = False

    def new_column(col: int, lg: int) -> None:
        # rows col+1 .. lg-1 got a new value in column col
        vals = D[col, col + 1 : lg]
        cur = rmin[col + 1 : lg]
        arg = rarg[col + 1 : lg]
        st = stale[col + 1 : lg]
        # a row whose minimum sat in this column and went up keeps a lower bound
        hit = (arg == col).nonzero()[0]
        if hit.size:
            st[hit[vals[hit] > cur[hit]]] = True
        # rows whose minimum the new value lowers, or equals from a later column (the
        # last minimum in mclust's order); few, so they are gathered first
        le = (vals <= cur).nonzero()[0]
        if le.size:
            v = vals[le]
            upd = le[(v < cur[le]) | ((col > arg[le]) & ~st[le])]
            cur[upd] = vals[upd]
            arg[upd] = col
            st[upd] = False

    lg = n
    while lg > kmin:
        while True:
            j = lg - 1 - int(rmin[lg - 1 : 0 : -1].argmin())
            if not stale[j]:
                break
            exact_row(j)
        i = int(rarg[j])
        last = lg - 1
        c = crit.merge(i, j, lg, D)
        merges.append((i, j))
        if j != last:
            D[j, :lg] = D[last, :lg]
            D[:lg, j] = D[last, :lg]  # (symmetric: a row read, not a column)
            rmin[j], rarg[j], stale[j] = rmin[last], rarg[last], stale[last]
        lg -= 1
        c[i] = np.inf
        D[i, :lg] = c
        D[:lg, i] = c
        D[j, j] = np.inf
        if lg <= 1:
            break
        if i >= 1:
            exact_row(i)
        if j < lg:
            exact_row(j)
        new_column(i, lg)
        if j < lg:
            new_column(j, lg)
    return merges


def _first_appearance(lab: NDArray[np.intp]) -> NDArray[np.intp]:
    """Relabel 0..k-1 in order of first appearance (mclust's ``partconv(consec = TRUE)``)."""
    _, first, inv = np.unique(lab, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.intp)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[inv.reshape(-1)]


def hc_partitions(
    X: ArrayLike,
    ks: Iterable[int | np.integer[Any]],
    model: str = "VVV",
    use: str = "SVD",
) -> dict[int, NDArray[np.intp]]:
    """Partitions from mclust's model-based hierarchical agglomeration (``hc``).

    Equivalent to ``hclass(hc(X, modelName = model, use = use), k)`` in R's mclust
    for each ``k``: one agglomeration from singletons down to ``min(ks)`` clusters,
    cut at each requested ``k``.

    Parameters
    ----------
    X : array_like of shape (n, d) or (n,)
        Finite data (typically a bounded subsample; time is O(n^2) and memory
        ``8 n^2`` bytes).
    ks : iterable of int
        Numbers of clusters wanted, each in ``1 .. n``.
    model : {"VVV", "EII", "V", "E"}
        ``"VVV"`` (mclust's default for d > 1), ``"EII"`` (Ward's criterion), and for
        one-dimensional data ``"V"`` (mclust's default) and ``"E"`` (Ward).
    use : {"SVD", "VARS", "STD", "PCS", "PCR", "SPH"}
        The transformation applied first (see :func:`hc_transform`); ``"SVD"`` is
        mclust's default ``hcUse``, ``"VARS"`` the data as they are.

    Returns
    -------
    dict of int to ndarray of shape (n,), intp
        For each ``k``, labels in ``0 .. k-1`` numbered in order of first appearance.

    Raises
    ------
    ValueError
        For non-finite data, data beyond 1e150 in magnitude (after the transformation),
        an unknown model or transformation, "V"/"E" on data with more than one
        (transformed) column, or a ``k`` outside ``1 .. n``.
    """
    Y = _as_data(X)
    n = Y.shape[0]
    key = str(model).upper()
    if key not in HC_MODELS:
        raise ValueError(f"model must be one of {HC_MODELS}, got {model!r}")
    kl: list[int] = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int | np.integer):
            raise ValueError(f"numbers of clusters must be integers, got {k!r}")
        kk = int(k)
        if kk < 1:
            raise ValueError(f"number of clusters must be >= 1, got {kk}")
        if kk > n:
            raise ValueError(f"cannot form {kk} clusters from {n} rows (k must be <= n)")
        kl.append(kk)
    if not kl:
        return {}
    # thousands of merges, each a few tiny BLAS calls (D x D at VVV): threaded BLAS only
    # adds overhead, so BLAS runs on one thread as in a fit (whose hc start nests here)
    with one_blas_thread():
        return _hc_partitions(Y, kl, key, use)


def _hc_partitions(
    Y: FloatArray, kl: list[int], key: str, use: str
) -> dict[int, NDArray[np.intp]]:
    """:func:`hc_partitions` on validated data, numbers of clusters and model."""
    n = Y.shape[0]
    Z = hc_transform(Y, use)
    if np.abs(Z).max() > _MAX_ABS:
        raise ValueError(
            f"data too large in magnitude for hc (|value| > {_MAX_ABS:g} after use={use!r}); "
            "rescale them"
        )
    if key in ("V", "E") and Z.shape[1] != 1:
        raise ValueError(f'model "{key}" is for one-dimensional data, got {Z.shape[1]} columns')
    if n == 1:
        return {1: np.zeros(1, dtype=np.intp)}
    kernels = _hc_kernels(n, Z.shape[1])
    merges: list[tuple[int, int]]
    if kernels is not None:
        merges = _compiled_merges(kernels, key, Z, min(kl))[0].tolist()
    else:
        crit: _Criterion
        if key in ("EII", "E"):
            crit = _Ward(Z)
        elif key == "V":
            crit = _VarV(Z)
        else:
            crit = _VVV(Z)
        merges = _merges(crit, n, min(kl))
    parts = _cut(n, merges, kl)
    return {k: parts[k] for k in kl}


def _compiled_merges(
    kernels: ModuleType, key: str, Z: FloatArray, kmin: int, mclust_storage: bool = True
) -> tuple[NDArray[np.intp], FloatArray]:
    """The merges down to ``kmin`` clusters of the compiled agglomeration
    (:func:`gmmkit.core._hc_jit.agglomerate`), as slot pairs (see :func:`_cut`), and their
    costs."""
    n, p = Z.shape
    X = np.array(Z.T, dtype=np.float64, order="C")
    pw = np.ones(1)
    alpha = 1.0
    if key == "VVV":
        kind, alpha, pw = kernels.VVV, _vvv_alpha(Z), _powers(n, p)
    elif key == "V":
        kind, alpha = kernels.VAR_V, _EPS  # hcV: min(alpha * var, eps), floored at eps
    else:
        kind = kernels.WARD
    merges = np.zeros((max(0, n - kmin), 2), dtype=np.intp)
    heights = np.zeros(max(0, n - kmin))
    t = kernels.agglomerate(kind, X, kmin, alpha, 1.0, mclust_storage, pw,
                            max(1, _BLOCK_ELEMS // n), merges, heights)
    return merges[:t], heights[:t]
