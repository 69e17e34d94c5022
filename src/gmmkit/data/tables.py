"""Numeric data tables: read ``.csv``/``.tsv``/``.txt``, ``.npy`` and ``.parquet`` files
into arrays, and write result columns as CSV (atomically)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gmmkit._atomic import atomic_write
from gmmkit.data.text import (
    DataFileError,
    TextLayout,
    find_problem,
    read_layout,
    text_suffix,
)
from gmmkit.data.text import select_columns as _select_columns

__all__ = ["DataFileError", "read_table", "write_table"]

PathLike = str | os.PathLike[str]


_TEXT_SUFFIXES = {".csv", ".tsv", ".txt", ".dat"}


def _read_text(
    file: Path, columns: Sequence[str | int] | str | None
) -> tuple[NDArray[np.float64], list[str] | None]:
    """The whole table through ``numpy.loadtxt``; any failure (and any NaN or infinity)
    is explained by the line-by-line check that :class:`~gmmkit.engines.sources.CSVSource`
    shares, so both readers give the same errors."""
    layout = read_layout(file)
    indices = _select_columns(columns, layout.names, layout.n_fields, file)
    try:
        data = _loadtxt(layout, indices)
    except (ValueError, UnicodeDecodeError):
        raise find_problem(layout, indices) from None
    if data.shape[0] == 0:
        raise DataFileError(f"{file} has no data rows")
    if data.shape[1] != layout.n_fields:  # the first data line set loadtxt's count
        raise find_problem(layout, indices)
    data = data[:, indices] if len(indices) < layout.n_fields else data
    if not np.isfinite(data).all():
        raise find_problem(layout, indices)
    return np.ascontiguousarray(data), ([layout.labels[i] for i in indices] if layout.header
                                        else None)


def _skip_field(text: str) -> float:
    return 0.0


def _loadtxt(layout: TextLayout, indices: list[int]) -> NDArray[np.float64]:
    """Every field is read, so a line with a field too many or too few is an error
    (``usecols`` would silently drop extra fields); unselected fields are skipped
    unparsed, so they may hold text."""
    import warnings

    selected = set(indices)
    skipped: dict[int | str, Callable[[str], Any]] = {
        j: _skip_field for j in range(layout.n_fields) if j not in selected
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
        return np.loadtxt(
            layout.file,
            dtype=np.float64,
            delimiter=layout.delimiter,
            skiprows=layout.skip_lines,
            converters=skipped or None,
            ndmin=2,
            comments="#",
            quotechar='"' if layout.delimiter is not None else None,
            encoding="utf-8-sig",
        )


def _read_npy(
    file: Path, columns: Sequence[str | int] | str | None
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
    indices = _select_columns(columns, None, data.shape[1], file)
    out = np.asarray(data[:, indices], dtype=np.float64)
    if out.shape[0] == 0:
        raise DataFileError(f"{file} has no data rows")
    return out, None


def _read_parquet(
    file: Path, columns: Sequence[str | int] | str | None
) -> tuple[NDArray[np.float64], list[str] | None]:
    try:
        import pyarrow.parquet as pq
        import pyarrow.types as pat
    except ImportError:
        raise ImportError(
            "reading .parquet needs pyarrow: pip install 'gmmkit[parquet]'"
        ) from None
    try:
        schema = pq.read_schema(file)
    except Exception as exc:
        raise DataFileError(f"{file} is not a readable Parquet file ({exc})") from None
    names = list(schema.names)
    indices = _select_columns(columns, names, len(names), file)
    selected = [names[i] for i in indices]
    table = pq.read_table(file, columns=selected)
    arrays = []
    for name in selected:
        column = table.column(name)
        if not (pat.is_integer(column.type) or pat.is_floating(column.type)
                or pat.is_boolean(column.type)):
            raise DataFileError(f"{file}: column {name!r} holds {column.type}, not numbers")
        if column.null_count:
            raise DataFileError(f"{file}: column {name!r} has {column.null_count} missing values")
        arrays.append(column.to_numpy().astype(np.float64))
    if not arrays or len(arrays[0]) == 0:
        raise DataFileError(f"{file} has no data rows")
    return np.column_stack(arrays), selected


def read_table(
    path: PathLike, columns: Sequence[str | int] | str | None = None
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
    if file.is_dir():
        raise DataFileError(f"{file} is a directory, not a data file")
    suffix = file.suffix.lower()
    if text_suffix(file) in _TEXT_SUFFIXES:  # also compressed: .csv.gz, .csv.bz2
        data, names = _read_text(file, columns)
    elif suffix == ".npy":
        data, names = _read_npy(file, columns)
    elif suffix == ".parquet":
        data, names = _read_parquet(file, columns)
    else:
        raise DataFileError(
            f"{file}: unsupported file type {suffix or '(none)'!r}; use .csv, .tsv, .txt, "
            ".npy or .parquet"
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
