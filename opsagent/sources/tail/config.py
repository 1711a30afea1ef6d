"""Configuration of the file-tailing source (`TailConfig`) and of multiline joining."""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

# Java stack traces: "\tat x.y(Z.java:1)", "Caused by: ...", "\t... 12 more".
DEFAULT_CONTINUATION = r"^\s+at |^Caused by:|^\s+\.\.\. \d+ more|^\s+Suppressed:"


def _check_regex(key: str, pattern: str) -> re.Pattern[bytes]:
    try:
        return re.compile(pattern.encode())
    except re.error as e:
        raise ValueError(f"{key}: invalid regular expression {pattern!r}: {e}") from None


@dataclasses.dataclass(frozen=True)
class MultilineConfig:
    """Joins several physical lines into one record (Java stack traces).

    mode "continuation": a line matching `pattern` belongs to the record before it.
    mode "start": a line matching `pattern` starts a new record; others continue the previous one.
    A record is emitted when the next record starts, when it reaches `max_lines` or would pass
    `max_bytes` (the rest continues as a new record: nothing is dropped), or when no line has
    arrived for `flush_timeout_secs`.
    """

    mode: Literal["continuation", "start"] = "continuation"
    pattern: str = DEFAULT_CONTINUATION
    max_lines: int = 500
    max_bytes: int = 1_048_576
    flush_timeout_secs: float = 2.0

    def __post_init__(self) -> None:
        _check_regex("pattern", self.pattern)
        if self.max_lines < 1:
            raise ValueError(f"max_lines must be >= 1, got {self.max_lines}")
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {self.max_bytes}")
        if self.flush_timeout_secs <= 0:
            raise ValueError(f"flush_timeout_secs must be > 0, got {self.flush_timeout_secs}")


@dataclasses.dataclass(frozen=True)
class TailConfig:
    """Which files to tail and how (one per pipeline; TOML table `[forward.source]` etc.)."""

    include: tuple[str, ...]  # absolute glob patterns; `**` matches any number of directories
    exclude: tuple[str, ...] = ()  # globs on the full path; without "/": on the file name
    path_pattern: str = ""  # regex with named groups -> Record.fields (e.g. namespace, pod)
    start_at: Literal["beginning", "end"] = "beginning"  # files present at start, no checkpoint
    max_line_bytes: int = 1_048_576  # longer lines are truncated to this and counted
    partial_line_timeout_secs: float = 5.0  # a last line without newline is emitted after this
    rescan_interval_secs: float = 10.0  # backstop for lost inotify events
    read_chunk_bytes: int = 262_144
    max_read_ahead_bytes: int = 8_388_608  # per file: read but not yet acked (bounds memory)
    max_open_deleted_files: int = 64  # deleted-but-undelivered files kept open at most
    deleted_file_max_secs: float = 3600.0  # ... and for at most this long after deletion
    rotated_file_idle_secs: float = 60.0  # a file renamed out of the globs is closed after EOF,
    #                                       all acked, and this long without growth
    checkpoint_interval_secs: float = 1.0  # how often acked offsets are saved (and at stop)
    multiline: MultilineConfig | None = None

    def __post_init__(self) -> None:
        if not self.include:
            raise ValueError("include must list at least one glob pattern")
        for i, pat in enumerate(self.include):
            if not pat.startswith("/"):
                raise ValueError(f"include[{i}] must be an absolute path, got {pat!r}")
        if self.path_pattern:
            _check_regex("path_pattern", self.path_pattern)
        positive = {
            "max_line_bytes": self.max_line_bytes,
            "partial_line_timeout_secs": self.partial_line_timeout_secs,
            "rescan_interval_secs": self.rescan_interval_secs,
            "read_chunk_bytes": self.read_chunk_bytes,
            "max_read_ahead_bytes": self.max_read_ahead_bytes,
            "deleted_file_max_secs": self.deleted_file_max_secs,
            "rotated_file_idle_secs": self.rotated_file_idle_secs,
            "checkpoint_interval_secs": self.checkpoint_interval_secs,
        }
        for key, value in positive.items():
            if value <= 0:
                raise ValueError(f"{key} must be > 0, got {value}")
        if self.max_open_deleted_files < 0:
            raise ValueError(
                f"max_open_deleted_files must be >= 0, got {self.max_open_deleted_files}"
            )
        if self.max_read_ahead_bytes < self.read_chunk_bytes:
            raise ValueError("max_read_ahead_bytes must be >= read_chunk_bytes")
