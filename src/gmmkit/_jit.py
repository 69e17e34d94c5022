"""Optional compiled kernels (numba): whether they are available, imported lazily.

numba is an optional dependency (``pip install 'gmmkit[fast]'``).  With it, the E-step
over rows with missing values (full and tied covariances) runs compiled kernels
(:mod:`gmmkit.core._missing_jit`), so do the VVV hierarchical agglomeration's pair
costs (:mod:`gmmkit.core._hc_jit`), the complete-data E-step of full, tied, diagonal and
spherical covariances at few features (:mod:`gmmkit.core._fused_jit`) and the iterations
inside the M-steps of mclust's VEI, VEV, VEE, EVE and VVE models at those sizes
(:mod:`gmmkit.core._mstep_jit`); without it,
or with the environment variable ``GMMKIT_NUMBA=0``, the numpy implementation runs
(the reference: both give the same statistics up to rounding, the agglomeration's
kernels the same costs bit for bit).
The variable is read at every use, so it can be changed at run time (tests run both
paths).
"""

from __future__ import annotations

import importlib
import os
from functools import cache
from types import ModuleType

#: The environment variable that disables the compiled kernels when ``0`` (or
#: ``false``, ``no``, ``off``).
ENVIRONMENT = "GMMKIT_NUMBA"


@cache
def _load(name: str = "_missing_jit") -> ModuleType | None:
    """The compiled kernels' module ``gmmkit.core.<name>``, or None when numba is absent
    or not importable with this numpy."""
    try:
        return importlib.import_module(f"gmmkit.core.{name}")
    except ImportError:
        return None


def _setting() -> str:
    return os.environ.get(ENVIRONMENT, "").strip().lower()


def enabled() -> bool:
    """Whether ``GMMKIT_NUMBA`` allows the compiled kernels (it does unless it is set to
    ``0``, ``false``, ``no`` or ``off``)."""
    return _setting() not in ("0", "false", "no", "off")


def kernels() -> ModuleType | None:
    """The compiled kernels' module, or None when numba is absent or disabled."""
    return _load() if enabled() else None


def forced() -> bool:
    """Whether ``GMMKIT_NUMBA`` asks for the compiled kernels explicitly (``1``, ``true``,
    ``yes`` or ``on``) rather than leaving the choice to gmmkit (unset)."""
    return _setting() in ("1", "true", "yes", "on")


def hc_kernels() -> ModuleType | None:
    """The agglomeration's compiled kernels, or None when numba is absent or disabled."""
    return _load("_hc_jit") if enabled() else None


def fused_kernels() -> ModuleType | None:
    """The fused complete-data E-step's compiled kernels (full, tied, diagonal and
    spherical covariances at few features, :mod:`gmmkit.core._fused_jit`), or None when numba is
    absent or disabled."""
    return _load("_fused_jit") if enabled() else None


def mstep_kernels() -> ModuleType | None:
    """The constrained covariance models' compiled M-step iterations (VEI, VEV, VEE, EVE,
    VVE, :mod:`gmmkit.core._mstep_jit`), or None when numba is absent or disabled."""
    return _load("_mstep_jit") if enabled() else None


def available() -> bool:
    """Whether the compiled kernels run (numba importable and not disabled)."""
    return kernels() is not None


def backend() -> str:
    """``"numba"`` or ``"numpy"``: which implementation the missing-value E-step uses."""
    return "numba" if available() else "numpy"
