"""Delimited text files: the rules every text reader of gmmkit shares.

:func:`~gmmkit.data.read_table` (the whole file) and
:class:`~gmmkit.data.sources.CSVSource` (streamed) both parse with pyarrow through
:class:`~gmmkit.data.reader.TextReader`; they take the file's layout from
:func:`read_layout` and explain every failure with :func:`find_problem`, one
line-by-line check of the same rules:

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PathLike = str | os.PathLike[str]


class DataFileError(ValueError):
    """A data file cannot be read as a numeric table."""


class MissingValueError(DataFileError):
    """A data file has a missing cell (empty, ``NA``, ``NaN``, ...) where missing values
    are not allowed (readers called without ``allow_missing=True``)."""


#: The text of a missing cell when a reader is given ``allow_missing=True``: pandas'
#: default ``na_values`` of ``read_csv`` (the empty field, ``NA``, ``NaN``, ``nan``,
#: ``N/A``, ``NULL``, ``None``, ...), compared after stripping blanks.  ``inf`` is never
#: missing: it stays an error.
MISSING_VALUES: tuple[str, ...] = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)


_BOM = b"\xef\xbb\xbf"
#: Longest first line read while looking for the header (guards against binary files).
_MAX_HEADER_BYTES = 1 << 20


#: Compressed text, decompressed by pyarrow (the suffixes it detects).
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4")


def text_suffix(file: Path) -> str:
    """The file's type suffix, lower case, behind a compression suffix (``.csv.gz``)."""
    suffixes = [suffix.lower() for suffix in file.suffixes]
    if len(suffixes) > 1 and suffixes[-1] in COMPRESSION_SUFFIXES:
        return suffixes[-2]
    return suffixes[-1] if suffixes else ""


def open_binary(file: Path) -> io.BufferedReader:
    """The file's bytes, decompressed (by pyarrow) when its name ends in a compression
    suffix (:data:`COMPRESSION_SUFFIXES`)."""
    import pyarrow as pa

    try:
        stream = pa.input_stream(str(file), compression="detect")
    except pa.ArrowException as exc:
        raise DataFileError(f"{file} cannot be opened ({exc})") from None
    return io.BufferedReader(stream, buffer_size=1 << 16)


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


def find_problem(
    layout: TextLayout, indices: Sequence[int], allow_missing: bool = False
) -> DataFileError:
    """The first place where the file breaks the shared rules, as an error.

    A slow Python pass, run only after a fast parser has failed or found a NaN, so that
    every reader reports the same first problem with its line number.  With
    ``allow_missing`` a cell in :data:`MISSING_VALUES` (or any NaN) is not a problem;
    without it, it is a :class:`MissingValueError`.
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
                number = is_number(value)
                if value in MISSING_VALUES or (number and math.isnan(float(value))):
                    if allow_missing:
                        continue
                    if value == "":
                        return MissingValueError(f"{where} is empty")
                    if number:
                        return MissingValueError(
                            f"{where} is {value!r} (NaN and infinite values cannot be fitted)"
                        )
                    return MissingValueError(f"{where} is {value!r}, a missing value")
                if not number:
                    return DataFileError(f"{where} has {value!r}, not a number")
                if not math.isfinite(float(value)):
                    return DataFileError(
                        f"{where} is {value!r} (NaN and infinite values cannot be fitted)"
                    )
    if rows == 0:
        return DataFileError(f"{file} has no data rows")
    return DataFileError(f"{file}: unreadable content")
