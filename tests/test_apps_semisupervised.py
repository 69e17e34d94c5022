"""Semi-supervised EM: the issue's five-Gaussian data against the Bayes classifier, an
independent NumPy/SciPy implementation of the same EM, and bad labels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning

import gmmkit
from _helpers import assert_model_structure
from gmmkit.apps.semisupervised import labelled_initialisation

MEANS = np.array([(5, 5), (7, 7.5), (8, 6), (7, 5.2), (3, 3)], dtype=float)
COVS = np.array(
    [
        [[2, 0.5], [0.5, 2]],
        [[0.2, 0.1], [0.1, 0.2]],
        [[0.2, -0.075], [-0.075, 0.2]],
        [[0.2, -0.05], [-0.05, 0.2]],
        [[0.2, -0.05], [-0.05, 0.2]],
    ]
)
SIZES = np.array([400, 300, 180, 150, 70])


def five_gaussians(seed: int, labels_per_class: int = 10):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.multivariate_normal(m, c, s) for m, c, s in zip(MEANS, COVS, SIZES)])
    truth = np.repeat(np.arange(5), SIZES)
    y = np.full(len(X), -1)
    for k in range(5):
        y[rng.choice(np.flatnonzero(truth == k), labels_per_class, replace=False)] = k
    return X, truth, y


def bayes_accuracy(X, truth):
    """The classifier that knows the true weights, means and covariances."""
    log_joint = np.column_stack(
        [
            np.log(SIZES[k] / SIZES.sum()) + multivariate_normal(MEANS[k], COVS[k]).logpdf(X)
            for k in range(5)
        ]
    )
    return float(np.mean(log_joint.argmax(axis=1) == truth))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accuracy_close_to_the_bayes_classifier(seed):
    X, truth, y = five_gaussians(seed)
    bayes = bayes_accuracy(X, truth)
    assert 0.86 < bayes < 0.91  # the "about 0.88"
    model = gmmkit.SemiSupervisedGaussianMixture(5, random_state=0).fit(X, y)
    accuracy = float(np.mean(model.predict(X) == truth))
    assert accuracy >= bayes - 0.03
    np.testing.assert_array_equal(model.classes_, np.arange(5))
    labelled = y >= 0
    np.testing.assert_array_equal(model.transduction_[labelled], y[labelled])
    np.testing.assert_array_equal(model.transduction_[~labelled], model.predict(X[~labelled]))


def matched_recalls(truth, predicted):
    """Per-class recall after the best one-to-one matching of components to classes."""
    table = np.zeros((5, 5))
    np.add.at(table, (truth, predicted), 1)
    rows, cols = linear_sum_assignment(-table)
    return table[rows, cols] / table.sum(axis=1)


def test_unsupervised_fitting_with_sklearns_settings_mislabels_whole_clusters():
    X, truth, y = five_gaussians(1)
    bayes = bayes_accuracy(X, truth)
    semi = gmmkit.SemiSupervisedGaussianMixture(5, random_state=0).fit(X, y)
    semi_recalls = matched_recalls(truth, semi.predict(X))
    assert semi_recalls.min() > 0.75
    for random_state in range(3):
        # scikit-learn's settings: one k-means start, EM stopped at tol=1e-3
        unsupervised = gmmkit.GaussianMixture(
            5, init_params="kmeans", tol=1e-3, max_iter=100, random_state=random_state
        ).fit(X)
        recalls = matched_recalls(truth, unsupervised.predict(X))
        # even granted the best relabelling, a whole class goes to another component
        assert recalls.min() < 0.3
        assert float(np.average(recalls, weights=SIZES)) < bayes - 0.1
    # run to convergence (gmmkit's default rule) the same start finds every class
    converged = gmmkit.GaussianMixture(5, random_state=0).fit(X)
    assert matched_recalls(truth, converged.predict(X)).min() > 0.75


def reference_semisupervised_em(X, y, alpha, weights, means, covs, reg_covar, n_iter):
    """Plain NumPy/SciPy semi-supervised EM (full covariance), ``n_iter`` E+M steps."""
    labelled = y >= 0
    row_weight = np.where(labelled, alpha, 1.0)
    k_count, d = means.shape
    for _ in range(n_iter):
        log_joint = np.column_stack(
            [np.log(weights[k]) + multivariate_normal(means[k], covs[k]).logpdf(X)
             for k in range(k_count)]
        )
        resp = np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))
        resp[labelled] = np.eye(k_count)[y[labelled]]
        resp *= row_weight[:, None]
        nk = resp.sum(axis=0)
        new_means = resp.T @ X / nk[:, None]
        covs = np.stack(
            [
                (resp[:, k, None] * (X - new_means[k])).T @ (X - new_means[k]) / nk[k]
                + reg_covar * np.eye(d)
                for k in range(k_count)
            ]
        )
        weights = nk / nk.sum()
        means = new_means
    return weights, means, covs


@pytest.mark.parametrize("alpha", [1.0, 3.0])
def test_matches_an_independent_implementation(alpha):
    X, _, y = five_gaussians(0)
    rng = np.random.default_rng(0)
    weights, means, precisions = labelled_initialisation(X, y, None, 5, "full", 1e-6, rng)
    model = gmmkit.SemiSupervisedGaussianMixture(
        5, alpha=alpha, tol=0.0, max_iter=15, weights_init=weights, means_init=means,
        precisions_init=precisions,
    )
    with pytest.warns(ConvergenceWarning):  # tol=0: exactly max_iter iterations
        model.fit(X, y)
    ref_weights, ref_means, ref_covs = reference_semisupervised_em(
        X, y, alpha, weights, means, np.linalg.inv(precisions), 1e-6, n_iter=15
    )
    np.testing.assert_allclose(model.means_, ref_means, rtol=1e-9)
    np.testing.assert_allclose(model.weights_, ref_weights, rtol=1e-9)
    np.testing.assert_allclose(model.covariances_, ref_covs, rtol=1e-8)
    # the core's lower bound is the semi-supervised log-likelihood of the last E-step
    assert np.all(np.diff(model.lower_bounds_) > -1e-9)


def test_alpha_weighs_labelled_rows_like_repetition():
    X, _, y = five_gaussians(2)
    labelled = np.flatnonzero(y >= 0)
    start = labelled_initialisation(X, y, None, 5, "full", 1e-6, np.random.default_rng(0))
    inits = dict(weights_init=start[0], means_init=start[1], precisions_init=start[2],
                 tol=1e-10, max_iter=1000)
    doubled = gmmkit.SemiSupervisedGaussianMixture(5, alpha=2.0, **inits).fit(X, y)
    X_rep = np.vstack([X, X[labelled]])
    y_rep = np.r_[y, y[labelled]]
    repeated = gmmkit.SemiSupervisedGaussianMixture(5, alpha=1.0, **inits).fit(X_rep, y_rep)
    np.testing.assert_allclose(doubled.means_, repeated.means_, atol=1e-6)
    np.testing.assert_allclose(doubled.weights_, repeated.weights_, atol=1e-6)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_every_covariance_type_and_a_class_without_labels(covariance_type):
    X, truth, y = five_gaussians(3)
    y[y == 1] = -1  # class 1 has no labels: constrained k-means seeds it
    model = gmmkit.SemiSupervisedGaussianMixture(
        5, covariance_type=covariance_type, random_state=0
    ).fit(X, y)
    predicted = model.predict(X)
    assert np.all(np.isfinite(model.means_))
    # the labelled classes keep their identity; the unlabelled cluster gets component 1
    for k in (2, 3, 4):
        assert np.mean(predicted[truth == k] == k) > 0.6
    assert np.mean(predicted[truth == 1] == 1) > 0.8


@pytest.mark.parametrize(
    ("y_change", "error", "match"),
    [
        # six classes for five components
        (lambda y: np.r_[y[:-1], 5], ValueError, "6 classes but n_components is 5"),
        # five classes but not 0..4, and a component without labels: which class is it?
        (lambda y: np.where(y > 0, y + 10, -1), ValueError, "a component without labelled"),
        (lambda y: y[:-1], ValueError, "shape"),
        (lambda y: y + 0.5, ValueError, "integer"),
        (lambda y: np.where(y == 0, np.nan, y), ValueError, "NaN"),
        (lambda y: np.where(y == 0, None, y.astype(object)), ValueError, "None"),
        (lambda y: np.where(y == 0, "a", y.astype(object)), TypeError, "cannot be sorted"),
        (lambda y: y.astype(complex), TypeError, "class labels"),
        (lambda y: np.full_like(y, -1), ValueError, "labelled row"),
        (lambda y: None, ValueError, "y is required"),
    ],
)
def test_bad_labels(y_change, error, match):
    X, _, y = five_gaussians(0)
    with pytest.raises(error, match=match):
        gmmkit.SemiSupervisedGaussianMixture(5).fit(X, y_change(y))


def test_no_labels_and_no_n_components():
    X, _, _ = five_gaussians(0)
    with pytest.raises(ValueError, match="give n_components"):
        gmmkit.SemiSupervisedGaussianMixture(init_params="kmeans").fit(X, np.full(len(X), -1))


NAMES = np.array(["wide", "north", "east", "south", "small"])  # deliberately unsorted


def named_labels(y):
    """``y`` with class ``k`` renamed ``NAMES[k]``; ``"-1"`` marks unlabelled rows, as NumPy
    writes a -1 among strings."""
    return np.where(y >= 0, NAMES[np.maximum(y, 0)], "-1")


def test_string_labels_give_the_same_model_as_integers():
    X, _, y = five_gaussians(0)
    y_named = named_labels(y)
    assert y_named.dtype.kind == "U" and "-1" in set(y_named)
    by_index = gmmkit.SemiSupervisedGaussianMixture(5, random_state=0).fit(X, y)
    named = gmmkit.SemiSupervisedGaussianMixture(random_state=0).fit(X, y_named)
    order = np.argsort(NAMES)  # component k of ``named`` is class sorted(NAMES)[k]
    np.testing.assert_array_equal(named.classes_, np.sort(NAMES))
    np.testing.assert_allclose(named.means_, by_index.means_[order], rtol=1e-9)
    np.testing.assert_allclose(named.weights_, by_index.weights_[order], rtol=1e-9)
    predicted = named.predict(X)
    assert predicted.dtype.kind == "U"
    np.testing.assert_array_equal(predicted, NAMES[by_index.predict(X)])
    proba = named.predict_proba(X)
    np.testing.assert_allclose(proba, by_index.predict_proba(X)[:, order], rtol=1e-9)
    np.testing.assert_array_equal(named.classes_[proba.argmax(axis=1)], predicted)
    labelled = y >= 0
    np.testing.assert_array_equal(named.transduction_[labelled], y_named[labelled])
    np.testing.assert_array_equal(named.transduction_, NAMES[by_index.transduction_])
    drawn, drawn_labels = named.sample(50)
    assert drawn.shape == (50, 2) and set(drawn_labels) <= set(NAMES)


@pytest.mark.parametrize(
    "convert",
    [
        lambda y: y.astype(object),  # strings and the integer -1 in an object array
        lambda y: list(y),  # a Python list of strings, "-1" for unlabelled rows
    ],
)
def test_object_and_list_labels(convert):
    X, _, y = five_gaussians(1)
    y_named = named_labels(y).astype(object)
    y_named[y < 0] = -1
    model = gmmkit.SemiSupervisedGaussianMixture(random_state=0).fit(X, convert(y_named))
    np.testing.assert_array_equal(model.classes_, np.sort(NAMES))
    labelled = y >= 0
    np.testing.assert_array_equal(model.transduction_[labelled], y_named[labelled])


def test_integer_labels_that_are_not_0_to_k():
    X, _, y = five_gaussians(2)
    shifted = np.where(y >= 0, 10 * y + 7, -1)
    model = gmmkit.SemiSupervisedGaussianMixture(random_state=0).fit(X, shifted)
    reference = gmmkit.SemiSupervisedGaussianMixture(5, random_state=0).fit(X, y)
    np.testing.assert_array_equal(model.classes_, [7, 17, 27, 37, 47])
    np.testing.assert_array_equal(model.predict(X), 10 * reference.predict(X) + 7)
    # fewer distinct labels than n_components=None finds: one component per class
    three = np.where(np.isin(y, [0, 1, 2]), y, -1)
    assert len(gmmkit.SemiSupervisedGaussianMixture(random_state=0).fit(X, three).classes_) == 3
    # n_components=5 with labels 0..2 keeps classes 3 and 4 as components without labels
    five = gmmkit.SemiSupervisedGaussianMixture(5, random_state=0).fit(X, three)
    np.testing.assert_array_equal(five.classes_, np.arange(5))


def test_model_file_round_trip_with_string_classes(tmp_path):
    X, _, y = five_gaussians(0)
    model = gmmkit.SemiSupervisedGaussianMixture(random_state=0).fit(X, named_labels(y))
    model.save(tmp_path / "named.gmm")
    loaded = gmmkit.load(tmp_path / "named.gmm")
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    np.testing.assert_array_equal(loaded.transduction_, model.transduction_)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.n_components is None


def test_bad_parameters():
    X, _, y = five_gaussians(0)
    with pytest.raises(ValueError, match="alpha"):
        gmmkit.SemiSupervisedGaussianMixture(5, alpha=0.0).fit(X, y)
    with pytest.raises(ValueError, match="n_components"):
        gmmkit.SemiSupervisedGaussianMixture(5000).fit(X, np.full(len(X), -1))
    # float labels holding integers are fine, as are unlabelled fits with another init
    gmmkit.SemiSupervisedGaussianMixture(5, random_state=0).fit(X, y.astype(float))
    gmmkit.SemiSupervisedGaussianMixture(5, init_params="kmeans", random_state=0).fit(
        X, np.full(len(X), -1)
    )


@pytest.mark.parametrize("covariance_type", ["VEV", "EEI"])
def test_an_mclust_model_end_to_end(covariance_type):
    X, truth, y = five_gaussians(0)
    model = gmmkit.SemiSupervisedGaussianMixture(5, covariance_type=covariance_type,
                                                 random_state=0).fit(X, y)
    assert model.covariance_type == covariance_type
    assert_model_structure(model)
    labelled = y >= 0
    np.testing.assert_array_equal(model.transduction_[labelled], y[labelled])
    # a constrained model of these five (variable-volume) classes is still a fair classifier
    assert float(np.mean(model.predict(X) == truth)) > 0.7
    *_, precisions = labelled_initialisation(
        X, y, None, 5, covariance_type, 1e-6, np.random.default_rng(0))
    assert precisions.shape == model.precisions_.shape
