"""Torch engine: the chunk kernel runs where the data are (a CUDA device or the CPU).

The engine evaluates exactly the formulation of :mod:`gmmkit.core.kernel`, from the same
:class:`~gmmkit.core.kernel.KernelCoefficients`: the feature expansion ``[q(xc); xc; 1]``
and one GEMM for the log-joint (the whitening GEMM for tied, every component centred on
its own mean where the probes ask for it), a log-sum-exp with the same exponent floor,
the far-row repair (on the host, for the rare rows it concerns), and one statistics GEMM
taken in float64 -- the moments of the components in ``own_centred`` around their own
means.  Sums stay on the device across chunks; one float64
:class:`~gmmkit.core.suffstats.SuffStats` comes back per pass, and the M-step runs on
the host as for every other engine.

Input: a ``torch.Tensor`` is used where it lies; a NumPy array is copied to the device
once when it fits in the device-memory budget, otherwise streamed through it chunk by
chunk on every pass.  ``torch`` is imported only when this module is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, reduce
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from gmmkit._blas import one_blas_thread
from gmmkit.core.covariance import get_covariance_type
from gmmkit.core.kernel import FAR_LOG_JOINT, KernelCoefficients, _far_log_joint
from gmmkit.core.suffstats import ROUNDING_TIE, WORST_TIE, SuffStats, worst_row
from gmmkit.engines.base import Chunk, Engine, sample_positions, squares_limit
from gmmkit.engines.memory import default_chunk_rows

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "the torch engine (device=..., or torch.Tensor input) needs PyTorch: "
        "pip install 'gmmkit[torch]'"
    ) from exc

T = TypeVar("T")

#: Bytes of the (F + K, n) blocks of one device chunk (float64 statistics operands
#: included) on a CUDA device: large enough that kernel launches are amortised (a chunk
#: takes about 40 launches, whatever its size).
CUDA_CHUNK_BYTES = 1 << 30

#: Fraction of the free device memory a NumPy array may take to be copied to the
#: device once; larger arrays stream through it on every pass.
DEVICE_MEMORY_FRACTION = 0.5

#: A fixed device-memory budget in bytes for NumPy input, overriding
#: :data:`DEVICE_MEMORY_FRACTION` (and the CPU's unlimited one) when set.
MEMORY_BUDGET: int | None = None

#: The kernel's exponent floor (``exp`` of it next to 1 changes no sum), as in
#: :mod:`gmmkit.core.kernel`.
_EXP_FLOOR = {torch.float64: -600.0, torch.float32: -80.0}

_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def torch_dtype(dtype: Any) -> torch.dtype:
    """The torch dtype of a NumPy float32/float64 dtype."""
    return _TORCH_DTYPES[np.dtype(dtype)]


def numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return np.dtype(np.float32) if dtype == torch.float32 else np.dtype(np.float64)


def resolve_device(device: Any) -> torch.device:
    """``torch.device`` of a name or device, with a clear error for an absent CUDA."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device: {exc}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was given but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}); use device='cpu' or a CUDA build of torch"
        )
    return resolved


def checked_tensor(X: torch.Tensor, min_samples: int = 1, where: str = "X") -> torch.Tensor:
    """A 2-D float32/float64 tensor of finite values whose squares cannot overflow.

    Integer and boolean tensors become float64, half precision float32 (as scikit-learn
    converts arrays).  Raises ValueError naming the first offending row.
    """
    if X.is_complex():
        raise ValueError(f"Complex data not supported: {where} is a {X.dtype} tensor")
    if X.dtype not in (torch.float32, torch.float64):
        X = X.to(torch.float32 if X.is_floating_point() else torch.float64)
    if X.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {X.ndim}D tensor of shape {tuple(X.shape)} instead: "
            "reshape your data (X.reshape(-1, 1) for a single feature)"
        )
    n, d = X.shape
    if d < 1:
        raise ValueError(
            f"Found array with 0 feature(s) (shape=({n}, 0)) while a minimum of 1 is required."
        )
    if n < min_samples:
        raise ValueError(
            f"Found array with {n} sample(s) (shape=({n}, {d})) while a minimum of "
            f"{min_samples} is required."
        )
    finite = torch.isfinite(X).all(dim=1)
    if not bool(finite.all()):
        row = int(torch.nonzero(~finite)[0, 0])
        kind = "NaN" if bool(torch.isnan(X[row]).any()) else "infinity"
        raise ValueError(f"Input {where} contains {kind} (first at row {row})")
    limit = squares_limit(numpy_dtype(X.dtype), d)
    largest = X.abs().amax(dim=1)
    if bool((largest > limit).any()):
        row = int(torch.nonzero(largest > limit)[0, 0])
        hint = "rescale X (e.g. StandardScaler)"
        if X.dtype == torch.float32:
            hint += " or pass float64 data"
        raise ValueError(
            f"{where} has values up to {float(largest[row]):.3g} in magnitude (first at row "
            f"{row}); their squares would overflow {numpy_dtype(X.dtype)} (limit {limit:.3g} "
            f"for {d} features): {hint}"
        )
    return X.contiguous()


@dataclass(frozen=True)
class _Kernel:
    """:class:`KernelCoefficients` on the device.

    Blocks are feature-major, as in :mod:`gmmkit.core.kernel`: the features ``Phi.T``
    (F, n) and the log-joint (K, n), so that every elementwise step writes contiguous
    rows and every reduction over components or features runs across the rows (coalesced
    on a GPU; row-major (n, K) blocks reduce over a short last dimension, and the packed
    products would be written as strided column slices).
    """

    coefs: KernelCoefficients
    dtype: torch.dtype
    layout: str
    quadratic: bool
    reference: torch.Tensor  # (D, 1)
    weights_t: torch.Tensor  # (K, F): the E-step GEMM's left operand
    whitening: torch.Tensor | None  # (D, D) = U.T
    factors: torch.Tensor | None
    offsets: torch.Tensor | None
    constants: torch.Tensor | None
    own: torch.Tensor | None
    centred_components: list[int] | None
    rest: torch.Tensor | None
    triu: tuple[torch.Tensor, torch.Tensor]
    n_quadratic: int
    workspace: _Workspace

    @classmethod
    def of(
        cls, coefs: KernelCoefficients, device: torch.device, workspace: _Workspace | None = None
    ) -> _Kernel:
        dtype = torch_dtype(coefs.dtype)

        def put(array: Any) -> torch.Tensor | None:
            if array is None:
                return None
            return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype, device=device)

        d = len(coefs.reference)
        own = rest = None
        if coefs.own_centred is not None:
            own_np = np.asarray(coefs.own_centred, dtype=np.int64)
            rest_np = np.setdiff1d(np.arange(coefs.n_components), own_np)
            own = torch.as_tensor(own_np, device=device)
            rest = torch.as_tensor(rest_np, device=device)
        centred = getattr(coefs, "centred_components", None)
        weights_t = put(coefs.weights_t)
        assert weights_t is not None
        reference = put(np.asarray(coefs.reference_compute).reshape(d, 1))
        assert reference is not None
        return cls(
            coefs=coefs,
            dtype=dtype,
            layout=coefs.covariance.layout,
            quadratic=coefs.whitening is None and coefs.quadratic,
            reference=reference,
            weights_t=weights_t,
            whitening=put(coefs.whitening),
            factors=put(coefs.centred_factors),
            offsets=put(coefs.centred_offsets),
            constants=put(coefs.centred_constants),
            own=own,
            # a kernel that centres only some components on their own means (the others
            # keep the expansion GEMM) names them; without the field, all of them
            centred_components=None if centred is None else [int(k) for k in centred],
            rest=rest,
            triu=_triu_indices(d, device),
            n_quadratic=coefs.covariance.n_quadratic(d),
            workspace=_Workspace() if workspace is None else workspace,
        )

    # ------------------------------------------------------------------ E-step
    def features_t(self, X: torch.Tensor) -> torch.Tensor:
        """``[q(xc); xc; 1]`` of shape (F, n) in the compute dtype."""
        n, d = X.shape
        q = self.n_quadratic if self.quadratic else 0
        phi_t = self.workspace.get("phi", (q + d + 1, n), self.dtype, X.device)
        xc_t = phi_t[q : q + d]
        # float32 rows under a float64 kernel are promoted by the subtraction itself
        # (exactly, as a conversion would), without a converted copy of the chunk
        rows_t = X.T if self.dtype == torch.float64 else X.to(self.dtype).T
        torch.sub(rows_t, self.reference, out=xc_t)
        phi_t[q + d] = 1.0
        if q:
            if self.layout in ("full", "tied"):
                # row i of the packed upper triangle: xc_i * xc_{i..D-1}, one contiguous
                # (D - i, n) block written in place
                start = 0
                for i in range(d):
                    torch.mul(xc_t[i], xc_t[i:], out=phi_t[start : start + d - i])
                    start += d - i
            elif self.layout == "diag":
                torch.mul(xc_t, xc_t, out=phi_t[:q])
            else:
                torch.sum(xc_t * xc_t, dim=0, keepdim=True, out=phi_t[:q])
        return phi_t

    def log_joint_t(self, phi_t: torch.Tensor, d: int) -> torch.Tensor:
        """(K, n) ``log(pi_k N(x | k))`` from the feature block."""
        q = phi_t.shape[0] - d - 1
        xc_t = phi_t[q : q + d]
        if self.offsets is not None and self.centred_components is None:
            return self._centred_log_joint_t(xc_t, range(len(self.offsets)))
        if self.whitening is None:
            log_prob = self.workspace.get(
                "log_prob", (len(self.weights_t), phi_t.shape[1]), self.dtype, phi_t.device
            )
            torch.mm(self.weights_t, phi_t, out=log_prob)
        else:
            white = self.whitening @ xc_t
            quad = white.mul_(white).sum(dim=0)
            log_prob = self.weights_t @ phi_t[q:]
            log_prob += quad.mul_(-0.5)
        if self.offsets is not None and self.centred_components is not None:
            # the expansion's rows of the inaccurate components are replaced
            self._centred_log_joint_t(xc_t, self.centred_components, log_prob)
        return log_prob

    def _centred_log_joint_t(
        self, xc_t: torch.Tensor, components: Iterable[int], out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Rows ``components`` of the (K, n) log-joint evaluated centred on each
        component's own mean: ``(x - ref) - (mu_k - ref)`` first, then ``U_k'``."""
        assert self.factors is not None and self.offsets is not None
        assert self.constants is not None
        if out is None:
            out = torch.empty(
                (len(self.offsets), xc_t.shape[1]), dtype=xc_t.dtype, device=xc_t.device
            )
        for k in components:
            diff = xc_t - self.offsets[k][:, None]
            if self.layout == "full":
                y = self.factors[k].T @ diff
            elif self.layout == "tied":
                y = self.factors.T @ diff
            else:
                y = diff * self.factors[k].reshape(-1, 1)
            torch.sum(y.mul_(y), dim=0, out=out[k])
            out[k] *= -0.5
            out[k] += self.constants[k]
        return out

    def repaired_log_joint_t(
        self, X: torch.Tensor, repair: bool = True
    ) -> tuple[
        torch.Tensor,
        torch.Tensor,
        torch.Tensor,
        tuple[torch.Tensor, torch.Tensor] | None,
        torch.Tensor | None,
    ]:
        """Log-joint (K, n), the feature block (F, n), the per-row maxima of the
        log-joint (n,), and the far rows re-evaluated on the host by the numpy kernel's
        own :func:`_far_log_joint` (their indices and the per-row offset to add back), as
        :func:`gmmkit.core.kernel._repair_far_rows` does.

        The row maxima (taken once: they serve both the far-row test and the
        log-sum-exp's shift) include the repaired rows.  Without ``repair`` nothing
        waits for the device: the last item is then a device flag, true when the block
        has far rows (and the results are to be recomputed)."""
        phi_t = self.features_t(X)
        log_prob = self.log_joint_t(phi_t, X.shape[1])
        col_max = log_prob.amax(dim=0)
        if len(X) == 0:
            return log_prob, phi_t, col_max, None, None
        far_mask = ~(col_max.abs() <= FAR_LOG_JOINT)
        if not repair:
            return log_prob, phi_t, col_max, None, far_mask.any()
        if not bool(far_mask.any()):
            return log_prob, phi_t, col_max, None, None
        rows = torch.nonzero(far_mask)[:, 0]
        rel, shift = _far_log_joint(self.coefs, X[rows].cpu().numpy())
        log_prob[:, rows] = torch.as_tensor(rel, device=X.device).to(self.dtype)
        col_max[rows] = log_prob[:, rows].amax(dim=0)
        far = (rows, torch.as_tensor(shift, device=X.device))
        return log_prob, phi_t, col_max, far, None

    def exp_shifted_(self, log_prob: torch.Tensor, col_max: torch.Tensor) -> torch.Tensor:
        """Replace the (K, n) block by ``exp(max(log_prob - row max, floor))`` in place;
        returns its sums over the components (n,)."""
        log_prob.sub_(col_max).clamp_min_(_EXP_FLOOR[self.dtype]).exp_()
        return log_prob.sum(dim=0)

    # ------------------------------------------------------------------ statistics
    def statistics(
        self,
        X: torch.Tensor,
        weight: torch.Tensor | None,
        labels: torch.Tensor | None,
        label_weight: float,
        repair: bool = True,
    ) -> _DeviceStats:
        """One chunk's statistics as device tensors (see
        :func:`gmmkit.core.kernel.chunk_statistics`, which this follows step by step).
        Without ``repair`` (no wait for the device) they hold garbage when ``far_rows``
        turns out true, and are to be recomputed with it."""
        n, d = X.shape
        tied = self.whitening is not None
        log_prob, phi_t, col_max, far, far_rows = self.repaired_log_joint_t(X, repair)
        f64 = torch.float64

        labelled = known = labelled_log_density = None
        if labels is not None:
            labelled = torch.nonzero(labels >= 0)[:, 0]
            if len(labelled) == 0:
                labelled = None
            else:
                known = labels[labelled]
                labelled_log_density = log_prob[known, labelled].to(f64)
                if far is not None:
                    row_shift = torch.zeros(n, dtype=f64, device=X.device)
                    row_shift[far[0]] = far[1]
                    labelled_log_density = labelled_log_density + row_shift[labelled]

        col_sum = self.exp_shifted_(log_prob, col_max)
        resp = log_prob  # the shifted exponentials, not yet divided by their sums
        log_norm = torch.log(col_sum).to(f64) + col_max
        if far is not None:
            log_norm[far[0]] += far[1]

        if labelled is not None:
            assert known is not None and labelled_log_density is not None
            weight = torch.ones(n, dtype=f64, device=X.device) if weight is None else weight.clone()
            weight[labelled] *= label_weight
            log_norm[labelled] = labelled_log_density
            resp[:, labelled] = 0.0
            resp[known, labelled] = 1.0
            col_sum[labelled] = 1.0

        # responsibilities * weight = exp_shifted * (weight / col_sum): the scale is
        # folded into the smaller of the two GEMM operands
        scale = torch.reciprocal(col_sum)
        if weight is not None:
            scale *= weight.to(self.dtype)

        second: torch.Tensor
        if tied:
            xc_t = phi_t[:d]
            weighted = xc_t if weight is None else xc_t * weight.to(self.dtype)
            pooled = weighted.to(f64) @ xc_t.to(f64).T
            second = pooled[self.triu[0], self.triu[1]][None, :]
        if self.own is None:
            # the statistics GEMM runs in float64 even for float32 blocks (moments around
            # the shared reference cancel in the M-step); the scaling writes its float64
            # operand directly (computed in the block's dtype, as the numpy kernel's
            # in-place scaling followed by the conversion), so the scaled operand
            # costs one pass instead of two
            if phi_t.shape[0] < resp.shape[0]:
                phi64 = self._scaled(phi_t, scale, "phi64")
                resp64 = self._float64(resp, "resp64")
            else:
                phi64 = self._float64(phi_t, "phi64")
                resp64 = self._scaled(resp, scale, "resp64")
            moments = resp64 @ phi64.T  # (K, F)
            q = 0 if tied else phi_t.shape[0] - d - 1
            if not tied:
                second = moments[:, :q]
            nk = moments[:, -1]
            first = moments[:, q : q + d]
        else:
            assert self.rest is not None
            resp *= scale
            nk = resp.sum(dim=1).to(f64)
            q = phi_t.shape[0] - d - 1
            k = resp.shape[0]
            first = torch.empty((k, d), dtype=f64, device=X.device)
            second = torch.empty((k, self.n_quadratic), dtype=f64, device=X.device)
            if len(self.rest):
                moments = (resp[self.rest] @ phi_t.T).to(f64)
                first[self.rest] = moments[:, q : q + d]
                second[self.rest] = moments[:, :q]
            own_first, own_second = self._own_mean_moments(phi_t[q : q + d], resp)
            first[self.own] = own_first
            second[self.own] = own_second

        if weight is None:
            candidates = log_norm
            log_likelihood = log_norm.sum()
            total_weight: torch.Tensor | float = float(n)  # no host-to-device copy
        else:
            weight64 = weight.to(f64)
            candidates = torch.where(weight64 > 0, log_norm, torch.inf)
            log_likelihood = weight64 @ log_norm
            total_weight = weight64.sum()
        if n:
            # the first row tied with the lowest (SuffStats' WORST_TIE), found on the
            # device without a wait: rounding that differs from the CPU's must not pick
            # another of several near-equal rows
            lowest = candidates.min()
            limit = torch.where(
                torch.isfinite(lowest), lowest + WORST_TIE * (1.0 + lowest.abs()), lowest
            )
            order = torch.arange(n, device=candidates.device)
            worst = torch.where(candidates <= limit, order, n).min()
            worst_value = candidates[worst]
            worst_point = X[worst].to(f64)
        else:
            worst_value = torch.tensor(torch.inf, dtype=f64, device=X.device)
            worst_point = torch.zeros(d, dtype=f64, device=X.device)
        return _DeviceStats(
            nk, first, second, log_likelihood, total_weight, n, worst_value, worst_point,
            far_rows,
        )

    def _own_mean_moments(
        self, xc_t: torch.Tensor, resp: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Moments of the ``own`` components around their own means (see
        :func:`gmmkit.core.kernel._own_mean_moments`); ``xc_t`` (D, n), ``resp`` (K, n)."""
        assert self.own is not None and self.offsets is not None
        firsts, seconds = [], []
        for k in self.own.tolist():
            diff = xc_t - self.offsets[k][:, None]
            firsts.append(diff @ resp[k])
            y = diff * torch.sqrt(resp[k])
            if self.layout == "full":
                outer = y @ y.T
                seconds.append(outer[self.triu[0], self.triu[1]])
            else:
                totals = y.mul_(y).sum(dim=1)
                seconds.append(totals if self.layout == "diag" else totals.sum()[None])
        return (
            torch.stack(firsts).to(torch.float64),
            torch.stack(seconds).to(torch.float64),
        )

    # ------------------------------------------------------------------ per row
    def rows(self, X: torch.Tensor, kind: str) -> torch.Tensor:
        """Per-row results of :func:`gmmkit.core.kernel.score_chunk` ("score"),
        ``predict_chunk`` ("predict"), ``proba_chunk`` ("proba"), or the largest log
        responsibility of :func:`~gmmkit.core.kernel.log_resp_and_density`
        ("map_log_resp")."""
        log_prob, _, col_max, far, _ = self.repaired_log_joint_t(X)
        f64 = torch.float64
        if kind == "predict":
            return log_prob.argmax(dim=0)
        exact = None
        if kind == "proba" and far is not None:
            rel = log_prob[:, far[0]].to(f64)
            rel = rel - rel.amax(dim=0)
            exact = rel.exp()
            exact = exact / exact.sum(dim=0)
        if kind == "map_log_resp":
            shifted = log_prob.sub_(col_max)
            log_sum = torch.log(shifted.clamp_min(_EXP_FLOOR[self.dtype]).exp_().sum(dim=0))
            return (shifted - log_sum).amax(dim=0).to(f64)
        col_sum = self.exp_shifted_(log_prob, col_max)
        if kind == "score":
            density = torch.log(col_sum).to(f64) + col_max
            if far is not None:
                density[far[0]] += far[1]
            return density
        if kind != "proba":
            raise ValueError(f"unknown per-row kernel {kind!r}")
        proba = (log_prob / col_sum).to(f64)
        if exact is not None and far is not None:
            proba[:, far[0]] = exact
        return proba.T


    def _float64(self, block: torch.Tensor, name: str) -> torch.Tensor:
        """``block`` as float64 (itself when it is), in the workspace buffer ``name``."""
        if block.dtype == torch.float64:
            return block
        return self.workspace.get(name, block.shape, torch.float64, block.device).copy_(block)

    def _scaled(self, block: torch.Tensor, scale: torch.Tensor, name: str) -> torch.Tensor:
        """``block * scale`` (scale broadcast over the block's rows) as float64, computed
        in the block's own dtype (as an in-place scaling followed by a conversion) and
        written once, in place or into the workspace buffer ``name``."""
        if block.dtype == torch.float64:
            return block.mul_(scale)
        out = self.workspace.get(name, block.shape, torch.float64, block.device)
        return torch.mul(block, scale, out=out)


class _Workspace(threading.local):
    """The kernel's large blocks, reused across chunks and passes: flat buffers (one per
    name and dtype, per thread) grown to the largest chunk, viewed as contiguous blocks.

    On a CUDA device kernels on one stream run in order, so a chunk queued after another
    overwrites its blocks only once the earlier one is done with them; on the CPU the
    reuse saves the page faults of fresh large allocations (measured 3x slower float64
    conversions).  Nothing a kernel returns is a view of a buffer.
    """

    def __init__(self) -> None:
        self.buffers: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}

    def get(
        self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        size = int(np.prod(shape))
        key = (name, dtype, torch.device(device))
        buffer = self.buffers.get(key)
        if buffer is None or buffer.numel() < size:
            del buffer
            self.buffers.pop(key, None)  # freed before its successor is allocated
            buffer = torch.empty(size, dtype=dtype, device=device)
            self.buffers[key] = buffer
        return buffer[:size].view(shape)


@cache
def _triu_index_arrays(d: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    rows, cols = np.triu_indices(d)
    return rows, cols


def _triu_indices(d: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = _triu_index_arrays(d)
    return torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)


@dataclass
class _DeviceStats:
    """A chunk's statistics on the device (float64 tensors)."""

    nk: torch.Tensor
    first: torch.Tensor
    second: torch.Tensor
    log_likelihood: torch.Tensor
    total_weight: torch.Tensor | float
    n_samples: int
    worst_value: torch.Tensor
    worst_point: torch.Tensor
    far_rows: torch.Tensor | None = None


def _total(parts: list[_DeviceStats], reference: NDArray[np.float64]) -> SuffStats:
    """Sum of the chunks' statistics in order, brought to the host in one transfer."""
    nk, first, second = parts[0].nk, parts[0].first, parts[0].second
    log_likelihood, total_weight = parts[0].log_likelihood, parts[0].total_weight
    for p in parts[1:]:
        nk, first, second = nk + p.nk, first + p.first, second + p.second
        log_likelihood = log_likelihood + p.log_likelihood
        total_weight = total_weight + p.total_weight
    worst_values = torch.stack([p.worst_value for p in parts])
    worst_points = torch.stack([p.worst_point for p in parts])
    blocks = [nk, first, second, log_likelihood, worst_values, worst_points]
    if isinstance(total_weight, torch.Tensor):
        blocks.append(total_weight)
    flat = torch.cat([b.detach().reshape(-1).to(torch.float64) for b in blocks])
    values = iter(np.split(flat.cpu().numpy(), np.cumsum([b.numel() for b in blocks])[:-1]))
    nk_h, first_h, second_h, ll_h, worst_values_h, worst_points_h = (
        next(values) for _ in range(6)
    )
    if isinstance(total_weight, torch.Tensor):
        total_weight = float(next(values)[0])
    # the first chunk holding the lowest value, as SuffStats.__add__ keeps
    worst = worst_row(worst_values_h)
    return SuffStats(
        nk=nk_h.copy(),
        first=first_h.reshape(first.shape).copy(),
        second=second_h.reshape(second.shape).copy(),
        log_likelihood=float(ll_h[0]),
        total_weight=float(total_weight),
        n_samples=sum(p.n_samples for p in parts),
        reference=reference,
        worst_log_density=float(worst_values_h[worst]),
        worst_point=worst_points_h.reshape(worst_points.shape)[worst].copy(),
    )


@contextmanager
def _ieee_float32() -> Iterator[None]:
    """float32 GEMMs in full float32 while the kernel runs: TF32 or bf16 products (which
    a user may have enabled globally) carry ~1e-3 relative error, far above what the
    kernel's precision probes allow for float32 evaluation."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def is_tensor(X: Any) -> bool:
    return isinstance(X, torch.Tensor)


class TorchEngine(Engine):
    """Rows on a torch device, or a NumPy array streamed through one.

    Parameters
    ----------
    X : torch.Tensor or ndarray of shape (N, D)
        A tensor (checked, float32/float64) stays where it lies unless ``device`` names
        another device.  An array (already validated) is copied to the device once when
        it takes at most ``memory_budget`` bytes, otherwise streamed chunk by chunk on
        every pass.
    sample_weight : ndarray of shape (N,), optional
        Validated float64 weights (on the host; copied to the device with the data).
    labels : ndarray of shape (N,), optional
        Known components (``-1`` unknown), semi-supervised fits.
    device : str or torch.device, optional
        Default: the tensor's own device; for arrays, CUDA when available, else CPU.
    chunk_rows : int, optional
        Rows per kernel call.  Default: blocks of about :data:`CUDA_CHUNK_BYTES` on a
        CUDA device, the CPU engines' cache-sized blocks on the CPU.
    memory_budget : int, optional
        Bytes an array may occupy on the device; default :data:`DEVICE_MEMORY_FRACTION`
        of the free device memory (unlimited on the CPU, where tensors share the
        array's memory).
    n_components, covariance_type :
        Size the default chunks.
    """

    def __init__(
        self,
        X: Any,
        sample_weight: NDArray[np.float64] | None = None,
        labels: NDArray[np.intp] | None = None,
        *,
        device: Any = None,
        chunk_rows: int | None = None,
        memory_budget: int | None = None,
        n_components: int = 1,
        covariance_type: str = "full",
    ) -> None:
        if device is None:
            device = X.device if is_tensor(X) else ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = resolve_device(device)
        self.sample_weight = sample_weight
        self.labels = labels
        self.returns_tensors = is_tensor(X)
        self._host: NDArray[Any] | None = None
        if is_tensor(X):
            self.X = X.to(self.device)
        else:
            X = np.asarray(X)
            if memory_budget is None:
                memory_budget = self._default_budget()
            if X.nbytes <= memory_budget:
                self.X = torch.as_tensor(X, device=self.device)
            else:
                self._host = X
                self.X = None
        shape = self.X.shape if self.X is not None else self._host.shape  # type: ignore[union-attr]
        self._n, self._d = int(shape[0]), int(shape[1])
        self._dtype = numpy_dtype(self.X.dtype) if self.X is not None else np.dtype(X.dtype)
        if chunk_rows is None:
            if self.device.type == "cuda":
                f = get_covariance_type(covariance_type).n_quadratic(self._d) + self._d + 1
                # per row: the (F + K) blocks in the compute dtype and their float64
                # copies for the statistics GEMM
                row_bytes = (self._dtype.itemsize + 8) * (f + n_components)
                chunk_rows = max(1024, CUDA_CHUNK_BYTES // row_bytes)
            else:
                chunk_rows = default_chunk_rows(
                    self._d, n_components, self._dtype.itemsize, covariance_type, fused=False
                )
        if memory_budget is not None and self.X is None:
            row_bytes = self._d * self._dtype.itemsize
            chunk_rows = min(chunk_rows, max(1, memory_budget // max(row_bytes, 1)))
        self.chunk_rows = max(1, int(chunk_rows))
        self._weight_device = (
            None if sample_weight is None or self.X is None
            else torch.as_tensor(sample_weight, dtype=torch.float64, device=self.device)
        )
        self._workspace = _Workspace()
        self._labels_device = (
            None if labels is None or self.X is None
            else torch.as_tensor(np.asarray(labels, np.int64), device=self.device)
        )

    def _default_budget(self) -> int:
        if MEMORY_BUDGET is not None:
            return int(MEMORY_BUDGET)
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return int(free * DEVICE_MEMORY_FRACTION)
        return np.iinfo(np.int64).max

    @property
    def n_samples(self) -> int:
        return self._n

    @property
    def n_features(self) -> int:
        return self._d

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def streamed(self) -> bool:
        """Whether the rows stream through the device on every pass."""
        return self.X is None

    @contextmanager
    def session(self) -> Iterator[Engine]:
        # the host runs only M-steps: K small factorisations, fastest on one BLAS thread
        with one_blas_thread():
            yield self

    def _device_chunks(
        self,
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None, torch.Tensor | None]]:
        """(start, rows, weights, labels) on the device, chunk by chunk."""
        for start in range(0, self._n, self.chunk_rows):
            yield self._device_chunk(start)

    def _device_chunk(
        self, start: int
    ) -> tuple[int, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        stop = min(start + self.chunk_rows, self._n)
        if self.X is not None:
            X = self.X[start:stop]
            weight = None if self._weight_device is None else self._weight_device[start:stop]
            labels = None if self._labels_device is None else self._labels_device[start:stop]
        else:
            assert self._host is not None
            X = torch.as_tensor(self._host[start:stop], device=self.device)
            weight = None if self.sample_weight is None else torch.as_tensor(
                self.sample_weight[start:stop], dtype=torch.float64, device=self.device
            )
            labels = None if self.labels is None else torch.as_tensor(
                np.asarray(self.labels[start:stop], np.int64), device=self.device
            )
        return start, X, weight, labels

    def chunks(self) -> Iterator[Chunk]:
        """Host (NumPy) chunks, for the kernels that have no device version."""
        for start, X, _, _ in self._device_chunks():
            stop = start + len(X)
            yield Chunk(
                X=X.cpu().numpy(),
                sample_weight=None if self.sample_weight is None
                else self.sample_weight[start:stop],
                labels=None if self.labels is None else np.asarray(self.labels[start:stop]),
                start=start,
            )

    # ------------------------------------------------------------------ generic
    def map_reduce(self, func: Callable[[Chunk], T]) -> T:
        return reduce(lambda a, b: a + b, (func(c) for c in self.chunks()))  # type: ignore[operator]

    def map_rows(self, func: Callable[[Chunk], NDArray[Any]]) -> NDArray[Any]:
        return np.concatenate([func(c) for c in self.chunks()], axis=0)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[NDArray[Any], NDArray[np.float64]]:
        positions, weights = sample_positions(self._n, self.sample_weight, n, rng)
        return self.take(positions), weights

    def take(self, indices: NDArray[np.intp]) -> NDArray[Any]:
        if self.X is None:
            assert self._host is not None
            return np.asarray(self._host[indices])
        index = torch.as_tensor(np.asarray(indices, np.int64), device=self.device)
        return self.X[index].cpu().numpy()

    # ------------------------------------------------------------------ kernels
    def kernel_statistics(self, coefs: KernelCoefficients, label_weight: float = 1.0) -> SuffStats:
        kernel = _Kernel.of(coefs, self.device, self._workspace)
        with _ieee_float32():
            # the chunks are queued without waiting for the device; the few that hold rows
            # too far out for the expansion are then recomputed with the host's repair
            starts, parts = [], []
            for start, X, weight, labels in self._device_chunks():
                starts.append(start)
                parts.append(kernel.statistics(X, weight, labels, label_weight, repair=False))
            flags = [p.far_rows for p in parts if p.far_rows is not None]
            if flags and bool(torch.stack(flags).any()):
                for i, part in enumerate(parts):
                    if part.far_rows is not None and bool(part.far_rows):
                        _, X, weight, labels = self._device_chunk(starts[i])
                        parts[i] = kernel.statistics(X, weight, labels, label_weight)
            return _total(parts, coefs.stats_reference)

    def kernel_rows(self, coefs: KernelCoefficients, kind: str) -> Any:
        kernel = _Kernel.of(coefs, self.device, self._workspace)
        with _ieee_float32():
            parts = [kernel.rows(X, kind) for _, X, _, _ in self._device_chunks()]
        result = torch.cat(parts) if parts else torch.empty(0, device=self.device)
        return result if self.returns_tensors else result.cpu().numpy()

    def nearest_statistics(
        self, covariance_type: str, centres: NDArray[Any], reference: NDArray[Any]
    ) -> SuffStats:
        """Statistics of every row assigned to its nearest centre, on the device (see
        :func:`gmmkit.core.init._nearest_stats` and
        :func:`gmmkit.core.kernel.hard_statistics`)."""
        cov = get_covariance_type(covariance_type)
        f64 = torch.float64
        ref = torch.as_tensor(np.asarray(reference, np.float64), device=self.device)
        cc = torch.as_tensor(np.asarray(centres, np.float64), device=self.device) - ref
        k, d = cc.shape
        rows, cols = (torch.as_tensor(a, device=self.device) for a in np.triu_indices(d))
        layout = cov.layout
        nk = torch.zeros(k, dtype=f64, device=self.device)
        first = torch.zeros((k, d), dtype=f64, device=self.device)
        q = cov.n_quadratic(d)
        matrices = layout in ("full", "tied")
        # full and tied: (D, D) scatter GEMMs per component (or pooled), packed at the end;
        # never an (n, D (D + 1) / 2) block of features, which wide data cannot afford
        second = torch.zeros(
            (1 if cov.shared_quadratic else k, *((d, d) if matrices else (q,))),
            dtype=f64, device=self.device,
        )
        total = torch.zeros((), dtype=f64, device=self.device)
        for _, X, weight, _ in self._device_chunks():
            xc = X.to(f64) - ref
            # nearest centre, by the same sums as gmmkit.core.kmeans.squared_distances
            d2 = (xc * xc).sum(dim=1)[:, None] - 2.0 * (xc @ cc.T)
            d2 += (cc * cc).sum(dim=1)[None, :]
            d2.clamp_min_(0.0)
            # the first centre tied with the nearest: repeated centres (more components
            # than distinct rows) give exactly equal columns on the CPU, where argmin
            # takes the first, but the device's GEMM may round them differently
            nearest = d2.min(dim=1, keepdim=True).values
            tied = d2 <= nearest + ROUNDING_TIE * (nearest + (xc * xc).sum(dim=1, keepdim=True))
            order = torch.arange(k, device=self.device)
            labels = torch.where(tied, order, k).min(dim=1).values
            w = torch.ones(len(xc), dtype=f64, device=self.device) if weight is None else weight
            nk.index_add_(0, labels, w)
            weighted = xc * w[:, None]
            first.index_add_(0, labels, weighted)
            total += w.sum()
            if cov.shared_quadratic:
                second[0] += weighted.T @ xc
            elif matrices:
                for j in range(k):
                    second[j] += (weighted * (labels == j)[:, None]).T @ xc
            else:
                quad = xc * xc if layout == "diag" else (xc * xc).sum(dim=1, keepdim=True)
                second.index_add_(0, labels, quad * w[:, None])
        if matrices:
            second = second[:, rows, cols]
        ref_np = np.asarray(reference, np.float64)
        return SuffStats(
            nk=nk.cpu().numpy(),
            first=first.cpu().numpy(),
            second=second.cpu().numpy(),
            log_likelihood=0.0,
            total_weight=float(total),
            n_samples=self._n,
            reference=np.tile(ref_np, (k, 1)),
            worst_log_density=np.inf,
            worst_point=np.zeros(d),
        )
