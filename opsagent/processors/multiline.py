"""Multiline joining: groups consecutive lines of one file into one record (Java stack traces),
keeping byte spans so a joined record can be acknowledged like a line."""

from __future__ import annotations

from opsagent.clock import Clock
from opsagent.sources.tail.config import MultilineConfig

# One line or joined group: (start, end, data, truncated).
Line = tuple[int, int, bytes, bool]


class MultilineJoiner:
    """Joins the lines of ONE file (one joiner per file). Not thread-safe."""

    def __init__(self, cfg: MultilineConfig, clock: Clock) -> None:
        raise NotImplementedError

    def push(self, lines: list[Line]) -> list[Line]:
        """Feed consecutive lines; returns the groups completed by them."""
        raise NotImplementedError

    def flush_due(self) -> list[Line]:
        """The held group if no line arrived for flush_timeout_secs, else []."""
        raise NotImplementedError

    def flush(self) -> list[Line]:
        """The held group now (shutdown, end of a rotated file)."""
        raise NotImplementedError
