"""Small helpers shared by the applications (validation, covariance shapes, lazy imports)."""

from __future__ import annotations

from collections.abc import Iterable
from numbers import Integral
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from gmmkit.core.params import MixtureParams

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def full_covariances(params: MixtureParams) -> NDArray[np.float64]:
    """Every component's covariance as a full matrix, whatever the covariance type.

    Parameters
    ----------
    params : MixtureParams

    Returns
    -------
    ndarray of shape (K, D, D)
    """
    k, d = params.n_components, params.n_features
    cov = np.asarray(params.covariances, dtype=np.float64)
    if params.layout == "full":
        return cov.copy()
    if params.layout == "tied":
        return np.broadcast_to(cov, (k, d, d)).copy()
    if params.layout == "diag":
        out = np.zeros((k, d, d))
        out[:, np.arange(d), np.arange(d)] = cov
        return out
    return cov[:, None, None] * np.eye(d)[None]


def check_n_components_list(n_components: Any, name: str = "n_components") -> list[int]:
    """Validate a positive int or an iterable of positive ints; return a sorted unique list."""
    if isinstance(n_components, Integral) and not isinstance(n_components, bool):
        values = [int(n_components)]
    elif isinstance(n_components, Iterable) and not isinstance(n_components, str):
        values = []
        for value in n_components:
            if isinstance(value, bool) or not isinstance(value, Integral):
                raise TypeError(f"{name} must hold integers, got {value!r}")
            values.append(int(value))
    else:
        raise TypeError(f"{name} must be an int or an iterable of ints, got {n_components!r}")
    if not values:
        raise ValueError(f"{name} is empty")
    if min(values) < 1:
        raise ValueError(f"{name} must be >= 1, got {min(values)}")
    return sorted(set(values))


def check_covariance_types(covariance_types: Any) -> list[str]:
    """Validate one covariance type or an iterable of them; keep order, drop duplicates."""
    if isinstance(covariance_types, str):
        covariance_types = (covariance_types,)
    out: list[str] = []
    for value in covariance_types:
        if value not in COVARIANCE_TYPES:
            raise ValueError(
                f"covariance type must be one of {COVARIANCE_TYPES}, got {value!r}"
            )
        if value not in out:
            out.append(value)
    if not out:
        raise ValueError("covariance_types is empty")
    return out


def checked_sample_weight(
    sample_weight: ArrayLike | None, X: NDArray[Any]
) -> NDArray[np.float64] | None:
    """None, or ``sample_weight`` checked against the rows of ``X``: float64, shape
    (n_samples,), non-negative."""
    if sample_weight is None:
        return None
    return _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)


class WrappedMixtureMixin:
    """Row validation for estimators that fit and then delegate to a ``GaussianMixture``.

    Both methods take float64 or float32 ``X`` and record/check ``n_features_in_`` and
    ``feature_names_in_`` on the wrapping estimator.
    """

    def _validate_fit_X(self, X: ArrayLike) -> NDArray[Any]:
        """``X`` of a fit: 2-D, finite, at least two rows; resets the recorded features."""
        return validate_data(
            self, X, dtype=[np.float64, np.float32], ensure_min_samples=2, reset=True
        )

    def _checked(self, X: ArrayLike) -> NDArray[Any]:
        """``X`` after the fit: raises if unfitted or if the features differ from the fit's."""
        check_is_fitted(self)
        return validate_data(self, X, dtype=[np.float64, np.float32], reset=False)


def check_not_too_many_components(n_components: int, n_samples: int) -> None:
    """K larger than the number of (non-zero weight) samples cannot be fitted."""
    if n_components > n_samples:
        raise ValueError(
            f"n_components={n_components} is larger than the number of samples "
            f"({n_samples}); a mixture needs at least one sample per component"
        )


def import_optional(module: str, extra: str) -> Any:
    """Import an optional dependency, or explain which extra provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            f"{module!r} is required for this function; install it with "
            f"`pip install gmmkit[{extra}]`"
        ) from exc
