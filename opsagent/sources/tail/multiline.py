"""Multiline joining: groups consecutive lines of one file into one record (Java stack traces),
keeping byte spans so a joined record can be acknowledged like a line. A source-side utility:
the tail reader joins as it reads, so a joined record is acknowledged and checkpointed whole."""

from __future__ import annotations

import re

from opsagent.clock import Clock
from opsagent.sources.tail.config import MultilineConfig

# One line or joined group: (start, end, data, truncated).
Line = tuple[int, int, bytes, bool]


class MultilineJoiner:
    """Joins the lines of ONE file (one joiner per file). Not thread-safe.

    A joined record spans from its first line's start to its last line's end; its data is the
    lines joined with b"\\n" (so end - start == len(data) + 1 when every line had a newline and
    none was truncated). Lines are never dropped: a group that reaches max_lines or would pass
    max_bytes is emitted and the next line starts a new group. Only a single line longer than
    max_bytes is cut (truncated=True).
    """

    def __init__(self, cfg: MultilineConfig, clock: Clock) -> None:
        self._cfg = cfg
        self._clock = clock
        self._regex = re.compile(cfg.pattern.encode())
        self._continues_on_match = cfg.mode == "continuation"
        self._group: list[Line] = []
        self._size = 0  # bytes of the joined data so far
        self._last_push = clock.monotonic()

    @property
    def held(self) -> bool:
        """Whether a group is waiting for more lines."""
        return bool(self._group)

    @property
    def held_start(self) -> int | None:
        """Start offset of the held group (None when nothing is held)."""
        return self._group[0][0] if self._group else None

    def push(self, lines: list[Line]) -> list[Line]:
        """Feed consecutive lines; returns the groups completed by them."""
        if not lines:
            return []
        out: list[Line] = []
        search = self._regex.search
        on_match = self._continues_on_match
        max_lines = self._cfg.max_lines
        max_bytes = self._cfg.max_bytes
        group = self._group
        for line in lines:
            data = line[2]
            if len(data) > max_bytes:
                line = (line[0], line[1], data[:max_bytes], True)
            if group:
                continues = (search(data) is not None) == on_match
                if (continues and len(group) < max_lines
                        and self._size + 1 + len(line[2]) <= max_bytes):
                    group.append(line)
                    self._size += 1 + len(line[2])
                    continue
                out.append(self._join(group))
                group.clear()
            group.append(line)
            self._size = len(line[2])
        self._last_push = self._clock.monotonic()
        return out

    def due_at(self) -> float | None:
        """When flush_due() will return the held group (monotonic), None when none is held."""
        return self._last_push + self._cfg.flush_timeout_secs if self._group else None

    def flush_due(self) -> list[Line]:
        """The held group if no line arrived for flush_timeout_secs, else []."""
        if self._group and (
            self._clock.monotonic() - self._last_push >= self._cfg.flush_timeout_secs
        ):
            return self.flush()
        return []

    def flush(self) -> list[Line]:
        """The held group now (shutdown, end of a rotated file)."""
        if not self._group:
            return []
        joined = self._join(self._group)
        self._group.clear()
        self._size = 0
        return [joined]

    @staticmethod
    def _join(group: list[Line]) -> Line:
        if len(group) == 1:
            return group[0]
        return (
            group[0][0],
            group[-1][1],
            b"\n".join(line[2] for line in group),
            any(line[3] for line in group),
        )
