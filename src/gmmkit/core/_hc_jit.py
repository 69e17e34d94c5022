"""Compiled (numba) kernels of the VVV agglomeration (:mod:`gmmkit.core.hc`).

Imported only through :func:`gmmkit._jit.hc_kernels` (numba is an optional dependency).
Each kernel does, in one pass and without temporaries, what a chain of numpy calls of
:class:`gmmkit.core.hc._VVV` does over a few ``(p, m)`` or ``(k, p, p)`` arrays -- and
does it with *the same floating-point operations in the same order*, so that the pair
costs, and hence the merges (which reproduce R mclust's, ties included), are bitwise
those of the numpy path: every product, difference and square is rounded on its own
(no ``fastmath``: no fused multiply-adds, no reassociation -- the sums of squares run
over the coordinates in order, as the reference ``ddot`` and the numpy path's
``add.reduce`` over rows).  Logarithms, factorisations and the products with BLAS stay
in numpy (LAPACK's and numpy's own results are what the numpy path rounds to).

Compiled with ``cache=True`` (to ``__pycache__`` beside this file, or numba's user
cache directory) and ``nogil=True``.
"""

from __future__ import annotations

import math

from numba import njit

#: ``sqrt(0.5)`` as :data:`gmmkit.core.hc._RTHALF` (mclust's ``rthalf``).
_RTHALF = 0.7071067811865476

_jit = njit(cache=True, nogil=True)


@_jit
def pair_costs(xT, tr, cnt, a, m, alpha, beta, V, rij, si, sj, trc, base):  # pragma: no cover
    """The new cluster in slot ``a`` against slots ``0 .. m-1`` (hcvvv's loop on iold).

    Fills, for ``j < m``: ``rij = n_a + n_j``, ``si = sqrt(n_a / rij)``,
    ``sj = sqrt(n_j / rij)``, the column ``V[:, j] = si x_j - sj x_a`` (``xT``'s columns
    are ``sqrt(n) * mean``), ``trc = (tr_a + tr_j) + |V[:, j]|^2`` (the squares summed
    over the coordinates in order) and ``base = beta (trc + alpha) / rij``.
    """
    p = xT.shape[0]
    ri = cnt[a]
    for j in range(m):
        r = ri + cnt[j]
        q = 1.0 / r
        rij[j] = r
        si[j] = math.sqrt(ri * q)
        sj[j] = math.sqrt(cnt[j] * q)
    # coordinates outer, candidates inner (contiguous): the sums of squares accumulate
    # in trc, one coordinate after the other
    for c in range(p):
        xa = xT[c, a]
        for j in range(m):
            v = xT[c, j] * si[j] - xa * sj[j]
            V[c, j] = v
            if c == 0:
                trc[j] = v * v
            else:
                trc[j] = trc[j] + v * v
    tra = tr[a]
    for j in range(m):
        t = (tra + tr[j]) + trc[j]
        trc[j] = t
        base[j] = beta * (t + alpha) / rij[j]


@_jit
def stack(G, ids, mem, V, out):  # pragma: no cover
    """``out[k] = (G[ids[k]] + mem) + v v'`` with ``v = V[:, ids[k]]``."""
    p = mem.shape[0]
    for k in range(ids.shape[0]):
        g = ids[k]
        for r in range(p):
            vr = V[r, g]
            for c in range(p):
                out[k, r, c] = (G[g, r, c] + mem[r, c]) + vr * V[c, g]


@_jit
def initial_block(xT, r0, r1, out):  # pragma: no cover
    """``out[i - r0, j] = sum_c ((x_ci - x_cj) rthalf)^2`` for ``r0 <= i < r1``, ``j < r1``
    (the squares summed over the coordinates in order)."""
    p = xT.shape[0]
    for c in range(p):
        for i in range(r0, r1):
            xi = xT[c, i]
            row = out[i - r0]
            for j in range(r1):
                d = (xi - xT[c, j]) * _RTHALF
                if c == 0:
                    row[j] = d * d
                else:
                    row[j] = row[j] + d * d
