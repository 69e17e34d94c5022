"""Engines: where chunks come from and how their statistics are combined."""

from gmmkit.engines.base import Chunk, Engine
from gmmkit.engines.dask_engine import DaskEngine
from gmmkit.engines.dispatch import as_engine, check_engine_features, is_out_of_core
from gmmkit.engines.memory import MemoryEngine
from gmmkit.engines.sources import (
    ArraySource,
    ChunkSource,
    CSVSource,
    IterableSource,
    ParquetSource,
)
from gmmkit.engines.streaming import StreamingEngine

__all__ = [
    "ArraySource",
    "CSVSource",
    "Chunk",
    "ChunkSource",
    "DaskEngine",
    "Engine",
    "IterableSource",
    "MemoryEngine",
    "ParquetSource",
    "StreamingEngine",
    "as_engine",
    "check_engine_features",
    "is_out_of_core",
]
