"""Compiled (numba) kernels of the incomplete-data E-step, full and tied covariances.

Imported only through :func:`gmmkit._jit.kernels` (numba is an optional dependency).
The mathematics is that of :mod:`gmmkit.core.missing` (see its docstring), evaluated
over a block sorted by missingness pattern (a pattern: a run of rows with the same
missing coordinates, ``s`` of them, ``0 < s < D``).  :func:`factorise` inverts every
pattern's ``P_mm`` (per component for full covariances), batches of patterns of the same
size at once with the batch innermost (one matrix at a time is a chain of square roots
and divisions); then the rows are evaluated one by one, every per-row quantity in a few
vectors of length ``D``: no (K, D, n) array and no per-pattern-group Python step.  As
in the numpy path, :func:`full_log_joint` / :func:`tied_log_joint` give the log-joint
of the observed coordinates (K, n) and keep each row's conditional means (full) or
each pattern's shifts (tied), the caller normalises the log-joint (labels, sample
weights), and :func:`full_moments` / :func:`tied_moments` sum the conditional
statistics with the responsibilities.  :func:`sizes` gives the lengths of the flat
arrays that pass what one step writes to the next, in the rows' order.

The loops are written for the compiler: sums in local scalars (dot products, which
``reassoc`` vectorises) rather than in arrays updated in a chain, which would wait on
memory at every step; arrays indexed, not sliced (a view costs a reference count); the
products with ``U`` and the second moments of many rows as GEMMs (``np.dot``, BLAS).
A flat index whose base is read from an array (``start[node] + b * K + k``) is made
unsigned (``np.uint64``, with the loop counters over the components): numba wraps a
negative signed index, a select at every access that the compiler cannot drop when
it cannot prove the base non-negative, and the loop over the components then does
not vectorise -- the Schur form's tree factorisation ran 2.3x slower, the conditional
covariances 2.2x, the tied per-pattern moments 4.3x.  (An unsigned and a signed
integer add to a float in numba: the counters are made unsigned too.)

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

#: The tied log-joint expands ``|w + v_k|^2 = |w|^2 - 2 w . a_k + |a_k|^2 - c_k`` (see
#: :func:`tied_log_joint`); where ``|w|^2 + |a_k|^2 + c_k`` exceeds half this, the
#: expansion's rounding could pass ~1e-12 of the log-density and the sum of squares is
#: taken directly (the numpy path's ``_EXPANSION_LIMIT`` guard, per row and component).
_EXPANSION_LIMIT = 4096.0

_jit = njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})


@_jit
def _same_pattern(missing, i):
    """Whether row ``i`` has the missing coordinates of row ``i - 1``."""
    for j in range(missing.shape[0]):
        if missing[j, i] != missing[j, i - 1]:
            return False
    return True


@_jit
def _missing_count(missing, i):
    """The number of row ``i``'s missing coordinates."""
    s = 0
    for j in range(missing.shape[0]):
        if missing[j, i]:
            s += 1
    return s


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
def sizes(missing):
    """Of the rows with ``missing`` (D, n): the number of patterns, their packed
    ``P_mm`` entries ``sum s (s + 1) / 2``, their missing coordinates ``sum s``, and the
    missing cells of the rows in patterns ``sum_rows s``."""
    d, n = missing.shape
    patterns = packed = coordinates = cells = 0
    s = 0
    for i in range(n):
        if i == 0 or not _same_pattern(missing, i):
            s = _missing_count(missing, i)
            if 0 < s < d:
                patterns += 1
                packed += s * (s + 1) // 2
                coordinates += s
        if 0 < s < d:
            cells += s
    return patterns, packed, coordinates, cells


#: Matrices per vectorised step of :func:`factorise`.
_FACTOR_BATCH = 256


@_jit
def factorise(missing, precision, inverses, log_det):
    """``P_k,mm^-1`` of every pattern of the rows with ``missing`` (D, n) and component
    of ``precision`` (K', D, D) into ``inverses`` (pattern by pattern, component by
    component, the upper triangle row by row), ``log det P_k,mm`` into ``log_det``
    (patterns, K').  Patterns of the same size go in batches of up to
    :data:`_FACTOR_BATCH` matrices, stored entry-major with the batch innermost, by a
    Cholesky factorisation (pivots checked, diagonal kept inverted) and ``F' F`` with
    ``F = L^-1``; the log-determinant is the logarithm of the pivots' product unless it
    under- or overflows."""
    d, n = missing.shape
    shared = precision.shape[0]
    first_rows = np.empty(n, dtype=np.int64)
    counts = np.empty(n, dtype=np.int64)
    total = 0
    for i in range(n):
        if i == 0 or not _same_pattern(missing, i):
            s = _missing_count(missing, i)
            if 0 < s < d:
                first_rows[total] = i
                counts[total] = s
                total += 1
    per_batch = max(1, _FACTOR_BATCH // shared)
    width_limit = per_batch * shared
    lower = np.empty((d * d, width_limit))
    work = np.empty((d * d, width_limit))
    pivots = np.empty(width_limit)
    index = np.empty((per_batch, d), dtype=np.int64)
    position = 0
    p = 0
    while p < total:
        s = counts[p]
        end = p
        while end < total and end - p < per_batch and counts[end] == s:
            end += 1
        m = end - p
        width = m * shared
        for q in range(m):
            row = first_rows[p + q]
            c = 0
            for j in range(d):
                if missing[j, row]:
                    index[q, c] = j
                    c += 1
        for a in range(s):  # gather the lower triangles
            for b in range(a + 1):
                for q in range(m):
                    ia = index[q, a]
                    ib = index[q, b]
                    for k in range(shared):
                        lower[a * s + b, q * shared + k] = precision[k, ia, ib]
        for col in range(width):
            pivots[col] = 1.0
        for a in range(s):  # Cholesky, the batch innermost
            for b in range(a + 1):
                ab = a * s + b
                for c in range(b):
                    ac = a * s + c
                    bc = b * s + c
                    for col in range(width):
                        lower[ab, col] -= lower[ac, col] * lower[bc, col]
                if a == b:
                    for col in range(width):
                        value = lower[ab, col]
                        if not (value > 0.0 and value < np.inf):
                            return NOT_POSITIVE
                    for col in range(width):
                        pivots[col] *= lower[ab, col]
                        lower[ab, col] = 1.0 / math.sqrt(lower[ab, col])
                else:
                    bb = b * s + b
                    for col in range(width):
                        lower[ab, col] *= lower[bb, col]
        for q in range(m):
            for k in range(shared):
                col = q * shared + k
                product = pivots[col]
                if 1e-280 < product < 1e280:
                    log_det[p + q, k] = math.log(product)
                else:
                    value = 0.0
                    for a in range(s):
                        value -= 2.0 * math.log(lower[a * s + a, col])
                    log_det[p + q, k] = value
        for a in range(s):  # F = L^-1 (lower), forward substitution
            aa = a * s + a
            for col in range(width):
                work[aa, col] = lower[aa, col]
            for b in range(a):
                ab = a * s + b
                for col in range(width):
                    work[ab, col] = 0.0
                for c in range(b, a):
                    ac = a * s + c
                    cb = c * s + b
                    for col in range(width):
                        work[ab, col] -= lower[ac, col] * work[cb, col]
                for col in range(width):
                    work[ab, col] *= lower[aa, col]
        for a in range(s):  # (F'F)_ab = sum_{c >= b} F_ca F_cb, a <= b, over ``lower``
            for b in range(a, s):
                ab = a * s + b
                for col in range(width):
                    lower[ab, col] = 0.0
                for c in range(b, s):
                    ca = c * s + a
                    cb = c * s + b
                    for col in range(width):
                        lower[ab, col] += work[ca, col] * work[cb, col]
        for col in range(width):
            for a in range(s):
                for b in range(a, s):
                    inverses[position] = lower[a * s + b, col]
                    position += 1
        p = end
    return 0


@_jit
def _unpack(inverses, position, s, out):
    """The symmetric (s, s) matrix whose upper triangle starts at ``inverses[position]``
    into ``out``; returns the position after it."""
    for a in range(s):
        for b in range(a, s):
            value = inverses[position]
            out[a, b] = value
            out[b, a] = value
            position += 1
    return position


#: Rows per batch of the products with ``U_k`` in :func:`full_log_joint` and
#: :func:`full_moments` (one GEMM per component and batch: 2.5x the rate of a rank-one
#: update per row at D = 16), from this many features on (one row at a time below: a
#: GEMM call costs more there).
_BATCH = 256
_BATCH_FEATURES = 8


@_jit
def full_log_joint(
    X, missing, means, precision, upper, factor, constant, log_weights, inverses, log_det,
    log_joint, steps,
):
    """Full covariances: ``log_joint[k, i] = log pi_k + log N(x_o | mu_ko, Sigma_koo)``
    of the sorted rows ``X`` (n, D) with ``missing`` (D, n); ``constant`` is ``log pi_k
    + log det U_k - D log(2 pi) / 2``, ``precision`` ``U_k U_k'``, ``upper`` ``U_k`` and
    ``factor`` ``U_k'`` (K, D, D), ``inverses`` and ``log_det`` from :func:`factorise`.
    ``steps`` gets each row's ``xhat_km - mu_km = -P_mm^-1 (P_mo (x_o - mu_ko))``,
    component by component; the observed distance is ``|U_k' (xhat_k - mu_k)|^2`` as in
    the numpy path, by one GEMM per component and batch of :data:`_BATCH` rows from
    :data:`_BATCH_FEATURES` features on."""
    n, d = X.shape
    n_components = means.shape[0]
    index = np.empty(d, dtype=np.int64)
    observed = np.empty(d)
    covariance = np.empty((n_components, d, d))
    g = np.empty(d)
    # the residuals of a batch of rows, for |U_k' r|^2 by one GEMM per component
    size = _BATCH if d >= _BATCH_FEATURES else 1
    batch = np.empty((n_components, size, d))
    rows = np.empty(size, dtype=np.int64)
    single = np.empty((1, d))
    filled = 0
    s = 0
    pattern = -1
    position = 0
    at = 0
    for i in range(n + 1):
        if filled == size or (i == n and filled):
            for k in range(n_components):
                residuals = batch[k, :filled]
                if size == 1:
                    white = single
                    for j in range(d):  # a dot product per coordinate of U' r
                        value = 0.0
                        for a in range(j + 1):
                            value += factor[k, j, a] * residuals[0, a]
                        white[0, j] = value
                else:
                    white = np.dot(residuals, upper[k])
                for q in range(filled):
                    quad = 0.0
                    for j in range(d):
                        quad += white[q, j] * white[q, j]
                    log_joint[k, rows[q]] -= 0.5 * quad
            filled = 0
        if i == n:
            break
        if i == 0 or not _same_pattern(missing, i):
            s = _new_pattern(missing, i, index, observed)
            if 0 < s < d:
                pattern += 1
                for k in range(n_components):
                    at = _unpack(inverses, at, s, covariance[k])
        if s == d:  # nothing observed: the marginal over nothing is 1
            for k in range(n_components):
                log_joint[k, i] = log_weights[k]
            continue
        base = 0.5 * s * _LOG_2PI
        rows[filled] = i
        for k in range(n_components):
            # (indexing the arrays, not views of them: a view costs a reference count)
            for j in range(d):
                batch[k, filled, j] = (X[i, j] - means[k, j]) * observed[j]
            for a in range(s):  # g = (P r)_m
                value = 0.0
                row = index[a]
                for j in range(d):
                    value += precision[k, row, j] * batch[k, filled, j]
                g[a] = value
            for a in range(s):  # r_m = -P_mm^-1 g
                value = 0.0
                for b in range(s):
                    value += covariance[k, a, b] * g[b]
                batch[k, filled, index[a]] = -value
                steps[position] = -value
                position += 1
            entropy = log_det[pattern, k] if s else 0.0
            log_joint[k, i] = constant[k] + base - 0.5 * entropy  # less |U' r|^2 / 2 later
        filled += 1
    return 0


@_jit
def full_moments(X, missing, means, resp_w, inverses, steps, first, second):
    """Full covariances: with the responsibilities ``resp_w`` (K, n), the ``inverses`` of
    :func:`factorise` and the ``steps`` of :func:`full_log_joint`, the sums ``first[k] =
    sum r_k (xhat_k - mu_k)`` (K, D) and ``second[k] = sum r_k ((xhat_k - mu_k)(xhat_k -
    mu_k)' + E P_k,mm^-1 E')`` (K, D, D), both zeroed here; both as products per batch
    of :data:`_BATCH` rows of ``sqrt(r_k) (xhat_k - mu_k)`` (a GEMM and a GEMV per
    component) from :data:`_BATCH_FEATURES` features on."""
    n, d = X.shape
    n_components = means.shape[0]
    index = np.empty(d, dtype=np.int64)
    observed = np.empty(d)
    weights = np.zeros(n_components)  # each component's responsibility over the pattern
    # a GEMM call costs more than the rank-one updates of a batch at small D
    size = _BATCH if d >= _BATCH_FEATURES else 1
    batch = np.empty((n_components, size, d))  # sqrt(r_k) (xhat_k - mu_k)
    roots = np.empty((n_components, size))  # sqrt(r_k)
    filled = 0
    first[...] = 0.0
    second[...] = 0.0
    s = 0
    position = 0
    at = 0
    for i in range(n + 1):
        if filled == size or (i == n and filled):
            if size == 1:
                for k in range(n_components):
                    root = roots[k, 0]
                    for a in range(d):
                        value = batch[k, 0, a]
                        first[k, a] += root * value
                        for b in range(d):
                            second[k, a, b] += value * batch[k, 0, b]
            else:
                for k in range(n_components):
                    rows = batch[k, :filled]
                    second[k] += np.dot(rows.T, rows)
                    first[k] += np.dot(roots[k, :filled], rows)
            filled = 0
        if i == n or i == 0 or not _same_pattern(missing, i):
            if i > 0 and 0 < s < d:  # the previous pattern's covariances, weighted
                for k in range(n_components):
                    weight = weights[k]
                    for a in range(s):
                        for b in range(a, s):
                            value = weight * inverses[at]
                            at += 1
                            second[k, index[a], index[b]] += value
                            if b > a:
                                second[k, index[b], index[a]] += value
            weights[:] = 0.0
            if i == n:
                break
            s = _new_pattern(missing, i, index, observed)
        if s == d:
            continue
        for k in range(n_components):
            weight = resp_w[k, i]
            weights[k] += weight
            root = math.sqrt(weight)
            roots[k, filled] = root
            for j in range(d):
                scale = root * observed[j]
                batch[k, filled, j] = (X[i, j] - means[k, j]) * scale
            for a in range(s):
                batch[k, filled, index[a]] = root * steps[position + a]
            position += s
        filled += 1
    return 0


@_jit
def tied_log_joint(
    X, missing, centre, precision, upper, white_means, pulled, constant, log_weights,
    inverses, log_det, log_joint, xbar, shifts,
):
    """Tied covariance: the log-joint (K, n) as :func:`full_log_joint`, and ``xbar``
    (n, D), each row's conditional mean minus ``centre`` when every component's mean is
    ``centre`` (``upper`` is ``U``; ``inverses`` and ``log_det`` from
    :func:`factorise`).  With ``w = U' xbar``, ``a_k = U' (mu_k - centre)``
    (``white_means``, (D, K)), ``b_k = P (mu_k - centre)`` (``pulled``, (D, K)) and
    ``t_k = P_mm^-1 b_km`` per pattern (into ``shifts``, (s, K) a pattern), the observed
    distance is ``|w - a_k + U' E t_k|^2 = |w|^2 - 2 w . a_k + |a_k|^2 - b_km . t_k``,
    ``w`` and ``w . a_k`` of all rows by two GEMMs after the rows' conditional means;
    where the terms are large enough for the expansion's rounding to pass ~1e-12 of the
    log-density (:data:`_EXPANSION_LIMIT`, as the numpy path) the sum of squares of
    ``w - a_k + U' E t_k`` is taken directly."""
    n, d = X.shape
    n_components = white_means.shape[1]
    width = np.uint64(n_components)
    index = np.empty(d, dtype=np.int64)
    observed = np.empty(d)
    inverse = np.empty((d, d))
    n_patterns = log_det.shape[0]
    # c_k = b_km . t_k per pattern (and a last row of zeros for rows without a pattern)
    explained = np.zeros((n_patterns + 1, n_components))
    starts = np.zeros(n_patterns, dtype=np.int64)  # each pattern's shifts in ``shifts``
    patterns = np.empty(n, dtype=np.int64)  # each row's pattern (-1: none missing)
    g = np.empty(d)
    v = np.empty(d)
    s = 0
    pattern = -1
    position = 0
    at = 0
    for i in range(n):  # the conditional means, xbar, and the patterns' shifts
        if i == 0 or not _same_pattern(missing, i):
            s = _new_pattern(missing, i, index, observed)
            if 0 < s < d:
                pattern += 1
                starts[pattern] = position
                at = _unpack(inverses, at, s, inverse)
                # t_k = P_mm^-1 b_km and c_k, the component innermost (vector steps)
                for a in range(s):
                    for k in range(n_components):
                        shifts[position + a * n_components + k] = 0.0
                    for b in range(s):
                        coefficient = inverse[a, b]
                        line = index[b]
                        for k in range(n_components):
                            shifts[position + a * n_components + k] += (
                                coefficient * pulled[line, k])
                for a in range(s):
                    line = index[a]
                    for k in range(n_components):
                        explained[pattern, k] += (
                            pulled[line, k] * shifts[position + a * n_components + k])
                position += s * n_components
        patterns[i] = pattern if 0 < s < d else -1
        if s == d:
            for j in range(d):
                xbar[i, j] = 0.0
            continue
        for j in range(d):
            xbar[i, j] = (X[i, j] - centre[j]) * observed[j]
        for a in range(s):  # g = (P xc)_m
            value = 0.0
            line = index[a]
            for j in range(d):
                value += precision[line, j] * xbar[i, j]
            g[a] = value
        for a in range(s):
            value = 0.0
            for b in range(s):
                value += inverse[a, b] * g[b]
            xbar[i, index[a]] = -value
    white = np.dot(xbar, upper)  # w (n, D)
    products = np.dot(white, white_means)  # w . a_k (n, K)
    norms = np.zeros(n_components)  # |a_k|^2
    for j in range(d):
        for k in range(n_components):
            norms[k] += white_means[j, k] * white_means[j, k]
    for i in range(n):
        pattern = patterns[i]
        s = 0
        for j in range(d):
            if missing[j, i]:
                index[s] = j
                s += 1
        if s == d:  # nothing observed: the marginal over nothing is 1
            for k in range(n_components):
                log_joint[k, i] = log_weights[k]
            continue
        length = 0.0
        for j in range(d):
            length += white[i, j] * white[i, j]
        base = 0.5 * s * _LOG_2PI
        if pattern >= 0:
            base -= 0.5 * log_det[pattern, 0]
        known = pattern if pattern >= 0 else n_patterns  # (a row of zeros)
        direct = False  # (branch-free over the components: the loop vectorises)
        for k in range(width):
            c = explained[known, k]
            quad = length - 2.0 * products[i, k] + norms[k] - c
            log_joint[k, i] = constant[k] + base - 0.5 * quad
            direct |= length + norms[k] + c > 0.5 * _EXPANSION_LIMIT
        if not direct:
            continue
        for k in range(n_components):
            c = explained[known, k]
            if length + norms[k] + c > 0.5 * _EXPANSION_LIMIT:
                # |w - a_k + U' E t_k|^2 summed directly
                for j in range(d):
                    v[j] = white[i, j] - white_means[j, k]
                for b in range(s):
                    column = index[b]
                    t = shifts[starts[pattern] + b * n_components + k]
                    for j in range(column, d):
                        v[j] += upper[column, j] * t
                quad = 0.0
                for j in range(d):
                    quad += v[j] * v[j]
                log_joint[k, i] = constant[k] + base - 0.5 * quad
    return 0


@_jit
def tied_moments(missing, xbar, resp_w, row_weight, inverses, shifts, first, pooled):
    """Tied covariance: the parts of the statistics around the centre that involve the
    patterns' shifts ``t_k`` (``xhat_k - centre = xbar + E t_k``; ``inverses`` of
    :func:`factorise`, ``shifts`` of :func:`tied_log_joint`), both zeroed here:
    ``first[k] = sum_rows r_k E t_k`` (K, D) and ``pooled = sum_rows (xbar u' E' + E u
    xbar' + E (sum_k r_k t_k t_k' + w P_mm^-1) E')`` (D, D) with ``u = sum_k r_k t_k``
    and ``w`` the row's weight; the caller adds ``sum r_k xbar`` and ``sum w xbar
    xbar'`` (GEMMs)."""
    n, d = xbar.shape
    n_components = resp_w.shape[0]
    width = np.uint64(n_components)  # (unsigned indices: see the module's docstring)
    index = np.empty(d, dtype=np.int64)
    observed = np.empty(d)
    weights = np.zeros(n_components)  # each component's responsibility over the pattern
    resp = np.empty(n_components)
    cross = np.zeros((d, d))  # rows: the missing coordinate of u
    first[...] = 0.0
    pooled[...] = 0.0
    total = 0.0  # the rows' weight over the pattern
    s = 0
    at = 0
    position = 0  # the pattern's shifts (s, K) in ``shifts``
    for i in range(n + 1):
        if i == n or i == 0 or not _same_pattern(missing, i):
            if i > 0 and 0 < s < d:
                for a in range(s):
                    left = np.uint64(position + a * n_components)
                    for b in range(a, s):
                        right = np.uint64(position + b * n_components)
                        value = total * inverses[at]
                        at += 1
                        for k in range(width):
                            value += weights[k] * shifts[left + k] * shifts[right + k]
                        pooled[index[a], index[b]] += value
                        if b > a:
                            pooled[index[b], index[a]] += value
                    for k in range(width):
                        first[k, index[a]] += weights[k] * shifts[left + k]
                position += s * n_components
            weights[:] = 0.0
            total = 0.0
            if i == n:
                break
            s = _new_pattern(missing, i, index, observed)
        if s == d:
            continue
        total += row_weight[i]
        for k in range(n_components):
            resp[k] = resp_w[k, i]
            weights[k] += resp[k]
        for a in range(s):
            left = np.uint64(position + a * n_components)
            value = 0.0  # u_a = sum_k r_k t_ka
            for k in range(width):
                value += resp[k] * shifts[left + k]
            line = index[a]
            for j in range(d):
                cross[line, j] += value * xbar[i, j]
    for a in range(d):
        for b in range(d):
            pooled[a, b] += cross[a, b] + cross[b, a]
    return 0


# ------------------------------------------------------------------ the Schur form
#: The Schur form's distance ``z' P z - t' P_mm^-1 t`` rounds by about ``4 eps t'
#: P_mm^-1 t`` (the cancelled amount; ``z' P z`` carries the kernel's own, accepted
#: error); where that passes this share of the log-density's size (the complete
#: kernel's ``FLOAT64_TOLERANCE``, measured the same way), :func:`schur_log_joint` sums
#: the squares of the row's residual directly.
_SCHUR_TOLERANCE = 1e-12
_SCHUR_ROUNDING = 4.0 * 2.220446049250313e-16


@_jit
def gather_centred(X, rows, reference, fill_at, out):
    """A block's rows minus ``reference``, feature-major: ``out[j, i] = X[rows[i], j] -
    reference[j]`` (D, n), and 0 at its missing cells (``fill_at``: their positions in
    the flattened (n, D) block) -- the complete kernel's ``xc`` rows of the rows with
    their missing cells at the reference, in one pass instead of a gather, a fill and a
    transposed subtraction."""
    d, n = out.shape
    for i in range(n):
        row = rows[i]
        for j in range(d):
            out[j, i] = X[row, j] - reference[j]
    for c in range(len(fill_at)):
        at = fill_at[c]
        out[at % d, at // d] = 0.0
    return 0


@_jit
def block_layout(missing, row_start, row_cells, cell_rows, coord_start, fill_at, fill_column):
    """The cells of a block's rows with ``missing`` (n, D), in two passes: ``row_start``
    (n + 1,) and ``coord_start`` (D + 1,) the rows' and coordinates' first cells,
    ``cell_rows`` the row of each cell coordinate by coordinate (rows increasing),
    ``row_cells`` where each cell of each row (coordinates increasing) sits in that
    order, ``fill_at`` / ``fill_column`` its place in the flattened block and column."""
    n, d = missing.shape
    coord_start[:] = 0
    row_start[0] = 0
    for i in range(n):
        count = 0
        for j in range(d):
            if missing[i, j]:
                count += 1
                coord_start[j + 1] += 1
        row_start[i + 1] = row_start[i] + count
    for j in range(d):
        coord_start[j + 1] += coord_start[j]
    next_cell = coord_start[:d].copy()
    at = 0
    for i in range(n):
        for j in range(d):
            if missing[i, j]:
                place = next_cell[j]
                next_cell[j] += 1
                cell_rows[place] = i
                row_cells[at] = place
                fill_at[at] = i * d + j
                fill_column[at] = j
                at += 1
    return 0


@_jit
def pattern_trie(index, sizes, path, parent, depth, coordinate, start, n_components):
    """The prefix tree of patterns ``index`` (P, D) / ``sizes`` (P,), sorted
    lexicographically (a prefix before its extensions): a node per distinct prefix
    ``j_0 < ... < j_c`` (``depth`` ``c``, its last ``coordinate`` ``j_c``, its
    ``parent``), ``path[p, c]`` the node of pattern ``p``'s prefix of length ``c + 1``,
    ``start[node]`` where the node's row ``c`` of ``L`` and of ``F = L^-1`` begin
    (``c + 1`` vectors of ``n_components``).  Returns the number of nodes and of values
    of a row store.  Row ``c`` of the Cholesky factor of ``P_mm`` (and of its inverse)
    depends only on the prefix of length ``c + 1``: patterns that share prefixes share
    those rows (:func:`factorise_trie`)."""
    n_patterns = len(sizes)
    nodes = 0
    values = 0
    for p in range(n_patterns):
        shared = 0
        if p > 0:
            limit = min(sizes[p], sizes[p - 1])
            while shared < limit and index[p, shared] == index[p - 1, shared]:
                shared += 1
            for c in range(shared):
                path[p, c] = path[p - 1, c]
        for c in range(shared, sizes[p]):
            parent[nodes] = path[p, c - 1] if c > 0 else -1
            depth[nodes] = c
            coordinate[nodes] = index[p, c]
            start[nodes] = values
            values += (c + 1) * n_components
            path[p, c] = nodes
            nodes += 1
    return nodes, values


@_jit
def _ancestors(node, parent, depth, coordinate, line, column):
    """A node of :func:`pattern_trie` and its ancestors by depth into ``line`` and their
    coordinates into ``column`` (entries ``0 .. c``); returns the node's depth ``c``."""
    c = depth[node]
    up = node
    for e in range(c, -1, -1):
        line[e] = up
        column[e] = coordinate[up]
        up = parent[up]
    return c


@_jit
def factorise_trie(parent, depth, coordinate, start, precision, lower, inverse, pivots):
    """Rows of ``L`` (``P_k,mm = L L'``) and of ``F = L^-1`` of every node of
    :func:`pattern_trie` (in its order, parents first) into ``lower`` and ``inverse``
    (at ``start[node]``: entry ``b`` of the row, a vector over the components), and
    the pivot ``l_cc^2`` into ``pivots`` (nodes, K) (whose logarithms, summed down the
    tree by :func:`tree_sums`, are the prefix blocks' log-determinants); ``precision``
    is (D, D, K).  A node of depth ``c`` costs ``O(c^2)`` per component: its row of
    ``L`` by forward substitution against its ancestors' rows, its row of ``F`` from
    theirs (the ancestors' rows of ``F`` read row by row).  One component (a tied
    covariance) takes :func:`_factorise_trie_one`."""
    n_nodes = len(parent)
    d = precision.shape[0]
    n_components = precision.shape[2]
    if n_components == 1:
        return _factorise_trie_one(
            parent, depth, coordinate, start, precision, lower, inverse, pivots)
    line = np.empty(d, dtype=np.int64)  # the ancestors (and the node) by depth
    column = np.empty(d, dtype=np.int64)
    value = np.empty(n_components)
    value_row = np.empty(d * n_components)
    width = np.uint64(n_components)  # (unsigned indices: see the module's docstring)
    for node in range(n_nodes):
        c = _ancestors(node, parent, depth, coordinate, line, column)
        here = np.uint64(start[node])
        jc = column[c]
        for b in range(c):  # l_cb = (P_cb - sum_{e<b} l_ce l_be) / l_bb
            other = np.uint64(start[line[b]])
            for k in range(width):
                value[k] = precision[jc, column[b], k]
            for e in range(b):
                step = np.uint64(e) * width
                for k in range(width):
                    value[k] -= lower[here + step + k] * lower[other + step + k]
            step = np.uint64(b) * width
            for k in range(width):  # times f_bb = 1 / l_bb
                lower[here + step + k] = value[k] * inverse[other + step + k]
        for k in range(width):
            value[k] = precision[jc, jc, k]
        for e in range(c):
            step = np.uint64(e) * width
            for k in range(width):
                entry = lower[here + step + k]
                value[k] -= entry * entry
        for k in range(width):
            if not (value[k] > 0.0 and value[k] < np.inf):
                return NOT_POSITIVE
        diagonal = here + np.uint64(c) * width
        for k in range(width):
            root = math.sqrt(value[k])
            lower[diagonal + k] = root
            inverse[diagonal + k] = 1.0 / root
            pivots[node, k] = value[k]
        for b in range(np.uint64(c) * width):
            value_row[b] = 0.0
        for e in range(c):  # f_c = -f_cc sum_e l_ce f_e, the ancestors' rows in turn
            other = np.uint64(start[line[e]])
            entry_at = here + np.uint64(e) * width
            for b in range(e + 1):
                step = np.uint64(b) * width
                for k in range(width):
                    value_row[step + k] += lower[entry_at + k] * inverse[other + step + k]
        for b in range(c):
            step = np.uint64(b) * width
            for k in range(width):
                inverse[here + step + k] = -inverse[diagonal + k] * value_row[step + k]
    return 0


@_jit
def _factorise_trie_one(parent, depth, coordinate, start, precision, lower, inverse, pivots):
    """:func:`factorise_trie` for one component (``precision`` (D, D, 1)), in scalars:
    its loops over a vector of components cost their set-up at every step (0.4 ms
    against 1.1 ms for the 8 552 nodes of 20 % missing at D=16)."""
    d = precision.shape[0]
    line = np.empty(d, dtype=np.int64)
    column = np.empty(d, dtype=np.int64)
    for node in range(len(parent)):
        c = _ancestors(node, parent, depth, coordinate, line, column)
        here = np.uint64(start[node])
        jc = column[c]
        top = np.uint64(c)
        for b in range(top):  # l_cb = (P_cb - sum_{e<b} l_ce l_be) f_bb
            other = np.uint64(start[line[b]])
            value = precision[jc, column[b], 0]
            for e in range(b):
                value -= lower[here + e] * lower[other + e]
            lower[here + b] = value * inverse[other + b]
        value = precision[jc, jc, 0]
        for e in range(top):
            value -= lower[here + e] * lower[here + e]
        if not (value > 0.0 and value < np.inf):
            return NOT_POSITIVE
        root = math.sqrt(value)
        lower[here + top] = root
        pivot = 1.0 / root
        inverse[here + top] = pivot
        pivots[node, 0] = value
        for b in range(top):  # f_cb = -f_cc sum_{e=b}^{c-1} l_ce f_eb
            value = 0.0
            for e in range(b, top):
                value += lower[here + e] * inverse[np.uint64(start[line[e]]) + b]
            inverse[here + b] = -pivot * value
    return 0


@_jit
def _whitened_norm(factor, r):
    """``|U' r|^2`` with ``factor`` ``U'`` (D, D), lower triangular: the squared
    Mahalanobis length of ``r`` (D,), summed directly."""
    total = 0.0
    for j in range(len(r)):
        value = 0.0
        for b in range(j + 1):
            value += factor[j, b] * r[b]
        total += value * value
    return total


@_jit
def tree_sums(parent, values):
    """Each node's ``values`` (nodes, K) plus its ancestors', in place (parents come
    before their children)."""
    for node in range(len(parent)):
        up = parent[node]
        if up >= 0:
            for k in range(values.shape[1]):
                values[node, k] += values[up, k]
    return 0


@_jit
def schur_log_joint(
    log_joint, gradient, pulled, y, offsets, factor, constant, pattern, sizes, index,
    path, start, inverses, log_det, row_start, row_cells,
):
    """Full covariances in the Schur form: ``log_joint`` (K, n) holds on entry the
    complete kernel's log-joint of the rows with their missing cells at the centre,
    ``constant_k - |U_k' (y - a_k)|^2 / 2`` (``y`` (D, n) the rows minus the centre,
    0 at the missing cells, ``a_k = mu_k - centre`` in ``offsets`` (K, D)), and on exit
    the log-joint of the observed coordinates:

    ``+ s log(2 pi) / 2 - log det P_k,mm / 2 + t' P_k,mm^-1 t / 2`` with
    ``t = (P_k (y - a_k))_m``,

    since the observed distance is ``z' P z - t' P_mm^-1 t`` whatever ``z_m`` is.
    ``gradient`` (cells, K) holds on entry ``(P_k y)_j`` of each missing cell (a row's
    cells at ``row_cells[row_start[i]:row_start[i + 1]]``, its coordinates in increasing
    order), ``pulled`` (D, K) ``(P_k a_k)_j``; on exit it holds ``u = P_k,mm^-1 t`` (the
    conditional mean is ``xhat_m - centre = -u``).  ``pattern`` (n,) is each row's
    pattern, whose ``sizes[p]`` missing coordinates are ``index[p, :sizes[p]]``, row
    ``a`` of its ``F`` that of node ``path[p, a]`` (:func:`pattern_trie`,
    :func:`factorise_trie`: at ``start[node]`` in ``inverses``) and its log-determinants
    those of its last node in ``log_det``.  Every
    per-row step runs over the components as a vector.  Where the cancellation could
    round by more than :data:`_SCHUR_TOLERANCE` of the log-density, the distance is
    summed directly, ``|U_k' r|^2`` (``factor`` ``U_k'``, (K, D, D), ``r`` the residual
    with the conditional mean)."""
    n_components, n = log_joint.shape
    width = np.uint64(n_components)  # (unsigned indices: see the module's docstring)
    d = y.shape[0]
    # per-row vectors over the components, flat (coordinate-major)
    t = np.empty(d * n_components)
    u = np.empty(d * n_components)
    w = np.empty(n_components)
    cancelled = np.empty(n_components)
    r = np.empty(d)
    half_log_2pi = 0.5 * _LOG_2PI
    for i in range(n):
        p = pattern[i]
        s = sizes[p]
        first = row_start[i]
        for a in range(s):
            cell = row_cells[first + a]
            ja = index[p, a]
            to = np.uint64(a) * width
            for k in range(width):
                t[to + k] = gradient[cell, k] - pulled[ja, k]
        for k in range(width):
            cancelled[k] = 0.0
        for k in range(np.uint64(s) * width):
            u[k] = 0.0
        # w_a = (F t)_a, |w|^2 = t' P_mm^-1 t, and u = F' w added row by row of F: each
        # row is read once, and again from L1 (the rows, ~7 MB at K=20, D=16, stream
        # from L3; summing u down F's columns read them twice)
        for a in range(s):
            at = np.uint64(start[path[p, a]])
            for k in range(width):
                w[k] = 0.0
            for b in range(a + 1):
                row = at + np.uint64(b) * width
                to = np.uint64(b) * width
                for k in range(width):
                    w[k] += inverses[row + k] * t[to + k]
            for k in range(width):
                cancelled[k] += w[k] * w[k]
            for b in range(a + 1):
                row = at + np.uint64(b) * width
                to = np.uint64(b) * width
                for k in range(width):
                    u[to + k] += inverses[row + k] * w[k]
        for b in range(s):
            cell = row_cells[first + b]
            to = np.uint64(b) * width
            for k in range(width):
                gradient[cell, k] = u[to + k]
        base = s * half_log_2pi
        leaf = path[p, s - 1]
        rounding = False  # (branch-free over the components: the loop vectorises)
        for k in range(width):
            value = log_joint[k, i] + base - 0.5 * log_det[leaf, k] + 0.5 * cancelled[k]
            log_joint[k, i] = value
            rounding |= _SCHUR_ROUNDING * cancelled[k] > _SCHUR_TOLERANCE * max(
                1.0, abs(value))
        if not rounding:
            continue
        for k in range(n_components):
            correction = base - 0.5 * log_det[leaf, k]
            value = log_joint[k, i]
            if _SCHUR_ROUNDING * cancelled[k] <= _SCHUR_TOLERANCE * max(1.0, abs(value)):
                continue
            for j in range(d):
                r[j] = y[j, i] - offsets[k, j]
            for a in range(s):
                ja = index[p, a]
                r[ja] = -offsets[k, ja] - gradient[row_cells[first + a], k]
            log_joint[k, i] = constant[k] - 0.5 * _whitened_norm(factor[k], r) + correction
    return 0


@_jit
def schur_moments(
    resp_w, steps, weighted, pattern, sizes, index, row_start, row_cells, totals, first,
    second,
):
    """The Schur form's corrections to the complete kernel's moments around the centre
    of the rows (see :func:`schur_log_joint`): with ``steps`` (cells, K) the ``u`` it
    left and ``resp_w`` (K, n) the weighted responsibilities, ``weighted`` (cells, K)
    gets ``r_ik u`` (the caller's per-coordinate GEMMs make the cross terms ``sum r y
    u'``), ``first`` (D, K) ``sum_i r_ik u`` scattered to the missing coordinates,
    ``second`` (D, D, K) the lower triangle of ``sum_i r_ik u u'`` (component
    innermost), and ``totals`` (P, K) gains each pattern's responsibilities (for
    :func:`schur_conditional`)."""
    n_components, n = resp_w.shape
    first[:] = 0.0
    second[:] = 0.0
    d = first.shape[0]
    r = np.empty(n_components)
    ru = np.empty(n_components)
    u = np.empty(d * n_components)
    for i in range(n):
        p = pattern[i]
        s = sizes[p]
        cells = row_start[i]
        for k in range(n_components):
            r[k] = resp_w[k, i]
            totals[p, k] += r[k]
        for a in range(s):
            cell = row_cells[cells + a]
            for k in range(n_components):
                u[a * n_components + k] = steps[cell, k]
        for a in range(s):
            cell = row_cells[cells + a]
            ja = index[p, a]
            for k in range(n_components):
                value = r[k] * u[a * n_components + k]
                ru[k] = value
                weighted[cell, k] = value
                first[ja, k] += value
            for b in range(a + 1):
                jb = index[p, b]
                for k in range(n_components):
                    second[ja, jb, k] += ru[k] * u[b * n_components + k]
    return 0


@_jit
def schur_conditional(totals, sizes, path, parent, depth, coordinate, start, inverses,
                      through, conditional):
    """The lower triangles of ``sum_p totals[p, k] P_k,mm^-1`` on each pattern's missing
    block into ``conditional`` (D, D, K): the conditional covariances' part of the
    second moments (see :func:`schur_moments`).  ``P_mm^-1 = F' F = sum_c f_c' f_c``
    over the rows ``f_c`` of ``F``, each a node's of :func:`pattern_trie`: a node adds
    ``f f'`` once, weighted by the totals of every pattern through it."""
    n_components = totals.shape[1]
    width = np.uint64(n_components)
    n_nodes = len(parent)
    d = conditional.shape[0]
    conditional[:] = 0.0
    through[:] = 0.0  # (nodes, K): the totals of the patterns through each node
    for p in range(len(sizes)):
        leaf = path[p, sizes[p] - 1]
        for k in range(n_components):
            through[leaf, k] += totals[p, k]
    for node in range(n_nodes - 1, -1, -1):  # children come after their parents
        if parent[node] >= 0:
            for k in range(n_components):
                through[parent[node], k] += through[node, k]
    line = np.empty(d, dtype=np.int64)
    column = np.empty(d, dtype=np.int64)
    scaled = np.empty(n_components)
    for node in range(n_nodes):
        c = _ancestors(node, parent, depth, coordinate, line, column)
        row = np.uint64(start[node])
        for a in range(c + 1):
            ja = column[a]
            left = row + np.uint64(a) * width
            for k in range(width):
                scaled[k] = through[node, k] * inverses[left + k]
            for b in range(a + 1):
                jb = column[b]
                right = row + np.uint64(b) * width
                for k in range(width):
                    conditional[ja, jb, k] += scaled[k] * inverses[right + k]
    return 0


# ------------------------------------------------------- the Schur form, tied covariance
@_jit
def tied_node_shifts(parent, depth, coordinate, start, inverses, pulled, shifts):
    """Tied covariance: each node's entry of ``e_k = F b_k,m`` (``b_k = P (mu_k - c)``,
    ``pulled`` (D, K); ``F`` the rows of :func:`factorise_trie` with one component,
    row ``c`` of a pattern's ``F`` its node's) into ``shifts`` (nodes, K): entry ``c``
    of ``F b`` depends only on the prefix of length ``c + 1``."""
    n_components = pulled.shape[1]
    d = pulled.shape[0]
    line = np.empty(d, dtype=np.int64)
    column = np.empty(d, dtype=np.int64)
    for node in range(len(parent)):
        c = _ancestors(node, parent, depth, coordinate, line, column)
        for k in range(n_components):
            shifts[node, k] = 0.0
        row = np.uint64(start[node])
        for b in range(c + 1):
            value = inverses[row + np.uint64(b)]
            jb = column[b]
            for k in range(n_components):
                shifts[node, k] += value * pulled[jb, k]
    return 0


@_jit
def tied_pattern_steps(sizes, path, start, inverses, shifts, step_start, steps):
    """Tied covariance: each pattern's ``F' e_k`` (the part of ``P_mm^-1 t_k`` that the
    means make, ``t_k = g - b_k,m``), (s, K) from ``step_start[p]`` in ``steps``."""
    width = np.uint64(shifts.shape[1])  # (unsigned indices: see the module's docstring)
    for p in range(len(sizes)):
        s = sizes[p]
        at = np.uint64(step_start[p])
        for k in range(np.uint64(s) * width):
            steps[at + k] = 0.0
        for c in range(s):  # row by row of F: F' e = sum_c e_c f_c
            node = path[p, c]
            row = np.uint64(start[node])
            for b in range(np.uint64(c) + np.uint64(1)):
                value = inverses[row + b]
                out = at + b * width
                for k in range(width):
                    steps[out + k] += value * shifts[node, k]
    return 0


@_jit
def tied_schur_log_joint(
    log_joint, pulled_rows, steps_rows, shifts, steps, step_start, y, offsets, factor,
    constant, pattern, sizes, index, path, start, inverses, log_det,
):
    """Tied covariance in the Schur form (see :func:`schur_log_joint`): with ``F`` the
    patterns' ``L^-1`` (one for all components), ``t_k = g - b_k,m`` (``g = (P y)_m``
    read from ``pulled_rows`` (D, n), ``P y`` of every row), ``F t_k = h - e_k`` with
    ``h = F g`` per row and ``e_k`` per node (``shifts``, :func:`tied_node_shifts`):
    the cancelled amount ``|h - e_k|^2`` costs ``s`` per row and component.
    ``steps_rows`` (D, n, zero where observed) gets ``F' h`` at the missing cells (the
    conditional means are ``xhat_k,m - c = -(F' h - F' e_k)``, ``F' e_k`` in
    ``steps``); the distance is summed directly as in :func:`schur_log_joint` where the
    cancellation could round beyond :data:`_SCHUR_TOLERANCE`."""
    n_components, n = log_joint.shape
    d = y.shape[0]
    g = np.empty(d)
    h = np.empty(d)
    back = np.empty(d)
    r = np.empty(d)
    cancelled = np.empty(n_components)
    half_log_2pi = 0.5 * _LOG_2PI
    for i in range(n):
        p = pattern[i]
        s = sizes[p]
        for a in range(s):
            g[a] = pulled_rows[index[p, a], i]
        for b in range(s):
            back[b] = 0.0
        for c in range(s):  # h = F g, and F' h row by row of F (each row read once)
            at = np.uint64(start[path[p, c]])
            value = 0.0
            for b in range(np.uint64(c) + np.uint64(1)):
                value += inverses[at + b] * g[b]
            h[c] = value
            for b in range(np.uint64(c) + np.uint64(1)):
                back[b] += inverses[at + b] * value
        for b in range(s):
            steps_rows[index[p, b], i] = back[b]
        for k in range(n_components):
            cancelled[k] = 0.0
        for c in range(s):  # |h - e_k|^2, the components as a vector
            node = path[p, c]
            for k in range(n_components):
                step = h[c] - shifts[node, k]
                cancelled[k] += step * step
        base = s * half_log_2pi - 0.5 * log_det[path[p, s - 1], 0]
        rounding = False  # (branch-free over the components: the loop vectorises)
        for k in range(n_components):
            value = log_joint[k, i] + base + 0.5 * cancelled[k]
            log_joint[k, i] = value
            rounding |= _SCHUR_ROUNDING * cancelled[k] > _SCHUR_TOLERANCE * max(
                1.0, abs(value))
        if not rounding:
            continue
        for k in range(n_components):
            value = log_joint[k, i]
            if _SCHUR_ROUNDING * cancelled[k] <= _SCHUR_TOLERANCE * max(1.0, abs(value)):
                continue
            for j in range(d):
                r[j] = y[j, i] - offsets[k, j]
            for a in range(s):  # xhat_m - mu_m = -a_m - (F' h - F' e_k)
                ja = index[p, a]
                r[ja] = -offsets[k, ja] - steps_rows[ja, i] + steps[
                    step_start[p] + a * n_components + k]
            log_joint[k, i] = constant[k] - 0.5 * _whitened_norm(factor, r) + base
    return 0


@_jit
def tied_schur_moments(
    resp_w, row_weight, steps_rows, steps, step_start, pattern, sizes, index, totals, bar,
    lower,
):
    """Tied covariance: with ``u_k = F' h - F' e_k`` (``steps_rows`` (D, n) holding
    ``F' h`` at the missing cells, ``steps`` ``F' e_k``) and ``w`` the row's weight
    (``row_weight``, the sum of its weighted responsibilities), ``bar`` (D, n, zero where
    observed) gets ``sum_k r_k u_k`` at the missing cells (the caller's products make
    ``sum y bar'`` and ``sum r_k F'h``), ``lower`` (D, D) gains the lower triangle of
    ``sum_k r_k u_k u_k'`` less its per-pattern part ``sum_k R_pk F'e_k e_k'F``
    (:func:`tied_pattern_moments`), and ``totals`` (P, K) the responsibilities ``R_pk``
    of each pattern."""
    n_components, n = resp_w.shape
    width = np.uint64(n_components)  # (unsigned indices: see the module's docstring)
    d = lower.shape[0]
    mean_step = np.empty(d)  # sum_k r_k F'e_k
    # the responsibilities row by row (a row's are K apart in ``resp_w``): the copy
    # costs less than the strided reads (K=20, D=16: 0.87 against 1.43 ms a pass)
    by_row = np.ascontiguousarray(resp_w.T)
    for i in range(n):
        p = pattern[i]
        s = sizes[p]
        weight = row_weight[i]
        for k in range(width):
            totals[p, k] += by_row[i, k]
        for a in range(s):
            row = np.uint64(step_start[p] + a * n_components)
            value = 0.0
            for k in range(width):
                value += by_row[i, k] * steps[row + k]
            mean_step[a] = value
        for a in range(s):
            ja = index[p, a]
            ua = steps_rows[ja, i]
            bar[ja, i] = weight * ua - mean_step[a]
            for b in range(a + 1):
                ub = steps_rows[index[p, b], i]
                lower[ja, index[p, b]] += (
                    weight * ua * ub - ua * mean_step[b] - mean_step[a] * ub)
    return 0


@_jit
def tied_pattern_moments(totals, steps, step_start, sizes, index, lower, shift):
    """Tied covariance: the per-pattern parts of the moments, ``lower`` (D, D) gains
    ``sum_k R_pk (F'e_k)(F'e_k)'`` (lower triangle) and ``shift`` (D, K) ``sum_p R_pk
    F'e_k`` on each pattern's coordinates (see :func:`tied_schur_moments`)."""
    n_components = totals.shape[1]
    width = np.uint64(n_components)  # (unsigned indices: see the module's docstring)
    for p in range(len(sizes)):
        s = sizes[p]
        at = np.uint64(step_start[p])
        for a in range(s):
            ja = index[p, a]
            left = at + np.uint64(a) * width
            for k in range(width):
                shift[ja, k] += totals[p, k] * steps[left + k]
            for b in range(a + 1):
                right = at + np.uint64(b) * width
                value = 0.0
                for k in range(width):
                    value += totals[p, k] * steps[left + k] * steps[right + k]
                lower[ja, index[p, b]] += value
    return 0
