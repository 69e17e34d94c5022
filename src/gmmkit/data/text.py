"""Delimited text files: the rules every text reader of gmmkit shares.

:func:`~gmmkit.data.read_table` (the whole file, parsed by ``numpy.loadtxt``) and
:class:`~gmmkit.engines.sources.CSVSource` (streamed, parsed by pyarrow) use fast parsers,
but both take the file's layout from :func:`read_layout` and explain every failure with
:func:`find_problem`, one line-by-line check of the same rules:

* the text is UTF-8 (a leading byte-order mark is skipped);
* blank lines and everything after ``#`` are ignored;
* the first remaining line sets the delimiter (tab, comma, semicolon, else runs of blanks)
  and the number of fields, and is a header when any field is not a number; header
  names are unique;
* every later line has exactly that many fields, and every selected field is a finite
  number.

So a file gives the same columns, values and error messages through either reader.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike[str]


class DataFileError(ValueError):
    """A data file cannot be read as a numeric table."""


_BOM = b"\xef\xbb\xbf"
#: Longest first line read while looking for the header (guards against binary files).
_MAX_HEADER_BYTES = 1 << 20


def text_suffix(file: Path) -> str:
    """The file's type suffix, lower case, behind a ``.gz`` / ``.bz2`` one."""
    suffixes = [suffix.lower() for suffix in file.suffixes]
    if len(suffixes) > 1 and suffixes[-1] in (".gz", ".bz2"):
        return suffixes[-2]
    return suffixes[-1] if suffixes else ""


def open_binary(file: Path) -> io.BufferedIOBase:
    """The file's bytes, decompressed when it ends in ``.gz`` or ``.bz2``."""
    suffix = file.suffix.lower()
    if suffix == ".gz":
        import gzip

        return gzip.open(file, "rb")
    if suffix == ".bz2":
        import bz2

        return bz2.open(file, "rb")
    return open(file, "rb")


def not_utf8(file: Path, offset: int, byte: int) -> DataFileError:
    """The error for a byte that is not valid UTF-8 at ``offset`` (of the decompressed text)."""
    return DataFileError(
        f"{file} is not UTF-8 text (byte 0x{byte:02x} at offset {offset}); convert it to UTF-8"
    )


def _decode(line: bytes, offset: int, file: Path) -> str:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(file, offset + exc.start, line[exc.start]) from None
    return text[1:] if offset == 0 and text.startswith("\ufeff") else text


def is_number(text: str) -> bool:
    """Whether a field parses as a float the way numpy and pyarrow parse it
    (``nan`` and ``inf`` included; Python's digit separators ``1_000`` are not)."""
    if "_" in text:
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def sniff_delimiter(first_line: str, suffix: str = "") -> str | None:
    """Tab (also for any ``.tsv``), comma or semicolon, whichever the line holds first in
    that order; None for runs of blanks."""
    if suffix == ".tsv" or "\t" in first_line:
        return "\t"
    for candidate in (",", ";"):
        if candidate in first_line:
            return candidate
    return None


def split_fields(line: str, delimiter: str | None) -> list[str]:
    """The stripped fields of one line (``"`` quotes a field when there is a delimiter)."""
    import csv

    if delimiter is None:
        return line.split()
    return [field.strip() for field in next(csv.reader([line], delimiter=delimiter))]


def _strip_comment(line: str) -> str:
    return line.split("#", 1)[0].strip()


@dataclass(frozen=True)
class TextLayout:
    """What the first content line of a text table says about the whole file.

    Attributes
    ----------
    file : Path
    delimiter : str or None
        None for runs of blanks.
    header : bool
    names : tuple of str or None
        Header names (an empty one becomes ``column<i>``), None without a header.
    n_fields : int
        Fields every data line must have.
    skip_lines : int
        Lines before the first data line (leading blanks and comments, and the header).
    """

    file: Path
    delimiter: str | None
    header: bool
    names: tuple[str, ...] | None
    n_fields: int
    skip_lines: int

    @property
    def labels(self) -> list[str]:
        """Column names for messages: the header's, else 0-based positions."""
        return list(self.names) if self.names is not None else [
            str(i) for i in range(self.n_fields)
        ]


def read_layout(
    path: PathLike, delimiter: str | None = None, header: bool | None = None
) -> TextLayout:
    """Read the first content line of a text table: delimiter, header, names.

    Parameters
    ----------
    path : str or path-like
        Plain text, or ``.gz`` / ``.bz2`` compressed.
    delimiter : str, optional
        Detected from the first line by default (see :func:`sniff_delimiter`).
    header : bool, optional
        Detected by default: a first line with any field that is not a number.

    Returns
    -------
    TextLayout

    Raises
    ------
    DataFileError
        An empty file, text that is not UTF-8, or a header naming a column twice.
    """
    file = Path(path)
    offset = 0
    line_number = 0
    first = ""
    with open_binary(file) as handle:
        while True:
            raw = handle.readline(_MAX_HEADER_BYTES)
            if not raw:
                break
            line_number += 1
            first = _strip_comment(_decode(raw, offset, file))
            offset += len(raw)
            if first:
                break
    if not first:
        raise DataFileError(f"{file} is empty")
    if delimiter is None:
        delimiter = sniff_delimiter(first, text_suffix(file))
    fields = split_fields(first, delimiter)
    if header is None:
        header = not all(is_number(f) for f in fields)
    names = None
    if header:
        names = tuple(f or f"column{i}" for i, f in enumerate(fields))
        seen: dict[str, int] = {}
        for position, name in enumerate(names):
            if name in seen:
                raise DataFileError(
                    f"{file}: the header names column {name!r} twice (columns "
                    f"{seen[name] + 1} and {position + 1}); column names must be unique"
                )
            seen[name] = position
    return TextLayout(
        file=file,
        delimiter=delimiter,
        header=bool(header),
        names=names,
        n_fields=len(fields),
        skip_lines=line_number if header else line_number - 1,
    )


def select_columns(
    columns: Sequence[str | int] | str | None,
    names: Sequence[str] | None,
    n_columns: int,
    file: Path,
) -> list[int]:
    """0-based column indices from names and/or indices (a string is split on commas);
    all columns when ``columns`` is None."""
    if columns is None:
        return list(range(n_columns))
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]
    if len(columns) == 0:
        raise DataFileError(f"{file}: no columns selected")
    indices: list[int] = []
    for column in columns:
        if names is not None and isinstance(column, str) and column in names:
            indices.append(list(names).index(column))
            continue
        try:
            if isinstance(column, bool):
                raise TypeError
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


def find_problem(layout: TextLayout, indices: Sequence[int]) -> DataFileError:
    """The first place where the file breaks the shared rules, as an error.

    A slow Python pass, run only after a fast parser has failed or found a NaN, so that
    every reader reports the same first problem with its line number.
    """
    file = layout.file
    labels = layout.labels
    rows = 0
    offset = 0
    with open_binary(file) as handle:
        for line_number, raw in enumerate(handle, start=1):
            text = _decode(raw, offset, file)
            offset += len(raw)
            if line_number <= layout.skip_lines:
                continue
            stripped = _strip_comment(text)
            if not stripped:
                continue
            rows += 1
            fields = split_fields(stripped, layout.delimiter)
            if len(fields) != layout.n_fields:
                plural = "" if len(fields) == 1 else "s"
                return DataFileError(
                    f"{file}: line {line_number} has {len(fields)} field{plural}, expected "
                    f"{layout.n_fields}"
                )
            for index in indices:
                value = fields[index]
                where = f"{file}: line {line_number}, column {labels[index]!r}"
                if value == "":
                    return DataFileError(f"{where} is empty")
                if not is_number(value):
                    return DataFileError(f"{where} has {value!r}, not a number")
                if not math.isfinite(float(value)):
                    return DataFileError(
                        f"{where} is {value!r} (NaN and infinite values cannot be fitted)"
                    )
    if rows == 0:
        return DataFileError(f"{file} has no data rows")
    return DataFileError(f"{file}: unreadable content")


class NormalisedText(io.RawIOBase):
    """The data lines of a text table as plain CSV bytes, for a CSV parser without
    comments or blank-run delimiters (pyarrow).

    Reads whole lines after the layout's ``skip_lines``; drops ``#`` comments; for a
    blank-separated file turns runs of blanks into commas; when ``check_utf8``, raises
    :class:`DataFileError` at the first byte that is not UTF-8.  Work per block is a
    few C-level scans, and nothing when a block has no ``#``.
    """

    def __init__(self, layout: TextLayout, block_bytes: int, check_utf8: bool) -> None:
        super().__init__()
        self.layout = layout
        self.block_bytes = max(1 << 12, int(block_bytes))
        self.check_utf8 = check_utf8
        self._handle = open_binary(layout.file)
        self._offset = 0
        for _ in range(layout.skip_lines):
            self._offset += len(self._handle.readline())
        self._pending = b""
        self._position = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._handle.close()
        super().close()

    def _next_block(self) -> bytes:
        block = self._handle.read(self.block_bytes)
        if not block:
            self._eof = True
            return b""
        if not block.endswith(b"\n"):
            block += self._handle.readline()
        if self.check_utf8:
            _decode(block, self._offset, self.layout.file)
        start = self._offset
        self._offset += len(block)
        if start == 0 and block.startswith(_BOM):
            block = block[len(_BOM):]
        if b"#" in block:
            block = re.sub(rb"#[^\n]*", b"", block)
        if self.layout.delimiter is None:
            block = re.sub(rb"(?m)^[ \t\f\v]+|[ \t\f\v\r]+$", b"", block)
            block = re.sub(rb"[ \t\f\v]+", b",", block)
        return block

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while self._position >= len(self._pending) and not self._eof:
            self._pending, self._position = self._next_block(), 0
        n = min(len(view), len(self._pending) - self._position)
        view[:n] = self._pending[self._position : self._position + n]
        self._position += n
        return n
