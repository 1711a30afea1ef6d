"""The clock gorun's scheduler runs on: wall time, monotonic time and a wait that tests can fake.

The scheduler compares wall-clock progress with monotonic progress between wake-ups to tell a clock
step (NTP correction, `date -s`, VM resume) from ordinary waiting (docs/cron.md, "Clock jumps").
"""

from __future__ import annotations

import datetime
import queue
import time
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    """What the daemon needs from time. `now()` is aware (UTC); `monotonic()` never jumps."""

    def now(self) -> datetime.datetime: ...

    def monotonic(self) -> float: ...

    def wait(self, events: queue.SimpleQueue[T], timeout: float) -> T | None:
        """Next item of `events`, or None once `timeout` seconds have passed without one."""
        ...


class SystemClock:
    """The real clocks; `wait` blocks on the queue (signal handlers put into it, see daemon.py)."""

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, events: queue.SimpleQueue[T], timeout: float) -> T | None:
        try:
            return events.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None


class FakeClock:
    """A clock tests drive by hand: `wait` returns a queued item at once, or else advances both
    clocks by `timeout`. `jump()` steps the wall clock alone, like `date -s`."""

    def __init__(self, start: datetime.datetime, mono: float = 1000.0) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware start time")
        self._wall = start.astimezone(datetime.UTC)
        self._mono = mono
        self.waits: list[float] = []

    def now(self) -> datetime.datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, secs: float) -> None:
        self._wall += datetime.timedelta(seconds=secs)
        self._mono += secs

    def jump(self, secs: float) -> None:
        self._wall += datetime.timedelta(seconds=secs)

    def wait(self, events: queue.SimpleQueue[T], timeout: float) -> T | None:
        self.waits.append(timeout)
        try:
            return events.get_nowait()
        except queue.Empty:
            self.advance(max(0.0, timeout))
            return None
