"""Numeric data tables: read ``.csv``/``.tsv``/``.txt``, ``.npy`` and ``.parquet`` files
into arrays, and write result columns as CSV (atomically)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gmmkit._atomic import atomic_write
from gmmkit.data.columns import ColumnSpec, parse_columns
from gmmkit.data.reader import TextReader
from gmmkit.data.text import COMPRESSION_SUFFIXES, DataFileError, read_layout, text_suffix

__all__ = ["DataFileError", "read_table", "write_table"]

PathLike = str | os.PathLike[str]


_TEXT_SUFFIXES = {".csv", ".tsv", ".txt", ".dat"}


def _read_text(
    file: Path, columns: ColumnSpec
) -> tuple[NDArray[np.float64], list[str] | None]:
    """The whole table through pyarrow's parser, exactly as
    :class:`~gmmkit.engines.sources.CSVSource` streams it (:class:`TextReader`)."""
    layout = read_layout(file)
    indices = parse_columns(columns, layout.names, layout.n_fields, file)
    data = TextReader(layout, indices).read()
    return data, ([layout.labels[i] for i in indices] if layout.header else None)


def _read_npy(
    file: Path, columns: ColumnSpec
) -> tuple[NDArray[np.float64], list[str] | None]:
    try:
        data = np.load(file, allow_pickle=False, mmap_mode="r")
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataFileError(
                f"{file} holds pickled objects; gmmkit never loads pickles"
            ) from None
        raise DataFileError(f"{file} is not a readable .npy file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise DataFileError(f"{file} is not a readable .npy file ({exc})") from None
    if not isinstance(data, np.ndarray):
        raise DataFileError(f"{file} is an .npz archive; give a single .npy array")
    if data.dtype.kind not in "biuf":
        raise DataFileError(f"{file} holds {data.dtype} values, not numbers")
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2:
        raise DataFileError(f"{file} holds a {data.ndim}-D array; expected rows x columns")
    indices = parse_columns(columns, None, data.shape[1], file)
    out = np.asarray(data[:, indices], dtype=np.float64)
    if out.shape[0] == 0:
        raise DataFileError(f"{file} has no data rows")
    return out, None


def _read_parquet(
    path: Path, columns: ColumnSpec
) -> tuple[NDArray[np.float64], list[str] | None]:
    import pyarrow.types as pat

    from gmmkit.data.parquet import parquet_columns, parquet_files

    files = parquet_files(path)
    selected, types = parquet_columns(files, columns, path)
    for name, arrow_type in zip(selected, types):
        if not (pat.is_integer(arrow_type) or pat.is_floating(arrow_type)
                or pat.is_boolean(arrow_type)):
            raise DataFileError(f"{path}: column {name!r} holds {arrow_type}, not numbers")
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables(
        [pq.read_table(file, columns=selected) for file in files], promote_options="permissive"
    )
    data = np.empty((table.num_rows, len(selected)), dtype=np.float64)
    for j, name in enumerate(selected):
        column = table.column(name)
        if column.null_count:
            raise DataFileError(f"{path}: column {name!r} has {column.null_count} missing values")
        data[:, j] = column.to_numpy()
    if len(data) == 0:
        raise DataFileError(f"{path} has no data rows")
    return data, selected


def read_table(
    path: PathLike, columns: ColumnSpec = None
) -> tuple[NDArray[np.float64], list[str] | None]:
    """Read a numeric table from ``.csv``/``.tsv``/``.txt`` (also ``.gz``/``.bz2``
    compressed), ``.npy`` or ``.parquet``.

    Text files are UTF-8 (a byte-order mark is skipped): the delimiter (tab, comma,
    semicolon or whitespace) is taken from the first line, which is a header when any of
    its fields is not a number; ``#`` starts a comment; every line must have the header's
    number of fields.  :func:`gmmkit.read_csv` streams the same files with the same rules
    (:mod:`gmmkit.data.text`).

    Parameters
    ----------
    path : str or path-like
    columns : str or sequence of str/int, optional
        Columns to keep, by header name or 0-based index (a string is split on commas).

    Returns
    -------
    X : ndarray of shape (n_rows, n_columns), float64
    names : list of str or None
        Column names when the file has them.

    Raises
    ------
    FileNotFoundError
    DataFileError
        For a non-numeric or empty cell (naming its line and column), a line with too
        many or too few fields (naming the line), a header naming a column twice, text
        that is not UTF-8, an unknown column, NaN or infinite values or an unsupported
        file type.
    """
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"data file not found: {file}")
    suffix = file.suffix.lower()
    if suffix == ".parquet" or (file.is_dir() and any(file.glob("*.parquet"))):
        data, names = _read_parquet(file, columns)
    elif file.is_dir():
        raise DataFileError(f"{file} is a directory without .parquet files, not a data file")
    elif text_suffix(file) in _TEXT_SUFFIXES:  # also compressed: .csv.gz, .csv.zst
        data, names = _read_text(file, columns)
    elif suffix == ".npy":
        data, names = _read_npy(file, columns)
    else:
        raise DataFileError(
            f"{file}: unsupported file type {suffix or '(none)'!r}; use .csv, .tsv, .txt "
            f"(also compressed: {', '.join(COMPRESSION_SUFFIXES)}), .npy, .parquet or a "
            "directory of .parquet files"
        )
    finite = np.isfinite(data)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        label = names[col] if names else str(col)
        raise DataFileError(
            f"{file}: data row {row + 1}, column {label!r} is {data[row, col]} (NaN and "
            "infinite values cannot be fitted)"
        )
    return data, names


def _cell(value: Any, integer: bool) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)) or (integer and isinstance(value, float)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.10g}"
    return str(value)


def write_table(
    path: PathLike | None, data: Sequence[NDArray[Any]], names: Sequence[str]
) -> None:
    """Write columns as CSV with a header row (to stdout when ``path`` is None or ``-``).

    Parameters
    ----------
    path : str, path-like or None
    data : sequence of ndarray of shape (n_rows,)
        Integer and boolean columns are written as integers, floats with 10 significant
        digits, anything else (strings) as text.
    names : sequence of str
    """
    import sys

    if len(data) != len(names):
        raise ValueError("write_table needs one name per column")
    columns = [np.asarray(col) for col in data]
    if path is None or str(path) == "-":
        _write_csv(sys.stdout, columns, names)
        sys.stdout.flush()
        return
    with atomic_write(path, "w", encoding="utf-8", newline="") as handle:
        _write_csv(handle, columns, names)


def _write_csv(handle: Any, columns: list[NDArray[Any]], names: Sequence[str]) -> None:
    import csv

    numeric = all(col.dtype.kind in "biuf" for col in columns)
    if numeric:
        formats = ["%d" if col.dtype.kind in "biu" else "%.10g" for col in columns]
        table = np.column_stack([col.astype(np.float64) for col in columns])
        np.savetxt(handle, table, fmt=formats, delimiter=",", header=",".join(names), comments="")
        return
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(names)
    integer = [col.dtype.kind in "biu" for col in columns]
    for row in zip(*(col.tolist() for col in columns)):
        writer.writerow([_cell(v, i) for v, i in zip(row, integer)])
