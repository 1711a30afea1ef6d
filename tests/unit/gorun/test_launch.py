"""Prestarter: which runs are prestarted, released, started directly or killed at the gate."""

from __future__ import annotations

import datetime
from typing import Any

from gorun.crontab import Job
from gorun.launch import Prestarter
from gorun.schedule import Due, Schedule
from tests.unit.gorun.fakes import T0, PeriodExpr, job

S = datetime.timedelta(seconds=1)


class Pre:
    def __init__(self, job: Job, at: datetime.datetime) -> None:
        self.job, self.at = job, at


class FakeRunner:
    def __init__(self) -> None:
        self.log: list[tuple[str, str, Any]] = []
        self.busy: set[str] = set()
        self.dead: set[str] = set()
        self.fail_prepare: set[str] = set()

    def start(self, job: Job, *, scheduled: Any = None, catch_up: bool = False) -> Any:
        self.log.append(("start", job.id, scheduled))

    def prepare(self, job: Job, at: datetime.datetime) -> Any:
        if job.id in self.fail_prepare:
            return None
        self.log.append(("prepare", job.id, at))
        return Pre(job, at)

    def release(self, at: datetime.datetime, items: list[tuple[Any, datetime.datetime, bool]]
                ) -> list[Job]:
        self.log.append(("release", ",".join(sorted(i[0].job.id for i in items)), at))
        return [i[0].job for i in items if i[0].job.id in self.dead]

    def abort(self, run: Any) -> None:
        self.log.append(("abort", run.job.id, run.at))

    def running(self, job_id: str | None = None) -> int:
        return int(job_id in self.busy)

    def policy(self, job: Job) -> str:
        return job.options.overlap or "skip"


def setup(*jobs: Job) -> tuple[Prestarter, FakeRunner, Schedule]:
    runner = FakeRunner()
    sched = Schedule(T0, 0.0)
    sched.set_jobs("/etc/crontab", jobs, T0)
    return Prestarter(runner, lead_secs=0.5), runner, sched


def due(j: Job, at: datetime.datetime) -> Due:
    return Due(j, at, at)


def test_prestarts_within_lead_and_releases_together() -> None:
    a, b = job(1, PeriodExpr(10)), job(2, PeriodExpr(10))
    p, runner, sched = setup(a, b)
    assert p.prestart(sched, T0) == T0 + 9.5 * S  # nothing yet: come back 0.5 s early
    assert p.prestart(sched, T0 + 9.5 * S) is None  # all entries prepared: nothing beyond
    assert [e[0] for e in runner.log] == ["prepare", "prepare"]
    p.prestart(sched, T0 + 9.6 * S)  # already prepared: nothing new
    assert len(runner.log) == 2
    p.fire([due(a, T0 + 10 * S), due(b, T0 + 10 * S)], T0 + 10 * S)
    assert runner.log[-1] == ("release", "/etc/crontab:1,/etc/crontab:2", T0 + 10 * S)
    assert len(p) == 0 and p.released == 2 and p.direct == 0


def test_unprepared_due_runs_start_directly() -> None:
    a = job(1, PeriodExpr(10))
    p, runner, _ = setup(a)
    p.fire([due(a, T0 + 10 * S)], T0 + 10 * S)
    assert runner.log == [("start", "/etc/crontab:1", T0 + 10 * S)]


def test_changed_job_aborts_its_prestart_and_starts_the_new_one() -> None:
    a = job(1, PeriodExpr(10))
    p, runner, sched = setup(a)
    p.prestart(sched, T0 + 9.5 * S)
    a2 = job(1, PeriodExpr(10), command="echo changed")
    p.fire([due(a2, T0 + 10 * S)], T0 + 10 * S)
    assert runner.log[1:] == [("abort", "/etc/crontab:1", T0 + 10 * S),
                              ("start", "/etc/crontab:1", T0 + 10 * S)]


def test_prestart_not_due_at_its_time_is_aborted() -> None:
    a = job(1, PeriodExpr(10))
    p, runner, sched = setup(a)
    p.prestart(sched, T0 + 9.5 * S)
    p.fire([], T0 + 10 * S)  # e.g. the job was removed by a reload
    assert runner.log[-1] == ("abort", "/etc/crontab:1", T0 + 10 * S)
    assert len(p) == 0


def test_dead_prestart_falls_back_to_a_direct_start() -> None:
    a = job(1, PeriodExpr(10))
    p, runner, sched = setup(a)
    p.prestart(sched, T0 + 9.5 * S)
    runner.dead.add(a.id)
    p.fire([due(a, T0 + 10 * S)], T0 + 10 * S)
    assert runner.log[-1] == ("start", "/etc/crontab:1", T0 + 10 * S)


def test_busy_skip_jobs_and_failed_prepares_are_not_prestarted() -> None:
    a, b = job(1, PeriodExpr(10)), job(2, PeriodExpr(10))
    p, runner, sched = setup(a, b)
    runner.busy.add(a.id)
    runner.fail_prepare.add(b.id)
    p.prestart(sched, T0 + 9.5 * S)
    assert runner.log == [] and len(p) == 0


def test_abort_all_and_disabled() -> None:
    a = job(1, PeriodExpr(10))
    p, runner, sched = setup(a)
    p.prestart(sched, T0 + 9.5 * S)
    p.abort_all()
    assert runner.log[-1][0] == "abort" and len(p) == 0
    off = Prestarter(runner, lead_secs=0)
    assert off.prestart(sched, T0 + 9.5 * S) is None
