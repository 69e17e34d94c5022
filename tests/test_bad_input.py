"""Bad input: a clear ValueError/TypeError naming the problem, raised before any work.

"Before any work" is checked by making the engine factory and the EM loop explode if
they are reached: validation must refuse the input first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

import gmmkit.mixture as mixture_module
from gmmkit import GaussianMixture

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 2))


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if a fit gets as far as initialisation or EM."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the fit started working before rejecting bad input")

    monkeypatch.setattr(mixture_module, "initial_parameters", refuse)
    monkeypatch.setattr(mixture_module, "run_em", refuse)
    monkeypatch.setattr(mixture_module, "multistart", refuse)


def test_no_work_guard_is_effective(no_work: None) -> None:
    """Guard for the fixture: a valid fit does reach initialisation and trips it."""
    with pytest.raises(AssertionError, match="started working"):
        GaussianMixture(2).fit(X)


def _with(value: float, row: int = 3, col: int = 1) -> np.ndarray:
    bad = X.copy()
    bad[row, col] = value
    return bad


# --------------------------------------------------------------------------- X
@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_with(np.nan), "Input X contains NaN"),
        (_with(np.inf), "Input X contains infinity"),
        (_with(-np.inf), "Input X contains infinity"),
        (np.empty((0, 2)), r"Found array with 0 sample\(s\)"),
        (np.empty((5, 0)), r"Found array with 0 feature\(s\)"),
        (X[:1], r"Found array with 1 sample\(s\).*minimum of 2"),
        (X.reshape(4, 10, 2), "Found array with dim 3"),
        (X[:, 0] + 1j, "Complex data not supported"),
        (_with(1e200), "squares would overflow float64"),
        (_with(1e17).astype(np.float32), "squares would overflow float32.*pass float64"),
    ],
    ids=["nan", "inf", "-inf", "no rows", "no columns", "one row", "3-D", "complex",
         "float64 overflow", "float32 overflow"],
)
def test_bad_X(no_work: None, data: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GaussianMixture(1).fit(data)


def test_one_dimensional_X_says_how_to_reshape(no_work: None) -> None:
    with pytest.raises(ValueError, match=r"Expected 2D array, got 1D array") as info:
        GaussianMixture(2).fit(X[:, 0])
    assert "reshape(-1, 1)" in str(info.value)
    assert "single feature" in str(info.value)


@pytest.mark.parametrize(
    "data",
    [[["a", "b"], ["c", "d"]], np.array([[1, "x"], [2, "y"]], dtype=object)],
    ids=["strings", "object"],
)
def test_non_numeric_X(no_work: None, data: Any) -> None:
    with pytest.raises(ValueError, match="could not convert string to float"):
        GaussianMixture(1).fit(data)


def test_sparse_X(no_work: None) -> None:
    from scipy import sparse

    with pytest.raises(TypeError, match=r"Sparse data was passed.*dense data is required"):
        GaussianMixture(1).fit(sparse.csr_matrix(X))


def test_more_components_than_samples(no_work: None) -> None:
    with pytest.raises(ValueError, match="n_components = 41, n_samples = 40"):
        GaussianMixture(41).fit(X)


# --------------------------------------------------------------------------- weights
@pytest.mark.parametrize(
    ("weight", "error", "match"),
    [
        (-np.ones(40), ValueError, "Negative values in data passed to `sample_weight`"),
        (np.r_[np.nan, np.ones(39)], ValueError, "sample_weight contains NaN"),
        (np.r_[np.inf, np.ones(39)], ValueError, "sample_weight contains infinity"),
        (np.zeros(40), ValueError, "at least one non-zero"),
        (np.ones(39), ValueError, r"sample_weight.shape == \(39,\), expected \(40,\)"),
        (np.ones((40, 1)), ValueError, "Sample weights must be 1D"),
        (np.r_[1.0, np.zeros(39)], ValueError,
         "n_components = 2, samples with non-zero weight = 1"),
        (np.array(["a"] * 40), ValueError, "could not convert string to float"),
    ],
    ids=["negative", "nan", "inf", "all zero", "wrong length", "2-D", "too few non-zero",
         "strings"],
)
def test_bad_sample_weight(no_work: None, weight: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        GaussianMixture(2).fit(X, sample_weight=weight)


@pytest.mark.parametrize("method", ["score", "bic", "aic", "icl"])
@pytest.mark.parametrize(
    ("weight", "match"),
    [
        (np.ones(3), r"sample_weight.shape == \(3,\), expected \(40,\)"),
        (np.r_[np.nan, np.ones(39)], "sample_weight contains NaN"),
        (np.r_[-1.0, np.ones(39)], "sample_weight contains negative values"),
        (np.zeros(40), "sample_weight is zero for every sample"),
    ],
    ids=["wrong length", "nan", "negative", "all zero"],
)
def test_bad_scoring_weight(method: str, weight: np.ndarray, match: str) -> None:
    model = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match=match):
        getattr(model, method)(X, sample_weight=weight)


# --------------------------------------------------------------------------- init arrays
@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"weights_init": [1.0]}, r"weights_init should have shape \(2,\), got \(1,\)"),
        ({"weights_init": [0.3, 0.3]}, r"should be normalized, but got sum\(weights\) = 0.6"),
        ({"weights_init": [1.5, -0.5]}, r"should be in the range \[0, 1\]"),
        ({"weights_init": [np.nan, 1.0]}, r"should be in the range \[0, 1\]"),
        ({"means_init": np.zeros((3, 2))}, r"means_init should have shape \(2, 2\), got \(3, 2\)"),
        ({"means_init": np.zeros((2, 3))}, r"means_init should have shape \(2, 2\), got \(2, 3\)"),
        ({"means_init": [[np.nan, 0.0], [0.0, 0.0]]}, "means_init contains NaN or infinity"),
    ],
    ids=["weights shape", "weights sum", "weights range", "weights nan", "means rows",
         "means columns", "means nan"],
)
def test_bad_weights_and_means_init(no_work: None, settings: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GaussianMixture(2, **settings).fit(X)


GOOD_PRECISIONS = {
    "full": np.array([np.eye(2), 2.0 * np.eye(2)]),
    "tied": np.eye(2),
    "diag": np.ones((2, 2)),
    "spherical": np.ones(2),
}


@pytest.mark.parametrize(
    ("covariance_type", "shape"),
    [("full", (3, 2, 2)), ("full", (2, 2)), ("tied", (2, 2, 2)), ("tied", (3, 3)),
     ("diag", (2,)), ("diag", (2, 3)), ("spherical", (3,)), ("spherical", (2, 2))],
)
def test_precisions_init_of_the_wrong_shape(
    no_work: None, covariance_type: str, shape: tuple[int, ...]
) -> None:
    with pytest.raises(ValueError, match=rf"'{covariance_type}' precisions.*should have shape"):
        GaussianMixture(2, covariance_type=covariance_type,
                        precisions_init=np.ones(shape)).fit(X)


@pytest.mark.parametrize(
    ("covariance_type", "precisions", "match"),
    [
        ("full", np.array([[[1.0, 2.0], [2.0, 1.0]], np.eye(2)]),
         r"precisions_init\[0\] is not positive definite"),
        ("full", np.array([np.eye(2), [[1.0, 0.5], [0.0, 1.0]]]),
         r"precisions_init\[1\] is not symmetric"),
        ("full", np.array([np.eye(2), np.zeros((2, 2))]),
         r"precisions_init\[1\] is not positive definite"),
        ("tied", np.array([[1.0, 2.0], [2.0, 1.0]]), "precisions_init is not positive definite"),
        ("tied", np.array([[1.0, 0.3], [0.1, 1.0]]), "precisions_init is not symmetric"),
        ("diag", np.array([[1.0, -2.0], [1.0, 1.0]]), "'diag' precisions should be positive"),
        ("diag", np.array([[1.0, 0.0], [1.0, 1.0]]), "'diag' precisions should be positive"),
        ("spherical", np.array([0.0, 1.0]), "'spherical' precisions should be positive"),
        ("spherical", np.array([np.nan, 1.0]), "'spherical' precisions contain NaN"),
        ("full", np.array([np.eye(2), np.full((2, 2), np.inf)]), "'full' precisions contain NaN"),
    ],
    ids=["full not pd", "full not symmetric", "full zero", "tied not pd", "tied not symmetric",
         "diag negative", "diag zero", "spherical zero", "spherical nan", "full inf"],
)
def test_precisions_init_not_positive_definite(
    no_work: None, covariance_type: str, precisions: np.ndarray, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        GaussianMixture(2, covariance_type=covariance_type, precisions_init=precisions).fit(X)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_good_precisions_init_is_accepted(covariance_type: str) -> None:
    """Guard for the battery above: the same shapes with valid values do fit."""
    model = GaussianMixture(2, covariance_type=covariance_type,
                            precisions_init=GOOD_PRECISIONS[covariance_type],
                            random_state=0).fit(X)
    assert np.all(np.isfinite(model.means_))


# --------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"n_components": 0}, "'n_components' parameter"),
        ({"n_components": 1.5}, "'n_components' parameter"),
        ({"covariance_type": "banana"}, "'covariance_type' parameter"),
        ({"init_params": "kmeans++"}, "'init_params' parameter"),
        ({"tol": -1.0}, "'tol' parameter"),
        ({"reg_covar": -1e-6}, "'reg_covar' parameter"),
        ({"max_iter": -1}, "'max_iter' parameter"),
        ({"n_init": 0}, "'n_init' parameter"),
        ({"chunk_rows": 0}, "'chunk_rows' parameter"),
        ({"n_jobs": 0}, "'n_jobs' parameter"),
    ],
)
def test_bad_constructor_parameters(no_work: None, settings: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        GaussianMixture(**{"n_components": 1, **settings}).fit(X)


# --------------------------------------------------------------------------- after fit
def test_bad_X_at_predict_time() -> None:
    model = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but GaussianMixture is expecting 2"):
        model.predict(np.ones((4, 3)))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        model.score_samples(_with(np.nan))
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        model.predict_proba(X[:, 0])
    with pytest.raises(ValueError, match="squares would overflow"):
        model.score_samples(_with(1e300))
    with pytest.raises(ValueError, match="Invalid value for 'n_samples'"):
        model.sample(0)


def test_reg_covar_zero_on_singular_data_is_a_clear_error() -> None:
    """Without regularisation a duplicated-point component has no covariance: a clear
    ValueError (as scikit-learn), never NaN parameters."""
    points = np.repeat(RNG.normal(size=(3, 2)), 10, axis=0)
    with pytest.raises(ValueError, match="reg_covar"):
        GaussianMixture(3, reg_covar=0.0, random_state=0).fit(points)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_inference_without_validation_only_for_plain_rows(
    dtype: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inference skips scikit-learn's validation only for plain finite float rows of
    the fitted width: everything else still gets its messages and warnings, and the
    results are those of validated input."""
    import warnings

    import pandas as pd

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)).astype(dtype)
    gm = GaussianMixture(2, random_state=0).fit(X)
    plain = X[:5]
    assert gm._plain_rows(plain)
    got = {m: getattr(gm, m)(plain) for m in ("score_samples", "predict", "predict_proba")}
    with monkeypatch.context() as patch:
        patch.setattr(GaussianMixture, "_plain_rows", lambda self, X: False)
        for method, values in got.items():
            want = getattr(gm, method)(plain)
            np.testing.assert_array_equal(values, want)
            assert values.dtype == want.dtype

    bad = {
        "NaN": (np.where(np.arange(15).reshape(5, 3) == 4, np.nan, plain), "NaN"),
        "infinity": (np.where(np.arange(15).reshape(5, 3) == 4, np.inf, plain), "infinity"),
        "width": (X[:5, :2], "2 features"),
        "squares": (plain * (1e200 if dtype == np.float64 else 1e30), "overflow"),
    }
    for name, (rows, match) in bad.items():
        rows = np.asarray(rows, dtype=dtype)
        assert not gm._plain_rows(rows), name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # float32 overflow of x * 1e30
            with pytest.raises(ValueError, match=match):
                gm.predict(rows)
    assert not gm._plain_rows(X[:0])
    assert not gm._plain_rows(X[:5].astype(np.int64))

    named = GaussianMixture(2, random_state=0).fit(pd.DataFrame(X, columns=list("abc")))
    assert not named._plain_rows(plain)
    with pytest.warns(UserWarning, match="feature names"):
        named.predict(plain)
