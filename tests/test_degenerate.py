"""Degenerate data fits without NaN: ``reg_covar`` applies, an emptied component is
re-seeded (``reseeded_``, ``EmptyComponentWarning``) or reported, nothing non-finite
reaches a fitted attribute."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

from gmmkit import GaussianMixture, MixtureParams
from gmmkit.core.em import EmptyComponentWarning, run_em
from gmmkit.engines.memory import MemoryEngine

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
FITTED = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")
REG = 1e-6


def _assert_finite(model: Any, X: np.ndarray) -> None:
    for name in FITTED:
        value = getattr(model, name)
        assert np.all(np.isfinite(value)), name
    assert np.isfinite(model.lower_bound_)
    assert np.all(np.isfinite(model.lower_bounds_))
    # the weights are stored in the model's dtype: a float32 sum is 1 to its rounding
    np.testing.assert_allclose(model.weights_.sum(), 1.0,
                               rtol=max(1e-12, 4 * np.finfo(model.weights_.dtype).eps))
    assert np.all(model.weights_ >= 0.0)
    assert np.all(np.isfinite(model.score_samples(X)))
    proba = model.predict_proba(X)
    assert np.all(np.isfinite(proba))
    # responsibilities are computed in the data's dtype
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=10 * np.finfo(X.dtype).eps)
    assert np.all(model.predict(X) < model.n_components)


def _variances(model: Any) -> np.ndarray:
    """Per-component, per-feature variances, shape (K, D)."""
    cov = model.covariances_
    k, d = model.means_.shape
    if model.covariance_type == "full":
        return np.diagonal(cov, axis1=1, axis2=2)
    if model.covariance_type == "tied":
        return np.tile(np.diag(cov), (k, 1))
    if model.covariance_type == "diag":
        return cov
    return np.tile(cov[:, None], (1, d))


def _fit(X: np.ndarray, k: int, **settings: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", EmptyComponentWarning)
        return GaussianMixture(k, random_state=0, **settings).fit(X)


# --------------------------------------------------------------------------- constant columns
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_constant_column(covariance_type: str, dtype: type) -> None:
    X, _ = make_blobs(n_samples=300, n_features=2, centers=3, random_state=0)
    X = np.column_stack([X[:, 0], np.full(len(X), 7.25), X[:, 1]]).astype(dtype)
    model = _fit(X, 3, covariance_type=covariance_type)
    _assert_finite(model, X)
    np.testing.assert_allclose(model.means_[:, 1], 7.25, rtol=1e-6)
    if covariance_type != "spherical":
        # nothing varies along the column: its variance is exactly the regularisation
        np.testing.assert_allclose(_variances(model)[:, 1], REG, rtol=1e-3)
    # and the other columns are still fitted at least as well as scikit-learn does
    X64 = X.astype(np.float64)
    reference = SklearnGaussianMixture(3, covariance_type=covariance_type,
                                       random_state=0).fit(X64)
    assert model.score(X64) >= reference.score(X64) - 1e-4 * abs(reference.score(X64))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_all_rows_identical(covariance_type: str, dtype: type) -> None:
    X = np.full((30, 2), 3.0, dtype=dtype)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # one k-means start (the default runs several, and keeps one that re-seeded
        # in its short run without repeating the notice)
        model = GaussianMixture(
            2, covariance_type=covariance_type, init_params="kmeans", random_state=0
        ).fit(X)
    _assert_finite(model, X)
    np.testing.assert_allclose(model.means_, 3.0, rtol=1e-6)
    np.testing.assert_allclose(_variances(model), REG, rtol=1e-3)
    # two components on one point: the surplus one emptied and was re-seeded, with notice
    assert model.reseeded_
    assert any(issubclass(w.category, EmptyComponentWarning) for w in caught)
    assert not any(issubclass(w.category, RuntimeWarning) for w in caught)


def test_regularisation_sets_the_variance_floor() -> None:
    X = np.full((50, 1), -2.0)
    for reg in (1e-6, 1e-3, 0.5):
        model = GaussianMixture(1, reg_covar=reg).fit(X)
        np.testing.assert_allclose(model.covariances_, [[[reg]]], rtol=1e-9)
        np.testing.assert_allclose(model.score_samples(X[:1]),
                                   -0.5 * np.log(2 * np.pi * reg), rtol=1e-9)


# --------------------------------------------------------------------------- duplicates
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_duplicated_points(covariance_type: str) -> None:
    X, _ = make_blobs(n_samples=200, n_features=2, centers=2, random_state=1)
    doubled = np.vstack([X, X])
    model = _fit(doubled, 2, covariance_type=covariance_type)
    _assert_finite(model, doubled)
    # every row twice is the same as weight two
    weighted = _fit(X, 2, covariance_type=covariance_type, init_params="k-means++")
    twice = _fit(doubled, 2, covariance_type=covariance_type, init_params="k-means++")
    assert weighted.score(X) == pytest.approx(twice.score(X), rel=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_more_components_than_distinct_points(covariance_type: str, init_params: str) -> None:
    rng = np.random.default_rng(2)
    distinct = rng.normal(scale=3.0, size=(3, 2))
    X = np.repeat(distinct, 20, axis=0)
    model = _fit(X, 5, covariance_type=covariance_type, init_params=init_params)
    _assert_finite(model, X)
    assert np.all(_variances(model) >= REG * (1 - 1e-9))
    if init_params in ("kmeans", "k-means++"):
        # seeded on the points, the density concentrates on them: each is a sharp mode
        # (random starts may legitimately stop in the symmetric broad fixed point)
        at_points = model.score_samples(distinct)
        between = model.score_samples(distinct.mean(axis=0, keepdims=True))
        assert np.all(at_points > between + 10.0)
    # every point's rows go together
    labels = model.predict(X).reshape(3, 20)
    assert np.all(labels == labels[:, :1])


def test_more_components_than_distinct_points_warns_and_records() -> None:
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0], [0.0, 9.0]]), 15, axis=0)
    with pytest.warns(EmptyComponentWarning, match="lost all responsibility"):
        model = GaussianMixture(5, init_params="kmeans", random_state=0).fit(X)
    assert model.reseeded_
    for iteration, component in model.reseeded_:
        assert 1 <= iteration <= model.n_iter_ and 0 <= component < 5


# --------------------------------------------------------------------------- emptied on purpose
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_component_emptied_on_purpose_is_reseeded(covariance_type: str) -> None:
    X, y = make_blobs(n_samples=600, n_features=2, centers=3, cluster_std=0.7, random_state=3)
    means = np.vstack([X[y == 0].mean(axis=0), [1e4, -1e4], X[y == 2].mean(axis=0)])
    # a re-seeded component starts with one row's weight; with a shared (tied) covariance
    # it needs a few dozen iterations to take its cluster over, hence the small tol
    with pytest.warns(EmptyComponentWarning, match=r"component\(s\) \[1\].*re-seeded"):
        model = GaussianMixture(3, covariance_type=covariance_type, means_init=means,
                                tol=1e-7, max_iter=500, random_state=0).fit(X)
    _assert_finite(model, X)
    assert (1, 1) in model.reseeded_
    # the re-seeded component came back into the data and took a cluster of its own
    assert np.all(np.abs(model.means_[1]) < np.abs(X).max() + 1.0)
    assert model.weights_[1] > 0.2
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(y, model.predict(X)) > 0.95
    # lower bound increases, except at the iteration that re-seeded
    bounds = np.asarray(model.lower_bounds_)
    steps = np.diff(bounds)
    reseeded_at = {i for i, _ in model.reseeded_}
    for i, step in enumerate(steps, start=1):
        if i not in reseeded_at:
            assert step >= -1e-10 * abs(bounds[i - 1])


def test_component_emptied_after_reseed_budget_is_reported() -> None:
    """With no re-seeding allowed the emptied component is kept, with zero weight and its
    last mean, and a warning says so."""
    X = np.random.default_rng(4).normal(size=(200, 2))
    params = MixtureParams.from_covariances(
        np.full(3, 1 / 3), np.array([[0.0, 0.0], [1e3, 1e3], [1.0, 1.0]]),
        np.array([np.eye(2)] * 3), "full",
    )
    with pytest.warns(EmptyComponentWarning, match=r"\[1\].*re-seeding budget \(0\) is spent"):
        result = run_em(MemoryEngine(X), params, REG, 1e-3, 100, max_reseeds=0)
    assert result.reseeded == []
    assert result.params.is_finite()
    assert result.params.weights[1] < 1e-12
    np.testing.assert_array_equal(result.params.means[1], [1e3, 1e3])


# --------------------------------------------------------------------------- weights
def test_zero_weight_rows_are_ignored() -> None:
    X, _ = make_blobs(n_samples=300, n_features=2, centers=3, random_state=5)
    outliers = np.full((5, 2), 1e6)
    weight = np.r_[np.ones(len(X)), np.zeros(len(outliers))]
    # one k-means start follows one EM path; the default's several starts and SQUAREM
    # reach the same optimum, but the rounding of the zero terms' sums moves it along a
    # flat ridge (2e-6 in means, 2e-11 in the log-likelihood)
    with_zeros = GaussianMixture(3, init_params="kmeans", random_state=0).fit(
        np.vstack([X, outliers]), sample_weight=weight
    )
    without = GaussianMixture(3, init_params="kmeans", random_state=0).fit(X)
    default_with = GaussianMixture(3, random_state=0).fit(
        np.vstack([X, outliers]), sample_weight=weight
    )
    default_without = GaussianMixture(3, random_state=0).fit(X)
    assert abs(default_with.lower_bound_ - default_without.lower_bound_) <= 1e-9 * abs(
        default_without.lower_bound_
    )
    np.testing.assert_allclose(with_zeros.means_, without.means_, rtol=1e-9)
    np.testing.assert_allclose(with_zeros.covariances_, without.covariances_, rtol=1e-9)
    _assert_finite(with_zeros, X)


@pytest.mark.parametrize("scale", [1e-150, 1e-30, 1e30, 1e120])
def test_extreme_scales(scale: float) -> None:
    """Far below ``reg_covar`` every cluster collapses into the regularisation; far above it
    the fit is scale-equivariant.  Either way nothing overflows or turns NaN."""
    X, _ = make_blobs(n_samples=300, n_features=2, centers=3, random_state=6)
    model = _fit(X * scale, 3)
    _assert_finite(model, X * scale)
    if scale >= 1.0:
        unit = _fit(X, 3)
        np.testing.assert_allclose(np.sort(model.means_[:, 0]), np.sort(unit.means_[:, 0]) * scale,
                                   rtol=1e-6)


# ------------------------------------------------------------- worst row, near-ties
def test_worst_row_is_the_first_of_near_tied_rows() -> None:
    """The row that re-seeds an emptied component is the first row whose log-density is
    within rounding (WORST_TIE) of the lowest, so that rounding which differs between
    devices or BLAS builds picks the same row; a clearly lower row still wins."""
    from gmmkit.core.kernel import chunk_statistics, kernel_coefficients
    from gmmkit.core.suffstats import WORST_TIE, SuffStats, worst_row

    values = np.array([3.0, -5.0, 2.0, -5.0 * (1 + 0.1 * WORST_TIE), -5.0])
    assert worst_row(values) == 1  # row 3 is lower only by rounding-sized amounts
    values[3] = -5.0 * (1 + 10 * WORST_TIE)
    assert worst_row(values) == 3
    assert worst_row(np.array([np.inf, np.inf])) == 0
    assert worst_row(np.array([0.0, -np.inf, -np.inf])) == 1

    params = MixtureParams.from_covariances(
        np.array([0.5, 0.5]), np.array([[0.0, 0.0], [10.0, 0.0]]),
        np.tile(np.eye(2), (2, 1, 1)), "full",
    )
    # two far rows at mirror positions: equal densities up to rounding
    X = np.array([[0.0, 0.1], [-20.0, 3.0], [5.0, 0.0], [30.0, -3.0], [10.0, 0.1]])
    stats = chunk_statistics(kernel_coefficients(params), X)
    np.testing.assert_array_equal(stats.worst_point, X[1])
    # across chunks the earlier one keeps a tie
    first = chunk_statistics(kernel_coefficients(params), X[:2])
    second = chunk_statistics(kernel_coefficients(params), X[2:])
    merged = SuffStats.total([first, second])
    np.testing.assert_array_equal(merged.worst_point, X[1])


def test_starts_tied_within_rounding_keep_the_order_of_the_plan() -> None:
    """Several starts reaching one optimum (degenerate data: components permuted) tie
    when their log-likelihoods differ by rounding only; the earlier start in the plan is
    kept, so engines that round differently (NumPy, torch on a GPU) keep the same one.
    A clearly higher log-likelihood still wins."""
    from gmmkit.core.em import EMResult
    from gmmkit.core.starts import _better, _leaders

    def run(lower_bound: float, shift: float) -> EMResult:
        params = MixtureParams.from_covariances(
            np.array([0.5, 0.5]), np.array([[0.0, 0.0], [5.0 + shift, 0.0]]),
            np.tile(np.eye(2), (2, 1, 1)), "full",
        )
        return EMResult(params=params, converged=True, n_iter=3, lower_bound=lower_bound)

    first, rounding_ahead, clearly_ahead = run(-3.0, 0.0), run(-3.0 + 1e-14, 1.0), run(
        -2.9, 2.0
    )
    assert not _better(rounding_ahead, first)
    assert not _better(first, rounding_ahead)
    assert _better(clearly_ahead, first)
    assert _leaders([first, rounding_ahead], 2) == [first, rounding_ahead]
    assert _leaders([first, rounding_ahead, clearly_ahead], 3) == [
        clearly_ahead, first, rounding_ahead
    ]
