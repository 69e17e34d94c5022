"""Model selection: criteria against independent scipy computations, degeneracy flags,
the estimator form in a Pipeline, and bad input."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

import gmmkit
from _mclust import load_dataset, reference
from gmmkit.apps.selection import TABLE_COLUMNS, DegenerateMixtureWarning
from gmmkit.core.covariance import MODEL_NAMES

SKLEARN_TYPES = ("full", "tied", "diag", "spherical")


def three_blobs(seed: int = 0, n: int = 600) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0], [6.0, 1.0], [2.0, 7.0]])
    covs = np.array(
        [[[1.0, 0.6], [0.6, 1.0]], [[0.5, -0.3], [-0.3, 1.5]], [[2.0, 0.0], [0.0, 0.3]]]
    )
    sizes = [n // 2, n // 3, n - n // 2 - n // 3]
    return np.vstack([rng.multivariate_normal(m, c, s) for m, c, s in zip(means, covs, sizes)])


def full_covs(model):
    k, d = model.means_.shape
    cov = model.covariances_
    if model.covariance_type == "full":
        return cov
    if model.covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if model.covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(d) for c in cov])


def free_parameters(k: int, d: int, covariance_type: str) -> int:
    cov = {"full": k * d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": k * d,
           "spherical": k}[covariance_type]
    return cov + k * d + k - 1


def scipy_log_joint(model, X):
    covs = full_covs(model)
    return np.column_stack(
        [
            np.log(model.weights_[k]) + multivariate_normal(model.means_[k], covs[k]).logpdf(X)
            for k in range(model.n_components)
        ]
    )


@pytest.fixture(scope="module")
def blobs_result():
    X = three_blobs()
    return X, gmmkit.select(X, range(1, 7), SKLEARN_TYPES, random_state=0)


def test_table_has_every_candidate_and_column(blobs_result):
    _, result = blobs_result
    assert list(result.table.columns) == list(TABLE_COLUMNS)
    assert len(result.table) == 6 * 4
    assert sorted({(r["n_components"], r["covariance_type"]) for r in result.rows}) == sorted(
        (k, t) for k in range(1, 7) for t in SKLEARN_TYPES
    )
    assert result.table["best"].sum() == 1


def test_criteria_match_an_independent_scipy_computation(blobs_result):
    X, result = blobs_result
    n, d = X.shape
    for row in result.rows:
        model = result.models[(row["n_components"], row["covariance_type"])]
        log_joint = scipy_log_joint(model, X)
        log_likelihood = logsumexp(log_joint, axis=1).sum()
        p = free_parameters(row["n_components"], d, row["covariance_type"])
        bic = -2 * log_likelihood + p * np.log(n)
        log_resp = log_joint - logsumexp(log_joint, axis=1, keepdims=True)
        icl = bic - 2 * log_resp.max(axis=1).sum()
        assert row["n_parameters"] == p
        assert row["log_likelihood"] == pytest.approx(log_likelihood, rel=1e-9)
        assert row["bic"] == pytest.approx(bic, rel=1e-9)
        assert row["aic"] == pytest.approx(-2 * log_likelihood + 2 * p, rel=1e-9)
        assert row["icl"] == pytest.approx(icl, rel=1e-9)
        assert row["icl"] >= row["bic"]


def test_selects_the_true_model_like_scikit_learn(blobs_result):
    X, result = blobs_result
    assert result.best.n_components == 3
    assert result.best.covariance_type == "full"
    assert result.best_row["n_components"] == 3
    # scikit-learn's own BIC loop over K (full covariance) agrees
    sk_bic = [SkGaussianMixture(k, random_state=0).fit(X).bic(X) for k in range(1, 6)]
    assert int(np.argmin(sk_bic)) + 1 == 3
    ours = result.table.query("covariance_type == 'full'").sort_values("n_components")
    np.testing.assert_allclose(ours["bic"].to_numpy()[:3], sk_bic[:3], rtol=1e-3)
    # beyond the true K, gmmkit's tighter default convergence may find a better optimum
    assert np.all(ours["bic"].to_numpy()[3:5] <= np.array(sk_bic[3:5]) * (1 + 1e-3))


@pytest.mark.parametrize("criterion", ["bic", "aic", "icl"])
def test_best_minimises_the_criterion_among_sound_candidates(criterion):
    X = three_blobs(seed=1, n=300)
    result = gmmkit.select(X, range(1, 5), ("full", "diag"), criterion=criterion,
                           random_state=0)
    sound = result.table[~result.table["degenerate"]]
    best = sound.loc[sound[criterion].idxmin()]
    assert (result.best.n_components, result.best.covariance_type) == (
        best["n_components"], best["covariance_type"]
    )
    assert result.criterion == criterion


def integer_counts(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.poisson(3, 300), rng.poisson(12, 200)]).astype(float)[:, None]


def test_spikes_on_integer_data_are_flagged_and_not_selected():
    X = integer_counts()
    result = gmmkit.select(X, range(1, 10), ("full",), random_state=0)
    table = result.table
    degenerate = table[table["degenerate"]]
    assert len(degenerate) > 0
    assert all("collapsed" in reason for reason in degenerate["reason"])
    # the spikes would win on raw BIC: that is what the flag protects against
    assert table.loc[table["bic"].idxmin(), "degenerate"]
    assert not result.best_row["degenerate"]
    assert result.best.n_components == 2
    # a flagged spike really is one: a component whose variance is at the reg_covar level
    spike = result.models[(int(degenerate.iloc[0]["n_components"]), "full")]
    assert spike.covariances_.min() < 1e-4 * X.var()


def test_all_degenerate_warns_and_still_returns():
    X = np.repeat([[0.0], [1.0], [2.0]], 30, axis=0)
    with pytest.warns(DegenerateMixtureWarning, match="every candidate"):
        result = gmmkit.select(X, [3], ("full",), random_state=0)
    assert result.best.n_components == 3
    assert result.best_row["degenerate"]


def test_tiny_components_are_flagged():
    X = three_blobs(seed=2, n=300)
    # an impossible size requirement: flagged (with the reason) and warned about
    with pytest.warns(DegenerateMixtureWarning):
        result = gmmkit.select(X, [3], ("full",), min_component_size=1000, random_state=0)
    assert "effective samples" in result.rows[0]["reason"]


def test_table_without_pandas_is_a_list_of_dicts(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    result = gmmkit.select(three_blobs(n=150), [1, 2], ("full",), random_state=0)
    assert isinstance(result.table, list)
    assert list(result.table[0]) == list(TABLE_COLUMNS)
    assert result.table == result.rows


def test_sample_weight_equals_repeated_rows():
    X = three_blobs(seed=3, n=120)
    weight = np.random.default_rng(0).integers(1, 3, len(X))
    # K = 1 has a closed-form fit, so both runs reach the same optimum
    weighted = gmmkit.select(X, [1], ("full", "diag"), sample_weight=weight, random_state=0)
    repeated = gmmkit.select(np.repeat(X, weight, axis=0), [1], ("full", "diag"),
                             random_state=0)
    for a, b in zip(weighted.rows, repeated.rows):
        assert a["bic"] == pytest.approx(b["bic"], rel=1e-9)
        assert a["log_likelihood"] == pytest.approx(b["log_likelihood"], rel=1e-9)


def test_selector_in_a_pipeline():
    X = three_blobs(seed=4, n=300) * [1.0, 100.0]
    pipe = make_pipeline(
        StandardScaler(),
        gmmkit.GaussianMixtureSelector(n_components=(1, 2, 3, 4), covariance_types=("full",),
                                       random_state=0),
    )
    labels = pipe.fit(X).predict(X)
    selector = pipe[-1]
    assert selector.n_components_ == 3
    assert selector.covariance_type_ == "full"
    assert set(np.unique(labels)) == {0, 1, 2}
    scaled = pipe[0].transform(X)
    np.testing.assert_allclose(pipe.score_samples(X),
                               selector.best_estimator_.score_samples(scaled))
    assert selector.selection_.best is selector.best_estimator_
    assert selector.predict_proba(scaled).shape == (300, 3)
    assert selector.sample(5)[0].shape == (5, 2)
    assert selector.bic(scaled) == pytest.approx(selector.selection_.best_row["bic"], rel=1e-9)


def test_selector_passes_scikit_learn_checks():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(
            gmmkit.GaussianMixtureSelector(n_components=(1, 2), covariance_types=("full", "diag"),
                                           random_state=0)
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"criterion": "likelihood"}, ValueError, "criterion"),
        ({"n_components": [1, 500]}, ValueError, "larger than the number of samples"),
        ({"n_components": []}, ValueError, "empty"),
        ({"n_components": 0}, ValueError, ">= 1"),
        ({"n_components": [1.5]}, TypeError, "integers"),
        ({"covariance_types": ("full", "banded")}, ValueError, "covariance type"),
        ({"n_init": 0}, ValueError, "n_init"),
        ({"min_variance_ratio": 1.5}, ValueError, "min_variance_ratio"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    X = three_blobs(n=60)
    with pytest.raises(error, match=match):
        gmmkit.select(X, **{"n_components": [1, 2], **kwargs})


def test_bad_data():
    with pytest.raises(ValueError, match="2D array"):
        gmmkit.select(np.arange(10.0), [1])
    with pytest.raises(ValueError, match=r"NaN|infinity"):
        gmmkit.select(np.array([[0.0], [np.nan], [1.0]]), [1])
    with pytest.raises(ValueError, match="larger than the number of samples"):
        # zero-weight rows do not count
        gmmkit.select(three_blobs(n=60), [3], sample_weight=np.r_[np.ones(2), np.zeros(58)])


# ------------------------------------------------------------------ mclust's models and table
def test_default_models_are_mclusts():
    X = three_blobs(n=150)
    quick = {"tol": 1e-3, "init_params": "kmeans"}  # the models are tested, not the fits
    result = gmmkit.select(X, [1, 2], random_state=0, **quick)
    assert list(dict.fromkeys(r["covariance_type"] for r in result.rows)) == list(MODEL_NAMES)
    assert len(result.rows) == 2 * 14
    one_d = gmmkit.select(X[:, :1], [1, 2], random_state=0, **quick)
    assert [r["covariance_type"] for r in one_d.rows] == ["E", "E", "V", "V"]
    selector = gmmkit.GaussianMixtureSelector((1, 2), random_state=0, **quick).fit(X[:, :1])
    assert selector.covariance_type_ in ("E", "V")


def test_em_settings_default_to_gaussian_mixtures():
    X = three_blobs(n=150)
    defaults = gmmkit.GaussianMixture().get_params()
    names = ("n_init", "max_iter", "tol", "reg_covar", "init_params")
    result = gmmkit.select(X, [2], ("VEV",), random_state=0)
    assert {n: result.best.get_params()[n] for n in names} == {n: defaults[n] for n in names}
    given = {"n_init": 2, "max_iter": 7, "tol": 1e-2, "reg_covar": 1e-5,
             "init_params": "random_from_data"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = gmmkit.select(X, [2], ("VEV",), random_state=0, **given)
    assert {n: result.best.get_params()[n] for n in names} == given
    selector = gmmkit.GaussianMixtureSelector()
    assert all(getattr(selector, n) is None for n in names)


def test_a_model_named_twice_is_fitted_once():
    result = gmmkit.select(three_blobs(n=150), [1, 2], ("full", "VVV", "EEI", "diag"),
                           tol=1e-3, random_state=0)
    assert list(dict.fromkeys(r["covariance_type"] for r in result.rows)) == [
        "full", "EEI", "diag"]


def test_bic_table_reads_like_mclusts_on_iris():
    """K = 1 has a closed-form fit: every model's BIC equals mclust's; K = 2 finds mclust's
    best (VEV, 2) with mclust's BIC, as the top of the summary."""
    X = load_dataset("iris")
    ref = reference()["datasets"]["iris"]
    result = gmmkit.select(X, [1, 2], random_state=0)
    table = result.bic_table()
    assert list(table.columns) == list(MODEL_NAMES)
    assert list(table.index) == [1, 2]
    assert table.index.name == "K"
    for model in MODEL_NAMES:
        assert table.loc[1, model] == pytest.approx(ref["fits"][model]["1"]["bic"], rel=1e-9)
    # mclust's sign: the negative of gmmkit's
    for row in result.rows:
        value = table.loc[row["n_components"], row["covariance_type"]]
        if row["degenerate"]:
            assert np.isnan(value)
        else:
            assert value == -row["bic"]
    (model, k, value), *_ = result.top_models()
    assert (model, k) == (ref["best"]["model"], ref["best"]["K"])
    assert value == pytest.approx(ref["best"]["bic"], rel=1e-6)
    assert (result.best.covariance_type, result.best.n_components) == (model, k)


def test_bic_table_marks_degenerate_and_failed_fits_na():
    X = np.repeat([[0.0], [1.0], [2.0]], 30, axis=0)  # three spikes at K = 3
    result = gmmkit.select(X, [1, 3], random_state=0)
    table = result.bic_table()
    assert list(table.columns) == ["E", "V"]
    flagged = [(r["n_components"], r["covariance_type"]) for r in result.rows if r["degenerate"]]
    assert flagged
    for k, model in flagged:
        assert np.isnan(table.loc[k, model])
    text = result.format_table()
    assert "NA" in text
    assert "larger is better" in text
    # sklearn's names sort in mclust's order (spherical = VII before diag = VVI ...)
    mixed = gmmkit.select(three_blobs(n=150), [1, 2], ("full", "tied", "diag", "spherical"),
                          random_state=0)
    assert list(mixed.bic_table().columns) == ["spherical", "diag", "tied", "full"]


def test_format_table_and_top_models():
    X = three_blobs(n=200)
    result = gmmkit.select(X, [1, 2, 3], tol=1e-3, init_params="kmeans", random_state=0)
    top = result.top_models(3)
    assert len(top) == 3
    assert [v for _, _, v in top] == sorted((v for _, _, v in top), reverse=True)
    assert top[0][:2] == (result.best.covariance_type, result.best.n_components)
    text = result.format_table(width=80)
    lines = text.splitlines()
    assert lines[0].startswith("Bayesian Information Criterion (BIC)")
    assert all(len(line) <= 80 for line in lines)
    # fourteen columns at width 80 come in blocks, each with its header and K = 1..3
    headers = [line for line in lines if line.split() and line.split()[0] in MODEL_NAMES]
    assert len(headers) >= 2
    assert sum(len(h.split()) for h in headers) == 14
    assert "Top 3 models based on the BIC criterion:" in text
    assert f"{top[0][0]},{top[0][1]}" in text
    assert "BIC diff" in text
    # another criterion has its own name and sign
    icl = result.format_table("icl")
    assert icl.startswith("Integrated Complete-data Likelihood (ICL)")
    assert result.criterion_table("icl").loc[1, "VVV"] == -next(
        r["icl"] for r in result.rows if (r["n_components"], r["covariance_type"]) == (1, "VVV"))
    with pytest.raises(ValueError, match="criterion"):
        result.criterion_table("loglik")


def test_bic_table_without_pandas(monkeypatch):
    result = gmmkit.select(three_blobs(n=150), [1, 2], ("VVV", "EII"), random_state=0)
    monkeypatch.setitem(sys.modules, "pandas", None)
    table = result.bic_table()
    assert isinstance(table, dict)
    assert list(table) == ["EII", "VVV"]
    assert table["VVV"][2] == -next(
        r["bic"] for r in result.rows if (r["n_components"], r["covariance_type"]) == (2, "VVV"))
    assert "Top 2 models" in result.format_table(n_top=2)


@pytest.mark.parametrize(
    ("types", "match"),
    [(("vvv",), "did you mean 'VVV'"), (("FULL",), "did you mean 'full'"),
     (("VVV", "banded"), "covariance type"), ((), "empty")],
)
def test_covariance_names_are_checked(types, match):
    with pytest.raises(ValueError, match=match):
        gmmkit.select(three_blobs(n=60), [1], types)
