"""All-or-nothing ``fit``: a fit that raises leaves a fitted estimator exactly as it was.

scikit-learn's ``validate_data`` sets ``n_features_in_`` before anything else is checked,
and a fit sets its attributes one after another; an error (bad ``sample_weight``, NaN in
``X``, a ``KeyboardInterrupt`` from a progress callback) part-way through would leave a
model whose attributes come from two different fits -- or one that can no longer
predict.  Every estimator's ``fit`` is wrapped by :func:`transactional_fit` instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def _state(estimator: Any) -> dict[str, Any]:
    """Everything on the instance that is not a constructor parameter: the fitted
    attributes (``name_``) and private state (``_name``)."""
    params = set(estimator.get_params(deep=False))
    return {key: value for key, value in vars(estimator).items() if key not in params}


def transactional_fit(fit: F) -> F:
    """Decorate a ``fit`` method so that any exception (``KeyboardInterrupt`` included)
    restores the instance's state to what it was before the call.

    The snapshot is shallow: fits assign new objects to their attributes rather than
    modifying the previous ones in place (fitted arrays and nested estimators are
    replaced, never updated), so keeping the references is enough and costs nothing.
    Constructor parameters are not touched.

    Parameters
    ----------
    fit : callable
        ``fit(self, *args, **kwargs)``.

    Returns
    -------
    callable
        The wrapped method.
    """

    @functools.wraps(fit)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        before = _state(self)
        try:
            return fit(self, *args, **kwargs)
        except BaseException:
            state = vars(self)
            for key in set(_state(self)) - set(before):
                del state[key]
            state.update(before)
            raise

    return wrapper  # type: ignore[return-value]
