"""Imputation of missing values by a Gaussian mixture fitted to the incomplete data."""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from gmmkit._transaction import transactional_fit
from gmmkit.apps._common import wrapped_mixture
from gmmkit.core.covariance import COVARIANCE_TYPES
from gmmkit.core.init import INIT_METHODS
from gmmkit.core.missing import conditional_expectation


class GaussianMixtureImputer(TransformerMixin, BaseEstimator):
    """Fill missing values (NaN) from a Gaussian mixture fitted to the incomplete data.

    ``fit`` runs EM on the observed values (:class:`~gmmkit.GaussianMixture` with
    ``missing="marginalize"``: no row or value is dropped or pre-filled).  ``transform``
    replaces each missing cell by its conditional expectation given the row's observed
    cells under the fitted mixture -- the posterior-weighted average of every
    component's Gaussian regression of the missing coordinates on the observed ones --
    or, with ``sample_posterior=True``, by a draw from that conditional mixture (for
    multiple imputation: transform repeatedly with different ``random_state``).

    Parameters
    ----------
    n_components : int, default=1
        Mixture components; one gives the classical EM imputation under a single
        multivariate normal.  Choose more for clustered or non-linear data (e.g. with
        :class:`~gmmkit.GaussianMixtureSelector` on the incomplete data's BIC).
    covariance_type : str, default="full"
        Any of :class:`~gmmkit.GaussianMixture`'s models.  Diagonal and spherical models
        make features conditionally independent within a component: a missing value
        then depends on the observed ones only through the component weights.
    sample_posterior : bool, default=False
        Draw from the conditional distribution instead of taking its mean
        (scikit-learn's ``IterativeImputer`` name for the same choice).
    tol, reg_covar, max_iter, n_init, init_params, random_state, n_jobs
        As for :class:`~gmmkit.GaussianMixture`; ``random_state`` also seeds the draws.

    Attributes
    ----------
    mixture_ : GaussianMixture
        The fitted mixture.
    n_iter_ : int
        EM iterations of the mixture's fit.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from gmmkit import GaussianMixtureImputer
    >>> rng = np.random.default_rng(0)
    >>> X = rng.multivariate_normal([0, 0], [[1, 0.9], [0.9, 1]], size=500)
    >>> X[::5, 1] = np.nan
    >>> filled = GaussianMixtureImputer(random_state=0).fit_transform(X)
    >>> bool(np.isnan(filled).any())
    False
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
        "sample_posterior": ["boolean"],
        "tol": [Interval(Real, 0.0, None, closed="left"), None],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [StrOptions({"auto", *INIT_METHODS})],
        "random_state": ["random_state"],
        "n_jobs": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        sample_posterior: bool = False,
        tol: float | None = None,
        reg_covar: float = 1e-6,
        max_iter: int = 1000,
        n_init: int = 1,
        init_params: str = "auto",
        random_state: Any = None,
        n_jobs: int | None = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.sample_posterior = sample_posterior
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.n_jobs = n_jobs

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    @transactional_fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None) -> Any:
        """Fit the mixture to the observed values of ``X`` (n_samples, n_features)."""
        X_checked = validate_data(
            self, X, dtype=[np.float64, np.float32], ensure_all_finite="allow-nan",
            ensure_min_samples=2,
        )
        self.mixture_ = wrapped_mixture(self, missing="marginalize").fit(
            X_checked, sample_weight=sample_weight
        )
        self.n_iter_ = self.mixture_.n_iter_
        return self

    def transform(self, X: ArrayLike) -> NDArray[np.floating[Any]]:
        """``X`` with every NaN filled, shape (n_samples, n_features), in ``X``'s float
        dtype (float32 stays float32)."""
        check_is_fitted(self)
        X_checked = validate_data(
            self, X, dtype=[np.float64, np.float32], ensure_all_finite="allow-nan",
            reset=False,
        )
        missing = np.isnan(X_checked)
        filled = conditional_expectation(
            self.mixture_.params_, np.where(missing, 0.0, X_checked), missing,
            random_state=self.random_state, draw=self.sample_posterior,
        )
        return filled.astype(X_checked.dtype, copy=False)
