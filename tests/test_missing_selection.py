"""Model selection with missing values (``select(..., missing="marginalize")``,
``GaussianMixtureSelector(missing=...)``, ``gmmkit select --missing marginalize``): the
table's log-likelihood, BIC, AIC and ICL against a brute-force computation with scipy's
densities on each row's observed coordinates, identity with the complete-data selection
when nothing is missing, the choice of K on data with gaps, and the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.metrics import adjusted_rand_score

import gmmkit
from _helpers import full_covariances
from _mclust import reference
from gmmkit import GaussianMixtureSelector
from gmmkit.apps.selection import TABLE_COLUMNS
from gmmkit.cli import cli
from gmmkit.mixture import MissingRowsWarning

# rows that lose every cell to the 20 % gaps are reported; the test that counts them
# catches the warning itself
pytestmark = pytest.mark.filterwarnings("ignore::gmmkit.mixture.MissingRowsWarning")

D = 3
CENTRES = np.array([[0.0, 0.0, 0.0], [7.0, 1.0, -2.0], [1.0, 8.0, 4.0]])


def _clusters(n: int, seed: int, rate: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three well-separated clusters with one correlated covariance (``n`` rows each),
    their labels, and a copy with a fraction ``rate`` of the cells missing completely at
    random."""
    rng = np.random.default_rng(seed)
    mixing = np.eye(D) + 0.3 * rng.normal(size=(D, D))
    X = np.vstack([rng.normal(size=(n, D)) @ mixing + centre for centre in CENTRES])
    labels = np.repeat(np.arange(len(CENTRES)), n)
    Xm = X.copy()
    Xm[rng.random(X.shape) < rate] = np.nan
    return X, labels, Xm


def _mclust_df(k: int, d: int, model: str) -> int:
    """mclust's own number of free parameters (``nMclustParams``, from the fixtures)."""
    return next(
        row["df"] for row in reference()["n_params"]
        if (row["G"], row["d"], row["model"]) == (k, d, model)
    )


def _brute_force(model: gmmkit.GaussianMixture, X: np.ndarray, weight: np.ndarray) -> dict:
    """Observed-data log-likelihood, BIC, AIC and ICL of ``model`` on ``X``, row by row:
    scipy's normal density of each row's observed coordinates under every component
    (rows with nothing observed are no observation and are skipped)."""
    covs = full_covariances(model.params_)
    log_density, map_log_resp, n = 0.0, 0.0, 0.0
    for x, w in zip(X, weight):
        o = ~np.isnan(x)
        if not o.any():
            continue
        joint = np.array([
            np.log(model.weights_[k])
            + multivariate_normal(model.means_[k][o], covs[k][np.ix_(o, o)]).logpdf(x[o])
            for k in range(model.n_components)
        ])
        total = logsumexp(joint)
        log_density += w * total
        map_log_resp += w * (joint.max() - total)
        n += w
    p = _mclust_df(model.n_components, X.shape[1], model.covariance_type)
    bic = -2.0 * log_density + p * np.log(n)
    return {
        "log_likelihood": log_density,
        "n_parameters": p,
        "bic": bic,
        "aic": -2.0 * log_density + 2.0 * p,
        "icl": bic - 2.0 * map_log_resp,
    }


def test_nan_without_the_option_is_an_error_naming_it() -> None:
    X, _, Xm = _clusters(20, seed=0)
    with pytest.raises(ValueError, match=r"contains NaN.*missing='marginalize' to select\(\)"):
        gmmkit.select(Xm, (1, 2), "VVV")
    with pytest.raises(ValueError, match="missing='marginalize' to GaussianMixtureSelector"):
        GaussianMixtureSelector((1, 2), covariance_types="VVV").fit(Xm)
    with pytest.raises(ValueError, match="missing must be one of"):
        gmmkit.select(Xm, (1, 2), "VVV", missing="drop")
    # a selector fitted without the option refuses NaN in prediction the same way
    selector = GaussianMixtureSelector((1, 2), covariance_types="VVV", max_iter=5).fit(X)
    with pytest.raises(ValueError, match="missing='marginalize' to GaussianMixtureSelector"):
        selector.predict(Xm)
    # infinity is never a missing value; a column never observed cannot be modelled
    bad = Xm.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="inf"):
        gmmkit.select(bad, (1, 2), "VVV", missing="marginalize")
    bad = Xm.copy()
    bad[:, 1] = np.nan
    with pytest.raises(ValueError, match=r"column\(s\) \[1\]"):
        gmmkit.select(bad, (1, 2), "VVV", missing="marginalize")


@pytest.mark.parametrize("weighted", [False, True])
def test_criteria_are_the_observed_datas_brute_force(weighted: bool) -> None:
    """Every candidate's row (a constrained mclust model among them) equals scipy's
    observed-data computation at its fitted parameters, with mclust's parameter count
    and BIC's n the (weighted) number of rows with something observed."""
    _, _, Xm = _clusters(30, seed=1)
    Xm = np.vstack([Xm, np.full((2, D), np.nan)])  # two rows with nothing observed
    rng = np.random.default_rng(2)
    weight = rng.integers(1, 4, size=len(Xm)).astype(float) if weighted else np.ones(len(Xm))
    n_empty = int(np.isnan(Xm).all(axis=1).sum())
    with pytest.warns(MissingRowsWarning, match=f"{n_empty} row"):
        result = gmmkit.select(
            Xm, (1, 2, 3), ("VVV", "VEV", "EEI", "VII"), missing="marginalize",
            sample_weight=weight if weighted else None, max_iter=60, random_state=0,
        )
    assert len(result.models) == 12
    for row in result.rows:
        model = result.models[(row["n_components"], row["covariance_type"])]
        assert model.missing == "marginalize"
        expected = _brute_force(model, Xm, weight)
        assert row["n_parameters"] == expected["n_parameters"], row
        for name in ("log_likelihood", "bic", "aic", "icl"):
            assert row[name] == pytest.approx(expected[name], rel=1e-10), (name, row)
    # the selected model computes its criteria on incomplete rows the same way
    best = result.best
    seen = ~np.isnan(Xm).all(axis=1)
    assert best.bic(Xm[seen], sample_weight=weight[seen]) == pytest.approx(
        result.best_row["bic"], rel=1e-10
    )


def test_without_nan_the_table_is_identical_to_the_complete_data_selection() -> None:
    X, _, _ = _clusters(25, seed=3)
    kwargs = dict(n_components=(1, 2, 3), covariance_types=("VVV", "EEI", "VEV"),
                  random_state=0)
    plain = gmmkit.select(X, **kwargs)
    marginal = gmmkit.select(X, missing="marginalize", **kwargs)
    assert len(plain.rows) == len(marginal.rows) == 9
    for a, b in zip(plain.rows, marginal.rows):
        for column in TABLE_COLUMNS:
            np.testing.assert_array_equal(a[column], b[column], err_msg=column)
    np.testing.assert_array_equal(plain.best.means_, marginal.best.means_)
    assert plain.best.missing == "error" and marginal.best.missing == "marginalize"


def test_twenty_percent_missing_still_selects_the_three_clusters(tmp_path: Path) -> None:
    _, labels, Xm = _clusters(40, seed=2)
    assert 0.15 < np.isnan(Xm).mean() < 0.25
    selector = GaussianMixtureSelector(
        range(1, 6), covariance_types=("VVV", "EEE", "VII", "EEI"), missing="marginalize",
        random_state=0,
    ).fit(Xm)
    assert selector.n_components_ == 3
    assert selector.best_estimator_.missing == "marginalize"
    # the selected model labels every row from its observed cells (the complete rows
    # as the truth does; what is left of the others may no longer separate the clusters)
    predicted = selector.predict(Xm)
    complete = ~np.isnan(Xm).any(axis=1)
    assert adjusted_rand_score(labels[complete], predicted[complete]) > 0.95
    assert set(np.unique(predicted[~complete])) <= {0, 1, 2}
    assert np.all(np.isfinite(selector.score_samples(Xm)))
    # saved and loaded, the selector keeps the option and predicts the same
    path = tmp_path / "selector.gmm"
    selector.save(path)
    loaded = gmmkit.load(path)
    assert loaded.missing == "marginalize"
    np.testing.assert_array_equal(loaded.predict(Xm), predicted)


def test_memory_mapped_input_selects_as_in_memory(tmp_path: Path) -> None:
    _, _, Xm = _clusters(20, seed=5)
    np.save(tmp_path / "x.npy", Xm)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    kwargs = dict(n_components=(1, 2), covariance_types="VVV", missing="marginalize",
                  max_iter=30, random_state=0)
    a = gmmkit.select(Xm, **kwargs)
    b = gmmkit.select(mapped, **kwargs)
    assert [row["bic"] for row in a.rows] == [row["bic"] for row in b.rows]


def test_cli_select_with_missing_cells_and_predict_with_the_saved_model(
    tmp_path: Path,
) -> None:
    _, _, Xm = _clusters(25, seed=6)
    csv = tmp_path / "gaps.csv"
    np.savetxt(csv, Xm, delimiter=",", header="a,b,c", comments="", fmt="%.17g")  # nan
    runner = CliRunner()
    args = ["select", str(csv), "--k", "1-3", "--covariance", "VVV,EEI", "--seed", "0",
            "--max-iter", "40"]
    refused = runner.invoke(cli, args)
    assert refused.exit_code == 1 and "--missing marginalize" in refused.output
    model_path, table_path = tmp_path / "best.gmm", tmp_path / "table.csv"
    result = runner.invoke(cli, [*args, "--missing", "marginalize", "-o", str(model_path),
                                 "--table", str(table_path)])
    assert result.exit_code == 0, result.output
    expected = gmmkit.select(Xm, (1, 2, 3), ("VVV", "EEI"), missing="marginalize",
                             max_iter=40, random_state=0)
    best = expected.best
    assert (f"best by BIC: {best.n_components} components, covariance "
            f"'{best.covariance_type}'") in result.output
    table = np.genfromtxt(table_path, delimiter=",", names=True, dtype=None, encoding=None)
    np.testing.assert_allclose(table["bic"], [row["bic"] for row in expected.rows],
                               rtol=1e-12)
    model = gmmkit.load(model_path)
    assert model.missing == "marginalize"
    out = tmp_path / "labels.csv"
    predicted = runner.invoke(cli, ["predict", str(model_path), str(csv), "-o", str(out)])
    assert predicted.exit_code == 0, predicted.output
    written = np.genfromtxt(out, delimiter=",", names=True)
    np.testing.assert_array_equal(written["label"], best.predict(Xm))
    assert np.all(np.isfinite(written["log_density"]))
    np.testing.assert_allclose(written["log_density"], best.score_samples(Xm), rtol=1e-12)
