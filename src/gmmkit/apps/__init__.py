"""What users fit mixtures for: model selection, anomaly detection, semi-supervised EM,
image segmentation, generation and 1-D helpers, all built on :class:`~gmmkit.GaussianMixture`.
"""

from gmmkit.apps.anomaly import AnomalyDetector
from gmmkit.apps.generation import PCAGaussianMixtureGenerator
from gmmkit.apps.imputation import GaussianMixtureImputer
from gmmkit.apps.segmentation import SegmentationResult, read_image, segment_image, write_image
from gmmkit.apps.selection import (
    DegenerateMixtureWarning,
    GaussianMixtureSelector,
    SelectionResult,
    select,
)
from gmmkit.apps.semisupervised import SemiSupervisedGaussianMixture
from gmmkit.apps.univariate import UnivariateMixture, fit_1d

__all__ = [
    "AnomalyDetector",
    "DegenerateMixtureWarning",
    "GaussianMixtureImputer",
    "GaussianMixtureSelector",
    "PCAGaussianMixtureGenerator",
    "SegmentationResult",
    "SelectionResult",
    "SemiSupervisedGaussianMixture",
    "UnivariateMixture",
    "fit_1d",
    "read_image",
    "segment_image",
    "select",
    "write_image",
]
