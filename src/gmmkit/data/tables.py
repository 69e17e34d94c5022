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

PathLike = str | os.PathLike[str]


class DataFileError(ValueError):
    """A data file cannot be read as a numeric table."""


_TEXT_SUFFIXES = {".csv", ".tsv", ".txt", ".dat"}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _delimiter(first_line: str, suffix: str) -> str | None:
    if suffix == ".tsv" or "\t" in first_line:
        return "\t"
    for candidate in (",", ";"):
        if candidate in first_line:
            return candidate
    return None  # runs of whitespace


def _split(line: str, delimiter: str | None) -> list[str]:
    import csv

    if delimiter is None:
        return line.split()
    return [field.strip() for field in next(csv.reader([line], delimiter=delimiter))]


def _select_columns(
    columns: Sequence[str | int] | str | None, names: list[str] | None, n_columns: int, file: Path
) -> list[int]:
    """Column indices from names and/or 0-based indices."""
    if columns is None:
        return list(range(n_columns))
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]
    if len(columns) == 0:
        raise DataFileError(f"{file}: no columns selected")
    indices: list[int] = []
    for column in columns:
        if names is not None and isinstance(column, str) and column in names:
            indices.append(names.index(column))
            continue
        try:
            index = int(column)
        except (TypeError, ValueError):
            known = ", ".join(names) if names else f"0..{n_columns - 1} (the file has no header)"
            raise DataFileError(f"{file}: unknown column {column!r} (columns: {known})") from None
        if not 0 <= index < n_columns:
            raise DataFileError(
                f"{file}: column index {index} out of range (the file has {n_columns} columns)"
            )
        indices.append(index)
    if len(set(indices)) != len(indices):
        raise DataFileError(f"{file}: a column is selected twice")
    return indices


def _first_bad_cell(
    file: Path, delimiter: str | None, header: bool, indices: list[int], names: list[str]
) -> str:
    """Locate the first cell ``numpy.loadtxt`` could not read (slow; only after an error)."""
    with open(file, encoding="utf-8") as handle:
        seen_header = not header
        n_fields = None
        for line_number, line in enumerate(handle, start=1):
            stripped = line.split("#", 1)[0].strip()
            if not stripped:
                continue
            fields = _split(stripped, delimiter)
            if not seen_header:
                seen_header = True
                n_fields = len(fields)
                continue
            if n_fields is None:
                n_fields = len(fields)
            if len(fields) != n_fields:
                return f"line {line_number} has {len(fields)} fields, expected {n_fields}"
            for index in indices:
                if index >= len(fields) or not _is_number(fields[index]):
                    value = fields[index] if index < len(fields) else ""
                    what = "is empty" if value == "" else f"has {value!r}, not a number"
                    return f"line {line_number}, column {names[index]!r} {what}"
    return "unreadable content"


def _read_text(
    file: Path, columns: Sequence[str | int] | str | None
) -> tuple[NDArray[np.float64], list[str] | None]:
    with open(file, encoding="utf-8") as handle:
        first = ""
        first_line_number = 0
        for first_line_number, line in enumerate(handle, start=1):  # noqa: B007
            first = line.split("#", 1)[0].strip()
            if first:
                break
    if not first:
        raise DataFileError(f"{file} is empty")
    delimiter = _delimiter(first, file.suffix.lower())
    fields = _split(first, delimiter)
    header = not all(_is_number(f) for f in fields)
    names = [f or f"column{i}" for i, f in enumerate(fields)] if header else None
    indices = _select_columns(columns, names, len(fields), file)
    shown = names or [str(i) for i in range(len(fields))]
    try:
        data = _loadtxt(file, delimiter, first_line_number if header else 0, indices)
    except ValueError:
        problem = _first_bad_cell(file, delimiter, header, indices, shown)
        raise DataFileError(f"{file}: {problem}") from None
    if data.shape[0] == 0:
        raise DataFileError(f"{file} has no data rows")
    return data, ([shown[i] for i in indices] if header else None)


def _loadtxt(
    file: Path, delimiter: str | None, skiprows: int, indices: list[int]
) -> NDArray[np.float64]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
        return np.loadtxt(
            file,
            dtype=np.float64,
            delimiter=delimiter,
            skiprows=skiprows,
            usecols=indices,
            ndmin=2,
            comments="#",
            quotechar='"' if delimiter is not None else None,
            encoding="utf-8",
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
    """Read a numeric table from ``.csv``/``.tsv``/``.txt``, ``.npy`` or ``.parquet``.

    Text files: the delimiter (tab, comma, semicolon or whitespace) is taken from the first
    line, which is a header when any of its fields is not a number; ``#`` starts a comment.

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
        For a non-numeric or empty cell (naming its line and column), an unknown column,
        NaN or infinite values, ragged rows or an unsupported file type.
    """
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"data file not found: {file}")
    if file.is_dir():
        raise DataFileError(f"{file} is a directory, not a data file")
    suffix = file.suffix.lower()
    if suffix in _TEXT_SUFFIXES:
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
