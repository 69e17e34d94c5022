"""What every covariance model shares: packed-matrix helpers, Cholesky conversions, the
model interface and the four *layouts* the kernel evaluates.

A model (mclust's ``Sigma_k = lambda_k D_k A_k D_k'`` family, by its three-letter name)
is stored and evaluated in one of four layouts, scikit-learn's shapes:

* ``spherical`` -- (K,) variances: EII, VII;
* ``diag`` -- (K, D) variances: EEI, VEI, EVI, VVI;
* ``tied`` -- one (D, D) matrix: EEE;
* ``full`` -- (K, D, D) matrices: VEE, EVE, VVE, EEV, VEV, EVV, VVV.

The layout decides the *quadratic features* of centred data ``xc = x - ref`` that make
the Gaussian log-density linear in its parameters (``log N(x) = phi(x) @ w``: the E-step
is one GEMM and the sufficient statistics one more), the coefficients ``w`` and the
statistics collected.  The model decides only the M-step: how the per-component
covariances implied by the statistics are constrained, and how many free parameters
that leaves.  ``precisions_cholesky`` has the layout's shape; for ``full`` and ``tied``
it is the upper-triangular ``U`` with ``precision = U @ U.T``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy import linalg
from scipy.linalg import lapack

Array = NDArray[np.floating[Any]]

_LOG_2PI = float(np.log(2.0 * np.pi))


class CovarianceError(ValueError):
    """A covariance matrix could not be made positive definite."""


def compiled_operand(values: Array) -> NDArray[np.float64]:
    """``values`` as a C-ordered, writeable float64 array (a copy only where needed), as
    the compiled kernels take their operands.

    numba compiles a kernel again for every other dtype, memory layout or read-only
    flag (about 1-2 s each, once per environment); the copy of a float32 block costs
    far less than the pass (~0.3 ns a value against 5-40 ns a row)."""
    out = np.ascontiguousarray(values, dtype=np.float64)
    return out if out.flags.writeable else out.copy()


def compiled_mstep(layout: str, n_components: int, n_features: int) -> ModuleType | None:
    """The compiled M-step iterations (:mod:`gmmkit.core._mstep_jit`) for a model of this
    layout and size where the in-memory E-step runs compiled too
    (:func:`gmmkit.core.kernel.fused_applies`: numba is loaded for such fits anyway),
    else None (numba absent or disabled, or more features or components: there numpy's
    loop costs less than loading numba would on a one-off fit, and its small LAPACK calls
    less than the E-step's GEMMs).  The rule depends on the model's size alone, so a fit
    takes the same path whatever ran before it in the process."""
    from gmmkit import _jit
    from gmmkit.core.kernel import fused_applies

    if not fused_applies(layout, n_features, n_components):
        return None
    return _jit.mstep_kernels()


#: From this many features on, (un)packing copies row slices instead of fancy indexing.
_ROW_COPY_FEATURES = 64


@cache
def _triu(n_features: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    rows, cols = np.triu_indices(n_features)
    rows.setflags(write=False)
    cols.setflags(write=False)
    return rows, cols


def pack_symmetric(matrices: Array) -> Array:
    """Upper triangles of symmetric matrices, row by row.

    Parameters
    ----------
    matrices : ndarray of shape (..., D, D)

    Returns
    -------
    ndarray of shape (..., D * (D + 1) // 2)
    """
    d = matrices.shape[-1]
    if d < _ROW_COPY_FEATURES:
        rows, cols = _triu(d)
        return matrices[..., rows, cols]
    out = np.empty((*matrices.shape[:-2], d * (d + 1) // 2), dtype=matrices.dtype)
    start = 0
    for i in range(d):  # contiguous row slices: 10x faster than fancy indexing at D=2000
        out[..., start : start + d - i] = matrices[..., i, i:]
        start += d - i
    return out


def unpack_symmetric(packed: Array, n_features: int) -> Array:
    """Inverse of :func:`pack_symmetric`: (..., F) -> (..., D, D), symmetric."""
    d = n_features
    if d < _ROW_COPY_FEATURES:
        rows, cols = _triu(d)
        out = np.zeros((*packed.shape[:-1], d, d), dtype=packed.dtype)
        out[..., rows, cols] = packed
        out[..., cols, rows] = packed
        return out
    out = np.empty((*packed.shape[:-1], d, d), dtype=packed.dtype)
    start = 0
    for i in range(d):
        row = packed[..., start : start + d - i]
        out[..., i, i:] = row
        out[..., i:, i] = row
        start += d - i
    return out


def packed_outer_features(xc: Array, out: Array) -> None:
    """Write the packed outer products ``xc_i * xc_j`` (i <= j) of each row into ``out``.

    Parameters
    ----------
    xc : ndarray of shape (n, D)
    out : ndarray of shape (n, D * (D + 1) // 2), written in place
    """
    d = xc.shape[1]
    start = 0
    for i in range(d):
        width = d - i
        np.multiply(xc[:, i : i + 1], xc[:, i:], out=out[:, start : start + width])
        start += width


def _quad_coefficients_from_precision(precisions: Array) -> Array:
    """Coefficients of packed outer-product features for ``-0.5 x' P x``.

    Diagonal entries get ``-0.5 * P_ii``; off-diagonal ``-P_ij`` because the packed
    feature ``x_i x_j`` appears twice in the quadratic form.
    """
    d = precisions.shape[-1]
    rows, cols = _triu(d)
    coef = -precisions[..., rows, cols]
    coef[..., rows == cols] *= 0.5
    return coef


def _lower_cholesky(matrix: Array, message: str) -> Array:
    """Lower Cholesky factor of one (D, D) matrix; ``CovarianceError(message)`` if not PD."""
    # LAPACK's potrf as scipy.linalg.cholesky calls it, without its per-call overhead
    # (the M-step factors K matrices every EM iteration)
    if not np.all(np.isfinite(matrix)):
        raise CovarianceError(message)
    factor, info = lapack.dpotrf(np.asarray(matrix, dtype=np.float64), lower=1, clean=1)
    if info != 0:
        raise CovarianceError(message)
    return factor


def _each_matrix(matrices: Array, layout: str, func: Callable[[Array], Array]) -> Array:
    """Apply ``func`` to each (D, D) matrix: ``full`` (K, D, D) or ``tied`` (D, D) in and out."""
    mats = matrices[None] if layout == "tied" else matrices
    out = np.empty_like(mats)
    for k, mat in enumerate(mats):
        out[k] = func(mat)
    return out[0] if layout == "tied" else out


def cholesky_precision(covariances: Array, covariance_type: str) -> Array:
    """Precision Cholesky factors from covariances (scikit-learn's convention).

    Raises
    ------
    CovarianceError
        If a covariance is not positive definite.
    """
    message = (
        "a covariance matrix is not positive definite (for instance caused by singleton "
        "or collapsed samples); decrease n_components or increase reg_covar"
    )
    layout = covariance_layout(covariance_type)
    if layout in ("full", "tied"):

        def upper_precision_factor(cov: Array) -> Array:
            cov_chol = _lower_cholesky(cov, message)
            # the triangular inverse (trtri) costs a third of solving against the
            # identity (trtrs, what scipy.linalg.solve_triangular runs)
            inverse, info = lapack.dtrtri(cov_chol, lower=1)
            if info != 0:
                raise CovarianceError(message)
            return inverse.T

        if layout == "full" and len(covariances) > 1 and np.isfinite(covariances).all():
            # all K factorisations in one stacked LAPACK call (numpy's potrf loop in C);
            # a failure is the per-matrix path's failure too (the same potrf), so the
            # caller hears of it at once instead of after refactoring every matrix
            try:
                factors = np.linalg.cholesky(covariances)
            except np.linalg.LinAlgError:
                raise CovarianceError(message) from None
            else:
                out = np.empty_like(factors)
                for k, cov_chol in enumerate(factors):
                    inverse, info = lapack.dtrtri(cov_chol, lower=1)
                    if info != 0:
                        raise CovarianceError(message)
                    out[k] = inverse.T
                return out
        return _each_matrix(covariances, layout, upper_precision_factor)
    if (covariances <= 0.0).any() or not np.isfinite(covariances).all():
        raise CovarianceError(message)
    return 1.0 / np.sqrt(covariances)


def covariances_from_precisions(precisions: Array, covariance_type: str) -> Array:
    """Covariances from precision matrices (or precision vectors/scalars)."""
    layout = covariance_layout(covariance_type)
    if layout in ("full", "tied"):

        def inverse(prec: Array) -> Array:
            chol = _lower_cholesky(prec, "a precision matrix is not positive definite")
            inv_chol = linalg.solve_triangular(chol, np.eye(len(prec)), lower=True)
            return inv_chol.T @ inv_chol

        return _each_matrix(precisions, layout, inverse)
    if np.any(precisions <= 0.0):
        raise CovarianceError("a precision is not positive")
    return 1.0 / precisions


def precisions_from_cholesky(precisions_cholesky: Array, covariance_type: str) -> Array:
    """``U @ U.T`` for full/tied, ``u**2`` for diag/spherical."""
    layout = covariance_layout(covariance_type)
    if layout == "full":
        # one BLAS GEMM per component (einsum's loops took seconds at D = 2000)
        return np.matmul(precisions_cholesky, precisions_cholesky.transpose(0, 2, 1))
    if layout == "tied":
        return precisions_cholesky @ precisions_cholesky.T
    return precisions_cholesky**2


def _make_positive_definite(cov: Array, reg_covar: float) -> Array:
    """Symmetrise, and clip negative eigenvalues left by rounding before adding ``reg_covar``."""
    return _clip_if_indefinite(0.5 * (cov + cov.T), reg_covar)


def _clip_if_indefinite(cov: Array, reg_covar: float) -> Array:
    """A symmetric ``cov`` as it is when it has a Cholesky factor, else with its negative
    eigenvalues clipped before adding ``reg_covar``."""
    # the usual case, and far cheaper than an eigendecomposition every iteration
    if np.all(np.isfinite(cov)) and lapack.dpotrf(cov, lower=1)[1] == 0:
        return cov
    eigval, eigvec = linalg.eigh(cov)
    eigval = np.maximum(eigval, 0.0) + max(reg_covar, np.finfo(np.float64).tiny)
    return (eigvec * eigval) @ eigvec.T


def repair_positive_definite(covariances: Array, covariance_type: str, reg_covar: float) -> Array:
    """Full/tied covariances with the negative eigenvalues rounding left clipped to
    ``reg_covar`` (see :func:`_make_positive_definite`); other layouts are returned as
    they are.

    Parameters
    ----------
    covariances : ndarray of shape (K, D, D) or (D, D)
    covariance_type : str
    reg_covar : float
    """
    layout = covariance_layout(covariance_type)
    if layout not in ("full", "tied"):
        return covariances
    # symmetrised in one stacked operation, tested by one stacked Cholesky factorisation
    # (one LAPACK call instead of K: 10-20 us a matrix at a few features); only the
    # matrices without a factor pay for an eigendecomposition
    symmetric = 0.5 * (covariances + np.swapaxes(covariances, -1, -2))
    mats = symmetric[None] if layout == "tied" else symmetric
    finite = np.all(np.isfinite(mats), axis=(1, 2))
    if np.all(finite):
        try:
            np.linalg.cholesky(mats)
        except np.linalg.LinAlgError:
            pass
        else:
            return symmetric
    for k, mat in enumerate(mats):
        if not finite[k] or lapack.dpotrf(mat, lower=1)[1] != 0:
            mats[k] = _clip_if_indefinite(mat, reg_covar)
    return symmetric


class CovarianceType(ABC):
    """A covariance model: its layout (how it is stored and evaluated) and its M-step.

    Attributes
    ----------
    model : str
        mclust's three-letter name (``"VVV"``, ``"EEI"``, ...).
    layout : str
        ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
    name : str
        The name the instance was looked up by: the model, or an alias such as
        scikit-learn's ``"full"`` (used in messages).
    shared_quadratic : bool
        True when the quadratic term is the same for all components (``tied``): it is
        then computed once per row instead of once per component.
    """

    model: ClassVar[str]
    layout: ClassVar[str]
    shared_quadratic: ClassVar[bool] = False

    def __init__(self, name: str | None = None) -> None:
        self.name = name or self.model

    # -- shapes ---------------------------------------------------------------------
    @abstractmethod
    def n_quadratic(self, n_features: int) -> int:
        """Number of quadratic feature columns for ``n_features`` features."""

    @abstractmethod
    def covariance_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        """Shape of ``covariances_`` (and ``precisions_cholesky_``)."""

    @abstractmethod
    def n_covariance_parameters(self, n_components: int, n_features: int) -> int:
        """Free parameters in the covariances (mclust's ``nVarParams``)."""

    # -- E-step ---------------------------------------------------------------------
    @abstractmethod
    def quadratic_features(self, xc: Array, out: Array) -> None:
        """Write the quadratic features of centred rows ``xc`` (n, D) into ``out`` (n, Q)."""

    @abstractmethod
    def quadratic_coefficients(self, precisions_cholesky: Array) -> Array:
        """Coefficients of the quadratic features: (Q, K), or (Q,) when shared."""

    @abstractmethod
    def precision_times(self, precisions_cholesky: Array, vectors: Array) -> Array:
        """``P_k @ v_k`` for each component: (K, D) -> (K, D)."""

    @abstractmethod
    def log_det_cholesky(self, precisions_cholesky: Array, n_features: int) -> Array:
        """``log det U_k`` = ``-0.5 log det Sigma_k``, shape (K,) or scalar for tied."""

    # -- M-step ---------------------------------------------------------------------
    @abstractmethod
    def covariances_from_moments(
        self,
        nk: Array,
        centred_means: Array,
        second_moments: Array,
        total_weight: float,
        reg_covar: float,
        previous: Array | None = None,
    ) -> Array:
        """Covariances maximising the expected complete-data log-likelihood.

        ``reg_covar`` is added to each component's scatter per unit weight (``W_k + n_k r
        I``), which for the unconstrained layouts is scikit-learn's ``+ r`` on the
        diagonal, and keeps every model's structure.

        Parameters
        ----------
        nk : ndarray of shape (K,)
            Summed responsibilities (already floored away from zero).
        centred_means : ndarray of shape (K, D)
            Component means minus the point each component's moments are taken around
            (``SuffStats.reference``; one common point for tied).
        second_moments : ndarray of shape (K, Q) or (1, Q)
            Responsibility-weighted sums of quadratic features of centred data.
        total_weight : float
            Sum of all sample weights.
        reg_covar : float
            Added to the diagonal.
        previous : ndarray, optional
            The covariances the statistics were computed with: the iterative M-steps
            start from them too, so that an EM iteration never lowers the objective.
        """

    def validate_covariances(self, covariances: Array, n_components: int, n_features: int) -> None:
        """Raise ``ValueError`` naming the problem if user covariances/precisions are bad."""
        expected = self.covariance_shape(n_components, n_features)
        if covariances.shape != expected:
            raise ValueError(
                f"the '{self.name}' precisions/covariances should have shape {expected}, "
                f"got {covariances.shape}"
            )
        if not np.all(np.isfinite(covariances)):
            raise ValueError(f"the '{self.name}' precisions contain NaN or infinity")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class MatrixLayout(CovarianceType):
    """Full and tied: packed outer products ``xc_i * xc_j`` (i <= j) as quadratic features."""

    def n_quadratic(self, n_features: int) -> int:
        return n_features * (n_features + 1) // 2

    def quadratic_features(self, xc: Array, out: Array) -> None:
        packed_outer_features(xc, out)


class VectorLayout(CovarianceType):
    """Diag and spherical: variances held as positive numbers instead of matrices."""

    def validate_covariances(self, covariances: Array, n_components: int, n_features: int) -> None:
        super().validate_covariances(covariances, n_components, n_features)
        if np.any(covariances <= 0.0):
            raise ValueError(f"the '{self.name}' precisions should be positive")


class FullLayout(MatrixLayout):
    """(K, D, D) matrices, one per component.  Subclasses constrain the per-component
    covariances in :meth:`constrain`; VVV leaves them as they are."""

    layout = "full"

    def covariance_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        return (n_components, n_features, n_features)

    def quadratic_coefficients(self, precisions_cholesky: Array) -> Array:
        precisions = precisions_from_cholesky(precisions_cholesky, "full")
        return _quad_coefficients_from_precision(precisions).T

    def precision_times(self, precisions_cholesky: Array, vectors: Array) -> Array:
        tmp = np.einsum("kji,kj->ki", precisions_cholesky, vectors)  # U' v
        return np.einsum("kij,kj->ki", precisions_cholesky, tmp)  # U U' v

    def log_det_cholesky(self, precisions_cholesky: Array, n_features: int) -> Array:
        diag = precisions_cholesky.reshape(len(precisions_cholesky), -1)[:, :: n_features + 1]
        return np.sum(np.log(diag), axis=1)

    def covariances_from_moments(
        self,
        nk: Array,
        centred_means: Array,
        second_moments: Array,
        total_weight: float,
        reg_covar: float,
        previous: Array | None = None,
    ) -> Array:
        d = centred_means.shape[1]
        covs = unpack_symmetric(second_moments / nk[:, None], d)
        covs -= centred_means[:, :, None] * centred_means[:, None, :]
        idx = np.arange(d)
        unconstrained = type(self).constrain is FullLayout.constrain
        # a variance is never negative: clip what rounding leaves below zero (on a
        # collapsed component) so reg_covar really is the floor, as for diag
        covs[:, idx, idx] = np.maximum(covs[:, idx, idx], 0.0) + reg_covar
        if unconstrained:
            # covs is exactly symmetric here; the one Cholesky factorisation the M-step
            # needs (in cholesky_precision) also tests definiteness, and
            # repair_positive_definite runs only when it fails: one O(D^3) step, not two
            return covs
        covs = repair_positive_definite(covs, "full", reg_covar)
        constrained = self.constrain(nk, covs, previous)
        if constrained is covs:
            return covs
        return repair_positive_definite(constrained, "full", reg_covar)

    def constrain(self, nk: Array, scatter: Array, previous: Array | None) -> Array:
        """The model's covariances (K, D, D) from per-component ``S_k = W_k / n_k``
        (K, D, D, regularised); may return ``scatter`` itself."""
        return scatter

    def validate_covariances(self, covariances: Array, n_components: int, n_features: int) -> None:
        super().validate_covariances(covariances, n_components, n_features)
        for k, mat in enumerate(covariances):
            _check_symmetric_pd(mat, f"precisions_init[{k}]")


class TiedLayout(MatrixLayout):
    """One (D, D) matrix shared by all components (EEE, scikit-learn's ``tied``)."""

    layout = "tied"
    shared_quadratic = True

    def covariance_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        return (n_features, n_features)

    def quadratic_coefficients(self, precisions_cholesky: Array) -> Array:
        precision = precisions_from_cholesky(precisions_cholesky, "tied")
        return _quad_coefficients_from_precision(precision)

    def precision_times(self, precisions_cholesky: Array, vectors: Array) -> Array:
        precision = precisions_cholesky @ precisions_cholesky.T
        return vectors @ precision  # symmetric

    def log_det_cholesky(self, precisions_cholesky: Array, n_features: int) -> Array:
        return np.asarray(np.sum(np.log(np.diag(precisions_cholesky))))

    def covariances_from_moments(
        self,
        nk: Array,
        centred_means: Array,
        second_moments: Array,
        total_weight: float,
        reg_covar: float,
        previous: Array | None = None,
    ) -> Array:
        d = centred_means.shape[1]
        total = unpack_symmetric(second_moments.sum(axis=0), d)
        between = (centred_means * nk[:, None]).T @ centred_means
        cov = (total - between) / nk.sum()
        idx = np.arange(d)
        cov[idx, idx] = np.maximum(cov[idx, idx], 0.0) + reg_covar
        return _make_positive_definite(cov, reg_covar)

    def validate_covariances(self, covariances: Array, n_components: int, n_features: int) -> None:
        super().validate_covariances(covariances, n_components, n_features)
        _check_symmetric_pd(covariances, "precisions_init")


class DiagLayout(VectorLayout):
    """(K, D) variances; subclasses constrain them in :meth:`constrain`."""

    layout = "diag"

    def n_quadratic(self, n_features: int) -> int:
        return n_features

    def covariance_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        return (n_components, n_features)

    def quadratic_features(self, xc: Array, out: Array) -> None:
        np.multiply(xc, xc, out=out)

    def quadratic_coefficients(self, precisions_cholesky: Array) -> Array:
        return -0.5 * (precisions_cholesky**2).T

    def precision_times(self, precisions_cholesky: Array, vectors: Array) -> Array:
        return vectors * precisions_cholesky**2

    def log_det_cholesky(self, precisions_cholesky: Array, n_features: int) -> Array:
        return np.sum(np.log(precisions_cholesky), axis=1)

    def covariances_from_moments(
        self,
        nk: Array,
        centred_means: Array,
        second_moments: Array,
        total_weight: float,
        reg_covar: float,
        previous: Array | None = None,
    ) -> Array:
        var = second_moments / nk[:, None] - centred_means**2
        return self.constrain(nk, np.maximum(var, 0.0) + reg_covar, previous)

    def constrain(self, nk: Array, scatter: Array, previous: Array | None) -> Array:
        """The model's (K, D) variances from the per-component diagonal scatter."""
        return scatter


class SphericalLayout(VectorLayout):
    """(K,) variances; subclasses constrain them in :meth:`constrain`."""

    layout = "spherical"

    def n_quadratic(self, n_features: int) -> int:
        return 1

    def covariance_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        return (n_components,)

    def quadratic_features(self, xc: Array, out: Array) -> None:
        np.einsum("ij,ij->i", xc, xc, out=out[:, 0])

    def quadratic_coefficients(self, precisions_cholesky: Array) -> Array:
        return -0.5 * (precisions_cholesky**2)[None, :]

    def precision_times(self, precisions_cholesky: Array, vectors: Array) -> Array:
        return vectors * (precisions_cholesky**2)[:, None]

    def log_det_cholesky(self, precisions_cholesky: Array, n_features: int) -> Array:
        return n_features * np.log(precisions_cholesky)

    def covariances_from_moments(
        self,
        nk: Array,
        centred_means: Array,
        second_moments: Array,
        total_weight: float,
        reg_covar: float,
        previous: Array | None = None,
    ) -> Array:
        d = centred_means.shape[1]
        var = second_moments[:, 0] / nk / d - np.sum(centred_means**2, axis=1) / d
        return self.constrain(nk, np.maximum(var, 0.0) + reg_covar, previous)

    def constrain(self, nk: Array, scatter: Array, previous: Array | None) -> Array:
        """The model's (K,) variances from the per-component mean variances."""
        return scatter


def _check_symmetric_pd(matrix: Array, name: str) -> None:
    if not np.allclose(matrix, matrix.T, rtol=1e-7, atol=1e-12 * np.abs(matrix).max()):
        raise ValueError(f"{name} is not symmetric")
    if np.linalg.eigvalsh(matrix).min() <= 0.0:
        raise ValueError(f"{name} is not positive definite")


#: Every name a model can be looked up by (models and aliases) -> its class.
REGISTRY: dict[str, type[CovarianceType]] = {}
_INSTANCES: dict[str, CovarianceType] = {}


def register(cls: type[CovarianceType], *aliases: str) -> type[CovarianceType]:
    """Make ``cls`` available under its model name and ``aliases``."""
    for name in (cls.model, *aliases):
        REGISTRY[name] = cls
        _INSTANCES[name] = cls(name)
    return cls


def get_covariance_type(name: str) -> CovarianceType:
    """Look up a covariance model by name or alias, with a clear error for unknown names."""
    try:
        return _INSTANCES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"covariance_type must be one of {sorted(_INSTANCES)}, got {name!r}"
        ) from None


def covariance_layout(name: str) -> str:
    """``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``: how model ``name`` is stored."""
    return get_covariance_type(name).layout


def log_2pi() -> float:
    return _LOG_2PI
