"""Engines: where chunks come from and how their statistics are combined."""

from gmmkit.engines.base import Chunk, Engine
from gmmkit.engines.memory import MemoryEngine

__all__ = ["Chunk", "Engine", "MemoryEngine"]
