"""The one text reader: pyarrow's multi-threaded CSV parser, in blocks.

:func:`~gmmkit.data.read_table` (the whole file) and
:class:`~gmmkit.data.sources.CSVSource` (streamed, pass after pass) both take their
rows from :class:`TextReader`, so a file gives them the same values and the same errors.

pyarrow reads the file itself (decompressing ``.gz``, ``.bz2``, ``.zst``, ``.lz4``, and
handling quotes and a byte-order mark).  Two rules of :mod:`gmmkit.data.text` are not
pyarrow features: ``#`` comments and runs of blanks as the delimiter.  A file that needs
them is fed to pyarrow through :class:`_CleanText`, a small per-block rewrite; it is
chosen up front for blank-separated files and whenever pyarrow fails on the raw file
(a comment is then a parse error), restarting after the rows already delivered.  Any
failure of the cleaned read is explained by :func:`~gmmkit.data.text.find_problem`,
which names the line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gmmkit.data.text import (
    _BOM,
    MISSING_VALUES,
    DataFileError,
    TextLayout,
    find_problem,
)

__all__ = ["TextReader"]

#: Bytes per block when a whole file is read into memory (parsed in parallel).
TABLE_BLOCK_BYTES = 4 << 20


class _CleanText:
    """The data lines of a text table as plain delimited bytes, for pyarrow.

    A read-only file object (``read(n)``) that skips the layout's first ``skip_lines``
    lines, drops ``#`` comments and, for a blank-separated file, turns runs of blanks
    into commas.  Blocks end at line ends; a block without ``#`` passes through as is.
    """

    closed = False

    def __init__(self, layout: TextLayout) -> None:
        from gmmkit.data.text import open_binary

        self.layout = layout
        self._handle = open_binary(layout.file)
        for _ in range(layout.skip_lines):
            self._handle.readline()
        self._carry = b""
        self._first = layout.skip_lines == 0

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._handle.close()
        self.closed = True

    def read(self, size: int = -1) -> bytes:
        while True:
            raw = self._handle.read(size if size > 0 else 1 << 16)
            if self._first:
                self._first = False
                if raw.startswith(_BOM):
                    raw = raw[len(_BOM):]
            block, self._carry = self._carry + raw, b""
            if raw:  # keep a partial last line for the next block
                end = block.rfind(b"\n")
                if end < len(block) - 1:
                    block, self._carry = block[: end + 1], block[end + 1:]
            block = self._rewrite(block)
            if block or not raw:
                return block

    def _rewrite(self, block: bytes) -> bytes:
        if b"#" in block:
            block = re.sub(rb"#[^\n]*", b"", block)
            block = re.sub(rb"(?m)^[ \t\f\v\r]+$", b"", block)
        if self.layout.delimiter is None:
            block = re.sub(rb"(?m)^[ \t\f\v]+|[ \t\f\v\r]+$", b"", block)
            block = re.sub(rb"[ \t\f\v]+", b",", block)
        return block


class TextReader:
    """Float64 row blocks of the selected columns of a delimited text table.

    Parameters
    ----------
    layout : TextLayout
        From :func:`~gmmkit.data.text.read_layout`.
    indices : sequence of int
        0-based columns to return, in this order.
    allow_missing : bool, default=False
        Read a cell in :data:`~gmmkit.data.text.MISSING_VALUES` (empty, ``NA``,
        ``NaN``, ...) as NaN instead of refusing it; a selected column without any
        observed value is still an error.
    """

    def __init__(
        self, layout: TextLayout, indices: Sequence[int], allow_missing: bool = False
    ) -> None:
        self.layout = layout
        self.indices = list(indices)
        self.allow_missing = bool(allow_missing)
        # blank-separated text, and leading comments or blank lines, need cleaning
        self.clean = layout.delimiter is None or layout.skip_lines > int(layout.header)
        self._names = [f"f{j}" for j in range(layout.n_fields)]

    def _options(self, check: bool, clean: bool, block_bytes: int) -> dict[str, Any]:
        """pyarrow's read, parse and convert options (the same for every reader)."""
        import pyarrow as pa
        from pyarrow import csv

        selected = [self._names[j] for j in self.indices]
        column_types = dict.fromkeys(selected, pa.float64())
        included = selected
        if check:  # unselected columns are read as text only to check their UTF-8
            included = self._names
            for name in self._names:
                column_types.setdefault(name, pa.string())
        return {
            "read_options": csv.ReadOptions(
                column_names=self._names,
                skip_rows=0 if clean else self.layout.skip_lines,
                block_size=block_bytes,
            ),
            "parse_options": csv.ParseOptions(
                delimiter=self.layout.delimiter or ",",
                quote_char='"' if self.layout.delimiter is not None else False,
            ),
            "convert_options": csv.ConvertOptions(
                include_columns=included,
                column_types=column_types,
                # without allow_missing an empty field is an error, not a missing value
                null_values=list(MISSING_VALUES) if self.allow_missing else [],
                strings_can_be_null=False,
                check_utf8=True,
            ),
        }

    def _source(self, clean: bool) -> Any:
        import pyarrow as pa

        if clean:
            return _CleanText(self.layout)
        return pa.input_stream(str(self.layout.file), compression="detect")

    def _array(self, columns: Sequence[Any]) -> NDArray[np.float64]:
        n_rows = len(columns[0]) if columns else 0
        out = np.empty((n_rows, len(columns)), dtype=np.float64)
        for j, column in enumerate(columns):
            start = 0
            for chunk in getattr(column, "chunks", [column]):  # no concatenated copy
                out[start : start + len(chunk), j] = chunk.to_numpy(zero_copy_only=False)
                start += len(chunk)
        return out

    def _blocks(self, clean: bool, block_bytes: int, check: bool) -> Iterator[NDArray[Any]]:
        from pyarrow import csv

        selected = [self._names[j] for j in self.indices]
        source = self._source(clean)
        try:
            reader = csv.open_csv(source, **self._options(check, clean, block_bytes))
            with reader:
                for batch in reader:
                    yield self._array([batch.column(name) for name in selected])
        finally:
            source.close()

    def blocks(self, block_bytes: int, check: bool) -> Iterator[NDArray[np.float64]]:
        """Row blocks of shape (n_i, len(indices)), float64, covering every data row.

        Parameters
        ----------
        block_bytes : int
            Text bytes parsed per block.
        check : bool
            Check every rule (UTF-8 in unselected columns too, finite values, at least
            one row); a first pass checks, later passes over an unchanged file need not.

        Raises
        ------
        DataFileError
            The first problem in the file, named by :func:`find_problem`.
        """
        import pyarrow as pa

        delivered = 0
        failure: Exception | None = None
        clean = self.clean
        observed = np.zeros(len(self.indices), dtype=bool)
        while True:
            skip = delivered
            try:
                for block in self._blocks(clean, block_bytes, check):
                    if skip:  # rows delivered before a restart on cleaned text
                        taken = min(skip, len(block))
                        skip -= taken
                        block = block[taken:]
                        if not len(block):
                            continue
                    if check:
                        if not self._valid(block):
                            failure = DataFileError("NaN or infinity")
                            break
                        if self.allow_missing:
                            observed |= ~np.isnan(block).all(axis=0)
                    delivered += len(block)
                    yield block
            except (pa.ArrowException, OSError) as exc:
                if not clean:  # a comment, or a real problem: retry on cleaned text
                    clean = self.clean = True
                    continue
                failure = exc
            break
        if failure is not None:
            raise self._problem(failure)
        if check and delivered == 0:
            raise DataFileError(f"{self.layout.file} has no data rows")
        if check and self.allow_missing:
            self._check_observed(observed)

    def _valid(self, block: NDArray[np.float64]) -> bool:
        """No NaN (missing allowed: no infinity) in the block."""
        if self.allow_missing:
            return not np.isinf(block).any()
        return bool(np.isfinite(block).all())

    def _check_observed(self, observed: NDArray[np.bool_]) -> None:
        """A column without any observed value cannot be fitted, even marginalising."""
        if not observed.all():
            name = self.layout.labels[self.indices[int(np.argmin(observed))]]
            raise DataFileError(
                f"{self.layout.file}: column {name!r} has no observed value (every cell is "
                "missing); leave it out with the column selection"
            )

    def read(self) -> NDArray[np.float64]:
        """Every row, checked, as one C-contiguous array.

        pyarrow's whole-table reader (parallel over blocks) with the options of
        :meth:`blocks`, so the values are the same.

        Raises
        ------
        DataFileError
            As :meth:`blocks`.
        """
        import pyarrow as pa
        from pyarrow import csv

        selected = [self._names[j] for j in self.indices]
        failure: Exception | None = None
        for clean in (False, True) if not self.clean else (True,):
            source = self._source(clean)
            try:
                table = csv.read_csv(source, **self._options(True, clean, TABLE_BLOCK_BYTES))
            except (pa.ArrowException, OSError) as exc:
                failure = exc
                continue
            finally:
                source.close()
            self.clean = clean
            data = self._array([table.column(name) for name in selected])
            del table
            if not self._valid(data):
                failure = DataFileError("NaN or infinity")
                break
            if len(data) == 0:
                raise DataFileError(f"{self.layout.file} has no data rows")
            if self.allow_missing:
                self._check_observed(np.asarray(~np.isnan(data).all(axis=0)))
            return data
        raise self._problem(failure)

    def _problem(self, failure: Exception | None) -> DataFileError:
        problem = find_problem(self.layout, self.indices, self.allow_missing)
        if str(problem).endswith("unreadable content"):
            problem = DataFileError(f"{self.layout.file}: unreadable content ({failure})")
        return problem
