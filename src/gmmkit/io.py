"""Compatibility module: model files live in :mod:`gmmkit.modelfile`, data tables in
:mod:`gmmkit.data`. The names below keep ``gmmkit.io.load`` and friends working."""

from gmmkit.data.tables import DataFileError, read_table, write_table
from gmmkit.modelfile import (
    FORMAT_NAME,
    FORMAT_VERSION,
    ModelFileError,
    SaveMixin,
    load,
    read_metadata,
    register_estimator,
    save,
    validated_mixture_params,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "DataFileError",
    "ModelFileError",
    "SaveMixin",
    "load",
    "read_metadata",
    "read_table",
    "register_estimator",
    "save",
    "validated_mixture_params",
    "write_table",
]
