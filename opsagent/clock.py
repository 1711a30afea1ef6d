"""Injectable time: `Clock` is what library code asks for the time; tests pass a `FakeClock`.

Library code never calls time.time()/time.monotonic()/sleep directly (STYLE.md habit 4): wall time
(`time()`) is for timestamps that leave the process, monotonic time for every timeout and interval.
"""

from __future__ import annotations

import threading
import time as _time
from typing import Protocol


class Clock(Protocol):
    """A source of wall-clock and monotonic time, in seconds (floats)."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (like time.time())."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds, for timeouts and intervals (like time.monotonic())."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return _time.time()

    def monotonic(self) -> float:
        return _time.monotonic()


class FakeClock:
    """A clock that moves only when told to (`advance`); thread-safe."""

    def __init__(self, wall: float = 1_700_000_000.0, mono: float = 1000.0) -> None:
        self._lock = threading.Lock()
        self._wall = wall
        self._mono = mono

    def time(self) -> float:
        with self._lock:
            return self._wall

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, secs: float) -> None:
        """Move both clocks forward by `secs` (must be >= 0)."""
        if secs < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._wall += secs
            self._mono += secs
