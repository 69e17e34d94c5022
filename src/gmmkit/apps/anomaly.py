"""Density-based anomaly detection with scikit-learn's outlier-detector conventions."""

from __future__ import annotations

import copy
from functools import partial
from numbers import Real
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from gmmkit._transaction import transactional_fit
from gmmkit.apps._common import WrappedMixtureMixin, checked_sample_weight, wrapped_mixture
from gmmkit.core.kernel import (
    KernelCoefficients,
    kept_coefficients,
    kernel_coefficients,
    score_chunk,
)
from gmmkit.core.missing import nearest_completion
from gmmkit.core.online import step_size
from gmmkit.core.tail import lower_tail_threshold, streamed_lower_tail_threshold
from gmmkit.engines.base import BLOCK_VALUES, Chunk
from gmmkit.engines.dispatch import is_out_of_core
from gmmkit.mixture import GaussianMixture
from gmmkit.modelfile import SaveMixin

__all__ = ["AnomalyDetector", "equivalent_log_density", "lower_tail_threshold"]

#: Chi-square tail probabilities below this are not formed (they would underflow): a
#: farther row's equivalent distance grows by its own distance's excess (see
#: ``_equivalent_distance``).
_SMALLEST_TAIL = 1e-250


def _equivalent_distance(
    distance: NDArray[np.float64], n_observed: NDArray[np.intp], n_features: int
) -> NDArray[np.float64]:
    """The squared Mahalanobis distance over ``n_features`` coordinates that has the same
    chi-square tail probability as ``distance`` over ``n_observed`` coordinates.

    ``chi2(n_features).isf(chi2(n_observed).sf(distance))``, shape (n,); 0 where nothing
    is observed.  Beyond tail probabilities of ``1e-250`` (which float64 would round
    to 0) the excess of ``distance`` over that tail's quantile is carried over
    unchanged, which keeps the map continuous and increasing.
    """
    distance = np.asarray(distance, dtype=np.float64)
    n_observed = np.asarray(n_observed)
    out = np.zeros_like(distance)
    seen = n_observed > 0
    df, d2 = n_observed[seen].astype(np.float64), distance[seen]
    tail = special.chdtrc(df, d2)
    equivalent = special.chdtri(float(n_features), np.maximum(tail, _SMALLEST_TAIL))
    far = tail < _SMALLEST_TAIL
    if far.any():
        equivalent[far] = (
            d2[far] - special.chdtri(df[far], _SMALLEST_TAIL)
            + special.chdtri(float(n_features), _SMALLEST_TAIL)
        )
    out[seen] = equivalent
    return out


def equivalent_log_density(
    coefs: KernelCoefficients, X: NDArray[Any]
) -> NDArray[np.float64]:
    """Each row's log-density on the scale of complete rows, shape (n,), float64.

    A complete row's value is its log-density (:func:`~gmmkit.core.kernel.score_chunk`).
    A row with missing cells (NaN) gets the log-density of the complete row that is as
    far into the tail: with ``k`` its most responsible component given the observed
    cells and ``d2`` their squared Mahalanobis distance to ``k`` (chi-square with
    ``|o|`` degrees of freedom under ``k``), the row is completed by its conditional
    mean under ``k`` and pushed out from ``mu_k`` along that direction to the distance
    ``_equivalent_distance`` gives for ``D`` degrees of freedom; its value is the
    mixture's log-density there.  A row with nothing observed gets that of the mean of
    its most probable component.

    Parameters
    ----------
    coefs : KernelCoefficients
        Of the mixture (``coefs.params`` is read).
    X : ndarray of shape (n, D)
        Rows, NaN where missing.

    Returns
    -------
    ndarray of shape (n,)
    """
    missing = np.isnan(X)
    incomplete = np.flatnonzero(missing.any(axis=1))
    if not len(incomplete):
        return score_chunk(coefs, X)
    params = coefs.params
    assert params is not None
    out = np.empty(len(X))
    complete = np.flatnonzero(~missing.any(axis=1))
    if len(complete):
        out[complete] = score_chunk(coefs, X[complete])
    exact = kernel_coefficients(params, np.float64)
    # in blocks of BLOCK_VALUES values of the completions' (rows, K, D) work: the fused
    # kernel's chunks of 131072 rows held 131 MB here at D=8, K=16 (57 MB before)
    step = max(256, BLOCK_VALUES // (params.n_components * X.shape[1]))
    for start in range(0, len(incomplete), step):
        rows = incomplete[start : start + step]
        gaps = missing[rows]
        component, residual, distance = nearest_completion(
            params, np.where(gaps, 0.0, X[rows]), gaps
        )
        target = _equivalent_distance(distance, (~gaps).sum(axis=1), X.shape[1])
        root = np.sqrt(distance)
        stretch = np.sqrt(target) / np.where(root > 0, root, 1.0)  # 0 at the mean
        points = np.asarray(params.means, np.float64)[component] + residual * stretch[:, None]
        out[rows] = score_chunk(exact, points)
    return out


def _chunk_equivalent(coefs: KernelCoefficients, chunk: Chunk) -> NDArray[np.float64]:
    return equivalent_log_density(coefs, chunk.X)


class AnomalyDetector(WrappedMixtureMixin, SaveMixin, OutlierMixin, BaseEstimator):
    """Flag rows of low density under a Gaussian mixture fitted to (mostly normal) data.

    Follows scikit-learn's outlier detectors (``IsolationForest``, ``LocalOutlierFactor``):
    ``score_samples`` is the log-density (higher is more normal), ``decision_function`` is
    ``score_samples - offset_`` (negative for outliers) and ``predict`` returns ``+1`` for
    inliers and ``-1`` for outliers.  With ``missing="marginalize"`` rows may have missing
    cells (NaN); see Notes for how they are judged.

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
    missing : {"error", "marginalize"}, default="error"
        What NaN in ``X`` means.  ``"error"``: NaN is refused.  ``"marginalize"``: NaN
        marks a value missing at random; the mixture is fitted to the observed values
        (:class:`~gmmkit.GaussianMixture` with ``missing="marginalize"``: in memory,
        streamed and by :meth:`partial_fit`), ``score_samples`` of a row is the
        log-density of its observed cells, and rows with missing cells are judged by
        their tail probability (Notes).  Without NaN the results are those of
        ``"error"``, bit for bit.

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

    Notes
    -----
    **Missing values.**  The log-density of a row's observed cells (its marginal) is not
    on the scale of a complete row's log-density: integrating coordinates out drops
    their share of ``-0.5 log det(2 pi Sigma)`` and of the Mahalanobis distance, so a
    row with fewer observed cells has a higher log-density, and rows missing different
    cells are not comparable either.  One threshold on marginal log-densities flags
    complete rows too often and incomplete ones hardly ever (three components in 4-D,
    20 % of the cells missing completely at random, ``contamination=0.05``: 8.3 % of
    fresh complete inliers and 2.0 % of incomplete ones, none of those with one
    observed cell; ``tests/test_missing_anomaly.py``).

    So ``decision_function`` and ``predict`` judge a row with missing cells by its tail
    probability.  Under its most responsible component ``k`` given the observed cells
    ``o``, the squared Mahalanobis distance ``d2`` of those cells is chi-square with
    ``|o|`` degrees of freedom, and ``p = P(chi2(|o|) > d2)`` means the same whatever
    is observed.  The row is scored as the complete row equally far into the tail: its
    value is the mixture's log-density at the row completed by its conditional mean
    under ``k`` and pushed out from ``mu_k``, along that direction, to the squared
    distance ``chi2(D).isf(p)`` (:func:`equivalent_log_density`).
    ``decision_function`` is that value minus ``offset_``; complete rows keep their
    log-density.  ``offset_`` therefore stays a threshold on complete rows'
    log-densities (``threshold`` is one too), and with ``contamination`` it is the
    lower tail of the training rows' values (in memory, streamed, and in
    :meth:`partial_fit`'s running threshold).  For one component the rule is exact: a
    row is an outlier when its tail probability is below that of ``offset_`` for
    complete rows, so every missingness pattern is flagged at the same rate under the
    model.  For several components it stays close while the components are well apart
    in the observed coordinates; where their marginals overlap, the nearest component
    understates how unusual a row is, and incomplete rows are flagged somewhat less
    often (in the example above 4.8 % of the complete and 4.3 % of the incomplete
    inliers; 3.0 % of those with one observed cell).  A chi-square tail is a closed
    form: it costs one more density evaluation per incomplete row, whatever the number
    of missingness patterns (a rank among draws from each pattern's marginal would need
    thousands of draws per pattern).  A row with nothing observed carries no evidence:
    its value is the log-density at its most probable component's mean, and it is
    never an outlier.  ``score_samples`` stays the observed cells' log-density (the
    likelihood the mixture was fitted to).
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
                "missing",
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
        missing: str = "error",
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
        self.missing = missing

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
            scores = np.asarray(self._decision_scores(X_checked), dtype=np.float64)
            self.offset_ = lower_tail_threshold(scores, float(self.contamination), weight)
        return self

    def _new_mixture(self) -> GaussianMixture:
        mixture: GaussianMixture = wrapped_mixture(self, missing=self.missing)
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
        coefs = kept_coefficients(mixture.params_, engine.dtype)
        # score_samples' dtype rule: float32 scores for a float32 model on float32 data
        rounded = np.result_type(engine.dtype, mixture.params_.means.dtype)

        def log_density(rows: NDArray[Any]) -> NDArray[np.float64]:
            return equivalent_log_density(coefs, rows).astype(rounded).astype(np.float64)

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
        X_checked = self._validated(X, ensure_min_samples=2 if first else 1, reset=first)
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
        scores = np.asarray(self._decision_scores(X_checked), dtype=np.float64)
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
        """``score_samples(X) - offset_``: negative for outliers, shape (n_samples,).

        A row with missing cells has :func:`equivalent_log_density` minus ``offset_``
        instead (the class's Notes).
        """
        if is_out_of_core(X):
            check_is_fitted(self)
        else:
            X = self._checked(X)
        return self._decision_scores(X) - self.offset_

    def _decision_scores(self, X: Any) -> NDArray[np.floating[Any]]:
        """:func:`equivalent_log_density` of checked in-memory or streamed rows, with
        ``score_samples``' dtype (equal to ``score_samples`` for complete rows)."""
        mixture = self.mixture_
        engine = mixture._out_of_core_engine(X, None, reset=False)
        if engine is None:
            engine = mixture._engine(mixture._validate_X(X, reset=False))
        params = mixture.params_
        coefs = kept_coefficients(params, engine.dtype, fused=engine.fused_passes(params))
        values = engine.map_rows(partial(_chunk_equivalent, coefs))
        dtype = np.result_type(engine.dtype, mixture.params_.means.dtype)
        return np.asarray(values).astype(dtype, copy=False)

    def predict(self, X: ArrayLike) -> NDArray[np.intp]:
        """``+1`` for inliers, ``-1`` for outliers, shape (n_samples,)."""
        decision = self.decision_function(X)
        return np.where(decision < 0, -1, 1).astype(np.intp)

    def fit_predict(
        self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None
    ) -> NDArray[np.intp]:
        """Fit on ``X`` and label its rows (``+1`` inlier, ``-1`` outlier)."""
        return self.fit(X, sample_weight=sample_weight).predict(X)
