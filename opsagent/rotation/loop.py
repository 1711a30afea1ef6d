"""The continuous mode of one rotation policy: a full pass every `rescan_interval_secs` (the
backstop for lost inotify events, and the clock of time-based rotation), and a pass over the
directories that events marked dirty at most every `min_interval_secs`. A pass that raises is
logged and counted and the loop goes on."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Protocol

from opsagent.clock import Clock
from opsagent.rotation.config import RotateConfig
from opsagent.rotation.metrics import RotationMetrics
from opsagent.rotation.watch import FULL, DirWatcher


class RotationService(Protocol):
    """What the loop needs from rotation.service.RotationService (which calls the loop: a
    protocol here instead of an import keeps the two modules out of an import cycle)."""

    @property
    def clock(self) -> Clock: ...
    @property
    def cfg(self) -> RotateConfig: ...
    @property
    def metrics(self) -> RotationMetrics: ...
    @property
    def discovered(self) -> tuple[list[str], list[str]]: ...   # (leaves, upper dirs)

    def run_pass(self, *, dry_run: bool = ..., only: set[str] | None = ...) -> object: ...
    def watches(self, directory: str) -> bool: ...

log = logging.getLogger("opsagent.rotation")

MAX_DRAIN = 100_000   # events taken per pass: a flood of events cannot postpone the pass
REDISCOVER_SECS = 1.0  # full passes asked for by the watcher: at most this often
# Put on the events queue after setting `stop`, so the loop sees it at once; without it the loop
# still looks at `stop` this often (an idle loop otherwise sleeps until its next full pass).
WAKE = "\x00"        # never a directory path
STOP_CHECK_SECS = 10.0


def run(svc: RotationService, stop: threading.Event, events: queue.Queue[str], *,
        watch: bool) -> None:
    halt = threading.Event()   # the pump's own: `stop` may be shared with other components
    watcher, pump = _start_watcher(events, halt) if watch else (None, None)
    try:
        _loop(svc, stop, events, watcher)
    finally:
        if pump is not None and watcher is not None:
            halt.set()
            watcher.interrupt()
            pump.join(5)
            watcher.close()


def _start_watcher(events: queue.Queue[str], halt: threading.Event
                   ) -> tuple[DirWatcher | None, threading.Thread | None]:
    try:
        watcher = DirWatcher(events)
    except OSError as e:
        log.error("no inotify: relying on the periodic rescan",
                  extra={"component": "rotation", "error": str(e)})
        return None, None
    pump = threading.Thread(target=watcher.pump, args=(halt,), name="rotate-inotify",
                            daemon=True)
    pump.start()
    return watcher, pump


def _loop(svc: RotationService, stop: threading.Event, events: queue.Queue[str],
          watcher: DirWatcher | None) -> None:
    clock, cfg = svc.clock, svc.cfg
    next_full = clock.monotonic()
    last_pass = -1e18
    while not stop.is_set():
        now = clock.monotonic()
        if now >= next_full:
            _safe_pass(svc, None)
            if watcher is not None:
                # Newly watched directories get one more (event-style) pass: what was written
                # there between the pass and the watch made no event.
                for d in watcher.sync(*svc.discovered):
                    events.put(d)
            last_pass = next_full = clock.monotonic()
            next_full += cfg.rescan_interval_secs
            continue
        try:
            first = events.get(timeout=min(next_full - now, STOP_CHECK_SECS))
        except queue.Empty:
            continue
        if first == WAKE:
            continue
        if first == FULL:
            # A directory came or went, or events were lost: rediscover soon, but a writer
            # making and removing directories cannot make us rediscover all the time.
            next_full = min(next_full, max(clock.monotonic(), last_pass + REDISCOVER_SECS))
            continue
        if not svc.watches(first):
            continue
        wait = cfg.min_interval_secs - (clock.monotonic() - last_pass)
        if wait > 0 and stop.wait(wait):
            break
        dirty = {first}
        for _ in range(MAX_DRAIN):
            try:
                d = events.get_nowait()
            except queue.Empty:
                break
            if d == WAKE:
                continue
            if d == FULL:
                next_full = min(next_full, max(clock.monotonic(), last_pass + REDISCOVER_SECS))
            elif svc.watches(d):
                dirty.add(d)
        _safe_pass(svc, dirty)
        last_pass = clock.monotonic()


def _safe_pass(svc: RotationService, only: set[str] | None) -> None:
    name = svc.cfg.name
    try:
        svc.run_pass(only=only)
        svc.metrics.passes.labels(name).inc()
    except Exception as e:  # the loop outlives any one pass
        svc.metrics.errors.labels(name, "pass").inc()
        log.error("rotation pass failed", exc_info=e,
                  extra={"component": "rotation", "policy": name, "error": repr(e)})
