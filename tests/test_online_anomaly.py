"""``AnomalyDetector.partial_fit``: the threshold as a running quantile of the scores."""

from __future__ import annotations

import numpy as np
import pytest

import gmmkit
from gmmkit import AnomalyDetector


def _stream(n: int, rng: np.random.Generator) -> np.ndarray:
    centres = np.array([[0.0, 0.0], [5.0, 1.0], [-1.0, 5.0]])
    return centres[rng.integers(0, 3, size=n)] + rng.normal(size=(n, 2))


def test_running_threshold_keeps_the_contamination_on_a_stationary_stream():
    rng = np.random.default_rng(0)
    detector = AnomalyDetector(3, contamination=0.05, random_state=0)
    for _ in range(40):
        detector.partial_fit(_stream(1000, rng))
    holdout = _stream(50_000, rng)
    # the fraction of fresh rows below the threshold, under the final mixture (measured
    # 0.0475-0.0517 over four seeds; 100 batches: 0.0502-0.0512)
    below = float(np.mean(detector.mixture_.score_samples(holdout) < detector.offset_))
    assert abs(below - 0.05) < 0.005, below
    assert detector.mixture_.n_steps_ == 40
    assert np.mean(detector.predict(holdout) == -1) == pytest.approx(below)


def test_partial_fit_continues_a_fitted_detector_and_keeps_a_fixed_threshold():
    rng = np.random.default_rng(1)
    fitted = AnomalyDetector(3, contamination=0.05, random_state=0).fit(_stream(5000, rng))
    before = fitted.offset_
    fitted.partial_fit(_stream(2000, rng))
    assert fitted.mixture_.n_steps_ == 1
    assert abs(fitted.offset_ - before) < 0.2
    fixed = AnomalyDetector(3, threshold=-7.0, random_state=0)
    fixed.partial_fit(_stream(500, rng)).partial_fit(_stream(10, rng))
    assert fixed.offset_ == -7.0


def test_a_failing_batch_leaves_the_detector_as_it_was():
    rng = np.random.default_rng(2)
    detector = AnomalyDetector(3, random_state=0).partial_fit(_stream(500, rng))
    mixture, offset = detector.mixture_, detector.offset_
    means = mixture.means_.copy()
    with pytest.raises(ValueError, match="features"):
        detector.partial_fit(np.ones((10, 3)))
    with pytest.raises(ValueError, match="non-zero"):
        detector.partial_fit(_stream(10, rng), sample_weight=np.zeros(10))
    assert detector.mixture_ is mixture and detector.offset_ == offset
    assert np.array_equal(mixture.means_, means) and mixture.n_steps_ == 1


def test_detector_resumes_from_a_model_file(tmp_path):
    rng = np.random.default_rng(3)
    batches = [_stream(600, rng) for _ in range(4)]
    detector = AnomalyDetector(3, contamination=0.05, random_state=0)
    for X in batches[:2]:
        detector.partial_fit(X)
    detector.save(tmp_path / "d.gmm")
    resumed = gmmkit.load(tmp_path / "d.gmm")
    for X in batches[2:]:
        detector.partial_fit(X)
        resumed.partial_fit(X)
    assert resumed.offset_ == detector.offset_
    assert np.array_equal(resumed.mixture_.means_, detector.mixture_.means_)
