"""Compiled (numba) model-based hierarchical agglomeration (:mod:`gmmkit.core.hc`).

Imported only through :func:`gmmkit._jit.hc_kernels` (numba is an optional dependency).
:func:`agglomerate` runs the whole agglomeration -- the initial all-pairs costs, every
merge and the bookkeeping of the row minima -- in one call, with the criteria of
``hcvvv`` ("VVV"), ``hceii``/``hc1e`` (Ward) and ``hc1v`` ("V") as
:class:`gmmkit.core.hc._VVV`, :class:`~gmmkit.core.hc._Ward` and
:class:`~gmmkit.core.hc._VarV` compute them, operation for operation: the same products,
differences and sequential sums of squares (no ``fastmath``: no fused multiply-adds, no
reassociation), the same tie-breaking (the last minimum in mclust's packed order) and
mclust's stored factors.  On the numpy path each merge is a few dozen small numpy calls
(0.1-0.3 ms of interpreter overhead, 0.2-0.5 s for 2000 rows); here it is a loop.

What differs is the arithmetic the numpy path leaves to LAPACK, numpy's ``log`` and
BLAS: VVV's determinants (here symmetric elimination written out; there closed forms up
to 3 x 3 and LAPACK's Cholesky), the determinants ``det(W + v v')`` of a new cluster's
scatter ``W`` with a singleton (here ``det(W) (1 + |R'^-1 v|^2)`` from ``W = R'R``, one
triangular solve for all of them; there ``det(W) + v' adj(W) v`` through an
eigendecomposition), and logarithms.  They agree to rounding, as both agree with
mclust's Givens QR updates; a cost can differ in its last bits, which decides only
near-ties (exact ties -- duplicated rows, data on a grid -- have equal operands and stay
exact on both paths).  A singular scatter (a non-positive pivot) has determinant zero
here.  The passes over all candidates of a merge (their ``v`` and traces, the
singletons' solve, up to :data:`STACKED_DIMENSIONS` the other candidates' determinants)
and the initial costs run along contiguous memory with unsigned indices, so that LLVM
vectorises them.

Compiled with ``cache=True`` (to ``__pycache__`` beside this file, or numba's user
cache directory) and ``nogil=True``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, uint64

#: ``sqrt(0.5)`` as :data:`gmmkit.core.hc._RTHALF` (mclust's ``rthalf``).
_RTHALF = 0.7071067811865476

#: Dimensions up to which the determinants of a merge's candidates are computed together
#: (:func:`_stacked_dets`); above, each one's elimination vectorises along its rows.
STACKED_DIMENSIONS = 16

#: Criteria of :func:`agglomerate` (``kind``).
VVV = 0
WARD = 1
VAR_V = 2

_jit = njit(cache=True, nogil=True)


@_jit
def _last_min(vals, lo, hi):  # pragma: no cover
    """The last index in ``[lo, hi)`` attaining the minimum of ``vals`` -- numpy's
    ``argmin`` over the reversed range, so the first NaN from the end wins."""
    best = hi - 1
    bv = vals[best]
    if bv != bv:
        return best
    for r in range(hi - 2, lo - 1, -1):
        v = vals[r]
        if v != v:
            return r
        if v < bv:
            bv = v
            best = r
    return best


@_jit
def _exact_row(D, r, rmin, rarg, stale):  # pragma: no cover
    c = _last_min(D[r], 0, r)
    rmin[r] = D[r, c]
    rarg[r] = c
    stale[r] = False


@_jit
def _new_column(D, col, lg, rmin, rarg, stale):  # pragma: no cover
    """Rows ``col + 1 .. lg - 1`` got a new value in column ``col`` (see
    :func:`gmmkit.core.hc._agglomerate_run`)."""
    for r in range(col + 1, lg):
        v = D[col, r]
        cur = rmin[r]
        # a row whose minimum sat in this column and went up keeps a lower bound
        if rarg[r] == col and v > cur:
            stale[r] = True
        # the new value lowers the minimum, or equals it from a later column
        if v <= cur and (v < cur or (col > rarg[r] and not stale[r])):
            rmin[r] = v
            rarg[r] = col
            stale[r] = False


@_jit
def _initial_row(kind, XT, i, alpha, beta, ablog, row):  # pragma: no cover
    """The costs of merging singleton ``i`` with each ``j < i`` into ``row[:i]``
    (``XT`` (p, n): the rows as columns; the squares summed over the coordinates in
    order, vectorised over ``j``)."""
    p = XT.shape[0]
    ui = uint64(i)
    for c in range(p):
        Xc = XT[c]
        if kind == VVV:
            xi = Xc[i]
            if c == 0:
                for j in range(uint64(0), ui):
                    d = (xi - Xc[j]) * _RTHALF
                    row[j] = d * d
            else:
                for j in range(uint64(0), ui):
                    d = (xi - Xc[j]) * _RTHALF
                    row[j] = row[j] + d * d
        else:  # Ward and V: differences of sqrt(1/2) x
            xi = _RTHALF * Xc[i]
            if c == 0:
                for j in range(uint64(0), ui):
                    d = xi - _RTHALF * Xc[j]
                    row[j] = (0.0 + d * d) if kind == VAR_V else d * d
            else:
                for j in range(uint64(0), ui):
                    d = xi - _RTHALF * Xc[j]
                    row[j] = row[j] + d * d
    if kind == VVV:
        for j in range(i):
            row[j] = 2.0 * math.log(beta * (row[j] + alpha) / 2.0) - (ablog + ablog)
    elif kind == VAR_V:
        for j in range(i):
            row[j] = 2.0 * math.log((row[j] + alpha) / 2.0) - (ablog + ablog)


@_jit
def _factor(A, p, row):  # pragma: no cover
    """Upper Cholesky factor ``R`` (``R'R = A``) of ``A``'s upper triangle, in place;
    False at a non-positive pivot.  Right-looking, so that the updates run along
    contiguous rows against a copy of the pivot row in ``row`` (p,), with unsigned
    indices (no wraparound checks): LLVM vectorises them."""
    up = uint64(p)
    for j in range(p):
        s = A[j, j]
        if not s > 0.0:
            return False
        d = math.sqrt(s)
        A[j, j] = d
        for c in range(j + 1, p):
            t = A[j, c] / d
            A[j, c] = t
            row[c] = t
        for r in range(j + 1, p):
            f = row[r]
            Ar = A[r]
            for c in range(uint64(r), up):
                Ar[c] = Ar[c] - f * row[c]
    return True


@_jit
def _diag_product(R, p):  # pragma: no cover
    prod = R[0, 0]
    for j in range(1, p):
        prod = prod * R[j, j]
    return prod


@_jit
def _eliminate(M, p, pivots):  # pragma: no cover
    """Symmetric Gaussian elimination on ``M``'s upper triangle, in place: its pivots
    (the squared Cholesky pivots, without their square roots) into ``pivots`` (p,);
    False at a non-positive pivot."""
    up = uint64(p)
    for j in range(p):
        d = M[j, j]
        if not d > 0.0:
            return False
        pivots[j] = d
        inv = 1.0 / d
        Mj = M[j]
        for r in range(j + 1, p):
            f = Mj[r] * inv
            Mr = M[r]
            for c in range(uint64(r), up):
                Mr[c] = Mr[c] - f * Mj[c]
    return True


@_jit
def _det(M, p, pivots):  # pragma: no cover
    """``det(M)`` of a positive semi-definite ``M`` from its upper triangle, which it
    overwrites (zero at a non-positive pivot)."""
    if not _eliminate(M, p, pivots):
        return 0.0
    det = 1.0
    for j in range(p):
        det = det * pivots[j]
    return det


@_jit
def _log_det(M, p, pivots):  # pragma: no cover
    """``log det(M)`` (``-inf`` if singular), as :func:`_det`."""
    if not _eliminate(M, p, pivots):
        return -np.inf
    acc = 0.0
    for j in range(p):
        acc = acc + math.log(pivots[j])
    return acc


@_jit
def _stack(M, j, r1, cnt, G, mem, v, storage):  # pragma: no cover
    """The upper triangle of ``M = (G_j + mem) + v v'``, with the Gram matrix ``G_j`` of
    slot ``j``'s stored factor: mclust's storage keeps the first row ``r`` of the
    factor, so ``G_j = (r r') * (min(a, b, q - 1) + 1)`` with ``q = min(n_j - 1, p)``
    -- computed here as it was when stored, so without ``G``."""
    p = v.shape[0]
    up = uint64(p)
    q = min(int(cnt[j]) - 1, p)
    rj = r1[j]
    for a in range(p):
        va = v[a]
        Ma = M[a]
        ma = mem[a]
        if storage:
            ra = rj[a]
            mult = min(a, q - 1) + 1.0  # min(a, b, q - 1) + 1 on and above the diagonal
            for b in range(uint64(a), up):
                Ma[b] = ((ra * rj[b]) * mult + ma[b]) + va * v[b]
        else:
            Ga = G[j, a]
            for b in range(uint64(a), up):
                Ma[b] = (Ga[b] + ma[b]) + va * v[b]


@_jit
def _log_add(x, y):  # pragma: no cover
    """``log(exp(x) + exp(y))``."""
    hi = max(x, y)
    if hi == -np.inf:
        return hi
    return hi + math.log1p(math.exp(-abs(x - y)))


@_jit
def _merge_weights(na, nb):  # pragma: no cover
    """``r = n_a + n_b``, ``sqrt(n_a / r)`` and ``sqrt(n_b / r)`` (the weights of the two
    clusters' ``sqrt(n) * mean`` in the merged one's), as hcvvv and hc1v compute them."""
    rij = na + nb
    qij = 1.0 / rij
    return rij, math.sqrt(na * qij), math.sqrt(nb * qij)


@_jit
def _gram(j, a, b, r1, cnt, G, storage):  # pragma: no cover
    """Entry ``(a, b)`` of the Gram matrix of slot ``j``'s stored factor (see
    :func:`_stack`)."""
    if not storage:
        return G[j, a, b]
    q = min(int(cnt[j]) - 1, r1.shape[1])
    return (r1[j, a] * r1[j, b]) * (min(min(a, b), q - 1) + 1.0)


@_jit
def _vvv_merge(a, b, lg, D, XT, tr, term, cnt, icnt, G, r1, mem, st, cache, pw, alpha,
               beta, storage, out, M, R, w, V, B, S, nrm, T, Mp, work):  # pragma: no cover
    """:meth:`gmmkit.core.hc._VVV.merge`: merge slot ``b`` into ``a``, move the last slot
    into ``b``, and write the new cluster's costs against slots ``0 .. lg - 2`` to
    ``out`` (entry ``a`` is left as it is).  ``st`` is ``[iold]``; ``cache`` (4, n) the
    traces, terms, ``si`` and ``sj`` of the last merge's loop over iold's pairs; ``G``
    the slots' Gram matrices where not ``storage`` (mclust's, computed from ``r1``);
    ``V`` and ``B`` (p, n), ``S``, ``T`` and ``nrm`` (n,), ``Mp`` and ``work`` work space
    (see :func:`_stacked_dets`; ``Mp`` empty where candidates go one at a time)."""
    p = XT.shape[0]
    last = lg - 1
    iold = st[0]
    na = cnt[a]
    nb = cnt[b]
    rij, si, sj = _merge_weights(na, nb)
    v = w[0]
    first = w[1]
    if iold == a or iold == b:
        k = b if iold == a else a
        trc = cache[0, k]
        trm = cache[1, k]
        for c in range(p):
            v[c] = cache[2, k] * XT[c, k] - cache[3, k] * XT[c, iold]
        for r in range(p):
            for c in range(p):
                M[r, c] = mem[r, c] + _gram(k, r, c, r1, cnt, G, storage)
        first[:] = r1[iold]
    else:
        if na == 1.0 and nb == 1.0:
            ss = 0.0
            for c in range(p):
                v[c] = (XT[c, a] - XT[c, b]) * _RTHALF
                ss = v[c] * v[c] if c == 0 else ss + v[c] * v[c]
            trc = ss
            if iold < 0:  # first merge: values of the initial loop
                trm = 2.0 * math.log(beta * (trc + alpha) / 2.0)
            else:  # a pair chosen off iold's row: tmop = dopt + (termi + termj)
                trm = D[a, b] + (term[a] + term[b])
        else:
            ss = 0.0
            for c in range(p):
                v[c] = sj * XT[c, a] - si * XT[c, b]
                ss = v[c] * v[c] if c == 0 else ss + v[c] * v[c]
            trc = (tr[a] + tr[b]) + ss
            trm = D[a, b] + (term[a] + term[b])
        for r in range(p):
            for c in range(p):
                M[r, c] = _gram(a, r, c, r1, cnt, G, storage) + _gram(b, r, c, r1, cnt, G,
                                                                        storage)
        if nb > 1.0:
            first[:] = r1[b]
        elif na > 1.0:
            first[:] = r1[a]
        else:
            first[:] = v
    for r in range(p):
        for c in range(p):
            M[r, c] = M[r, c] + v[r] * v[c]
    m00 = M[0, 0]
    if m00 > 0.0:
        s = math.sqrt(m00)
        for c in range(p):
            r1[a, c] = M[0, c] / s
    else:
        r1[a] = first
    mem[:, :] = M
    if not storage:
        G[a] = M
    for c in range(p):
        XT[c, a] = si * XT[c, a] + sj * XT[c, b]
    tr[a] = trc
    term[a] = trm
    cnt[a] = rij
    icnt[a] += icnt[b]
    if b != last:
        for c in range(p):
            XT[c, b] = XT[c, last]
        tr[b] = tr[last]
        term[b] = term[last]
        cnt[b] = cnt[last]
        icnt[b] = icnt[last]
        r1[b] = r1[last]
        if not storage:
            G[b] = G[last]
    st[0] = a

    # the new cluster (slot a) against slots 0..m-1: hcvvv's loops on iold
    m = lg - 1
    ri = rij
    tra = tr[a]
    y = w[2]
    # singletons (where l > p): det(mem + v v') = det(mem) (1 + |R'^-1 v|^2) with
    # mem = R'R, their v gathered in the columns of B and solved together below
    batch = False
    dmem = 0.0
    if ri + 1.0 > p:
        R[:, :] = mem
        if _factor(R, p, y):
            batch = True
            dm = _diag_product(R, p)
            dmem = dm * dm
    # v = si x_j - sj x_a for every j at once (V's columns), their squared norms
    # summed over the coordinates in order: vectorised over j
    um = uint64(m)
    sij = cache[2]
    sjj = cache[3]
    ss = nrm
    for j in range(uint64(0), um):
        r = ri + cnt[j]
        qj = 1.0 / r
        sij[j] = math.sqrt(ri * qj)
        sjj[j] = math.sqrt(cnt[j] * qj)
    for c in range(p):
        xa = XT[c, a]
        Xc = XT[c]
        Vc = V[c]
        if c == 0:
            for j in range(uint64(0), um):
                vc = Xc[j] * sij[j] - xa * sjj[j]
                Vc[j] = vc
                ss[j] = vc * vc
        else:
            for j in range(uint64(0), um):
                vc = Xc[j] * sij[j] - xa * sjj[j]
                Vc[j] = vc
                ss[j] = ss[j] + vc * vc
    for j in range(uint64(0), um):
        cache[0, j] = (tra + tr[j]) + ss[j]
    ns = 0
    nt = 0
    soa = storage and Mp.shape[0] > 0
    for j in range(m):
        if j == a:
            continue
        r = ri + cnt[j]
        base = beta * (cache[0, j] + alpha) / r
        if r > p:  # the determinant enters where l > p
            if batch and cnt[j] == 1.0:
                S[ns] = j
                ns += 1
                continue
            if soa:
                T[nt] = j
                nt += 1
                continue
            for c in range(p):
                v[c] = V[c, j]
            _stack(M, j, r1, cnt, G, mem, v, storage)
            det = _det(M, p, y)
            tm = _vvv_term(det, r, base, icnt[a] + icnt[j], pw, j, M, r1, cnt, G, mem, v,
                           storage, y)
        else:
            tm = r * math.log(base)  # vvvtij for l <= p
        cache[1, j] = tm
        out[j] = tm - (term[a] + term[j])
    if nt:
        # the other candidates' determinants, vectorised across them
        dets = _stacked_dets(T, nt, r1, cnt, mem, V, Mp, work)
        _record_terms(T, nt, dets, a, ri, cnt, icnt, cache, term, alpha, beta, pw, V, v, M,
                      r1, G, mem, storage, y, out)
    if ns == 0:
        return
    # R' Y = B, the columns at once: along the rows of R and of B (contiguous)
    uns = uint64(ns)
    for c in range(p):
        Vc = V[c]
        Bc = B[c]
        for s in range(ns):
            Bc[s] = Vc[S[s]]
    for k in range(p):
        Bk = B[k]
        rkk = R[k, k]
        for s in range(uint64(0), uns):
            yk = Bk[s] / rkk
            Bk[s] = yk
            nrm[s] = yk * yk if k == 0 else nrm[s] + yk * yk
        Rk = R[k]
        for c in range(k + 1, p):
            f = Rk[c]
            Bc = B[c]
            for s in range(uint64(0), uns):
                Bc[s] = Bc[s] - f * Bk[s]
    for s in range(ns):
        nrm[s] = dmem * (1.0 + nrm[s])
    _record_terms(S, ns, nrm, a, ri, cnt, icnt, cache, term, alpha, beta, pw, V, v, M, r1,
                  G, mem, storage, y, out)


@_jit
def _record_terms(J, count, dets, a, ri, cnt, icnt, cache, term, alpha, beta, pw, V, v, M,
                  r1, G, mem, storage, y, out):  # pragma: no cover
    """The terms and costs of the new cluster in slot ``a`` with the candidates
    ``j = J[t]``, ``t < count``, whose determinants are ``dets[t]``."""
    p = V.shape[0]
    for t in range(count):
        j = J[t]
        r = ri + cnt[j]
        base = beta * (cache[0, j] + alpha) / r
        for c in range(p):  # (for the logarithms' path)
            v[c] = V[c, j]
        tm = _vvv_term(dets[t], r, base, icnt[a] + icnt[j], pw, j, M, r1, cnt, G, mem, v,
                       storage, y)
        cache[1, j] = tm
        out[j] = tm - (term[a] + term[j])


@_jit
def _stacked_dets(T, nt, r1, cnt, mem, V, Mp, work):  # pragma: no cover
    """``det((G_j + mem) + v_j v_j')`` of the candidates ``j = T[t]``, ``t < nt``, by
    :func:`_stack`'s and :func:`_det`'s operations, each one lane of loops over ``t``:
    ``Mp`` holds the packed upper triangles (row ``a``, column ``b >= a``) as rows over
    the candidates, ``work`` their gathered factor rows and ``v`` (rows ``0 .. 2p-1``),
    ``q - 1``, determinants, pivots' inverses and multipliers; returns the determinants
    (zero where a pivot is not positive, as :func:`_det`)."""
    p = V.shape[0]
    unt = uint64(nt)
    Rg = work[:p]
    Vg = work[p:2 * p]
    qm = work[2 * p]
    det = work[2 * p + 1]
    inv = work[2 * p + 2]
    f = work[2 * p + 3]
    for t in range(nt):
        j = T[t]
        qm[t] = min(int(cnt[j]) - 1, p) - 1.0
        for a in range(p):
            Rg[a, t] = r1[j, a]
            Vg[a, t] = V[a, j]
    e = 0
    for a in range(p):
        Ra = Rg[a]
        Va = Vg[a]
        for b in range(a, p):
            Rb = Rg[b]
            Vb = Vg[b]
            mab = mem[a, b]
            Me = Mp[e]
            for t in range(uint64(0), unt):
                mult = min(float(a), qm[t]) + 1.0
                Me[t] = ((Ra[t] * Rb[t]) * mult + mab) + Va[t] * Vb[t]
            e += 1
    for t in range(uint64(0), unt):
        det[t] = 1.0
    # elimination; a lane whose pivot is not positive goes on with 1 and ends at 0
    row = 0  # packed index of (k, k)
    for k in range(p):
        Mk = Mp[row]
        for t in range(uint64(0), unt):
            d = Mk[t]
            good = d > 0.0
            det[t] = det[t] * d if good and det[t] != 0.0 else 0.0
            inv[t] = 1.0 / d if good else 1.0
        rr = row + p - k  # packed index of (k + 1, k + 1)
        for r in range(k + 1, p):
            Mkr = Mp[row + r - k]
            for t in range(uint64(0), unt):
                f[t] = Mkr[t] * inv[t]
            for c in range(r, p):
                Mrc = Mp[rr + c - r]
                Mkc = Mp[row + c - k]
                for t in range(uint64(0), unt):
                    Mrc[t] = Mrc[t] - f[t] * Mkc[t]
            rr += p - r
        row += p - k
    return det


@_jit
def _vvv_term(det, r, base, lcount, pw, j, M, r1, cnt, G, mem, v, storage,
              y):  # pragma: no cover
    """``vvvtij`` for ``l = lcount > p`` rows: ``r log(det / l**p + base)``; where that
    overflows, from ``log det`` of ``(G_j + mem) + v v'`` (built in ``M``)."""
    p = v.shape[0]
    val = math.log(abs(det) / pw[lcount] + base)
    if not math.isfinite(val):  # det or l**p overflowed: work on logarithms
        _stack(M, j, r1, cnt, G, mem, v, storage)
        val = _log_add(_log_det(M, p, y) - p * math.log(float(lcount)), math.log(base))
    return r * val


@_jit
def _var_v_merge(a, b, lg, X, tr, term, cnt, alpha, out):  # pragma: no cover
    """:meth:`gmmkit.core.hc._VarV.merge` (``X`` (1, n) holds ``sqrt(n_k)`` times the
    means)."""
    x = X[0]
    last = lg - 1
    rij, si, sj = _merge_weights(cnt[a], cnt[b])
    temp = sj * x[a] - si * x[b]
    trc = (tr[a] + tr[b]) + temp * temp
    trm = rij * math.log((trc + alpha) / rij)
    x[a] = si * x[a] + sj * x[b]
    tr[a] = trc
    term[a] = trm
    cnt[a] = cnt[a] + cnt[b]
    if b != last:
        x[b] = x[last]
        tr[b] = tr[last]
        term[b] = term[last]
        cnt[b] = cnt[last]
    na = cnt[a]
    for j in range(lg - 1):
        r = na + cnt[j]
        q = 1.0 / r
        sa = math.sqrt(na * q)
        sb = math.sqrt(cnt[j] * q)
        temp = sb * x[a] - sa * x[j]
        t = (tr[a] + tr[j]) + temp * temp
        out[j] = r * math.log((t + alpha) / r) - (term[a] + term[j])


@_jit
def _ward_merge(a, b, lg, D, cnt, out):  # pragma: no cover
    """:meth:`gmmkit.core.hc._Ward.merge`: the Lance-Williams update."""
    last = lg - 1
    si = cnt[a]
    sj = cnt[b]
    sij = si + sj
    dold = D[a, b]
    for r in range(lg):
        rj = cnt[r]
        d = (rj + si) * D[a, r] + (rj + sj) * D[b, r]
        out[r] = (d - rj * dold) / (rj + sij)
    cnt[a] = sij
    if b != last:
        cnt[b] = cnt[last]
        out[b] = out[last]


@_jit
def agglomerate(kind, X, kmin, alpha, beta, storage, pw, block, merges,
                heights):  # pragma: no cover
    """Agglomerate the ``n`` columns of ``X`` (p, n) down to ``kmin`` clusters.

    ``X`` holds the (transformed) rows as its columns and is overwritten (VVV and "V"
    keep ``sqrt(n_k)`` times each cluster's mean there).  ``alpha``/``beta`` are the criterion's
    regularisation (unused by Ward), ``pw[l] = l**p`` (VVV), ``block`` the rows per block
    of the initial costs (their order decides ties among infinite costs, as on the numpy
    path).  Writes merge ``t``'s slots ``(i, j)`` (``i < j``: ``j`` merged into ``i``,
    the last slot moved into ``j``) to ``merges[t]`` and its cost to ``heights[t]``;
    returns the number of merges.
    """
    p, n = X.shape
    ablog = math.log(beta * alpha) if kind == VVV else math.log(alpha)
    D = np.empty((n, n))
    rmin = np.full(n, np.inf)
    rarg = np.zeros(n, dtype=np.intp)
    stale = np.zeros(n, dtype=np.bool_)
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        for i in range(r0, r1):
            D[i, i] = np.inf
            _initial_row(kind, X, i, alpha, beta, ablog, D[i])
            for j in range(i):
                D[j, i] = D[i, j]
            # the numpy path's last minimum over the block's columns [0, r1) with
            # those from i on masked by +inf
            if i == 0:
                rarg[i] = r1 - 1
            else:
                c = _last_min(D[i], 0, i)
                rmin[i] = D[i, c]
                rarg[i] = r1 - 1 if rmin[i] == np.inf else c

    is_vvv = kind == VVV
    nv = n if is_vvv else 0
    pv = p if is_vvv else 1
    tr = np.zeros(n)
    term = np.full(n, ablog)
    cnt = np.ones(n)
    icnt = np.ones(n, dtype=np.intp)
    G = np.zeros((0 if storage else nv, pv, pv))
    r1s = np.zeros((nv, pv))
    mem = np.zeros((pv, pv))
    cache = np.zeros((4, nv))
    st = np.full(1, -1, dtype=np.intp)
    M = np.empty((pv, pv))
    R = np.zeros((pv, pv))
    w = np.zeros((3, pv))
    V = np.empty((pv, nv))
    B = np.empty((pv, nv))
    T = np.empty(nv, dtype=np.intp)
    # stacked determinants at few dimensions (above, one candidate's rows vectorise)
    stacked = storage and pv <= STACKED_DIMENSIONS
    Mp = np.empty(((pv * (pv + 1)) // 2 if stacked else 0, nv if stacked else 0))
    work = np.empty((2 * pv + 4, nv if stacked else 0))
    S = np.empty(nv, dtype=np.intp)
    nrm = np.empty(nv)
    out = np.empty(n)

    t = 0
    lg = n
    while lg > kmin:
        while True:
            j = _last_min(rmin, 1, lg)
            if not stale[j]:
                break
            _exact_row(D, j, rmin, rarg, stale)
        i = rarg[j]
        last = lg - 1
        merges[t, 0] = i
        merges[t, 1] = j
        heights[t] = D[i, j]
        t += 1
        if is_vvv:
            _vvv_merge(i, j, lg, D, X, tr, term, cnt, icnt, G, r1s, mem, st, cache, pw,
                       alpha, beta, storage, out, M, R, w, V, B, S, nrm, T, Mp, work)
        elif kind == VAR_V:
            _var_v_merge(i, j, lg, X, tr, term, cnt, alpha, out)
        else:
            _ward_merge(i, j, lg, D, cnt, out)
        if j != last:
            for c in range(lg):
                D[j, c] = D[last, c]
            for c in range(lg):
                D[c, j] = D[last, c]
            rmin[j] = rmin[last]
            rarg[j] = rarg[last]
            stale[j] = stale[last]
        lg -= 1
        out[i] = np.inf
        for c in range(lg):
            D[i, c] = out[c]
            D[c, i] = out[c]
        D[j, j] = np.inf
        if lg <= 1:
            break
        if i >= 1:
            _exact_row(D, i, rmin, rarg, stale)
        if j < lg:
            _exact_row(D, j, rmin, rarg, stale)
        _new_column(D, i, lg, rmin, rarg, stale)
        if j < lg:
            _new_column(D, j, lg, rmin, rarg, stale)
    return t
