"""Compiled (numba) fused E-step for full, tied, diagonal and spherical covariances at
few features: the log-joint of every component, the log-sum-exp and the statistics of a
block of rows in one pass, with nothing larger than a tile of rows alive.

Imported only through :func:`gmmkit._jit.fused_kernels` (numba is an optional
dependency).  It computes what :func:`gmmkit.core.kernel.chunk_statistics` computes,
in scikit-learn's formulation: each component evaluated centred on its own mean,
``z = U_k' (x - mu_k)``, ``log pi_k N(x) = c_k - |z|^2 / 2``, so it needs neither the
expansion's probes nor its fallbacks, and the statistics are summed around
``refs[k]`` (the coefficients' ``stats_reference``).  Tied covariances share one factor
``U`` (loaded once) and one pooled second moment, the rows' weights times ``y y'`` around
the common reference, which does not depend on the responsibilities.

Why compiled, and why generated.  At few features the numpy kernel is bound by memory
passes, not arithmetic: its (F, n) feature block and (K, n) log-joint make a dozen
passes over memory per pass of the data (1-D: 14 ns a row for two components, against
about 2 ns of exponentials).  Here a tile of :data:`TILE` rows is transposed once into a
feature-major buffer and every further loop runs over the tile's rows with the
per-component constants in registers.  That needs the loops over features unrolled:
numba's loops over a run-time ``D`` keep every intermediate in memory (measured 69 ns a
row at D=3, K=20, no faster than numpy), so the kernel for each layout and ``D`` is
written out by :func:`_source` and compiled on first use, with ``D`` scalars per row
(the rows of the tile are the vector lanes).  The functions are compiled from source
whose file name is this module's, so numba caches them beside it like the other
compiled kernels (the cache is invalidated whenever this file changes).

``exp`` is :func:`exp_nonpositive`, written here because numba's ``math.exp`` is a
scalar libm call that does not vectorise (4.4 ns a value, against numpy's 1 ns): Cody and
Waite's reduction by ``ln 2`` and a degree-11 polynomial (mpmath's Chebyshev fit of
``exp`` on ``[-ln 2 / 2, ln 2 / 2]``, error 3e-18), 2^k made by writing ``k`` into a
double's exponent bits: within 0.6 ulp of the exact value over ``[-708, 0]``, as
numpy's.  Arguments are log-joints less their row's largest, so never positive;
below -708 it returns 0 (a weight under 1e-307 of the row's largest: the numpy kernel
floors at the same depth).

Indices are never ``start + t`` inside a vectorised loop: numba wraps negative signed
indices, and a sum it cannot prove non-negative keeps a select at every access that
stops the loop from vectorising (measured 4.6 against 0.84 ns per exponential).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from gmmkit.core.covariance._base import _triu
from gmmkit.core.kernel import FAR_LOG_JOINT

#: Rows per tile: the (K, TILE) log-joint stays in the L1/L2 caches up to K ~ 100.
TILE = 128

#: Layouts the generated kernels evaluate.
LAYOUTS = ("full", "tied", "diag", "spherical")

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 to 32 bits: k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_SHIFTER = 6755399441055744.0  # 1.5 * 2**52: x + _SHIFTER - _SHIFTER rounds x to an integer
_EXP_FLOOR = -708.0

#: A row whose exponentials, shifted by the largest component constant, sum to less
#: than this is evaluated again shifted by its own largest log-joint: below it the
#: entries :func:`exp_nonpositive` floors to 0 (under 3e-308) could weigh more than
#: 1e-50 of the row's sum.
_SMALLEST_SUM = 1e-250


def _bitcast(source: Any, target: Any, target_ir: Any) -> Any:
    """A numba intrinsic reinterpreting a ``source`` scalar's bits as a ``target``."""

    def typing(typingctx: Any, value: Any) -> Any:
        if value != source:
            return None

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            return builder.bitcast(args[0], target_ir)

        return target(source), codegen

    return intrinsic(typing)


#: The double whose IEEE-754 bits are an int64, and the int64 of a double's bits.
_bits_to_float: Any = _bitcast(types.int64, types.float64, ir.DoubleType())
_float_to_bits: Any = _bitcast(types.float64, types.int64, ir.IntType(64))


@njit(inline="always", fastmath={"contract"}, error_model="numpy", cache=True)
def log_normal(x: float) -> float:  # pragma: no cover - compiled
    """``log(x)`` for a positive normal double (not 0, subnormal, inf or NaN), vectorisable.

    fdlibm's ``log``: ``x = 2^e m`` with ``m`` in ``[sqrt(2)/2, sqrt(2))``, ``f = m - 1``,
    ``s = f / (2 + f)``, ``log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2))``, with ``R(w) / w``
    mpmath's degree-6 Chebyshev fit of ``(2 atanh(sqrt w) / sqrt w - 2) / w`` on
    ``[0, 0.0295]`` (error 3e-16 there, 1e-17 in the result)."""
    bits = _float_to_bits(x)
    e = (bits >> 52) - 1023
    m = _bits_to_float((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)
    big = m > 1.4142135623730951
    m = m * 0.5 if big else m
    e = e + 1 if big else e
    f = m - 1.0
    s = f / (2.0 + f)
    w = s * s
    r = 0.14616449685043406
    r = r * w + 0.15331721600556042
    r = r * w + 0.18182889125261723
    r = r * w + 0.2222221113479508
    r = r * w + 0.28571428625975487
    r = r * w + 0.39999999999899505
    r = r * w + 0.666666666666667
    r = r * w
    hfsq = 0.5 * f * f
    k = float(e)
    return k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)


@njit(inline="always", fastmath={"contract"}, error_model="numpy", cache=True)
def exp_nonpositive(x: float) -> float:  # pragma: no cover - compiled
    """``exp(x)`` for ``x <= 0`` (0 below -708), vectorisable."""
    xc = max(x, _EXP_FLOOR)
    k = (xc * _LOG2E + _SHIFTER) - _SHIFTER
    r = xc - k * _LN2_HI
    r = r - k * _LN2_LO
    p = 2.5110037605963777e-08
    p = p * r + 2.763263963904103e-07
    p = p * r + 2.755724091857897e-06
    p = p * r + 2.4801485482328494e-05
    p = p * r + 0.00019841269890047113
    p = p * r + 0.0013888888952314775
    p = p * r + 0.008333333333319601
    p = p * r + 0.0416666666664881
    p = p * r + 0.1666666666666668
    p = p * r + 0.5000000000000019
    p = p * r + 1.0
    p = p * r + 1.0
    y = p * _bits_to_float((np.int64(k) + 1023) << 52)
    return y if x >= _EXP_FLOOR else 0.0


@njit(nogil=True, fastmath={"contract"}, error_model="numpy", cache=True)
def exp_array(x: Any, out: Any) -> None:  # pragma: no cover - compiled
    """``out = exp(x)`` elementwise by :func:`exp_nonpositive` (for its tests)."""
    for i in range(x.shape[0]):
        out[i] = exp_nonpositive(x[i])


@njit(nogil=True, fastmath={"contract"}, error_model="numpy", cache=True)
def log_array(x: Any, out: Any) -> None:  # pragma: no cover - compiled
    """``out = log(x)`` elementwise by :func:`log_normal` (for its tests)."""
    for i in range(x.shape[0]):
        out[i] = log_normal(x[i])


def statistics(
    layout: str,
    X: Any,
    weight: Any,
    means: Any,
    factors: Any,
    constants: Any,
    refs: Any,
    nk: Any,
    first: Any,
    second: Any,
    log_density: Any,
    totals: Any,
    redo: Any,
) -> int:
    """Fused E-step of a block, accumulating into ``nk``, ``first`` and ``second``.

    Parameters
    ----------
    layout : {"full", "tied", "diag", "spherical"}
    X : ndarray of shape (n, D), float64
    weight : ndarray of shape (n,) or (0,)
        Sample weights, or an empty array for none.
    means : ndarray of shape (K, D)
    factors : ndarray of shape (K, D, D), (D, D), (K, D) or (K,)
        Precision Cholesky factors (upper triangular for full and tied).
    constants : ndarray of shape (K,)
        ``log pi_k + log det U_k - D/2 log 2 pi``.
    refs : ndarray of shape (K, D)
        The point each component's moments are summed around.
    nk, first, second : ndarray of shape (K,), (K, D) and (K, Q) (tied: (1, Q)), float64
        Accumulated into (``+=``).
    log_density : ndarray of shape (n,), float64
        Written: each row's ``log p(x)``.
    totals : ndarray of shape (2,), float64
        ``totals[0]`` accumulates the (weighted) log-likelihood, ``totals[1]`` becomes
        the lowest of its own value and the log-densities of the rows of positive (or
        no) weight.
    redo : ndarray of shape (n,), int64
        Its first entries (as many as returned) become the rows left out of every sum
        and of ``totals``, as for :func:`per_row`: every log-joint below
        ``-FAR_LOG_JOINT`` or one NaN.  The caller evaluates them otherwise.

    Returns
    -------
    int
        How many rows were left out.
    """
    kernel = _compiled(layout, X.shape[1])
    return int(kernel(
        X, weight, means, factors, constants, refs, nk, first, second, log_density, totals,
        redo))


@cache
def _compiled(layout: str, d: int) -> Any:
    name = f"_{layout}_{d}"
    return _compiled_source(_source(layout, d, name), name)


def _compiled_source(source: str, name: str) -> Any:
    """The function ``name`` of generated ``source``, compiled (cached beside this
    module)."""
    namespace: dict[str, Any] = {
        "np": np, "_exp": exp_nonpositive, "_log": log_normal, "TILE": TILE,
        "SMALLEST_SUM": _SMALLEST_SUM, "FAR": FAR_LOG_JOINT, "__name__": __name__}
    exec(compile(source, __file__, "exec"), namespace)
    return njit(
        nogil=True, fastmath={"reassoc", "contract"}, error_model="numpy", cache=True
    )(namespace[name])


def _pairs(d: int) -> list[tuple[int, int]]:
    """The packed upper triangle's (row, column) pairs in ``pack_symmetric``'s order."""
    rows, cols = _triu(d)
    return list(zip(rows.tolist(), cols.tolist(), strict=True))


def _shared_factor_lines(layout: str, d: int) -> list[str]:
    """Load the shared factor of ``tied`` (the same names as a full component's) once."""
    if layout != "tied":
        return []
    return [f"    f{a}_{b} = factors[{a}, {b}]" for a, b in _pairs(d)]


def _component_lines(layout: str, d: int, indent: str) -> list[str]:
    """Load component ``k``'s mean, factor and constant ``c`` into scalars (``tied``: its
    mean and constant, the factor being shared)."""
    lines = [f"{indent}mu{a} = means[k, {a}]" for a in range(d)]
    if layout == "full":
        lines += [f"{indent}f{a}_{b} = factors[k, {a}, {b}]" for a, b in _pairs(d)]
    elif layout == "diag":
        lines += [f"{indent}f{a} = factors[k, {a}]" for a in range(d)]
    else:
        lines += [f"{indent}f = factors[k]", f"{indent}f2 = f * f"]
    lines.append(f"{indent}c = consts[k]")
    return lines


def _half_distance_lines(layout: str, d: int, indent: str) -> list[str]:
    """``h = |U_k' (x_t - mu_k)|^2 / 2`` of row ``t`` of the tile, from the scalars of
    :func:`_component_lines`."""
    lines = [f"{indent}y{a} = xt[{a}, t] - mu{a}" for a in range(d)]
    if layout in ("full", "tied"):
        for j in range(d):
            lines.append(
                f"{indent}z{j} = " + " + ".join(f"f{a}_{j} * y{a}" for a in range(j + 1)))
        lines.append(f"{indent}h = 0.5 * (" + " + ".join(f"z{j} * z{j}" for j in range(d)) + ")")
    elif layout == "diag":
        lines += [f"{indent}z{a} = f{a} * y{a}" for a in range(d)]
        lines.append(f"{indent}h = 0.5 * (" + " + ".join(f"z{a} * z{a}" for a in range(d)) + ")")
    else:
        lines.append(
            f"{indent}h = 0.5 * f2 * (" + " + ".join(f"y{a} * y{a}" for a in range(d)) + ")")
    return lines


def _tile_lines(d: int) -> list[str]:
    """The tile of rows from ``start``: ``m`` rows, transposed into ``xt``; the loop over
    the tile's rows ``t`` is left open for per-row initialisations."""
    lines = ["        m = min(TILE, n - start)", "        for t in range(m):"]
    return lines + [f"            xt[{a}, t] = X[start + t, {a}]" for a in range(d)]


def _full_quads(d: int) -> list[tuple[str, str]]:
    """The packed upper triangle's sums ``q{a}_{b} += r{a} * y{b}``."""
    return [(f"{a}_{b}", f"r{a} * y{b}") for a, b in _pairs(d)]


def _moment_lines(
    d: int, ref: str, weight: str, firsts: list[str], quads: list[tuple[str, str]],
    indent: str,
) -> list[str]:
    """Sums over the tile's rows of weighted moments around a point: ``c{a}`` loaded from
    ``ref`` (formatted with ``a``), the accumulators zeroed, then per row ``y = x - c``,
    ``r = weight``, ``r{a} = r y{a}``; ``firsts`` (``s`` and ``s{a}``, or none) sum ``r``
    and ``r{a}``, ``quads`` are ``(key, expression)`` sums ``q{key}``."""
    inner = indent + "    "
    lines = [f"{indent}c{a} = {ref.format(a=a)}" for a in range(d)]
    lines += [f"{indent}{name} = 0.0" for name in firsts]
    lines += [f"{indent}q{key} = 0.0" for key, _ in quads]
    lines += [f"{indent}for t in range(m):", f"{inner}r = {weight}"]
    if firsts:
        lines.append(f"{inner}s += r")
    for a in range(d):
        lines += [f"{inner}y{a} = xt[{a}, t] - c{a}", f"{inner}r{a} = r * y{a}"]
        if firsts:
            lines.append(f"{inner}s{a} += r{a}")
    return lines + [f"{inner}q{key} += {expr}" for key, expr in quads]


def _source(layout: str, d: int, name: str) -> str:
    """Python source of the fused kernel of ``layout`` at ``d`` features.

    Per tile: transpose the rows into ``xt`` (D, TILE); per component, ``exp`` of its
    log-joints less ``shift``, the largest constant ``c_k`` (no log-joint exceeds its
    component's constant), into ``lj`` (K, TILE), and the rows' sums; a row whose sum
    is below :data:`_SMALLEST_SUM` (far from every component) is evaluated again with its
    own largest log-joint as the shift; the rows' scale ``weight / sum``; per
    component, the sums of ``r``, ``r y`` and ``r`` times the quadratic features of
    ``y = x - refs[k]``, every sum a scalar (a vector register).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"no fused kernel for layout {layout!r}")
    rng = range(d)
    lines: list[str] = []
    emit = lines.append
    emit(f"def {name}(X, weight, means, factors, consts, refs, nk, first, second, "
         "log_density, totals, redo):")
    emit("    n = X.shape[0]")
    emit("    K = means.shape[0]")
    emit("    weighted = weight.shape[0] > 0")
    emit(f"    xt = np.empty(({d}, TILE))")
    emit("    lj = np.empty((K, TILE))")
    emit("    top = np.empty(TILE)")
    emit("    total = np.empty(TILE)")
    emit("    keep = np.empty(TILE)")
    emit("    redone = 0")
    lines += _shared_factor_lines(layout, d)
    emit("    shift = -np.inf")
    emit("    for k in range(K):")
    emit("        shift = max(shift, consts[k])")
    emit("    log_likelihood = 0.0")
    # each lane's lowest log-density: a running minimum across lanes would not vectorise
    emit("    low = np.full(TILE, np.inf)")
    emit("    for start in range(0, n, TILE):")
    lines += _tile_lines(d)
    emit("            total[t] = 0.0")
    emit("            keep[t] = 1.0")
    # exponentials of the log-joints less the shift, and the rows' sums
    emit("        for k in range(K):")
    lines += _component_lines(layout, d, " " * 12)
    emit("            c = c - shift")
    emit("            for t in range(m):")
    lines += _half_distance_lines(layout, d, " " * 16)
    emit("                e = _exp(c - h)")
    emit("                lj[k, t] = e")
    emit("                total[t] += e")
    # rows far from every component: shifted by their own largest log-joint
    emit("        for t in range(m):")
    emit("            top[t] = shift")
    emit("            if not total[t] >= SMALLEST_SUM:")
    emit("                best = -np.inf")
    emit("                acc = 0.0")
    emit("                for k in range(K):")
    lines += _component_lines(layout, d, " " * 20)
    lines += _half_distance_lines(layout, d, " " * 20)
    emit("                    v = c - h")
    emit("                    lj[k, t] = v")
    emit("                    best = max(best, v)")
    emit("                    acc += v")
    # beyond FAR the rounding of the distances swamps the differences between the
    # components (or they overflow): the row is left to the caller
    emit("                if not (best >= -FAR and acc == acc):")
    emit("                    redo[redone] = start + t")
    emit("                    redone += 1")
    emit("                    for k in range(K):")
    emit("                        lj[k, t] = 0.0")
    emit("                    top[t] = 0.0")
    emit("                    total[t] = 1.0")
    emit("                    keep[t] = 0.0")
    emit("                    continue")
    emit("                acc = 0.0")
    emit("                for k in range(K):")
    emit("                    e = _exp(lj[k, t] - best)")
    emit("                    lj[k, t] = e")
    emit("                    acc += e")
    emit("                top[t] = best")
    emit("                total[t] = acc")
    # (views of the tile's rows: an index start + t would not vectorise)
    emit("        out = log_density[start:start + m]")
    emit("        if weighted:")
    emit("            tile_weight = weight[start:start + m]")
    emit("            for t in range(m):")
    emit("                w = tile_weight[t] * keep[t]")
    emit("                ld = top[t] + _log(total[t])")
    emit("                out[t] = ld")
    emit("                log_likelihood += w * ld")
    emit("                low[t] = min(low[t], ld if w > 0.0 else np.inf)")
    emit("                total[t] = w / total[t]")
    emit("        else:")
    emit("            for t in range(m):")
    emit("                ld = top[t] + _log(total[t])")
    emit("                out[t] = ld")
    emit("                log_likelihood += ld")
    emit("                low[t] = min(low[t], ld if keep[t] > 0.0 else np.inf)")
    emit("                total[t] = 1.0 / total[t]")
    # statistics
    if layout == "tied":
        # the pooled second moment does not depend on the responsibilities: the rows'
        # weights (kept in keep) times y y' around the common reference
        emit("        if weighted:")
        emit("            rows_weight = weight[start:start + m]")
        emit("            for t in range(m):")
        emit("                keep[t] *= rows_weight[t]")
        lines += _moment_lines(d, "refs[0, {a}]", "keep[t]", [], _full_quads(d), " " * 8)
        for p, (key, _) in enumerate(_full_quads(d)):
            emit(f"        second[0, {p}] += q{key}")
    if layout == "full":
        quads = _full_quads(d)
    elif layout == "diag":
        quads = [(f"{a}", f"r{a} * y{a}") for a in rng]
    elif layout == "spherical":
        quads = [("q", " + ".join(f"r{a} * y{a}" for a in rng))]
    else:
        quads = []  # tied: pooled above
    emit("        for k in range(K):")
    lines += _moment_lines(
        d, "refs[k, {a}]", "lj[k, t] * total[t]", ["s", *(f"s{a}" for a in rng)], quads,
        " " * 12)
    emit("            nk[k] += s")
    for a in rng:
        emit(f"            first[k, {a}] += s{a}")
    for p, (key, _) in enumerate(quads):
        emit(f"            second[k, {p}] += q{key}")
    emit("    totals[0] += log_likelihood")
    emit("    totals[1] = min(totals[1], low.min())")
    emit("    return redone")
    return "\n".join(lines) + "\n"


#: What :func:`per_row` computes, and the code its compiled kernel takes.
PER_ROW = {"score": 0, "predict": 1, "proba": 2, "map_log_resp": 3}


def per_row(
    layout: str,
    kind: str,
    X: Any,
    means: Any,
    factors: Any,
    constants: Any,
    values: Any,
    labels: Any,
    proba: Any,
    redo: Any,
) -> int:
    """Per-row inference of a block by the fused kernel: each component centred on its
    own mean, as :func:`statistics`, and each row shifted by its own largest log-joint.

    Parameters
    ----------
    layout : {"full", "tied", "diag", "spherical"}
    kind : {"score", "predict", "proba", "map_log_resp"}
        Which output is written.
    X : ndarray of shape (n, D), float64
    means, factors, constants : ndarray
        As for :func:`statistics`.
    values : ndarray of shape (n,), float64
        Written for ``"score"`` (``log p(x)``) and ``"map_log_resp"`` (the largest log
        responsibility).
    labels : ndarray of shape (n,), int64
        Written for ``"predict"``: the component of the largest log-joint (the first
        of equal ones).
    proba : ndarray of shape (n, K), float64
        Written for ``"proba"``: the responsibilities.  Entries below ``exp(-708)`` of
        their row's largest are 0, as are those of weight-0 components.
    redo : ndarray of shape (n,), int64
        Its first entries (as many as returned) become the rows whose results are not
        written correctly: a log-joint NaN, or every one below ``-FAR_LOG_JOINT``
        (1e10), where the rounding of the distances (or their overflow, e.g. a row of
        1e149 and variances of 1e-12) swamps the differences between components.  The
        caller evaluates them otherwise (exactly).

    Returns
    -------
    int
        How many rows are to be evaluated again.
    """
    kernel = _compiled_per_row(layout, X.shape[1])
    return int(kernel(X, means, factors, constants, PER_ROW[kind], values, labels, proba, redo))


@cache
def _compiled_per_row(layout: str, d: int) -> Any:
    name = f"_{layout}_{d}_per_row"
    return _compiled_source(_per_row_source(layout, d, name), name)


def _per_row_source(layout: str, d: int, name: str) -> str:
    """Python source of :func:`per_row`'s kernel for ``layout`` at ``d`` features.

    Per tile: the log-joints ``v`` into ``lj`` (K, TILE) with each row's largest and
    its component; for ``predict`` that is all.  Otherwise ``exp(v - largest)`` and
    the rows' sums, from which the log-density, the largest log responsibility
    (``-log sum``) or the responsibilities follow.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"no fused kernel for layout {layout!r}")
    lines: list[str] = []
    emit = lines.append
    emit(f"def {name}(X, means, factors, consts, kind, values, labels, proba, redo):")
    emit("    n = X.shape[0]")
    emit("    K = means.shape[0]")
    emit(f"    xt = np.empty(({d}, TILE))")
    emit("    lj = np.empty((K, TILE))")
    emit("    top = np.empty(TILE)")
    emit("    best = np.empty(TILE, dtype=np.int64)")
    emit("    total = np.empty(TILE)")
    emit("    redone = 0")
    lines += _shared_factor_lines(layout, d)
    emit("    for start in range(0, n, TILE):")
    lines += _tile_lines(d)
    emit("            top[t] = -np.inf")
    emit("            best[t] = 0")
    emit("            total[t] = 0.0")
    emit("        for k in range(K):")
    lines += _component_lines(layout, d, " " * 12)
    emit("            for t in range(m):")
    lines += _half_distance_lines(layout, d, " " * 16)
    emit("                v = c - h")
    emit("                lj[k, t] = v")
    emit("                above = v > top[t]")
    emit("                top[t] = v if above else top[t]")
    emit("                best[t] = k if above else best[t]")
    # (the sum of the log-joints, NaN or -inf when one is)
    emit("                total[t] += v")
    emit("        for t in range(m):")
    emit("            if not (top[t] >= -FAR and total[t] == total[t]):")
    emit("                redo[redone] = start + t")
    emit("                redone += 1")
    emit("        if kind == 1:")
    emit("            out_labels = labels[start:start + m]")
    emit("            for t in range(m):")
    emit("                out_labels[t] = best[t]")
    emit("            continue")
    emit("        for t in range(m):")
    emit("            total[t] = 0.0")
    emit("        for k in range(K):")
    emit("            for t in range(m):")
    emit("                e = _exp(lj[k, t] - top[t])")
    emit("                lj[k, t] = e")
    emit("                total[t] += e")
    emit("        if kind == 2:")
    emit("            out_proba = proba[start:start + m]")
    emit("            for t in range(m):")
    emit("                total[t] = 1.0 / total[t]")
    emit("            for k in range(K):")
    emit("                for t in range(m):")
    emit("                    out_proba[t, k] = lj[k, t] * total[t]")
    emit("            continue")
    emit("        out = values[start:start + m]")
    emit("        if kind == 0:")
    emit("            for t in range(m):")
    emit("                out[t] = top[t] + _log(total[t])")
    emit("        else:")
    emit("            for t in range(m):")
    emit("                out[t] = -_log(total[t])")
    emit("    return redone")
    return "\n".join(lines) + "\n"
