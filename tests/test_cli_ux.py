"""The command line as a newcomer meets it: fast start, progress, warnings, summaries."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gmmkit
from _helpers import run_cli
from gmmkit import _cli_constants
from gmmkit.apps._common import COVARIANCE_HELP
from gmmkit.core.covariance import COVARIANCE_TYPES
from gmmkit.mixture import GaussianMixture

HEAVY = ("numpy", "scipy", "sklearn")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run(*args: object, process: bool = False) -> subprocess.CompletedProcess[str]:
    """``gmmkit ARGS``, which must succeed: in-process, or with ``process`` in a subprocess
    (``python -m gmmkit.cli``, stderr a real pipe)."""
    if process:
        result = subprocess.run([sys.executable, "-m", "gmmkit.cli", *map(str, args)],
                                capture_output=True, text=True, timeout=300)
    else:
        result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ux")
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(c, 0.5, size=(150, 2)) for c in ((0, 0), (5, 5))])
    paths = {"X": folder / "X.npy", "one": folder / "one.npy", "folder": folder}
    np.save(paths["X"], X)
    np.save(paths["one"], np.concatenate([rng.normal(0, 1, 200), rng.normal(8, 2, 200)])[:, None])
    paths["model"] = folder / "model.gmm"
    run("fit", paths["X"], "-k", 2, "--seed", 0, "-o", paths["model"], "-q")
    return paths


# ----------------------------------------------------------------------------- start-up
@pytest.mark.parametrize(
    "args", [["--version"], ["--help"], ["fit", "--help"], ["select", "--help"],
             ["segment", "--help"], ["info", "--help"]]
)
def test_version_and_help_import_no_heavy_module(args: list[str]) -> None:
    code = (
        "import sys\n"
        "from gmmkit.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout[-300:]


def test_literal_choices_and_defaults_equal_the_library() -> None:
    assert _cli_constants.COVARIANCE_TYPES == tuple(COVARIANCE_TYPES)
    assert _cli_constants.COVARIANCE_HELP == COVARIANCE_HELP
    params = GaussianMixture().get_params()
    for name, value in _cli_constants.GM_DEFAULTS.items():
        assert params[name] == value, name
    constraint = GaussianMixture._parameter_constraints["init_params"][0]
    assert set(_cli_constants.INIT_METHODS) == set(constraint.options)
    assert _cli_constants.INIT_METHODS[0] == params["init_params"]


def test_package_names_load_lazily() -> None:
    code = (
        "import sys, gmmkit\n"
        f"assert not any(m in sys.modules for m in {HEAVY!r})\n"
        "assert gmmkit.GaussianMixture.__name__ == 'GaussianMixture'\n"
        "assert callable(gmmkit.mixture.fit_progress)\n"
        "assert 'numpy' in sys.modules\n"
        "try:\n"
        "    gmmkit.no_such_name\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert set(gmmkit.__all__) <= set(dir(gmmkit))


# ----------------------------------------------------------------------------- progress
def test_progress_forced_shows_steps_and_quiet_shows_nothing(data: dict[str, Path]) -> None:
    out = data["folder"] / "progress.gmm"
    loud = run("fit", data["X"], "-k", 2, "--seed", 0, "--n-init", 2, "--progress", "always",
               "-o", out)
    text = ANSI.sub("", loud.stderr)
    for word in ("reading", "fit: EM", "iteration", "log-likelihood", "writing", "0:00:0"):
        assert word in text, word
    assert "fit: EM" not in loud.stdout and "\x1b[" not in loud.stdout  # stdout: data only
    # not a terminal: no progress unless forced
    assert run("fit", data["X"], "-k", 2, "--seed", 0).stderr == ""
    assert run("fit", data["X"], "-k", 2, "--seed", 0, "--progress", "never").stderr == ""
    quiet = run("fit", data["X"], "-k", 2, "--seed", 0, "--progress", "always", "-q", "-o", out)
    assert quiet.stdout == "" and quiet.stderr == ""


def test_warning_is_on_its_own_line(data: dict[str, Path]) -> None:
    """(In a subprocess: the display and the warning as they reach a real stderr.)"""
    result = run("fit", data["X"], "-k", 2, "--seed", 0, "--progress", "always", "--tol", "0",
                 "--max-iter", "2", process=True)
    lines = [line for line in result.stderr.split("\n") if "gmmkit: warning:" in line]
    assert lines, result.stderr
    for line in lines:
        before = line.split("gmmkit: warning:")[0]
        # only cursor control before it (clearing the display): no progress text
        assert ANSI.sub("", before).replace("\r", "").strip() == "", repr(line)
        assert "iteration" not in ANSI.sub("", line), repr(line)


def test_quiet_prints_only_requested_data(data: dict[str, Path]) -> None:
    predicted = run("predict", data["model"], data["X"], "-q", "--progress", "always")
    assert predicted.stderr == ""
    assert predicted.stdout.splitlines()[0] == "label,p0,p1,log_density"
    assert len(predicted.stdout.splitlines()) == 301
    flagged = run("anomalies", data["X"], "-q", "--seed", 0, "--progress", "always")
    assert flagged.stderr == "" and flagged.stdout.startswith("row,")
    assert run("info", data["model"], "-q").stdout == ""


def test_predict_to_dash_says_stdout(data: dict[str, Path]) -> None:
    result = run("predict", data["model"], data["X"], "-o", "-")
    assert result.stdout.splitlines()[0] == "label,p0,p1,log_density"
    assert "300 rows written to stdout" in result.stderr
    assert "written to -" not in result.stderr


# ----------------------------------------------------------------------------- summaries
def test_fit_shows_standard_deviations_and_counts(data: dict[str, Path]) -> None:
    text = run("fit", data["one"], "-k", 2, "--seed", 0).stdout
    assert "2 components" in text and "400 rows x 1 column " in text
    assert "1 columns" not in text
    model = GaussianMixture(2, random_state=0).fit(np.load(data["one"]))
    assert "sd[x0]" in text and "numbered from 0" in text
    for sd in np.sqrt(model.covariances_[:, 0, 0]):
        assert f"{sd:.6g}" in text
    single = run("fit", data["one"], "-k", 1, "--seed", 0).stdout
    assert "1 component," in single and "1 components" not in single


@pytest.mark.parametrize("covariance", ["full", "tied", "diag", "spherical", "VEI", "EII"])
def test_standard_deviations_of_every_layout(covariance: str) -> None:
    from gmmkit.cli import _standard_deviations

    X = np.random.default_rng(0).normal(size=(120, 3)) * (1, 2, 3)
    model = GaussianMixture(2, covariance_type=covariance, random_state=0).fit(X)
    cov = np.asarray(model.covariances_)
    # scikit-learn's documented shapes: (K, D, D), (D, D), (K, D) or (K,)
    if cov.shape == (2, 3, 3):
        variances = np.array([np.diag(c) for c in cov])
    elif cov.shape == (3, 3):
        variances = np.array([np.diag(cov)] * 2)
    elif cov.shape == (2, 3):
        variances = cov
    else:
        variances = np.repeat(cov.reshape(2, 1), 3, axis=1)
    np.testing.assert_allclose(_standard_deviations(model), np.sqrt(variances), rtol=1e-12)


def test_info_gaussian_mixture(data: dict[str, Path]) -> None:
    text = run("info", data["model"]).stdout
    model = gmmkit.load(data["model"])
    assert ": a GaussianMixture" in text
    assert "converged after" in text and "free parameters" in text
    assert "log-likelihood" in text and "sd[x0]" in text and "weight" in text
    assert f"{model.weights_[0]:.6g}" in text and f"{model.means_[0, 0]:.6g}" in text


def _printed(name: str, text: str) -> str:
    match = re.search(rf"\b{name} (\S+)", text)
    assert match, text
    return match.group(1)


def test_info_prints_the_training_criteria(data: dict[str, Path]) -> None:
    X = np.load(data["X"])
    text = run("info", data["model"]).stdout
    model = gmmkit.load(data["model"])
    assert model.n_samples_fit_ == len(X) and model.sample_weight_sum_ == len(X)
    assert _printed("BIC", text) == f"{model.bic(X):.6g}"
    assert _printed("AIC", text) == f"{model.aic(X):.6g}"
    assert "300 training rows" in text
    # weighted: n is the weights' sum, as in bic(X, sample_weight)
    weight = np.random.default_rng(0).integers(1, 4, len(X)).astype(float)
    weighted = GaussianMixture(2, random_state=0).fit(X, sample_weight=weight)
    weighted.save(data["folder"] / "weighted.gmm")
    text = run("info", data["folder"] / "weighted.gmm").stdout
    assert _printed("BIC", text) == f"{weighted.bic(X, sample_weight=weight):.6g}"
    assert _printed("AIC", text) == f"{weighted.aic(X, sample_weight=weight):.6g}"
    assert f"total sample weight {weight.sum():.6g}" in text


def test_info_on_a_file_without_the_training_size(data: dict[str, Path]) -> None:
    model = gmmkit.load(data["model"])  # as files written before the size was recorded
    del model.n_samples_fit_, model.sample_weight_sum_
    model.save(data["folder"] / "older.gmm")
    text = run("info", data["folder"] / "older.gmm").stdout
    assert "BIC, AIC: unavailable" in text and "older gmmkit" in text
    assert "BIC " not in text.replace("BIC, AIC", "")


def test_info_selector_criteria_from_its_table(data: dict[str, Path]) -> None:
    X = np.load(data["X"])
    selector = gmmkit.GaussianMixtureSelector(n_components=[1, 2], covariance_types=["VVV"],
                                              random_state=0).fit(X)
    selector.save(data["folder"] / "selector.gmm")
    text = run("info", data["folder"] / "selector.gmm").stdout
    best = selector.best_estimator_
    assert _printed("BIC", text) == f"{best.bic(X):.6g}"
    assert _printed("AIC", text) == f"{best.aic(X):.6g}"
    assert _printed("ICL", text) == f"{best.icl(X):.6g}"


def test_info_anomaly_detector(data: dict[str, Path]) -> None:
    path = data["folder"] / "detector.gmm"
    run("anomalies", data["X"], "--seed", 0, "--save-model", path, "-o",
        data["folder"] / "flagged.csv", "-q")
    text = run("info", path).stdout
    detector = gmmkit.load(path)
    assert ": an AnomalyDetector" in text and "a AnomalyDetector" not in text
    assert "threshold" in text and f"{detector.offset_:.6g}" in text
    assert "converged" in text and "mean[x0]" in text and "sd[x1]" in text


# ----------------------------------------------------------------------------- segment
def test_segment_label_png_is_a_palette_image(tmp_path: Path) -> None:
    from PIL import Image

    from gmmkit.apps.segmentation import label_palette

    image = np.zeros((24, 36, 3), dtype=np.uint8)
    image[:, :12] = (200, 30, 30)
    image[:, 12:24] = (30, 200, 30)
    image[:, 24:] = (30, 30, 200)
    source = tmp_path / "photo.png"
    gmmkit.write_image(source, image)
    labels_png, labels_npy = tmp_path / "labels.png", tmp_path / "labels.npy"
    run("segment", source, "-k", 3, "-o", tmp_path / "seg.png", "--labels", labels_png,
        "--seed", 0, "-q")
    run("segment", source, "-k", 3, "-o", tmp_path / "seg.png", "--labels", labels_npy,
        "--seed", 0, "-q")
    with Image.open(labels_png) as picture:
        assert picture.mode == "P"
        indices = np.asarray(picture)
        palette = np.asarray(picture.getpalette()[: 3 * 3]).reshape(3, 3)
    np.testing.assert_array_equal(indices, np.load(labels_npy))  # pixel value = label
    assert len({tuple(c) for c in palette}) == 3  # three distinct colours
    np.testing.assert_array_equal(palette, label_palette(3))
    assert len({tuple(c) for c in label_palette(256)}) == 256
