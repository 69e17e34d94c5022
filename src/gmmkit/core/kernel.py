"""The chunk kernel: E-step in log space fused with sufficient-statistic accumulation.

For centred rows ``xc = x - ref`` the weighted Gaussian log-density of every component
is linear in the feature row ``phi(x) = [q(xc), xc, 1]`` where ``q`` are the quadratic
features of the covariance type (packed outer products, squares or squared norm)::

    log(pi_k N(x | mu_k, Sigma_k)) = phi(x) @ W[:, k]

so the E-step for a block of rows is one GEMM ``W.T @ Phi.T`` followed by a log-sum-exp,
and the sufficient statistics of the block are one more GEMM ``Resp.T @ Phi``.  Both
cost ``N K (D (D + 1) / 2 + D + 1)`` multiply-adds for ``full``: half of the
Cholesky formulation's ``N K D^2``.

Layout: blocks are kept *feature-major* -- ``Phi.T`` of shape (F, n) and the log-joint
of shape (K, n) -- so that every elementwise step (building quadratic features, the row
maximum, the exponential, the sum over components, the scaling) runs over long
contiguous vectors instead of numpy's slow inner loops over K or F columns.  The
responsibilities are never divided by their row sum: the per-row scale ``w / sum`` is
applied to whichever of the (K, n) or (F, n) blocks is smaller, and the statistics GEMM
absorbs it.  Only (F x n) and (K x n) blocks exist, never an (N x K) array.

For ``tied`` the quadratic term is shared by all components: it is one whitening GEMM
``U.T @ Xc.T`` per block (``D^2`` per row instead of ``K D^2 / 2``), and the pooled
second moment is one ``Xc.T @ Xc`` that does not depend on the responsibilities.

For ``full`` with many features and few components (D = 64, K = 16) the packed block
costs more than it saves: building ``D (D + 1) / 2`` products per row and two GEMMs with
only K rows.  There (:func:`whitened_evaluation`, a measured cost model) every component
is whitened instead -- one ``[U_k' | -U_k' (mu_k - ref)] @ [xc; 1]`` GEMM and a column
norm each -- and the second moments are one SYRK of ``xc sqrt(r_k)`` per component,
skipping rows whose responsibility is provably negligible.  The probes, the accuracy
fallbacks and the statistics' centres are those of the expansion.

Precision: the expansion around one reference point cancels terms as large as
``|x - ref|' |P| |x - ref|``.  :func:`kernel_coefficients` measures the resulting
error at probe points of every component and picks the cheapest accurate evaluation:
float32 expansion (float32 data, error within 1e-5 of the log-densities), float64
expansion, or -- for near-singular or very distant components -- those components
centred on their own means (scikit-learn's formulation), their rows of the expansion
GEMM's output overwritten, while every other component keeps the one GEMM.  The
statistics of the components
whose own probes show the error (except for tied, whose pooled second moment does not
depend on the responsibilities) are then also taken around their current means
(``SuffStats.reference`` row ``k``), so the M-step's ``S / n - m m'`` has ``m ~ 0`` at
convergence and cancels nothing on a near-singular direction; the other components keep
the one statistics GEMM around the shared reference.  Statistics
are always returned in float64.

With numba installed, full, tied, diagonal and spherical covariances at few features and
few enough components (:data:`FUSED_BANDS`) skip all of the above:
:mod:`gmmkit.core._fused_jit` evaluates each component centred on its own mean,
exponentiates, normalises and sums the statistics tile by tile in one compiled pass,
with an ``exp`` and a ``log`` of its own that vectorise.  There the numpy kernel is
bound by its passes over the (F, n) and (K, n) blocks, not by arithmetic (1-D, two
components: 11-14 ns a row against 5-6 fused; pixels D=3 K=20: 58-82 against 36-40),
and the centred form needs no probes and has no slow path for tight or distant
components.  :func:`score_chunk`, :func:`predict_chunk`, :func:`proba_chunk` and
:func:`map_log_resp_chunk` take a per-row variant of it (each row shifted by its own
largest log-joint), except for rows beyond :data:`FAR_LOG_JOINT`, which they evaluate
here exactly.

Threads: block GEMMs call ``np.dot``, not ``@``: numpy's matmul holds the GIL for
small-output products such as the (F, n) @ (n, K) statistics, which serialised the
engine's worker threads (measured 1.0x on two threads, ``np.dot`` 1.5-2x).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache, cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gmmkit import _jit
from gmmkit.core._workspace import as_float64, workspace
from gmmkit.core.covariance import CovarianceType, get_covariance_type, log_2pi, pack_symmetric
from gmmkit.core.covariance._base import compiled_operand
from gmmkit.core.params import MixtureParams
from gmmkit.core.suffstats import SuffStats, worst_row

Array = NDArray[np.floating[Any]]


#: The expansion around one reference point adds and cancels terms as large as
#: ``|x - ref|' |P| |x - ref|``, so it loses accuracy for components far from the
#: reference (in their own widths) or with near-singular covariances.  Each iteration
#: measures the rounding error of the expansion at probe points of every component
#: (:func:`expansion_error`, relative to the size of the log-densities there).  float32
#: computes only while that error is below ``FLOAT32_TOLERANCE`` -- the float32 target
#: for the log-likelihood; it is a per-row maximum, the mean error measures 3-1000x
#: smaller -- and float64 expands while it is below ``FLOAT64_TOLERANCE``, otherwise it
#: evaluates every component centred on its own mean, as scikit-learn does (K small
#: GEMMs instead of one large one).
FLOAT32_TOLERANCE = 1e-5
FLOAT64_TOLERANCE = 1e-12

#: Probe directions (in each component's whitened coordinates), scaled to the radius
#: ``sqrt(D)`` where a component's own rows lie.
_PROBES_PER_COMPONENT = 4


@dataclass(frozen=True, eq=False)
class KernelCoefficients:
    """Everything the chunk kernel needs, derived once per EM iteration from parameters.

    Attributes
    ----------
    covariance : CovarianceType
    reference : ndarray of shape (D,), float64
        Centre of the features (the weighted mean of the component means).
    reference_compute : ndarray of shape (D,), compute dtype
    stats_reference : ndarray of shape (K, D), float64
        Point each component's statistics are taken around: its own mean for the
        components in ``own_centred``, so that the M-step's ``S / n - m m'`` cancels
        nothing; the shared reference otherwise (one GEMM for all of them).
    quadratic : bool
        Whether blocks carry the packed quadratic features: False when every component
        is evaluated and accumulated centred on its own mean (small passes, wide data),
        and ``weights_t`` then holds only the linear and constant columns.
    params : MixtureParams or None
        The parameters the coefficients came from: rows far from every component are
        evaluated again from them (:func:`_far_log_joint`).
    own_centred : ndarray of int or None
        Components whose expansion around the shared reference loses accuracy (probe
        error above :data:`FLOAT64_TOLERANCE`): their statistics are accumulated around
        their own means.  ``None`` when there are none, and always for tied (its pooled
        second moment does not depend on the responsibilities).
    dtype : numpy dtype
        Compute dtype (float32 or float64).
    weights_t : ndarray of shape (K, Q + D + 1), or (K, D + 1) when tied
        Coefficients of the feature column ``[q(xc); xc; 1]`` (the last column holds the
        constants), C-contiguous: the E-step GEMM's left operand.
    whitening : ndarray of shape (D, D) or None
        ``U.T`` with ``U`` the tied precision Cholesky factor: ``-0.5 |U.T xc|^2`` is the
        shared quadratic term (tied only).
    centred_factors, centred_offsets, centred_constants : ndarray or None
        Set when the expansion would lose accuracy for some component (probe error
        above :data:`FLOAT64_TOLERANCE`) or is skipped (small or wide passes): the
        precision Cholesky factors, ``mu_k - reference`` (K, D) and ``log pi_k +
        log det U_k - D/2 log 2 pi`` (K,) of every component, for per-component
        centred evaluation.  Evaluating every component this way is always exact.
    centred_components : ndarray of int or None
        With ``centred_offsets`` set, the components the kernel evaluates centred on
        their own means; the others keep the one expansion GEMM (``weights_t`` then
        holds every component's quadratic coefficients).  ``None``: all of them.
    whitened, whitened_constants : ndarray of shape (K, D, D + 1) and (K,), or None
        Set for full covariances with many features (:func:`whitened_evaluation`):
        ``A_k = [U_k' | -U_k' (mu_k - ref)]`` and ``log pi_k + log det U_k - D/2 log 2 pi``,
        so that ``whitened_constants[k] - |A_k [xc; 1]|^2 / 2`` is component ``k``'s
        log-joint.  The kernel's blocks then carry only ``[xc; 1]`` and every component
        not in ``centred_components`` is evaluated by one (D, D + 1) x (D + 1, n) GEMM;
        ``weights_t`` keeps the expansion (the probes and the torch engine use it).
    centred_white_offsets : ndarray of shape (K, D) or None
        Tied only, set when its probes show it accurate: ``U' (mu_k - ref)``, so that the
        centred evaluation whitens the block once, ``U' xc``, and subtracts each
        component's row (:func:`_centred_log_joint_t`) instead of one (D, D) GEMM per
        component.
    """

    covariance: CovarianceType
    reference: NDArray[np.float64]
    reference_compute: Array
    stats_reference: NDArray[np.float64]
    dtype: np.dtype
    weights_t: Array
    whitening: Array | None = None
    centred_factors: Array | None = None
    centred_offsets: Array | None = None
    centred_constants: Array | None = None
    own_centred: NDArray[np.intp] | None = None
    params: MixtureParams | None = None
    quadratic: bool = True
    centred_components: NDArray[np.intp] | None = None
    whitened: Array | None = None
    whitened_constants: Array | None = None
    centred_white_offsets: Array | None = None

    @property
    def n_components(self) -> int:
        return int(self.weights_t.shape[0])

    @cached_property
    def in_float64(self) -> KernelCoefficients:
        """The same parameters' coefficients computing in float64 (these when they do):
        for evaluations whose corrections assume the float64 kernel's accuracy (the
        Schur form of :mod:`gmmkit.core.missing`), derived once per set of
        coefficients."""
        if self.dtype == np.float64 or self.params is None:
            return self
        return kernel_coefficients(self.params, np.float64)

    @cached_property
    def fused_operands(
        self,
    ) -> tuple[NDArray[np.float64], Array, NDArray[np.float64], NDArray[np.float64]]:
        """The fused kernel's operands (:func:`_fused_statistics`): the means (K, D),
        the precision Cholesky factors, ``log pi_k + log det U_k - D/2 log 2 pi`` (K,)
        and ``stats_reference`` (K, D), C-contiguous writeable float64 (derived once
        per set of coefficients, not per block)."""
        params = self.params
        assert params is not None
        if self.centred_constants is not None and self.centred_constants.dtype == np.float64:
            constants = self.centred_constants  # the same expression
        else:
            d = params.n_features
            log_det = self.covariance.log_det_cholesky(params.precisions_cholesky, d)
            with np.errstate(divide="ignore"):
                constants = np.log(params.weights) + log_det - 0.5 * d * log_2pi()
        # (copies only where read-only or not C-ordered float64: numba compiles those
        # apart)
        return (
            compiled_operand(params.means),
            compiled_operand(params.precisions_cholesky),
            compiled_operand(constants),
            compiled_operand(self.stats_reference),
        )

    @cached_property
    def unshifted_exp(self) -> bool:
        """Whether the kernel exponentiates log-joints as they are, without shifting each
        row by its largest (:func:`_exp_log_joint`): float64 only, when every
        component's peak log-density is low enough that no row's density sum can leave
        the window of :data:`_UNSHIFTED_SUM` upwards, and the mixture's rows typically
        lie inside it.  Rows that do not are evaluated again with the shift, so this
        only decides which of the two is tried first.

        float32 keeps the shifted form, which the torch engine evaluates alike: its
        log-densities round differently unshifted (1e-7 relative), enough to flip a
        SQUAREM step's acceptance and part the two engines' float32 fits by 1e-4."""
        params = self.params
        if params is None or self.dtype != np.float64:
            return False
        low, high = np.log(_UNSHIFTED_SUM)
        d = params.n_features
        log_det = self.covariance.log_det_cholesky(params.precisions_cholesky, d)
        with np.errstate(divide="ignore"):
            peaks = np.log(params.weights) + log_det - 0.5 * d * log_2pi()
        if not np.all(np.isfinite(peaks)):
            return False
        # a row of component k lies about D / 2 below its peak (chi-square / 2)
        typical = float(params.weights @ peaks) - d
        return bool(peaks.max() + np.log(len(peaks)) <= high and typical >= low)


#: With at most this many rows x components in a pass, the kernel evaluates every
#: component centred on its own mean without probing the expansion first: the probes
#: (a few solves per component) cost more than the whole pass on such data.
EXACT_WORK = 20_000

#: With more packed quadratic features than this (``D > 511`` for full and tied) the
#: kernel evaluates every component centred on its own mean: a block of ``D (D + 1) /
#: 2`` features per row costs 16 MB a row at ``D = 2000`` (GBs for a block), while the
#: centred evaluation is ``K`` GEMMs on (D, n) blocks, as fast per flop.
WIDE_QUADRATIC = 2**17


def kernel_coefficients(
    params: MixtureParams,
    dtype: np.dtype | type = np.float64,
    n_rows: int | None = None,
    fused: bool = False,
) -> KernelCoefficients:
    """Feature coefficients of the weighted log-densities of all components.

    Parameters
    ----------
    params : MixtureParams
    dtype : float32 or float64
        The dtype the kernel computes in; statistics are always returned in float64.
        float32 falls back to float64 when it would lose accuracy (see
        :data:`FLOAT32_TOLERANCE`); float32 rows are then converted block by block.
    n_rows : int, optional
        Rows of the pass; small passes (:data:`EXACT_WORK`) take the exact centred
        evaluation in float64 directly.
    fused : bool
        The pass's blocks go to the fused compiled kernel
        (:meth:`gmmkit.engines.base.Engine.fused_passes`), which evaluates every
        component centred on its own mean and reads only the parameters and
        ``stats_reference``: the exact centred coefficients are taken directly, without
        the expansion's probes (80-160 us a pass, 3-5 % of an EM iteration of 800k
        1-D rows), and every component's moments are summed around its own mean.  Any
        block that does reach the numpy kernel (rows far from every component) is
        evaluated exactly by them, so this only decides speed.
    """
    cov = get_covariance_type(params.covariance_type)
    d = params.n_features
    reference = params.weights @ params.means
    centred = params.means - reference
    precision_means = cov.precision_times(params.precisions_cholesky, centred)  # (K, D)
    log_det = cov.log_det_cholesky(params.precisions_cholesky, d)
    with np.errstate(divide="ignore"):
        log_weights = np.log(params.weights)
    # (mu_k - ref)' P_k (mu_k - ref): the size of the terms the expansion cancels at
    # the component's own rows
    spread = np.sum(centred * precision_means, axis=1)
    peaks = log_weights + log_det - 0.5 * d * log_2pi()
    constants = peaks - 0.5 * spread
    if (
        fused
        or (n_rows is not None and n_rows * params.n_components <= EXACT_WORK)
        or cov.n_quadratic(d) > WIDE_QUADRATIC
    ):
        return _exact_coefficients(params, cov, reference, centred, precision_means, peaks,
                                   constants)
    linear = np.vstack([precision_means.T, constants[None, :]])
    # wide full covariances: the numpy kernel whitens every component instead of
    # building packed quadratic features (the expansion stays for probes and torch)
    whiten = whitened_evaluation(cov.layout, d, params.n_components)
    # tied evaluates its shared quadratic term by whitening, not by packed features
    weights_matrix = (
        linear
        if cov.shared_quadratic
        else np.vstack([cov.quadratic_coefficients(params.precisions_cholesky), linear])
    )

    def build(
        compute: np.dtype, per_component: bool, inaccurate: NDArray[np.bool_] | None = None
    ) -> KernelCoefficients:
        extra: dict[str, Any] = {}
        # every component centred: blocks need no quadratic features
        no_quadratic = per_component and inaccurate is not None and bool(inaccurate.all())
        if whiten and not no_quadratic:
            extra |= _whitened_fields(params, centred, log_weights + log_det, compute)
        if inaccurate is not None and inaccurate.any() and not cov.shared_quadratic:
            stats_reference = np.where(inaccurate[:, None], params.means, reference)
            extra["own_centred"] = np.flatnonzero(inaccurate)
        else:
            stats_reference = np.tile(reference, (params.n_components, 1))
        if per_component:
            if inaccurate is not None and not inaccurate.all():
                # only the inaccurate components pay for the centred evaluation
                extra["centred_components"] = np.flatnonzero(inaccurate)
            extra |= {
                "centred_factors": np.ascontiguousarray(params.precisions_cholesky, compute),
                "centred_offsets": np.ascontiguousarray(centred, dtype=compute),
                "centred_constants": peaks.astype(compute),
            }
        return KernelCoefficients(
            covariance=cov,
            reference=reference,
            reference_compute=reference.astype(compute),
            stats_reference=stats_reference,
            dtype=compute,
            weights_t=np.ascontiguousarray(
                (linear if no_quadratic else weights_matrix).T, dtype=compute
            ),
            whitening=(
                np.ascontiguousarray(params.precisions_cholesky.T, dtype=compute)
                if cov.shared_quadratic
                else None
            ),
            params=params,
            quadratic=not no_quadratic,
            **extra,
        )

    probes = _probe_rows(params)
    single = np.dtype(dtype) == np.float32
    if single:
        # both checks at the points the float32 kernel sees: one exact evaluation
        probes = (probes[0].astype(np.float32).astype(np.float64), probes[1])
    exact_at_probes = _centred_at_probes(params, probes)
    if single and not _float32_hopeless(spread, exact_at_probes):
        coefs = build(np.dtype(np.float32), False)
        if np.max(_probe_errors(coefs, probes, exact_at_probes), initial=0.0) <= (
            FLOAT32_TOLERANCE
        ):
            return coefs
    double = build(np.dtype(np.float64), False)
    inaccurate = _probe_errors(double, probes, exact_at_probes) > FLOAT64_TOLERANCE
    if not np.any(inaccurate):
        return double
    exact_centred = build(np.dtype(np.float64), True, inaccurate)
    if cov.layout == "tied":
        # whitening the block once and subtracting each component's U' (mu_k - ref)
        # where that is accurate too: one GEMM instead of one per component (a shared
        # covariance of condition number 3e7, K=20, D=9: every component failed the
        # expansion's probes, and the pass took 6x the time of D=8 or D=10)
        white_offsets = centred @ params.precisions_cholesky
        errors = _white_centred_errors(
            params, reference, white_offsets, exact_centred.centred_constants, probes,
            exact_at_probes)
        if np.all(errors[inaccurate] <= FLOAT64_TOLERANCE / _WHITE_CENTRED_MARGIN):
            return replace(exact_centred, centred_white_offsets=white_offsets)
    return exact_centred


def _exact_coefficients(
    params: MixtureParams,
    cov: CovarianceType,
    reference: NDArray[np.float64],
    centred: NDArray[np.float64],
    precision_means: Array,
    peaks: Array,
    constants: Array,
) -> KernelCoefficients:
    """:func:`kernel_coefficients` where every component is evaluated centred on its own
    mean in float64 (fused, small and wide passes): no quadratic coefficients, no
    probes, and each component's statistics around its own mean (tied: the shared
    reference).  ``peaks``: ``log pi_k + log det U_k - D/2 log 2 pi``; ``constants``:
    ``peaks - (mu_k - ref)' P_k (mu_k - ref) / 2``.  Built directly (a fused pass of
    a small data set costs a few microseconds of arithmetic and tens of numpy calls)."""
    k, d = params.n_components, params.n_features
    weights_t = np.empty((k, d + 1))
    weights_t[:, :d] = precision_means
    weights_t[:, d] = constants
    if cov.shared_quadratic:
        stats_reference = np.tile(reference, (k, 1))
        whitening = np.ascontiguousarray(params.precisions_cholesky.T, dtype=np.float64)
        own_centred = None
    else:
        stats_reference = np.array(params.means, dtype=np.float64)
        whitening = None
        own_centred = np.arange(k, dtype=np.intp)
    return KernelCoefficients(
        covariance=cov,
        reference=reference,
        reference_compute=reference.astype(np.float64),
        stats_reference=stats_reference,
        dtype=np.dtype(np.float64),
        weights_t=weights_t,
        whitening=whitening,
        centred_factors=np.ascontiguousarray(params.precisions_cholesky, np.float64),
        centred_offsets=np.ascontiguousarray(centred, dtype=np.float64),
        centred_constants=peaks,
        own_centred=own_centred,
        params=params,
        quadratic=False,
    )


def kept_coefficients(
    params: MixtureParams, dtype: np.dtype | type = np.float64, fused: bool = False
) -> KernelCoefficients:
    """:func:`kernel_coefficients` of a fitted model's parameters, kept between calls.

    Every ``predict``, ``score_samples`` or ``predict_proba`` derives them once: a
    one-row ``score_samples`` (D=3, K=5) spent about 100 of its 500 us there.  They are
    kept in ``params.derived()`` (they go with the parameters), and reused while its
    arrays hold the values they had: the fitted attributes are those arrays, which a
    user may change in place, so they are compared on every call (``K D^2`` values, well
    under deriving them).
    """
    arrays = (params.weights, params.means, params.covariances, params.precisions_cholesky)
    key = ("kernel_coefficients", np.dtype(dtype).str, bool(fused))
    kept = params.derived().get(key)
    if kept is not None and all(
        np.array_equal(now, then) for now, then in zip(arrays, kept[0], strict=True)
    ):
        return kept[1]
    coefs = kernel_coefficients(params, dtype, fused=fused)
    params.derived()[key] = (tuple(np.array(a) for a in arrays), coefs)
    return coefs


#: The tied centred evaluation that whitens once is taken only where its probe errors
#: stay this many times below :data:`FLOAT64_TOLERANCE`: its rounding grows with the
#: rows' distance from the reference, which the probes (at each component's own rows)
#: sample less evenly than the expansion's -- on one test mixture a row's error was 3.4x
#: the largest probe's.
_WHITE_CENTRED_MARGIN = 4.0


def _white_centred_errors(
    params: MixtureParams,
    reference: NDArray[np.float64],
    white_offsets: NDArray[np.float64],
    constants: Array | None,
    probes: tuple[NDArray[np.float64], NDArray[np.intp]],
    exact: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Probe errors (as :func:`_probe_errors`) of the tied centred evaluation that
    whitens once, ``constants_k - |U' (x - ref) - U' (mu_k - ref)|^2 / 2``
    (``white_offsets`` (K, D) the second term's rows), per component."""
    rows, owner = probes
    assert constants is not None
    white = (rows - reference) @ params.precisions_cholesky
    white -= white_offsets[owner]
    got = constants[owner] - 0.5 * np.einsum("pd,pd->p", white, white)
    return _errors_by_owner(got, exact, owner, params.n_components)


#: The float32 expansion is not even tried when storing one component's constant in
#: float32 alone (relative rounding ``2^-24``, of half its spread) would be this many
#: times :data:`FLOAT32_TOLERANCE` of the log-densities: its probe check could not pass
#: (digits, K = 100: 0.6-1.5 of the scale in the 7 of 9 passes that fell back, below
#: 5e-7 in the two that computed in float32).
_FLOAT32_HOPELESS = 100.0


def _float32_hopeless(spread: Array, exact_at_probes: NDArray[np.float64]) -> bool:
    """Whether some component's ``(mu - ref)' P (mu - ref)`` (``spread``, (K,)) is so
    large that float32 rounding of the terms the expansion cancels would be far beyond
    :data:`FLOAT32_TOLERANCE` of the probes' log-densities (``exact_at_probes``).  A
    wrong True only costs speed: float64 is then used, which is never less accurate."""
    largest = float(np.max(spread, initial=0.0))  # NaN: False below, float32 is probed
    rounding = 0.5 * largest * 2.0**-24
    return bool(rounding > _FLOAT32_HOPELESS * FLOAT32_TOLERANCE * _probe_scale(exact_at_probes))


#: Per-row costs of the two full-covariance evaluations (E-step and statistics), in units
#: of one multiply-add of the expansion GEMMs, fitted to one-thread timings of
#: :func:`chunk_statistics` at D = 16..128, K = 4..64 with dense responsibilities
#: (benchmarks/README.md, "Wide features"):
#: building one packed product costs ~34 units (written to memory and read back by
#: both GEMMs), so the expansion costs ``F (34 + K)`` with ``F = D (D + 1) / 2 + D + 1``;
#: whitening costs per component ``0.59 D^2`` (its GEMM and SYRK, which use no
#: symmetry in the E-step) ``+ 40 D`` (column norms, scaling) ``+ 80``.
_PACKED_FEATURE_COST = 34.0
_WHITEN_GEMM_COST = 0.59
_WHITEN_PASS_COST = 40.0
_WHITEN_CALL_COST = 80.0

#: Below this many features the expansion's blocks are small and per-call overheads
#: (not in the cost model) decide; measured D = 8, K = 4: whitening 1.25x slower.
WHITEN_MIN_FEATURES = 16


def whitened_evaluation(layout: str, n_features: int, n_components: int) -> bool:
    """Whether the numpy kernel evaluates ``layout`` by whitening each component
    (:attr:`KernelCoefficients.whitened`) rather than by packed quadratic features.

    The expansion builds ``D (D + 1) / 2`` packed products per row (a cost independent
    of K) and runs two skinny (K, F) x (F, n) GEMMs; whitening runs K well-shaped GEMMs
    with twice the E-step flops and one SYRK per component for the statistics.  So
    whitening wins for wide data with few components: D = 32 up to K = 13, D = 64 up to
    K = 25, D = 128 up to K = 43 (measured: D = 64, K = 16 1.5x faster with dense
    responsibilities, 2x when they are sparse; D = 32, K = 16 even; D = 16, K = 32 2.2x
    slower).

    Parameters
    ----------
    layout : str
        Covariance layout ("full", "tied", "diag", "spherical").
    n_features : int
    n_components : int

    Returns
    -------
    bool
    """
    d, k = n_features, n_components
    if layout != "full" or d < WHITEN_MIN_FEATURES:
        return False
    packed = d * (d + 1) // 2 + d + 1
    whitening = k * (_WHITEN_GEMM_COST * d * d + _WHITEN_PASS_COST * d + _WHITEN_CALL_COST)
    return whitening < packed * (_PACKED_FEATURE_COST + k)


def _whitened_fields(
    params: MixtureParams,
    centred: NDArray[np.float64],
    log_norms: NDArray[np.float64],
    compute: np.dtype,
) -> dict[str, Array]:
    """``whitened`` and ``whitened_constants`` of :class:`KernelCoefficients`.

    ``centred`` (K, D): ``mu_k - ref``; ``log_norms`` (K,): ``log pi_k + log det U_k``."""
    factors_t = np.swapaxes(params.precisions_cholesky, 1, 2)  # U_k'
    shifts = np.matmul(factors_t, centred[:, :, None])  # U_k' (mu_k - ref): (K, D, 1)
    return {
        "whitened": np.ascontiguousarray(np.concatenate([factors_t, -shifts], axis=2), compute),
        "whitened_constants": (log_norms - 0.5 * params.n_features * log_2pi()).astype(compute),
    }


@cache
def _probe_directions(n_features: int) -> NDArray[np.float64]:
    """Fixed probe directions in whitened coordinates, (P, D), at radius ``sqrt(D)``."""
    directions = np.random.default_rng(0).normal(size=(_PROBES_PER_COMPONENT // 2, n_features))
    directions *= np.sqrt(n_features) / np.linalg.norm(directions, axis=1, keepdims=True)
    z = np.vstack([directions, -directions])
    z.setflags(write=False)
    return z


def _probe_rows(params: MixtureParams) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Points at whitened radius ``sqrt(D)`` around every component's mean, (K * P, D),
    and the component each belongs to."""
    k, d = params.n_components, params.n_features
    z = _probe_directions(d)
    chol = params.precisions_cholesky
    if params.layout in ("full", "tied"):
        # x - mu = U^-T z = Sigma U z, so that |U' (x - mu)| = |z| (to rounding: only
        # the probes' places depend on it, and multiplying costs a fraction of solving)
        mats = np.broadcast_to(np.matmul(params.covariances, chol), (k, d, d))
        offsets = np.matmul(z, np.swapaxes(mats, 1, 2))  # (K, P, D)
    elif params.layout == "diag":
        offsets = z[None, :, :] / chol[:, None, :]
    else:
        offsets = z[None, :, :] / chol[:, None, None]
    rows = (params.means[:, None, :] + offsets).reshape(-1, d)
    owner = np.repeat(np.arange(k), len(z))
    return rows, owner


def expansion_error(coefs: KernelCoefficients, params: MixtureParams) -> float:
    """Largest rounding error of the kernel's log-densities at probe points.

    Every component is probed at a few points where its own rows lie; the kernel's
    value there (in its compute dtype, from the expansion around the reference) is
    compared with the centred float64 evaluation at the same (rounded) points.

    Returns
    -------
    float
        Maximum absolute error divided by ``max(1, mean |log-density|)`` at the probes.
    """
    errors = expansion_errors(coefs, params)
    return float(errors.max()) if len(errors) else 0.0


def expansion_errors(
    coefs: KernelCoefficients,
    params: MixtureParams,
    probes: tuple[NDArray[np.float64], NDArray[np.intp]] | None = None,
) -> NDArray[np.float64]:
    """Per-component :func:`expansion_error`, shape (K,): the largest error at each
    component's own probes over the common scale (0 where none is finite).

    ``probes``: :func:`_probe_rows` of ``params`` when already at hand."""
    rows, owner = _probe_rows(params) if probes is None else probes
    rows = rows.astype(coefs.dtype).astype(np.float64)  # the points the kernel sees
    return _probe_errors(coefs, (rows, owner), _centred_at_probes(params, (rows, owner)))


def _centred_at_probes(
    params: MixtureParams, probes: tuple[NDArray[np.float64], NDArray[np.intp]]
) -> NDArray[np.float64]:
    """Each probe's owner's weighted log-density there, centred on its mean in float64
    (the reference the expansion is checked against), shape (K * P,)."""
    rows, owner = probes
    diff = rows - params.means[owner]
    chol = params.precisions_cholesky
    if params.layout == "full":
        # probes are grouped by component: (K, P, D) @ (K, D, D), no (K P, D, D) copy
        per = len(owner) // params.n_components
        y = np.matmul(diff.reshape(params.n_components, per, -1), chol).reshape(len(owner), -1)
    elif params.layout == "tied":
        y = diff @ chol
    elif params.layout == "diag":
        y = diff * chol[owner]
    else:
        y = diff * chol[owner][:, None]
    log_det = get_covariance_type(params.covariance_type).log_det_cholesky(
        chol, params.n_features
    )
    log_det = np.broadcast_to(log_det, (params.n_components,))
    with np.errstate(divide="ignore"):
        return (
            np.log(params.weights[owner])
            + log_det[owner]
            - 0.5 * params.n_features * log_2pi()
            - 0.5 * np.sum(y * y, axis=1)
        )


def _probe_errors(
    coefs: KernelCoefficients,
    probes: tuple[NDArray[np.float64], NDArray[np.intp]],
    exact: NDArray[np.float64],
) -> NDArray[np.float64]:
    """:func:`expansion_errors` at probe rows already rounded to ``coefs.dtype``, against
    their :func:`_centred_at_probes` values ``exact``."""
    rows, owner = probes
    n_components = coefs.n_components
    d = rows.shape[1]
    phi_t = _features_t(
        coefs.covariance, rows, coefs.reference_compute, coefs.dtype, coefs.whitening is None
    )
    # the kernel's products, each component with its own probes only (grouped by
    # component, as _probe_rows makes them): (K, 1, F) @ (K, F, P) in one call
    per = len(owner) // n_components
    got = np.matmul(
        coefs.weights_t[:, None, :],
        phi_t.reshape(len(phi_t), n_components, per).transpose(1, 0, 2),
    ).reshape(-1)
    if coefs.whitening is not None:
        white = (coefs.whitening @ phi_t[:d]).astype(np.float64)
        got += (-0.5 * np.sum(white * white, axis=0)).astype(coefs.dtype)
    return _errors_by_owner(got, exact, owner, n_components)


def _errors_by_owner(
    got: Array, exact: NDArray[np.float64], owner: NDArray[np.intp], n_components: int
) -> NDArray[np.float64]:
    """Each component's largest ``|got - exact|`` over its own probes, over the common
    scale (:func:`_probe_scale`; 0 where none is finite)."""
    finite = np.isfinite(exact)
    errors = np.zeros(n_components)
    if not np.any(finite):
        return errors
    scale = _probe_scale(exact)
    np.maximum.at(errors, owner[finite], np.abs(got[finite] - exact[finite]) / scale)
    return errors


def _probe_scale(exact: NDArray[np.float64]) -> float:
    """The common scale of the probe errors: ``max(1, mean |log-density|)`` over the
    finite :func:`_centred_at_probes` values (1 when none is)."""
    finite = exact[np.isfinite(exact)]
    return max(1.0, float(np.mean(np.abs(finite)))) if len(finite) else 1.0


# --------------------------------------------------------------------------- features
def _features_t(
    cov: CovarianceType,
    X: Array,
    reference: Array,
    dtype: np.dtype,
    quadratic: bool,
    slot: str | None = None,
) -> Array:
    """Feature-major block ``[q(xc); xc; 1]`` of shape (F, n); without ``q`` if not
    ``quadratic``.  ``slot``: the block lives in that :func:`workspace` slot (it must
    not outlive the caller) instead of a fresh array."""
    n, d = X.shape
    phi_t, xc_t = _feature_block_t(cov, n, d, dtype, quadratic, slot)
    np.subtract(X.T, reference[:, None], out=xc_t, casting="unsafe")
    _complete_features_t(cov, phi_t, d)
    return phi_t


def _feature_block_t(
    cov: CovarianceType, n: int, d: int, dtype: np.dtype, quadratic: bool,
    slot: str | None = None,
) -> tuple[Array, Array]:
    """An empty feature-major block of :func:`_features_t` for ``n`` rows, and its
    ``xc`` rows (D, n) (a view), for a caller that writes ``xc`` itself and then calls
    :func:`_complete_features_t`."""
    q = cov.n_quadratic(d) if quadratic else 0
    shape = (q + d + 1, n)
    phi_t = np.empty(shape, dtype=dtype) if slot is None else workspace(slot, shape, dtype)
    return phi_t, phi_t[q : q + d]


def _complete_features_t(cov: CovarianceType, phi_t: Array, d: int) -> None:
    """The constant row and the quadratic rows (if the block has them) of a feature
    block whose ``xc`` rows are written."""
    q = phi_t.shape[0] - d - 1
    xc_t = phi_t[q : q + d]
    phi_t[q + d] = 1.0
    if q:
        quad_t = phi_t[:q]
        name = cov.layout
        if name in ("full", "tied"):
            start = 0
            for i in range(d):
                np.multiply(xc_t[i], xc_t[i:], out=quad_t[start : start + d - i])
                start += d - i
        elif name == "diag":
            np.multiply(xc_t, xc_t, out=quad_t)
        else:
            # F-ordered views keep the covariance class's own definition usable here
            cov.quadratic_features(xc_t.T, quad_t.T)


def features(cov: CovarianceType, X: Array, reference: Array, dtype: np.dtype) -> Array:
    """Feature block ``[q(x - ref), x - ref, 1]`` of shape (n, Q + D + 1).

    The result is a Fortran-ordered view of the kernel's feature-major block.
    """
    return _features_t(cov, X, reference, np.dtype(dtype), quadratic=True).T


#: :func:`workspace` slots of a kernel call's feature block (F, n) and log-joint block
#: (K, n), and of their float64 copies for the statistics GEMM (float32 blocks).  The
#: entry points (:func:`chunk_statistics`, :func:`score_chunk`, ...) take their blocks
#: from these and return nothing that lives in them; a nested evaluation of some rows
#: again (:func:`_exp_log_joint`) takes fresh arrays.
_FEATURES = "kernel.features"
_LOG_JOINT = "kernel.log_joint"
_FEATURES64 = "kernel.features64"
_LOG_JOINT64 = "kernel.log_joint64"


def _log_joint_t(
    coefs: KernelCoefficients,
    X: Array,
    floored: NDArray[np.intp] | None = None,
    features_slot: str | None = None,
    log_joint_slot: str | None = None,
) -> tuple[Array, Array]:
    """``log(pi_k N(x | k))`` as a (K, n) block, and the feature block it came from.

    For ``tied`` the feature block is ``[xc; 1]`` of shape (D + 1, n); otherwise the
    full ``[q(xc); xc; 1]``.  ``features_slot``, ``log_joint_slot``: :func:`workspace`
    slots the blocks live in (fresh arrays by default).
    """
    # rows far out may overflow here; :func:`_repair_far_rows` evaluates them again
    with np.errstate(over="ignore", invalid="ignore"):
        phi_t = _features_t(
            coefs.covariance, X, coefs.reference_compute, coefs.dtype, _quadratic(coefs),
            features_slot,
        )
        log_prob = _log_joint_of_features_t(coefs, phi_t, X.shape[1], floored, log_joint_slot)
        return log_prob, phi_t


def _quadratic(coefs: KernelCoefficients) -> bool:
    """Whether the kernel's feature blocks for these coefficients carry the packed
    quadratic rows."""
    return coefs.whitening is None and coefs.quadratic and coefs.whitened is None


def _log_joint_of_features_t(
    coefs: KernelCoefficients,
    phi_t: Array,
    d: int,
    floored: NDArray[np.intp] | None = None,
    slot: str | None = None,
) -> Array:
    """(K, n) log-joint from a feature-major block ``[q(xc); xc; 1]`` (the quadratic rows
    may be absent for tied, which whitens ``xc`` instead).

    ``floored``: the caller only uses the block through ``exp(max(. - column max,
    floor))`` (:func:`_exp_shifted_in_place`) or, where the column's density sum is
    at least ``exp(-460)``, ``exp(max(., floor))`` (:func:`_exp_log_joint`), except at
    the columns listed (possibly empty): the centred evaluation then skips the entries
    that provably fall more than the floor below their column's largest
    (:func:`_screened_centred_log_joint_t`); either way such an entry weighs at most
    ``exp(-140)`` of its column's sum.

    ``slot``: the (K, n) block lives in that :func:`workspace` slot (a fresh array by
    default)."""
    q = phi_t.shape[0] - d - 1
    xc_t = phi_t[q : q + d]
    n = phi_t.shape[1]

    def block(dtype: np.dtype) -> Array:
        shape = (len(coefs.weights_t), n)
        return np.empty(shape, dtype=dtype) if slot is None else workspace(slot, shape, dtype)

    centred = coefs.centred_offsets is not None
    if centred and coefs.centred_components is None:
        return _centred_log_joint_t(coefs, phi_t[q:], out=block(phi_t.dtype))
    if coefs.whitened is not None:
        return _whitened_log_joint_t(coefs, phi_t[q:], block(phi_t.dtype))
    product = np.result_type(coefs.weights_t, phi_t)  # np.dot's result type
    screen = (
        floored is not None
        and coefs.whitening is None
        and coefs.params is not None
        and _screening_pays(coefs, d)
    )
    if coefs.whitening is None:
        rest = None if screen else _uncentred(coefs)
        if rest is None:
            log_prob = np.dot(coefs.weights_t, phi_t, out=block(product))
        else:
            # the expansion GEMM only for the rows the centred evaluation does not
            # overwrite (57 of 100 components on small near-singular fits)
            log_prob = block(phi_t.dtype)
            log_prob[rest] = np.dot(coefs.weights_t[rest], phi_t)
    else:
        white = workspace(
            "kernel.white", (len(coefs.whitening), n), np.result_type(coefs.whitening, xc_t)
        )
        np.dot(coefs.whitening, xc_t, out=white)
        np.multiply(white, white, out=white)
        quad = white.sum(axis=0)
        quad *= -0.5
        log_prob = np.dot(coefs.weights_t, phi_t[q:], out=block(product))
        log_prob += quad
    if centred and screen:
        assert floored is not None
        _screened_centred_log_joint_t(coefs, phi_t, d, log_prob, floored)
    elif centred:
        # the expansion's rows of the inaccurate components are replaced: one GEMM row
        # each is cheaper than splitting the GEMM by component
        _centred_log_joint_t(coefs, phi_t[q:], coefs.centred_components, log_prob)
    return log_prob


#: Largest ``K D n`` whitened values :func:`_whitened_log_joint_t` computes in one
#: stacked product (2 MiB in float64) rather than component by component.  D=64, K=16,
#: per ``score_samples`` call: 100 rows 649 -> 583 us; 1000 rows at 2^20 values were
#: slower (3.2 -> 3.4 ms).
_STACKED_WHITE = 1 << 18


def _whitened_log_joint_t(
    coefs: KernelCoefficients, linear_t: Array, out: Array | None = None
) -> Array:
    """(K, n) log-joint from the block ``[xc; 1]`` (D + 1, n) by whitening: one
    (D, D + 1) x (D + 1, n) GEMM and one column-norm pass per component
    (:attr:`KernelCoefficients.whitened`).

    ``coefs.centred_components`` are evaluated centred on their own means instead
    (:func:`_centred_log_joint_t`): the shift ``U_k' (mu_k - ref)`` inside the GEMM
    cancels terms as large as ``|U_k' (x - ref)|``, so the kernel's probe of the
    expansion (whose error grows with the square of that distance) bounds this one.
    ``out``: the (K, n) block to write (a fresh one by default)."""
    assert coefs.whitened is not None and coefs.whitened_constants is not None
    matrices, constants = coefs.whitened, coefs.whitened_constants
    n_components, d = matrices.shape[:2]
    if out is None:
        out = np.empty((n_components, linear_t.shape[1]), dtype=linear_t.dtype)
    rest = _uncentred(coefs)
    if rest is None and n_components * d * linear_t.shape[1] <= _STACKED_WHITE:
        # a few rows (one-row inference): every component in one stacked product, not
        # four numpy calls each (D=64, K=16, one row: ~100 us of calls)
        white_all = np.matmul(matrices, linear_t)
        np.einsum("kij,kij->kj", white_all, white_all, out=out)
        out *= -0.5
        out += constants[:, None]
        return out
    white = workspace("kernel.white", (d, linear_t.shape[1]), linear_t.dtype)
    for k in range(n_components) if rest is None else np.flatnonzero(rest):
        np.dot(matrices[k], linear_t, out=white)
        row = out[k]
        np.einsum("ij,ij->j", white, white, out=row)  # one pass, no squared copy
        row *= -0.5
        row += constants[k]
    if coefs.centred_components is not None:
        _centred_log_joint_t(coefs, linear_t, coefs.centred_components, out)
    return out


def _screening_pays(coefs: KernelCoefficients, d: int) -> bool:
    """Whether screening (about five passes over the (K, n) block) costs less than the
    centred evaluation it may save (``D^2 + 3 D`` per row and centred component): with
    many centred components (small near-singular fits), not with one tight component
    among many (large pixel data)."""
    centred = coefs.centred_components
    return centred is not None and len(centred) * d * (d + 3) > 5 * len(coefs.weights_t)


#: Absolute slack (in log units) added to the screening bound, beyond the floor of
#: :data:`_EXP_FLOOR`.
_SCREEN_MARGIN = 40.0


def _screened_centred_log_joint_t(
    coefs: KernelCoefficients,
    phi_t: Array,
    d: int,
    log_prob: Array,
    exact_columns: NDArray[np.intp],
) -> None:
    """Overwrite the rows of ``coefs.centred_components`` in ``log_prob`` (K, n), which
    holds the expansion's values of every component, with their centred values --
    except at entries that provably lie more than the exp floor below their column's
    largest log-joint, where ``exp(max(. - max, floor))`` is the floor whichever value
    they hold.

    The expansion's rounding error is bounded for component ``k`` and every row of the
    block by ``B_k = g |U_k|_F^2 (max |x - ref| + |mu_k - ref|)^2 + 1`` (``g`` four times
    the accumulated ``(F + 3 D + 10) eps`` of the precision products, coefficients,
    features and GEMM); ``L = max_k (value_k - B_k)`` lies below the column's largest
    log-joint, and an entry with
    ``value + B_k < L + floor - margin`` is skipped.  Columns whose largest value is not
    finite are evaluated in full, or repaired later (:func:`_repair_far_rows`).  The
    ``exact_columns`` are evaluated in full (labelled rows read their known component's
    value)."""
    params = coefs.params
    assert params is not None and coefs.centred_components is not None
    q = phi_t.shape[0] - d - 1
    xc_t = phi_t[q : q + d]
    n = xc_t.shape[1]
    if n == 0:
        return
    chol = params.precisions_cholesky
    layout = coefs.covariance.layout
    if layout == "full":
        frobenius = np.einsum("kij,kij->k", chol, chol)
    elif layout == "diag":
        frobenius = np.einsum("kj,kj->k", chol, chol)
    else:
        frobenius = d * chol**2
    gamma = 4.0 * (phi_t.shape[0] + 3 * d + 10) * float(np.finfo(np.float64).eps)
    largest_row = float(np.sqrt(np.max(np.einsum("ij,ij->j", xc_t, xc_t))))
    offset_norms = np.linalg.norm(params.means - coefs.reference, axis=1)
    components = coefs.centred_components
    with np.errstate(over="ignore", invalid="ignore"):
        bound = gamma * frobenius * (largest_row + offset_norms) ** 2 + 1.0  # (K,)
        # max_k (value_k - B_k) <= the column's largest log-joint (a max over the
        # leading axis runs along contiguous rows; argmax there is 5x slower); when the
        # bounds hardly differ (digits: 1.00-1.02), the column max less the largest
        # bound is as tight to within that spread and needs no (K, n) temporary
        if float(np.max(bound) - np.min(bound)) <= 1.0:
            lower = np.max(log_prob, axis=0)
            lower -= np.max(bound)
        else:
            lower = np.max(log_prob - bound[:, None], axis=0)
        lower += _EXP_FLOOR[np.dtype(np.float64)] - _SCREEN_MARGIN
        upper = _take_rows(log_prob, components, "kernel.screen_upper")
        upper += bound[components][:, None]
        # NaN (overflow) compares False: such entries are evaluated
        below = upper < lower
    needed = ~below
    # labelled rows read their known component's value: exact everywhere
    needed[:, exact_columns] = True
    groups, dense = _pair_groups(needed, n // 2)
    if len(dense):
        _centred_log_joint_t(coefs, phi_t[q:], components[dense], log_prob)
    for rows, cols, _ in groups:
        # padding repeats an entry with its own value
        log_prob[components[rows][:, None], cols] = _centred_log_joint_pairs(
            coefs, xc_t, components[rows], cols
        )


def _pair_groups(
    mask: NDArray[np.bool_], most: int | None = None
) -> tuple[
    list[tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.bool_]]], NDArray[np.intp]
]:
    """The ``True`` entries of a sparse (C, n) mask as padded (rows, columns) groups, so
    that per-row work on a few columns each runs as one stacked operation instead of a
    loop over rows.

    Rows with similar counts are grouped (counts within a factor of two, unless padding
    all rows to the largest count costs at most twice the entries): a group is
    ``rows`` (g,), ``cols`` (g, m) -- row ``i``'s columns in increasing order, padded on
    the right by repeating its last one -- and ``real`` (g, m), False on the padding.
    Rows with more than ``most`` entries are left out of the groups and returned as the
    second value (increasing).
    """
    n = mask.shape[1]
    which, cols = np.divmod(np.flatnonzero(mask), n)  # by row, then column
    counts = np.bincount(which, minlength=len(mask))
    limit = n if most is None else most
    crowded = np.flatnonzero(counts > limit)
    if len(crowded):
        keep = counts[which] <= limit
        which, cols = which[keep], cols[keep]
        counts[crowded] = 0
    if len(cols) == 0:
        return [], crowded
    present = np.flatnonzero(counts)
    ends = np.cumsum(counts)
    slot = np.arange(len(cols)) - (ends - counts)[which]
    last = cols[ends[present] - 1]  # each row's last column
    if len(present) * int(counts.max()) <= 2 * len(cols) + _PAD_FREE:
        size_class = np.zeros(len(present), dtype=np.intc)
    else:
        _, size_class = np.frexp(counts[present])  # 2^(e-1) <= count < 2^e
    classes = np.unique(size_class)
    row_class = np.zeros(len(counts), dtype=np.intc)
    row_class[present] = size_class
    local = np.zeros(len(counts), dtype=np.intp)
    groups = []
    for e in classes:
        member = size_class == e
        rows = present[member]
        sub = counts[rows]
        width = int(sub.max())
        local[rows] = np.arange(len(rows))
        padded = np.empty((len(rows), width), dtype=np.intp)
        padded[:] = last[member][:, None]
        if len(classes) == 1:
            padded[local[which], slot] = cols
        else:
            entries = row_class[which] == e
            padded[local[which[entries]], slot[entries]] = cols[entries]
        groups.append((rows, padded, np.arange(width) < sub[:, None]))
    return groups, crowded


#: Padding entries :func:`_pair_groups` accepts beyond twice the real ones before it
#: splits rows into groups by count: a group's own overhead (tens of numpy calls) costs
#: about as much as this many padded entries.
_PAD_FREE = 2048


def _centred_log_joint_pairs(
    coefs: KernelCoefficients, xc_t: Array, components: NDArray[np.intp], cols: NDArray[np.intp]
) -> Array:
    """Centred log-joint (g, m) of component ``components[i]`` at the columns
    ``cols[i]`` (g, m) of ``xc_t`` (D, n): the same arithmetic as
    :func:`_centred_log_joint_t`, stacked over the components."""
    assert coefs.centred_offsets is not None and coefs.centred_factors is not None
    assert coefs.centred_constants is not None
    factors = coefs.centred_factors
    diff = np.take(xc_t.T, cols, axis=0)  # (g, m, D)
    diff -= coefs.centred_offsets[components][:, None, :]
    name = coefs.covariance.layout
    if name == "full":
        y = np.matmul(diff, factors[components])  # rows of (U_k' diff)'
    elif name == "tied":
        y = np.matmul(diff, factors)
    elif name == "diag":
        diff *= factors[components][:, None, :]
        y = diff
    else:
        diff *= factors[components][:, None, None]
        y = diff
    np.multiply(y, y, out=y)
    values = y.sum(axis=2)
    values *= -0.5
    values += coefs.centred_constants[components][:, None]
    return values


#: With more than this fraction of the components evaluated (or accumulated) centred on
#: their own means, the expansion and statistics GEMMs skip their rows: the row
#: selection copies cost less than the GEMM rows they save.
_SKIP_CENTRED_ROWS = 0.25


def _uncentred(coefs: KernelCoefficients) -> NDArray[np.bool_] | None:
    """Mask of the components the expansion GEMM must evaluate, or None for all of them
    (no or few components evaluated centred: one GEMM over all rows is cheaper)."""
    centred = coefs.centred_components
    k = len(coefs.weights_t)
    if centred is None or len(centred) <= _SKIP_CENTRED_ROWS * k:
        return None
    rest = np.ones(k, dtype=bool)
    rest[centred] = False
    return rest


def _centred_log_joint_t(
    coefs: KernelCoefficients,
    linear_t: Array,
    components: NDArray[np.intp] | None = None,
    out: Array | None = None,
) -> Array:
    """(K, n) log-joint with components centred on their own means (exact, slower).

    ``linear_t`` (D + 1, n) is the block ``[xc; 1]``.  ``components`` (default all) are
    written into their rows of ``out`` (a new (K, n) block by default); the other rows
    are left as they are.
    """
    assert coefs.centred_offsets is not None and coefs.centred_factors is not None
    assert coefs.centred_constants is not None
    name = coefs.covariance.layout
    factors, offsets = coefs.centred_factors, coefs.centred_offsets
    n_components, d = offsets.shape
    n = linear_t.shape[1]
    if out is None:
        out = np.empty((n_components, n), dtype=linear_t.dtype)
    which = np.arange(n_components) if components is None else components
    constants = coefs.centred_constants
    # (x - ref) - (mu_k - ref) first, then U_k': the difference is exact to rounding of
    # ``x - ref``; scikit-learn's ``U_k' x - U_k' mu_k`` (one stacked GEMM) measured
    # 3-10x the error on a near-constant component far from the reference
    xc_t = linear_t[:d]
    diff = workspace("kernel.centred_diff", xc_t.shape, xc_t.dtype)
    y = workspace("kernel.centred_y", xc_t.shape, xc_t.dtype) if name in ("full", "tied") else diff
    white_offsets = coefs.centred_white_offsets
    if white_offsets is not None:  # tied: U' xc once, less U' (mu_k - ref) each
        np.dot(factors.T, xc_t, out=diff)
    for k in which:
        if white_offsets is not None:
            np.subtract(diff, white_offsets[k][:, None], out=y)
        else:
            np.subtract(xc_t, offsets[k][:, None], out=diff)
            if name == "full":
                np.dot(factors[k].T, diff, out=y)
            elif name == "tied":
                np.dot(factors.T, diff, out=y)
            elif name == "diag":
                diff *= factors[k][:, None]
            else:
                diff *= factors[k]
        row = out[k]
        np.einsum("ij,ij->j", y, y, out=row)  # one pass, no squared copy
        row *= -0.5
        row += constants[k]
    return out


def log_joint(coefs: KernelCoefficients, phi: Array) -> Array:
    """``log(pi_k N(x | k))`` for every row and component, shape (n, K), compute dtype.

    Parameters
    ----------
    coefs : KernelCoefficients
    phi : ndarray of shape (n, Q + D + 1)
        From :func:`features`.
    """
    return _log_joint_of_features_t(coefs, phi.T, len(coefs.reference)).T


#: Shifted log-probabilities are raised to this floor before ``exp``: numpy's float64
#: ``exp`` takes a slow path for arguments below about -708 (7-9x slower, measured), and
#: tiny results would then make subnormal products downstream.  ``exp(-600) = 3e-261``
#: (float32: ``exp(-80) = 2e-35``) next to the largest term, 1, changes no sum.
_EXP_FLOOR = {np.dtype(np.float64): -600.0, np.dtype(np.float32): -80.0}

#: Window of a row's density sum ``sum_k exp(log-joint)`` within which the unshifted
#: float64 exponentials (:func:`_exp_log_joint`) are as exact as the shifted ones: above
#: the lower end, an entry raised to :data:`_EXP_FLOOR` is at most ``exp(-140)`` of the
#: sum, far below rounding; below the upper end, every responsibility
#: ``exp(floor) / sum`` stays a normal number (``>= exp(-640)``), so the scaling and the
#: statistics GEMM meet no subnormals.
_UNSHIFTED_SUM = (float(np.exp(-460.0)), float(np.exp(40.0)))


#: :func:`workspace` slots of a block's per-row vectors (n,): the column maxima and
#: sums of its log-joint block and its log-densities (1-D data: 26214-row blocks, 200 KiB
#: a vector).  Only the entry points pass ``reuse``; nested evaluations take fresh
#: arrays, and a log-density that is returned is never taken from its slot.
_COLUMN_MAX = "kernel.column_max"
_COLUMN_SUM = "kernel.column_sum"
_LOG_DENSITY = "kernel.log_density"


def _row_vector(reuse: bool, slot: str, n: int, dtype: np.dtype) -> Array | None:
    """``out=`` for a per-row vector: the workspace slot when ``reuse``, else None (a
    fresh array)."""
    return workspace(slot, n, dtype) if reuse else None


def _exp_shifted_in_place(
    log_prob_t: Array, col_max: Array | None = None, reuse: bool = False
) -> tuple[Array, Array]:
    """Replace the (K, n) block by ``exp(max(log_prob - column max, floor))``.

    ``col_max``: the column maxima when already at hand.  Returns the column maxima and
    column sums, both of shape (n,) (in the workspace with ``reuse``).
    """
    if col_max is None:
        col_max = _column_max(log_prob_t, reuse)
    np.subtract(log_prob_t, col_max, out=log_prob_t)
    np.maximum(log_prob_t, _EXP_FLOOR[log_prob_t.dtype], out=log_prob_t)
    np.exp(log_prob_t, out=log_prob_t)
    return col_max, _column_sums(log_prob_t, reuse)


def _column_max(block: Array, reuse: bool = False) -> Array:
    """Maxima over the leading axis of a (K, n) block (in the workspace with ``reuse``)."""
    return np.max(block, axis=0, out=_row_vector(reuse, _COLUMN_MAX, block.shape[1], block.dtype))


def _column_sums(block: Array, reuse: bool = False) -> Array:
    """Sums over the leading axis of a (K, n) block: one BLAS GEMV reads the block once,
    about 1.5-2x faster than numpy's row-by-row reduction for K >= 20 (measured).  In
    the workspace with ``reuse``."""
    if block.shape[0] == 0 or block.shape[1] == 0:
        return block.sum(axis=0)
    out = _row_vector(reuse, _COLUMN_SUM, block.shape[1], block.dtype)
    return np.dot(np.ones(block.shape[0], dtype=block.dtype), block, out=out)


def _log_density_shifted(
    coefs: KernelCoefficients,
    X: Array,
    log_prob_t: Array,
    reuse: bool = False,
    reuse_density: bool = False,
) -> tuple[Array, NDArray[np.float64]]:
    """:func:`_exp_log_joint` with every column shifted by its largest log-joint (and
    far rows re-evaluated, :func:`_repair_far_rows`)."""
    col_max = (
        _column_max(log_prob_t, reuse)
        if log_prob_t.shape[1]
        else np.empty(0, log_prob_t.dtype)
    )
    far = _repair_far_rows(coefs, X, log_prob_t, col_max)
    _, col_sum = _exp_shifted_in_place(log_prob_t, col_max, reuse)
    density_out = _row_vector(reuse_density, _LOG_DENSITY, len(col_sum), col_sum.dtype)
    log_norm = np.log(col_sum, out=density_out).astype(np.float64, copy=False)
    log_norm += col_max
    if far is not None:
        log_norm[far[0]] += far[1]
    return col_sum, log_norm


def _exp_log_joint(
    coefs: KernelCoefficients,
    X: Array,
    phi_t: Array,
    log_prob_t: Array,
    floored: NDArray[np.intp] | None = None,
    reuse: bool = False,
    reuse_density: bool = False,
) -> tuple[Array, NDArray[np.float64]]:
    """Exponentiate the (K, n) log-joint of the rows ``X`` in place, each column scaled by
    a positive factor of its own, so that the responsibilities are ``block / sums``.

    When the components' densities allow it (:attr:`KernelCoefficients.unshifted_exp`)
    the log-joints are exponentiated as they are, raised to the floor where some entry
    is below it: ``exp`` and a sum over the block after its minimum (and the floor
    when needed) instead of column maximum, shift, floor, ``exp`` and sum, and no
    addition of the maxima back.  Rows whose density sum falls
    outside :data:`_UNSHIFTED_SUM` -- far from every component, or overflowing -- are
    evaluated again from their features ``phi_t`` (the block's, unscaled) with the
    shift.  ``floored``: as given to
    :func:`_log_joint_t` for the block (it is evaluated again alike).  ``reuse``: the
    sums (and column maxima) live in the workspace; ``reuse_density``: the
    log-densities too (the caller does not return them).

    Returns
    -------
    sums : ndarray of shape (n,)
        Column sums of the exponentiated block.
    log_density : ndarray of shape (n,), float64
        ``log p(x)`` of each row.
    """
    n = log_prob_t.shape[1]
    if not (coefs.unshifted_exp and n):
        return _log_density_shifted(coefs, X, log_prob_t, reuse, reuse_density)
    dtype = log_prob_t.dtype
    floor = _EXP_FLOOR[dtype]
    # the floor pass only where some entry needs it: the minimum reads the block (about
    # half the cost of the floor's read and write), and most blocks of ordinary fits
    # have none below the floor (diag D=16 K=32, 1-D exam scores, pixels early)
    if not log_prob_t.min() >= floor:
        np.maximum(log_prob_t, floor, out=log_prob_t)
    np.exp(log_prob_t, out=log_prob_t)
    col_sum = _column_sums(log_prob_t, reuse)
    low, high = _UNSHIFTED_SUM
    density_out = _row_vector(reuse_density, _LOG_DENSITY, n, dtype)
    # NaN (from rows far out) compares False
    if col_sum.min() >= low and col_sum.max() <= high:
        return col_sum, np.log(col_sum, out=density_out)
    with np.errstate(invalid="ignore"):
        outside = np.flatnonzero(~((col_sum >= low) & (col_sum <= high)))
    d = X.shape[1]
    # only the rows outside are evaluated again, however many: each row's result must
    # not depend on the other rows of its block (streamed and in-memory fits cut the
    # rows into different blocks and must agree bit for bit)
    # np.take keeps the columns C-ordered (``phi_t[:, outside]`` is F-ordered)
    with np.errstate(over="ignore", invalid="ignore"):  # far rows: repaired when shifted
        again = _log_joint_of_features_t(coefs, np.take(phi_t, outside, axis=1), d, floored)
    sums, log_density = _log_density_shifted(coefs, X[outside], again)
    log_prob_t[:, outside] = again
    col_sum[outside] = sums
    log_norm = np.log(col_sum, out=density_out)
    log_norm[outside] = log_density
    return col_sum, log_norm


_NO_COLUMNS = np.empty(0, dtype=np.intp)
_NO_COLUMNS.setflags(write=False)


#: Rows whose largest log-joint exceeds this in magnitude (or is not finite) are
#: evaluated again by :func:`_far_log_joint`: the kernel's expansion carries an absolute
#: rounding error of about ``eps |log-joint|``, which beyond ``1e10`` exceeds ``1e-6``
#: and for rows far enough out swamps the differences between components (or turns
#: into ``inf - inf``).  Such rows are rare outliers; re-evaluating them costs nothing
#: on ordinary data (one comparison per row).
FAR_LOG_JOINT = 1e10


def _far_rows(col_max: Array) -> NDArray[np.intp]:
    """Columns whose largest log-joint is not finite or beyond :data:`FAR_LOG_JOINT`."""
    with np.errstate(invalid="ignore"):
        # |col_max| lives only for the comparison
        magnitude = np.abs(col_max, out=workspace("kernel.far_rows", col_max.shape, col_max.dtype))
        return np.flatnonzero(~(magnitude <= FAR_LOG_JOINT))


def _far_log_joint(
    coefs: KernelCoefficients, X: Array
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Log-joint of rows far from the components, split as ``rel + shift``.

    Every row is scaled by a power of two ``s`` (exact) so that nothing overflows, and
    the log-joint of component ``k`` is ``c_k - s^2 |y_k|^2 / 2`` with ``y_k = U_k'(x -
    mu_k) / s``.  Differences between components are taken against the most probable
    component ``b`` of the row without cancelling two huge numbers:
    ``|y_k|^2 - |y_b|^2 = (y_k - y_b) . (y_k + y_b)`` with ``y_k - y_b = (U_k - U_b)' x / s
    - (U_k' mu_k - U_b' mu_b) / s`` -- exactly the linear terms when the components share
    one precision (tied, equal spherical or diagonal ones), and accurate to rounding of
    the difference itself otherwise.

    Parameters
    ----------
    coefs : KernelCoefficients
    X : ndarray of shape (m, D)

    Returns
    -------
    rel : ndarray of shape (K, m)
        Log-joint minus ``shift``: finite for the most probable component of each row
        (``-inf`` for components whose probability underflows).
    shift : ndarray of shape (m,)
        Common to all components of a row; ``-inf`` when the log-density itself lies
        below the float64 range.
    """
    params = coefs.params
    assert params is not None
    chol = params.precisions_cholesky
    n_components, d = params.n_components, params.n_features
    reference = coefs.reference
    xc = np.asarray(X, dtype=np.float64) - reference
    largest = np.max(np.abs(xc), axis=1) if d else np.zeros(len(xc))
    _, exponent = np.frexp(np.where(np.isfinite(largest) & (largest > 0), largest, 1.0))
    s = np.ldexp(1.0, exponent)  # power of two >= largest: scaling is exact
    xs = xc / s[:, None]
    offsets = params.means - reference  # (K, D)
    cov = coefs.covariance
    log_det = np.broadcast_to(cov.log_det_cholesky(chol, d), (n_components,))
    with np.errstate(divide="ignore"):
        constants = np.log(params.weights) + log_det - 0.5 * d * log_2pi()
    possible = np.isfinite(constants)

    def factor(k: int) -> NDArray[np.float64]:
        return np.asarray(chol if params.layout == "tied" else chol[k], dtype=np.float64)

    def whiten(rows: NDArray[np.float64], u: NDArray[np.float64]) -> NDArray[np.float64]:
        return rows @ u if u.ndim == 2 else rows * u

    with np.errstate(over="ignore", invalid="ignore"):
        white = np.stack(
            [whiten(xs - offsets[k] / s[:, None], factor(k)) for k in range(n_components)]
        )  # (K, m, D): y_k
        r = np.sum(white * white, axis=2)
        best = np.argmin(np.where(possible[:, None], r, np.inf), axis=0)
        rel = np.empty((n_components, len(xs)))
        for _ in range(2):  # a second pass if rounding of r picked the wrong best
            for b in np.unique(best):
                rows = np.flatnonzero(best == b)
                xb, sb = xs[rows], s[rows]
                mean_b = whiten(offsets[b], factor(b))
                for k in range(n_components):
                    delta_white = whiten(xb, factor(k) - factor(b)) - (
                        whiten(offsets[k], factor(k)) - mean_b
                    ) / sb[:, None]
                    gap = np.sum(delta_white * (white[k, rows] + white[b, rows]), axis=1)
                    rel[k, rows] = constants[k] - gap * (0.5 * sb) * sb
            rel = np.where(np.isnan(rel), -np.inf, rel)
            better = np.argmax(rel, axis=0)
            if np.all(better == best):
                break
            best = better
        r_best = r[best, np.arange(len(xs))]
        shift = -r_best * (0.5 * s) * s
    shift = np.where(np.isnan(shift), -np.inf, shift)
    return rel, shift


def _repair_far_rows(
    coefs: KernelCoefficients, X: Array, log_prob_t: Array, col_max: Array | None = None
) -> tuple[NDArray[np.intp], NDArray[np.float64]] | None:
    """Re-evaluate the columns of ``log_prob_t`` (K, n) that the expansion cannot give
    accurately (:data:`FAR_LOG_JOINT`), in place, as their ``rel`` part.

    ``col_max``: the block's column maxima when already at hand (one pass over the
    block fewer); the re-evaluated columns' entries are updated in place.

    Returns
    -------
    (rows, shift) or None
        The re-evaluated columns and the per-row offset to add back to their
        log-density; None when every row was fine.
    """
    if coefs.params is None or log_prob_t.shape[1] == 0:
        return None
    rows = _far_rows(log_prob_t.max(axis=0) if col_max is None else col_max)
    if len(rows) == 0:
        return None
    rel, shift = _far_log_joint(coefs, X[rows])
    log_prob_t[:, rows] = rel
    if col_max is not None:
        col_max[rows] = rel.max(axis=0)
    return rows, shift


# --------------------------------------------------------------------------- statistics
def chunk_statistics(
    coefs: KernelCoefficients,
    X: Array,
    sample_weight: Array | None = None,
    labels: NDArray[np.integer] | None = None,
    label_weight: float = 1.0,
) -> SuffStats:
    """E-step on one block of rows, returning its additive statistics.

    Parameters
    ----------
    coefs : KernelCoefficients
        From :func:`kernel_coefficients` of the current parameters.
    X : ndarray of shape (n, D)
    sample_weight : ndarray of shape (n,), optional
    labels : ndarray of shape (n,), optional
        Known component of each row, ``-1`` where unknown.  A labelled row keeps its
        component (one-hot responsibility), is weighted by ``label_weight``, and
        contributes its complete-data log-likelihood.
    label_weight : float
        Weight of labelled rows relative to unlabelled ones.

    Returns
    -------
    SuffStats
    """
    fused = _fused_kernels(coefs, X.shape[1], labels)
    if fused is not None:
        return _fused_statistics(fused, coefs, X, sample_weight)
    return _numpy_statistics(coefs, X, sample_weight, labels, label_weight)


def _numpy_statistics(
    coefs: KernelCoefficients,
    X: Array,
    sample_weight: Array | None = None,
    labels: NDArray[np.integer] | None = None,
    label_weight: float = 1.0,
) -> SuffStats:
    """:func:`chunk_statistics` by the numpy kernel."""
    n, d = X.shape
    dtype = coefs.dtype
    tied = coefs.whitening is not None
    labelled: NDArray[np.intp] | None = None
    if labels is not None:
        labelled = np.flatnonzero(np.asarray(labels) >= 0)
    # only the labelled rows read log-joints other than through the floored exp
    # the blocks live in this thread's workspace: nothing returned is a view of them
    log_prob_t, phi_t = _log_joint_t(
        coefs, X, labelled if labelled is not None else _NO_COLUMNS, _FEATURES, _LOG_JOINT
    )
    if labelled is not None and len(labelled) == 0:
        labelled = None
    known: NDArray[np.intp] | None = None
    if labelled is None:
        col_sum, log_norm = _exp_log_joint(coefs, X, phi_t, log_prob_t, _NO_COLUMNS, True, True)
    else:
        assert labels is not None
        col_max = _column_max(log_prob_t, True)
        far = _repair_far_rows(coefs, X, log_prob_t, col_max)
        known = np.asarray(labels)[labelled].astype(np.intp)
        labelled_log_density = log_prob_t[known, labelled].astype(np.float64)
        if far is not None:
            row_shift = np.zeros(n)
            row_shift[far[0]] = far[1]
            labelled_log_density += row_shift[labelled]
        _, col_sum = _exp_shifted_in_place(log_prob_t, col_max, True)
        log_norm = np.log(col_sum, out=workspace(_LOG_DENSITY, n, col_sum.dtype))
        log_norm = log_norm.astype(np.float64, copy=False)
        log_norm += col_max
        if far is not None:
            log_norm[far[0]] += far[1]

    weight: NDArray[np.float64] | None = (
        None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    )
    if labelled is not None:
        assert known is not None
        weight = np.ones(n) if weight is None else weight.copy()
        weight[labelled] *= label_weight
        log_norm[labelled] = labelled_log_density
        log_prob_t[:, labelled] = 0.0
        log_prob_t[known, labelled] = 1.0
        col_sum[labelled] = 1.0

    # responsibilities * weight = exp_shifted * (weight / col_sum): fold the scale into
    # the smaller of the two GEMM operands
    scale = np.reciprocal(col_sum, out=col_sum)  # the sums are not needed again
    if weight is not None:
        scale *= weight.astype(dtype)

    if tied:
        xc_t = phi_t[:d]
        if weight is None:
            weighted = xc_t
        else:
            weighted = workspace("kernel.weighted", xc_t.shape, dtype)
            np.multiply(xc_t, weight.astype(dtype), out=weighted)
        # (the float64 copies live only for this product: their slots are free again)
        pooled = np.dot(
            as_float64(weighted, _LOG_JOINT64), as_float64(xc_t, _FEATURES64).T
        )
        second = pack_symmetric(pooled)[None, :]
    own = coefs.own_centred
    q = 0 if tied else phi_t.shape[0] - d - 1  # 0 when the block carries no quadratics
    own_moments = None
    if own is not None:
        # ill-conditioned components: moments around their own means, from the
        # unscaled centred rows and their weighted responsibilities
        own_resp = _take_rows(log_prob_t, own, "kernel.own_resp")
        own_resp *= scale
        own_moments = _own_mean_moments(coefs, phi_t[q : q + d], own_resp, own)
    if not tied and own is not None and len(own) == len(log_prob_t):
        # every component around its own mean: no statistics GEMM
        log_prob_t *= scale
        nk = log_prob_t.sum(axis=1).astype(np.float64)
        first = np.empty((len(nk), d))
        second = np.empty((len(nk), coefs.covariance.n_quadratic(d)))
    else:
        if phi_t.shape[0] < log_prob_t.shape[0] and coefs.whitened is None:
            phi_t *= scale
        else:
            log_prob_t *= scale  # whitened: the scatter needs the unscaled rows
        # (F, n) @ (n, K) runs 10-40% faster in OpenBLAS than (K, n) @ (n, F).  The sums
        # are taken in float64 even for float32 blocks: moments around the shared
        # reference cancel in the M-step (S / n - m m'), and float32 accumulation over a
        # block cost 1e-4 relative in covariances of clusters 15 widths from it
        if own is not None and len(own) > _SKIP_CENTRED_ROWS * len(log_prob_t):
            # the GEMM only for the components not accumulated around their own means
            # (their first and second moments are replaced below); their n_k from
            # their responsibilities
            rest = np.ones(len(log_prob_t), dtype=bool)
            rest[own] = False
            moments = np.empty((len(log_prob_t), phi_t.shape[0]))
            moments[rest] = np.dot(
                as_float64(phi_t, _FEATURES64),
                as_float64(
                    _take_rows(log_prob_t, np.flatnonzero(rest), "kernel.rest"), _LOG_JOINT64
                ).T,
            ).T
            moments[own, -1] = own_resp.sum(axis=1, dtype=np.float64)
        else:
            moments = np.dot(
                as_float64(phi_t, _FEATURES64), as_float64(log_prob_t, _LOG_JOINT64).T
            ).T  # (K, F)
        if coefs.whitened is not None:
            second = _reference_second_moments(phi_t[:d], log_prob_t, own)
        elif not tied:
            second = moments[:, :q]
        nk = moments[:, -1].copy()
        first = moments[:, q : q + d].copy()
    if own_moments is not None:
        assert own is not None
        first[own], second[own] = own_moments
    return _block_statistics(coefs, X, weight, nk, first, second, log_norm)


def _block_statistics(
    coefs: KernelCoefficients,
    X: Array,
    weight: NDArray[np.float64] | None,
    nk: Array,
    first: Array,
    second: Array,
    log_norm: NDArray[np.float64],
    summary: tuple[float, float] | None = None,
) -> SuffStats:
    """The block's :class:`SuffStats` from its moments and its rows' log-densities
    ``log_norm`` (n,): the log-likelihood and the worst row.  ``summary``: the
    log-likelihood and the lowest log-density (of the rows of positive weight) where
    the caller has them."""
    n, d = X.shape
    if summary is None:
        log_likelihood = float(log_norm.sum() if weight is None else weight @ log_norm)
    else:
        log_likelihood = summary[0]
    if n:
        if weight is None:
            worst = worst_row(log_norm, None if summary is None else summary[1])
            worst_value = float(log_norm[worst])
        else:
            candidates = np.where(weight > 0, log_norm, np.inf)
            worst = worst_row(candidates, None if summary is None else summary[1])
            worst_value = float(candidates[worst])
        worst_point = np.asarray(X[worst], dtype=np.float64)
    else:
        worst_value, worst_point = np.inf, np.zeros(d)
    return SuffStats(
        nk=nk,
        first=first,
        second=np.ascontiguousarray(second),
        log_likelihood=log_likelihood,
        total_weight=float(n if weight is None else weight.sum()),
        n_samples=n,
        reference=coefs.stats_reference,
        worst_log_density=worst_value,
        worst_point=worst_point,
    )


#: Where :func:`chunk_statistics` runs the fused compiled kernel
#: (:mod:`gmmkit.core._fused_jit`, with numba; no labels; float32 rows copied): per
#: layout, ``(most features, most components)`` bands, the first band holding ``D``
#: deciding (``None``: any number of components).  The fused kernel costs about the
#: same per component and row whatever K; the numpy kernel's GEMMs grow cheaper per
#: component with K, so it wins at many components and many features.  Measured one
#: thread, numpy / fused time per row (interleaved, best of 3): full D=3 K=20 1.4-2.3,
#: D=4 K=100 1.66, D=6 K=100 1.54, D=8 K=32 1.26 and K=100 1.02, D=10 K=32 0.88,
#: D=12 K=16 1.10, D=16 K=4 2.50 and K=16 0.84; diag D=8 K=100 1.45, D=16 K=32 1.1-1.2
#: and K=100 0.89, D=24 K=8 1.38, D=32 K=4 1.56; spherical D=16 K=100 0.76, D=24 K=8
#: 1.69, D=32 K=4 1.95; tied (its numpy kernel whitens once; the fused one loads the
#: shared factor once) D=2 K=4-100 1.6-2.8, D=4 1.4-2.0, D=6 K=16-100 1.1-1.3, D=8
#: K=16 1.25, K=64 1.04-1.06, K=100 0.97-1.01.  Full and tied covariances above 8
#: features and diagonal or spherical ones above 16 are left out although some measured
#: faster: their unrolled kernels take 4-9 s to compile (full D=12 5.8 s, D=16 9.2 s;
#: 1-2.5 s up to D=8), once per environment, and a clean test run compiled a dozen such
#: sizes.
FUSED_BANDS: dict[str, tuple[tuple[int, int | None], ...]] = {
    "full": ((6, None), (8, 64)),
    "tied": ((6, None), (8, 64)),
    "diag": ((8, None), (16, 32)),
    "spherical": ((8, None), (16, 32)),
}


def fused_applies(layout: str, n_features: int, n_components: int) -> bool:
    """Whether :data:`FUSED_BANDS` give the pass to the fused kernel (numba aside)."""
    for most_features, most_components in FUSED_BANDS.get(layout, ()):
        if n_features <= most_features:
            return most_components is None or n_components <= most_components
    return False


def _fused_kernels(
    coefs: KernelCoefficients, d: int, labels: NDArray[np.integer] | None
) -> Any:
    """The fused kernels' module where they evaluate this pass, else None."""
    if labels is not None or coefs.params is None:
        return None
    return fused_module(coefs.covariance.layout, d, coefs.n_components)


def fused_module(layout: str, n_features: int, n_components: int) -> Any:
    """The fused kernels' module where they evaluate complete, unlabelled rows of this
    model (:func:`fused_applies`, numba installed and enabled), else None."""
    if not fused_applies(layout, n_features, n_components):
        return None
    return _jit.fused_kernels()


def _fused_statistics(
    fused: Any, coefs: KernelCoefficients, X: Array, sample_weight: Array | None
) -> SuffStats:
    """:func:`chunk_statistics` by the fused compiled kernel: every component centred on
    its own mean, the moments around ``coefs.stats_reference``."""
    n, d = X.shape
    k = coefs.n_components
    means, factors, constants, refs = coefs.fused_operands
    weight = None if sample_weight is None else compiled_operand(sample_weight)
    nk = np.zeros(k)
    first = np.zeros((k, d))
    # (tied: one pooled second moment)
    second = np.zeros((1 if coefs.covariance.shared_quadratic else k,
                       coefs.covariance.n_quadratic(d)))
    log_norm = workspace(_LOG_DENSITY, n, np.float64)
    totals = np.array([0.0, np.inf])
    redo = workspace("kernel.redo", n, np.int64)
    count = fused.statistics(
        coefs.covariance.layout, _compiled_rows(X), np.empty(0) if weight is None else weight,
        means, factors, constants, refs, nk, first, second, log_norm, totals, redo)
    if count:
        # rows beyond FAR_LOG_JOINT (left out of the fused sums): never the block's worst
        # here, and evaluated exactly by the numpy kernel below
        rows = redo[:count]
        log_norm[rows] = np.inf
    stats = _block_statistics(
        coefs, X, weight, nk, first, second, log_norm, (float(totals[0]), float(totals[1])))
    if not count:
        return stats
    far = _numpy_statistics(coefs, X[rows], None if weight is None else weight[rows])
    # (the block's counts already hold these rows)
    return replace(stats + far, total_weight=stats.total_weight, n_samples=stats.n_samples)


def _compiled_rows(X: Array) -> Array:
    """A block of rows as the compiled kernels take them: ``X`` itself where C-ordered,
    writeable float64 or float32, else its float64 copy in this thread's workspace (not
    a fresh array per chunk, allocated and page-faulted again on every pass).

    float32 rows go in as they are: the fused kernels widen them to float64 as they
    copy each tile (exactly, so the results are those of a float64 copy), which saves a
    pass writing and one reading the copy -- 5-10 % of a float32 EM iteration at
    D = 1-16 -- at the price of compiling a float32 variant of each kernel used (1-2 s,
    once per environment: numba caches it)."""
    if X.dtype in (np.float64, np.float32) and X.flags.c_contiguous and X.flags.writeable:
        return X
    out = workspace("kernel.fused_rows", X.shape, np.float64)
    np.copyto(out, X)
    return out


def _take_rows(block: Array, rows: NDArray[np.intp], slot: str) -> Array:
    """``block[rows]`` of a (K, n) block, in the :func:`workspace` slot ``slot``."""
    out = workspace(slot, (len(rows), block.shape[1]), block.dtype)
    # mode="clip" (the rows are valid): "raise" would buffer the output
    return np.take(block, rows, axis=0, out=out, mode="clip")


def _as_float64(block: Array) -> NDArray[np.float64]:
    return np.asarray(block, dtype=np.float64)  # no copy when it already is


#: Rows whose weighted responsibility for a component is at most this fraction of the
#: component's largest are left out of its own-mean moments when that provably changes
#: nothing beyond rounding (see :func:`_own_mean_moments`): with many components each
#: one's responsibilities are negligible on all but a few rows (digits, K = 100: a
#: median of 16 of 1797 rows above ``1e-30`` of the largest).
NEGLIGIBLE_RESPONSIBILITY = 1e-40

#: What the left-out rows may add at most, relative to the smallest diagonal entry of
#: the kept second moment (and, for the first moment, to ``n_k`` times the smallest
#: standard deviation): far below the rounding of the sums themselves (``2^-52``).
_LEFT_OUT_RELATIVE = 2.0**-60


def _own_mean_moments(
    coefs: KernelCoefficients, xc_t: Array, resp: Array, components: NDArray[np.intp]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """First and second moments of ``components`` around their own means (their rows
    of ``coefs.stats_reference``): (len(components), D) and (len(components), Q).

    ``xc_t`` (D, n) holds the float64 rows minus the shared reference; ``resp``
    (len(components), n) the components' weighted responsibilities (non-negative).
    ``xc - (mu_k - ref)`` carries only ``eps |x - ref|`` absolute, and nothing as large
    as ``|x - ref|^2`` enters a sum that later cancels.

    A component's moments are summed over the rows where its responsibility exceeds
    :data:`NEGLIGIBLE_RESPONSIBILITY` times its largest, when there are few of them and
    the left-out rows provably add less than :data:`_LEFT_OUT_RELATIVE` of the kept
    sums (bounded by ``n r_max |xc + offset|_max^2``); otherwise over all rows.
    """
    assert coefs.centred_offsets is not None
    cov = coefs.covariance
    d, n = xc_t.shape
    first = np.empty((len(components), d))
    outer = np.empty((len(components), d, d)) if cov.layout == "full" else None
    second = np.empty((len(components), cov.n_quadratic(d)))
    offsets = coefs.centred_offsets[components]
    # |xc_i|_2 <= sqrt(D) max |xc|: with |mu_k - ref| it bounds every |xc_i - offset_k|
    magnitude = np.abs(xc_t, out=workspace("kernel.own_diff", xc_t.shape, xc_t.dtype))
    row_bound = np.sqrt(d) * float(np.max(magnitude, initial=0.0))
    squared_bounds = (row_bound + np.linalg.norm(offsets, axis=1)) ** 2
    done = (
        _sparse_moments(resp, xc_t, offsets, cov.layout, squared_bounds, first, second, outer)
        if n >= 64
        else np.zeros(len(components), dtype=bool)
    )
    diff_t = workspace("kernel.own_diff", xc_t.shape, xc_t.dtype)
    for i in np.flatnonzero(~done):
        np.subtract(xc_t, offsets[i][:, None], out=diff_t)
        first[i] = np.dot(diff_t, resp[i])
        diff_t *= np.sqrt(resp[i])
        if outer is not None:
            np.dot(diff_t, diff_t.T, out=outer[i])  # y y' runs as one SYRK
        else:
            np.multiply(diff_t, diff_t, out=diff_t)
            totals = diff_t.sum(axis=1)
            second[i] = totals if cov.layout == "diag" else totals.sum()
    if outer is not None:
        second[:] = pack_symmetric(outer)
    return first, second


def _reference_second_moments(
    xc_t: Array, resp: Array, skip: NDArray[np.intp] | None
) -> NDArray[np.float64]:
    """Packed second moments around the shared reference, (K, D (D + 1) / 2), float64:
    ``sum_i r_ik xc_i xc_i'`` as one SYRK ``(xc sqrt(r_k)) (xc sqrt(r_k))'`` per
    component (the whitened kernel's blocks carry no packed products to multiply).

    ``xc_t`` (D, n): rows minus the reference; ``resp`` (K, n): weighted
    responsibilities.  Components in ``skip`` (accumulated around their own means) are
    left as zeros.  A component's rows whose responsibility is negligible are left out
    when that provably changes nothing beyond rounding (:func:`_sparse_moments`)."""
    # float32 responsibilities never fall below the float32 exp floor (2e-35 of the
    # largest): entries near it are noise at float32 precision, not information
    negligible = NEGLIGIBLE_RESPONSIBILITY if resp.dtype == np.float64 else 1e-30
    # the caller's float64 copies are no longer in use here
    xc_t = as_float64(xc_t, _FEATURES64)
    resp = as_float64(resp, _LOG_JOINT64)
    d, n = xc_t.shape
    outer = np.zeros((len(resp), d, d))
    todo = np.ones(len(resp), dtype=bool)
    if skip is not None:
        todo[skip] = False
    components = np.flatnonzero(todo)
    done = np.zeros(len(components), dtype=bool)
    if n >= 64 and len(components):
        # |xc_i|^2 <= D max |xc|^2 (two reductions, no |xc| temporary)
        largest = max(float(xc_t.max(initial=0.0)), -float(xc_t.min(initial=0.0)))
        c = len(components)
        sparse_outer = np.empty((c, d, d))
        done = _sparse_moments(
            resp[components], xc_t, np.zeros((c, d)), "full", np.full(c, d * largest**2),
            np.empty((c, d)), np.empty((c, 0)), sparse_outer, negligible,
        )
        outer[components[done]] = sparse_outer[done]
    scaled = workspace("kernel.scaled", xc_t.shape)
    for k in components[~done]:
        np.multiply(xc_t, np.sqrt(resp[k]), out=scaled)
        np.dot(scaled, scaled.T, out=outer[k])  # y y' runs as one SYRK
    return _as_float64(pack_symmetric(outer))


def _sparse_moments(
    resp: Array,
    xc_t: Array,
    offsets: Array,
    layout: str,
    squared_bounds: NDArray[np.float64],
    first: Array,
    second: Array,
    outer: Array | None,
    negligible: float = NEGLIGIBLE_RESPONSIBILITY,
) -> NDArray[np.bool_]:
    """Own-mean moments of the components whose non-negligible rows are few, from those
    rows only, all such components at once (:func:`_pair_groups`).

    ``resp`` (C, n) are the components' weighted responsibilities, ``offsets`` (C, D)
    their means minus the reference, ``squared_bounds`` (C,) bound ``|xc - offset|^2``
    over the rows.  Row ``i`` of ``first`` (C, D), ``second`` (C, Q) or, for full,
    ``outer`` (C, D, D) is written where the returned mask (C,) is True; False where a
    component's rows are not few or leaving the others out is not provably below
    rounding (nothing written).  ``negligible``: the fraction of a component's largest
    responsibility below which a row is left out."""
    n = resp.shape[1]
    top = resp.max(axis=1, initial=0.0)
    threshold = negligible * top
    kept = resp > threshold[:, None]  # none where top is 0
    done = np.zeros(len(resp), dtype=bool)
    for rows, cols, real in _pair_groups(kept, n // 4)[0]:
        weights = resp[rows[:, None], cols]  # (g, m); the padding weighs nothing
        weights[~real] = 0.0
        diff = np.take(xc_t.T, cols, axis=0)  # (g, m, D)
        diff -= offsets[rows][:, None, :]
        mean_part = np.matmul(weights[:, None, :], diff)[:, 0]
        diff *= np.sqrt(weights)[:, :, None]
        if outer is not None:
            scatter = np.matmul(diff.transpose(0, 2, 1), diff)
            diagonal = np.diagonal(scatter, axis1=1, axis2=2)
        else:
            np.multiply(diff, diff, out=diff)
            diagonal = diff.sum(axis=1)
        # what the left-out rows add at most: (number of rows) x threshold x |xc - offset|^2
        left_second = n * threshold[rows] * squared_bounds[rows]
        left_first = n * threshold[rows] * np.sqrt(squared_bounds[rows])
        smallest = diagonal.min(axis=1)
        ok = (left_second <= _LEFT_OUT_RELATIVE * smallest) & (
            left_first <= _LEFT_OUT_RELATIVE * np.sqrt(weights.sum(axis=1) * smallest)
        )
        good = rows[ok]
        done[good] = True
        first[good] = mean_part[ok]
        if outer is not None:
            outer[good] = scatter[ok]
        elif layout == "diag":
            second[good] = diagonal[ok]
        else:
            second[good] = diagonal[ok].sum(axis=1, keepdims=True)
    return done


def hard_statistics(
    cov: CovarianceType,
    X: Array,
    resp: Array,
    reference: Array,
    sample_weight: Array | None = None,
) -> SuffStats:
    """Statistics of rows with given responsibilities (for initialisation).

    Parameters
    ----------
    cov : CovarianceType
    X : ndarray of shape (n, D)
    resp : ndarray of shape (n, K)
        Responsibilities (one-hot for hard assignments).
    reference : ndarray of shape (D,)
    sample_weight : ndarray of shape (n,), optional
    """
    n, d = X.shape
    wide = cov.layout in ("full", "tied") and cov.n_quadratic(d) > WIDE_QUADRATIC
    # wide data: (D, D) scatter GEMMs instead of a (D^2 / 2, n) block of features
    phi_t = _features_t(
        cov, X, np.asarray(reference, np.float64), np.dtype(np.float64), not wide
    )
    resp = np.asarray(resp, dtype=np.float64)
    weight = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    resp_t = resp.T * weight
    q = phi_t.shape[0] - d - 1
    moments = resp_t @ phi_t.T
    if wide:
        xc_t = phi_t[:d]
        rows = [weight] if cov.shared_quadratic else list(resp_t)
        second = pack_symmetric(np.stack([np.dot(xc_t * r, xc_t.T) for r in rows]))
    elif cov.shared_quadratic:
        second = (phi_t[:q] @ weight)[None, :]
    else:
        second = moments[:, :q]
    return SuffStats(
        nk=moments[:, -1].copy(),
        first=moments[:, q : q + d].copy(),
        second=np.ascontiguousarray(second),
        log_likelihood=0.0,
        total_weight=float(weight.sum()),
        n_samples=n,
        reference=np.tile(np.asarray(reference, np.float64), (len(resp_t), 1)),
        worst_log_density=np.inf,
        worst_point=np.zeros(d),
    )


def partition_statistics(
    cov: CovarianceType,
    X: Array,
    labels: NDArray[np.intp],
    n_clusters: int,
    reference: Array,
    sample_weight: Array | None = None,
) -> SuffStats:
    """:func:`hard_statistics` of a hard partition (one-hot responsibilities), each
    cluster's sums taken over its own rows: ``n D^2`` in all for (D, D) covariances
    instead of a one-hot (K, n) block times the (D (D + 1) / 2, n) quadratic features
    (``K n D^2 / 2``: 0.4 s against 0.02 s per start at D = 64, K = 16, 50 000 rows).
    The same statistics to rounding.

    Parameters
    ----------
    cov : CovarianceType
    X : ndarray of shape (n, D)
    labels : ndarray of shape (n,), int
        Cluster of each row, in ``0 .. n_clusters - 1``.
    n_clusters : int
    reference : ndarray of shape (D,)
    sample_weight : ndarray of shape (n,), optional
    """
    n, d = X.shape
    weight = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    reference = np.asarray(reference, np.float64)
    matrices = cov.layout in ("full", "tied")
    q = cov.n_quadratic(d)
    if matrices:
        xc = np.asarray(X, dtype=np.float64) - reference
    else:  # [q(xc), xc, 1]: the quadratic features are a few per row
        phi = features(cov, X, reference, np.dtype(np.float64))
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_clusters + 1))
    nk = np.zeros(n_clusters)
    first = np.zeros((n_clusters, d))
    second = np.zeros((n_clusters, d, d) if matrices else (n_clusters, q))
    for k in range(n_clusters):
        mine = order[bounds[k] : bounds[k + 1]]
        w = weight[mine]
        nk[k] = w.sum()
        if matrices:
            rows = xc[mine]
            first[k] = w @ rows
            second[k] = (rows.T * w) @ rows
        else:
            sums = w @ phi[mine]
            second[k], first[k] = sums[:q], sums[q : q + d]
    if cov.shared_quadratic:
        second = second.sum(axis=0, keepdims=True)
    return SuffStats(
        nk=nk,
        first=first,
        second=np.ascontiguousarray(pack_symmetric(second) if matrices else second),
        log_likelihood=0.0,
        total_weight=float(weight.sum()),
        n_samples=n,
        reference=np.tile(reference, (n_clusters, 1)),
        worst_log_density=np.inf,
        worst_point=np.zeros(d),
    )


# --------------------------------------------------------------------------- inference
def row_output(kind: str, n_rows: int, n_components: int) -> NDArray[Any]:
    """An empty array for the per-row results ``kind`` of ``n_rows`` rows: (n,) float64
    for ``score`` and ``map_log_resp``, (n,) intp for ``predict``, (n, K) float64 for
    ``proba``."""
    if kind == "proba":
        return np.empty((n_rows, n_components))
    return np.empty(n_rows, np.intp if kind == "predict" else np.float64)


def rows_chunk(
    coefs: KernelCoefficients, X: Array, kind: str, out: NDArray[Any] | None = None
) -> NDArray[Any]:
    """Per-row ``kind`` (one of :data:`ROW_KINDS`) of a block, as :func:`row_output`
    lays it out: by the fused compiled kernel (:func:`gmmkit.core._fused_jit.per_row`)
    where it evaluates the block (see :data:`FUSED_BANDS`), else, and for the rows it
    leaves (log-joints all beyond :data:`FAR_LOG_JOINT` or NaN), by the numpy kernel.
    Written into ``out`` (C-contiguous, of :func:`row_output`'s shape and dtype) where
    given: the fused kernel writes there directly, so that an engine's parts need no
    concatenation (the 1M pixels' (n, 20) responsibilities: 160 MB copied)."""
    numpy_rows = _NUMPY_ROWS[kind]
    n, d = X.shape
    fused = _fused_kernels(coefs, d, None)
    if fused is None:
        if out is None:
            return numpy_rows(coefs, X)
        out[...] = numpy_rows(coefs, X)
        return out
    if out is None:
        out = row_output(kind, n, coefs.n_components)
    means, factors, constants, _ = coefs.fused_operands
    empty = np.empty(0)
    redo = np.empty(n, np.int64)
    count = fused.per_row(
        coefs.covariance.layout, kind, _compiled_rows(X), means, factors, constants,
        out if kind in ("score", "map_log_resp") else empty,
        out if kind == "predict" else np.empty(0, np.intp),
        out if kind == "proba" else np.empty((0, 0)), redo)
    if count:
        rows = redo[:count]
        out[rows] = numpy_rows(coefs, X[rows])
    return out


def map_log_resp_chunk(coefs: KernelCoefficients, X: Array) -> NDArray[np.float64]:
    """The largest log responsibility of each row, shape (n,), float64."""
    return rows_chunk(coefs, X, "map_log_resp")


def _map_log_resp_numpy(coefs: KernelCoefficients, X: Array) -> NDArray[np.float64]:
    log_resp, _ = log_resp_and_density(coefs, X)
    return np.max(log_resp, axis=1).astype(np.float64)


def log_resp_and_density(coefs: KernelCoefficients, X: Array) -> tuple[Array, NDArray[np.float64]]:
    """Log responsibilities (n, K) in compute dtype and log-density (n,) in float64."""
    # the (K, n) block is returned (transposed): a fresh array; the features are not
    log_prob_t, _ = _log_joint_t(coefs, X, None, _FEATURES)
    col_max = _column_max(log_prob_t, True)
    far = _repair_far_rows(coefs, X, log_prob_t, col_max)
    np.subtract(log_prob_t, col_max, out=log_prob_t)
    floored = workspace(_LOG_JOINT, log_prob_t.shape, log_prob_t.dtype)
    np.maximum(log_prob_t, _EXP_FLOOR[log_prob_t.dtype], out=floored)
    sums = workspace(_COLUMN_SUM, log_prob_t.shape[1], log_prob_t.dtype)
    log_sum = np.exp(floored, out=floored).sum(axis=0, out=sums)
    np.log(log_sum, out=log_sum)
    log_prob_t -= log_sum
    density = log_sum.astype(np.float64)  # a copy, returned
    density += col_max
    if far is not None:
        density[far[0]] += far[1]
    return log_prob_t.T, density


def score_chunk(coefs: KernelCoefficients, X: Array) -> NDArray[np.float64]:
    """Log-density ``log p(x)`` of each row, shape (n,), float64."""
    return rows_chunk(coefs, X, "score")


def _score_numpy(coefs: KernelCoefficients, X: Array) -> NDArray[np.float64]:
    log_prob_t, phi_t = _log_joint_t(coefs, X, None, _FEATURES, _LOG_JOINT)
    # the log-densities are returned: not from the workspace
    return _exp_log_joint(coefs, X, phi_t, log_prob_t, reuse=True)[1]


def predict_chunk(coefs: KernelCoefficients, X: Array) -> NDArray[np.intp]:
    """Most probable component of each row, shape (n,)."""
    return rows_chunk(coefs, X, "predict")


def _predict_numpy(coefs: KernelCoefficients, X: Array) -> NDArray[np.intp]:
    log_prob_t, _ = _log_joint_t(coefs, X, None, _FEATURES, _LOG_JOINT)
    _repair_far_rows(coefs, X, log_prob_t, _column_max(log_prob_t, True))
    return np.argmax(log_prob_t, axis=0)


def proba_chunk(coefs: KernelCoefficients, X: Array) -> NDArray[np.float64]:
    """Responsibilities of each row, shape (n, K), float64."""
    return rows_chunk(coefs, X, "proba")


def _proba_numpy(coefs: KernelCoefficients, X: Array) -> NDArray[np.float64]:
    log_prob_t, _ = _log_joint_t(coefs, X, None, _FEATURES, _LOG_JOINT)
    col_max = _column_max(log_prob_t, True)
    far = _repair_far_rows(coefs, X, log_prob_t, col_max)
    if far is not None:
        # far rows get exact responsibilities: no floor under the exponent
        rel = np.asarray(log_prob_t[:, far[0]], dtype=np.float64)
        rel -= rel.max(axis=0)
        exact = np.exp(rel)
        exact /= exact.sum(axis=0)
    _, col_sum = _exp_shifted_in_place(log_prob_t, col_max, True)
    log_prob_t /= col_sum
    # always a copy: the block lives in the workspace (a (n, 1) transpose of K = 1 is
    # already C-contiguous)
    proba = np.array(log_prob_t.T, dtype=np.float64, order="C")
    if far is not None:
        proba[far[0]] = exact.T
    return proba


#: The numpy kernel's per-row functions of :func:`rows_chunk`, by kind.
_NUMPY_ROWS: dict[str, Callable[[KernelCoefficients, Array], NDArray[Any]]] = {
    "score": _score_numpy,
    "predict": _predict_numpy,
    "proba": _proba_numpy,
    "map_log_resp": _map_log_resp_numpy,
}
#: What :func:`rows_chunk` computes.
ROW_KINDS = tuple(_NUMPY_ROWS)
