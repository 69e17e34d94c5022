"""Engines: where chunks come from and how their statistics are combined."""

from typing import Any

from gmmkit.engines.base import Chunk, Engine
from gmmkit.engines.dask_engine import DaskEngine
from gmmkit.engines.dispatch import as_engine, check_engine_features, is_out_of_core
from gmmkit.engines.memory import MemoryEngine
from gmmkit.engines.sources import ArraySource, ChunkSource, IterableSource
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


def __getattr__(name: str) -> Any:
    """The file sources live with the data readers (:mod:`gmmkit.data.sources`), which
    import this package: they are looked up there when first asked for."""
    if name in ("CSVSource", "ParquetSource"):
        from gmmkit.data import sources

        return getattr(sources, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
