"""When a quiet tail source must look at its files again by itself: a pure decision over the
files' state (no I/O), so an idle reader can sleep until an inotify event or this deadline
instead of polling (issue 12, "Idle cost").

Everything that happens *because data arrives* comes with an event: a write or a rename in a
watched directory (dirwatch), an acknowledgement (TailSource.ack), a stop. What is left are the
rules that fire because time passed; each gives its deadline here:
- a partial last line is emitted partial_line_timeout_secs after the file stopped growing
  (not for holding sources: they wait for the newline);
- a multiline group is flushed flush_timeout_secs after its last line (MultilineJoiner.due_at);
- a file renamed out of the globs is polled until it is closed (rotated_file_idle_secs after it
  stopped growing): its new directory may have no watch;
- a deleted file still open is abandoned deleted_file_max_secs after its deletion;
- checkpoints of files found at start but missing are kept until `orphans_until`.
The periodic rescan (rescan_interval_secs) and the checkpoint save are the caller's own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from opsagent.sources.tail.config import TailConfig


class _Joiner(Protocol):
    @property
    def held(self) -> bool: ...

    def due_at(self) -> float | None: ...


class DueState(Protocol):
    """What the decision looks at (TailedFile provides it)."""

    fd: int
    at_eof: bool
    ready_lines: int
    last_growth: float
    deleted_at: float | None
    rotated_out: bool
    buf: bytes
    skipping: bool

    @property
    def joiner(self) -> _Joiner | None: ...


def next_due(files: Iterable[DueState], now: float, cfg: TailConfig, *,
             hold_partial: bool) -> float | None:
    """The earliest monotonic time at which some file's time-based rule may fire (`now` when
    one has lines ready or unread data), None when no file has such a rule pending."""
    due: float | None = None

    def at(t: float) -> None:
        nonlocal due
        due = t if due is None or t < due else due

    for f in files:
        if f.fd < 0:
            continue  # closed, only waiting for acknowledgements (an ack wakes the reader)
        if f.ready_lines:
            return now
        if not f.at_eof:
            # Unread bytes (the next poll reads them) or the read-ahead cap (an ack wakes).
            continue
        if f.deleted_at is not None:
            at(f.deleted_at + cfg.deleted_file_max_secs)
        elif f.rotated_out:
            # Renamed out of the globs, maybe into a directory nobody watches: the writer's
            # last lines there may make no event. Polled (the caller's short timeout) until it
            # is closed, rotated_file_idle_secs after it stopped growing.
            return now
        if (f.buf or f.skipping) and not hold_partial:
            at(f.last_growth + cfg.partial_line_timeout_secs)
        j = f.joiner
        if j is not None and j.held:
            t = j.due_at()
            if t is not None:
                at(t)
    return due
