"""What a reload changes: a pure comparison of the running components' configs with the new
config's, so only what changed is stopped or started (checkpoints live on disk and survive)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TypeVar

Key = tuple[str, str]
SpecT = TypeVar("SpecT")


@dataclasses.dataclass(frozen=True)
class ReloadPlan:
    stop: tuple[Key, ...]      # removed or changed: stopped (drained) first
    start: tuple[Key, ...]     # added or changed: started after the stops
    keep: tuple[Key, ...]      # unchanged: left running untouched

    @property
    def empty(self) -> bool:
        return not self.stop and not self.start


def plan_reload(running: Mapping[Key, SpecT], wanted: Mapping[Key, SpecT]) -> ReloadPlan:
    """`running`/`wanted`: component key -> the full effective config that built it (the
    agent's specs: section plus anything global it depends on, e.g. state_dir and node
    identity), compared by value."""
    changed = [k for k in running if k in wanted and running[k] != wanted[k]]
    removed = [k for k in running if k not in wanted]
    added = [k for k in wanted if k not in running]
    keep = [k for k in running if k in wanted and running[k] == wanted[k]]
    return ReloadPlan(stop=tuple(removed + changed), start=tuple(changed + added),
                      keep=tuple(keep))


class Settle:
    """When an edited config file is applied: once no change event came for `quiet_secs` and
    the file's content (digest) read then equals the one read `quiet_secs` before.

    A file written in parts (an editor's save, `cat > file`, a copy over the network) is never
    applied half-written as long as each pause is shorter than `quiet_secs`; the second read
    catches writes that made no event. Events never postpone the first look by more than
    `max_wait_secs` (a steady stream of events must not starve the reload; the two equal reads
    still guard against a half-written file). Pure: the caller passes the time and a reader."""

    def __init__(self, quiet_secs: float, max_wait_secs: float | None = None) -> None:
        self.quiet_secs = quiet_secs
        self.max_wait_secs = 5 * quiet_secs if max_wait_secs is None else max_wait_secs
        self.due: float | None = None
        self._first: float | None = None
        self._seen: str | None = None
        self._read_once = False

    def changed(self, now: float) -> None:
        """A change event: wait for quiet again (up to max_wait_secs after the first)."""
        if self._first is None:
            self._first = now
        self.due = min(now + self.quiet_secs, self._first + self.max_wait_secs)

    def timeout(self, now: float) -> float | None:
        """Seconds until `poll` has something to decide; None when nothing is pending."""
        return None if self.due is None else max(0.0, self.due - now)

    def poll(self, now: float, read_digest: Callable[[], str | None]) -> tuple[bool, str | None]:
        """(True, digest) when the file has been stable for `quiet_secs` and may be loaded;
        (False, None) while waiting (or nothing is pending)."""
        if self.due is None or now < self.due:
            return False, None
        digest = read_digest()
        if not self._read_once or digest != self._seen:
            self._seen, self._read_once = digest, True
            self.due = now + self.quiet_secs
            self._first = now
            return False, None
        self.due, self._seen, self._read_once, self._first = None, None, False, None
        return True, digest
