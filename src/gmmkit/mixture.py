"""scikit-learn-compatible estimators: validate, run the EM core, store fitted values."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from gmmkit._transaction import transactional_fit
from gmmkit.core import criteria
from gmmkit.core.covariance import COVARIANCE_TYPES, get_covariance_type
from gmmkit.core.em import EmptyComponentWarning, EMResult, run_em
from gmmkit.core.init import INIT_METHODS, initial_parameters
from gmmkit.core.kernel import kept_coefficients
from gmmkit.core.missing import incomplete_chunk_rows, observed_summary
from gmmkit.core.online import (
    DEFAULT_LEARNING_DECAY,
    DEFAULT_LEARNING_OFFSET,
    implied_statistics,
    online_step,
    step_size,
)
from gmmkit.core.params import MixtureParams
from gmmkit.core.starts import DEFAULT_STARTS, multistart
from gmmkit.core.suffstats import SuffStats
from gmmkit.core.weights import weight_scale
from gmmkit.engines.base import Engine, FilledEngine, check_squares, squares_limit
from gmmkit.engines.dispatch import as_engine, check_engine_features, is_torch_tensor
from gmmkit.engines.memory import MemoryEngine, default_chunk_rows, default_part_rows
from gmmkit.modelfile import SaveMixin

Array = NDArray[np.floating[Any]]

ProgressCallback = Callable[[int, float, float], None]
_progress: ContextVar[ProgressCallback | None] = ContextVar("gmmkit_progress", default=None)


@contextmanager
def fit_progress(callback: ProgressCallback) -> Iterator[None]:
    """Call ``callback(n_iter, lower_bound, change)`` after every EM iteration of every fit
    run inside the ``with`` block (in this thread/context), e.g. to drive a progress bar."""
    token = _progress.set(callback)
    try:
        yield
    finally:
        _progress.reset(token)


def _generator(random_state: Any) -> np.random.Generator:
    """A NumPy Generator from scikit-learn's ``random_state`` conventions."""
    rs = check_random_state(random_state)
    return np.random.default_rng(int(rs.randint(np.iinfo(np.int32).max)))


class MissingRowsWarning(UserWarning):
    """Some rows have no observed value: they do not enter the fit."""


def warn_unobserved_rows(n_rows: int, stacklevel: int, note: str = "") -> None:
    """Issue the :class:`MissingRowsWarning` for ``n_rows`` rows with nothing observed
    (``stacklevel`` as the caller would give it to ``warnings.warn``; ``note`` is
    appended to the message)."""
    warnings.warn(
        f"{n_rows} row(s) of X have no observed value; they do not enter the fit{note}",
        MissingRowsWarning,
        stacklevel=stacklevel + 1,
    )


@contextmanager
def nan_refused(owner: str, marginalize: bool) -> Iterator[None]:
    """Turn the NaN error of scikit-learn's validation (inside the ``with`` block) into
    one that says how ``owner`` (an estimator's or function's name) takes missing
    values; other errors, and every error with ``marginalize``, pass unchanged."""
    try:
        yield
    except ValueError as exc:
        if marginalize or "NaN" not in str(exc):
            raise
        raise ValueError(
            "Input X contains NaN. Missing values are an error by default; pass "
            f"missing='marginalize' to {owner} to fit and predict with them (EM over the "
            "observed values)"
        ) from None


class GaussianMixture(SaveMixin, DensityMixin, BaseEstimator):
    """Gaussian mixture fitted by exact EM on additive sufficient statistics.

    A drop-in replacement for :class:`sklearn.mixture.GaussianMixture`: the same
    constructor parameters, methods and fitted attributes, computed in cache-sized row
    blocks in parallel threads, with ``sample_weight`` support (integer weights act
    exactly as repeated rows) and float32 data computed in float32 while statistics
    accumulate in float64.  As in scikit-learn, float32 data give float32 fitted arrays
    (``weights_``, ``means_``, ``covariances_``, ``precisions_``,
    ``precisions_cholesky_``: the float64 M-step's result rounded), and ``predict_proba``
    / ``score_samples`` return float32 when the model and ``X`` are float32.  A component
    whose covariance is conditioned beyond float32's reach (above about 1e7: a tiny
    component held up by ``reg_covar``) keeps a valid precision factor, with which the
    model scores, predicts, samples and is saved, but its rounded ``covariances_`` can be
    indefinite (scipy's Cholesky refuses it); fit float64 data where the covariances
    themselves are needed.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : str, default="full"
        One of mclust's fourteen models ``Sigma_k = lambda_k D_k A_k D_k'`` by name --
        volume ``lambda``, shape ``A``, orientation ``D`` each Equal across components,
        Variable, or the Identity: ``"EII"``, ``"VII"``, ``"EEI"``, ``"VEI"``, ``"EVI"``,
        ``"VVI"``, ``"EEE"``, ``"VEE"``, ``"EVE"``, ``"VVE"``, ``"EEV"``, ``"VEV"``,
        ``"EVV"``, ``"VVV"`` -- or scikit-learn's names for four of them (``"spherical"``
        = VII, ``"diag"`` = VVI, ``"tied"`` = EEE, ``"full"`` = VVV); ``"E"``/``"V"`` for
        one-dimensional data.  ``covariances_`` has the shape of scikit-learn's type of
        the same storage: (K,) for EII/VII, (K, D) for the diagonal models, (D, D) for
        EEE, (K, D, D) for the others.
    tol : float or None, default=None
        ``None`` (gmmkit's rule): EM stops when an iteration changes the total
        log-likelihood by at most ``1e-9`` of its size (``|dL| <= 1e-9 (1 + |L|)``, mclust's
        relative rule, tighter; ``1e-6`` for float32 data, whose log-densities carry
        ``1e-7`` rounding), which does not depend on N or on the data's units.  A
        number gives scikit-learn's rule: stop when the *mean* log-likelihood changes by
        less than ``tol`` (scikit-learn's default is ``1e-3``, which stops fits on large
        data long before the optimum).
    reg_covar : float, default=1e-6
        Added to each component's scatter per unit weight: for the unconstrained models
        exactly scikit-learn's ``+ reg_covar`` on the covariance diagonal; it keeps
        covariances positive definite and every model's structure.
    max_iter : int, default=1000
        Passes over the data (EM iterations, SQUAREM's extrapolated steps included) per
        initialisation (scikit-learn's default is 100).
    n_init : int, default=1
        Initialisations; the one with the highest final lower bound is kept.
    init_params : {"auto", "hc", "kmeans", "k-means++", "random", "random_from_data"}, \
            default="auto"
        ``"auto"``: several starts of different kinds (mclust's hierarchical
        agglomeration, k-means, k-means++ draws; ``n_starts``) each get ten EM passes
        and the best third of them continue to convergence (Biernacki, Celeux &
        Govaert's em-EM; on large data the short runs use a 50 000-row sample).
        ``"hc"``: mclust's start alone (its hierarchical agglomeration on at most 2000
        rows; quantile classes for one feature).  The others are scikit-learn's single
        starts (scikit-learn's default is ``"kmeans"``).  ``weights_init``, ``means_init``
        and ``precisions_init`` replace what a single start gives; with all three given
        the data are not read.
    weights_init : array-like of shape (K,), optional
    means_init : array-like of shape (K, D), optional
    precisions_init : array-like, optional
        (K, D, D) full, (D, D) tied, (K, D) diag, (K,) spherical.
    random_state : int, RandomState instance or None
    warm_start : bool, default=False
        Start from the previous fit's parameters (and run a single initialisation).
    verbose : int, default=0
    verbose_interval : int, default=10
    chunk_rows : int, optional
        Rows per block; by default sized so a block's features fit in cache.
    n_jobs : int, optional
        Worker threads (default: number of CPUs).
    acceleration : {"auto", "squarem", "none"}, default="auto"
        ``"squarem"``: SQUAREM extrapolation (Varadhan & Roland 2008) with a safeguard
        that keeps the log-likelihood of the iterates monotone; it cuts the passes EM
        needs on overlapping components several-fold.  ``"auto"`` uses it under the
        default convergence rule (``tol=None``) and follows scikit-learn's plain EM path
        when ``tol`` is a number, so scikit-learn's settings give scikit-learn's results.
    n_starts : int, default=6
        Starts of the ``init_params="auto"`` search, in this order: mclust's start
        (hierarchical agglomeration; quantile classes in one dimension), k-means, then
        k-means++ draws.  Ignored by the other ``init_params``.  With fewer rows than
        features and full or tied covariances only the first two run, without SQUAREM
        (there an M-step costs more than the passes they save).
    device : str or torch.device, optional
        Compute the E-steps with PyTorch on this device (``"cuda"``, ``"cuda:1"``,
        ``"cpu"``; needs ``pip install 'gmmkit[torch]'``): the chunk kernel runs there and
        returns float64 statistics, the M-step stays on the host, and the results equal
        the NumPy engine's.  NumPy input is copied to the device once when it fits in
        half its free memory, otherwise streamed through it in chunks.  A
        ``torch.Tensor`` ``X`` is fitted where it lies without this setting, and
        ``predict`` / ``predict_proba`` / ``score_samples`` of a tensor return tensors.
    missing : {"error", "marginalize"}, default="error"
        What NaN in ``X`` means.  ``"error"`` (scikit-learn's behaviour): NaN is refused.
        ``"marginalize"``: NaN marks a value missing at random; EM fits the likelihood of
        the observed values (each row's responsibilities come from the marginal density
        of its observed coordinates, and the conditional expectations of the missing
        ones enter the statistics: Ghahramani & Jordan 1994), with every covariance
        model, ``sample_weight``, float32, out-of-core data and :meth:`partial_fit`.  ``predict``,
        ``predict_proba``, ``score_samples``, ``score`` and the criteria then use the
        observed coordinates' marginal (``score_samples`` is 0 for a row with nothing
        observed, whose marginal density is one; such rows do not enter the fit and are
        reported by a :class:`MissingRowsWarning`).  Without NaN the results are
        identical to ``"error"``'s.  Infinity is always an error.
    learning_offset : float, default=10.0
    learning_decay : float in (0.5, 1], default=0.7
        :meth:`partial_fit` (stepwise EM) blends batch ``t`` into the running statistics
        with the step ``(t + learning_offset) ** -learning_decay`` (scikit-learn's online
        LDA defaults; Robbins-Monro's conditions hold for ``0.5 < learning_decay <= 1``).
        A larger offset or decay averages over more batches.  Ignored by :meth:`fit`.
    learning_rate : float in (0, 1], optional
        A constant step for :meth:`partial_fit` instead: exponential forgetting with a
        memory of about ``1 / learning_rate`` batches, to follow a drifting distribution.

    Attributes
    ----------
    weights_ : ndarray of shape (K,)
    means_ : ndarray of shape (K, D)
    covariances_ : ndarray
    precisions_ : ndarray
    precisions_cholesky_ : ndarray
    converged_ : bool
    n_iter_ : int
        EM iterations of the best run (with ``init_params="auto"`` its short run
        included); SQUAREM's extrapolated passes are not counted (``max_iter`` does).
    lower_bound_ : float
        Mean log-likelihood (sample-weighted) at the last E-step of the best run
        (``np.float32`` for float32 data, as in scikit-learn).
    lower_bounds_ : list of float
        Its value at every iteration of the best run.
    n_samples_fit_ : int
        Rows of the training data.
    sample_weight_sum_ : float
        Their total sample weight (``n_samples_fit_`` without weights): the ``n`` of BIC,
        whose log-likelihood is about ``lower_bound_ * sample_weight_sum_``.
    reseeded_ : list of (iteration, component)
        Components that emptied and were re-seeded during the best run.
    n_steps_ : int
        Mini-batches absorbed by :meth:`partial_fit` (after it ``n_iter_`` equals it:
        one stepwise-EM iteration per batch, and ``converged_`` is False).
    running_stats_ : dict of ndarray
        :meth:`partial_fit`'s state, saved with the model: the running average of the
        per-row statistics (``"nk"`` (K,), ``"first"`` (K, D), ``"second"`` (K, Q) or
        (1, Q) for tied) around ``"reference"`` (K, D); see :mod:`gmmkit.core.online`.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string column names.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
        "tol": [Interval(Real, 0.0, None, closed="left"), None],
        "acceleration": [StrOptions({"auto", "squarem", "none"})],
        "n_starts": [Interval(Integral, 1, None, closed="left")],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [StrOptions({"auto", *INIT_METHODS})],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(Integral, 1, None, closed="left")],
        "chunk_rows": [Interval(Integral, 1, None, closed="left"), None],
        "n_jobs": [Interval(Integral, 1, None, closed="left"), None],
        "device": [str, None, object],  # a name or a torch.device, checked by torch
        "missing": [StrOptions({"error", "marginalize"})],
        "learning_offset": [Interval(Real, 0.0, None, closed="left")],
        "learning_decay": [Interval(Real, 0.5, 1.0, closed="right")],
        "learning_rate": [Interval(Real, 0.0, 1.0, closed="right"), None],
    }

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float | None = None,
        reg_covar: float = 1e-6,
        max_iter: int = 1000,
        n_init: int = 1,
        init_params: str = "auto",
        weights_init: ArrayLike | None = None,
        means_init: ArrayLike | None = None,
        precisions_init: ArrayLike | None = None,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        chunk_rows: int | None = None,
        n_jobs: int | None = None,
        acceleration: str = "auto",
        n_starts: int = DEFAULT_STARTS,
        device: Any = None,
        missing: str = "error",
        learning_offset: float = DEFAULT_LEARNING_OFFSET,
        learning_decay: float = DEFAULT_LEARNING_DECAY,
        learning_rate: float | None = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.chunk_rows = chunk_rows
        self.n_jobs = n_jobs
        self.acceleration = acceleration
        self.n_starts = n_starts
        self.device = device
        self.missing = missing
        self.learning_offset = learning_offset
        self.learning_decay = learning_decay
        self.learning_rate = learning_rate

    # ------------------------------------------------------------------ validation
    def _marginalize(self) -> bool:
        return getattr(self, "missing", "error") == "marginalize"

    def _validate_X(self, X: Any, reset: bool) -> NDArray[Any]:
        marginalize = self._marginalize()
        with nan_refused(type(self).__name__, marginalize):
            X_checked = validate_data(
                self,
                X,
                dtype=[np.float64, np.float32],
                ensure_min_samples=2 if reset else 1,
                reset=reset,
                ensure_all_finite="allow-nan" if marginalize else True,
            )
        check_squares(X_checked)  # the check streamed blocks get too
        return X_checked

    def _plain_rows(self, X: Any) -> bool:
        """Whether ``X`` is rows this fitted model scores as they are, so that
        scikit-learn's validation would neither change nor refuse them: a 2-D float64 or
        float32 ``numpy.ndarray`` (not a subclass, list or frame) of at least one row and
        the fitted number of features, every value finite with a square that does not
        overflow, for a model fitted without feature names and not marginalising NaN.
        The validation costs about 90 us, more than the rest of a one-row ``predict``;
        any other input takes it, with its messages and warnings."""
        if not (
            type(X) is np.ndarray
            and X.ndim == 2
            and X.dtype in (np.float64, np.float32)
            and X.shape[0] >= 1
            and X.shape[1] == getattr(self, "n_features_in_", -1)
            and not hasattr(self, "feature_names_in_")
            and not self._marginalize()
        ):
            return False
        # the largest magnitude is finite (no NaN, no infinity) and its square fits
        largest = max(float(X.max()), -float(X.min()))
        return largest <= squares_limit(X.dtype, X.shape[1])

    def _with_missing(
        self,
        engine: Engine,
        fit: bool,
        continuing: bool = False,
        stacklevel: int = 6,
        record: bool = False,
    ) -> Engine:
        """With ``missing="marginalize"``: the engine whose chunks mark NaN cells, after
        one pass that finds them (``fit``); ``engine`` itself when there are none.

        The fill values are what initialisation reads: the observed columns' means
        (any column without an observed value is an error), or the fitted mixture's
        mean when not ``fit`` (prediction) or ``continuing`` (a later batch of
        :meth:`partial_fit`, which need only hold some observed value).  ``record``
        keeps the share of rows with nothing observed for :meth:`_set_training_size`."""
        if not self._marginalize():
            return engine
        if type(engine).__name__ == "TorchEngine":
            raise ValueError(
                "missing='marginalize' runs on the NumPy engines (in memory, streamed, "
                "Dask); it is not available with device= or torch.Tensor input yet"
            )
        if fit:
            summary = observed_summary(engine)
            if record:
                self._unobserved_share = summary.unobserved_weight / max(
                    summary.total_weight, np.finfo(np.float64).tiny
                )
                self._n_unobserved = summary.n_unobserved
            if summary.n_incomplete == 0:
                return engine
            if continuing and not np.any(summary.weights > 0):
                raise ValueError(
                    "every row of the batch is missing (NaN) or has zero weight: it holds "
                    "nothing to learn from"
                )
            if summary.n_unobserved:
                labelled = summary.n_unobserved_labelled
                note = "" if not labelled else (
                    f" ({labelled} of them labelled: a labelled row with nothing observed "
                    "carries no information about its class's mean or covariance)"
                )
                warn_unobserved_rows(summary.n_unobserved, stacklevel=stacklevel, note=note)
            engine = self._incomplete_chunks(engine)
            if not continuing:
                return FilledEngine(engine, summary.fill_values())
        params = self._params
        fill = np.asarray(params.weights, np.float64) @ np.asarray(params.means, np.float64)
        return FilledEngine(engine, fill)

    def _incomplete_chunks(self, engine: Engine) -> Engine:
        """An in-memory engine of default chunks over data with missing values, in the
        larger chunks of :func:`~gmmkit.core.missing.incomplete_chunk_rows`: the E-step
        over incomplete rows pays numpy calls per pattern group and chunk (factorisations,
        gathers, sums), which at the complete kernel's cache-sized chunks cost as much
        as the arithmetic (measured 1.2-1.7x faster passes at D = 4 and 8, one thread);
        a chunk's complete rows still go to the complete kernel together."""
        if self.chunk_rows is not None or type(engine) is not MemoryEngine:
            return engine
        layout = (engine.n_features, self._n_fit_components(), engine.dtype.itemsize,
                  self.covariance_type)
        rows = incomplete_chunk_rows(engine.n_features, layout[1], self.covariance_type)
        default = default_chunk_rows(*layout, fused=None if engine.labels is None else False)
        if engine.chunk_rows != default or rows <= engine.chunk_rows:
            return engine
        return MemoryEngine(
            engine.X, engine.sample_weight, engine.labels, chunk_rows=rows,
            n_jobs=engine.n_jobs, part_rows=engine.part_rows,
        )

    def _out_of_core_engine(self, X: Any, sample_weight: Any, reset: bool) -> Engine | None:
        """A streaming or Dask engine for a memmap, chunked source or dask collection
        (validated chunk by chunk as it streams), or None for in-memory input."""
        engine = as_engine(
            X,
            sample_weight,
            n_components=self.n_components if reset else None,
            chunk_rows=self.chunk_rows,
            n_jobs=self.n_jobs,
            verbose=self.verbose,
            min_samples=2 if reset else 1,
            device=getattr(self, "device", None),
            covariance_type=self.covariance_type,
            allow_nan=self._marginalize(),
        )
        if engine is not None:
            check_engine_features(self, engine, reset=reset)
        return engine

    def _engine(
        self,
        X: NDArray[Any],
        sample_weight: NDArray[np.float64] | None = None,
        labels: NDArray[np.intp] | None = None,
    ) -> Engine:
        if getattr(self, "device", None) is not None:
            from gmmkit.engines.torch_engine import TorchEngine

            return TorchEngine(
                X, sample_weight, labels, device=self.device, chunk_rows=self.chunk_rows,
                n_components=self._n_fit_components(), covariance_type=self.covariance_type,
            )
        layout = (X.shape[1], self._n_fit_components(), X.dtype.itemsize, self.covariance_type)
        # labelled rows go to the numpy kernel, whatever the model
        rows = self.chunk_rows or default_chunk_rows(
            *layout, fused=None if labels is None else False)
        return MemoryEngine(
            X, sample_weight, labels, chunk_rows=rows, n_jobs=self.n_jobs,
            part_rows=None if self.chunk_rows else default_part_rows(*layout),
        )

    def _n_fit_components(self) -> int:
        """Components of this fit (a subclass may take them from ``y``)."""
        return int(self.n_components)

    def _checked_inits(self, n_features: int) -> tuple[Array | None, Array | None, Array | None]:
        k = self._n_fit_components()
        weights = means = precisions = None
        if self.weights_init is not None:
            weights = np.asarray(self.weights_init, dtype=np.float64)
            if weights.shape != (k,):
                raise ValueError(
                    f"weights_init should have shape ({k},), got {weights.shape}"
                )
            if not np.all(np.isfinite(weights)) or np.any(weights < 0) or np.any(weights > 1):
                raise ValueError(
                    "The parameter 'weights' should be in the range [0, 1], but got max "
                    f"value {weights.max():.5f}, min value {weights.min():.5f}"
                )
            if abs(1.0 - weights.sum()) > 1e-6:
                raise ValueError(
                    "The parameter 'weights' should be normalized, but got "
                    f"sum(weights) = {weights.sum():.5f}"
                )
        if self.means_init is not None:
            means = np.asarray(self.means_init, dtype=np.float64)
            if means.shape != (k, n_features):
                raise ValueError(
                    f"means_init should have shape ({k}, {n_features}), got {means.shape}"
                )
            if not np.all(np.isfinite(means)):
                raise ValueError("means_init contains NaN or infinity")
        if self.precisions_init is not None:
            precisions = np.asarray(self.precisions_init, dtype=np.float64)
            get_covariance_type(self.covariance_type).validate_covariances(
                precisions, k, n_features
            )
        return weights, means, precisions

    # ------------------------------------------------------------------ fitting
    @transactional_fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None) -> Any:
        """Estimate the parameters with EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Or data streamed chunk by chunk, never loaded whole: a ``numpy.memmap``
            (``np.load(path, mmap_mode="r")``), a source from :func:`gmmkit.read_parquet`
            / :func:`gmmkit.read_csv`, a callable returning an iterator of blocks, or a
            dask array / DataFrame (fitted on the active dask scheduler).
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights; an integer weight acts exactly as repeating the row.

        Returns
        -------
        self
        """
        streamed = self._out_of_core_engine(X, sample_weight, reset=True)
        if streamed is not None:
            self._fit_engine(streamed, streamed.n_features)
            self._set_training_size(streamed.n_samples, sample_weight)
            return self
        X_checked = self._validate_X(X, reset=True)
        weight = self._checked_sample_weight(sample_weight, X_checked)
        self._fit_engine(self._engine(X_checked, weight), X_checked.shape[1])
        self._set_training_size(X_checked.shape[0], sample_weight)
        return self

    def _set_training_size(self, n_rows: int, sample_weight: Any) -> None:
        """Record the training data's size (what BIC needs besides ``lower_bound_``):
        rows with nothing observed (``missing="marginalize"``) do not count."""
        total = float(n_rows) if sample_weight is None else _weight_sum(sample_weight)
        self.n_samples_fit_ = int(n_rows) - getattr(self, "_n_unobserved", 0)
        self.sample_weight_sum_ = total * (1.0 - getattr(self, "_unobserved_share", 0.0))
        for name in ("_n_unobserved", "_unobserved_share"):
            self.__dict__.pop(name, None)

    def _plain_em(self) -> bool:
        """Whether ``fit`` is this class's unsupervised EM (subclasses that fit something
        else, such as labelled rows, have no :meth:`partial_fit`)."""
        return type(self).fit is GaussianMixture.fit

    @available_if(_plain_em)
    @transactional_fit
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(
        self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None
    ) -> Any:
        """Update the model with one mini-batch by stepwise EM (online EM).

        The first call (on an unfitted estimator) initialises the parameters from the
        batch with ``init_params`` (``"auto"`` means ``"kmeans"`` here: its multi-start
        search needs passes over data a stream does not give back) or from
        ``weights_init`` / ``means_init`` / ``precisions_init``, then makes one EM step
        on it.  Every later call makes one stepwise-EM step (Cappé & Moulines 2009;
        Liang & Klein 2009): the batch's statistics under the current parameters are
        blended into the running average with the step of ``learning_rate`` or
        ``(n_steps_ + learning_offset) ** -learning_decay``, and the M-step reads the
        average (:mod:`gmmkit.core.online`).  A model fitted by :meth:`fit` continues
        from its parameters (they enter the average as the statistics they imply).

        Each call is one step whatever the batch's size: keep batches of similar sizes
        (thousands of rows; the first must hold at least ``n_components`` rows).  The
        fitted attributes are valid after every call, and a model saved mid-stream
        continues exactly as if it had not been saved (``running_stats_`` is saved).

        With ``missing="marginalize"`` a batch's statistics are those of exact EM over
        its observed values (the conditional expectations of the missing ones; the same
        additive statistics, so a step of 1 is one EM step of :meth:`fit`), and rows
        with nothing observed do not count.  The first batch initialises from its
        observed values (each column needs one); a later batch may miss whole columns.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights of the rows within the batch.

        Returns
        -------
        self
        """
        first = not hasattr(self, "_params")
        X_checked = self._validate_X(X, reset=first)
        weight = _batch_weight(sample_weight, X_checked)
        if first:
            self._checked_sample_weight(weight, X_checked)  # n_samples >= n_components
        # missing values: the batch's statistics marginalise over its NaN cells (the
        # additive statistics of exact EM); the first batch's NaN are filled with its
        # observed columns' means for the initialisation, later ones with the mixture's
        engine = self._with_missing(
            self._engine(X_checked, weight), fit=True, continuing=not first, stacklevel=5
        )
        running: SuffStats | None = None
        if first:
            weights_init, means_init, precisions_init = self._checked_inits(X_checked.shape[1])
            params = initial_parameters(
                engine,
                self._n_fit_components(),
                self.covariance_type,
                "kmeans" if self.init_params == "auto" else self.init_params,
                _generator(self.random_state),
                self.reg_covar,
                weights_init,
                means_init,
                precisions_init,
            )
            n_steps, reseeded, history = 0, [], []
        else:
            self._check_continues(X_checked.shape[1])
            params = _params_as(self._params, np.dtype(np.float64))
            n_steps = int(getattr(self, "n_steps_", 0))
            reseeded = list(getattr(self, "reseeded_", [])) if n_steps else []
            history = list(getattr(self, "lower_bounds_", [])) if n_steps else []
            state = getattr(self, "running_stats_", None)
            running = (
                implied_statistics(params, self.reg_covar)
                if state is None
                else _running_from_state(state)
            )
        step = step_size(
            max(n_steps, 1), self.learning_offset, self.learning_decay, self.learning_rate
        )
        result = online_step(
            engine,
            params,
            running,
            step,
            self.reg_covar,
            allow_reseed=len(reseeded) < 2 * self._n_fit_components(),
        )
        n_steps += 1
        if result.reseeded:
            warnings.warn(
                f"component(s) {list(result.reseeded)} lost all responsibility at step "
                f"{n_steps} and were re-seeded at the batch's worst-explained sample",
                EmptyComponentWarning,
                stacklevel=3,
            )
            reseeded.extend((n_steps, k) for k in result.reseeded)
        change = result.lower_bound - history[-1] if history else np.inf
        history = [*history[-(_ONLINE_HISTORY - 1) :], result.lower_bound]
        self._set_params_from(_params_as(result.params, engine.dtype))
        self.running_stats_ = {
            "nk": result.running.nk,
            "first": result.running.first,
            "second": result.running.second,
            "reference": result.running.reference,
        }
        self.n_steps_ = n_steps
        self.n_iter_ = n_steps
        self.converged_ = False
        # no training-set size: a stream's log-likelihood is a batch's, not a data set's
        for name in ("n_samples_fit_", "sample_weight_sum_"):
            self.__dict__.pop(name, None)
        self.lower_bound_ = result.lower_bound
        self.lower_bounds_ = history
        self.reseeded_ = reseeded
        listener = _progress.get()
        if listener is not None:
            listener(n_steps, result.lower_bound, change)
        return self

    def _check_continues(self, n_features: int) -> None:
        """Raise unless :meth:`partial_fit` can continue the fitted model."""
        previous = self._params
        model = get_covariance_type(self.covariance_type).model
        if (
            previous.n_components != self._n_fit_components()
            or get_covariance_type(previous.covariance_type).model != model
        ):
            raise ValueError(
                f"partial_fit continues the fitted model ({previous.n_components} "
                f"components, covariance_type {previous.covariance_type!r}), but the "
                f"estimator now has n_components={self._n_fit_components()}, "
                f"covariance_type={self.covariance_type!r}; call fit, or partial_fit on a "
                "new estimator, to start over"
            )

    def _checked_sample_weight(
        self, sample_weight: ArrayLike | None, X: NDArray[Any]
    ) -> NDArray[np.float64] | None:
        if sample_weight is None:
            n_rows = X.shape[0]
            weight = None
        else:
            weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
            if not np.all(np.isfinite(weight)):
                raise ValueError("sample_weight contains NaN or infinity")
            n_rows = int(np.count_nonzero(weight))
            if n_rows == 0:
                raise ValueError("sample_weight is zero for every sample")
            weight = _normalised_weight(weight)
        if n_rows < self._n_fit_components():
            counted = "n_samples" if weight is None else "samples with non-zero weight"
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = "
                f"{self._n_fit_components()}, {counted} = {n_rows}"
            )
        return weight

    def _fit_engine(
        self, engine: Engine, n_features: int, label_weight: float = 1.0
    ) -> None:
        weights_init, means_init, precisions_init = self._checked_inits(n_features)
        engine = self._with_missing(engine, fit=True, record=self._plain_em())
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        if not do_init:
            self._check_warm_start(n_features)
        n_init = self.n_init if do_init else 1
        rng = _generator(self.random_state)
        best: EMResult | None = None
        with engine.session():
            for init in range(n_init):
                start = time.perf_counter()
                if self.verbose:
                    print(f"Initialization {init}")
                user_start = any(
                    init is not None for init in (weights_init, means_init, precisions_init)
                )
                if do_init and self.init_params == "auto" and not user_start:
                    result = multistart(
                        engine,
                        self._n_fit_components(),
                        self.covariance_type,
                        rng,
                        self.reg_covar,
                        tol=self.tol,
                        max_iter=self.max_iter,
                        accelerate=self._accelerate(),
                        label_weight=label_weight,
                        callback=self._iteration_callback(start),
                        n_starts=self.n_starts,
                    )
                else:
                    if do_init:
                        params = initial_parameters(
                            engine,
                            self._n_fit_components(),
                            self.covariance_type,
                            # what the user's arrays leave open comes from k-means
                            "kmeans" if self.init_params == "auto" else self.init_params,
                            rng,
                            self.reg_covar,
                            weights_init,
                            means_init,
                            precisions_init,
                        )
                    else:
                        params = self._params
                    result = run_em(
                        engine,
                        params,
                        reg_covar=self.reg_covar,
                        tol=self.tol,
                        max_iter=self.max_iter,
                        label_weight=label_weight,
                        accelerate=self._accelerate(),
                        callback=self._iteration_callback(start),
                    )
                if self.verbose:
                    state = "converged" if result.converged else "did not converge"
                    elapsed = time.perf_counter() - start
                    print(
                        f"Initialization {state}. time lapse {elapsed:.5f}s\t "
                        f"lower bound {result.lower_bound:.5f}."
                    )
                if best is None or result.lower_bound > best.lower_bound:
                    best = result
        assert best is not None
        if not best.converged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=3,
            )
        # scikit-learn's dtype rule: float32 data give float32 fitted arrays (the EM
        # statistics and M-step ran in float64; the model is their rounding)
        self._set_params_from(_params_as(best.params, engine.dtype))
        self.converged_ = best.converged
        self.n_iter_ = best.n_iter
        # scikit-learn's types: np.float32 bounds for float32 data
        bound: Any = np.float32 if engine.dtype == np.float32 else float
        self.lower_bound_ = bound(best.lower_bound)
        self.lower_bounds_ = [bound(value) for value in best.lower_bounds]
        self.reseeded_ = list(best.reseeded)
        # a fit replaces a stream's state: a later partial_fit starts from this fit
        for name in ("n_steps_", "running_stats_"):
            self.__dict__.pop(name, None)

    def _check_warm_start(self, n_features: int) -> None:
        """Raise unless the previous fit's parameters can start this one.

        scikit-learn silently continues from the old parameters when ``n_components``,
        ``covariance_type`` or the number of features changed, leaving attributes that
        disagree with the constructor parameters (and model files that cannot be read).
        """
        previous = self._params
        changed = []
        if previous.n_components != self._n_fit_components():
            changed.append(
                f"n_components is {self._n_fit_components()} but the previous fit has "
                f"{previous.n_components} components"
            )
        model = get_covariance_type(self.covariance_type).model
        if get_covariance_type(previous.covariance_type).model != model:
            changed.append(
                f"covariance_type is {self.covariance_type!r} but the previous fit used "
                f"{previous.covariance_type!r}"
            )
        if previous.n_features != n_features:
            changed.append(
                f"X has {n_features} features but the previous fit had {previous.n_features}"
            )
        if changed:
            raise ValueError(
                "warm_start=True continues from the previous fit, which does not match: "
                + "; ".join(changed)
                + ". Set warm_start=False (or refit with the previous settings)."
            )

    def _accelerate(self) -> bool:
        """SQUAREM runs by default under gmmkit's convergence rule; a numeric ``tol``
        (scikit-learn's rule) follows scikit-learn's plain EM path unless asked."""
        if self.acceleration == "auto":
            return self.tol is None
        return self.acceleration == "squarem"

    def _iteration_callback(self, start: float) -> ProgressCallback | None:
        verbose = self._verbose_callback(start) if self.verbose else None
        listener = _progress.get()
        if verbose is None or listener is None:
            return verbose or listener

        def both(n_iter: int, lower_bound: float, change: float) -> None:
            verbose(n_iter, lower_bound, change)
            listener(n_iter, lower_bound, change)

        return both

    def _verbose_callback(self, start: float) -> Any:
        last = [start]

        def report(n_iter: int, lower_bound: float, change: float) -> None:
            if n_iter % self.verbose_interval == 0:
                now = time.perf_counter()
                if self.verbose == 1:
                    print(f"  Iteration {n_iter}")
                else:
                    print(
                        f"  Iteration {n_iter}\t time lapse {now - last[0]:.5f}s\t "
                        f"ll change {change:.5f}"
                    )
                last[0] = now

        return report

    def _set_params_from(self, params: MixtureParams) -> None:
        self._params = params
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_cholesky
        self.precisions_ = params.precisions

    @property
    def params_(self) -> MixtureParams:
        """The fitted parameters as an immutable :class:`MixtureParams`."""
        check_is_fitted(self)
        return self._params

    def fit_predict(
        self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None
    ) -> NDArray[np.intp]:
        """Fit, then return the most probable component of each row, shape (n_samples,)."""
        return self.fit(X, y, sample_weight=sample_weight).predict(X)

    # ------------------------------------------------------------------ inference
    def _apply(
        self, X: ArrayLike, kind: str, sklearn_dtype: bool = False, host: bool = False
    ) -> Any:
        """The per-row kernel ``kind`` (:meth:`Engine.kernel_rows`) over the rows of
        ``X``; with ``sklearn_dtype`` a floating-point result is float32 when ``X`` and the
        model are (scikit-learn's ``result_type(X, model)``), float64 otherwise.  A
        tensor ``X`` gives a tensor on its device unless ``host``."""
        check_is_fitted(self)
        engine = self._out_of_core_engine(X, None, reset=False)
        if engine is None:
            rows = X if self._plain_rows(X) else self._validate_X(X, reset=False)
            engine = self._engine(rows)  # type: ignore[arg-type]
        engine = self._with_missing(engine, fit=False)
        coefs = kept_coefficients(
            self._params, engine.dtype, fused=engine.fused_passes(self._params))
        result = engine.kernel_rows(coefs, kind)
        dtype = np.result_type(engine.dtype, self._params.means.dtype)
        if is_torch_tensor(result):
            if host:
                return result.cpu().numpy()
            if sklearn_dtype and dtype == np.float32:
                import torch

                result = result.to(torch.float32)
            return result
        if sklearn_dtype:
            result = result.astype(dtype, copy=False)
        return result

    def score_samples(self, X: ArrayLike) -> NDArray[np.floating[Any]]:
        """Log-density of each row under the mixture, shape (n_samples,); float32 when the
        model and ``X`` are float32, as in scikit-learn."""
        return self._apply(X, "score", sklearn_dtype=True)

    def score(self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None) -> float:
        """Mean (sample-weighted) log-density of the rows."""
        log_density = self._apply(X, "score", host=True)
        if sample_weight is None:
            return float(log_density.mean())
        w = _scoring_weight(sample_weight, len(log_density))
        return float(np.average(log_density, weights=w))

    def predict(self, X: ArrayLike) -> NDArray[np.intp]:
        """Most probable component of each row, shape (n_samples,)."""
        return self._apply(X, "predict")

    def predict_proba(self, X: ArrayLike) -> NDArray[np.floating[Any]]:
        """Responsibilities of each component for each row, shape (n_samples, K); float32
        when the model and ``X`` are float32, as in scikit-learn."""
        return self._apply(X, "proba", sklearn_dtype=True)

    def sample(self, n_samples: int = 1) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
        """Draw rows from the fitted mixture.

        Parameters
        ----------
        n_samples : int, default=1

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
            Component of each drawn row (rows are grouped by component).
        """
        check_is_fitted(self)
        if not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples!r} . The sampling requires at "
                "least one sample."
            )
        return sample_mixture(self._params, int(n_samples), check_random_state(self.random_state))

    def condition(self, values: ArrayLike, given: ArrayLike) -> Any:
        """The distribution of the other features given the values of some: again a
        Gaussian mixture, for every row of ``values``.

        Parameters
        ----------
        values : array-like of shape (n_rows, n_given) or (n_given,)
            Known values of the features ``given``.
        given : array-like of int (n_given,) or bool (n_features,)
            Which features are known (indices, or a mask).

        Returns
        -------
        ConditionalMixture
            ``features`` (the others, in order), ``weights`` (n_rows, K) posterior
            component probabilities, ``means`` (n_rows, K, M) and ``covariances`` (K, M, M)
            of each component's conditional Gaussian; ``mean`` and ``covariance`` of the
            whole conditional mixture, and ``sample()``.  Regressing feature ``j`` on
            the others is ``condition(X[:, others], others).mean``.
        """
        from gmmkit.core.missing import conditional_mixture

        check_is_fitted(self)
        d = self._params.n_features
        index = np.asarray(given)
        if index.dtype == bool:
            if index.shape != (d,):
                raise ValueError(f"a boolean 'given' must have shape ({d},), got {index.shape}")
            index = np.flatnonzero(index)
        index = index.astype(np.intp).reshape(-1)
        if len(np.unique(index)) != len(index) or np.any((index < 0) | (index >= d)):
            raise ValueError(
                f"'given' must hold distinct feature indices in [0, {d}), got {index.tolist()}"
            )
        rows = np.asarray(values, dtype=np.float64)
        if rows.ndim == 1:
            rows = rows[None, :]
        if rows.ndim != 2 or rows.shape[1] != len(index):
            raise ValueError(
                f"values must have shape (n_rows, {len(index)}) for {len(index)} given "
                f"feature(s), got {np.shape(values)}"
            )
        if not np.all(np.isfinite(rows)):
            raise ValueError("values contain NaN or infinity")
        order = np.argsort(index)
        return conditional_mixture(self._params, rows[:, order], index[order])

    # ------------------------------------------------------------------ criteria
    def _n_parameters(self) -> int:
        d = self.means_.shape[1]
        return criteria.n_parameters(self.means_.shape[0], d, self.covariance_type)

    def _criterion_weight(
        self, X: ArrayLike, sample_weight: ArrayLike | None, n_rows: int
    ) -> NDArray[np.float64]:
        """Each row's weight in BIC/AIC/ICL: rows with nothing observed count for
        nothing (``missing="marginalize"``; as in a fit and in model selection)."""
        w = _scoring_weight(sample_weight, n_rows)
        if self._marginalize():
            w = w * self._apply(X, "observed", host=True)
        return w

    def bic(self, X: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
        """Bayesian information criterion on ``X`` (lower is better); ``n`` is the
        (weighted) number of rows with an observed value."""
        log_density = self._apply(X, "score", host=True)
        w = self._criterion_weight(X, sample_weight, len(log_density))
        return criteria.bic(float(w @ log_density), self._n_parameters(), float(w.sum()))

    def aic(self, X: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
        """Akaike information criterion on ``X`` (lower is better)."""
        log_density = self._apply(X, "score", host=True)
        w = _scoring_weight(sample_weight, len(log_density))
        return criteria.aic(float(w @ log_density), self._n_parameters())

    def icl(self, X: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
        """Integrated completed likelihood on ``X``: BIC plus twice the classification
        entropy of the hard assignment (lower is better)."""
        log_density = self._apply(X, "score", host=True)
        map_log_resp = self._apply(X, "map_log_resp", host=True)
        w = self._criterion_weight(X, sample_weight, len(log_density))
        value = criteria.bic(float(w @ log_density), self._n_parameters(), float(w.sum()))
        return criteria.icl(value, float(w @ map_log_resp))


def _params_as(params: MixtureParams, dtype: np.dtype[Any]) -> MixtureParams:
    """``params`` with its arrays rounded to ``dtype`` (unchanged for float64)."""
    if np.dtype(dtype) == params.means.dtype:
        return params
    return MixtureParams(
        weights=params.weights.astype(dtype),
        means=params.means.astype(dtype),
        covariances=params.covariances.astype(dtype),
        precisions_cholesky=params.precisions_cholesky.astype(dtype),
        covariance_type=params.covariance_type,
    )


#: ``lower_bounds_`` keeps the values of this many most recent :meth:`partial_fit` steps
#: (a stream may never end).
_ONLINE_HISTORY = 1000


def _batch_weight(
    sample_weight: ArrayLike | None, X: NDArray[Any]
) -> NDArray[np.float64] | None:
    """Validated weights of one :meth:`GaussianMixture.partial_fit` batch."""
    if sample_weight is None:
        return None
    weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
    if not np.all(np.isfinite(weight)):
        raise ValueError("sample_weight contains NaN or infinity")
    if not np.any(weight > 0):
        raise ValueError("sample_weight is zero for every sample of the batch")
    return _normalised_weight(weight)


def _running_from_state(state: dict[str, Any]) -> SuffStats:
    """The running statistics of :meth:`GaussianMixture.partial_fit` from
    ``running_stats_``."""
    nk = np.asarray(state["nk"], dtype=np.float64)
    first = np.asarray(state["first"], dtype=np.float64)
    return SuffStats(
        nk=nk,
        first=first,
        second=np.asarray(state["second"], dtype=np.float64),
        log_likelihood=0.0,
        total_weight=1.0,
        n_samples=1,
        reference=np.asarray(state["reference"], dtype=np.float64),
        worst_log_density=np.inf,
        worst_point=np.zeros(first.shape[1]),
    )


def _normalised_weight(weight: NDArray[np.float64]) -> NDArray[np.float64]:
    """``weight`` times the power of two of :func:`gmmkit.core.weights.weight_scale`
    (exact; weights whose mean lies in ``[1, 2)`` are unchanged bit for bit).

    Raises
    ------
    ValueError
        When the weights span more than float64's range.
    """
    scale = weight_scale(weight)
    return weight if scale == 1.0 else weight * scale


def _weight_sum(sample_weight: Any) -> float:
    """Sum of validated sample weights: an array, a memory map (summed in slices), a
    torch tensor or a dask vector."""
    if hasattr(sample_weight, "dask"):
        return float(sample_weight.sum().compute())
    if is_torch_tensor(sample_weight):
        sample_weight = sample_weight.detach().cpu().numpy()
    if not isinstance(sample_weight, np.memmap):
        return float(np.sum(np.asarray(sample_weight, dtype=np.float64)))
    step = 1 << 20
    return float(sum(
        np.sum(np.asarray(sample_weight[i : i + step], dtype=np.float64))
        for i in range(0, len(sample_weight), step)
    ))


def _scoring_weight(sample_weight: ArrayLike | None, n_samples: int) -> NDArray[np.float64]:
    """Validated weights for ``score``/``bic``/``aic``/``icl``: shape (n_samples,),
    finite, non-negative, not all zero."""
    if sample_weight is None:
        return np.ones(n_samples)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == 0:
        w = np.full(n_samples, float(w))
    if w.shape != (n_samples,):
        raise ValueError(f"sample_weight.shape == {w.shape}, expected ({n_samples},)")
    if not np.all(np.isfinite(w)):
        raise ValueError("sample_weight contains NaN or infinity")
    if np.any(w < 0):
        raise ValueError("sample_weight contains negative values")
    if not np.any(w > 0):
        raise ValueError("sample_weight is zero for every sample")
    return w


def sample_mixture(
    params: MixtureParams, n_samples: int, random_state: np.random.RandomState
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Draw ``n_samples`` rows from a mixture, grouped by component.

    Returns
    -------
    X : ndarray of shape (n_samples, D)
    y : ndarray of shape (n_samples,)
    """
    counts = random_state.multinomial(n_samples, params.weights)
    d = params.n_features
    blocks = []
    cov = params.covariances
    # full/tied draws use the precision factor U (precision = U U', upper triangular):
    # covariance = U^-T U^-1, so z U^-1 has rows of that covariance -- the covariance's own
    # Cholesky factor U^-T up to rounding.  The factor is what the model scores with; a
    # float32 model's covariances_ of a component conditioned beyond float32's reach (a
    # tiny component held up by reg_covar) can be indefinite once rounded, its U is not.
    chol = np.asarray(params.precisions_cholesky, dtype=np.float64)
    for k, count in enumerate(counts):
        z = random_state.standard_normal((count, d))
        if params.layout in ("full", "tied"):
            factor = chol[k] if params.layout == "full" else chol
            z = linalg.solve_triangular(factor, z.T, trans="T", lower=False).T
        elif params.layout == "diag":
            z = z * np.sqrt(cov[k])
        else:
            z = z * np.sqrt(cov[k])
        blocks.append(params.means[k] + z)
    X = np.vstack(blocks)
    y = np.repeat(np.arange(params.n_components), counts)
    return X, y
