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
import pwd
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gorun.clock import Clock
from gorun.crontab import Job
from gorun.expr import format_time
from gorun.metrics import Metrics
from gorun.output import LineSplitter, OutputWriter, Pump
from gorun.reaper import Reaper

log = logging.getLogger("gorun.runner")
STDIN_INLINE_MAX = 4096  # a fresh pipe always takes this much without blocking


@dataclass(frozen=True)
class RunnerConfig:
    """`overlap_default="allow"` is supercronic's `-overlapping`; `kill_grace_secs` is the time
    between SIGTERM and SIGKILL when a timeout or `overlap=replace` stops a run."""

    max_line_bytes: int = 16384
    kill_grace_secs: float = 5.0
    overlap_default: Literal["skip", "allow"] = "skip"
    passthrough_logs: bool = False


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

    # --- starting ---------------------------------------------------------------------------

    def policy(self, job: Job) -> str:
        overlap = job.options.overlap
        if overlap == "skip" and self.config.overlap_default == "allow":
            return "allow"
        return overlap

    def start(self, job: Job, *, scheduled: datetime.datetime | None = None,
              catch_up: bool = False) -> Run | None:
        """Start a run of `job` now, unless its overlap policy says to skip it."""
        policy = self.policy(job)
        now = self._clock.monotonic()
        with self._lock:
            live = self._live.get(job.id, [])
            if live and policy == "skip":
                self._writer.control(logging.WARNING, "previous run still running, skipping "
                                     "this one", {
                    "component": "gorun", "job": job.id, "running_run": live[-1].number,
                    "scheduled": format_time(scheduled) if scheduled else None})
                self._count("skipped_overlaps", job)
                return None
            if live and policy == "replace":
                for old in live:
                    if not old.replaced:
                        old.replaced = True
                        self._signal(old, signal.SIGTERM)
                        old.kill_at = now + self.config.kill_grace_secs
            number = self._numbers.get(job.id, 0) + 1
            self._numbers[job.id] = number
            run = Run(job, number, scheduled, catch_up, started_mono=now)
            if job.options.timeout_secs is not None:
                run.deadline = now + job.options.timeout_secs
            self._live.setdefault(job.id, []).append(run)
        try:
            self._reaper.spawn(lambda: self._spawn(run), lambda st: self._on_exit(run, st))
        except (OSError, subprocess.SubprocessError, KeyError, ValueError) as e:
            with self._lock:
                self._forget(run)
            self._count("runs", job)
            self._count("failures", job)
            self._writer.control(logging.ERROR, "job failed to start",
                                 {**run.label, "component": "gorun", "error": str(e)})
            return None
        return run

    def _spawn(self, run: Run) -> subprocess.Popen[bytes]:
        job = run.job
        env = {**self._base_env, **job.env}
        kwargs: dict[str, Any] = {}
        if job.user is not None:
            kwargs = self._as_user(job.user, env)
        stdin_r: int | None = None
        stdin_w: int | None = None
        if job.stdin is not None:
            stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            proc = subprocess.Popen(
                [job.shell, "-c", job.command],
                stdin=subprocess.DEVNULL if stdin_r is None else stdin_r,
                stdout=out_w, stderr=err_w, env=env, start_new_session=True, **kwargs)
        except BaseException:
            for fd in (stdin_r, stdin_w, out_r, err_r):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
            if stdin_r is not None:
                os.close(stdin_r)
        run.proc, run.pid = proc, proc.pid
        if self._metrics is not None:
            self._metrics.running.labels(self._metrics.job(job.id)).inc()
        self._count("runs", job)
        self._writer.control(logging.INFO, "job started", {
            **run.label, "component": "gorun", "pid": proc.pid,
            "scheduled": format_time(run.scheduled) if run.scheduled else None,
            "catch_up": run.catch_up or None, "command": job.command})
        if stdin_w is not None:
            self._feed_stdin(stdin_w, (job.stdin or "").encode())
        for name, fd in (("stdout", out_r), ("stderr", err_r)):
            run.splitters[name] = LineSplitter(self.config.max_line_bytes)
            run.fds[name] = fd
            self._pump.watch(fd, self._on_data(run, name), self._on_eof(run, name))
        return proc

    @staticmethod
    def _feed_stdin(fd: int, data: bytes) -> None:
        def write() -> None:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            except OSError:
                pass  # the job closed its stdin early: fine, like cron
            finally:
                os.close(fd)
        if len(data) <= STDIN_INLINE_MAX:
            write()
        else:
            threading.Thread(target=write, name="gorun-stdin", daemon=True).start()

    def _as_user(self, user: str, env: dict[str, str]) -> dict[str, Any]:
        pw = pwd.getpwnam(user)  # KeyError: unknown user -> "failed to start"
        if os.geteuid() != 0:
            if pw.pw_uid == os.geteuid():
                return {}
            raise ValueError(f"cannot run as user {user!r}: gorun is not running as root")
        for key, value in (("HOME", pw.pw_dir), ("LOGNAME", pw.pw_name), ("USER", pw.pw_name)):
            env.setdefault(key, value)
        kwargs: dict[str, Any] = {"user": pw.pw_uid, "group": pw.pw_gid,
                                  "extra_groups": os.getgrouplist(pw.pw_name, pw.pw_gid)}
        if os.path.isdir(pw.pw_dir):
            kwargs["cwd"] = pw.pw_dir
        return kwargs

    # --- output and exit (pump / reaper threads) --------------------------------------------

    def _on_data(self, run: Run, stream: str) -> Callable[[bytes], None]:
        splitter_holder = run.splitters

        def on_data(data: bytes) -> None:
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
        if run.proc is not None:
            run.proc.returncode = code  # so Popen never waits for this pid itself
        self._pump.call(lambda: self._finish(run, code))

    def _finish(self, run: Run, code: int) -> None:
        """On the pump thread: drain the run's pipes, then log and count its end."""
        for fd in list(run.fds.values()):
            self._pump.drain(fd)
        duration = self._clock.monotonic() - run.started_mono
        with self._lock:
            run.exit_code = code
            self._forget(run)
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

    def _signal(self, run: Run, sig: int) -> None:
        if run.pid <= 0 or run.exit_code is not None:
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
