"""AnomalyDetector with missing values (``missing="marginalize"``).

References: scipy's densities of each row's observed coordinates (``score_samples``),
scipy's chi-square distributions and explicit solves for the tail-probability score of
rows with missing cells (one component, where it is exact), the flagged fraction of
fresh inliers drawn from the generating mixture with cells missing completely at random,
and the detector with ``missing="error"`` on complete data (bit for bit).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import chi2, multivariate_normal

import gmmkit
from _helpers import full_covariances
from gmmkit.apps.anomaly import lower_tail_threshold
from gmmkit.mixture import MissingRowsWarning
from test_missing import _reference_log_density

D = 4
CENTRES = np.array([[0.0, 0.0, 0.0, 0.0], [6.0, 0.0, -4.0, 2.0], [-3.0, 6.0, 2.0, -4.0]])
WEIGHTS = np.array([0.5, 0.3, 0.2])


def _factors() -> np.ndarray:
    rng = np.random.default_rng(42)
    return np.eye(D) + 0.5 * rng.normal(size=(3, D, D))


def _inliers(n: int, seed: int) -> np.ndarray:
    """Rows of a three-component mixture with correlated covariances, shape (n, 4)."""
    rng = np.random.default_rng(seed)
    z = rng.choice(3, size=n, p=WEIGHTS)
    noise = rng.normal(size=(n, D))
    return CENTRES[z] + np.einsum("nij,nj->ni", _factors()[z], noise)


def _gaps(X: np.ndarray, seed: int, rate: float = 0.2) -> np.ndarray:
    """``X`` with cells missing completely at random (a copy)."""
    out = np.array(X, dtype=np.float64)
    out[np.random.default_rng(seed).random(X.shape) < rate] = np.nan
    return out


def _detector(**options: object) -> gmmkit.AnomalyDetector:
    settings = {"n_components": 3, "random_state": 0, "missing": "marginalize", **options}
    return gmmkit.AnomalyDetector(**settings)  # type: ignore[arg-type]


def _quiet_fit(detector: gmmkit.AnomalyDetector, X: object) -> gmmkit.AnomalyDetector:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingRowsWarning)
        return detector.fit(X)


def test_score_samples_is_the_observed_cells_log_density() -> None:
    Xm = _gaps(_inliers(600, 1), 2)
    detector = _quiet_fit(_detector(contamination=0.05), Xm)
    reference = _reference_log_density(detector.mixture_.params_, Xm)
    np.testing.assert_allclose(detector.score_samples(Xm), reference, rtol=1e-10, atol=1e-9)
    complete = ~np.isnan(Xm).any(axis=1)
    np.testing.assert_array_equal(
        detector.decision_function(Xm)[complete],
        detector.score_samples(Xm)[complete] - detector.offset_,
    )


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_one_component_scores_the_complete_row_at_the_same_chi_square_tail(
    covariance_type: str,
) -> None:
    """With one component a row with missing cells is worth the complete row whose
    chi-square tail probability (D degrees of freedom) equals that of its observed
    cells' Mahalanobis distance (as many degrees of freedom as cells observed)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(500, D)) @ _factors()[0] + 1.0
    Xm = _gaps(X, 4, rate=0.3)
    Xm[:3] = np.nan  # nothing observed
    far = np.array([[40.0, np.nan, np.nan, np.nan], [400.0, np.nan, np.nan, np.nan],
                    [4e4, np.nan, np.nan, np.nan], [40.0, 40.0, np.nan, np.nan]])
    detector = _quiet_fit(
        _detector(n_components=1, covariance_type=covariance_type, contamination=0.05), Xm
    )
    mixture = detector.mixture_
    mean = mixture.means_[0]
    cov = full_covariances(mixture.params_)[0]
    peak = multivariate_normal(mean, cov).logpdf(mean)
    rows = np.vstack([Xm, far])
    n_observed = (~np.isnan(rows)).sum(axis=1)
    distance = np.zeros(len(rows))
    for i, row in enumerate(rows):
        o = ~np.isnan(row)
        if o.any():
            r = row[o] - mean[o]
            distance[i] = r @ np.linalg.solve(cov[np.ix_(o, o)], r)
    tail = np.where(n_observed > 0, chi2.sf(distance, np.maximum(n_observed, 1)), 1.0)
    expected = peak - 0.5 * chi2.isf(tail, D)
    decision = detector.decision_function(rows)
    incomplete = np.isnan(rows).any(axis=1)
    finite_tail = incomplete & (tail > 1e-200)
    np.testing.assert_allclose(decision[finite_tail] + detector.offset_,
                               expected[finite_tail], rtol=1e-9, atol=1e-8)
    np.testing.assert_array_equal(decision[~incomplete],
                                  detector.score_samples(rows)[~incomplete] - detector.offset_)
    # the rule: below the tail probability of offset_ for complete rows
    offset_tail = chi2(D).sf(2.0 * (peak - detector.offset_))
    np.testing.assert_array_equal(detector.predict(rows)[incomplete] == -1,
                                  tail[incomplete] < offset_tail)
    assert np.all(decision[:3] > 0)  # nothing observed: no evidence against the row
    # beyond float64's chi-square tails: finite, and farther is lower
    assert np.all(np.isfinite(decision)) and np.all(np.diff(decision[-4:-1]) < 0)
    assert decision[-1] < decision[-4]


def test_flagged_fraction_of_inliers_matches_contamination_with_and_without_gaps() -> None:
    """Fresh inliers from the generating mixture, a fifth of their cells missing
    completely at random: complete and incomplete rows are flagged at about
    ``contamination``, where one cut on the observed cells' log-density would flag
    complete rows twice as often and incomplete ones hardly ever."""
    contamination = 0.05
    training = _gaps(_inliers(4000, 10), 11)
    detector = _quiet_fit(_detector(contamination=contamination), training)
    fresh = _gaps(_inliers(10000, 12), 13)
    fresh = fresh[~np.isnan(fresh).all(axis=1)]  # rows without evidence are never flagged
    incomplete = np.isnan(fresh).any(axis=1)
    assert 0.5 < incomplete.mean() < 0.7
    flagged = detector.predict(fresh) == -1
    assert abs(flagged[~incomplete].mean() - contamination) < 0.015
    assert abs(flagged[incomplete].mean() - contamination) < 0.015
    naive_cut = lower_tail_threshold(
        np.asarray(detector.score_samples(training), np.float64), contamination
    )
    naive = detector.score_samples(fresh) < naive_cut
    assert naive[~incomplete].mean() > 0.08 and naive[incomplete].mean() < 0.025


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_no_missing_values_is_bit_identical(tmp_path, dtype) -> None:
    X = _inliers(1200, 20).astype(dtype)
    np.save(tmp_path / "x.npy", X)
    for options in ({"contamination": 0.02}, {"threshold": -9.0}):
        plain, marginal = (
            gmmkit.AnomalyDetector(3, random_state=0, missing=missing, **options)
            for missing in ("error", "marginalize")
        )
        for detector in (plain, marginal):
            detector.fit(X)
        streamed = _detector(**options).fit(np.load(tmp_path / "x.npy", mmap_mode="r"))
        assert plain.offset_ == marginal.offset_
        if "contamination" in options:  # the cut of the log-densities, as without NaN
            assert plain.offset_ == lower_tail_threshold(
                np.asarray(plain.score_samples(X), np.float64), 0.02)
        np.testing.assert_array_equal(plain.decision_function(X),
                                      plain.score_samples(X) - plain.offset_)
        assert streamed.offset_ == pytest.approx(plain.offset_, rel=1e-12)
        for method in ("score_samples", "decision_function", "predict"):
            expected = getattr(plain, method)(X)
            np.testing.assert_array_equal(getattr(marginal, method)(X), expected)
            assert getattr(marginal, method)(X).dtype == expected.dtype
    online = [gmmkit.AnomalyDetector(3, random_state=0, missing=missing)
              for missing in ("error", "marginalize")]
    for start in range(0, len(X), 400):
        for detector in online:
            detector.partial_fit(X[start : start + 400])
    assert online[0].offset_ == online[1].offset_
    np.testing.assert_array_equal(online[0].decision_function(X),
                                  online[1].decision_function(X))


def test_streamed_fit_with_missing_values_sets_the_in_memory_threshold(tmp_path) -> None:
    Xm = _gaps(_inliers(3000, 30), 31)
    Xm[5] = np.nan
    in_memory = _quiet_fit(_detector(contamination=0.03), Xm)
    np.save(tmp_path / "x.npy", Xm)
    sources = [np.load(tmp_path / "x.npy", mmap_mode="r"),
               lambda: (Xm[i : i + 700] for i in range(0, len(Xm), 700))]
    for source in sources:
        streamed = _quiet_fit(_detector(contamination=0.03), source)
        np.testing.assert_allclose(streamed.mixture_.means_, in_memory.mixture_.means_,
                                   rtol=1e-10, atol=1e-12)
        assert streamed.offset_ == pytest.approx(in_memory.offset_, rel=1e-9)
    memmap = np.load(tmp_path / "x.npy", mmap_mode="r")
    np.testing.assert_array_equal(in_memory.decision_function(memmap),
                                  in_memory.decision_function(Xm))
    flagged = in_memory.predict(Xm) == -1
    assert flagged.sum() == int(0.03 * len(Xm))  # the cut does what it says
    single = in_memory.decision_function(Xm.astype(np.float32))  # computed in float32
    assert single.dtype == np.float64  # as score_samples: a float64 model's dtype
    np.testing.assert_allclose(single, in_memory.decision_function(Xm), atol=1e-3)


def test_partial_fit_with_missing_values_keeps_the_contamination() -> None:
    detector = _detector(contamination=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingRowsWarning)
        for seed in range(12):
            detector.partial_fit(_gaps(_inliers(1000, 100 + seed), 200 + seed))
    assert detector.mixture_.n_steps_ == 12 and np.isfinite(detector.offset_)
    fresh = _gaps(_inliers(8000, 300), 301)
    fresh = fresh[~np.isnan(fresh).all(axis=1)]
    incomplete = np.isnan(fresh).any(axis=1)
    flagged = detector.predict(fresh) == -1
    assert abs(flagged[~incomplete].mean() - 0.05) < 0.02
    assert abs(flagged[incomplete].mean() - 0.05) < 0.02


def test_nan_is_an_error_by_default_and_names_the_parameter() -> None:
    Xm = _gaps(_inliers(200, 40), 41)
    for call in (lambda d: d.fit(Xm), lambda d: d.partial_fit(Xm)):
        with pytest.raises(ValueError, match="missing='marginalize' to AnomalyDetector"):
            call(gmmkit.AnomalyDetector(2))
    fitted = gmmkit.AnomalyDetector(2, random_state=0).fit(_inliers(200, 42))
    with pytest.raises(ValueError, match="missing='marginalize'"):
        fitted.predict(Xm)
    infinite = Xm.copy()
    infinite[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        _quiet_fit(_detector(), infinite)


def test_model_file_keeps_the_choice(tmp_path) -> None:
    Xm = _gaps(_inliers(800, 50), 51)
    detector = _quiet_fit(_detector(contamination=0.05), Xm)
    detector.save(tmp_path / "detector.gmm")
    loaded = gmmkit.load(tmp_path / "detector.gmm")
    assert loaded.missing == "marginalize" and loaded.mixture_.missing == "marginalize"
    np.testing.assert_array_equal(loaded.decision_function(Xm), detector.decision_function(Xm))


def test_equivalent_log_density_in_blocks_equals_one_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The completions of a large chunk's incomplete rows go in blocks (the fused
    kernel's chunks are 131072 rows); each row's value does not depend on them."""
    from gmmkit.apps import anomaly
    from gmmkit.core.kernel import kernel_coefficients

    rng = np.random.default_rng(9)
    X = rng.normal(size=(2000, 3)) + rng.integers(0, 3, (2000, 1)) * 4.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = gmmkit.GaussianMixture(3, random_state=0).fit(X)
    X[rng.random(X.shape) < 0.3] = np.nan
    coefs = kernel_coefficients(model.params_, np.float64)
    whole = anomaly.equivalent_log_density(coefs, X)
    monkeypatch.setattr(anomaly, "BLOCK_VALUES", 256 * 3 * 3)  # 256-row blocks
    np.testing.assert_array_equal(anomaly.equivalent_log_density(coefs, X), whole)
    assert np.all(np.isfinite(whole))
