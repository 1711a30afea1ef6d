"""Rotation's directory watcher: the shared one in opsagent/dirwatch.py (tail discovery uses it
too); kept under this name for the rotation loop."""

from opsagent.dirwatch import FULL, LEAF_MASK, UPPER_MASK, DirWatcher

__all__ = ["FULL", "LEAF_MASK", "UPPER_MASK", "DirWatcher"]
