"""Density-based anomaly detection with scikit-learn's outlier-detector conventions."""

from __future__ import annotations

import copy
from numbers import Real
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from gmmkit._transaction import transactional_fit
from gmmkit.apps._common import WrappedMixtureMixin, checked_sample_weight, wrapped_mixture
from gmmkit.core.kernel import kernel_coefficients, score_chunk
from gmmkit.core.online import step_size
from gmmkit.core.tail import lower_tail_threshold, streamed_lower_tail_threshold
from gmmkit.engines.dispatch import is_out_of_core
from gmmkit.mixture import GaussianMixture
from gmmkit.modelfile import SaveMixin

__all__ = ["AnomalyDetector", "lower_tail_threshold"]


class AnomalyDetector(WrappedMixtureMixin, SaveMixin, OutlierMixin, BaseEstimator):
    """Flag rows of low density under a Gaussian mixture fitted to (mostly normal) data.

    Follows scikit-learn's outlier detectors (``IsolationForest``, ``LocalOutlierFactor``):
    ``score_samples`` is the log-density (higher is more normal), ``decision_function`` is
    ``score_samples - offset_`` (negative for outliers) and ``predict`` returns ``+1`` for
    inliers and ``-1`` for outliers.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : str, default="full"
        A covariance model of :class:`~gmmkit.GaussianMixture`: one of mclust's fourteen
        (``"EII"``, ``"VII"``, ``"EEI"``, ..., ``"VEV"``, ``"EVV"``, ``"VVV"``) or
        scikit-learn's ``"spherical"``, ``"diag"``, ``"tied"``, ``"full"`` (= VVV).
    contamination : float in (0, 0.5], default=0.01
        Expected fraction of outliers in the training data: ``offset_`` is set so that this
        (sample-weighted) fraction of the training rows falls strictly below it.  Ignored
        when ``threshold`` is given.
    threshold : float, optional
        A fixed log-density below which a row is an outlier (``offset_ = threshold``).
    tol, reg_covar, max_iter, n_init, init_params, random_state, n_jobs
        Passed to :class:`~gmmkit.GaussianMixture`.

    Attributes
    ----------
    mixture_ : GaussianMixture
        The fitted density model.
    offset_ : float
        Log-density threshold; ``decision_function = score_samples - offset_``.
    n_iter_ : int
        EM iterations of the density fit.
    converged_ : bool
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string column names.
    """

    # the density model's parameters are checked as GaussianMixture checks them
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **{
            name: GaussianMixture._parameter_constraints[name]
            for name in (
                "n_components",
                "covariance_type",
                "tol",
                "reg_covar",
                "max_iter",
                "n_init",
                "init_params",
                "random_state",
                "n_jobs",
            )
        },
        "contamination": [Interval(Real, 0.0, 0.5, closed="right")],
        "threshold": [Real, None],
    }

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        contamination: float = 0.01,
        threshold: float | None = None,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        random_state: Any = None,
        n_jobs: int | None = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.contamination = contamination
        self.threshold = threshold
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.n_jobs = n_jobs

    @transactional_fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None
    ) -> AnomalyDetector:
        """Fit the density model and set the outlier threshold.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Or data streamed chunk by chunk, never loaded whole, as
            :meth:`GaussianMixture.fit <gmmkit.GaussianMixture.fit>` takes it: a
            ``numpy.memmap``, a source from :func:`gmmkit.read_csv` /
            :func:`gmmkit.read_parquet`, a callable returning an iterator of blocks, or a
            dask array / DataFrame.  The threshold is then found in a few more passes and
            equals the in-memory one.
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        if self.threshold is not None and not np.isfinite(self.threshold):
            raise ValueError(f"threshold must be finite, got {self.threshold!r}")
        if is_out_of_core(X):
            return self._fit_out_of_core(X, sample_weight)
        X_checked = self._validate_fit_X(X)
        weight = checked_sample_weight(sample_weight, X_checked)
        mixture = self._new_mixture()
        mixture.fit(X_checked, sample_weight=weight)
        self._set_mixture(mixture)
        if self.threshold is not None:
            self.offset_ = float(self.threshold)
        else:
            scores = np.asarray(mixture.score_samples(X_checked), dtype=np.float64)
            self.offset_ = lower_tail_threshold(scores, float(self.contamination), weight)
        return self

    def _new_mixture(self) -> GaussianMixture:
        mixture: GaussianMixture = wrapped_mixture(self)
        return mixture

    def _set_mixture(self, mixture: GaussianMixture) -> None:
        self.mixture_ = mixture
        self.n_iter_ = int(mixture.n_iter_)
        self.converged_ = bool(mixture.converged_)

    def _fit_out_of_core(self, X: Any, sample_weight: Any) -> AnomalyDetector:
        """``fit`` on data streamed chunk by chunk: the mixture's EM passes, then a few
        more passes that find the training rows' lower-tail cut exactly (the in-memory
        ``offset_``; :func:`~gmmkit.core.tail.streamed_lower_tail_threshold`)."""
        mixture = self._new_mixture()
        mixture.fit(X, sample_weight=sample_weight)
        self._set_mixture(mixture)
        self.n_features_in_ = mixture.n_features_in_
        if hasattr(mixture, "feature_names_in_"):
            self.feature_names_in_ = mixture.feature_names_in_
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        if self.threshold is not None:
            self.offset_ = float(self.threshold)
            return self
        engine = mixture._out_of_core_engine(X, sample_weight, reset=False)
        assert engine is not None
        coefs = kernel_coefficients(mixture.params_, engine.dtype)
        # score_samples' dtype rule: float32 scores for a float32 model on float32 data
        rounded = np.result_type(engine.dtype, mixture.params_.means.dtype)

        def log_density(rows: NDArray[Any]) -> NDArray[np.float64]:
            return score_chunk(coefs, rows).astype(rounded).astype(np.float64)

        self.offset_ = streamed_lower_tail_threshold(
            engine, log_density, float(self.contamination)
        )
        return self

    @transactional_fit
    def partial_fit(
        self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None
    ) -> AnomalyDetector:
        """Update the density model with one mini-batch and keep the threshold current.

        ``mixture_`` takes one stepwise-EM step (:meth:`GaussianMixture.partial_fit`;
        the first call creates it from this detector's parameters, with GaussianMixture's
        step schedule: set ``mixture_.learning_rate`` for a constant step on a drifting
        stream).  Unless ``threshold`` is fixed, ``offset_`` is a running quantile of the
        scores: stochastic approximation by the same step as the mixture's,
        ``offset_ <- (1 - step) offset_ + step q``, with ``q`` the batch's lower-tail
        threshold (:func:`lower_tail_threshold` of its scores under the updated
        mixture).  On a stationary stream it settles where ``contamination`` of the rows
        score below it, up to the small-sample bias of a batch's tail quantile: batches
        should hold many times ``1 / contamination`` rows (with 1000-row batches and
        ``contamination=0.05`` the fraction below measured 0.05 +- 0.003, see
        ``tests/test_online_anomaly.py``); a batch of fewer rows than that has no tail
        of its own and pulls the threshold towards its lowest score.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        self._validate_params()
        if self.threshold is not None and not np.isfinite(self.threshold):
            raise ValueError(f"threshold must be finite, got {self.threshold!r}")
        first = not hasattr(self, "mixture_")
        X_checked = validate_data(
            self, X, dtype=[np.float64, np.float32], ensure_min_samples=2 if first else 1,
            reset=first,
        )
        if first:
            mixture = self._new_mixture()
        else:
            # a new object, so that a failing call leaves the fitted one as it was
            mixture = copy.copy(self.mixture_)
        steps_before = int(getattr(mixture, "n_steps_", 0))
        fresh = first or not hasattr(self, "offset_")
        mixture.partial_fit(X_checked, sample_weight=sample_weight)
        self.mixture_ = mixture
        self.n_iter_ = int(mixture.n_iter_)
        self.converged_ = bool(mixture.converged_)
        if self.threshold is not None:
            self.offset_ = float(self.threshold)
            return self
        weight = (
            None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        )
        scores = np.asarray(mixture.score_samples(X_checked), dtype=np.float64)
        batch_cut = lower_tail_threshold(scores, float(self.contamination), weight)
        if fresh:
            self.offset_ = float(batch_cut)
        else:
            step = step_size(
                max(steps_before, 1),
                mixture.learning_offset,
                mixture.learning_decay,
                mixture.learning_rate,
            )
            self.offset_ = float((1.0 - step) * self.offset_ + step * batch_cut)
        return self

    def score_samples(self, X: ArrayLike) -> NDArray[np.floating[Any]]:
        """Log-density of each row under the fitted mixture (higher is more normal).

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        if is_out_of_core(X):  # streamed, checked against the fit by the mixture
            check_is_fitted(self)
            return self.mixture_.score_samples(X)
        X_checked = self._checked(X)
        return self.mixture_.score_samples(X_checked)

    def decision_function(self, X: ArrayLike) -> NDArray[np.floating[Any]]:
        """``score_samples(X) - offset_``: negative for outliers, shape (n_samples,)."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: ArrayLike) -> NDArray[np.intp]:
        """``+1`` for inliers, ``-1`` for outliers, shape (n_samples,)."""
        decision = self.decision_function(X)
        return np.where(decision < 0, -1, 1).astype(np.intp)

    def fit_predict(
        self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None
    ) -> NDArray[np.intp]:
        """Fit on ``X`` and label its rows (``+1`` inlier, ``-1`` outlier)."""
        return self.fit(X, sample_weight=sample_weight).predict(X)
