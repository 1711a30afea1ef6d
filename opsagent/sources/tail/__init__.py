"""File-tailing source: globs -> files (identity, rotation, truncation) -> lines -> records."""

from opsagent.sources.tail.config import MultilineConfig, TailConfig
from opsagent.sources.tail.identity import FileKey
from opsagent.sources.tail.source import Batch, Record, TailSource

__all__ = ["Batch", "FileKey", "MultilineConfig", "Record", "TailConfig", "TailSource"]
