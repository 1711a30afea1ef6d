"""When to let go of a file that left the globs: pure decisions over the files' state (no I/O),
so the budget rules are table-testable."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from opsagent.sources.tail.config import TailConfig


class FileState(Protocol):
    """What the decisions look at (TailedFile provides it)."""

    fd: int
    pos: int
    size: int
    acked: int
    emitted: int
    ready_lines: int
    at_eof: bool
    last_growth: float
    deleted_at: float | None
    rotated_out: bool


F = TypeVar("F", bound=FileState)


def finished_reading(f: FileState, now: float, cfg: TailConfig) -> bool:
    """A deleted file read to EOF, or a renamed-out file read to EOF and idle long enough:
    nothing more will come, so its held partial line / multiline group can be flushed."""
    if f.fd < 0 or (f.deleted_at is None and not f.rotated_out):
        return False
    if not f.at_eof:
        return False
    return f.deleted_at is not None or now - f.last_growth >= cfg.rotated_file_idle_secs


def delivered(f: FileState) -> bool:
    """Everything read was handed out and acknowledged."""
    return f.ready_lines == 0 and f.acked >= f.emitted


def plan(
    files: Iterable[F], now: float, cfg: TailConfig, flushed: set[int]
) -> tuple[list[F], list[F]]:
    """(files to close because they are done, deleted files to abandon over budget).

    `flushed` holds id() of the files whose held data was flushed this round
    (finished_reading was true). A closed fd (abandoned earlier) is forgotten once delivered.
    Deleted files not yet done count against max_open_deleted_files (oldest abandoned first)
    and deleted_file_max_secs."""
    done: list[F] = []
    waiting: list[F] = []
    for f in files:
        if (f.fd < 0 or id(f) in flushed) and delivered(f):
            done.append(f)
            continue
        if f.deleted_at is not None and f.fd >= 0:
            waiting.append(f)
    waiting.sort(key=lambda f: f.deleted_at or 0.0)
    over = len(waiting) - cfg.max_open_deleted_files
    abandon = [
        f for i, f in enumerate(waiting)
        if i < over or now - (f.deleted_at or now) > cfg.deleted_file_max_secs
    ]
    return done, abandon
