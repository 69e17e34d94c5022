"""gmmkit: fast, exact, reproducible Gaussian mixture models."""

from gmmkit.apps import (
    AnomalyDetector,
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

__version__ = "0.1.0"

__all__ = [
    "AnomalyDetector",
    "GaussianMixture",
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
