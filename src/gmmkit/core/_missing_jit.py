"""Compiled (numba) kernels of the incomplete-data E-step, full and tied covariances.

Imported only through :func:`gmmkit._jit.kernels` (numba is an optional dependency).
The mathematics is that of :mod:`gmmkit.core.missing` (see its docstring), evaluated
row by row over a block sorted by missingness pattern: each pattern's ``P_mm`` is
factorised and inverted once (per component for full covariances) when the pattern
changes from the previous row, and every per-row quantity lives in a few vectors of
length ``D``, so no (K, D, n) array and no per-pattern-group Python step.  Each E-step
is two passes, as the numpy path: :func:`full_log_joint` / :func:`tied_log_joint` give
the log-joint of the observed coordinates (K, n) and write what the statistics need
(each pattern's ``P_mm^-1``, each row's conditional means or shifts) to a flat
``store``, the caller normalises the log-joint (labels, sample weights), and
:func:`full_moments` / :func:`tied_moments` sum the conditional statistics with the
responsibilities, reading ``store`` in the same order.  :func:`store_size` gives the
store's length.

The loops are written for the compiler: sums in local scalars (dot products, which
``reassoc`` vectorises) rather than in arrays updated in a chain, which would wait on
memory at every step.

Every kernel returns a status: 0, or :data:`NOT_POSITIVE` when a pivot of some ``P_mm``
is not positive and finite (the caller raises as the numpy path does).  Compiled with
``cache=True`` (to ``__pycache__`` beside this file, or numba's user cache directory)
and ``nogil=True`` (the engines run blocks in threads); ``reassoc`` and ``contract``
let the short reductions vectorise and use FMA, nothing assumes finite values.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: Status of a kernel that met a conditional precision that is not positive definite.
NOT_POSITIVE = 1

_LOG_2PI = math.log(2.0 * math.pi)

#: The tied log-joint expands ``|w + v_k|^2 = |w - a_k|^2 - c_k`` (see
#: :func:`tied_log_joint`); where ``|w - a_k|^2 + c_k`` exceeds this, the rounding of
#: the difference could pass ~1e-12 of the log-density and the sum of squares is taken
#: directly (the numpy path's ``_EXPANSION_LIMIT`` guard, per row and component).
_EXPANSION_LIMIT = 4096.0

_jit = njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})


@_jit
def _cholesky(precision, k, index, s, lower):
    """Lower Cholesky factor of ``precision[k][index, index]`` (s, s) into ``lower``, its
    diagonal stored inverted (the solves multiply); returns ``log det`` of the block
    (one logarithm of the pivots' product unless it under- or overflows), or NaN when a
    pivot is not positive and finite."""
    product = 1.0
    for a in range(s):
        row = index[a]
        for b in range(a + 1):
            value = precision[k, row, index[b]]
            for c in range(b):
                value -= lower[a, c] * lower[b, c]
            if a == b:
                if not (value > 0.0 and value < np.inf):
                    return np.nan
                product *= value
                lower[a, a] = 1.0 / math.sqrt(value)
            else:
                lower[a, b] = value * lower[b, b]
    if 1e-280 < product < 1e280:
        return math.log(product)
    total = 0.0
    for a in range(s):
        total -= 2.0 * math.log(lower[a, a])
    return total


@_jit
def _inverse(lower, s, work, out):
    """``(L L')^-1`` (s, s), symmetric, into ``out`` from the factor of
    :func:`_cholesky` (``work`` (s, s) gets ``L^-1``)."""
    for a in range(s):  # F = L^-1, lower, by forward substitution
        diagonal = lower[a, a]  # 1 / L_aa
        work[a, a] = diagonal
        for b in range(a):
            value = 0.0
            for c in range(b, a):
                value += lower[a, c] * work[c, b]
            work[a, b] = -value * diagonal
    for a in range(s):  # (F'F)_ab = sum_{c >= max(a, b)} F_ca F_cb
        for b in range(a, s):
            value = 0.0
            for c in range(b, s):
                value += work[c, a] * work[c, b]
            out[a, b] = value
            out[b, a] = value


@_jit
def _factorise_components(precision, index, s, lower, work, covariance, log_det):
    """:func:`_cholesky` and :func:`_inverse` of ``P_k,mm`` for every component at once,
    the component innermost (every step a vector operation over the components, where
    one matrix at a time is a chain of square roots and divisions): ``precision``
    (D, D, K), ``lower`` and ``work`` (D, D, K) work space, ``covariance`` (K, D, D) gets
    the inverses, ``log_det`` (K,) their log-determinants.  Returns False when a pivot
    is not positive and finite."""
    n_components = precision.shape[2]
    for k in range(n_components):
        log_det[k] = 1.0  # the pivots' product first
    for a in range(s):
        row = index[a]
        for b in range(a + 1):
            column = index[b]
            for k in range(n_components):
                lower[a, b, k] = precision[row, column, k]
            for c in range(b):
                for k in range(n_components):
                    lower[a, b, k] -= lower[a, c, k] * lower[b, c, k]
            if a == b:
                for k in range(n_components):
                    value = lower[a, a, k]
                    if not (value > 0.0 and value < np.inf):
                        return False
                for k in range(n_components):
                    log_det[k] *= lower[a, a, k]
                    lower[a, a, k] = 1.0 / math.sqrt(lower[a, a, k])
            else:
                for k in range(n_components):
                    lower[a, b, k] *= lower[b, b, k]
    for k in range(n_components):
        product = log_det[k]
        if 1e-280 < product < 1e280:
            log_det[k] = math.log(product)
        else:  # the product under- or overflows: a sum of logarithms
            total = 0.0
            for a in range(s):
                total -= 2.0 * math.log(lower[a, a, k])
            log_det[k] = total
    for a in range(s):  # F = L^-1, lower, by forward substitution
        for k in range(n_components):
            work[a, a, k] = lower[a, a, k]
        for b in range(a):
            for k in range(n_components):
                work[a, b, k] = 0.0
            for c in range(b, a):
                for k in range(n_components):
                    work[a, b, k] -= lower[a, c, k] * work[c, b, k]
            for k in range(n_components):
                work[a, b, k] *= lower[a, a, k]
    for a in range(s):  # (F'F)_ab = sum_{c >= max(a, b)} F_ca F_cb
        for b in range(a, s):
            for k in range(n_components):
                lower[a, b, k] = 0.0  # the upper triangle of ``lower`` is free
            for c in range(b, s):
                for k in range(n_components):
                    lower[a, b, k] += work[c, a, k] * work[c, b, k]
            for k in range(n_components):
                covariance[k, a, b] = lower[a, b, k]
                covariance[k, b, a] = lower[a, b, k]
    return True


@_jit
def _new_pattern(missing, i, index, observed):
    """Row ``i``'s missing coordinates into ``index`` and its observed mask as 1.0 / 0.0
    into ``observed`` (D,); returns their number ``s``."""
    s = 0
    for j in range(missing.shape[0]):
        if missing[j, i]:
            index[s] = j
            s += 1
            observed[j] = 0.0
        else:
            observed[j] = 1.0
    return s


@_jit
def _same_pattern(missing, i):
    """Whether row ``i`` has the missing coordinates of row ``i - 1``."""
    for j in range(missing.shape[0]):
        if missing[j, i] != missing[j, i - 1]:
            return False
    return True


@_jit
def store_size(missing, n_components, shared):
    """Length of the ``store`` of the two passes over rows with ``missing`` (D, n): per
    pattern (a run of rows with the same missing coordinates, ``s`` of them, ``0 < s <
    D``) ``P_mm^-1`` packed, ``s (s + 1) / 2`` values (one per component unless
    ``shared``) and for tied covariances (``shared``) the shifts ``t_k``, ``K s``; per
    such row ``K s`` conditional means for full covariances."""
    d, n = missing.shape
    total = 0
    s = 0
    for i in range(n):
        new = i == 0 or not _same_pattern(missing, i)
        if new:
            s = 0
            for j in range(d):
                if missing[j, i]:
                    s += 1
        if s == 0 or s == d:
            continue
        packed = s * (s + 1) // 2
        if shared:
            if new:
                total += packed + n_components * s
        else:
            if new:
                total += n_components * packed
            total += n_components * s
    return total


@_jit
def full_log_joint(X, missing, means, precision, factor, constant, log_weights, log_joint, store):
    """Full covariances: ``log_joint[k, i] = log pi_k + log N(x_o | mu_ko, Sigma_koo)``
    of the sorted rows ``X`` (n, D) with ``missing`` (D, n); ``constant`` is ``log pi_k
    + log det U_k - D log(2 pi) / 2``, ``precision`` ``U_k U_k'`` and ``factor`` ``U_k'``
    (K, D, D).  ``store`` gets each pattern's ``P_k,mm^-1`` and each row's ``xhat_km -
    mu_km = -P_mm^-1 (P_mo (x_o - mu_ko))`` (see :func:`store_size`); the observed
    distance is ``|U_k' (xhat_k - mu_k)|^2`` as in the numpy path."""
    n, d = X.shape
    n_components = means.shape[0]
    index = np.empty(d, dtype=np.int64)
    observed = np.empty(d)
    stacked = np.empty((d, d, n_components))  # the precisions, component last
    for k in range(n_components):
        for a in range(d):
            for b in range(d):
                stacked[a, b, k] = precision[k, a, b]
    lower = np.empty((d, d, n_components))
    work = np.empty((d, d, n_components))
    covariance = np.empty((n_components, d, d))
    log_det = np.zeros(n_components)
    r = np.empty(d)
    g = np.empty(d)
    s = 0
    position = 0
    for i in range(n):
        if i == 0 or not _same_pattern(missing, i):
            s = _new_pattern(missing, i, index, observed)
            if 0 < s < d:
                if not _factorise_components(
                    stacked, index, s, lower, work, covariance, log_det
                ):
                    return NOT_POSITIVE
                for k in range(n_components):
                    for a in range(s):
                        for b in range(a, s):
                            store[position] = covariance[k, a, b]
                            position += 1
            else:
                log_det[:] = 0.0
        if s == d:  # nothing observed: the marginal over nothing is 1
            for k in range(n_components):
                log_joint[k, i] = log_weights[k]
            continue
        base = 0.5 * s * _LOG_2PI
        for k in range(n_components):
            # (indexing the arrays, not views of them: a view costs a reference count)
            for j in range(d):
                r[j] = (X[i, j] - means[k, j]) * observed[j]
            for a in range(s):  # g = (P r)_m
                value = 0.0
                row = index[a]
                for j in range(d):
                    value += precision[k, row, j] * r[j]
                g[a] = value
            for a in range(s):  # r_m = -P_mm^-1 g
                value = 0.0
                for b in range(s):
                    value += covariance[k, a, b] * g[b]
                r[index[a]] = -value
                store[position] = -value
                position += 1
            quad = 0.0
            for j in range(d):  # |U' r|^2, a dot product per coordinate of U' r
                value = 0.0
                for a in range(j + 1):
                    value += factor[k, j, a] * r[a]
                quad += value * value
            log_joint[k, i] = constant[k] + base - 0.5 * log_det[k] - 0.5 * quad
    return 0


#: Rows per batch of :func:`full_moments`' second moments (one GEMM per component and
#: batch: 2.5x the rate of a rank-one update per row at D = 16).
_BATCH = 256


@_jit
def full_moments(X, missing, means, resp_w, store, first, second):
    """Full covariances: with the responsibilities ``resp_w`` (K, n) and the ``store``
    of :func:`full_log_joint`, the sums ``first[k] = sum r_k (xhat_k - mu_k)`` (K, D)
    and ``second[k] = sum r_k ((xhat_k - mu_k)(xhat_k - mu_k)' + E P_k,mm^-1 E')``
    (K, D, D), both zeroed here; the outer products as one GEMM per batch of
    :data:`_BATCH` rows of ``sqrt(r_k) (xhat_k - mu_k)``."""
    n, d = X.shape
    n_components = means.shape[0]
    index = np.empty(d, dtype=np.int64)
    observed = np.empty(d)
    weights = np.zeros(n_components)  # each component's responsibility over the pattern
    batch = np.empty((n_components, _BATCH, d))
    filled = 0
    first[...] = 0.0
    second[...] = 0.0
    s = 0
    position = 0
    pattern = 0  # where the pattern's covariances are in ``store``
    for i in range(n + 1):
        if filled == _BATCH or (i == n and filled):
            for k in range(n_components):
                rows = batch[k, :filled]
                second[k] += np.dot(rows.T, rows)
            filled = 0
        if i == n or i == 0 or not _same_pattern(missing, i):
            if i > 0 and 0 < s < d:  # the previous pattern's covariances, weighted
                at = pattern
                for k in range(n_components):
                    weight = weights[k]
                    for a in range(s):
                        for b in range(a, s):
                            value = weight * store[at]
                            at += 1
                            second[k, index[a], index[b]] += value
                            if b > a:
                                second[k, index[b], index[a]] += value
            weights[:] = 0.0
            if i == n:
                break
            s = _new_pattern(missing, i, index, observed)
            if 0 < s < d:
                pattern = position
                position += n_components * (s * (s + 1) // 2)
        if s == d:
            continue
        for k in range(n_components):
            weight = resp_w[k, i]
            weights[k] += weight
            root = math.sqrt(weight)
            for j in range(d):
                batch[k, filled, j] = (X[i, j] - means[k, j]) * observed[j]
            for a in range(s):
                batch[k, filled, index[a]] = store[position + a]
            position += s
            for j in range(d):
                value = batch[k, filled, j]
                first[k, j] += weight * value
                batch[k, filled, j] = root * value
        filled += 1
    return 0


@_jit
def tied_log_joint(
    X, missing, centre, precision, factor, white_means, pulled, constant, log_weights,
    log_joint, xbar, store,
):
    """Tied covariance: the log-joint (K, n) as :func:`full_log_joint`, and ``xbar``
    (n, D), each row's conditional mean minus ``centre`` when every component's mean is
    ``centre`` (``factor`` is ``U'``).  With ``w = U' xbar``, ``a_k = U' (mu_k -
    centre)`` (``white_means``, (D, K)), ``b_k = P (mu_k - centre)`` (``pulled``, (D, K))
    and ``t_k = P_mm^-1 b_km`` per pattern, the observed distance is ``|w - a_k + U' E t_k|^2 = |w -
    a_k|^2 - b_km . t_k``: the difference where it is exact enough
    (:data:`_EXPANSION_LIMIT`), else the sum of squares.  ``store`` gets each pattern's
    ``P_mm^-1`` and shifts (see :func:`store_size`)."""
    n, d = X.shape
    n_components = white_means.shape[1]
    index = np.empty(d, dtype=np.int64)
    observed = np.empty(d)
    lower = np.empty((d, d))
    work = np.empty((d, d))
    inverse = np.empty((d, d))
    shifts = np.empty((d, n_components))  # t_k of the pattern, (s, K)
    explained = np.zeros(n_components)  # c_k = b_km . t_k
    quads = np.empty(n_components)
    g = np.empty(d)
    row = np.empty(d)
    w = np.empty(d)
    v = np.empty(d)
    log_det = 0.0
    s = 0
    position = 0
    for i in range(n):
        if i == 0 or not _same_pattern(missing, i):
            s = _new_pattern(missing, i, index, observed)
            log_det = 0.0
            explained[:] = 0.0
            if 0 < s < d:
                log_det = _cholesky(precision[None], 0, index, s, lower)
                if math.isnan(log_det):
                    return NOT_POSITIVE
                _inverse(lower, s, work, inverse)
                for a in range(s):
                    for b in range(a, s):
                        store[position] = inverse[a, b]
                        position += 1
                # t_k = P_mm^-1 b_km and c_k, the component innermost (vector steps)
                for a in range(s):
                    for k in range(n_components):
                        shifts[a, k] = 0.0
                    for b in range(s):
                        coefficient = inverse[a, b]
                        line = index[b]
                        for k in range(n_components):
                            shifts[a, k] += coefficient * pulled[line, k]
                for a in range(s):
                    line = index[a]
                    for k in range(n_components):
                        explained[k] += pulled[line, k] * shifts[a, k]
                for a in range(s):  # (s, K): coordinate first, for the second pass
                    for k in range(n_components):
                        store[position] = shifts[a, k]
                        position += 1
        if s == d:
            for j in range(d):
                xbar[i, j] = 0.0
            for k in range(n_components):
                log_joint[k, i] = log_weights[k]
            continue
        for j in range(d):
            row[j] = (X[i, j] - centre[j]) * observed[j]
        for a in range(s):  # g = (P xc)_m
            value = 0.0
            line = index[a]
            for j in range(d):
                value += precision[line, j] * row[j]
            g[a] = value
        for a in range(s):
            value = 0.0
            for b in range(s):
                value += inverse[a, b] * g[b]
            row[index[a]] = -value
        for j in range(d):  # w = U' xbar
            xbar[i, j] = row[j]
            value = 0.0
            for a in range(j + 1):
                value += factor[j, a] * row[a]
            w[j] = value
        base = 0.5 * s * _LOG_2PI - 0.5 * log_det
        for k in range(n_components):
            quads[k] = 0.0
        for j in range(d):  # |w - a_k|^2, the component innermost
            value = w[j]
            for k in range(n_components):
                difference = value - white_means[j, k]
                quads[k] += difference * difference
        for k in range(n_components):
            quad = quads[k]
            if quad + explained[k] > _EXPANSION_LIMIT:
                # |w - a_k + U' E t_k|^2 summed directly
                for j in range(d):
                    v[j] = w[j] - white_means[j, k]
                for b in range(s):
                    column = index[b]
                    for j in range(column, d):
                        v[j] += factor[j, column] * shifts[b, k]
                quad = 0.0
                for j in range(d):
                    quad += v[j] * v[j]
            else:
                quad -= explained[k]
            log_joint[k, i] = constant[k] + base - 0.5 * quad
    return 0


@_jit
def tied_moments(missing, xbar, resp_w, row_weight, store, first, pooled):
    """Tied covariance: the parts of the statistics around the centre that involve the
    patterns' shifts ``t_k`` (``xhat_k - centre = xbar + E t_k``), from the ``store`` of
    :func:`tied_log_joint`, both zeroed here: ``first[k] = sum_rows r_k E t_k`` (K, D)
    and ``pooled = sum_rows (xbar u' E' + E u xbar' + E (sum_k r_k t_k t_k' + w
    P_mm^-1) E')`` (D, D) with ``u = sum_k r_k t_k`` and ``w`` the row's weight; the
    caller adds ``sum r_k xbar`` and ``sum w xbar xbar'`` (GEMMs)."""
    n, d = xbar.shape
    n_components = resp_w.shape[0]
    index = np.empty(d, dtype=np.int64)
    observed = np.empty(d)
    weights = np.zeros(n_components)  # each component's responsibility over the pattern
    resp = np.empty(n_components)
    cross = np.zeros((d, d))  # rows: the missing coordinate of u
    first[...] = 0.0
    pooled[...] = 0.0
    total = 0.0  # the rows' weight over the pattern
    s = 0
    position = 0
    pattern = 0  # the pattern's P_mm^-1 in ``store``, then its shifts (s, K)
    shifts = 0
    for i in range(n + 1):
        if i == n or i == 0 or not _same_pattern(missing, i):
            if i > 0 and 0 < s < d:
                at = pattern
                for a in range(s):
                    for b in range(a, s):
                        value = total * store[at]
                        at += 1
                        left = shifts + a * n_components
                        right = shifts + b * n_components
                        for k in range(n_components):
                            value += weights[k] * store[left + k] * store[right + k]
                        pooled[index[a], index[b]] += value
                        if b > a:
                            pooled[index[b], index[a]] += value
                for a in range(s):
                    left = shifts + a * n_components
                    for k in range(n_components):
                        first[k, index[a]] += weights[k] * store[left + k]
            weights[:] = 0.0
            total = 0.0
            if i == n:
                break
            s = _new_pattern(missing, i, index, observed)
            if 0 < s < d:
                pattern = position
                shifts = position + s * (s + 1) // 2
                position = shifts + n_components * s
        if s == d:
            continue
        total += row_weight[i]
        for k in range(n_components):
            resp[k] = resp_w[k, i]
            weights[k] += resp[k]
        for a in range(s):
            left = shifts + a * n_components
            value = 0.0  # u_a = sum_k r_k t_ka
            for k in range(n_components):
                value += resp[k] * store[left + k]
            line = index[a]
            for j in range(d):
                cross[line, j] += value * xbar[i, j]
    for a in range(d):
        for b in range(d):
            pooled[a, b] += cross[a, b] + cross[b, a]
    return 0
