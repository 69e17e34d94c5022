"""Generative modelling: a Gaussian mixture in a PCA space, sampled back in the data space."""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, DensityMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from gmmkit._transaction import transactional_fit
from gmmkit.apps._common import (
    check_covariance_types,
    check_n_components_list,
)
from gmmkit.apps.selection import select
from gmmkit.mixture import GaussianMixture, sample_mixture
from gmmkit.modelfile import SaveMixin


class PCAGaussianMixtureGenerator(SaveMixin, DensityMixin, TransformerMixin, BaseEstimator):
    """Fit a Gaussian mixture to the principal components of the data; sample new rows.

    The data are centred and projected on the fewest principal axes explaining at least
    ``variance`` of the total variance (optionally whitened); a mixture is fitted there
    (``n_components`` fixed, or chosen by ``criterion`` over a range) and samples are
    mapped back to the original space.  This is the tutorials' recipe for generating new
    handwritten digits.

    Parameters
    ----------
    n_components : int or iterable of int, default=range(1, 21)
        Mixture components, or candidates to choose from with :func:`~gmmkit.select`.
    variance : float in (0, 1], default=0.99
        Fraction of the total variance the kept principal axes must explain.
    whiten : bool, default=False
        Scale every principal axis to unit variance before fitting.
    covariance_type : str, default="full"
        A covariance model of :class:`~gmmkit.GaussianMixture`: one of mclust's fourteen
        (``"EII"``, ``"VII"``, ``"EEI"``, ..., ``"VEV"``, ``"EVV"``, ``"VVV"``) or
        scikit-learn's ``"spherical"``, ``"diag"``, ``"tied"``, ``"full"`` (= VVV).
    criterion : {"bic", "aic", "icl"}, default="bic"
        Used when ``n_components`` holds several candidates.
    clip : bool, default=True
        Clip samples to each feature's training range (e.g. pixel intensities 0..16).
    n_init, max_iter, tol, reg_covar, random_state, n_jobs
        Passed to :class:`~gmmkit.GaussianMixture`.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
    components_ : ndarray of shape (n_pca, n_features)
        Principal axes (rows, orthonormal).
    explained_variance_ : ndarray of shape (n_pca,)
    scale_ : ndarray of shape (n_pca,)
        Standard deviation along each axis when whitening, else ones.
    n_pca_components_ : int
    data_min_, data_max_ : ndarray of shape (n_features,)
        Training range of every feature (for ``clip``).
    mixture_ : GaussianMixture
        Fitted in the (whitened) PCA space.
    n_components_ : int
        Components of ``mixture_``.
    n_iter_ : int
        EM iterations of ``mixture_``.
    selection_ : SelectionResult or None
        The model selection table when several candidates were tried.
    n_features_in_ : int
    """

    def __init__(
        self,
        n_components: Any = tuple(range(1, 21)),
        *,
        variance: float = 0.99,
        whiten: bool = False,
        covariance_type: str = "full",
        criterion: str = "bic",
        clip: bool = True,
        n_init: int = 1,
        max_iter: int = 100,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        random_state: Any = None,
        n_jobs: int | None = None,
    ) -> None:
        self.n_components = n_components
        self.variance = variance
        self.whiten = whiten
        self.covariance_type = covariance_type
        self.criterion = criterion
        self.clip = clip
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.random_state = random_state
        self.n_jobs = n_jobs

    @transactional_fit
    def fit(self, X: ArrayLike, y: Any = None) -> PCAGaussianMixtureGenerator:
        """Project on the principal axes and fit (or select) the mixture there.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        (covariance_type,) = check_covariance_types(self.covariance_type)
        if not isinstance(self.variance, Real) or not 0 < self.variance <= 1:
            raise ValueError(f"variance must be in (0, 1], got {self.variance!r}")
        X_checked = validate_data(self, X, dtype=np.float64, ensure_min_samples=2, reset=True)
        ks = check_n_components_list(self.n_components, n_samples=X_checked.shape[0])

        self.mean_: NDArray[np.float64] = X_checked.mean(axis=0)
        centred = X_checked - self.mean_
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        explained = singular**2 / (X_checked.shape[0] - 1)
        total = explained.sum()
        if total <= 0:
            raise ValueError("X has zero variance: every row is the same")
        ratio = np.cumsum(explained) / total
        n_pca = int(np.searchsorted(ratio, self.variance * (1 - 1e-12)) + 1)
        n_pca = min(n_pca, len(explained))
        # the sign convention of scikit-learn's PCA (largest loading positive) keeps
        # results stable across LAPACK builds
        signs = np.sign(vt[np.arange(len(vt)), np.argmax(np.abs(vt), axis=1)])
        vt = vt * signs[:, None]
        self.components_: NDArray[np.float64] = vt[:n_pca]
        self.explained_variance_: NDArray[np.float64] = explained[:n_pca]
        self.scale_: NDArray[np.float64] = (
            np.sqrt(self.explained_variance_) if self.whiten else np.ones(n_pca)
        )
        self.n_pca_components_: int = n_pca
        self.data_min_ = X_checked.min(axis=0)
        self.data_max_ = X_checked.max(axis=0)

        Z = self._project(X_checked)
        self.mixture_: GaussianMixture
        # the same EM settings whether one K is fitted or several are compared
        # scikit-learn's settings (tol given, one k-means start): on integer-valued
        # data such as digit images the likelihood's best optima are spikes on the grid
        # (flagged degenerate by select); the thorough default search finds them for
        # every K > 1, a short run from k-means does not.  A prior on the covariances
        # (mclust's priorControl) would be the principled cure.
        em_options: dict[str, Any] = {
            "init_params": "kmeans",
            "n_init": self.n_init,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "reg_covar": self.reg_covar,
            "random_state": self.random_state,
            "n_jobs": self.n_jobs,
        }
        if len(ks) == 1:
            self.mixture_ = GaussianMixture(
                ks[0], covariance_type=covariance_type, **em_options
            ).fit(Z)
            self.selection_ = None
        else:
            result = select(Z, ks, (covariance_type,), self.criterion, **em_options)
            self.mixture_ = result.best
            self.selection_ = result
        self.n_components_ = int(self.mixture_.n_components)
        self.n_iter_ = int(self.mixture_.n_iter_)
        return self

    def _project(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return ((X - self.mean_) @ self.components_.T) / self.scale_

    def transform(self, X: ArrayLike) -> NDArray[np.float64]:
        """Coordinates in the (whitened) PCA space, shape (n_samples, n_pca_components_)."""
        check_is_fitted(self)
        X_checked = validate_data(self, X, dtype=np.float64, reset=False)
        return self._project(X_checked)

    def inverse_transform(self, Z: ArrayLike) -> NDArray[np.float64]:
        """Rows of the original space from PCA coordinates, shape (n_samples, n_features)."""
        check_is_fitted(self)
        Z = np.asarray(Z, dtype=np.float64)
        if Z.ndim != 2 or Z.shape[1] != self.n_pca_components_:
            raise ValueError(
                f"Z should have shape (n_samples, {self.n_pca_components_}), got {Z.shape}"
            )
        return (Z * self.scale_) @ self.components_ + self.mean_

    def score_samples(self, X: ArrayLike) -> NDArray[np.floating[Any]]:
        """Log-density of each row's PCA coordinates under the mixture, shape (n_samples,).

        A density on the principal subspace (the discarded directions are ignored), in the
        whitened units when ``whiten=True``.
        """
        return self.mixture_.score_samples(self.transform(X))

    def score(self, X: ArrayLike, y: Any = None) -> float:
        """Mean of :meth:`score_samples` over the rows of ``X``."""
        return float(np.mean(self.score_samples(X)))

    def sample(
        self, n_samples: int = 1, random_state: Any = None
    ) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
        """Draw new rows in the original space.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : int, RandomState instance or None
            Defaults to the estimator's ``random_state``.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Clipped to the training range when ``clip=True``.
        y : ndarray of shape (n_samples,)
            Mixture component of each row.
        """
        check_is_fitted(self)
        if isinstance(n_samples, bool) or not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
        rs = check_random_state(self.random_state if random_state is None else random_state)
        Z, y = sample_mixture(self.mixture_.params_, int(n_samples), rs)
        order = rs.permutation(len(y))  # sample_mixture groups rows by component
        X = self.inverse_transform(Z[order])
        if self.clip:
            X = np.clip(X, self.data_min_, self.data_max_)
        return X, y[order]
