"""One-dimensional helpers: fit a mixture to a plain 1-D array (a series, a score column).

:class:`~gmmkit.GaussianMixture` follows scikit-learn and rejects 1-D ``X``; these
helpers take ``x`` of shape (n,) and return components sorted by their mean, with
densities and labels that also take and return 1-D arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp

from gmmkit.apps._common import (
    check_covariance_types,
    check_n_components_list,
)
from gmmkit.apps.selection import SelectionResult, select
from gmmkit.core.params import MixtureParams
from gmmkit.mixture import GaussianMixture


def _as_column(x: ArrayLike, name: str = "x") -> NDArray[Any]:
    array = np.asarray(x)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (shape (n,)), got shape {array.shape}")
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be numeric, got dtype {array.dtype}")
    if array.dtype != np.float32:
        array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinity")
    return array[:, None]


def _sorted_by_mean(model: GaussianMixture) -> GaussianMixture:
    """Reorder the fitted components of a 1-D mixture by increasing mean (in place)."""
    params = model.params_
    order = np.argsort(params.means[:, 0], kind="stable")
    if np.array_equal(order, np.arange(len(order))):
        return model
    shared = params.layout == "tied"
    model._set_params_from(
        MixtureParams(
            weights=params.weights[order],
            means=params.means[order],
            covariances=params.covariances if shared else params.covariances[order],
            precisions_cholesky=(
                params.precisions_cholesky if shared else params.precisions_cholesky[order]
            ),
            covariance_type=params.covariance_type,
        )
    )
    return model


@dataclass
class UnivariateMixture:
    """A Gaussian mixture on one variable, components sorted by increasing mean.

    Attributes
    ----------
    model : GaussianMixture
        The fitted estimator (on ``x[:, None]``), components in the same order.
    weights : ndarray of shape (K,)
    means : ndarray of shape (K,)
    stds : ndarray of shape (K,)
        Standard deviations.
    selection : SelectionResult or None
        The candidates' table when ``n_components`` was a range (or several covariance
        models were compared).
    """

    model: GaussianMixture = field(repr=False)
    weights: NDArray[np.float64]
    means: NDArray[np.float64]
    stds: NDArray[np.float64]
    selection: SelectionResult | None = field(default=None, repr=False)

    @classmethod
    def from_model(
        cls, model: GaussianMixture, selection: SelectionResult | None = None
    ) -> UnivariateMixture:
        """Wrap a fitted 1-feature :class:`~gmmkit.GaussianMixture` (reordered by mean)."""
        if model.means_.shape[1] != 1:
            raise ValueError(
                f"the model has {model.means_.shape[1]} features; a univariate mixture has 1"
            )
        model = _sorted_by_mean(model)
        variances = np.broadcast_to(
            np.asarray(model.covariances_, dtype=np.float64).reshape(-1), (model.n_components,)
        )
        return cls(
            model=model,
            weights=np.asarray(model.weights_, dtype=np.float64),
            means=np.asarray(model.means_[:, 0], dtype=np.float64),
            stds=np.sqrt(variances),
            selection=selection,
        )

    @property
    def n_components(self) -> int:
        return len(self.means)

    def component_log_pdf(self, x: ArrayLike) -> NDArray[np.float64]:
        """``log(weight_k * N(x | mean_k, std_k))`` for every value, shape (n, K)."""
        values = _as_column(x).astype(np.float64)
        z = (values - self.means) / self.stds
        return np.log(self.weights) - np.log(self.stds) - 0.5 * np.log(2 * np.pi) - 0.5 * z * z

    def log_pdf(self, x: ArrayLike) -> NDArray[np.float64]:
        """Log-density of the mixture at every value, shape (n,)."""
        return logsumexp(self.component_log_pdf(x), axis=1)

    def pdf(self, x: ArrayLike) -> NDArray[np.float64]:
        """Density of the mixture at every value, shape (n,)."""
        return np.exp(self.log_pdf(x))

    def component_pdfs(self, x: ArrayLike) -> NDArray[np.float64]:
        """Weighted density of every component, shape (n, K); rows sum to :meth:`pdf`."""
        return np.exp(self.component_log_pdf(x))

    def predict_proba(self, x: ArrayLike) -> NDArray[np.float64]:
        """Responsibilities, shape (n, K)."""
        log_joint = self.component_log_pdf(x)
        return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))

    def predict(self, x: ArrayLike) -> NDArray[np.intp]:
        """Most probable component of every value (0 = lowest mean), shape (n,)."""
        return np.argmax(self.component_log_pdf(x), axis=1)

    def sample(self, n_samples: int = 1) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
        """Draw values; returns ``(x, component)``, each of shape (n_samples,)."""
        X, y = self.model.sample(n_samples)
        return X[:, 0], y


def fit_1d(
    x: ArrayLike,
    n_components: Any = 2,
    *,
    equal_variance: bool = False,
    covariance_type: Any = None,
    criterion: str = "bic",
    sample_weight: ArrayLike | None = None,
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    init_params: str = "kmeans",
    random_state: Any = None,
    n_jobs: int | None = None,
) -> UnivariateMixture:
    """Fit a Gaussian mixture to a 1-D array.

    Parameters
    ----------
    x : array-like of shape (n,)
        Also accepted: shape (n, 1).
    n_components : int or iterable of int, default=2
        Several values choose ``K`` by ``criterion`` with :func:`~gmmkit.select`.
    equal_variance : bool, default=False
        One variance shared by all components (``"tied"``) instead of one each
        (``"full"``).
    covariance_type : str or iterable of str, optional
        The covariance model instead of ``equal_variance``: any of
        :class:`~gmmkit.GaussianMixture`'s names.  In one dimension every model is one of
        mclust's two, ``"E"`` (one variance for all components: EII, EEI, EVI, EEE, EVE,
        EEV, EVV, ``"tied"``) or ``"V"`` (one each: VII, VEI, VVI, VEE, VVE, VEV, VVV,
        ``"full"``, ``"diag"``, ``"spherical"``), decided by the first letter.  Several
        names are compared by ``criterion``, as ``Mclust(x)`` compares ``("E", "V")``.
    criterion : {"bic", "aic", "icl"}, default="bic"
    sample_weight : array-like of shape (n,), optional
    n_init, max_iter, tol, reg_covar, init_params, random_state, n_jobs
        Passed to :class:`~gmmkit.GaussianMixture`.

    Returns
    -------
    UnivariateMixture
        Components sorted by increasing mean.
    """
    X = _as_column(x)
    if covariance_type is None:
        types = ["tied" if equal_variance else "full"]
    elif equal_variance:
        raise ValueError("give equal_variance or covariance_type, not both")
    else:
        types = check_covariance_types(covariance_type)
    n_rows = X.shape[0] if sample_weight is None else int(np.count_nonzero(sample_weight))
    ks = check_n_components_list(n_components, n_samples=n_rows)
    # the same EM settings whether one K is fitted or several are compared
    em_options: dict[str, Any] = {
        "n_init": n_init,
        "max_iter": max_iter,
        "tol": tol,
        "reg_covar": reg_covar,
        "init_params": init_params,
        "random_state": random_state,
        "n_jobs": n_jobs,
    }
    if len(ks) > 1 or len(types) > 1:
        result = select(X, ks, types, criterion, sample_weight=sample_weight, **em_options)
        return UnivariateMixture.from_model(result.best, result)
    model = GaussianMixture(ks[0], covariance_type=types[0], **em_options).fit(
        X, sample_weight=sample_weight
    )
    return UnivariateMixture.from_model(model)
