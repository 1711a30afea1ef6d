"""Daemon main loop with a fake clock, fake runner and fake loader: precise waits, @reboot,
reload (bad file keeps the old schedule), clock jumps, and the SIGTERM drain."""

from __future__ import annotations

import datetime
import queue
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from gorun.clock import FakeClock
from gorun.crontab import Crontab, Job, Problem
from gorun.daemon import FILES_CHANGED, RELOAD_NOW, STOP, Daemon, DaemonConfig
from gorun.metrics import Metrics
from tests.unit.gorun.fakes import T0, PeriodExpr, job


class FakeRun:
    def __init__(self, job: Job) -> None:
        self.job = job


class FakeRunner:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.starts: list[tuple[str, datetime.datetime | None, datetime.datetime, bool]] = []
        self.live = 0
        self.signals: list[int] = []
        self.exit_on: set[int] = {signal.SIGTERM, signal.SIGKILL}
        self.prepared: list[tuple[str, datetime.datetime, datetime.datetime]] = []
        self.released: list[str] = []
        self.aborted: list[str] = []

    def start(self, job: Job, *, scheduled: datetime.datetime | None = None,
              catch_up: bool = False) -> object:
        self.starts.append((job.id, scheduled, self.clock.now(), catch_up))
        return object()

    def prepare(self, job: Job, at: datetime.datetime) -> object:
        self.prepared.append((job.id, at, self.clock.now()))
        return FakeRun(job)

    def release(self, at: datetime.datetime, items: list[tuple[Any, datetime.datetime, bool]]
                ) -> list[Job]:
        for run, scheduled, catch_up in items:
            self.released.append(run.job.id)
            self.starts.append((run.job.id, scheduled, self.clock.now(), catch_up))
        return []

    def abort(self, run: Any) -> None:
        self.aborted.append(run.job.id)

    def policy(self, job: Job) -> str:
        return "skip"

    def check_deadlines(self) -> float | None:
        return None

    def running(self, job_id: str | None = None) -> int:
        return self.live

    def signal_all(self, sig: int) -> int:
        self.signals.append(sig)
        n = self.live
        if sig in self.exit_on:
            self.live = 0
        return n


class ScriptClock(FakeClock):
    """Calls `hook(self)` at every wait, before the fake wait itself."""

    def __init__(self, hook: Callable[[ScriptClock, queue.SimpleQueue[Any]], None]) -> None:
        super().__init__(T0)
        self.hook = hook

    def wait(self, events, timeout):  # type: ignore[no-untyped-def,override]
        self.hook(self, events)
        return super().wait(events, timeout)


class Files:
    """Crontab files on disk (for fingerprints) whose parse result the test decides."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.tabs: dict[str, Crontab] = {}

    def put(self, name: str, version: str, jobs: list[Job],
            problems: list[Problem] | None = None) -> str:
        path = str(self.tmp / name)
        Path(path).write_text(version)
        self.tabs[path] = Crontab(path, tuple(jobs), tuple(problems or ()))
        return path

    def load(self, path: str) -> Crontab:
        return self.tabs.get(path) or Crontab(path, (), (Problem(path, 0, "cannot read"),))


def make(tmp: Path, hook: Callable[[ScriptClock, queue.SimpleQueue[Any]], None],
         jobs: list[Job], **cfg: Any) -> tuple[Daemon, FakeRunner, Files, CollectorRegistry]:
    files = Files(tmp)
    path = files.put("crontab", "v1", jobs)
    clock = ScriptClock(hook)
    runner = FakeRunner(clock)
    registry = CollectorRegistry()
    d = Daemon(DaemonConfig(paths=(path,), **cfg), clock=clock, runner=runner,  # type: ignore[arg-type]
               loader=files.load, metrics=Metrics(registry))
    return d, runner, files, registry


def stop_at(t: datetime.datetime) -> Callable[[ScriptClock, queue.SimpleQueue[Any]], None]:
    def hook(clock: ScriptClock, events: queue.SimpleQueue[Any]) -> None:
        if clock.now() >= t:
            events.put(STOP)
    return hook


def test_runs_reboot_once_and_wakes_exactly_at_fire_times(tmp_path: Path) -> None:
    jobs = [job(1, PeriodExpr(5), file=str(tmp_path / "crontab")),
            job(2, None, file=str(tmp_path / "crontab"))]
    d, runner, _, registry = make(tmp_path, stop_at(T0 + datetime.timedelta(seconds=15)), jobs)
    assert d.run() == 0
    # prestarted 0.5 s ahead and released exactly on time (the fake clock does not move)
    assert runner.released == [f"{tmp_path / 'crontab'}:1"] * 3
    assert registry.get_sample_value("opsagent_cron_start_delay_seconds_count") == 3
    assert registry.get_sample_value("opsagent_cron_start_delay_seconds_sum") == 0
    fired = [(jid, start) for jid, _, start, _ in runner.starts]
    cron = str(tmp_path / "crontab")
    assert fired[0] == (f"{cron}:2", T0)  # @reboot, once, at start
    assert [s for jid, s in fired if jid == f"{cron}:1"] == [
        T0 + datetime.timedelta(seconds=s) for s in (5, 10, 15)]
    assert all(s == sch for jid, sch, s, _ in runner.starts if jid == f"{cron}:1")
    assert max(d.clock.waits) <= d.config.max_sleep_secs  # type: ignore[attr-defined]


def test_idle_wakes_at_most_every_max_sleep(tmp_path: Path) -> None:
    d, runner, _, _ = make(tmp_path, stop_at(T0 + datetime.timedelta(seconds=60)),
                           [job(1, PeriodExpr(3600), file=str(tmp_path / "crontab"))])
    d.run()
    assert runner.starts == []
    assert all(0 < w <= 10 for w in d.clock.waits[:-1])  # type: ignore[attr-defined]


def test_stop_drains_with_sigterm_then_kills_after_grace(tmp_path: Path) -> None:
    def hook(clock: ScriptClock, events: queue.SimpleQueue[Any]) -> None:
        if not hook.sent:  # type: ignore[attr-defined]
            hook.sent = True  # type: ignore[attr-defined]
            events.put(STOP)
    hook.sent = False  # type: ignore[attr-defined]
    d, runner, _, _ = make(tmp_path, hook, [], grace_secs=7)
    runner.live = 2
    runner.exit_on = {signal.SIGKILL}  # the jobs ignore SIGTERM
    t_start = d.clock.monotonic()
    assert d.run() == 0
    assert runner.signals == [signal.SIGTERM, signal.SIGKILL]
    assert d.clock.monotonic() - t_start >= 7  # waited the whole grace first


def test_stop_returns_as_soon_as_jobs_exit(tmp_path: Path) -> None:
    d, runner, _, _ = make(tmp_path, lambda c, e: e.put(STOP), [])
    runner.live = 1
    assert d.run() == 0
    assert runner.signals == [signal.SIGTERM]


def test_reload_bad_file_keeps_old_schedule_then_good_file_applies(tmp_path: Path) -> None:
    cron = str(tmp_path / "crontab")
    state = {"step": 0}

    def hook(clock: ScriptClock, events: queue.SimpleQueue[Any]) -> None:
        now = clock.now()
        if state["step"] == 0 and now >= T0 + datetime.timedelta(seconds=12):
            files.put("crontab", "v2 broken", [job(1, PeriodExpr(7, spec="x"), file=cron)],
                      [Problem(cron, 3, "bad minute")])
            events.put(FILES_CHANGED)
            events.put(FILES_CHANGED)  # a burst of events is one reload
            state["step"] = 1
        elif state["step"] == 1 and now >= T0 + datetime.timedelta(seconds=22):
            files.put("crontab", "v3", [job(2, PeriodExpr(4, spec="y"), file=cron)])
            events.put(RELOAD_NOW)
            state["step"] = 2
        elif now >= T0 + datetime.timedelta(seconds=30):
            events.put(STOP)

    d, runner, files, registry = make(tmp_path, hook, [job(1, PeriodExpr(5), file=cron)])
    d.run()
    by_job: dict[str, list[int]] = {}
    for jid, _, start, _ in runner.starts:
        by_job.setdefault(jid, []).append(int((start - T0).total_seconds()))
    # (the hook runs when the loop waits: at the prestart wake-ups 0.5 s before each run, so
    # the bad file comes at 14.5 and the good one at 24.5)
    assert by_job[f"{cron}:1"] == [5, 10, 15, 20]  # kept through the bad reload at 14.75
    assert by_job[f"{cron}:2"] == [28]  # the good file replaced it at 24.5
    # job 1 had been prestarted for 25 when it was replaced: killed at its gate, never run;
    # job 2's prestart for 32 was killed by the shutdown
    assert runner.aborted == [f"{cron}:1", f"{cron}:2"]
    assert runner.released == [f"{cron}:1"] * 4 + [f"{cron}:2"]
    assert registry.get_sample_value("opsagent_cron_reloads_total", {"result": "error"}) == 1
    assert registry.get_sample_value("opsagent_cron_reloads_total", {"result": "ok"}) == 1


def test_unchanged_file_is_not_reloaded(tmp_path: Path) -> None:
    state = {"n": 0}

    def hook(clock: ScriptClock, events: queue.SimpleQueue[Any]) -> None:
        state["n"] += 1
        events.put(RELOAD_NOW if state["n"] == 1 else STOP)
    d, _, _, registry = make(tmp_path, hook, [])
    d.run()
    assert registry.get_sample_value("opsagent_cron_reloads_total",
                                     {"result": "unchanged"}) == 1


def test_unreadable_crontab_at_start_is_exit_2(tmp_path: Path) -> None:
    files = Files(tmp_path)
    clock = ScriptClock(lambda c, e: e.put(STOP))
    d = Daemon(DaemonConfig(paths=(str(tmp_path / "missing"),)), clock=clock,
               runner=FakeRunner(clock), loader=files.load)  # type: ignore[arg-type]
    assert d.run() == 2


def test_clock_jump_is_counted_and_fixed_jobs_caught_up(tmp_path: Path) -> None:
    cron = str(tmp_path / "crontab")

    def hook(clock: ScriptClock, events: queue.SimpleQueue[Any]) -> None:
        if not hook.done and clock.now() >= T0 + datetime.timedelta(seconds=30):  # type: ignore[attr-defined]
            hook.done = True  # type: ignore[attr-defined]
            clock.jump(3600)
        elif hook.done:  # type: ignore[attr-defined]
            events.put(STOP)
    hook.done = False  # type: ignore[attr-defined]
    d, runner, _, registry = make(tmp_path, hook, [job(1, PeriodExpr(600, fixed=True), file=cron),
                                                   job(2, PeriodExpr(120), file=cron)])
    d.run()
    assert registry.get_sample_value("opsagent_cron_clock_jumps_total",
                                     {"direction": "forward"}) == 1
    caught = [(jid, c) for jid, _, _, c in runner.starts]
    assert (f"{cron}:1", True) in caught
    assert registry.get_sample_value("opsagent_cron_missed_runs_total", {"job": f"{cron}:2"}) >= 1


def test_reconfigure_adds_and_removes_crontabs_without_touching_running_jobs(
        tmp_path: Path) -> None:
    """The agent's [cron] section changed (a crontab added, one removed): the scheduler is not
    restarted, so running jobs get no signal, @reboot does not run again (not even the new
    crontab's: @reboot runs once per start), and the kept crontab's job keeps its times."""
    first = str(tmp_path / "crontab")
    state = {"step": 0}

    def hook(clock: ScriptClock, events: queue.SimpleQueue[Any]) -> None:
        now = clock.now()
        if state["step"] == 0 and now >= T0 + datetime.timedelta(seconds=12):
            second = files.put("second", "s1", [job(1, PeriodExpr(3), file=str(
                tmp_path / "second")), job(2, None, file=str(tmp_path / "second"))])
            d.reconfigure(DaemonConfig(paths=(first, second), grace_secs=9.0))
            state["step"] = 1
        elif state["step"] == 1 and now >= T0 + datetime.timedelta(seconds=20):
            d.reconfigure(DaemonConfig(paths=(str(tmp_path / "second"),), grace_secs=9.0))
            state["step"] = 2
        elif now >= T0 + datetime.timedelta(seconds=30):
            events.put(STOP)

    d, runner, files, registry = make(tmp_path, hook, [job(1, PeriodExpr(5), file=first),
                                                       job(2, None, file=first)])
    runner.live = 1                     # a long job is running all along
    assert d.run() == 0
    second = str(tmp_path / "second")
    by_job: dict[str, list[int]] = {}
    for jid, _, start, _ in runner.starts:
        by_job.setdefault(jid, []).append(int((start - T0).total_seconds()))
    assert by_job[f"{first}:2"] == [0]                 # @reboot: once, at start
    assert f"{second}:2" not in by_job                 # the added crontab's @reboot: never
    assert by_job[f"{first}:1"] == [5, 10, 15, 20]     # kept on time, gone after removal
    assert by_job[f"{second}:1"][0] in (15, 16) and by_job[f"{second}:1"][-1] >= 27
    assert runner.signals == [signal.SIGTERM]          # only the final drain signalled
    assert d.config.grace_secs == 9.0
    assert registry.get_sample_value("opsagent_cron_jobs") == 2


def test_next_run_gauge_follows_the_schedule_and_reloads(tmp_path: Path) -> None:
    """opsagent_cron_next_run_timestamp_seconds{job}: the next fire time after each run; a job
    removed by a reload loses its series; @reboot jobs have none."""
    cron = str(tmp_path / "crontab")
    seen: list[tuple[float, float | None, float | None]] = []

    def hook(clock: ScriptClock, events: queue.SimpleQueue[Any]) -> None:
        now = clock.now()
        seen.append(((now - T0).total_seconds(),
                     registry.get_sample_value("opsagent_cron_next_run_timestamp_seconds",
                                               {"job": f"{cron}:1"}),
                     registry.get_sample_value("opsagent_cron_next_run_timestamp_seconds",
                                               {"job": f"{cron}:3"})))
        if now >= T0 + datetime.timedelta(seconds=12) and files.tabs[cron].jobs[0].line != 3:
            files.put("crontab", "v2", [job(3, PeriodExpr(7, spec="y"), file=cron)])
            events.put(RELOAD_NOW)
        elif now >= T0 + datetime.timedelta(seconds=20):
            events.put(STOP)

    d, _, files, registry = make(tmp_path, hook, [job(1, PeriodExpr(5), file=cron),
                                                  job(2, None, file=cron)])
    d.run()
    t0 = T0.timestamp()
    before = [(at, nxt) for at, nxt, _ in seen if at < 12]
    assert before and all(nxt is not None and t0 + at < nxt <= t0 + at + 5 for at, nxt in before)
    assert {nxt for _, nxt in before} >= {t0 + 5, t0 + 10}
    # (the reload asked for at the 14.5 s wake-up is applied in the loop's next step)
    after = [(at, one, three) for at, one, three in seen if at > 15]
    assert after and all(one is None and three is not None and three > t0 + at
                         for at, one, three in after)
    assert registry.get_sample_value("opsagent_cron_next_run_timestamp_seconds",
                                     {"job": f"{cron}:2"}) is None
