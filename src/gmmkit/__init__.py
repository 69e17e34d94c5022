"""gmmkit: fast, exact, reproducible Gaussian mixture models."""

from gmmkit.core.params import MixtureParams
from gmmkit.core.suffstats import SuffStats
from gmmkit.io import ModelFileError, load
from gmmkit.mixture import GaussianMixture
from gmmkit.readers import read_csv, read_parquet

__version__ = "0.1.0"

__all__ = [
    "GaussianMixture",
    "MixtureParams",
    "ModelFileError",
    "SuffStats",
    "__version__",
    "load",
    "read_csv",
    "read_parquet",
]
