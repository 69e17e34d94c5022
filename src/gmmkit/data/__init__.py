"""Data files: numeric tables in (``read_table``, ``parse_columns``) and result columns
out (``write_table``)."""

from gmmkit.data.columns import parse_columns
from gmmkit.data.tables import DataFileError, read_table, write_table

__all__ = ["DataFileError", "parse_columns", "read_table", "write_table"]
