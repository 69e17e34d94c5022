"""Parquet files and directories of them: which files, which columns."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gmmkit.data.columns import ColumnSpec, parse_columns
from gmmkit.data.text import DataFileError

__all__ = ["parquet_columns", "parquet_files"]


def parquet_files(path: str | os.PathLike[str]) -> list[Path]:
    """The file itself, or every ``*.parquet`` file of a directory in name order.

    Raises
    ------
    FileNotFoundError
    DataFileError
        A directory without ``.parquet`` files.
    """
    root = Path(path)
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.suffix.lower() == ".parquet")
        if not files:
            raise DataFileError(f"no .parquet file in directory {root}")
        return files
    if not root.exists():
        raise FileNotFoundError(f"no such Parquet file or directory: {root}")
    return [root]


def parquet_columns(
    files: list[Path], columns: ColumnSpec, where: str | os.PathLike[str]
) -> tuple[list[str], list[Any]]:
    """The selected column names (by :func:`~gmmkit.data.columns.parse_columns`) and
    their Arrow types, checked present in every file.

    Raises
    ------
    DataFileError
        An unreadable file, an unknown column, or a file that lacks a selected column.
    """
    import pyarrow.parquet as pq

    schemas = []
    for file in files:
        try:
            schemas.append(pq.read_schema(file))
        except Exception as exc:
            raise DataFileError(f"{file} is not a readable Parquet file ({exc})") from None
    names = list(schemas[0].names)
    selected = [names[i] for i in parse_columns(columns, names, len(names), str(where))]
    for file, schema in zip(files[1:], schemas[1:]):
        missing = [c for c in selected if c not in schema.names]
        if missing:
            raise DataFileError(f"{file} lacks columns {missing}")
    return selected, [schemas[0].field(c).type for c in selected]
