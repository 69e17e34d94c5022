"""Chunked data sources for fitting data larger than memory.

``GaussianMixture.fit`` (and ``predict``, ``score_samples``, ``predict_proba``) accept
what these functions return and stream it chunk by chunk, one pass per EM iteration::

    gm = GaussianMixture(16).fit(gmmkit.read_parquet("big.parquet", columns=["a", "b"]))

pyarrow is imported only when a reader is called.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from gmmkit.data.sources import CSVSource, ParquetSource


def read_parquet(
    path: str | os.PathLike[str], columns: Sequence[str | int] | str | None = None
) -> ParquetSource:
    """A chunked source over a Parquet file, or a directory of ``*.parquet`` files.

    Row groups are read in batches; nothing but the schema and the footer is read now.

    Parameters
    ----------
    path : str or Path
    columns : str or list of str or int, optional
        Numeric columns to use, by name or position, with ranges ``"0-12"`` and
        exclusions ``"^label"`` (:func:`gmmkit.data.parse_columns`); all by default.

    Returns
    -------
    ParquetSource
        Float32 when every selected column is float32, float64 otherwise.
    """
    return ParquetSource(path, columns)


def read_csv(
    path: str | os.PathLike[str],
    columns: Sequence[str | int] | str | None = None,
    *,
    header: bool | None = None,
    delimiter: str | None = None,
    allow_missing: bool = False,
) -> CSVSource:
    """A chunked source over a CSV file (plain or compressed: ``.gz``, ``.bz2``, ``.zst``,
    ``.lz4``), parsed as float64 by pyarrow's CSV reader.

    The file is read by the rules of :func:`gmmkit.data.read_table` and gives the same
    columns, values and errors: UTF-8 text (a byte-order mark is skipped), ``#``
    comments, every line with the header's number of fields, unique header names.

    Parameters
    ----------
    path : str or Path
    columns : str or list of str or int, optional
        Columns to use: names (when the file has a header) or 0-based positions, with
        ranges ``"0-12"`` and exclusions ``"^label"`` (:func:`gmmkit.data.parse_columns`).
    header : bool, optional
        Whether the first line holds column names; detected by default (a header is a
        first line with any field that is not a number).
    delimiter : str, optional
        Detected from the first line by default: tab, comma, semicolon, else runs of
        blanks.
    allow_missing : bool, default=False
        Read missing cells (those pandas' ``read_csv`` reads as missing:
        :data:`gmmkit.data.MISSING_VALUES`, the empty field, ``NA``, ``NaN``, ...) as NaN,
        for ``GaussianMixture(missing="marginalize")``; a column without any observed
        value is still an error.

    Returns
    -------
    CSVSource
        A problem in the file (an empty or non-numeric field, NaN, a line with too many
        or too few fields, text that is not UTF-8) stops the first pass over it with a
        :class:`~gmmkit.data.DataFileError` (a ValueError) naming the line.
    """
    return CSVSource(path, columns, header=header, delimiter=delimiter,
                     allow_missing=allow_missing)
