"""File-tailing source: globs -> files (identity, rotation, truncation) -> lines -> records.

The config types are imported at once; the reading machinery (TailSource, Record, Batch,
FileKey) on first use (PEP 562), so loading or checking a config (`opsagent check-config`,
config/schema.py imports TailConfig) does not import the source, its watcher and checkpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from opsagent.sources.tail.config import MultilineConfig, TailConfig

if TYPE_CHECKING:
    from opsagent.sources.tail.identity import FileKey
    from opsagent.sources.tail.source import Batch, Record, TailSource

__all__ = ["Batch", "FileKey", "MultilineConfig", "Record", "TailConfig", "TailSource"]


def __getattr__(name: str) -> object:
    if name == "FileKey":
        from opsagent.sources.tail import identity

        return identity.FileKey
    if name in ("Batch", "Record", "TailSource"):
        from opsagent.sources.tail import source

        return getattr(source, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
