"""Data files: numeric tables in (``read_table``, or ``open_table`` streaming what does
not fit in memory; ``parse_columns`` for every column selection) and result columns out
(``write_table``, ``TableWriter``)."""

from gmmkit.data.columns import parse_columns
from gmmkit.data.streams import open_table, row_blocks, take_columns
from gmmkit.data.tables import DataFileError, TableWriter, read_table, write_table
from gmmkit.data.text import MISSING_VALUES, MissingValueError

__all__ = [
    "MISSING_VALUES",
    "DataFileError",
    "MissingValueError",
    "TableWriter",
    "open_table",
    "parse_columns",
    "read_table",
    "row_blocks",
    "take_columns",
    "write_table",
]
