"""Schedule: due runs, wake times, clock jumps and reloads, driven by explicit times."""

from __future__ import annotations

import datetime

import pytest

from gorun.crontab import JobOptions
from gorun.schedule import MISSED_COUNT_CAP, Schedule, jitter_offset
from tests.unit.gorun.fakes import T0, PeriodExpr, job

S = datetime.timedelta(seconds=1)
H = 3600.0


class Driver:
    """Walks wall and monotonic time together, or the wall clock alone (a jump)."""

    def __init__(self, *jobs_: object) -> None:
        self.wall = T0
        self.mono = 100.0
        self.sched = Schedule(self.wall, self.mono)
        self.sched.set_jobs("/etc/crontab", jobs_, self.wall)  # type: ignore[arg-type]

    def advance(self, secs: float):  # type: ignore[no-untyped-def]
        self.wall += datetime.timedelta(seconds=secs)
        self.mono += secs
        return self.sched.tick(self.wall, self.mono)

    def jump(self, secs: float):  # type: ignore[no-untyped-def]
        self.wall += datetime.timedelta(seconds=secs)
        return self.sched.tick(self.wall, self.mono)


def ids(tick) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(d.job.id for d in tick.due)


def test_fires_at_its_time_not_before() -> None:
    d = Driver(job(1, PeriodExpr(60)))
    assert d.sched.next_wake() == T0 + 60 * S
    assert d.advance(59.999).due == []
    t = d.advance(0.001)
    assert [x.scheduled for x in t.due] == [T0 + 60 * S]
    assert t.jump is None and t.missed == {}
    assert d.sched.next_wake() == T0 + 120 * S


def test_hundred_jobs_in_the_same_second_are_due_together() -> None:
    d = Driver(*[job(i, PeriodExpr(10)) for i in range(1, 101)])
    t = d.advance(10)
    assert len(t.due) == 100
    assert {x.scheduled for x in t.due} == {T0 + 10 * S}


def test_late_wake_without_jump_runs_once_and_counts_missed() -> None:
    d = Driver(job(1, PeriodExpr(10)))
    t = d.advance(35)  # a stall: monotonic moved as much as the wall clock
    assert t.jump is None
    assert [x.scheduled for x in t.due] == [T0 + 10 * S]
    assert t.missed == {"/etc/crontab:1": 2}
    assert d.sched.next_wake() == T0 + 40 * S


def test_small_forward_jump_catches_up_fixed_jobs_once_not_wildcards() -> None:
    fixed = job(1, PeriodExpr(600, fixed=True))     # like "*/10 fixed" - runs every 10 min
    wild = job(2, PeriodExpr(60))                    # like "* * * * *"
    d = Driver(fixed, wild)
    d.advance(30)
    t = d.jump(2 * H)
    assert t.jump is not None and t.jump.kind == "forward" and not t.jump.big
    assert ids(t) == ["/etc/crontab:1"]
    assert t.due[0].catch_up and t.due[0].scheduled == T0 + 600 * S
    # the wildcard job's skipped minutes are counted, and it continues from the new wall time
    assert t.missed["/etc/crontab:2"] >= 1
    now = d.wall
    assert d.sched.next_fire("/etc/crontab:2") == now.replace(second=0) + 60 * S
    assert d.sched.next_fire("/etc/crontab:1") > now  # type: ignore[operator]


def test_wildcard_job_fires_in_the_current_second_after_a_jump() -> None:
    d = Driver(job(1, PeriodExpr(60)))
    t = d.jump(H - 0.0)  # lands exactly on a minute boundary
    assert ids(t) == ["/etc/crontab:1"] and not t.due[0].catch_up
    assert t.due[0].scheduled == T0 + H * S


def test_big_forward_jump_does_not_catch_up() -> None:
    fixed = job(1, PeriodExpr(600, fixed=True))
    d = Driver(fixed)
    d.advance(30)
    t = d.jump(3 * H + 60)
    assert t.jump is not None and t.jump.big
    assert t.due == []
    assert t.missed["/etc/crontab:1"] >= 1
    assert d.sched.next_fire("/etc/crontab:1") > d.wall  # type: ignore[operator]


def test_runs_due_before_a_forward_jump_still_run_normally() -> None:
    wild = job(1, PeriodExpr(60))
    d = Driver(wild)
    # wake 2 s late after the fire time, and the clock also stepped 10 h forward meanwhile
    d.wall += datetime.timedelta(seconds=62 + 10 * H)
    d.mono += 62
    t = d.sched.tick(d.wall, d.mono)
    assert t.jump is not None and t.jump.big
    assert [x.scheduled for x in t.due] == [T0 + 60 * S]
    assert not t.due[0].catch_up


def test_small_backward_jump_does_not_rerun_fixed_jobs_but_wildcards_follow_wall() -> None:
    fixed = job(1, PeriodExpr(600, fixed=True))
    wild = job(2, PeriodExpr(60))
    d = Driver(fixed, wild)
    t = d.advance(600)
    assert ids(t) == ["/etc/crontab:1", "/etc/crontab:2"]
    fixed_next = d.sched.next_fire("/etc/crontab:1")
    assert fixed_next == T0 + 1200 * S
    t = d.jump(-(600 - 1.5))  # back to T0 + 1.5 s
    assert t.jump is not None and t.jump.kind == "backward" and not t.jump.big
    assert t.due == []
    assert d.sched.next_fire("/etc/crontab:1") == fixed_next  # waits for the clock to pass it
    assert d.sched.next_fire("/etc/crontab:2") == T0 + 60 * S  # wildcard: wall clock again
    t = d.advance(58.5)
    assert ids(t) == ["/etc/crontab:2"]  # the wildcard job runs again at the repeated minute


def test_big_backward_jump_resets_everything() -> None:
    fixed = job(1, PeriodExpr(600, fixed=True))
    d = Driver(fixed)
    d.advance(600)
    t = d.jump(-(5 * H) + 30)  # to 07:10:30: the fixed job runs again from 07:20
    assert t.jump is not None and t.jump.big and t.due == []
    assert d.sched.next_fire("/etc/crontab:1") == T0 + 1200 * S - 5 * H * S
    t = d.jump(-30)  # exactly 07:10:00, the job's time: a reset runs the current second
    assert ids(t) == []  # a 30 s step back is small: the fixed job waits for 07:20


def test_small_step_within_tolerance_is_not_a_jump() -> None:
    d = Driver(job(1, PeriodExpr(60)))
    t = d.jump(0.5)
    assert t.jump is None


def test_jitter_is_deterministic_bounded_and_delays_the_due_time() -> None:
    offs = [jitter_offset(f"/etc/crontab:{i}", 30) for i in range(200)]
    assert all(datetime.timedelta(0) <= o < 30 * S for o in offs)
    assert len(set(offs)) > 100  # jobs spread out
    assert jitter_offset("/etc/crontab:7", 30) == offs[7]
    assert jitter_offset("x", 0) == datetime.timedelta(0)
    j = job(7, PeriodExpr(60), options=JobOptions(jitter_secs=30))
    d = Driver(j)
    assert d.sched.next_wake() == T0 + 60 * S + offs[7]
    assert d.advance(60).due == [] or offs[7] == datetime.timedelta(0)
    t = d.advance(30)
    assert len(t.due) == 1
    assert t.due[0].scheduled == T0 + 60 * S and t.due[0].at == T0 + 60 * S + offs[7]


def test_reload_keeps_fire_time_of_unchanged_jobs_and_drops_removed_ones() -> None:
    d = Driver(job(1, PeriodExpr(60)), job(2, PeriodExpr(60)))
    d.advance(30)
    d.sched.set_jobs("/etc/crontab", [job(1, PeriodExpr(60), command="echo new"),
                                      job(3, PeriodExpr(45, spec="other"))], d.wall)
    assert {j.id for j in d.sched.jobs()} == {"/etc/crontab:1", "/etc/crontab:3"}
    assert d.sched.next_fire("/etc/crontab:1") == T0 + 60 * S
    t = d.advance(30)
    assert ids(t) == ["/etc/crontab:1", "/etc/crontab:3"]
    assert [x.job.command for x in t.due if x.job.line == 1] == ["echo new"]


def test_reload_of_a_changed_schedule_recomputes_from_now() -> None:
    d = Driver(job(1, PeriodExpr(60)))
    d.advance(30)
    d.sched.set_jobs("/etc/crontab", [job(1, PeriodExpr(5, spec="changed"))], d.wall)
    assert d.sched.next_fire("/etc/crontab:1") == T0 + 35 * S


def test_files_are_independent_and_reboot_jobs_are_not_scheduled() -> None:
    d = Driver(job(1, PeriodExpr(60)))
    d.sched.set_jobs("/etc/cron.d/b", [job(1, PeriodExpr(60), file="/etc/cron.d/b"),
                                       job(2, None, file="/etc/cron.d/b")], d.wall)
    assert len(d.sched) == 2
    d.sched.drop_file("/etc/cron.d/b")
    assert [j.id for j in d.sched.jobs()] == ["/etc/crontab:1"]


def test_a_job_that_never_fires_again_never_wakes() -> None:
    d = Driver(job(1, PeriodExpr(60, until=T0 + 90 * S)))
    assert len(d.advance(60).due) == 1
    assert d.sched.next_wake() is None
    assert d.advance(H).due == []


def test_heap_stays_bounded_across_many_reloads() -> None:
    d = Driver()
    for i in range(500):
        d.sched.set_jobs("/etc/crontab", [job(1, PeriodExpr(60 + i % 7, spec=str(i)))], d.wall)
    assert len(d.sched._heap) < 200


@pytest.mark.parametrize("secs", [1.5, 3 * H])
def test_forward_jump_threshold_inclusive(secs: float) -> None:
    d = Driver(job(1, PeriodExpr(600, fixed=True)))
    t = d.jump(secs)
    assert t.jump is not None and not t.jump.big


def test_missed_count_is_capped() -> None:
    d = Driver(job(1, PeriodExpr(1)))
    t = d.advance(10 * H)
    assert t.missed["/etc/crontab:1"] == MISSED_COUNT_CAP
    assert d.sched.next_wake() == d.wall + S


def test_upcoming_lists_entries_up_to_a_limit_without_consuming_them() -> None:
    d = Driver(*[job(i, PeriodExpr(10 * i)) for i in range(1, 6)])  # due at 10, 20, ... 50
    items, beyond = d.sched.upcoming(T0 + 25 * S)
    assert sorted((j.line, at) for j, at in items) == [(1, T0 + 10 * S), (2, T0 + 20 * S)]
    assert beyond == T0 + 30 * S
    assert len(d.advance(10).due) == 1  # still there


def test_upcoming_on_empty_schedule() -> None:
    assert Driver().sched.upcoming(T0) == ([], None)


def test_deferred_tick_reschedules_on_settle() -> None:
    d = Driver(job(1, PeriodExpr(10)))
    d.wall += 35 * S
    d.mono += 35
    t = d.sched.tick(d.wall, d.mono, defer=True)
    assert len(t.due) == 1 and t.missed == {}
    d.sched.settle()
    assert t.missed == {"/etc/crontab:1": 2}
    assert d.sched.next_wake() == T0 + 40 * S


def test_next_wake_settles_a_deferred_tick_itself() -> None:
    d = Driver(job(1, PeriodExpr(10)))
    d.wall += 10 * S
    d.mono += 10
    d.sched.tick(d.wall, d.mono, defer=True)
    assert d.sched.next_wake() == T0 + 20 * S


@pytest.mark.parametrize("jitter", [0.0, 5.0], ids=["no-jitter", "jitter"])
def test_repeated_hour_fires_in_both_copies_at_the_right_utc_times(jitter: float) -> None:
    # croniter-free real expression in a zone: America/New_York falls back at 2021-11-07 06:00Z
    # (02:00 EDT -> 01:00 EST). The second 01:xx copy carries fold=1 in the zone; the schedule
    # must not lose it to `+ jitter` or same-zone comparisons (it would fire an hour early).
    from zoneinfo import ZoneInfo

    from gorun.crontab import Job
    from gorun.expr import parse_expr

    expr = parse_expr("*/30 * * * *", ZoneInfo("America/New_York"))
    j = Job(file="/c", line=1, spec="*/30 * * * *", expr=expr, command="true", stdin=None,
            env={}, shell="/bin/sh", user=None, options=JobOptions(jitter_secs=jitter))
    start = datetime.datetime(2021, 11, 7, 4, 50, tzinfo=datetime.UTC)
    sched = Schedule(start, 0.0)
    sched.set_jobs("/c", [j], start)
    fired: list[datetime.datetime] = []
    now, mono = start, 0.0
    for _ in range(3 * 3600 // 10):
        now += 10 * S
        mono += 10
        fired += [d.at.astimezone(datetime.UTC) for d in sched.tick(now, mono).due]
    off = jitter_offset(j.id, jitter)
    expected = [datetime.datetime(2021, 11, 7, 5, 0, tzinfo=datetime.UTC)
                + k * datetime.timedelta(minutes=30) + off for k in range(6)]
    assert [f.replace(second=0, microsecond=0) for f in fired] == [
        e.replace(second=0, microsecond=0) for e in expected]
