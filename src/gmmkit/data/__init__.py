"""Data files: numeric tables in (``read_table``) and result columns out (``write_table``)."""

from gmmkit.data.tables import DataFileError, read_table, write_table

__all__ = ["DataFileError", "read_table", "write_table"]
