"""Semi-supervised EM with missing values (``missing="marginalize"``): one EM iteration
against a brute-force NumPy/SciPy reference (labelled rows one-hot, unlabelled rows from
their observed marginal, conditional means and covariances of the missing cells), the
observed-data likelihood along the iterations, identity without NaN, and accuracy on
MCAR data against the known-parameter classifier and mean imputation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning

from _helpers import full_covariances
from gmmkit import SemiSupervisedGaussianMixture
from gmmkit.apps.semisupervised import labelled_initialisation
from gmmkit.mixture import MissingRowsWarning

K, D = 3, 3
MEANS = np.array([[0.0, 0.0, 0.0], [3.0, -2.0, 1.0], [-2.0, 2.5, 2.0]])


def _covariance(d: int) -> np.ndarray:
    """Strongly correlated features: a single coordinate says little, the joint a lot."""
    mixing = np.eye(d) + 0.9 * np.ones((d, d))
    return mixing @ mixing.T / d


def _data(
    seed: int, n: int = 40, rate: float = 0.2, label_rate: float = 0.15,
    means: np.ndarray = MEANS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` rows per class, a copy with cells missing completely at random, partial
    labels (``-1`` unlabelled) and the true classes."""
    rng = np.random.default_rng(seed)
    d = means.shape[1]
    lower = np.linalg.cholesky(_covariance(d))
    X = np.vstack([rng.normal(size=(n, d)) @ lower.T + m for m in means])
    truth = np.repeat(np.arange(len(means)), n)
    y = np.full(len(X), -1)
    for k in range(len(means)):
        picked = rng.choice(np.flatnonzero(truth == k), max(1, round(label_rate * n)),
                            replace=False)
        y[picked] = k
    Xm = X.copy()
    Xm[rng.random(X.shape) < rate] = np.nan
    return X, Xm, y, truth


def _log_joint(x: np.ndarray, weights, means, covs) -> np.ndarray:
    """(K,) log weight plus scipy's log-density of the row's observed coordinates (just
    the log weight for a row with nothing observed: its marginal density is one)."""
    o = ~np.isnan(x)
    if not o.any():
        return np.log(np.asarray(weights, np.float64))
    return np.array([
        np.log(weights[k]) + multivariate_normal(means[k][o], covs[k][np.ix_(o, o)]).logpdf(x[o])
        for k in range(len(weights))
    ])


def _objective(X, y, alpha, weights, means, covs) -> float:
    """Observed-data semi-supervised log-likelihood, brute force: a labelled row's
    ``alpha * (log w_y + log N(x_o))``, an unlabelled row's log of the mixture marginal;
    rows with nothing observed add nothing."""
    total = 0.0
    for x, label in zip(X, y):
        if np.isnan(x).all():
            continue
        joint = _log_joint(x, weights, means, covs)
        total += alpha * joint[label] if label >= 0 else logsumexp(joint)
    return total


def _reference_em_step(X, y, alpha, weights, means, covs, reg_covar, covariance_type):
    """One E+M step, row by row: responsibilities (one-hot for labelled rows), the
    conditional mean ``mu_m + S_mo S_oo^-1 (x_o - mu_o)`` of the missing cells and the
    conditional covariance ``S_mm - S_mo S_oo^-1 S_om`` added to the second moments."""
    d = X.shape[1]
    nk = np.zeros(K)
    first = np.zeros((K, d))
    second = np.zeros((K, d, d))
    for x, label in zip(X, y):
        o = ~np.isnan(x)
        m = ~o
        if not o.any():
            continue
        if label >= 0:
            resp, row_weight = np.eye(K)[label], alpha
        else:
            joint = _log_joint(x, weights, means, covs)
            resp, row_weight = np.exp(joint - logsumexp(joint)), 1.0
        for k in range(K):
            gain = covs[k][np.ix_(m, o)] @ np.linalg.inv(covs[k][np.ix_(o, o)])
            xhat = x.copy()
            xhat[m] = means[k][m] + gain @ (x[o] - means[k][o])
            conditional = np.zeros((d, d))
            conditional[np.ix_(m, m)] = covs[k][np.ix_(m, m)] - gain @ covs[k][np.ix_(o, m)]
            r = row_weight * resp[k]
            nk[k] += r
            first[k] += r * xhat
            second[k] += r * (np.outer(xhat, xhat) + conditional)
    new_means = first / nk[:, None]
    scatter = second / nk[:, None, None] - np.einsum("ki,kj->kij", new_means, new_means)
    if covariance_type == "full":
        new_covs = scatter + reg_covar * np.eye(d)
    elif covariance_type == "tied":
        new_covs = np.einsum("k,kij->ij", nk, scatter) / nk.sum() + reg_covar * np.eye(d)
    else:  # diag
        new_covs = np.diagonal(scatter, axis1=1, axis2=2) + reg_covar
    return nk / nk.sum(), new_means, new_covs


def _start(covariance_type: str, seed: int = 7):
    """A start away from the truth, in the layout of ``covariance_type``: weights, means,
    full (K, D, D) covariances for the reference, precisions for gmmkit."""
    rng = np.random.default_rng(seed)
    weights = np.array([0.3, 0.45, 0.25])
    means = MEANS + 0.5 * rng.normal(size=MEANS.shape)
    shapes = [np.eye(D) + 0.3 * rng.normal(size=(D, D)) for _ in range(K)]
    covs = np.stack([a @ a.T + 0.5 * np.eye(D) for a in shapes])
    if covariance_type == "tied":
        covs = np.broadcast_to(covs[0], covs.shape)
        precisions = np.linalg.inv(covs[0])
    elif covariance_type == "diag":
        covs = np.stack([np.diag(np.diag(c)) for c in covs])
        precisions = 1.0 / np.diagonal(covs, axis1=1, axis2=2)
    else:
        precisions = np.linalg.inv(covs)
    return weights, means, covs, precisions


def _with_empty_rows(Xm: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two rows with nothing observed appended, one labelled and one not."""
    return np.vstack([Xm, np.full((2, Xm.shape[1]), np.nan)]), np.r_[y, 1, -1]


def test_nan_is_an_error_without_the_option() -> None:
    _, Xm, y, _ = _data(0)
    with pytest.raises(ValueError, match=r"missing='marginalize'.*SemiSupervisedGaussianMixture"):
        SemiSupervisedGaussianMixture(K).fit(Xm, y)
    X, _, _, _ = _data(0)
    model = SemiSupervisedGaussianMixture(K).fit(X, y)
    with pytest.raises(ValueError, match="missing='marginalize'"):
        model.predict(Xm)
    with pytest.raises(ValueError, match="missing"):
        SemiSupervisedGaussianMixture(K, missing="drop").fit(Xm, y)


@pytest.mark.parametrize("n_components", [K, K + 1])  # K + 1: a class without labels
def test_no_missing_values_is_bit_identical(n_components: int) -> None:
    X, _, y, _ = _data(1)
    a = SemiSupervisedGaussianMixture(n_components, random_state=0).fit(X, y)
    b = SemiSupervisedGaussianMixture(
        n_components, random_state=0, missing="marginalize"
    ).fit(X, y)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_",
                 "transduction_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.lower_bounds_ == b.lower_bounds_
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag"])
@pytest.mark.parametrize("alpha", [1.0, 2.5])
def test_one_em_iteration_matches_a_brute_force_reference(
    covariance_type: str, alpha: float
) -> None:
    _, Xm, y, _ = _data(2, n=25, rate=0.3)
    Xm, y = _with_empty_rows(Xm, y)
    weights, means, covs, precisions = _start(covariance_type)
    model = SemiSupervisedGaussianMixture(
        K, covariance_type=covariance_type, alpha=alpha, missing="marginalize", tol=0.0,
        max_iter=1, reg_covar=1e-4, weights_init=weights, means_init=means,
        precisions_init=precisions,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(MissingRowsWarning, match=r"2 row.*1 of them labelled.*no information"):
            model.fit(Xm, y)
    ref_weights, ref_means, ref_covs = _reference_em_step(
        Xm, y, alpha, weights, means, covs, 1e-4, covariance_type
    )
    np.testing.assert_allclose(model.weights_, ref_weights, rtol=1e-10)
    np.testing.assert_allclose(model.means_, ref_means, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.covariances_, ref_covs, rtol=1e-9, atol=1e-12)
    # the bound of that E-step: the start's observed-data likelihood per unit of weight
    seen = ~np.isnan(Xm).all(axis=1)
    total_weight = np.where(y >= 0, alpha, 1.0)[seen].sum()
    assert model.lower_bounds_[0] == pytest.approx(
        _objective(Xm, y, alpha, weights, means, covs) / total_weight, rel=1e-10
    )


@pytest.mark.filterwarnings("ignore::gmmkit.mixture.MissingRowsWarning")
@pytest.mark.parametrize("covariance_type", ["full", "VEI"])
def test_observed_log_likelihood_never_decreases(covariance_type: str) -> None:
    """Plain EM (reg_covar=0: the exact maximiser) from a poor start: the brute-force
    observed-data objective at the parameters after every iteration."""
    _, Xm, y, _ = _data(3, n=25, rate=0.25, label_rate=0.1)
    weights, means, _, _ = _start("full", seed=11)
    start = dict(covariance_type=covariance_type, missing="marginalize", tol=0.0,
                 reg_covar=0.0, weights_init=weights, means_init=means + 1.0)
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for n_iter in range(1, 7):
            model = SemiSupervisedGaussianMixture(K, max_iter=n_iter, **start).fit(Xm, y)
            values.append(_objective(Xm, y, 1.0, model.weights_, model.means_,
                                     full_covariances(model.params_)))
    values = np.asarray(values)
    assert np.all(np.diff(values) >= -1e-9 * np.abs(values[1:])), values
    assert values[-1] > values[0]
    # gmmkit's own record of the same fit agrees with the reference at every iteration
    bounds = np.asarray(model.lower_bounds_[1:]) * (~np.isnan(Xm).all(axis=1)).sum()
    np.testing.assert_allclose(bounds, values[:-1], rtol=1e-9)


@pytest.mark.filterwarnings("ignore::gmmkit.mixture.MissingRowsWarning")
def test_predictions_of_incomplete_rows_use_the_observed_marginal(tmp_path) -> None:
    from gmmkit import load

    _, Xm, y, _ = _data(4)
    names = np.array(["a", "b", "c"])
    labels = np.where(y >= 0, names[np.maximum(y, 0)], "-1")
    model = SemiSupervisedGaussianMixture(missing="marginalize", random_state=0).fit(Xm, labels)
    assert model.get_params()["missing"] == "marginalize"
    covs = full_covariances(model.params_)
    joint = np.array([_log_joint(x, model.weights_, model.means_, covs) for x in Xm])
    proba = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
    np.testing.assert_allclose(model.predict_proba(Xm), proba, atol=1e-10)
    np.testing.assert_allclose(model.score_samples(Xm), logsumexp(joint, axis=1), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_array_equal(model.predict(Xm), names[proba.argmax(axis=1)])
    labelled = y >= 0
    np.testing.assert_array_equal(model.transduction_[labelled], labels[labelled])
    path = tmp_path / "semi.gmm"
    model.save(path)
    loaded = load(path)
    assert loaded.missing == "marginalize"
    np.testing.assert_array_equal(loaded.predict(Xm), model.predict(Xm))


def test_labelled_start_uses_the_observed_cells() -> None:
    """Class start means are the NaN-aware means of the labelled rows; rows with nothing
    observed change nothing."""
    _, Xm, y, _ = _data(5)
    weights, means, _ = labelled_initialisation(Xm, y, None, K, "full", 1e-6,
                                                np.random.default_rng(0))
    for k in range(K):
        np.testing.assert_allclose(means[k], np.nanmean(Xm[y == k], axis=0), rtol=1e-12)
    with_empty, y_empty = _with_empty_rows(Xm, y)
    again = labelled_initialisation(with_empty, y_empty, None, K, "full", 1e-6,
                                    np.random.default_rng(0))
    for a, b in zip((weights, means), again):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.filterwarnings("ignore::gmmkit.mixture.MissingRowsWarning")
def test_accuracy_with_mcar_cells_and_few_labels() -> None:
    """20 % of cells missing completely at random, 5 % of rows labelled: marginalising
    comes close to the complete-data fit and to the classifier that knows the true
    parameters (on the observed cells), and beats mean imputation followed by a fit."""
    means = np.array([[0.0, 0.0, 0.0, 0.0], [1.5, -1.5, 1.5, -1.5], [-1.5, -1.5, 1.5, 1.5]])
    X, Xm, y, truth = _data(0, n=200, label_rate=0.05, means=means)
    marginal = SemiSupervisedGaussianMixture(K, missing="marginalize", random_state=0)
    accuracy = np.mean(marginal.fit(Xm, y).predict(Xm) == truth)
    complete = np.mean(SemiSupervisedGaussianMixture(K, random_state=0).fit(X, y).predict(X)
                       == truth)
    imputed_X = np.where(np.isnan(Xm), np.nanmean(Xm, axis=0), Xm)
    imputed = np.mean(
        SemiSupervisedGaussianMixture(K, random_state=0).fit(imputed_X, y).predict(imputed_X)
        == truth
    )
    covariance = _covariance(means.shape[1])
    oracle = np.mean(
        [np.argmax(_log_joint(x, np.ones(K) / K, means, [covariance] * K)) for x in Xm]
        == truth
    )
    assert complete > 0.98
    assert accuracy >= oracle - 0.02
    assert accuracy >= complete - 0.07
    assert accuracy >= imputed + 0.03
