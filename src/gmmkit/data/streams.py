"""Open a data file in memory when it fits, as a streaming source when it does not.

:func:`open_table` is what the command line reads data with: the same files and
columns as :func:`~gmmkit.data.read_table`, but a table whose parsed array would take
more than :data:`MAX_IN_MEMORY_BYTES` comes back as a
:class:`~gmmkit.data.sources.CSVSource` / :class:`~gmmkit.data.sources.ParquetSource`
(or a memory map for ``.npy``), which every estimator streams chunk by chunk.
:func:`row_blocks` walks either kind in row blocks, so a consumer has one loop for both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gmmkit.data.columns import ColumnSpec, parse_columns
from gmmkit.data.text import COMPRESSION_SUFFIXES, DataFileError, open_binary, read_layout

__all__ = ["MAX_IN_MEMORY_BYTES", "estimated_bytes", "open_table", "row_blocks", "take_columns"]

#: Largest estimated in-memory size (parsed array and parser buffers) of a table read
#: whole; larger tables are streamed.  None: a quarter of the available memory.
MAX_IN_MEMORY_BYTES: int | None = None
#: Assumed expansion of compressed text (the real size is unknown until decompressed;
#: erring large streams a file that might have fitted, never the reverse).
_COMPRESSION_RATIO = 8
_SAMPLE_BYTES = 1 << 16


def available_memory() -> int:
    """Bytes of memory available to this process (Linux ``MemAvailable``; else half
    the physical memory; else 4 GiB)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) // 2
    except (AttributeError, ValueError, OSError):
        return 4 << 30


def _limit(max_in_memory_bytes: int | None) -> int:
    if max_in_memory_bytes is not None:
        return int(max_in_memory_bytes)
    if MAX_IN_MEMORY_BYTES is not None:
        return int(MAX_IN_MEMORY_BYTES)
    return available_memory() // 4


def _text_rows(file: Path) -> float:
    """Estimated data rows of a text table, from the bytes per line of its start."""
    size = file.stat().st_size
    if file.suffix.lower() in COMPRESSION_SUFFIXES:
        size *= _COMPRESSION_RATIO
    with open_binary(file) as handle:
        sample = handle.read(_SAMPLE_BYTES)
    lines = max(1, sample.count(b"\n"))
    return size / max(1.0, len(sample) / lines)


def estimated_bytes(path: str | os.PathLike[str], n_columns: int) -> int:
    """Estimated peak memory of reading ``n_columns`` columns of a table whole: the
    float64 array and as much again for the parser's buffers.

    Parameters
    ----------
    path : str or path-like
        A text table (plain or compressed), a Parquet file or directory, or ``.npy``.
    n_columns : int
        Selected columns.

    Returns
    -------
    int
    """
    file = Path(path)
    if file.is_dir() or file.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        from gmmkit.data.parquet import parquet_files

        rows = float(sum(pq.ParquetFile(f).metadata.num_rows for f in parquet_files(file)))
    elif file.suffix.lower() == ".npy":
        return int(np.load(file, mmap_mode="r").shape[0]) * n_columns * 8
    else:
        rows = _text_rows(file)
    return int(2 * rows * n_columns * 8)


def open_table(
    path: str | os.PathLike[str],
    columns: ColumnSpec = None,
    *,
    max_in_memory_bytes: int | None = None,
    allow_missing: bool = False,
) -> tuple[Any, list[str] | None]:
    """A table as an array when it fits in memory, else as a streaming source.

    Parameters
    ----------
    path : str or path-like
        Any file :func:`~gmmkit.data.read_table` reads: ``.csv``/``.tsv``/``.txt``
        (plain or compressed), ``.npy``, ``.parquet`` or a directory of them.
    columns : str or sequence of str/int, optional
        As for :func:`~gmmkit.data.parse_columns`.
    max_in_memory_bytes : int, optional
        Tables whose :func:`estimated_bytes` exceed it are streamed; by default
        :data:`MAX_IN_MEMORY_BYTES`, or a quarter of the available memory.
    allow_missing : bool, default=False
        Missing cells come back as NaN (as :func:`~gmmkit.data.read_table`), in memory
        and streamed; by default they are a :class:`~gmmkit.data.text.MissingValueError`.

    Returns
    -------
    X : ndarray of shape (n_rows, n_columns), numpy.memmap or ChunkSource
        A streamed source checks the file as its first pass reads it, with the same
        errors as :func:`~gmmkit.data.read_table`.
    names : list of str or None
        The selected columns' names, when the file has them.

    Raises
    ------
    FileNotFoundError
    DataFileError
        As :func:`~gmmkit.data.read_table` (for a streamed file: problems found before
        the first pass, such as an unknown column or a repeated header name).
    """
    from gmmkit.data.tables import _TEXT_SUFFIXES, read_table
    from gmmkit.data.text import text_suffix

    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"data file not found: {file}")
    limit = _limit(max_in_memory_bytes)
    suffix = file.suffix.lower()
    if suffix == ".parquet" or file.is_dir():
        from gmmkit.data.parquet import parquet_columns, parquet_files

        if file.is_dir() and not any(file.glob("*.parquet")):
            return read_table(file, columns)  # its error
        selected, _ = parquet_columns(parquet_files(file), columns, file)
        if estimated_bytes(file, len(selected)) <= limit:
            return read_table(file, selected, allow_missing=allow_missing)
        from gmmkit.data.sources import ParquetSource

        return ParquetSource(file, selected, allow_missing=allow_missing), selected
    if text_suffix(file) in _TEXT_SUFFIXES:
        layout = read_layout(file)
        indices = parse_columns(columns, layout.names, layout.n_fields, file)
        if estimated_bytes(file, len(indices)) <= limit:
            return read_table(file, indices, allow_missing=allow_missing)
        from gmmkit.data.sources import CSVSource

        source = CSVSource(file, indices, header=layout.header, delimiter=layout.delimiter,
                           allow_missing=allow_missing)
        return source, (list(source.columns) if layout.header else None)
    if suffix == ".npy":
        data, names = read_table(file, columns, allow_missing=allow_missing) \
            if estimated_bytes(file, 1) <= limit \
            else _npy_memmap(file, columns)
        return data, names
    return read_table(file, columns)  # its error for an unsupported type


def _npy_memmap(file: Path, columns: ColumnSpec) -> tuple[Any, list[str] | None]:
    from gmmkit.data.tables import read_table

    mapped = np.load(file, mmap_mode="r", allow_pickle=False)
    if mapped.ndim != 2 or mapped.dtype.kind not in "biuf":
        return read_table(file, columns)  # its error
    indices = parse_columns(columns, None, mapped.shape[1], file)
    if indices != list(range(mapped.shape[1])):
        raise DataFileError(
            f"{file} is too large to load and a column subset of a .npy file cannot be "
            "streamed; save the columns you need as their own .npy file"
        )
    return mapped, None


def row_blocks(X: Any, rows: int = 1 << 16) -> Iterator[NDArray[Any]]:
    """Consecutive row blocks of an array, a memory map or a chunk source.

    Parameters
    ----------
    X : ndarray, numpy.memmap or ChunkSource
    rows : int
        Rows per block (a source may return other sizes).

    Yields
    ------
    ndarray of shape (n_i, n_columns)
    """
    from gmmkit.engines.sources import ChunkSource

    if isinstance(X, ChunkSource):
        yield from X.blocks(rows)
        return
    for start in range(0, len(X), rows):
        yield np.asarray(X[start : start + rows])


def take_columns(X: Any, indices: list[int]) -> Any:
    """Columns ``indices`` of what :func:`open_table` returned, of the same kind.

    Parameters
    ----------
    X : ndarray, numpy.memmap or CSVSource / ParquetSource
    indices : list of int
        0-based, into X's columns.

    Returns
    -------
    ndarray or the same kind of source
    """
    from gmmkit.data.sources import CSVSource, ParquetSource

    if isinstance(X, CSVSource):
        chosen = [X._indices[i] for i in indices]
        return CSVSource(X.path, chosen, header=X.header, delimiter=X.delimiter,
                         block_bytes=X.block_bytes, allow_missing=X.allow_missing)
    if isinstance(X, ParquetSource):
        return ParquetSource(X._path, [X.columns[i] for i in indices],
                             allow_missing=X.allow_missing)
    if isinstance(X, np.memmap) and indices != list(range(X.shape[1])):
        raise DataFileError(
            f"{X.filename} is too large to load and a column subset of a .npy file cannot "
            "be streamed; save the columns you need as their own .npy file"
        )
    return X if isinstance(X, np.memmap) else np.asarray(X)[:, indices]
