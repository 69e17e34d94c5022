"""File sources: Parquet row groups and CSV text streamed in blocks, for fitting data
larger than memory.

Both are :class:`~gmmkit.engines.sources.ChunkSource` objects: every estimator streams
them chunk by chunk (:func:`gmmkit.read_parquet`, :func:`gmmkit.read_csv` and
:func:`gmmkit.data.open_table` make them).

* :class:`ParquetSource` — the row groups of one Parquet file or a directory of them
  (pyarrow).
* :class:`CSVSource` — pyarrow's streaming CSV reader (:class:`~gmmkit.data.reader.
  TextReader`, the reader of :func:`gmmkit.data.read_table` too), every column parsed as
  float64.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gmmkit.data.text import DataFileError
from gmmkit.engines.base import NonNumericError
from gmmkit.engines.sources import ChunkSource

__all__ = ["CSVSource", "ParquetSource"]


def _require_pyarrow(what: str) -> Any:
    try:
        import pyarrow
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{what} needs pyarrow, a dependency of gmmkit; reinstall it: `pip install pyarrow`"
        ) from exc
    return pyarrow


def _batch_to_array(batch: Any, dtype: np.dtype) -> NDArray[Any]:
    """A pyarrow RecordBatch of numeric columns as an (n, D) array; nulls become NaN."""
    out = np.empty((batch.num_rows, batch.num_columns), dtype=dtype)
    for j in range(batch.num_columns):
        out[:, j] = batch.column(j).to_numpy(zero_copy_only=False)
    return out


def _arrow_dtype(schema_types: Sequence[Any], names: Sequence[str], where: str) -> np.dtype:
    pa = _require_pyarrow(where)
    all_float32 = True
    for name, arrow_type in zip(names, schema_types):
        if not (
            pa.types.is_integer(arrow_type)
            or pa.types.is_floating(arrow_type)
            or pa.types.is_boolean(arrow_type)
        ):
            raise NonNumericError(
                f"column {name!r} of {where} has type {arrow_type}; only numeric columns "
                "can be fitted (select columns with columns=[...])"
            )
        all_float32 &= pa.types.is_float32(arrow_type)
    return np.dtype(np.float32 if all_float32 else np.float64)


class ParquetSource(ChunkSource):
    """Row groups of a Parquet file, or of every ``*.parquet`` file in a directory
    (in name order).

    Parameters
    ----------
    path : str or Path
    columns : list of str or int, optional
        Columns to use (names or positions); all by default.  They must be numeric.
    allow_missing : bool, default=True
        Deliver nulls and NaN as NaN, and let the estimator decide (its ``missing``
        parameter); the first pass checks that every column has an observed value.
        False (what ``gmmkit fit`` without ``--missing marginalize`` uses): the first
        pass stops at the first null or NaN with a
        :class:`~gmmkit.data.text.MissingValueError` naming its row and column.  (Text
        differs: :class:`CSVSource` refuses missing cells by default, since an empty field
        in text may as well be a formatting error.)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        columns: Sequence[str | int] | str | None = None,
        allow_missing: bool = True,
    ) -> None:
        _require_pyarrow("read_parquet")
        import pyarrow.parquet as pq

        from gmmkit.data.parquet import parquet_columns, parquet_files

        root = Path(path)
        files = parquet_files(root)
        self.files = files
        self.columns, types = parquet_columns(files, columns, root)
        self.dtype = _arrow_dtype(types, self.columns, str(root))
        self.n_features = len(self.columns)
        self.feature_names = tuple(self.columns)
        self.n_rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        self._path = root
        self.allow_missing = bool(allow_missing)
        self._checked = False

    @property
    def description(self) -> str:
        return f"parquet {self._path}"

    def blocks(self, rows_hint: int) -> Iterator[NDArray[Any]]:
        import pyarrow.parquet as pq

        # batches of a multiple of the chunk size, near 1 Mi cells
        step = max(1, int(rows_hint))
        batch_rows = step * max(1, (1 << 20) // max(step * self.n_features, 1))
        check = not self._checked
        observed = np.zeros(self.n_features, dtype=bool)
        start = 0
        for file in self.files:
            with pq.ParquetFile(file) as reader:
                for batch in reader.iter_batches(batch_size=batch_rows, columns=self.columns):
                    block = _batch_to_array(batch, self.dtype)
                    if check:
                        missing = np.isnan(block)
                        if self.allow_missing:
                            observed |= ~missing.all(axis=0)
                        elif missing.any():
                            from gmmkit.data.text import MissingValueError

                            row, col = np.argwhere(missing)[0]
                            raise MissingValueError(
                                f"{self._path}: data row {start + row + 1}, column "
                                f"{self.columns[col]!r} is missing"
                            )
                    start += len(block)
                    yield block
        if check and self.allow_missing and not observed.all():
            raise DataFileError(
                f"{self._path}: column {self.columns[int(np.argmin(observed))]!r} has no "
                "observed value (every cell is missing); leave it out with the column "
                "selection"
            )
        self._checked = True


class CSVSource(ChunkSource):
    """Blocks of a delimited text file parsed by pyarrow's streaming reader, as float64.

    The file follows exactly the rules of :func:`gmmkit.data.read_table`
    (:mod:`gmmkit.data.text`): UTF-8 with or without a byte-order mark, ``#`` comments,
    a header detected from the first line, every line with the header's number of
    fields, every selected field a finite number.  The first full pass checks all of it
    and stops at the first problem with the same :class:`~gmmkit.data.DataFileError`
    ``read_table`` raises (naming the line); later passes trust the file.

    Parameters
    ----------
    path : str or Path
        Plain, ``.gz`` or ``.bz2``.
    columns : list of str or int, optional
        Columns to use (names if the file has a header, or 0-based positions).
    header : bool or None
        Whether the first line holds column names; by default it does when any of
        its fields is not a number.
    delimiter : str or None
        Detected from the first line by default (tab, comma, semicolon, else runs of
        blanks), as ``read_table`` does.
    block_bytes : int
        Bytes of text parsed per block.
    allow_missing : bool, default=False
        Read missing cells (:data:`~gmmkit.data.text.MISSING_VALUES`: empty, ``NA``,
        ``NaN``, ...) as NaN, for ``missing="marginalize"``; as ``read_table``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        columns: Sequence[str | int] | str | None = None,
        header: bool | None = None,
        delimiter: str | None = None,
        block_bytes: int = 4 << 20,
        allow_missing: bool = False,
    ) -> None:
        _require_pyarrow("read_csv")
        from gmmkit.data.columns import parse_columns
        from gmmkit.data.reader import TextReader
        from gmmkit.data.text import read_layout

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no such CSV file: {self.path}")
        self.layout = read_layout(self.path, delimiter=delimiter, header=header)
        self.header = self.layout.header
        self._indices = parse_columns(
            columns, self.layout.names, self.layout.n_fields, self.path
        )
        self.allow_missing = bool(allow_missing)
        self._reader = TextReader(self.layout, self._indices, self.allow_missing)
        self.columns = [self.layout.labels[j] for j in self._indices]
        self.n_features = len(self._indices)
        self.dtype = np.dtype(np.float64)
        self.feature_names = tuple(self.columns) if self.header else None
        self.n_rows = None
        self.delimiter = self.layout.delimiter
        self.block_bytes = int(block_bytes)
        self._checked = False

    @property
    def description(self) -> str:
        return f"csv {self.path}"

    def blocks(self, rows_hint: int) -> Iterator[NDArray[Any]]:
        check = not self._checked
        yield from self._reader.blocks(self.block_bytes, check=check)
        self._checked = True
