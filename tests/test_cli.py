"""The ``gmmkit`` command line, end to end on real files: in-process through
``gmmkit.cli.main`` (exit status, stdout, stderr), and in subprocesses through the
installed ``gmmkit`` script where the process boundary is the point (a fit with its summary
and model file, an error that must be one line of stderr and no traceback)."""

from __future__ import annotations

import contextlib
import csv
import io
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gmmkit
import gmmkit.modelfile
from _helpers import run_cli as run
from gmmkit.core.covariance import MODEL_NAMES

CENTRES = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])


def _gmmkit_command() -> list[str]:
    script = Path(sys.executable).parent / "gmmkit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gmmkit.cli"]


def run_process(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_gmmkit_command(), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def ok(*args: object) -> subprocess.CompletedProcess[str]:
    result = run(*args)
    assert result.returncode == 0, result.stderr
    return result


def fails(*args: object, code: int | None = None, process: bool = False) -> str:
    """Run a command that must fail; return its single stderr line."""
    result = (run_process if process else run)(*args)
    assert result.returncode != 0
    if code is not None:
        assert result.returncode == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "error" in lines[0]
    return lines[0]


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], np.array(rows[1:], dtype=float)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(c, 0.7, size=(200, 2)) for c in CENTRES])
    noise = rng.normal(size=(len(X), 1))
    paths = {"X": folder / "X.npy"}
    np.save(paths["X"], X)
    # a header, an extra column and its columns in another order than the model's
    paths["csv"] = folder / "data.csv"
    with open(paths["csv"], "w") as handle:
        handle.write("noise,b,a\n")
        for (a, b), n in zip(X, noise[:, 0]):
            handle.write(f"{float(n)!r},{float(b)!r},{float(a)!r}\n")
    paths["tsv"] = folder / "data.tsv"
    np.savetxt(paths["tsv"], X, delimiter="\t")
    paths["parquet"] = folder / "data.parquet"
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "label": ["x"] * len(X)}),
                   paths["parquet"])
    paths["bad"] = folder / "bad.csv"
    paths["bad"].write_text("a,b\n1.0,2.0\n3.0,oops\n5.0,6.0\n")
    paths["model"] = folder / "model.gmm"
    ok("fit", paths["csv"], "-k", 3, "--columns", "a,b", "--seed", 0, "-o", paths["model"],
       "--quiet")
    paths["folder"] = folder
    return paths


# ----------------------------------------------------------------------------- commands
def test_fit_csv_summary_and_model(files: dict[str, Path]) -> None:
    out = files["folder"] / "fit.gmm"
    result = run_process("fit", files["csv"], "-k", 3, "--columns", "a,b", "--covariance",
                         "full", "--seed", 0, "-o", out)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for word in ("3 components", "converged", "log-likelihood", "BIC", "iterations",
                 "weight", "mean[a]", "mean[b]", f"saved to {out}"):
        assert word in text, word
    model = gmmkit.load(out)
    # the true centres, found (in some order)
    order = np.argsort(model.means_[:, 0] + 10 * model.means_[:, 1])
    np.testing.assert_allclose(model.means_[order], CENTRES, atol=0.15)
    np.testing.assert_allclose(model.weights_, 1 / 3, atol=0.02)
    assert gmmkit.modelfile.read_metadata(out)["summary"]["feature_names"] == ["a", "b"]
    # the summary's BIC is the model's BIC on the data
    X = np.load(files["X"])
    assert f"BIC {model.bic(X):.6g}" in text


@pytest.mark.parametrize("kind", ["tsv", "X", "parquet"])
def test_fit_other_formats(files: dict[str, Path], kind: str) -> None:
    out = files["folder"] / f"{kind}.gmm"
    extra = ["--columns", "a,b"] if kind == "parquet" else []
    ok("fit", files[kind], "-k", 3, "--seed", 0, "-o", out, "-q", *extra)
    reference = gmmkit.load(files["model"])
    model = gmmkit.load(out)
    X = np.load(files["X"])
    # every format reads the same numbers: the same fit
    np.testing.assert_allclose(model.score_samples(X), reference.score_samples(X), rtol=1e-10)


def test_fit_by_column_index(files: dict[str, Path]) -> None:
    out = files["folder"] / "index.gmm"
    ok("fit", files["csv"], "-k", 3, "--columns", "2,1", "--seed", 0, "-o", out, "-q")
    X = np.load(files["X"])
    np.testing.assert_allclose(
        gmmkit.load(out).score_samples(X), gmmkit.load(files["model"]).score_samples(X),
        rtol=1e-10,
    )


def test_quiet_and_progress(files: dict[str, Path]) -> None:
    quiet = ok("fit", files["X"], "-k", 3, "--seed", 1, "--quiet")
    assert quiet.stdout == "" and quiet.stderr == ""
    loud = ok("fit", files["X"], "-k", 3, "--seed", 1, "--progress", "always", "--tol", "0",
              "--max-iter", "5")
    assert "iteration" in loud.stderr and "log-likelihood" in loud.stderr
    assert "did NOT converge" in loud.stdout
    assert "warning" in loud.stderr  # ConvergenceWarning, as one line


def test_predict(files: dict[str, Path]) -> None:
    out = files["folder"] / "pred.csv"
    ok("predict", files["model"], files["csv"], "-o", out)
    header, table = read_csv(out)
    assert header == ["label", "p0", "p1", "p2", "log_density"]
    model = gmmkit.load(files["model"])
    X = np.load(files["X"])  # the csv's a,b columns, picked by name from noise,b,a
    np.testing.assert_array_equal(table[:, 0], model.predict(X))
    np.testing.assert_allclose(table[:, 1:4], model.predict_proba(X), rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(table[:, 4], model.score_samples(X), rtol=1e-9)
    np.testing.assert_allclose(table[:, 1:4].sum(axis=1), 1.0, rtol=1e-8)


def test_predict_to_stdout(files: dict[str, Path]) -> None:
    result = ok("predict", files["model"], files["X"])
    lines = result.stdout.splitlines()
    assert lines[0] == "label,p0,p1,p2,log_density"
    assert len(lines) == 601


def test_predict_wrong_width(files: dict[str, Path]) -> None:
    line = fails("predict", files["model"], files["csv"], "--columns", "a")
    assert "expects 2 columns" in line


def test_sample(files: dict[str, Path]) -> None:
    out = files["folder"] / "samples.csv"
    ok("sample", files["model"], "-n", 3000, "--seed", 5, "-o", out, "--with-labels")
    header, table = read_csv(out)
    assert header == ["a", "b", "component"]
    assert table.shape == (3000, 3)
    model = gmmkit.load(files["model"])
    for k in range(3):
        rows = table[table[:, 2] == k, :2]
        np.testing.assert_allclose(rows.mean(axis=0), model.means_[k], atol=0.1)
    again = files["folder"] / "samples2.csv"
    ok("sample", files["model"], "-n", 3000, "--seed", 5, "-o", again, "--with-labels")
    assert again.read_text() == out.read_text()


def test_select(files: dict[str, Path]) -> None:
    best = files["folder"] / "best.gmm"
    table_path = files["folder"] / "table.csv"
    result = ok("select", files["X"], "--k", "2-3", "--covariance", "all", "--seed", 0,
                "-o", best, "--table", table_path)
    assert "best by BIC: 3 components" in result.stdout
    # mclust's table: its sign, K down, the fourteen models across (in blocks), top three
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Bayesian Information Criterion (BIC)")
    assert "larger is better" in lines[0]
    assert "Top 3 models based on the BIC criterion:" in result.stdout
    headers = [line.split() for line in lines if line.split()[:1] in (["EII"], ["VVE"])]
    assert [name for header in headers for name in header] == list(MODEL_NAMES)
    model = gmmkit.load(best)
    assert model.n_components == 3
    with open(table_path, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 2 * 14
    assert {"n_components", "covariance_type", "bic", "aic", "log_likelihood"} <= set(table[0])
    assert {row["covariance_type"] for row in table} == set(MODEL_NAMES)
    # the saved best model has the smallest BIC of the table
    X = np.load(files["X"])
    assert model.bic(X) == pytest.approx(min(float(row["bic"]) for row in table), rel=1e-9)
    assert f"{-model.bic(X):.3f}" in result.stdout  # mclust's sign, in the top three


def test_every_command_takes_every_model_name(files: dict[str, Path], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from gmmkit.cli import cli

    runner = CliRunner()
    out = tmp_path / "vev.gmm"
    result = runner.invoke(cli, ["fit", str(files["X"]), "-k", "3", "--covariance", "VEV",
                                 "--seed", "0", "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert gmmkit.load(out).covariance_type == "VEV"
    chosen = runner.invoke(cli, ["select", str(files["X"]), "--k", "2-3", "--covariance",
                                 "VVV,EII,spherical", "--seed", "0", "--criterion", "icl"])
    assert chosen.exit_code == 0, chosen.output
    assert chosen.output.splitlines()[2].split() == ["EII", "spherical", "VVV"]
    assert "Integrated Complete-data Likelihood (ICL)" in chosen.output


def test_model_names_are_spelled_as_listed() -> None:
    """mclust's names upper-case, scikit-learn's lower-case, in every command with
    --covariance."""
    from click.testing import CliRunner

    from gmmkit.cli import cli

    runner = CliRunner()
    for command in ("fit", "anomalies", "segment"):
        help_text = runner.invoke(cli, [command, "--help"]).output
        assert all(name in help_text for name in ("EII", "VEV", "VVV", "full", "spherical"))
        result = runner.invoke(cli, [command, "x.npy", "-k", "2", "-o", "y.png",
                                     "--covariance", "vev"])
        assert result.exit_code == 2
        assert "'vev' is not one of" in result.output
    result = runner.invoke(cli, ["select", "x.npy", "--covariance", "vvv,FULL"])
    assert result.exit_code == 2
    assert "vvv (did you mean VVV?)" in result.output
    assert "FULL (did you mean full?)" in result.output


def test_anomalies(files: dict[str, Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    inliers = rng.normal(size=(990, 2))
    outliers = rng.uniform(6, 9, size=(10, 2)) * rng.choice([-1, 1], size=(10, 2))
    X = np.vstack([inliers, outliers])
    order = rng.permutation(len(X))
    planted = set((np.argsort(order)[990:] + 1).tolist())  # 1-based rows of the outliers
    data = tmp_path / "points.npy"
    np.save(data, X[order])
    out = tmp_path / "flagged.csv"
    model = tmp_path / "detector.gmm"
    result = ok("anomalies", data, "--contamination", 0.01, "-k", 1, "--seed", 0, "-o", out,
                "--save-model", model)
    assert "10 of 1000 rows flagged" in result.stdout
    header, table = read_csv(out)
    assert header == ["row", "log_density", "x0", "x1"]
    assert set(table[:, 0].astype(int).tolist()) == planted
    np.testing.assert_allclose(table[:, 2:], X[order][table[:, 0].astype(int) - 1], rtol=1e-9)
    detector = gmmkit.load(model)
    assert isinstance(detector, gmmkit.AnomalyDetector)
    predicted = ok("predict", model, data)
    assert predicted.stdout.splitlines()[0] == "log_density,decision,outlier"


def test_segment(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    image[:, :20] = (200, 30, 30)
    image[:, 20:40] = (30, 200, 30)
    image[:, 40:] = (30, 30, 200)
    noisy = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    source = tmp_path / "photo.png"
    gmmkit.write_image(source, noisy)
    out = tmp_path / "segmented.png"
    labels_path = tmp_path / "labels.npy"
    ok("segment", source, "-k", 3, "-o", out, "--labels", labels_path, "--seed", 0)
    segmented = gmmkit.read_image(out)
    assert segmented.shape == image.shape
    labels = np.load(labels_path)
    assert labels.shape == (40, 60)
    # each true stripe is one segment, three segments in all
    stripes = [labels[:, :20], labels[:, 20:40], labels[:, 40:]]
    assert [len(np.unique(s)) for s in stripes] == [1, 1, 1]
    assert len({int(s[0, 0]) for s in stripes}) == 3
    np.testing.assert_allclose(segmented[:, :20].reshape(-1, 3).mean(axis=0), (200, 30, 30),
                               atol=3)
    png_labels = tmp_path / "labels.png"
    ok("segment", source, "-k", 3, "-o", out, "--labels", png_labels, "--seed", 0, "-q")
    from PIL import Image

    with Image.open(png_labels) as picture:  # a palette image: pixel value = label
        assert picture.mode == "P"
        np.testing.assert_array_equal(np.asarray(picture), labels)


def test_info_and_version(files: dict[str, Path]) -> None:
    result = ok("info", files["model"])
    assert "GaussianMixture" in result.stdout and "feature_names: a, b" in result.stdout
    assert gmmkit.__version__ in ok("--version").stdout


# ----------------------------------------------------------------------------- bad input
def test_missing_data_file(files: dict[str, Path]) -> None:
    line = fails("fit", files["folder"] / "nope.csv", "-k", 2, code=1)
    assert "not found" in line and "nope.csv" in line


def test_missing_model_file(files: dict[str, Path]) -> None:
    line = fails("predict", files["folder"] / "nope.gmm", files["X"], code=1)
    assert "not found" in line


def test_non_numeric_cell(files: dict[str, Path]) -> None:
    """(In a subprocess: nothing but the one line reaches the real stderr.)"""
    line = fails("fit", files["bad"], "-k", 2, code=1, process=True)
    assert "line 3" in line and "'b'" in line and "oops" in line


def test_unknown_column(files: dict[str, Path]) -> None:
    line = fails("fit", files["csv"], "-k", 2, "--columns", "a,zz", code=1)
    assert "unknown column 'zz'" in line and "noise, b, a" in line


@pytest.mark.parametrize("k", ["0", "two"])
def test_bad_k(files: dict[str, Path], k: str) -> None:
    line = fails("fit", files["X"], "-k", k, code=2)
    assert "-k" in line


def test_k_larger_than_data(files: dict[str, Path]) -> None:
    line = fails("fit", files["bad"].with_name("X.npy"), "-k", 1000, code=1)
    assert "n_components" in line or "samples" in line


def test_bad_k_range(files: dict[str, Path]) -> None:
    line = fails("select", files["X"], "--k", "5-2", code=2)
    assert "5-2" in line


def test_corrupt_model(files: dict[str, Path], tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gmm"
    truncated.write_bytes(files["model"].read_bytes()[:700])
    line = fails("predict", truncated, files["X"], code=1)
    assert "truncated" in line or "corrupt" in line
    pickled = tmp_path / "pickled.gmm"
    pickled.write_bytes(pickle.dumps(gmmkit.load(files["model"])))
    line = fails("sample", pickled, code=1)
    assert "pickle" in line


def test_debug_shows_traceback(files: dict[str, Path]) -> None:
    result = run("fit", files["bad"], "-k", 2, "--debug")
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("gmmkit: error:")


def test_debug_does_not_outlast_its_command(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``main()`` called twice in one process (a notebook, a test): the second call,
    without ``--debug``, prints the one-line error only."""
    from gmmkit import cli

    monkeypatch.delenv("GMMKIT_DEBUG", raising=False)
    for debug, traceback_shown in ((True, True), (False, False)):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as exit_:
            cli.main(["fit", str(files["bad"]), "-k", "2", *(["--debug"] if debug else [])])
        assert exit_.value.code == 1
        assert ("Traceback" in stderr.getvalue()) is traceback_shown
