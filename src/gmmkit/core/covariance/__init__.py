"""Covariance models: mclust's fourteen parameterisations ``Sigma_k = lambda_k D_k A_k
D_k'`` by their three-letter names, one short class each, in a registry.

scikit-learn's names are aliases (``spherical`` = VII, ``diag`` = VVI, ``tied`` = EEE,
``full`` = VVV), and ``E`` / ``V`` name the two models of one-dimensional data (to which
every model reduces there: EII and VII).
"""

from gmmkit.core.covariance import diagonal, ellipsoidal, spherical
from gmmkit.core.covariance._base import (
    REGISTRY,
    CovarianceError,
    CovarianceType,
    cholesky_precision,
    covariance_layout,
    covariances_from_precisions,
    get_covariance_type,
    log_2pi,
    pack_symmetric,
    packed_outer_features,
    precisions_from_cholesky,
    repair_positive_definite,
    unpack_symmetric,
)

#: mclust's fourteen models, in mclust's order.
MODEL_NAMES = (
    "EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE",
    "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV",
)  # fmt: skip
#: The two models of one-dimensional data.
UNIVARIATE_MODEL_NAMES = ("E", "V")
#: scikit-learn's names.
SKLEARN_NAMES = ("full", "tied", "diag", "spherical")
#: Every accepted ``covariance_type``.
COVARIANCE_TYPES = (*MODEL_NAMES, *UNIVARIATE_MODEL_NAMES, *SKLEARN_NAMES)

assert set(COVARIANCE_TYPES) == set(REGISTRY), "every registered name is listed"
del diagonal, ellipsoidal, spherical

__all__ = [
    "COVARIANCE_TYPES",
    "MODEL_NAMES",
    "REGISTRY",
    "SKLEARN_NAMES",
    "UNIVARIATE_MODEL_NAMES",
    "CovarianceError",
    "CovarianceType",
    "cholesky_precision",
    "covariance_layout",
    "covariances_from_precisions",
    "get_covariance_type",
    "log_2pi",
    "pack_symmetric",
    "packed_outer_features",
    "precisions_from_cholesky",
    "repair_positive_definite",
    "unpack_symmetric",
]
