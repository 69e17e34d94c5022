"""The one data reader (pyarrow): compressed text, Parquet directories, column specs,
streamed and in-memory reads that agree, the CLI's streaming path, and the CSV writer."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gmmkit
from gmmkit import cli
from gmmkit.data import (
    DataFileError,
    open_table,
    parse_columns,
    read_table,
    row_blocks,
    streams,
    write_table,
)
from gmmkit.data.reader import TextReader
from gmmkit.data.sources import CSVSource, ParquetSource
from gmmkit.engines.sources import ChunkSource

rng = np.random.default_rng(3)
BLOBS = np.vstack([rng.normal(0.0, 1.0, (150, 3)), rng.normal(6.0, 1.0, (150, 3))])
FAST = {"init_params": "kmeans", "max_iter": 30, "random_state": 0, "n_jobs": 1}


def _csv_bytes(X: np.ndarray = BLOBS, header: str = "a,b,c") -> bytes:
    lines = [header, *(",".join(repr(float(v)) for v in row) for row in X)]
    return ("\n".join(lines) + "\n").encode()


def _compress(data: bytes, suffix: str) -> bytes:
    if suffix == ".gz":
        return gzip.compress(data)
    if suffix == ".bz2":
        return bz2.compress(data)
    codec = {".zst": "zstd", ".lz4": "lz4"}[suffix]
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, codec) as stream:
        stream.write(data)
    return bytes(sink.getvalue())


def _run(args: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    code = exit_info.value.code
    return int(code) if code is not None else 0, captured.out, captured.err


# ----------------------------------------------------------------------------- reading
@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".zst", ".lz4"])
def test_compressed_text_through_every_reader(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"x.csv{suffix}"
    path.write_bytes(_compress(_csv_bytes(), suffix))
    data, names = read_table(path)
    np.testing.assert_array_equal(data, BLOBS)
    assert names == ["a", "b", "c"]
    streamed = np.concatenate(list(gmmkit.read_csv(path, "^b").blocks(64)))
    np.testing.assert_array_equal(streamed, BLOBS[:, [0, 2]])


def test_compressed_file_with_a_bad_cell_names_its_line(tmp_path: Path) -> None:
    text = _csv_bytes().replace(b"\n", b"\nx,1,2\n", 40)  # a word on line 41's first field
    path = tmp_path / "bad.csv.zst"
    path.write_bytes(_compress(text, ".zst"))
    with pytest.raises(DataFileError, match=r"line \d+, column 'a' has 'x', not a number"):
        read_table(path)


def test_parquet_directory_through_read_table(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, part in enumerate(np.array_split(BLOBS, 3)):
        table = pa.table({"a": part[:, 0], "b": part[:, 1], "c": part[:, 2],
                          "tag": ["t"] * len(part)})
        pq.write_table(table, folder / f"part-{i}.parquet")
    data, names = read_table(folder, "^tag")
    np.testing.assert_array_equal(data, BLOBS)
    assert names == ["a", "b", "c"]
    with pytest.raises(DataFileError, match="column 'tag'"):
        read_table(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFileError, match="directory"):
        read_table(empty)


def test_comment_late_in_a_stream_restarts_where_it_stopped(tmp_path: Path) -> None:
    """pyarrow reads the raw file until a comment stops it; the rewrite pass takes over
    after the rows already delivered, so no row is lost or repeated."""
    lines = _csv_bytes().decode().splitlines()
    lines[250] += "  # checked by hand"
    lines.insert(120, "# a note")
    path = tmp_path / "late.csv"
    path.write_text("\n".join(lines) + "\n")
    source = CSVSource(path, block_bytes=1 << 12)  # many blocks before the comments
    assert not source._reader.clean  # pyarrow reads the file itself until it fails
    for _ in range(2):  # the first pass restarts; the second starts cleaned
        blocks = list(source.blocks(16))
        assert len(blocks) > 3
        np.testing.assert_array_equal(np.concatenate(blocks), BLOBS)
        assert source._reader.clean
    np.testing.assert_array_equal(read_table(path)[0], BLOBS)


def test_streamed_and_in_memory_reads_agree(tmp_path: Path) -> None:
    X = rng.normal(size=(5000, 4)) * 10.0 ** rng.integers(-30, 30, size=(5000, 4))
    path = tmp_path / "wide.csv"
    path.write_text("w,x,y,z\n" + "".join(",".join(f"{v:.17g}" for v in row) + "\n"
                                          for row in X))
    data, _ = read_table(path, "3,0-1")
    np.testing.assert_array_equal(data, X[:, [3, 0, 1]])
    source = gmmkit.read_csv(path, "3,0-1")
    np.testing.assert_array_equal(np.concatenate(list(source.blocks(100))), data)


# ----------------------------------------------------------------------------- columns
NAMES = ["id", "x-1", "a", "b", "c", "label"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, [0, 1, 2, 3, 4, 5]),
        ("2-4", [2, 3, 4]),
        ("^label", [0, 1, 2, 3, 4]),
        ("^0,^label", [1, 2, 3, 4]),
        ("^0-1, ^5", [2, 3, 4]),
        ("a-c", [2, 3, 4]),
        ("c,a", [4, 2]),
        ("x-1", [1]),  # an exact name wins over a range
        ("1-4,^b", [1, 2, 4]),
        (["label", 0], [5, 0]),
        (["2-3"], [2, 3]),
        (np.int64(3), [3]),
    ],
)
def test_column_specs(spec: Any, expected: list[int]) -> None:
    assert parse_columns(spec, NAMES, len(NAMES), "t.csv") == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("zz", "unknown column 'zz'"),
        ("9", "column index 9 out of range"),
        ("4-2", "runs backwards"),
        ("a,2", "column 'a' is selected twice"),
        ("^0-5", "no columns selected"),
        ("3-", "a range is 'first-last'"),
        ("", "no columns selected"),
    ],
)
def test_column_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(DataFileError, match=message) as error:
        parse_columns(spec, NAMES, len(NAMES), "t.csv")
    assert str(error.value).startswith("t.csv: ")


def test_column_specs_without_names() -> None:
    assert parse_columns("^0", None, 3, "t.npy") == [1, 2]
    with pytest.raises(DataFileError, match=r"unknown column 'a' .*no header"):
        parse_columns("a", None, 3, "t.npy")
    with pytest.raises(TypeError):
        parse_columns([1.5], None, 3, "t.npy")  # type: ignore[list-item]


def test_column_specs_on_every_reader(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_bytes(_csv_bytes())
    np.save(tmp_path / "t.npy", BLOBS)
    pq.write_table(pa.table({"a": BLOBS[:, 0], "b": BLOBS[:, 1], "c": BLOBS[:, 2]}),
                   tmp_path / "t.parquet")
    for name in ("t.csv", "t.npy", "t.parquet"):
        np.testing.assert_array_equal(read_table(tmp_path / name, "^1")[0], BLOBS[:, [0, 2]])
    parquet = gmmkit.read_parquet(tmp_path / "t.parquet", "1-2")
    assert parquet.columns == ["b", "c"]


def test_excel_byte_order_mark_names_the_first_column(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + _csv_bytes(header="alpha;beta;gamma").replace(b",", b";"))
    data, names = read_table(path, "alpha,^beta")
    assert names == ["alpha"]
    np.testing.assert_array_equal(data, BLOBS[:, :1])


# ----------------------------------------------------------------------------- open_table
def test_open_table_streams_above_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(_csv_bytes()))
    array, names = open_table(path, "^a")
    assert isinstance(array, np.ndarray) and names == ["b", "c"]
    source, names = open_table(path, "^a", max_in_memory_bytes=1000)
    assert isinstance(source, CSVSource) and names == ["b", "c"]
    np.testing.assert_array_equal(np.concatenate(list(row_blocks(source, 50))), array)
    pq.write_table(pa.table({"a": BLOBS[:, 0], "b": BLOBS[:, 1]}), tmp_path / "t.parquet")
    source, names = open_table(tmp_path / "t.parquet", "b", max_in_memory_bytes=1000)
    assert isinstance(source, ParquetSource) and names == ["b"]
    np.save(tmp_path / "t.npy", BLOBS)
    mapped, _ = open_table(tmp_path / "t.npy", max_in_memory_bytes=1000)
    assert isinstance(mapped, np.memmap)
    with pytest.raises(DataFileError, match=r"column subset of a \.npy file"):
        open_table(tmp_path / "t.npy", "0", max_in_memory_bytes=1000)


def test_file_sources_keep_their_old_import_path() -> None:
    import gmmkit.data.sources as moved
    import gmmkit.engines
    from gmmkit.engines.sources import CSVSource as OldCSV
    from gmmkit.engines.sources import ParquetSource as OldParquet

    assert OldCSV is moved.CSVSource is gmmkit.engines.CSVSource is CSVSource
    assert OldParquet is moved.ParquetSource is gmmkit.engines.ParquetSource
    assert issubclass(moved.CSVSource, ChunkSource)


def test_estimated_size_follows_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(_csv_bytes())
    estimate = streams.estimated_bytes(path, 3)
    assert 0.5 * 2 * BLOBS.nbytes < estimate < 2 * 2 * BLOBS.nbytes


@pytest.fixture
def spy_open_table(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What open_table returned, per CLI call."""
    returned: list[Any] = []
    original = streams.open_table

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        returned.append(result[0])
        return result

    monkeypatch.setattr(gmmkit.data, "open_table", spy)
    return returned


def test_cli_streams_large_files_with_identical_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    spy_open_table: list[Any],
) -> None:
    data = tmp_path / "d.csv.gz"
    data.write_bytes(gzip.compress(_csv_bytes()))
    outputs: dict[str, list[str]] = {}
    for mode, limit in (("memory", None), ("streamed", 1)):
        monkeypatch.setattr(streams, "MAX_IN_MEMORY_BYTES", limit)
        model = tmp_path / f"{mode}.gmm"
        code, out, err = _run(["fit", data, "-k", "2", "--columns", "^c", "--seed", "0",
                               "-o", model], capsys)
        assert code == 0, err
        summary = [line for line in out.splitlines() if "saved to" not in line]
        code, _, err = _run(["predict", model, data, "-o", tmp_path / f"{mode}.csv"], capsys)
        assert code == 0, err
        # a streamed fit must not keep the columns' names on the model when an in-memory
        # fit does not: predict's plain blocks then warned "X does not have valid
        # feature names" once per block
        assert "feature names" not in err, err
        code, anomalies, err = _run(["anomalies", data, "--columns", "0-1", "--seed", "0",
                                     "--contamination", "0.05"], capsys)
        assert code == 0, err
        outputs[mode] = [*summary, (tmp_path / f"{mode}.csv").read_text(), anomalies]
    kinds = [type(x) for x in spy_open_table]  # fit, predict and anomalies
    assert kinds[:3] == [np.ndarray] * 3
    assert all(issubclass(kind, ChunkSource) for kind in kinds[3:]) and len(kinds) == 6
    assert outputs["streamed"] == outputs["memory"]
    assert outputs["memory"][-1].count("\n") == 1 + 15  # header and 5 % of 300 rows


class WholeFileRead(AssertionError):
    """Raised by a tripwire: a command read a whole data file into memory."""


def _trip_whole_reads(monkeypatch: pytest.MonkeyPatch, block_rows: list[int]) -> None:
    """Stream every table, refuse whole-file reads, parse text in 64 KiB blocks and
    record their rows in ``block_rows``."""
    monkeypatch.setattr(streams, "MAX_IN_MEMORY_BYTES", 1)

    def whole(*args: Any, **kwargs: Any) -> Any:
        raise WholeFileRead(f"read_table{args}")

    monkeypatch.setattr(gmmkit.data, "read_table", whole)
    monkeypatch.setattr(gmmkit.data.tables, "read_table", whole)
    original = TextReader.blocks

    def small_blocks(self: Any, block_bytes: int, check: bool) -> Any:
        for block in original(self, 1 << 16, check):
            block_rows.append(len(block))
            yield block

    monkeypatch.setattr(TextReader, "blocks", small_blocks)


def test_cli_anomalies_streams_a_large_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    X = np.vstack([rng.normal(0.0, 1.0, (2500, 2)), rng.normal(6.0, 0.5, (2500, 2))])
    data = tmp_path / "d.csv"
    data.write_bytes(_csv_bytes(X, "a,b"))
    args = ["anomalies", data, "-k", "2", "--seed", "0", "--contamination", "0.01",
            "--all-rows"]
    outputs = {}
    block_rows: list[int] = []
    for mode in ("memory", "streamed"):
        folder = tmp_path / mode
        folder.mkdir()
        if mode == "streamed":  # tripwires: no whole-file read, only small text blocks
            _trip_whole_reads(monkeypatch, block_rows)
        code, out, err = _run(
            [*args, "-o", folder / "out.csv", "--save-model", folder / "model.gmm"], capsys)
        assert code == 0, err
        outputs[mode] = [out.replace(str(folder), ""), (folder / "out.csv").read_text(),
                         gmmkit.load(folder / "model.gmm").offset_]
    assert outputs["streamed"] == outputs["memory"]
    assert "50 of 5000 rows flagged" in outputs["memory"][0]
    # every pass (EM, threshold, scoring) read the file in blocks of under 2000 rows
    assert max(block_rows) < 2000 and sum(block_rows) % len(X) == 0
    assert sum(block_rows) // len(X) > 5


def test_cli_reads_a_parquet_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, part in enumerate(np.array_split(BLOBS, 2)):
        pq.write_table(pa.table({"a": part[:, 0], "b": part[:, 1]}), folder / f"{i}.parquet")
    code, out, err = _run(["fit", folder, "-k", "2", "--seed", "0"], capsys)
    assert code == 0, err
    assert "300 rows" in out


# ----------------------------------------------------------------------------- writing
def test_write_table_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = rng.integers(-(2**62), 2**62, 1000)
    values = rng.normal(size=1000) * 10.0 ** rng.integers(-300, 300, 1000)
    values[:4] = [0.1, 1 / 3, np.finfo(float).tiny, -0.0]
    flags = rng.random(1000) < 0.5
    path = tmp_path / "out.csv"
    write_table(path, [labels, values, flags], ["label", "value", "flag"])
    text = path.read_text()
    assert text.startswith("label,value,flag\n")
    back = np.genfromtxt(path, delimiter=",", skip_header=1, dtype=None)
    np.testing.assert_array_equal(back["f0"], labels)  # integers exactly
    np.testing.assert_array_equal(back["f1"], values)  # floats round-trip exactly
    np.testing.assert_array_equal(back["f2"], flags.astype(int))
    assert text.splitlines()[1].split(",")[1] == "0.1"  # the shortest such text
    write_table(None, [np.array([1, 2]), np.array(["a,b", "c"])], ["k", "name, full"])
    assert capsys.readouterr().out == 'k,"name, full"\n1,"a,b"\n2,c\n'
    with pytest.raises(ValueError, match="one length"):
        write_table(path, [np.arange(3), np.arange(4)], ["a", "b"])
    assert path.read_text() == text  # a failed write leaves the file as it was
