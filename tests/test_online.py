"""Stepwise (online) EM: ``GaussianMixture.partial_fit`` and its core.

References: brute-force sums of the quadratic features around the new points (the
re-centring of statistics), scikit-learn's ``GaussianMixture`` from identical starting
parameters (``learning_rate=1`` on the same batch is plain EM), and an independent
NumPy/SciPy implementation of stepwise EM with raw (uncentred) moments.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from gmmkit import GaussianMixture
from gmmkit.core.covariance import pack_symmetric
from gmmkit.core.online import implied_statistics, step_size
from gmmkit.core.suffstats import SuffStats
from gmmkit.modelfile import load

LAYOUTS = ["full", "tied", "diag", "spherical"]
ALL_MODELS = ["EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE",
              "EEV", "VEV", "EVV", "VVV"]


def _blobs(n: int, seed: int, n_features: int = 3, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 1.0, -3.0], [-2.5, 4.0, 1.0]])[:, :n_features]
    z = rng.integers(0, 3, size=n)
    scale = np.array([1.0, 0.6, 1.5])[:n_features]
    return centres[z] + shift + rng.normal(size=(n, n_features)) * scale


def _quadratic(layout: str, xc: np.ndarray) -> np.ndarray:
    """Brute-force quadratic features of rows ``xc`` (n, D): (n, Q)."""
    if layout in ("full", "tied"):
        return pack_symmetric(xc[:, :, None] * xc[:, None, :])
    if layout == "diag":
        return xc**2
    return np.sum(xc**2, axis=1, keepdims=True)


def _brute_stats(layout: str, X: np.ndarray, resp: np.ndarray, w: np.ndarray,
                 reference: np.ndarray) -> SuffStats:
    """Statistics summed row by row around ``reference`` (K, D)."""
    k, d = reference.shape
    weighted = resp * w[:, None]
    first = np.stack([weighted[:, j] @ (X - reference[j]) for j in range(k)])
    if layout == "tied":
        second = (w @ _quadratic(layout, X - reference[0]))[None, :]
    else:
        second = np.stack(
            [weighted[:, j] @ _quadratic(layout, X - reference[j]) for j in range(k)]
        )
    return SuffStats(
        nk=weighted.sum(axis=0), first=first, second=second, log_likelihood=0.0,
        total_weight=float(w.sum()), n_samples=len(X), reference=reference,
        worst_log_density=np.inf, worst_point=np.zeros(d),
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_recentred_matches_sums_around_the_new_points(layout):
    rng = np.random.default_rng(1)
    n, k, d = 200, 3, 4
    X = rng.normal(size=(n, d)) * 3.0 + 50.0
    resp = rng.dirichlet(np.ones(k), size=n)
    w = rng.uniform(0.1, 2.0, size=n)
    if layout == "tied":
        old = np.tile(rng.normal(size=d) + 45.0, (k, 1))
        new = np.tile(rng.normal(size=d) + 52.0, (k, 1))
    else:
        old = rng.normal(size=(k, d)) + 45.0
        new = rng.normal(size=(k, d)) + 52.0
    moved = _brute_stats(layout, X, resp, w, old).recentred(new, layout)
    expected = _brute_stats(layout, X, resp, w, new)
    assert np.array_equal(moved.reference, new)
    np.testing.assert_allclose(moved.nk, expected.nk, rtol=1e-13)
    scale = np.abs(expected.first).max()
    np.testing.assert_allclose(moved.first, expected.first, rtol=0, atol=1e-11 * scale)
    scale = np.abs(expected.second).max()
    np.testing.assert_allclose(moved.second, expected.second, rtol=0, atol=1e-11 * scale)


def test_recentred_rejects_bad_references():
    stats = _brute_stats("tied", np.ones((3, 2)), np.full((3, 2), 0.5), np.ones(3),
                         np.zeros((2, 2)))
    with pytest.raises(ValueError, match="shape"):
        stats.recentred(np.zeros((3, 2)), "tied")
    with pytest.raises(ValueError, match="rows must be equal"):
        stats.recentred(np.eye(2), "tied")


@pytest.mark.parametrize("model", ALL_MODELS)
def test_implied_statistics_give_back_the_parameters(model):
    X = _blobs(600, 2)
    gm = GaussianMixture(3, covariance_type=model, random_state=0, max_iter=30,
                         tol=1e-3).fit(X)
    from gmmkit.core.mstep import m_step

    stats = implied_statistics(gm.params_, gm.reg_covar)
    back = m_step(stats, model, gm.reg_covar, previous=gm.params_).params
    np.testing.assert_allclose(back.weights, gm.weights_, rtol=1e-10)
    np.testing.assert_allclose(back.means, gm.means_, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(back.covariances, gm.covariances_, rtol=1e-6, atol=1e-9)


def test_step_size_schedule():
    assert step_size(1, 10.0, 0.7) == pytest.approx(11.0**-0.7)
    assert step_size(990, 10.0, 0.7) == pytest.approx(1000.0**-0.7)
    assert step_size(5, 10.0, 0.7, learning_rate=0.05) == 0.05
    assert step_size(1, 0.0, 1.0) == 1.0


def _sklearn_start(X, covariance_type):
    sk = SkGaussianMixture(3, covariance_type=covariance_type, max_iter=1,
                           init_params="k-means++", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(X)
    return {"weights_init": sk.weights_, "means_init": sk.means_,
            "precisions_init": sk.precisions_}


@pytest.mark.parametrize("covariance_type", LAYOUTS)
def test_unit_step_on_the_same_batch_is_sklearn_em(covariance_type):
    """With ``learning_rate=1`` every call replaces the average by the batch's statistics:
    calls on the same rows are EM iterations, as scikit-learn's from the same start."""
    X = _blobs(500, 3)
    start = _sklearn_start(X, covariance_type)
    n_iter = 6
    sk = SkGaussianMixture(3, covariance_type=covariance_type, max_iter=n_iter, tol=0.0,
                           **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(X)
    gm = GaussianMixture(3, covariance_type=covariance_type, learning_rate=1.0, **start)
    for _ in range(n_iter):
        gm.partial_fit(X)
    assert gm.n_steps_ == gm.n_iter_ == n_iter
    np.testing.assert_allclose(gm.weights_, sk.weights_, rtol=1e-9)
    np.testing.assert_allclose(gm.means_, sk.means_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gm.covariances_, sk.covariances_, rtol=1e-8, atol=1e-10)


def _reference_stepwise_em(batches, weights, means, covs, steps, reg_covar):
    """Stepwise EM for full covariances with raw moments (sum r, sum r x, sum r x x'),
    responsibilities from scipy's densities: no centring, no packing, no gmmkit code."""
    s0 = s1 = s2 = None
    for X, step in zip(batches, steps, strict=True):
        dens = np.column_stack([
            w * multivariate_normal(m, c).pdf(X) for w, m, c in zip(weights, means, covs,
                                                                       strict=True)
        ])
        resp = dens / dens.sum(axis=1, keepdims=True)
        b0 = resp.sum(axis=0) / len(X)
        b1 = resp.T @ X / len(X)
        b2 = np.einsum("nk,ni,nj->kij", resp, X, X) / len(X)
        if s0 is None:
            s0, s1, s2 = b0, b1, b2
        else:
            s0 = (1 - step) * s0 + step * b0
            s1 = (1 - step) * s1 + step * b1
            s2 = (1 - step) * s2 + step * b2
        weights = s0 / s0.sum()
        means = s1 / s0[:, None]
        covs = s2 / s0[:, None, None] - means[:, :, None] * means[:, None, :]
        covs = covs + reg_covar * np.eye(X.shape[1])
    return weights, means, covs


def test_decaying_steps_match_an_independent_stepwise_em():
    rng = np.random.default_rng(4)
    batches = [_blobs(300, int(seed)) for seed in rng.integers(1000, size=8)]
    start = _sklearn_start(batches[0], "full")
    gm = GaussianMixture(3, covariance_type="full", **start)
    for X in batches:
        gm.partial_fit(X)
    covs0 = np.linalg.inv(start["precisions_init"])
    steps = [1.0] + [step_size(t, 10.0, 0.7) for t in range(1, len(batches))]
    weights, means, covs = _reference_stepwise_em(
        batches, start["weights_init"], start["means_init"], covs0, steps, 1e-6
    )
    np.testing.assert_allclose(gm.weights_, weights, rtol=1e-9)
    np.testing.assert_allclose(gm.means_, means, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gm.covariances_, covs, rtol=1e-8, atol=1e-10)


def _finite_fitted(gm: GaussianMixture) -> None:
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        assert np.all(np.isfinite(getattr(gm, name))), name
    assert abs(float(np.sum(gm.weights_)) - 1.0) < 1e-6
    assert np.isfinite(gm.lower_bound_)


@pytest.mark.parametrize("covariance_type", [*LAYOUTS, "VEE", "EVI"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_model_file_round_trip_mid_stream(tmp_path, covariance_type, dtype):
    batches = [_blobs(400, seed).astype(dtype) for seed in range(6)]
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0)
    for X in batches[:3]:
        gm.partial_fit(X)
        _finite_fitted(gm)
        assert gm.means_.dtype == dtype
    path = tmp_path / "stream.gmm"
    gm.save(path)
    resumed = load(path)
    assert resumed.n_steps_ == 3
    for X in batches[3:]:
        gm.partial_fit(X)
        resumed.partial_fit(X)
    assert resumed.n_steps_ == gm.n_steps_ == 6
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.array_equal(getattr(resumed, name), getattr(gm, name)), name
    for key in gm.running_stats_:
        assert np.array_equal(resumed.running_stats_[key], gm.running_stats_[key]), key
    assert resumed.lower_bounds_ == gm.lower_bounds_


def test_model_file_refuses_running_stats_of_the_wrong_shape(tmp_path):
    from gmmkit.modelfile import ModelFileError

    gm = GaussianMixture(3, random_state=0).partial_fit(_blobs(300, 0))
    gm.running_stats_ = {**gm.running_stats_, "second": gm.running_stats_["second"][:, :2]}
    with pytest.raises(ModelFileError, match=r"running_stats_\.second should have shape"):
        gm.save(tmp_path / "bad.gmm")


def test_float32_batches_follow_float64():
    batches = [_blobs(500, seed) for seed in range(5)]
    start = _sklearn_start(batches[0], "full")
    double = GaussianMixture(3, **start)
    single = GaussianMixture(3, **start)
    for X in batches:
        double.partial_fit(X)
        single.partial_fit(X.astype(np.float32))
    assert single.means_.dtype == np.float32
    np.testing.assert_allclose(single.means_, double.means_, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(single.covariances_, double.covariances_, rtol=1e-4, atol=1e-4)


def test_integer_sample_weight_acts_as_repeated_rows():
    rng = np.random.default_rng(5)
    batches = [_blobs(200, seed) for seed in range(4)]
    counts = [rng.integers(0, 4, size=len(X)) for X in batches]
    start = _sklearn_start(batches[0], "diag")
    weighted = GaussianMixture(3, covariance_type="diag", **start)
    repeated = GaussianMixture(3, covariance_type="diag", **start)
    for X, c in zip(batches, counts, strict=True):
        weighted.partial_fit(X, sample_weight=c)
        repeated.partial_fit(np.repeat(X, c, axis=0))
    np.testing.assert_allclose(weighted.means_, repeated.means_, rtol=1e-10)
    np.testing.assert_allclose(weighted.covariances_, repeated.covariances_, rtol=1e-9)


@pytest.mark.parametrize("covariance_type", LAYOUTS)
def test_a_batch_of_one_row_and_a_batch_from_one_component(covariance_type):
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0)
    gm.partial_fit(_blobs(600, 0))
    gm.partial_fit(_blobs(1, 1))
    _finite_fitted(gm)
    assert gm.n_steps_ == 2
    before = gm.means_.copy()
    # every row near the first centre: the other components keep their means
    one = np.random.default_rng(6).normal(size=(500, 3)) * 0.3
    owner = int(np.argmin(np.linalg.norm(before, axis=1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no re-seeding, no numpy warning
        gm.partial_fit(one)
    _finite_fitted(gm)
    others = [k for k in range(3) if k != owner]
    np.testing.assert_allclose(gm.means_[others], before[others], atol=1e-3)
    assert np.all(gm.weights_ > 0.05)


def test_bad_batches_raise_clear_errors():
    gm = GaussianMixture(3, random_state=0)
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        gm.partial_fit(_blobs(2, 0))
    assert not hasattr(gm, "means_")  # nothing half-set
    gm.partial_fit(_blobs(300, 0))
    state = {key: value.copy() for key, value in gm.running_stats_.items()}
    with pytest.raises(ValueError, match="X has 2 features, but GaussianMixture is expecting 3"):
        gm.partial_fit(_blobs(50, 1, n_features=2))
    with pytest.raises(ValueError, match="0 sample"):
        gm.partial_fit(np.empty((0, 3)))
    with pytest.raises(ValueError, match="non-zero"):
        gm.partial_fit(_blobs(50, 1), sample_weight=np.zeros(50))
    with pytest.raises(ValueError, match="NaN"):
        gm.partial_fit(np.full((5, 3), np.nan))
    assert gm.n_steps_ == 1
    for key, value in state.items():
        assert np.array_equal(gm.running_stats_[key], value)
    gm.set_params(n_components=4)
    with pytest.raises(ValueError, match="partial_fit continues the fitted model"):
        gm.partial_fit(_blobs(50, 1))


def test_partial_fit_continues_a_fitted_model():
    X = _blobs(3000, 0)
    gm = GaussianMixture(3, random_state=0).fit(X)
    before = gm.means_.copy()
    gm.partial_fit(_blobs(500, 1))
    assert gm.n_steps_ == 1 and not gm.converged_
    # the fitted model enters the average with weight 1 - 11 ** -0.7: a batch from the
    # same distribution moves the means by a fraction of their standard error
    assert np.max(np.abs(gm.means_ - before)) < 0.1
    gm.fit(X)  # a new fit forgets the stream
    assert not hasattr(gm, "n_steps_") and not hasattr(gm, "running_stats_")


def test_semi_supervised_has_no_partial_fit():
    from gmmkit.apps.semisupervised import SemiSupervisedGaussianMixture

    assert hasattr(GaussianMixture(), "partial_fit")
    assert not hasattr(SemiSupervisedGaussianMixture(3), "partial_fit")


@pytest.mark.parametrize("model", ALL_MODELS)
def test_every_covariance_model_streams(model):
    gm = GaussianMixture(3, covariance_type=model, random_state=0)
    for seed in range(4):
        gm.partial_fit(_blobs(400, seed))
        _finite_fitted(gm)
    # one pass of 1600 rows lands near the exact fit of the same rows (same model)
    X = np.vstack([_blobs(400, seed) for seed in range(4)])
    exact = GaussianMixture(3, covariance_type=model, random_state=0, init_params="kmeans").fit(X)
    assert gm.score(X) > exact.score(X) - 0.05 * abs(exact.score(X))
