"""AnomalyDetector: planted outliers, scikit-learn's outlier-detector conventions, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.utils.estimator_checks import check_estimator

import gmmkit
from _helpers import assert_model_structure
from gmmkit.apps.anomaly import lower_tail_threshold


def planted(seed: int = 0, n_inliers: int = 3000, n_outliers: int = 30):
    """Inliers from a three-component mixture; outliers uniform in a wide box, away from it."""
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0], [5.0, 5.0], [-4.0, 6.0]])
    covs = np.array(
        [[[1.0, 0.5], [0.5, 1.0]], [[0.6, 0.0], [0.0, 0.6]], [[1.5, -0.7], [-0.7, 1.0]]]
    )
    parts = rng.multinomial(n_inliers, [0.5, 0.3, 0.2])
    inliers = np.vstack([rng.multivariate_normal(m, c, s) for m, c, s in zip(means, covs, parts)])
    # planted outliers are genuinely anomalous: at Mahalanobis distance > 6 from every
    # component (a uniform point that lands inside a cluster is not an outlier)
    candidates = rng.uniform(-25, 25, size=(50 * n_outliers, 2))
    distance = np.min(
        [np.einsum("ij,jk,ik->i", candidates - m, np.linalg.inv(c), candidates - m)
         for m, c in zip(means, covs)],
        axis=0,
    )
    outliers = candidates[distance > 36.0][:n_outliers]
    X = np.vstack([inliers, outliers])
    truth = np.r_[np.ones(n_inliers, int), -np.ones(n_outliers, int)]
    order = rng.permutation(len(X))
    return X[order], truth[order]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_outliers_precision_and_recall(seed):
    X, truth = planted(seed)
    rate = np.mean(truth == -1)
    detector = gmmkit.AnomalyDetector(n_components=3, contamination=rate, random_state=seed)
    predicted = detector.fit_predict(X)
    flagged = predicted == -1
    planted_mask = truth == -1
    precision = np.sum(flagged & planted_mask) / np.sum(flagged)
    recall = np.sum(flagged & planted_mask) / np.sum(planted_mask)
    assert precision >= 0.9
    assert recall >= 0.9


def test_conventions_against_scipy_density():
    X, _ = planted(3, n_inliers=1000, n_outliers=10)
    detector = gmmkit.AnomalyDetector(n_components=3, contamination=0.05, random_state=0).fit(X)
    mixture = detector.mixture_
    reference = logsumexp(
        np.column_stack(
            [
                np.log(mixture.weights_[k])
                + multivariate_normal(mixture.means_[k], mixture.covariances_[k]).logpdf(X)
                for k in range(3)
            ]
        ),
        axis=1,
    )
    np.testing.assert_allclose(detector.score_samples(X), reference, rtol=1e-9, atol=1e-9)
    decision = detector.decision_function(X)
    np.testing.assert_allclose(decision, reference - detector.offset_, rtol=1e-9, atol=1e-9)
    predicted = detector.predict(X)
    assert set(np.unique(predicted)) == {-1, 1}
    np.testing.assert_array_equal(predicted == -1, decision < 0)
    # exactly floor(contamination * n) training rows below the offset (distinct scores)
    assert np.sum(predicted == -1) == int(0.05 * len(X))
    assert detector.n_iter_ == mixture.n_iter_
    assert detector.converged_


def test_fixed_threshold():
    X, _ = planted(4, n_inliers=500, n_outliers=5)
    detector = gmmkit.AnomalyDetector(n_components=3, threshold=-9.0, random_state=0).fit(X)
    assert detector.offset_ == -9.0
    np.testing.assert_array_equal(detector.predict(X) == -1, detector.score_samples(X) < -9.0)


def test_lower_tail_threshold_against_sorting():
    rng = np.random.default_rng(0)
    values = rng.normal(size=1001)
    for fraction in (0.001, 0.01, 0.1, 0.5):
        cut = lower_tail_threshold(values, fraction)
        expected = int(np.floor(fraction * len(values)))
        assert np.sum(values < cut) == expected
        ordered = np.sort(values)
        if expected:
            assert ordered[expected - 1] < cut < ordered[expected]
    # integer weights act as repeated rows; zero weights as removed rows
    weight = rng.integers(0, 4, size=len(values))
    assert lower_tail_threshold(values, 0.05, weight.astype(float)) == pytest.approx(
        lower_tail_threshold(np.repeat(values, weight), 0.05)
    )


def test_passes_scikit_learn_checks():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(gmmkit.AnomalyDetector(random_state=0))


@pytest.mark.parametrize("contamination", [0.0, -0.1, 0.6, 1.0])
def test_contamination_outside_the_range(contamination):
    X, _ = planted(n_inliers=100, n_outliers=1)
    with pytest.raises(ValueError, match="contamination"):
        gmmkit.AnomalyDetector(contamination=contamination).fit(X)


def test_bad_input():
    X, _ = planted(n_inliers=100, n_outliers=1)
    with pytest.raises(ValueError, match="threshold"):
        gmmkit.AnomalyDetector(threshold=float("nan")).fit(X)
    with pytest.raises(ValueError, match="n_components"):
        gmmkit.AnomalyDetector(n_components=500).fit(X)
    with pytest.raises(ValueError, match="n_components"):
        gmmkit.AnomalyDetector(n_components=0).fit(X)
    detector = gmmkit.AnomalyDetector(random_state=0).fit(X)
    with pytest.raises(ValueError, match="features"):
        detector.predict(np.zeros((3, 5)))


@pytest.mark.parametrize("covariance_type", ["VEV", "EEI"])
def test_an_mclust_model_end_to_end(tmp_path, covariance_type):
    X, truth = planted(0, n_inliers=1500, n_outliers=15)
    detector = gmmkit.AnomalyDetector(3, covariance_type=covariance_type,
                                      contamination=float(np.mean(truth == -1)),
                                      random_state=0).fit(X)
    assert detector.mixture_.covariance_type == covariance_type
    assert_model_structure(detector.mixture_)
    flagged = detector.predict(X) == -1
    assert np.sum(flagged & (truth == -1)) >= 13  # of 15 planted outliers
    np.testing.assert_allclose(detector.decision_function(X),
                               detector.score_samples(X) - detector.offset_)
    detector.save(tmp_path / "detector.gmm")
    loaded = gmmkit.load(tmp_path / "detector.gmm")
    np.testing.assert_array_equal(loaded.decision_function(X), detector.decision_function(X))


# ----------------------------------------------------------------------------- out of core
def _streamed_inputs(X, tmp_path, kind):
    if kind == "memmap":
        np.save(tmp_path / "x.npy", X)
        return np.load(tmp_path / "x.npy", mmap_mode="r")
    if kind == "csv":
        # shortest round-trip text, so the file holds exactly X
        (tmp_path / "x.csv").write_text(
            "a,b\n" + "".join(f"{a!r},{b!r}\n" for a, b in X.tolist())
        )
        return gmmkit.read_csv(tmp_path / "x.csv")
    if kind == "blocks":
        return lambda: (X[i : i + 700] for i in range(0, len(X), 700))
    da = pytest.importorskip("dask.array")
    return da.from_array(X, chunks=(900, 2))


@pytest.mark.parametrize("kind", ["memmap", "csv", "blocks", "dask"])
@pytest.mark.parametrize("contamination", [0.003, 0.05])
def test_streamed_fit_sets_the_in_memory_threshold(tmp_path, kind, contamination):
    X, _ = planted(5, n_inliers=3000, n_outliers=30)
    options = {"n_components": 3, "contamination": contamination, "random_state": 0}
    in_memory = gmmkit.AnomalyDetector(**options).fit(X)
    streamed = gmmkit.AnomalyDetector(**options).fit(_streamed_inputs(X, tmp_path, kind))
    np.testing.assert_allclose(streamed.mixture_.means_, in_memory.mixture_.means_,
                               rtol=1e-12, atol=1e-12)
    assert streamed.offset_ == pytest.approx(in_memory.offset_, rel=1e-12, abs=1e-12)
    # and the cut does what it says, on scipy's log-densities of the training rows
    mixture = streamed.mixture_
    reference = logsumexp(
        [np.log(mixture.weights_[k])
         + multivariate_normal(mixture.means_[k], mixture.covariances_[k]).logpdf(X)
         for k in range(3)],
        axis=0,
    )
    assert np.sum(reference < streamed.offset_) == int(contamination * len(X))
    assert streamed.n_features_in_ == 2
    assert hasattr(streamed, "feature_names_in_") == (kind == "csv")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_streamed_fit_with_weights_sets_the_in_memory_threshold(tmp_path, dtype):
    X, _ = planted(6, n_inliers=2000, n_outliers=20)
    X = X.astype(dtype)
    rng = np.random.default_rng(0)
    weight = rng.exponential(size=len(X)) * (rng.random(len(X)) > 0.1)
    options = {"n_components": 3, "contamination": 0.02, "random_state": 0}
    in_memory = gmmkit.AnomalyDetector(**options).fit(X, sample_weight=weight)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "w.npy", weight)
    streamed = gmmkit.AnomalyDetector(**options).fit(
        np.load(tmp_path / "x.npy", mmap_mode="r"),
        sample_weight=np.load(tmp_path / "w.npy", mmap_mode="r"),
    )
    assert streamed.offset_ == pytest.approx(in_memory.offset_, rel=1e-12, abs=1e-12)
    assert streamed.mixture_.n_samples_fit_ == len(X)
    assert streamed.mixture_.sample_weight_sum_ == pytest.approx(weight.sum(), rel=1e-12)
    if dtype == np.float64:  # dask data and weights
        da = pytest.importorskip("dask.array")
        on_dask = gmmkit.AnomalyDetector(**options).fit(
            da.from_array(X, chunks=(700, 2)), sample_weight=da.from_array(weight, chunks=700)
        )
        # (its weighted k-means start differs from the in-memory one: compare the cut
        # with the in-memory cut of its own density)
        scores = np.asarray(on_dask.mixture_.score_samples(X))
        assert on_dask.offset_ == pytest.approx(
            lower_tail_threshold(scores, 0.02, weight), rel=1e-12, abs=1e-12)
        assert on_dask.mixture_.sample_weight_sum_ == pytest.approx(weight.sum(), rel=1e-12)
    # streamed scoring and prediction, checked against the fit's features
    memmap = np.load(tmp_path / "x.npy", mmap_mode="r")
    np.testing.assert_array_equal(streamed.predict(memmap), streamed.predict(X))
    with pytest.raises(ValueError, match="features"):
        streamed.score_samples(np.load(tmp_path / "x.npy", mmap_mode="r")[:, :1])


def test_streamed_fit_with_a_fixed_threshold(tmp_path):
    X, _ = planted(4, n_inliers=500, n_outliers=5)
    np.save(tmp_path / "x.npy", X)
    detector = gmmkit.AnomalyDetector(n_components=3, threshold=-9.0, random_state=0)
    detector.fit(np.load(tmp_path / "x.npy", mmap_mode="r"))
    assert detector.offset_ == -9.0
