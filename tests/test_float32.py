"""float32 data give float32 fitted arrays and outputs, with scikit-learn's dtype rules
(checked against scikit-learn on the same input), while statistics accumulate in float64;
float32 models round-trip through model files bit for bit."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

import gmmkit
from gmmkit import GaussianMixture
from gmmkit.modelfile import read_metadata

ARRAYS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")
SKLEARN_TYPES = ("full", "tied", "diag", "spherical")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    X, _ = make_blobs(n_samples=400, centers=3, n_features=3, cluster_std=2.0, random_state=5)
    return X, X.astype(np.float32)


@pytest.mark.parametrize("covariance_type", SKLEARN_TYPES)
def test_fitted_arrays_and_outputs_have_sklearns_dtypes(
    data: tuple[np.ndarray, np.ndarray], covariance_type: str
) -> None:
    X64, X32 = data
    for X in (X64, X32):
        ours = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
        theirs = SklearnGaussianMixture(3, covariance_type=covariance_type,
                                        random_state=0).fit(X)
        for name in ARRAYS:
            assert getattr(ours, name).dtype == getattr(theirs, name).dtype == X.dtype, name
        # bounds: np.float32 for float32 data, a float (np.float64 there) otherwise
        expected = np.float32 if X.dtype == np.float32 else float
        for bound in (ours.lower_bound_, theirs.lower_bound_, *ours.lower_bounds_,
                      *theirs.lower_bounds_):
            assert isinstance(bound, expected), (X.dtype, type(bound))
        # outputs: result_type(X, model), for every pairing of model and input dtypes
        for Z in (X64, X32):
            for method in ("predict_proba", "score_samples"):
                assert getattr(ours, method)(Z).dtype == getattr(theirs, method)(Z).dtype, (
                    method, X.dtype, Z.dtype
                )
            assert ours.predict(Z).dtype == theirs.predict(Z).dtype
            assert isinstance(ours.score(Z), float)


def test_float32_fit_matches_the_float64_fit(data: tuple[np.ndarray, np.ndarray]) -> None:
    """Statistics accumulate in float64: the same 20 EM passes over the same float32
    values, computed in float32 or in float64, reach the same parameters to within the
    float32 kernel's error (log-densities to ~1e-6)."""
    _, X32 = data
    settings = dict(init_params="kmeans", tol=0.0, max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tol=0: exactly max_iter passes
        single = GaussianMixture(3, **settings).fit(X32)
        double = GaussianMixture(3, **settings).fit(X32.astype(np.float64))
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(single, name), getattr(double, name), rtol=2e-5)
    # the model is its float32 arrays: params_ holds the same values
    np.testing.assert_array_equal(single.means_, single.params_.means)
    assert abs(float(single.weights_.astype(np.float64).sum()) - 1.0) < 1e-6


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical", "VEV", "EII"])
def test_float32_model_file_round_trip_is_bit_exact(
    tmp_path: Path, data: np.ndarray, covariance_type: str
) -> None:
    _, X32 = data
    model = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X32)
    path = tmp_path / "m.gmm"
    model.save(path)
    loaded = gmmkit.load(path)
    for name in ARRAYS:
        original, again = getattr(model, name), getattr(loaded, name)
        assert again.dtype == original.dtype == np.float32
        assert again.tobytes() == original.tobytes(), name
    np.testing.assert_array_equal(loaded.score_samples(X32), model.score_samples(X32))
    np.testing.assert_array_equal(loaded.predict_proba(X32), model.predict_proba(X32))
    assert type(loaded.lower_bound_) is np.float32 and loaded.lower_bound_ == model.lower_bound_
    assert loaded.lower_bounds_ == model.lower_bounds_
    assert all(type(b) is np.float32 for b in loaded.lower_bounds_)
    assert read_metadata(path)["summary"]["dtype"] == "float32"


def test_ill_conditioned_float32_model_loads(tmp_path: Path) -> None:
    """Rounding C and its precision factor U to float32 leaves U'CU - I of order
    eps32 * cond(C); the loader allows for that instead of refusing the model."""
    Z = np.random.default_rng(0).normal(size=(2000, 3))
    X = np.column_stack([Z[:, 0], Z[:, 0] + 0.01 * Z[:, 1], Z[:, 2]])  # cond(C) ~ 4e4
    model = GaussianMixture(2, random_state=0).fit(X.astype(np.float32))
    assert model.means_.dtype == np.float32
    U = model.precisions_cholesky_.astype(np.float64)
    C = model.covariances_.astype(np.float64)
    error = np.abs(np.einsum("kji,kjl,klm->kim", U, C, U) - np.eye(3)).max()
    assert error > 1e-5  # beyond what a float64 model may show
    path = tmp_path / "ill.gmm"
    model.save(path)
    loaded = gmmkit.load(path)
    assert loaded.covariances_.tobytes() == model.covariances_.tobytes()


def _beyond_float32(seed: int) -> np.ndarray:
    """float32 data with two equal columns on a scale of hundreds: each fitted covariance
    is held up in one direction by reg_covar alone (condition ~1e11), beyond float32."""
    a = np.random.default_rng(seed).normal(size=(600, 2)) * 300
    a[300:] += 2000
    return np.column_stack([a[:, 0], a[:, 0], a[:, 1]]).astype(np.float32)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "VEV", "EVV", "EEV", "VVE"])
def test_float32_model_beyond_float32_samples_saves_and_loads(
    covariance_type: str, tmp_path: Path
) -> None:
    """A float32 model whose rounded covariances_ are indefinite (scipy's Cholesky refuses
    them) still samples -- from the precision factors it scores with -- and saves and
    loads with the same scores, instead of raising LinAlgError / ModelFileError."""
    from scipy import linalg

    refused = 0
    for seed in (18, 19, 0, 1):
        X = _beyond_float32(seed)
        model = GaussianMixture(2, covariance_type=covariance_type, random_state=seed).fit(X)
        for cov in np.asarray(model.covariances_, dtype=np.float64).reshape(-1, 3, 3):
            try:
                linalg.cholesky(cov, lower=True)
            except linalg.LinAlgError:
                refused += 1
        S, _ = model.sample(4000)
        assert np.isfinite(S).all() and S.shape == (4000, 3)
        # the draws follow the model: the two equal columns stay equal to within the
        # scale of the component's tiny direction (reg_covar), as the data do
        assert np.abs(S[:, 0] - S[:, 1]).max() < 1e-2 * np.abs(S[:, 0]).max()
        model.save(tmp_path / f"{seed}.gmm")
        loaded = gmmkit.load(tmp_path / f"{seed}.gmm")
        np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))
        np.testing.assert_array_equal(loaded.sample(50)[0], model.sample(50)[0])
    assert refused > 0  # the case this test is about occurred


@pytest.mark.parametrize("covariance_type", ["full", "tied", "VEV", "diag", "spherical"])
def test_samples_are_the_covariance_cholesky_draws(covariance_type: str) -> None:
    """Full/tied draws through the precision factor equal, to rounding, the classical
    draws ``mean + L z`` with L scipy's Cholesky factor of the covariance."""
    from scipy import linalg
    from sklearn.utils import check_random_state

    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 4)) @ rng.normal(size=(4, 4))
    model = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    ours, labels = model.sample(1000)
    rs = check_random_state(model.random_state)
    counts = rs.multinomial(1000, model.weights_)
    covs = model.covariances_
    blocks = []
    for k, count in enumerate(counts):
        z = rs.standard_normal((count, 4))
        if covariance_type in ("full", "VEV"):
            z = z @ linalg.cholesky(covs[k], lower=True).T
        elif covariance_type == "tied":
            z = z @ linalg.cholesky(covs, lower=True).T
        else:
            z = z * np.sqrt(covs[k])
        blocks.append(model.means_[k] + z)
    np.testing.assert_allclose(ours, np.vstack(blocks), rtol=0, atol=1e-12 * np.abs(ours).max())
    np.testing.assert_array_equal(labels, np.repeat(np.arange(3), counts))


def test_semisupervised_float32(data: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    _, X32 = data
    y = np.full(len(X32), -1, dtype=object)
    y[:30] = np.where(X32[:30, 0] > np.median(X32[:, 0]), "right", "left")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = gmmkit.SemiSupervisedGaussianMixture(random_state=0).fit(X32, y)
    for name in ARRAYS:
        assert getattr(model, name).dtype == np.float32
    assert model.predict_proba(X32).dtype == np.float32
    model.save(tmp_path / "s.gmm")
    loaded = gmmkit.load(tmp_path / "s.gmm")
    np.testing.assert_array_equal(loaded.predict(X32), model.predict(X32))
    assert loaded.means_.tobytes() == model.means_.tobytes()


def test_wrappers_follow_the_mixture(data: tuple[np.ndarray, np.ndarray]) -> None:
    _, X32 = data
    detector = gmmkit.AnomalyDetector(n_components=3, random_state=0).fit(X32)
    assert detector.mixture_.means_.dtype == np.float32
    assert detector.score_samples(X32).dtype == np.float32
    assert isinstance(detector.offset_, float)
    selector = gmmkit.GaussianMixtureSelector(
        n_components=[2, 3], covariance_types=["VVV"], random_state=0
    ).fit(X32)
    assert selector.best_estimator_.means_.dtype == np.float32
    assert selector.predict_proba(X32).dtype == np.float32


@pytest.mark.parametrize("covariance_type", ["VVV", "VVE", "EEV", "VEV"])
def test_float64_model_beyond_float64_reach_saves_and_loads(
    covariance_type: str, tmp_path: Path
) -> None:
    """The float64 twin of the case above: a few rows 1e3..1e7 times the others' scale
    condition a component beyond what float64's U'CU and constraint checks can resolve
    (U'CU - I reached 1e-2).  A fit that succeeded saves and loads with the same scores
    (before: ModelFileError for 363 of 1926 such fits, found by a fuzz)."""
    saved = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(40, 6))
        X[:5] *= 10.0 ** rng.integers(3, 8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model = GaussianMixture(3, covariance_type=covariance_type,
                                        random_state=0).fit(X)
            except ValueError:
                continue
        model.save(tmp_path / f"{seed}.gmm")
        loaded = gmmkit.load(tmp_path / f"{seed}.gmm")
        np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))
        saved += 1
    assert saved >= 6
