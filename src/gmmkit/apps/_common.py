"""Small helpers shared by the applications (validation, covariance shapes, lazy imports)."""

from __future__ import annotations

from collections.abc import Iterable, Sized
from numbers import Integral
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from gmmkit.core.covariance import (
    COVARIANCE_TYPES,
    MODEL_NAMES,
    UNIVARIATE_MODEL_NAMES,
    get_covariance_type,
)
from gmmkit.core.params import MixtureParams

#: One line naming the accepted covariance models, for docstrings and help texts.
COVARIANCE_HELP = (
    "mclust's EII, VII, EEI, VEI, EVI, VVI, EEE, VEE, EVE, VVE, EEV, VEV, EVV, VVV "
    "(volume, shape, orientation Equal / Variable / Identity), or scikit-learn's "
    "spherical (= VII), diag (= VVI), tied (= EEE), full (= VVV); E / V for 1-D data"
)


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


def check_n_components_list(
    n_components: Any, name: str = "n_components", n_samples: int | None = None
) -> list[int]:
    """Validate a positive int or an iterable of positive ints; return a sorted unique list.

    Parameters
    ----------
    n_components : int or iterable of int
    name : str, default="n_components"
        How the argument is called in error messages.
    n_samples : int, optional
        The number of (non-zero weight) samples: no K may exceed it. Checked before any
        list is built, so that ``range(1, 10**12)`` fails at once instead of filling the
        memory: a ``range`` in O(1), a sized collection by its maximum, any other iterable
        while it is read (it can then hold at most ``n_samples`` distinct values).

    Returns
    -------
    list of int
        Sorted, without repeats.
    """
    if isinstance(n_components, Integral) and not isinstance(n_components, bool):
        values = [int(n_components)]
    elif isinstance(n_components, range):
        if len(n_components) == 0:
            raise ValueError(f"{name} is empty")
        # a range's ends bound it; builtin min()/max() would iterate over all of it
        ends = (n_components[0], n_components[-1])
        if min(ends) < 1:
            raise ValueError(f"{name} must be >= 1, got {min(ends)}")
        if n_samples is not None:
            _check_largest_k(max(ends), n_samples, name)
        return sorted(n_components)
    elif isinstance(n_components, Iterable) and not isinstance(n_components, str):
        if n_samples is not None and isinstance(n_components, Sized):
            try:
                largest = max(n_components)
            except (TypeError, ValueError):
                pass  # not comparable or empty: reported below, value by value
            else:
                if isinstance(largest, Integral) and not isinstance(largest, bool):
                    _check_largest_k(int(largest), n_samples, name)
        distinct: set[int] = set()
        for value in n_components:
            if isinstance(value, bool) or not isinstance(value, Integral):
                raise TypeError(f"{name} must hold integers, got {value!r}")
            k = int(value)
            if k < 1:
                raise ValueError(f"{name} must be >= 1, got {k}")
            if n_samples is not None:
                _check_largest_k(k, n_samples, name)
            distinct.add(k)
        values = list(distinct)
    else:
        raise TypeError(f"{name} must be an int or an iterable of ints, got {n_components!r}")
    if not values:
        raise ValueError(f"{name} is empty")
    if min(values) < 1:
        raise ValueError(f"{name} must be >= 1, got {min(values)}")
    if n_samples is not None:
        _check_largest_k(max(values), n_samples, name)
    return sorted(values)


def _check_largest_k(k: int, n_samples: int, name: str) -> None:
    if k > n_samples:
        raise ValueError(
            f"{name} asks for up to K={k} components, which is larger than the number of "
            f"samples ({n_samples}); a mixture needs at least one sample per component"
        )


def default_covariance_types(n_features: int) -> tuple[str, ...]:
    """mclust's default models: all fourteen for ``n_features > 1``, ``("E", "V")`` for 1."""
    return UNIVARIATE_MODEL_NAMES if n_features == 1 else MODEL_NAMES


def check_covariance_types(covariance_types: Any) -> list[str]:
    """Validate one covariance type or an iterable of them (any name or alias of
    :data:`gmmkit.core.covariance.COVARIANCE_TYPES`, spelled as listed: the mclust names
    upper-case, scikit-learn's lower-case); keep the order and the names as given, drop
    repeats of a model under another name (``"full"`` after ``"VVV"``)."""
    if isinstance(covariance_types, str):
        covariance_types = (covariance_types,)
    elif not isinstance(covariance_types, Iterable):
        raise TypeError(
            f"covariance_types must be a str or an iterable of str, got {covariance_types!r}"
        )
    out: list[str] = []
    seen: set[str] = set()
    for value in covariance_types:
        if not isinstance(value, str) or value not in COVARIANCE_TYPES:
            hint = ""
            if isinstance(value, str) and value.upper() in MODEL_NAMES + UNIVARIATE_MODEL_NAMES:
                hint = f" (did you mean {value.upper()!r}? mclust's names are upper-case)"
            elif isinstance(value, str) and value.lower() in COVARIANCE_TYPES:
                hint = f" (did you mean {value.lower()!r}?)"
            raise ValueError(
                f"covariance type must be one of {', '.join(COVARIANCE_TYPES)}, "
                f"got {value!r}{hint}"
            )
        model = get_covariance_type(value).model
        if model not in seen:
            seen.add(model)
            out.append(value)
    if not out:
        raise ValueError("covariance_types is empty")
    return out


def mclust_order(covariance_type: str) -> int:
    """Position of a covariance type's model in mclust's order (aliases sort with their
    model; ``E`` / ``V`` with EII / VII)."""
    return MODEL_NAMES.index(get_covariance_type(covariance_type).model)


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
    ``feature_names_in_`` on the wrapping estimator.  NaN is allowed when the estimator
    has ``missing="marginalize"``, and otherwise refused with an error naming that
    parameter.
    """

    def _validate_fit_X(self, X: ArrayLike) -> NDArray[Any]:
        """``X`` of a fit: 2-D, finite, at least two rows; resets the recorded features."""
        return self._validated(X, ensure_min_samples=2, reset=True)

    def _checked(self, X: ArrayLike) -> NDArray[Any]:
        """``X`` after the fit: raises if unfitted or if the features differ from the fit's."""
        check_is_fitted(self)
        return self._validated(X, reset=False)

    def _validated(self, X: ArrayLike, **options: Any) -> NDArray[Any]:
        from gmmkit.mixture import nan_refused

        marginalize = getattr(self, "missing", "error") == "marginalize"
        with nan_refused(type(self).__name__, marginalize):
            return validate_data(
                self, X, dtype=[np.float64, np.float32],
                ensure_all_finite="allow-nan" if marginalize else True, **options,
            )


#: The settings an application estimator (detector, imputer) passes to the mixture it fits.
MIXTURE_SETTINGS = (
    "covariance_type", "tol", "reg_covar", "max_iter", "n_init", "init_params",
    "random_state", "n_jobs",
)


def wrapped_mixture(estimator: Any, **extra: Any) -> Any:
    """A new, unfitted ``GaussianMixture`` with ``estimator``'s ``n_components`` and
    :data:`MIXTURE_SETTINGS`, plus ``extra`` settings."""
    from gmmkit.mixture import GaussianMixture  # the mixture module imports the apps

    settings = {name: getattr(estimator, name) for name in MIXTURE_SETTINGS}
    return GaussianMixture(estimator.n_components, **settings, **extra)


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
