"""Running jobs: spawn through the job's shell in a new session, log its output line by line,
apply the overlap policy and the timeout, and report how each run ended.

Threads: the caller (the daemon's main loop) starts runs and enforces deadlines; the reaper thread
reports exits; the pump thread reads output and finishes runs (after draining their pipes, so a
run's last lines are logged before its end record); the writer thread writes logs.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gorun import spawn
from gorun.clock import Clock
from gorun.crontab import Job
from gorun.expr import format_time
from gorun.metrics import Metrics
from gorun.output import LineSplitter, OutputWriter, Pump
from gorun.reaper import Reaper

log = logging.getLogger("gorun.runner")


@dataclass(frozen=True)
class RunnerConfig:
    """`overlap_default="allow"` is supercronic's `-overlapping`; `kill_grace_secs` is the time
    between SIGTERM and SIGKILL when a timeout or `overlap=replace` stops a run."""

    max_line_bytes: int = 16384
    kill_grace_secs: float = 5.0
    overlap_default: Literal["skip", "allow"] = "skip"
    passthrough_logs: bool = False


@dataclass(eq=False)
class _Gate:
    """A pipe the prestarted jobs due at one moment read; closing `w` releases them."""

    r: int
    w: int
    runs: list[Run] = field(default_factory=list)


@dataclass(eq=False)
class Run:
    job: Job
    number: int
    scheduled: datetime.datetime | None
    catch_up: bool
    started_mono: float = 0.0
    pid: int = 0
    proc: subprocess.Popen[bytes] | None = None
    deadline: float | None = None  # monotonic: when the timeout sends SIGTERM
    kill_at: float | None = None  # monotonic: when SIGKILL follows
    timed_out: bool = False
    replaced: bool = False
    exit_code: int | None = None  # os.waitstatus_to_exitcode: < 0 is a signal
    dropped_lines: int = 0
    truncated_lines: int = 0
    pending: bool = False  # prestarted, waiting at its gate
    aborted: bool = False  # prestarted and killed at its gate: not a run
    dead: bool = False  # its process exited (reaper thread's view)
    gate: _Gate | None = None
    stdin_w: int | None = None
    splitters: dict[str, LineSplitter] = field(default_factory=dict)
    fds: dict[str, int] = field(default_factory=dict)  # open pipes (pump thread's view)

    @property
    def label(self) -> dict[str, Any]:
        return {"job": self.job.id, "run": self.number}


class Runner:
    def __init__(self, config: RunnerConfig, *, reaper: Reaper, clock: Clock,
                 writer: OutputWriter, pump: Pump, metrics: Metrics | None = None,
                 on_finished: Callable[[], None] = lambda: None,
                 base_env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self._reaper = reaper
        self._clock = clock
        self._writer = writer
        self._pump = pump
        self._metrics = metrics
        self._on_finished = on_finished
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._lock = threading.Lock()
        self._live: dict[str, list[Run]] = {}  # job id -> runs whose shell has not exited
        self._numbers: dict[str, int] = {}
        self._gates: dict[datetime.datetime, _Gate] = {}  # caller's thread only

    # --- starting ---------------------------------------------------------------------------

    def policy(self, job: Job) -> str:
        return job.options.overlap or self.config.overlap_default

    def start(self, job: Job, *, scheduled: datetime.datetime | None = None,
              catch_up: bool = False) -> Run | None:
        """Start a run of `job` now, unless its overlap policy says to skip it."""
        run = Run(job, 0, scheduled, catch_up)
        with self._lock:
            if not self._admit(run, self._clock.monotonic()):
                return None
        try:
            self._reaper.spawn(lambda: self._spawn(run), lambda st: self._on_exit(run, st))
        except (OSError, subprocess.SubprocessError, KeyError, ValueError) as e:
            self._failed_to_start(run, e)
            return None
        self._started(run, log_it=False)
        data = spawn.stdin_bytes(job, gated=False)
        if data is not None and run.stdin_w is not None:
            fd, run.stdin_w = run.stdin_w, None
            spawn.feed(fd, data)
        return run

    def prepare(self, job: Job, at: datetime.datetime) -> Run | None:
        """Prestart `job` for its run due at `at`: a process blocked at its gate, released by
        `release(at, ...)`. None if it cannot be prestarted (`start` it at `at` instead)."""
        gate = self._gates.get(at)
        if gate is None and job.stdin is None:
            gate = self._gates[at] = _Gate(*os.pipe2(os.O_CLOEXEC))
        run = Run(job, 0, None, False, pending=True)
        run.gate = gate if job.stdin is None else None
        try:
            self._reaper.spawn(lambda: self._spawn(run, gated=True),
                               lambda st: self._on_exit(run, st))
        except (OSError, subprocess.SubprocessError, KeyError, ValueError):
            self._close_gate_if_unused(at)
            return None
        if gate is not None and run.gate is gate:
            gate.runs.append(run)
        return run

    def release(self, at: datetime.datetime,
                items: list[tuple[Run, datetime.datetime, bool]]) -> list[Job]:
        """Release the prestarted runs due at `at` (with their scheduled time and catch-up
        flag); prestarted runs for `at` not in `items` are killed at their gate. Returns the
        jobs whose prestarted process had died (the caller starts them normally)."""
        now = self._clock.monotonic()
        go: list[Run] = []
        dead: list[Job] = []
        rejected: list[Run] = []
        with self._lock:
            for run, scheduled, catch_up in items:
                if run.exit_code is not None or run.dead:
                    dead.append(run.job)
                    continue
                run.scheduled, run.catch_up = scheduled, catch_up
                if self._admit(run, now):
                    run.pending = False
                    go.append(run)
                else:
                    rejected.append(run)
            for run in go:  # logged before the gates open: their output must come after
                self._writer.control(logging.INFO, "job started",
                                     self._started_extra(run), notify=False)
        gate = self._gates.pop(at, None)
        for run in rejected + (gate.runs if gate is not None else []):
            if run.pending:
                self.abort(run)
        if gate is not None:
            os.close(gate.w)  # every gated job without stdin text goes now
            os.close(gate.r)
        for run in go:
            data = spawn.stdin_bytes(run.job, gated=True)
            if data is not None and run.stdin_w is not None:
                fd, run.stdin_w = run.stdin_w, None
                spawn.feed(fd, data)
        self._writer.wake()
        for run in go:
            self._started(run, log_it=False)
        return dead

    def abort(self, run: Run) -> None:
        """Kill a prestarted run that will not be released (reload, clock jump, shutdown)."""
        with self._lock:
            if not run.pending:
                return
            run.aborted = True
        self._signal(run, signal.SIGKILL, pending_ok=True)
        run.pending = False
        if run.stdin_w is not None:
            os.close(run.stdin_w)
            run.stdin_w = None
        for at, gate in list(self._gates.items()):
            if run in gate.runs:
                gate.runs.remove(run)
                self._close_gate_if_unused(at)

    def _close_gate_if_unused(self, at: datetime.datetime) -> None:
        gate = self._gates.get(at)
        if gate is not None and not any(r.pending for r in gate.runs):
            del self._gates[at]
            os.close(gate.w)
            os.close(gate.r)

    def _admit(self, run: Run, now: float) -> bool:
        """Under the lock: apply the overlap policy, number the run and make it live."""
        job = run.job
        policy = self.policy(job)
        live = self._live.get(job.id, [])
        if live and policy == "skip":
            self._writer.control(logging.WARNING, "previous run still running, skipping "
                                 "this one", {
                "component": "gorun", "job": job.id, "running_run": live[-1].number,
                "scheduled": format_time(run.scheduled) if run.scheduled else None})
            self._count("skipped_overlaps", job)
            return False
        if live and policy == "replace":
            for old in live:
                if not old.replaced:
                    old.replaced = True
                    self._signal(old, signal.SIGTERM)
                    old.kill_at = now + self.config.kill_grace_secs
        run.number = self._numbers.get(job.id, 0) + 1
        self._numbers[job.id] = run.number
        run.started_mono = now
        if job.options.timeout_secs is not None:
            run.deadline = now + job.options.timeout_secs
        self._live.setdefault(job.id, []).append(run)
        return True

    def _spawn(self, run: Run, *, gated: bool = False) -> subprocess.Popen[bytes]:
        """Inside the reaper's spawn lock: start the process and hand its pipes to the pump."""
        gate_r = run.gate.r if run.gate is not None else None
        sp = spawn.spawn(run.job, self._base_env, gate_r=gate_r, gated=gated)
        run.proc, run.pid, run.stdin_w = sp.proc, sp.proc.pid, sp.stdin_w
        if not gated:  # before its pipes are read, so it comes before the run's output
            self._writer.control(logging.INFO, "job started", self._started_extra(run))
        for name, fd in (("stdout", sp.out_r), ("stderr", sp.err_r)):
            run.splitters[name] = LineSplitter(self.config.max_line_bytes)
            run.fds[name] = fd
            self._pump.watch(fd, self._on_data(run, name), self._on_eof(run, name))
        return sp.proc

    def _started_extra(self, run: Run) -> dict[str, Any]:
        return {**run.label, "component": "gorun", "pid": run.pid,
                "scheduled": format_time(run.scheduled) if run.scheduled else None,
                "catch_up": run.catch_up or None, "command": run.job.command}

    def _started(self, run: Run, *, log_it: bool = True) -> None:
        if log_it:
            self._writer.control(logging.INFO, "job started", self._started_extra(run))
        if self._metrics is not None:
            label = self._metrics.job(run.job.id)
            self._metrics.running.labels(label).inc()
            self._metrics.runs.labels(label).inc()
            self._metrics.last_run.labels(label).set(self._clock.now().timestamp())

    def _failed_to_start(self, run: Run, error: Exception) -> None:
        with self._lock:
            self._forget(run)
        self._count("runs", run.job)
        self._count("failures", run.job)
        self._writer.control(logging.ERROR, "job failed to start",
                             {**run.label, "component": "gorun", "error": str(error)})

    # --- output and exit (pump / reaper threads) --------------------------------------------

    def _on_data(self, run: Run, stream: str) -> Callable[[bytes], None]:
        splitter_holder = run.splitters

        def on_data(data: bytes) -> None:
            if run.pending or run.aborted:
                return
            if self.config.passthrough_logs:
                if not self._writer.raw(stream, data):
                    run.dropped_lines += data.count(b"\n") or 1
                return
            self._emit(run, stream, splitter_holder[stream].feed(data))
        return on_data

    def _on_eof(self, run: Run, stream: str) -> Callable[[], None]:
        def on_eof() -> None:
            run.fds.pop(stream, None)
            if not self.config.passthrough_logs:
                self._emit(run, stream, run.splitters[stream].flush())
        return on_eof

    def _emit(self, run: Run, stream: str, lines: list[tuple[bytes, bool]]) -> None:
        for raw, truncated in lines:
            extra: dict[str, Any] = {**run.label, "stream": stream}
            if truncated:
                extra["truncated"] = True
                run.truncated_lines += 1
            if not self._writer.output(raw.decode("utf-8", "replace"), extra):
                run.dropped_lines += 1

    def _on_exit(self, run: Run, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        with self._lock:
            run.dead = True
            if run.pending or run.aborted:
                return  # a prestarted process that never became a run
        self._pump.call(lambda: self._finish(run, code))

    def _finish(self, run: Run, code: int) -> None:
        """On the pump thread: drain the run's pipes, then log and count its end."""
        for fd in list(run.fds.values()):
            self._pump.drain(fd)
        duration = self._clock.monotonic() - run.started_mono
        ok = code == 0 and not run.timed_out
        extra: dict[str, Any] = {**run.label, "component": "gorun", "exit_code": code,
                                 "duration_secs": round(duration, 3)}
        if code < 0:
            extra["signal"] = signal.Signals(-code).name if -code in signal.valid_signals() \
                else -code
        for key in ("timed_out", "replaced"):
            if getattr(run, key):
                extra[key] = True
        if run.dropped_lines or run.truncated_lines:
            extra["dropped_lines"] = run.dropped_lines
            extra["truncated_lines"] = run.truncated_lines
        self._writer.control(logging.INFO if ok else logging.WARNING,
                             "job succeeded" if ok else "job failed", extra)
        m = self._metrics
        if m is not None:
            label = m.job(run.job.id)
            m.running.labels(label).dec()
            m.duration.labels(label).observe(duration)
            if not ok:
                m.failures.labels(label).inc()
            if run.timed_out:
                m.timeouts.labels(label).inc()
            if run.dropped_lines or run.truncated_lines:
                m.dropped_lines.labels(label).inc(run.dropped_lines + run.truncated_lines)
        with self._lock:  # only now: whoever sees it gone knows its end record is queued
            run.exit_code = code
            self._forget(run)
        self._on_finished()

    # --- deadlines and stopping (caller's thread) -------------------------------------------

    def check_deadlines(self) -> float | None:
        """Send the SIGTERM of timeouts and the SIGKILL that follows after the grace; return
        the next monotonic deadline, if any."""
        now = self._clock.monotonic()
        nxt: float | None = None
        with self._lock:
            runs = [r for rs in self._live.values() for r in rs]
        for run in runs:
            if run.deadline is not None and now >= run.deadline:
                run.deadline = None
                run.timed_out = True
                self._writer.control(logging.WARNING, "job timed out, stopping it", {
                    **run.label, "component": "gorun",
                    "timeout_secs": run.job.options.timeout_secs})
                self._signal(run, signal.SIGTERM)
                run.kill_at = now + self.config.kill_grace_secs
            if run.kill_at is not None and now >= run.kill_at:
                run.kill_at = None
                self._signal(run, signal.SIGKILL)
            for t in (run.deadline, run.kill_at):
                if t is not None and (nxt is None or t < nxt):
                    nxt = t
        return nxt

    def signal_all(self, sig: int) -> int:
        """Send `sig` to the process group of every running job; return how many."""
        with self._lock:
            runs = [r for rs in self._live.values() for r in rs]
        for run in runs:
            self._signal(run, sig)
        return len(runs)

    def running(self, job_id: str | None = None) -> int:
        with self._lock:
            if job_id is not None:
                return len(self._live.get(job_id, []))
            return sum(len(rs) for rs in self._live.values())

    def _signal(self, run: Run, sig: int, *, pending_ok: bool = False) -> None:
        if run.pid <= 0 or run.exit_code is not None or run.dead:
            return
        if run.pending and not pending_ok:
            return
        try:
            os.killpg(run.pid, sig)  # the job is its own session and group leader
        except (ProcessLookupError, PermissionError):
            pass

    def _forget(self, run: Run) -> None:
        runs = self._live.get(run.job.id)
        if runs and run in runs:
            runs.remove(run)
            if not runs:
                del self._live[run.job.id]

    def _count(self, what: str, job: Job) -> None:
        if self._metrics is not None:
            getattr(self._metrics, what).labels(self._metrics.job(job.id)).inc()
