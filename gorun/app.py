"""Assembling gorun: the runtime pieces wired together, for the `gorun` command and the agent.

    app = GorunApp(GorunOptions(paths=("/etc/crontab",)), registry=CollectorRegistry())
    app.run()                      # blocks until app.stop() (or SIGTERM when installed)

Standalone `gorun` reaps every child (OrphanReaper, optionally as a child subreaper); embedded in
a process that runs other subprocesses, pass `reap_orphans=False` (ChildReaper) so gorun never
waits for children that are not its own.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
import threading
from dataclasses import dataclass
from datetime import tzinfo
from typing import BinaryIO

from prometheus_client import CollectorRegistry

from gorun.clock import Clock, SystemClock
from gorun.crontab import load_crontab
from gorun.daemon import FILES_CHANGED, RELOAD_NOW, RUN_DONE, STOP, Daemon, DaemonConfig
from gorun.metrics import Metrics
from gorun.output import OutputWriter, Pump
from gorun.reaper import ChildReaper, OrphanReaper, Reaper
from gorun.runner import Runner, RunnerConfig
from gorun.watch import CrontabWatcher

JOB_LOGGER = "gorun.job"


@dataclass(frozen=True)
class GorunOptions:
    paths: tuple[str, ...]
    system: bool = False  # /etc/crontab form with a user column
    default_tz: tzinfo | None = None
    grace_secs: float = 30.0
    kill_grace_secs: float = 5.0
    overlapping: bool = False  # supercronic -overlapping: overlap=allow unless the job says
    passthrough_logs: bool = False
    max_line_bytes: int = 16384
    reap_orphans: bool = True
    watch: bool = True


class GorunApp:
    def __init__(self, options: GorunOptions, *, registry: CollectorRegistry,
                 metrics: Metrics | None = None, reaper: Reaper | None = None,
                 clock: Clock | None = None, stdout: BinaryIO | None = None,
                 stderr: BinaryIO | None = None) -> None:
        """`metrics`: reuse collectors already registered in `registry` (a host that rebuilds
        the app on reload must, as collectors register once). `reaper`: a reaper the host owns
        and shares (it is not stopped with the app); default: one of our own, per
        `options.reap_orphans`."""
        self.options = options
        self.metrics = metrics if metrics is not None else Metrics(registry)
        self.clock = clock or SystemClock()
        orphans = self.metrics.orphans_reaped
        self._own_reaper = reaper is None
        self.reaper: Reaper = reaper if reaper is not None else (
            OrphanReaper(on_orphan=lambda _pid, _st: orphans.inc())
            if options.reap_orphans else ChildReaper())
        self.writer = OutputWriter(logging.getLogger(JOB_LOGGER),
                                   stdout=stdout or sys.stdout.buffer,
                                   stderr=stderr or sys.stderr.buffer)
        self.pump = Pump()
        self.runner = Runner(
            RunnerConfig(max_line_bytes=options.max_line_bytes,
                         kill_grace_secs=options.kill_grace_secs,
                         overlap_default="allow" if options.overlapping else "skip",
                         passthrough_logs=options.passthrough_logs),
            reaper=self.reaper, clock=self.clock, writer=self.writer, pump=self.pump,
            metrics=self.metrics, on_finished=lambda: self.daemon.post(RUN_DONE))
        loader = functools.partial(load_crontab, system=options.system,
                                   default_tz=options.default_tz)
        self.daemon = Daemon(DaemonConfig(paths=options.paths, grace_secs=options.grace_secs),
                             clock=self.clock, runner=self.runner, loader=loader,
                             metrics=self.metrics)
        self.watcher: CrontabWatcher | None = None
        self._watch_lock = threading.Lock()
        self._closed = False
        self.done = threading.Event()

    def run(self, *, signals: bool = False) -> int:
        """Run the scheduler until stopped; return the exit code. `signals` installs the
        SIGTERM/SIGINT/SIGHUP handlers (main thread only)."""
        if signals:
            self.daemon.install_signal_handlers()
        self._watch(self.options.paths)
        try:
            return self.daemon.run()
        finally:
            with self._watch_lock:
                self._closed = True
                if self.watcher is not None:
                    self.watcher.stop()
            self.pump.stop()
            self.writer.close()  # the runs' last records first, then ours
            if self._own_reaper:
                self.reaper.stop()
            logging.getLogger("gorun.daemon").info("stopped", extra={"component": "gorun"})
            self.done.set()

    def stop(self) -> None:
        """Drain and stop (thread-safe): like SIGTERM."""
        self.daemon.post(STOP)

    def _watch(self, paths: tuple[str, ...]) -> None:
        if not self.options.watch:
            return
        with self._watch_lock:
            if self._closed:
                return
            if self.watcher is not None:
                self.watcher.stop()
            self.watcher = CrontabWatcher(paths, lambda: self.daemon.post(FILES_CHANGED))
            self.watcher.start()

    def reconfigure(self, paths: tuple[str, ...], *, system: bool, grace_secs: float) -> None:
        """Switch to another set of crontabs (thread-safe), crontab by crontab: running jobs
        are never killed and @reboot jobs do not run again (Daemon.reconfigure)."""
        loader = None
        if system != self.options.system:
            loader = functools.partial(load_crontab, system=system,
                                       default_tz=self.options.default_tz)
        watched = paths != self.options.paths
        self.options = dataclasses.replace(self.options, paths=paths, system=system,
                                           grace_secs=grace_secs)
        self.daemon.reconfigure(dataclasses.replace(self.daemon.config, paths=paths,
                                                    grace_secs=grace_secs), loader)
        if watched:
            self._watch(paths)

    def reload(self) -> None:
        """Re-read the crontabs now (thread-safe): like SIGHUP."""
        self.daemon.post(RELOAD_NOW)
