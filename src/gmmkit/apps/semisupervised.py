"""Semi-supervised EM: a few labelled rows pin each component to a known class."""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from gmmkit._transaction import transactional_fit
from gmmkit.core.covariance import covariance_layout
from gmmkit.core.init import INIT_METHODS
from gmmkit.core.missing import ObservedSummary
from gmmkit.mixture import GaussianMixture, _generator

Array = NDArray[np.floating[Any]]


#: The label of an unlabelled row, as in scikit-learn's semi-supervised estimators (the
#: string ``"-1"`` in arrays of strings, where NumPy turns a ``-1`` among strings into it).
UNLABELLED = -1


def _unlabelled_mask(labels: NDArray[Any]) -> NDArray[np.bool_]:
    """Rows marked unlabelled (``-1``), after refusing labels that are no class at all."""
    kind = labels.dtype.kind
    if kind == "f":
        if not np.all(np.isfinite(labels)):
            raise ValueError("y contains NaN or infinity; mark unlabelled rows with -1")
        if np.any(labels != np.round(labels)):
            raise ValueError(
                "y holds non-integer numbers: class labels are integers, strings or other "
                "discrete values (-1 for unlabelled rows), not continuous values"
            )
        return np.asarray(labels == UNLABELLED)
    if kind in "iu":
        return np.asarray(labels == UNLABELLED)
    if kind == "b":
        return np.zeros(labels.shape, dtype=bool)
    if kind == "U":
        return np.asarray(labels == str(UNLABELLED))
    if kind == "S":
        return np.asarray(labels == str(UNLABELLED).encode())
    if kind == "O":
        mask = np.zeros(labels.shape, dtype=bool)
        for i, value in enumerate(labels.tolist()):
            if value is None or (isinstance(value, float) and not np.isfinite(value)):
                raise ValueError(
                    "y contains None, NaN or infinity; mark unlabelled rows with -1"
                )
            if isinstance(value, str):
                mask[i] = value == str(UNLABELLED)
            elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
                value, (bool, np.bool_)
            ):
                mask[i] = value == UNLABELLED
        return mask
    raise TypeError(
        f"y must hold class labels (integers, strings, booleans...), got dtype {labels.dtype}"
    )


def encode_partial_labels(
    y: Any, n_samples: int, n_components: int | None
) -> tuple[NDArray[Any], NDArray[np.intp]]:
    """Classes and per-row class indices of scikit-learn semi-supervised labels.

    ``y`` holds a class label for labelled rows -- any sortable hashable values, as for a
    scikit-learn classifier: integers, strings, booleans -- and ``-1`` for unlabelled rows
    (the string ``"-1"`` in an array of strings).

    The classes are the sorted distinct labels.  With ``n_components`` given and larger
    than their number, the labels must be integers in ``0..n_components-1`` and the
    classes are all of ``0..n_components-1``: a class without labelled rows is still a
    component (found by constrained k-means).

    Parameters
    ----------
    y : array-like of shape (n_samples,)
    n_samples : int
    n_components : int or None
        ``None``: one component per distinct label.

    Returns
    -------
    classes : ndarray of shape (K,)
        Sorted, of ``y``'s dtype (integers for the ``0..n_components-1`` case).
    codes : ndarray of shape (n_samples,), intp
        Index into ``classes`` of each row's label, ``-1`` for unlabelled rows.
    """
    if y is None:
        raise ValueError(
            "y is required: a class label for labelled rows and -1 for unlabelled rows"
        )
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.ravel()
    if labels.ndim != 1 or labels.shape[0] != n_samples:
        raise ValueError(f"y should have shape ({n_samples},), got {labels.shape}")
    unlabelled = _unlabelled_mask(labels)
    known = labels[~unlabelled]
    try:
        present = np.unique(known)
    except TypeError as exc:
        raise TypeError(
            "y mixes labels that cannot be sorted together (such as strings and numbers)"
        ) from exc
    if n_components is None:
        if len(present) == 0:
            raise ValueError(
                "y labels no row (all are -1): give n_components to fit unlabelled data"
            )
        classes = present
    elif len(present) > n_components:
        raise ValueError(
            f"y names {len(present)} classes but n_components is {n_components}: each "
            "class is one component (n_components=None takes the classes from y)"
        )
    elif labels.dtype.kind in "iuf" and bool(np.all((present >= 0) & (present < n_components))):
        classes = np.arange(n_components, dtype=labels.dtype)
    elif len(present) == n_components:
        classes = present
    else:
        raise ValueError(
            f"y names {len(present)} classes for n_components={n_components}: a component "
            "without labelled rows is a class only when the labels are integers in "
            f"0..{n_components - 1} (or set n_components to the number of classes)"
        )
    codes = np.full(n_samples, -1, dtype=np.intp)
    codes[~unlabelled] = np.searchsorted(classes, known)
    return classes, codes


def _weighted_scatter(X: Array, weight: Array, mean: Array) -> Array:
    centred = X - mean
    return (centred * weight[:, None]).T @ centred


def _seeded_kmeans(
    X: Array,
    weight: Array,
    labels: NDArray[np.intp],
    means: Array,
    present: NDArray[np.intp],
    missing: NDArray[np.intp],
    rng: np.random.Generator,
    max_rows: int = 20_000,
    n_iter: int = 30,
) -> tuple[Array, Array, Array]:
    """Centres for classes without labels: constrained k-means (Basu et al., 2002).

    Labelled rows stay in their class; missing centres are seeded by greedy k-means++
    (the best of a few D²-sampled candidates) around the labelled class means, then Lloyd
    iterations move every centre.

    Returns
    -------
    centres : ndarray of shape (len(missing), D)
    scatters : ndarray of shape (len(missing), D, D)
        Weighted scatter matrices of the rows assigned to each missing class.
    sizes : ndarray of shape (K,)
        Summed weights of the rows in every class at the end.
    """
    n_components, d = means.shape
    rows = np.flatnonzero(weight > 0)
    if len(rows) > max_rows:
        keep = labels[rows] >= 0
        unlabelled = rows[~keep]
        picked = rng.choice(len(unlabelled), max_rows - int(keep.sum()), replace=False)
        rows = np.sort(np.r_[rows[keep], unlabelled[picked]])
    pool, pool_weight, pool_labels = X[rows], weight[rows], labels[rows]
    free = pool_labels < 0

    centres = means.copy()
    chosen = list(present)
    n_trials = 2 + int(np.log(n_components))
    for k in missing:
        if chosen:
            closest = ((pool[:, None, :] - centres[chosen][None]) ** 2).sum(-1).min(axis=1)
        else:
            closest = np.ones(len(pool))
        mass = closest * pool_weight
        total = mass.sum()
        probs = mass / total if total > 0 else pool_weight / pool_weight.sum()
        candidates = rng.choice(len(pool), size=n_trials, p=probs)
        potentials = [
            (pool_weight * np.minimum(closest, ((pool - pool[c]) ** 2).sum(-1))).sum()
            for c in candidates
        ]
        centres[k] = pool[candidates[int(np.argmin(potentials))]]
        chosen.append(k)

    assign = pool_labels.copy()
    for _ in range(n_iter):
        distances = ((pool[free][:, None, :] - centres[None]) ** 2).sum(-1)
        new_assign = assign.copy()
        new_assign[free] = distances.argmin(axis=1)
        mass = np.bincount(new_assign, weights=pool_weight, minlength=n_components)
        sums = np.zeros((n_components, d))
        np.add.at(sums, new_assign, pool * pool_weight[:, None])
        filled = mass > 0
        centres[filled] = sums[filled] / mass[filled, None]
        if np.array_equal(new_assign, assign):
            break
        assign = new_assign

    sizes = np.bincount(assign, weights=pool_weight, minlength=n_components).astype(np.float64)
    scatters = np.zeros((len(missing), d, d))
    for i, k in enumerate(missing):
        members = assign == k
        if sizes[k] > 0:
            scatters[i] = _weighted_scatter(pool[members], pool_weight[members], centres[k])
    return centres[missing], scatters, sizes


def _filled_for_initialisation(
    X: NDArray[np.float64], labels: NDArray[np.intp], weight: NDArray[np.float64],
    n_components: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``X`` with its NaN cells filled for the labelled start, and ``weight`` set to zero
    on rows with nothing observed (they carry no information; EM leaves them out too).

    A labelled row's missing cell takes its class's weighted mean of the observed cells
    in that column (so a class's start mean is the NaN-aware mean of its labelled rows),
    or the column's overall observed mean where the class has none there; an unlabelled
    row's takes the column's overall observed mean, as :class:`FilledEngine` fills the
    rows the other initialisations read.  Filled cells add no spread, so the start
    covariances understate the missing coordinates' variances: a start, which the
    first EM iteration's conditional second moments correct.

    Raises
    ------
    ValueError
        When a column has no observed value (with positive weight).
    """
    missing = np.isnan(X)
    observed = ~missing
    weight = np.where(observed.any(axis=1), weight, 0.0)
    values = np.where(missing, 0.0, X)
    overall = ObservedSummary(weight @ values, weight @ observed, 0, 0).fill_values()
    known = np.flatnonzero(labels >= 0)
    member = np.eye(n_components)[labels[known]] * weight[known, None]  # (n_known, K)
    sums, counts = member.T @ values[known], member.T @ observed[known]
    class_fill = np.where(counts > 0, sums / np.where(counts > 0, counts, 1.0), overall)
    fill = np.broadcast_to(overall, X.shape).copy()
    fill[known] = class_fill[labels[known]]
    return np.where(missing, fill, X), weight


def labelled_initialisation(
    X: Array,
    labels: NDArray[np.intp],
    sample_weight: Array | None,
    n_components: int,
    covariance_type: str,
    reg_covar: float,
    rng: np.random.Generator,
) -> tuple[Array, Array, Array]:
    """Starting weights, means and precisions from the labelled rows.

    Each class starts at the mean of its labelled rows with a covariance shrunk towards
    the pooled within-class covariance (``D + 1`` pseudo-samples), so a class with a
    handful of labels still starts with a sensible shape.  Classes without labels start
    from constrained k-means (labelled rows pinned to their class; see
    :func:`_seeded_kmeans`), their covariance shrunk the same way.  NaN in ``X`` marks
    missing cells: rows with nothing observed are left out, and the others are filled
    as :func:`_filled_for_initialisation` says (class means from the observed cells).

    Returns
    -------
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, D)
    precisions : ndarray
        Shape of ``covariance_type`` ((K, D, D), (D, D), (K, D) or (K,)).
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    weight = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if np.isnan(X).any():
        X, weight = _filled_for_initialisation(
            np.asarray(X, np.float64), labels, weight, n_components
        )
    known = labels >= 0
    X_known, y_known, w_known = X[known], labels[known], weight[known]
    counts = np.bincount(y_known, weights=w_known, minlength=n_components)
    present = np.flatnonzero(counts > 0)
    means = np.zeros((n_components, d))
    scatters = np.zeros((n_components, d, d))
    for k in present:
        rows = y_known == k
        means[k] = np.average(X_known[rows], axis=0, weights=w_known[rows])
        scatters[k] = _weighted_scatter(X_known[rows], w_known[rows], means[k])
    dof = counts.sum() - len(present)
    if dof > d:
        pooled = scatters.sum(axis=0) / dof
    else:
        overall = np.average(X, axis=0, weights=weight)
        pooled = _weighted_scatter(X, weight, overall) / weight.sum()
    pooled = pooled + reg_covar * np.eye(d)
    prior = d + 1.0
    covariances = (scatters + prior * pooled[None]) / (counts + prior)[:, None, None]

    missing = np.setdiff1d(np.arange(n_components), present)
    if len(missing):
        means[missing], scatter, sizes = _seeded_kmeans(
            X, weight, labels, means, present, missing, rng
        )
        covariances[missing] = (
            (scatter + prior * pooled[None]) / (sizes[missing] + prior)[:, None, None]
        )
        # the class sizes of the constrained k-means also say how big the missing classes are
        weights = (sizes + 1.0) / (sizes.sum() + n_components)
    else:
        weights = (counts + 1.0) / (counts.sum() + n_components)

    covariances += reg_covar * np.eye(d)[None]
    # a start in the model's layout; the first M-step imposes the model's constraints
    layout = covariance_layout(covariance_type)
    if layout == "full":
        precisions = np.linalg.inv(covariances)
    elif layout == "tied":
        precisions = np.linalg.inv(np.tensordot(weights, covariances, axes=1))
    elif layout == "diag":
        precisions = 1.0 / np.diagonal(covariances, axis1=1, axis2=2)
    else:
        precisions = 1.0 / np.diagonal(covariances, axis1=1, axis2=2).mean(axis=1)
    return weights, means, precisions


class SemiSupervisedGaussianMixture(GaussianMixture):
    """Gaussian mixture fitted by EM where some rows have a known component.

    ``fit(X, y)`` takes labels as a scikit-learn classifier does -- any sortable hashable
    class labels (integers, strings, booleans) -- with scikit-learn's semi-supervised
    convention for unlabelled rows: ``-1`` (the string ``"-1"`` in an array of strings;
    ``None`` and NaN are refused).  ``classes_`` are the sorted distinct labels, and
    component ``k`` *is* class ``classes_[k]``: a labelled row keeps responsibility one for
    its class throughout EM and counts ``alpha`` times as much as an unlabelled row, and
    the likelihood maximised is the labelled rows' complete-data likelihood times the
    unlabelled rows' mixture likelihood.  ``predict`` returns labels from ``classes_``;
    ``predict_proba``'s columns are in ``classes_`` order.  ``score`` is the mean
    log-density, as for any mixture (not the accuracy a classifier's ``score`` gives).

    Parameters
    ----------
    n_components : int or None, default=None
        Number of classes (components).  ``None``: one per distinct label in ``y``.  A
        number larger than that makes room for classes without labelled rows, which
        needs integer labels in ``0..n_components-1`` (``classes_`` is then all of
        ``0..n_components-1``).
    alpha : float, default=1.0
        Weight of a labelled row relative to an unlabelled one (> 0).
    init_params : {"labels", "kmeans", "k-means++", "random", "random_from_data"}, \
default="labels"
        ``"labels"`` starts every class at its labelled rows (see
        :func:`labelled_initialisation`), which is deterministic; the others are
        :class:`~gmmkit.GaussianMixture`'s and ignore which class is which at the start.
    covariance_type : str, default="full"
        Any of :class:`~gmmkit.GaussianMixture`'s covariance models: mclust's fourteen
        (``"EII"`` ... ``"VVV"``) or scikit-learn's four names; the labelled start is
        built in the model's storage layout and the first M-step imposes its constraints.
    missing : {"error", "marginalize"}, default="error"
        As in :class:`~gmmkit.GaussianMixture`: ``"marginalize"`` fits the likelihood of
        the observed cells (labelled rows stay in their class; the labelled start takes
        each class's means from its labelled rows' observed cells), and ``predict``,
        ``predict_proba`` and ``score_samples`` of rows with NaN use the observed
        coordinates' marginal.  A row with nothing observed, labelled or not, does not
        enter the fit (a :class:`~gmmkit.mixture.MissingRowsWarning` says how many).
    tol, reg_covar, max_iter, n_init, weights_init, means_init, precisions_init, \
random_state, warm_start, verbose, verbose_interval, chunk_rows, n_jobs, device
        As in :class:`~gmmkit.GaussianMixture`; user-given ``*_init`` arrays replace the
        corresponding values from the labels.

    Attributes
    ----------
    classes_ : ndarray of shape (K,)
        The class of each component: the sorted distinct labels of ``y`` (or
        ``0..n_components-1``, see ``n_components``).
    transduction_ : ndarray of shape (n_samples,)
        Class of every training row: the given label where there was one, the most
        probable class elsewhere.
    weights_, means_, covariances_, precisions_, precisions_cholesky_, converged_, n_iter_,
    lower_bound_, lower_bounds_, reseeded_, n_features_in_
        As in :class:`~gmmkit.GaussianMixture`; ``lower_bound_`` is the mean (weighted)
        semi-supervised log-likelihood.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **GaussianMixture._parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "alpha": [Interval(Real, 0.0, None, closed="neither")],
        "init_params": [StrOptions({*INIT_METHODS, "labels"})],
    }

    def __init__(
        self,
        n_components: int | None = None,
        *,
        alpha: float = 1.0,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "labels",
        weights_init: ArrayLike | None = None,
        means_init: ArrayLike | None = None,
        precisions_init: ArrayLike | None = None,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        chunk_rows: int | None = None,
        n_jobs: int | None = None,
        device: Any = None,
        missing: str = "error",
    ) -> None:
        super().__init__(
            n_components,  # type: ignore[arg-type]
            covariance_type=covariance_type,
            tol=tol,
            reg_covar=reg_covar,
            max_iter=max_iter,
            n_init=n_init,
            init_params=init_params,
            weights_init=weights_init,
            means_init=means_init,
            precisions_init=precisions_init,
            random_state=random_state,
            warm_start=warm_start,
            verbose=verbose,
            verbose_interval=verbose_interval,
            chunk_rows=chunk_rows,
            n_jobs=n_jobs,
            device=device,
            missing=missing,
        )
        self.alpha = alpha

    @transactional_fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self, X: ArrayLike, y: ArrayLike | None = None, sample_weight: ArrayLike | None = None
    ) -> SemiSupervisedGaussianMixture:
        """Fit with EM, keeping labelled rows in their class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NaN marks a missing cell with ``missing="marginalize"``.
        y : array-like of shape (n_samples,)
            Class label of a labelled row, ``-1`` for an unlabelled one.
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        X_checked = self._validate_X(X, reset=True)
        classes, labels = encode_partial_labels(y, X_checked.shape[0], self.n_components)
        self._n_classes = len(classes)
        weight = self._checked_sample_weight(sample_weight, X_checked)
        self._label_init: tuple[Array, Array, Array] | None = None
        if self.init_params == "labels":
            if not np.any(labels >= 0):
                raise ValueError(
                    "init_params='labels' needs at least one labelled row in y (all are -1); "
                    "use another init_params or gmmkit.GaussianMixture"
                )
            self._label_init = labelled_initialisation(
                X_checked,
                labels,
                weight,
                self._n_classes,
                self.covariance_type,
                self.reg_covar,
                _generator(self.random_state),
            )
        engine = self._engine(X_checked, weight, labels)
        self._fit_engine(engine, X_checked.shape[1], label_weight=float(self.alpha))
        self._label_init = None
        self.classes_ = classes
        components = super().predict(X_checked)
        known = labels >= 0
        components[known] = labels[known]
        self.transduction_ = classes[components]
        return self

    def _n_fit_components(self) -> int:
        n_classes: int | None = getattr(self, "_n_classes", None)
        if n_classes is None and hasattr(self, "classes_"):  # loaded from a model file
            n_classes = len(self.classes_)
        return int(self.n_components if n_classes is None else n_classes)

    def predict(self, X: ArrayLike) -> NDArray[Any]:
        """Most probable class of each row (labels from :attr:`classes_`), shape
        (n_samples,)."""
        components = super().predict(X)
        return np.asarray(self.classes_[components])

    def sample(self, n_samples: int = 1) -> tuple[NDArray[np.float64], NDArray[Any]]:
        """Draw rows from the fitted mixture; ``y`` is the class (from :attr:`classes_`) of
        each drawn row, rows grouped by class.  See :meth:`GaussianMixture.sample`."""
        X, components = super().sample(n_samples)
        return X, np.asarray(self.classes_[components])

    def fit_predict(
        self, X: ArrayLike, y: ArrayLike | None = None, sample_weight: ArrayLike | None = None
    ) -> NDArray[Any]:
        """Fit, then return :attr:`transduction_` (the class of every training row)."""
        self.fit(X, y, sample_weight=sample_weight)
        check_is_fitted(self)
        return self.transduction_.copy()

    def _checked_inits(self, n_features: int) -> tuple[Array | None, Array | None, Array | None]:
        weights, means, precisions = super()._checked_inits(n_features)
        label_init = getattr(self, "_label_init", None)
        if label_init is None:
            return weights, means, precisions
        return (
            label_init[0] if weights is None else weights,
            label_init[1] if means is None else means,
            label_init[2] if precisions is None else precisions,
        )
