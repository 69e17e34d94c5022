"""Missing cells in data files and on the command line: ``allow_missing`` in the readers
(the cells pandas reads as missing, in memory and streamed), ``gmmkit fit --missing
marginalize`` (exact and ``--online``) and ``gmmkit anomalies --missing marginalize``
against the library's estimators with ``missing="marginalize"``, ``predict`` with such
models, and the errors without the option."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gmmkit
from gmmkit import cli
from gmmkit.data import (
    MISSING_VALUES,
    DataFileError,
    MissingValueError,
    open_table,
    read_table,
    row_blocks,
    streams,
)
from gmmkit.engines.sources import ChunkSource
from gmmkit.mixture import GaussianMixture
from gmmkit.modelfile import load

rng = np.random.default_rng(13)
BLOBS = np.vstack([rng.normal(0.0, 1.0, (60, 3)), rng.normal(5.0, 1.0, (60, 3))])
# cells written as missing, with the text used for each (every kind pandas users write)
TOKENS = ["", "NA", "NaN", "nan", "N/A", "NULL", "None", "<NA>"]
MASK = rng.random(BLOBS.shape) < 0.15
MASK[3] = True  # a row with nothing observed
FIT = ["-k", "2", "--seed", "0", "--max-iter", "40", "--init", "kmeans"]


def _gappy() -> np.ndarray:
    X = BLOBS.copy()
    X[MASK] = np.nan
    return X


def _write_csv(path: Path, X: np.ndarray, header: str = "a,b,c") -> Path:
    lines = [header]
    for i, row in enumerate(X):
        cells = [TOKENS[(i + j) % len(TOKENS)] if np.isnan(v) else repr(float(v))
                 for j, v in enumerate(row)]
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def _write_parquet(path: Path, X: np.ndarray) -> Path:
    # nulls in one column, NaN values in the others
    columns = {
        "a": pa.array(X[:, 0], mask=np.isnan(X[:, 0])),
        "b": pa.array(X[:, 1]),
        "c": pa.array(X[:, 2], mask=np.isnan(X[:, 2])),
    }
    pq.write_table(pa.table(columns), path, row_group_size=32)
    return path


def _run(args: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    code = exit_info.value.code
    return int(code) if code is not None else 0, captured.out, captured.err


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What every ``open_table`` call of the CLI returned."""
    returned: list[Any] = []
    original = gmmkit.data.open_table

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        returned.append(result[0])
        return result

    monkeypatch.setattr(gmmkit.data, "open_table", spy)
    return returned


# ----------------------------------------------------------------------------- readers
def test_missing_cells_read_as_pandas_reads_them(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    path = _write_csv(tmp_path / "gaps.csv", _gappy())
    expected = pd.read_csv(path).to_numpy(dtype=np.float64)  # pandas' default na_values
    assert np.isnan(expected).sum() == MASK.sum()
    X, names = read_table(path, allow_missing=True)
    assert names == ["a", "b", "c"]
    np.testing.assert_array_equal(X, expected)
    assert set(TOKENS) <= set(MISSING_VALUES)
    for limit in (1, None):  # streamed in small blocks, and in memory
        data, _ = open_table(path, allow_missing=True, max_in_memory_bytes=limit)
        if limit == 1:
            assert isinstance(data, ChunkSource)
            data.block_bytes = 256
        blocks = list(row_blocks(data, 16))
        assert limit is None or len(blocks) > 3
        np.testing.assert_array_equal(np.concatenate(blocks), expected)


def test_parquet_nulls_and_nan_read_as_missing(tmp_path: Path) -> None:
    X = _gappy()
    path = _write_parquet(tmp_path / "gaps.parquet", X)
    data, _ = read_table(path, allow_missing=True)
    np.testing.assert_array_equal(data, X)
    source, _ = open_table(path, allow_missing=True, max_in_memory_bytes=1)
    assert isinstance(source, ChunkSource)
    np.testing.assert_array_equal(np.concatenate(list(row_blocks(source, 16))), X)
    first = int(np.flatnonzero(np.isnan(X[:, 0]))[0])
    with pytest.raises(MissingValueError, match=f"data row {first + 1}, column 'a'"):
        read_table(path)
    row, col = np.argwhere(np.isnan(X))[0]
    source, _ = open_table(path, max_in_memory_bytes=1)
    with pytest.raises(MissingValueError, match=f"data row {row + 1}, column '{'abc'[col]}'"):
        list(row_blocks(source, 16))


def test_without_allow_missing_the_first_gap_is_named(tmp_path: Path) -> None:
    X = BLOBS.copy()
    X[7, 1] = np.nan  # line 9 (the header is line 1)
    path = _write_csv(tmp_path / "gap.csv", X)
    with pytest.raises(MissingValueError, match=r"line 9, column 'b'"):
        read_table(path)
    source, _ = open_table(path, max_in_memory_bytes=1)
    with pytest.raises(MissingValueError, match=r"line 9, column 'b'"):
        list(row_blocks(source, 16))
    # infinity is never a missing value
    path.write_text(path.read_text().replace("\n" + ",".join(
        repr(float(v)) for v in BLOBS[20]) + "\n", "\n1.0,inf,2.0\n"))
    with pytest.raises(DataFileError, match=r"line 22, column 'b' is 'inf'") as info:
        read_table(path, allow_missing=True)
    assert not isinstance(info.value, MissingValueError)


def test_a_column_without_observed_values_is_an_error(tmp_path: Path) -> None:
    X = BLOBS.copy()
    X[:, 2] = np.nan
    path = _write_csv(tmp_path / "empty.csv", X)
    message = r"column 'c' has no observed value"
    with pytest.raises(DataFileError, match=message):
        read_table(path, allow_missing=True)
    source, _ = open_table(path, allow_missing=True, max_in_memory_bytes=1)
    with pytest.raises(DataFileError, match=message):
        list(row_blocks(source, 16))
    parquet = _write_parquet(tmp_path / "empty.parquet", X)
    with pytest.raises(DataFileError, match=message):
        read_table(parquet, allow_missing=True)
    source, _ = open_table(parquet, allow_missing=True, max_in_memory_bytes=1)
    with pytest.raises(DataFileError, match=message):
        list(row_blocks(source, 16))
    np.testing.assert_array_equal(read_table(path, "a,b", allow_missing=True)[0], X[:, :2])


# ------------------------------------------------------------------------- command line
def _library_model(X: np.ndarray) -> GaussianMixture:
    return GaussianMixture(2, missing="marginalize", random_state=0, max_iter=40,
                           init_params="kmeans").fit(X)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_cli_fit_and_predict_with_missing_equal_the_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    opened: list[Any], kind: str,
) -> None:
    X = _gappy()
    path = (_write_csv(tmp_path / "gaps.csv", X) if kind == "csv"
            else _write_parquet(tmp_path / "gaps.parquet", X))
    with pytest.warns(UserWarning, match="no observed value"):  # row 3
        reference = _library_model(X)
    expected_proba = reference.predict_proba(X)
    expected_log_density = reference.score_samples(X)
    assert np.isfinite(expected_log_density).all()
    outputs = {}
    for mode, limit in (("memory", None), ("streamed", 1)):
        monkeypatch.setattr(streams, "MAX_IN_MEMORY_BYTES", limit)
        model_path = tmp_path / f"{mode}.gmm"
        code, out, err = _run(["fit", path, *FIT, "--missing", "marginalize",
                               "-o", model_path], capsys)
        assert code == 0, err
        model = load(model_path)
        assert model.missing == "marginalize"
        for name in ("weights_", "means_", "covariances_"):
            np.testing.assert_allclose(getattr(model, name), getattr(reference, name),
                                       rtol=1e-10, atol=1e-12, err_msg=f"{mode} {name}")
        predictions = tmp_path / f"{mode}.csv"
        code, _, err = _run(["predict", model_path, path, "-o", predictions], capsys)
        assert code == 0, err
        table = np.loadtxt(predictions, delimiter=",", skiprows=1)
        np.testing.assert_array_equal(table[:, 0], reference.predict(X))
        np.testing.assert_allclose(table[:, 1:3], expected_proba, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(table[:, 3], expected_log_density, rtol=1e-10)
        summary = [line for line in out.splitlines() if "saved to" not in line]
        outputs[mode] = (summary, predictions.read_text())
    assert outputs["streamed"] == outputs["memory"]
    kinds = [isinstance(x, ChunkSource) for x in opened]
    assert kinds == [False, False, True, True]  # fit and predict, in memory then streamed


@pytest.mark.parametrize("streamed", [False, True])
def test_cli_refuses_gaps_by_default_and_names_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    streamed: bool,
) -> None:
    monkeypatch.setattr(streams, "MAX_IN_MEMORY_BYTES", 1 if streamed else None)
    X = BLOBS.copy()
    X[4, 2] = np.nan  # written as "None"
    path = _write_csv(tmp_path / "gap.csv", X)
    code, _, err = _run(["fit", path, *FIT], capsys)
    assert code == 1
    assert "line 6, column 'c' is 'None', a missing value" in err, err
    assert "--missing marginalize" in err, err
    parquet = _write_parquet(tmp_path / "gap.parquet", X)
    code, _, err = _run(["fit", parquet, *FIT], capsys)
    assert code == 1
    assert "data row 5, column 'c'" in err and "--missing marginalize" in err, err
    # a model fitted without the option does not predict rows with gaps
    model_path = tmp_path / "complete.gmm"
    complete = _write_csv(tmp_path / "complete.csv", BLOBS)
    assert _run(["fit", complete, *FIT, "-o", model_path], capsys)[0] == 0
    code, _, err = _run(["predict", model_path, path], capsys)
    assert code == 1
    assert "line 6, column 'c'" in err and "fit --missing marginalize" in err, err
    code, _, err = _run(["anomalies", path, "--seed", "0"], capsys)
    assert code == 1
    assert "line 6, column 'c'" in err and "pass --missing marginalize" in err, err


def test_cli_missing_option_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = BLOBS.copy()
    empty[:, 0] = np.nan
    code, _, err = _run(["fit", _write_csv(tmp_path / "empty.csv", empty), *FIT,
                         "--missing", "marginalize"], capsys)
    assert code == 1 and "column 'a' has no observed value" in err, err
    code, out, _ = _run(["fit", "--help"], capsys)
    assert code == 0 and "empty fields, NA, NaN, nan" in " ".join(out.split())
    code, out, _ = _run(["anomalies", "--help"], capsys)
    assert code == 0 and "chi-square tail probability" in " ".join(out.split())
    assert "empty fields, NA, NaN, nan" in " ".join(out.split())


def _table(path: Path) -> np.ndarray:
    return np.genfromtxt(path, delimiter=",", skip_header=1)


@pytest.mark.parametrize("streamed", [False, True])
def test_cli_anomalies_with_missing_equal_the_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    opened: list[Any], streamed: bool,
) -> None:
    monkeypatch.setattr(streams, "MAX_IN_MEMORY_BYTES", 1 if streamed else None)
    X = _gappy()
    path = _write_csv(tmp_path / "gaps.csv", X)
    with pytest.warns(UserWarning, match="no observed value"):  # row 3
        reference = gmmkit.AnomalyDetector(2, missing="marginalize", random_state=0,
                                           contamination=0.05).fit(X)
    out, model_path = tmp_path / "flags.csv", tmp_path / "detector.gmm"
    code, _, err = _run(["anomalies", path, "-k", "2", "--seed", "0", "--contamination",
                         "0.05", "--missing", "marginalize", "--all-rows", "-o", out,
                         "--save-model", model_path], capsys)
    assert code == 0, err
    assert isinstance(opened[0], ChunkSource) == streamed
    assert out.read_text().splitlines()[0] == "row,log_density,decision,outlier,a,b,c"
    table = _table(out)
    np.testing.assert_array_equal(table[:, 0], np.arange(1, len(X) + 1))
    np.testing.assert_allclose(table[:, 1], reference.score_samples(X), rtol=1e-9)
    np.testing.assert_allclose(table[:, 2], reference.decision_function(X), rtol=1e-9,
                               atol=1e-9)
    np.testing.assert_array_equal(table[:, 3], reference.predict(X) == -1)
    np.testing.assert_array_equal(table[:, 4:], X)  # missing cells written as nan
    assert table[:, 3].sum() == int(0.05 * len(X))
    # the saved detector scores the file's incomplete rows again
    predictions = tmp_path / "predictions.csv"
    code, _, err = _run(["predict", model_path, path, "-o", predictions], capsys)
    assert code == 0, err
    np.testing.assert_allclose(_table(predictions)[:, 1], table[:, 2], rtol=1e-12, atol=1e-12)


def test_cli_online_fit_with_missing_is_partial_fit_over_the_batches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    X = _gappy()
    path = _write_csv(tmp_path / "gaps.csv", X)
    model_path = tmp_path / "online.gmm"
    code, _, err = _run(["fit", path, "-k", "2", "--seed", "0", "--online", "--batch-size",
                         "50", "--missing", "marginalize", "-o", model_path], capsys)
    assert code == 0, err
    expected = GaussianMixture(2, random_state=0, missing="marginalize")
    with pytest.warns(UserWarning, match="no observed value"):  # row 3, in the first batch
        for start in range(0, len(X), 50):
            expected.partial_fit(X[start : start + 50])
    model = load(model_path)
    assert model.n_steps_ == 3 and model.missing == "marginalize"
    np.testing.assert_allclose(model.means_, expected.means_, rtol=1e-12)
    np.testing.assert_allclose(model.covariances_, expected.covariances_, rtol=1e-12)


def test_library_sources_with_missing_cells_fit_as_the_array(tmp_path: Path) -> None:
    X = _gappy()
    csv_path = _write_csv(tmp_path / "gaps.csv", X)
    parquet_path = _write_parquet(tmp_path / "gaps.parquet", X)
    with pytest.warns(UserWarning, match="no observed value"):
        reference = _library_model(X)
    with pytest.raises(MissingValueError, match="line 5, column 'a'"):  # row 3: all missing
        _library_model(gmmkit.read_csv(csv_path))
    for source in (gmmkit.read_csv(csv_path, allow_missing=True),
                   gmmkit.read_parquet(parquet_path)):  # Parquet nulls: the estimator decides
        with pytest.warns(UserWarning, match="no observed value"):
            model = _library_model(source)
        np.testing.assert_allclose(model.means_, reference.means_, rtol=1e-10)
        np.testing.assert_allclose(model.covariances_, reference.covariances_, rtol=1e-10)
    with pytest.raises(ValueError, match="missing='marginalize'"):
        GaussianMixture(2).fit(gmmkit.read_parquet(parquet_path))


def test_streamed_npy_with_nan_names_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    opened: list[Any],
) -> None:
    monkeypatch.setattr(streams, "MAX_IN_MEMORY_BYTES", 1)  # a memory map
    X = _gappy()
    np.save(tmp_path / "gaps.npy", X)
    code, _, err = _run(["fit", tmp_path / "gaps.npy", *FIT], capsys)
    assert code == 1 and "NaN" in err and "--missing marginalize" in err, err
    assert isinstance(opened[0], np.memmap)
    model_path = tmp_path / "m.gmm"
    code, _, err = _run(["fit", tmp_path / "gaps.npy", *FIT, "--missing", "marginalize",
                         "-o", model_path], capsys)
    assert code == 0, err
    with pytest.warns(UserWarning, match="no observed value"):
        reference = _library_model(X)
    np.testing.assert_allclose(load(model_path).means_, reference.means_, rtol=1e-10)
    code, _, err = _run(["select", _write_csv(tmp_path / "gaps.csv", X), "--k", "1-2"],
                        capsys)
    assert code == 1 and "to select with missing values" in err, err
    assert "--missing marginalize" in err, err
