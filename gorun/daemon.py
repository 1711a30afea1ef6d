"""gorun's main loop: load crontabs, start due runs, reload on change, drain on SIGTERM.

Everything happens on the thread that calls `Daemon.run()`; other threads and signal handlers
only `post()` an event into a SimpleQueue (which is safe to put into from a signal handler). The
loop waits on that queue with a timeout that ends exactly at the next fire time, deadline, reload
or rescan, so it wakes precisely and idles cheaply; it wakes at least every `max_sleep_secs` so
a wall-clock step is noticed soon even while nothing is due.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

from gorun.clock import Clock
from gorun.crontab import Crontab, Job
from gorun.launch import Launcher, Prestarter
from gorun.metrics import Metrics
from gorun.schedule import Schedule, Tick

log = logging.getLogger("gorun.daemon")
_C = {"component": "gorun"}

# Events posted to the loop.
STOP, RELOAD_NOW, FILES_CHANGED, RUN_DONE = "stop", "reload-now", "files-changed", "run-done"
RECONFIGURE = "reconfigure"


class RunnerLike(Launcher, Protocol):
    """What the loop needs from gorun.runner.Runner (a fake in tests)."""

    def check_deadlines(self) -> float | None: ...

    def signal_all(self, sig: int) -> int: ...


@dataclass(frozen=True)
class DaemonConfig:
    """`grace_secs`: how long SIGTERM'd jobs get at shutdown before SIGKILL. `reload_debounce_secs`
    coalesces the burst of events one file update makes; `rescan_secs` re-reads the crontabs
    even without events (inotify can overflow or miss a bind-mount change)."""

    paths: tuple[str, ...]
    grace_secs: float = 30.0
    reload_debounce_secs: float = 0.25
    rescan_secs: float = 60.0
    max_sleep_secs: float = 10.0
    prestart_secs: float = 0.5  # 0: no prestarting (gorun/launch.py)
    drain_reap_secs: float = 5.0


def fingerprint(path: str) -> str | None:
    """sha256 of the file's bytes, None when unreadable (reload is skipped when unchanged)."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


class Daemon:
    def __init__(self, config: DaemonConfig, *, clock: Clock, runner: RunnerLike,
                 loader: Callable[[str], Crontab], metrics: Metrics | None = None) -> None:
        self.config = config
        self.clock = clock
        self.runner = runner
        self._load = loader
        self.metrics = metrics
        self.events: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.schedule = Schedule(clock.now(), clock.monotonic())
        self._files: dict[str, tuple[str | None, Crontab]] = {}
        self._reload_at: float | None = None
        self._next_rescan = clock.monotonic() + config.rescan_secs
        self._stopping = False
        self.launcher = Prestarter(runner, lead_secs=config.prestart_secs,
                                   started=self._observe_start)
        self._prestart_at: datetime.datetime | None = None
        self._pending_lock = threading.Lock()
        self._pending: tuple[DaemonConfig, Callable[[str], Crontab] | None] | None = None

    # --- called from anywhere ---------------------------------------------------------------

    def post(self, event: str) -> None:
        """Thread- and signal-safe: wake the loop with `event`."""
        self.events.put(event)

    def reconfigure(self, config: DaemonConfig,
                    loader: Callable[[str], Crontab] | None = None) -> None:
        """Thread-safe: switch to `config` (another set of crontab files, another grace) and,
        when given, another crontab loader, crontab by crontab on the loop's thread: a removed
        file's jobs are no longer scheduled, an added file's jobs are (its @reboot jobs do not
        run: @reboot runs once per start), unchanged jobs keep their next fire time, and
        running jobs are never signalled."""
        with self._pending_lock:
            self._pending = (config, loader)
        self.post(RECONFIGURE)

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: drain and exit 0; SIGHUP: reload now. Handlers only enqueue."""
        def on_stop(_sig: int, _frame: FrameType | None) -> None:
            self.post(STOP)

        def on_hup(_sig: int, _frame: FrameType | None) -> None:
            self.post(RELOAD_NOW)
        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Run until STOP; return the exit code (0 after a drain, 2 if a crontab is unreadable)."""
        for path in self.config.paths:
            if not self._reload_file(path, initial=True):
                return 2
        self._update_jobs_gauge()
        for job in self._all_jobs():
            if job.reboot:
                self.runner.start(job)
        log.info("gorun started", extra={**_C, "files": list(self.config.paths),
                                          "jobs": len(self._all_jobs())})
        while not self._stopping:
            self._step()
        return self._drain()

    def _step(self) -> None:
        clock = self.clock
        now = clock.now()
        tick = self.schedule.tick(now, clock.monotonic(), defer=True)
        if tick.due:
            self.launcher.fire(tick.due, now)  # first: nothing else before the runs start
        self.schedule.settle()
        if tick.due:
            self._update_next_runs()
        self._handle_tick(tick)
        self._prestart_at = self.launcher.prestart(self.schedule, clock.now())
        deadline = self.runner.check_deadlines()
        mono = clock.monotonic()
        if self._reload_at is not None and mono >= self._reload_at:
            self._reload_at = None
            self.reload()
        if mono >= self._next_rescan:
            self._next_rescan = mono + self.config.rescan_secs
            self.reload(quiet=True)
        timeout = self._timeout(deadline)
        event = clock.wait(self.events, timeout)
        while event is not None:
            self._handle_event(event)
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                event = None

    def _observe_start(self, at: datetime.datetime, n: int) -> None:
        if self.metrics is not None and n > 0:
            delay = max(0.0, (self.clock.now() - at).total_seconds())
            for _ in range(n):
                self.metrics.start_delay.observe(delay)

    def _timeout(self, deadline: float | None) -> float:
        mono = self.clock.monotonic()
        limits = [self.config.max_sleep_secs, self._next_rescan - mono]
        wake = self.schedule.next_wake()
        if wake is not None:
            limits.append((wake - self.clock.now()).total_seconds())
        if deadline is not None:
            limits.append(deadline - mono)
        if self._prestart_at is not None:
            limits.append((self._prestart_at - self.clock.now()).total_seconds())
        if self._reload_at is not None:
            limits.append(self._reload_at - mono)
        return max(0.0, min(limits))

    def _handle_event(self, event: str) -> None:
        if event == STOP:
            self._stopping = True
        elif event == RELOAD_NOW:
            log.info("SIGHUP: reloading crontabs", extra=_C)
            self._reload_at = None
            self.reload()
        elif event == RECONFIGURE:
            self._reconfigure()
        elif event == FILES_CHANGED and self._reload_at is None:
            self._reload_at = self.clock.monotonic() + self.config.reload_debounce_secs
        # RUN_DONE and unknown events only wake the loop

    def _handle_tick(self, tick: Tick) -> None:
        m = self.metrics
        if tick.jump is not None:
            j = tick.jump
            log.warning("wall clock jumped", extra={
                **_C, "jump_secs": round(j.secs, 3), "direction": j.kind, "big": j.big,
                "catch_up": j.kind == "forward" and not j.big})
            if m is not None:
                m.clock_jumps.labels(j.kind).inc()
        if tick.missed:
            log.warning("scheduled runs missed", extra={
                **_C, "jobs": len(tick.missed), "runs": sum(tick.missed.values()),
                "job": next(iter(tick.missed)) if len(tick.missed) == 1 else None})
            if m is not None:
                for jid, n in tick.missed.items():
                    m.missed.labels(m.job(jid)).inc(n)

    # --- reload -----------------------------------------------------------------------------

    def reload(self, *, quiet: bool = False) -> None:
        """Re-read every crontab; a changed file replaces its jobs unless it has errors."""
        for path in self.config.paths:
            self._reload_file(path, quiet=quiet)
        self._update_jobs_gauge()

    def _reconfigure(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        config, loader = pending
        removed = [p for p in self.config.paths if p not in config.paths]
        self.config = config
        if loader is not None:
            # Another crontab format (system or not): every file is parsed again.
            self._load = loader
            self._files = {p: (None, tab) for p, (_fp, tab) in self._files.items()}
        for path in removed:
            self.schedule.drop_file(path)
            self._files.pop(path, None)
            log.info("crontab removed", extra={**_C, "file": path})
        for path in config.paths:
            self._reload_file(path)
        self._update_jobs_gauge()

    def _reload_file(self, path: str, *, initial: bool = False, quiet: bool = False) -> bool:
        fp = fingerprint(path)
        old = self._files.get(path)
        if old is not None and fp is not None and old[0] == fp:
            if not quiet and self.metrics is not None:
                self.metrics.reloads.labels("unchanged").inc()
            return True
        crontab = self._load(path)
        errors = [p for p in crontab.problems if p.severity == "error"]
        for problem in crontab.problems:
            log.log(logging.ERROR if problem.severity == "error" else logging.WARNING,
                    str(problem), extra={**_C, "file": problem.file, "line": problem.line})
        if fp is None and initial:
            log.error("cannot read crontab", extra={**_C, "file": path})
            return False
        if errors and not initial:
            log.error("crontab has errors, keeping its previous schedule",
                      extra={**_C, "file": path, "errors": len(errors)})
            if self.metrics is not None:
                self.metrics.reloads.labels("error").inc()
            return True
        self._files[path] = (fp, crontab)
        self.schedule.set_jobs(path, crontab.jobs, self.clock.now())
        if not initial:
            log.info("crontab reloaded", extra={**_C, "file": path, "jobs": len(crontab.jobs)})
            if self.metrics is not None:
                self.metrics.reloads.labels("ok").inc()
        return True

    def _all_jobs(self) -> list[Job]:
        return [job for _, tab in self._files.values() for job in tab.jobs]

    def _update_jobs_gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.jobs.set(len(self._all_jobs()))
        self._update_next_runs()

    def _update_next_runs(self) -> None:
        if self.metrics is not None:
            fires = {job.id: self.schedule.next_fire(job.id) for job in self._all_jobs()}
            self.metrics.set_next_runs({jid: None if t is None else t.timestamp()
                                        for jid, t in fires.items()})

    # --- shutdown ---------------------------------------------------------------------------

    def _drain(self) -> int:
        clock = self.clock
        self.launcher.abort_all()
        n = self.runner.signal_all(signal.SIGTERM)
        log.info("stopping", extra={**_C, "running_jobs": n, "grace_secs": self.config.grace_secs})
        deadline = clock.monotonic() + self.config.grace_secs
        if not self._wait_idle(deadline):
            n = self.runner.signal_all(signal.SIGKILL)
            log.warning("grace period over, killed the remaining jobs",
                        extra={**_C, "killed": n})
            self._wait_idle(clock.monotonic() + self.config.drain_reap_secs, stop_early=False)
        return 0

    def _wait_idle(self, deadline: float, *, stop_early: bool = True) -> bool:
        """Wait until no run is left or `deadline`; a second STOP ends the wait at once."""
        while self.runner.running():
            left = deadline - self.clock.monotonic()
            if left <= 0:
                return False
            self.runner.check_deadlines()
            event = self.clock.wait(self.events, min(left, 1.0))
            if event == STOP and stop_early:
                return False
        return True
