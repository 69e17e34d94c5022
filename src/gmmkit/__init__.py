"""gmmkit: fast, exact, reproducible Gaussian mixture models."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gmmkit.apps import (
        AnomalyDetector,
        GaussianMixtureImputer,
        GaussianMixtureSelector,
        PCAGaussianMixtureGenerator,
        SemiSupervisedGaussianMixture,
        UnivariateMixture,
        fit_1d,
        read_image,
        segment_image,
        select,
        write_image,
    )
    from gmmkit.core.params import MixtureParams
    from gmmkit.core.suffstats import SuffStats
    from gmmkit.mixture import GaussianMixture
    from gmmkit.modelfile import ModelFileError, load
    from gmmkit.readers import read_csv, read_parquet

#: Where each public name lives. They are imported on first use (PEP 562), so that
#: ``gmmkit --version`` and ``--help`` start without NumPy, SciPy and scikit-learn.
_LAZY = {
    "AnomalyDetector": "gmmkit.apps",
    "GaussianMixtureImputer": "gmmkit.apps",
    "GaussianMixtureSelector": "gmmkit.apps",
    "PCAGaussianMixtureGenerator": "gmmkit.apps",
    "SemiSupervisedGaussianMixture": "gmmkit.apps",
    "UnivariateMixture": "gmmkit.apps",
    "fit_1d": "gmmkit.apps",
    "read_image": "gmmkit.apps",
    "segment_image": "gmmkit.apps",
    "select": "gmmkit.apps",
    "write_image": "gmmkit.apps",
    "MixtureParams": "gmmkit.core.params",
    "SuffStats": "gmmkit.core.suffstats",
    "GaussianMixture": "gmmkit.mixture",
    "ModelFileError": "gmmkit.modelfile",
    "load": "gmmkit.modelfile",
    "read_csv": "gmmkit.readers",
    "read_parquet": "gmmkit.readers",
}


def __getattr__(name: str) -> Any:
    """Import a public name (or a submodule, ``gmmkit.mixture``) on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif not name.startswith("_"):
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'gmmkit' has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module 'gmmkit' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__version__ = "0.1.0"

__all__ = [
    "AnomalyDetector",
    "GaussianMixture",
    "GaussianMixtureImputer",
    "GaussianMixtureSelector",
    "MixtureParams",
    "ModelFileError",
    "PCAGaussianMixtureGenerator",
    "SemiSupervisedGaussianMixture",
    "SuffStats",
    "UnivariateMixture",
    "__version__",
    "fit_1d",
    "load",
    "read_csv",
    "read_image",
    "read_parquet",
    "segment_image",
    "select",
    "write_image",
]
