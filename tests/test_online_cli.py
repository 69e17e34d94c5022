"""``gmmkit fit --online``: one pass of mini-batches over a file (in-process CLI runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import gmmkit
from gmmkit.cli import cli


@pytest.fixture
def data(tmp_path: Path) -> tuple[np.ndarray, Path, Path]:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [5.0, 1.0], [-1.0, 5.0]])
    X = centres[rng.integers(0, 3, size=9000)] + rng.normal(size=(9000, 2))
    csv = tmp_path / "x.csv"
    np.savetxt(csv, X, delimiter=",", header="a,b", comments="", fmt="%.17g")
    npy = tmp_path / "x.npy"
    np.save(npy, X)
    return X, csv, npy


def test_online_fit_is_partial_fit_over_the_file_in_batches(data, tmp_path):
    X, csv, npy = data
    runner = CliRunner()
    for source in (csv, npy):
        out = tmp_path / f"{source.suffix[1:]}.gmm"
        result = runner.invoke(cli, ["fit", str(source), "-k", "3", "--online", "--batch-size",
                                     "2000", "--seed", "0", "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert "stepwise EM: one pass, 5 mini-batches" in result.output
        model = gmmkit.load(out)
        # the same as the library's partial_fit on the same batches (the CLI's seed
        # becomes random_state, the last batch is the 1000 rows left)
        expected = gmmkit.GaussianMixture(3, random_state=0)
        for start in range(0, len(X), 2000):
            expected.partial_fit(X[start : start + 2000])
        assert model.n_steps_ == 5
        np.testing.assert_allclose(model.means_, expected.means_, rtol=1e-12)


def test_online_refuses_options_of_exact_em(data):
    _, csv, _ = data
    result = CliRunner().invoke(cli, ["fit", str(csv), "-k", "3", "--online", "--n-init", "2"])
    assert result.exit_code != 0 and "--n-init do(es) not apply with --online" in result.output
    result = CliRunner().invoke(cli, ["fit", str(csv), "-k", "3", "--learning-rate", "0.1"])
    assert result.exit_code != 0 and "applies only with --online" in result.output


def test_info_of_an_online_model_says_why_it_has_no_criteria(data, tmp_path):
    """A stream's log-likelihood is the last mini-batch's: BIC from it and a training
    size would be wrong, and a fit-then-partial_fit model must not keep the fit's size."""
    X, _, _ = data
    model = gmmkit.GaussianMixture(3, random_state=0).fit(X[:3000])
    assert model.n_samples_fit_ == 3000
    model.partial_fit(X[3000:5000])
    assert not hasattr(model, "n_samples_fit_") and not hasattr(model, "sample_weight_sum_")
    path = tmp_path / "online.gmm"
    model.save(path)
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "not defined for a model trained online" in result.output
    assert "older gmmkit" not in result.output
