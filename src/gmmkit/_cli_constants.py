"""The command line's choices and defaults as literal constants.

``gmmkit --version`` and ``gmmkit COMMAND --help`` must start without importing NumPy,
SciPy or scikit-learn, so the option choices and the defaults shown in the help cannot be
read from the library when the command line is built. They are written out here instead;
``tests/test_cli_ux.py`` asserts that each equals the library's own value, so they cannot
drift apart.
"""

from __future__ import annotations

from typing import Any

#: Every accepted ``covariance_type`` (:data:`gmmkit.core.covariance.COVARIANCE_TYPES`).
COVARIANCE_TYPES: tuple[str, ...] = (
    "EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE",
    "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV",
    "E", "V",
    "full", "tied", "diag", "spherical",
)  # fmt: skip

#: One line naming the covariance models (:data:`gmmkit.apps._common.COVARIANCE_HELP`).
COVARIANCE_HELP = (
    "mclust's EII, VII, EEI, VEI, EVI, VVI, EEE, VEE, EVE, VVE, EEV, VEV, EVV, VVV "
    "(volume, shape, orientation Equal / Variable / Identity), or scikit-learn's "
    "spherical (= VII), diag (= VVI), tied (= EEE), full (= VVV); E / V for 1-D data"
)

#: GaussianMixture's ``init_params`` values, its default first.
INIT_METHODS: tuple[str, ...] = (
    "auto", "hc", "k-means++", "kmeans", "random", "random_from_data",
)  # fmt: skip

#: GaussianMixture's defaults of the EM options the command line exposes (an option not
#: given on the command line is left to GaussianMixture).
GM_DEFAULTS: dict[str, Any] = {
    "n_init": 1,
    "max_iter": 1000,
    "tol": None,
    "reg_covar": 1e-6,
    "init_params": "auto",
}
