"""Runner: real /bin/sh jobs; deadlines driven by a fake monotonic clock; waits are for events."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from gorun.crontab import JobOptions
from tests.unit.gorun.fakes import T0, PeriodExpr, job
from tests.unit.gorun.rig import Rig

JID = "/etc/crontab:1"


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:  # gone between listing and reading (ENOENT, ESRCH)
        return True


def wait_until(pred, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.01)


def test_output_is_captured_line_by_line_before_the_end_record(rig: Rig) -> None:
    j = job(1, PeriodExpr(60), command='echo one; echo two >&2; printf "no newline"; exit 3')
    run = rig.runner.start(j, scheduled=T0)
    assert run is not None and run.number == 1
    end = rig.finished(JID)
    assert rig.recorder.lines(JID) == ["one", "no newline"]
    assert rig.recorder.lines(JID, stream="stderr") == ["two"]
    assert end["msg"] == "job failed" and end["exit_code"] == 3 and end["level"] == "warning"
    msgs = [r["msg"] for r in rig.recorder.records]
    assert msgs[0] == "job started" and msgs[-1] == "job failed"
    assert rig.recorder.records[0]["scheduled"] == "2024-01-10T12:00:00+00:00"
    assert rig.metric("opsagent_cron_runs_total", JID) == 1
    assert rig.metric("opsagent_cron_last_run_timestamp_seconds", JID) == T0.timestamp()
    assert rig.metric("opsagent_cron_failures_total", JID) == 1
    assert rig.metric("opsagent_cron_running_jobs", JID) == 0
    assert rig.registry.get_sample_value("opsagent_cron_run_duration_seconds_count",
                                         {"job": JID}) == 1


def test_success_env_stdin_and_run_numbers(rig: Rig) -> None:
    j = job(1, PeriodExpr(60), command='echo "$BASE $MINE"; cat',
            env={"MINE": "mine"}, stdin="line 1\nline 2\n")
    rig.runner.start(j)
    assert rig.finished(JID)["msg"] == "job succeeded"
    assert rig.recorder.lines(JID) == ["base mine", "line 1", "line 2"]
    rig.runner.start(j)
    assert rig.finished(JID, run=2)["exit_code"] == 0
    assert rig.metric("opsagent_cron_failures_total", JID) == 0


def test_large_stdin_does_not_block_the_scheduler(rig: Rig) -> None:
    data = "x" * 200_000 + "\n"
    rig.runner.start(job(1, PeriodExpr(60), command="wc -c", stdin=data))
    rig.finished(JID)
    assert rig.recorder.lines(JID) == [str(len(data))]


def test_overlap_skip_is_the_default_and_warns(rig: Rig) -> None:
    j = job(1, PeriodExpr(60), command="echo ready; exec sleep 30")
    first = rig.runner.start(j)
    rig.recorder.wait_for(lambda rs: "ready" in [r["msg"] for r in rs])
    assert rig.runner.start(j) is None
    rs = rig.recorder.wait_for(
        lambda rs: any(r["msg"].startswith("previous run still") for r in rs))
    skip = [r for r in rs if r["msg"].startswith("previous run still")]
    assert skip and skip[0]["job"] == JID and skip[0]["level"] == "warning"
    assert rig.metric("opsagent_cron_skipped_overlaps_total", JID) == 1
    assert rig.runner.running(JID) == 1
    assert first is not None
    os.killpg(first.pid, signal.SIGTERM)
    rig.finished(JID)
    assert rig.runner.start(j) is not None  # free again once the run ended


@pytest.mark.parametrize(
    ("overlap", "overlapping", "runs"),
    [("allow", False, 2), (None, True, 2), ("skip", True, 1)],
    ids=["explicit-allow", "overlapping-default", "explicit-skip-wins-over-flag"],
)
def test_overlap_allow_and_the_overlapping_flag(overlap: str | None, overlapping: bool,
                                                runs: int) -> None:
    rig = Rig(overlap_default="allow" if overlapping else "skip")
    try:
        j = job(1, PeriodExpr(60), command="exec sleep 30",
                options=JobOptions(overlap=overlap))  # type: ignore[arg-type]
        assert rig.runner.start(j) is not None
        second = rig.runner.start(j)
        assert (second is not None) == (runs == 2)
        assert rig.runner.running(JID) == runs
    finally:
        rig.close()


def test_overlap_replace_terminates_the_previous_run(rig: Rig) -> None:
    j = job(1, PeriodExpr(60), command="echo ready; exec sleep 30",
            options=JobOptions(overlap="replace"))
    rig.runner.start(j)
    rig.recorder.wait_for(lambda rs: "ready" in [r["msg"] for r in rs])
    second = rig.runner.start(j)
    assert second is not None and second.number == 2
    end = rig.finished(JID, run=1)
    assert end["replaced"] is True and end["signal"] == "SIGTERM"
    assert rig.runner.running(JID) == 1


def test_timeout_terminates_the_whole_group_then_kills(rig: Rig) -> None:
    # The shell ignores SIGTERM; its background child does not: both must go.
    j = job(1, PeriodExpr(60), options=JobOptions(timeout_secs=10),
            command="sleep 300 & trap '' TERM; echo $!; while :; do sleep 1; done")
    run = rig.runner.start(j)
    assert run is not None
    rs = rig.recorder.wait_for(lambda rs: any(r.get("stream") == "stdout" for r in rs))
    child = int(next(r["msg"] for r in rs if r.get("stream") == "stdout"))
    assert rig.runner.check_deadlines() == pytest.approx(rig.clock.monotonic() + 10)
    rig.clock.advance(10)
    nxt = rig.runner.check_deadlines()  # SIGTERM to the group
    assert nxt == pytest.approx(rig.clock.monotonic() + 5)
    wait_until(lambda: gone(child))
    assert rig.runner.running(JID) == 1  # the shell ignored it
    rig.clock.advance(5)
    rig.runner.check_deadlines()  # SIGKILL
    end = rig.finished(JID)
    assert end["timed_out"] is True and end["signal"] == "SIGKILL"
    assert rig.metric("opsagent_cron_timeouts_total", JID) == 1
    assert rig.metric("opsagent_cron_failures_total", JID) == 1
    assert any(r["msg"] == "job timed out, stopping it" for r in rig.recorder.records)


def test_long_lines_are_truncated_and_counted() -> None:
    rig = Rig(max_line_bytes=100)
    try:
        rig.runner.start(job(1, PeriodExpr(60),
                             command="head -c 1000 /dev/zero | tr '\\0' a; echo; echo short"))
        end = rig.finished(JID)
        lines = rig.recorder.lines(JID)
        assert lines == ["a" * 100, "short"]
        assert end["truncated_lines"] == 1
        assert [r.get("truncated") for r in rig.recorder.records
                if r.get("stream") == "stdout"] == [True, None]
        assert rig.metric("opsagent_cron_output_dropped_lines_total", JID) == 1
    finally:
        rig.close()


def test_a_flood_never_blocks_the_job_even_when_our_log_output_is_stuck() -> None:
    rig = Rig(max_pending_bytes=10_000)
    gate = threading.Event()
    orig = rig.recorder.emit

    def slow_emit(record):  # type: ignore[no-untyped-def]
        if record.getMessage() not in ("job started", "job succeeded", "job failed"):
            gate.wait(300)  # set by the test (or its finally) once the job has ended
        orig(record)
    rig.recorder.emit = slow_emit  # type: ignore[method-assign]
    try:
        # 10 MB of output while nothing is being written out: the job must still finish.
        rig.runner.start(job(1, PeriodExpr(60), command="seq 1 1500000"))
        wait_until(lambda: rig.runner.running(JID) == 0, timeout=180)
        gate.set()
        end = rig.finished(JID)
        assert end["msg"] == "job succeeded"
        assert end["dropped_lines"] > 1_000_000
        assert len(rig.recorder.lines(JID)) + end["dropped_lines"] == 1_500_000
    finally:
        gate.set()
        rig.close()


def test_passthrough_writes_raw_output(tmp_path: os.PathLike[str]) -> None:
    rig = Rig(passthrough_logs=True)
    try:
        rig.runner.start(job(1, PeriodExpr(60), command="echo out; echo err >&2"))
        rig.finished(JID)
        rig.writer.close()
        assert rig.stdout.getvalue() == b"out\n" and rig.stderr.getvalue() == b"err\n"
        assert rig.recorder.lines(JID) == []
    finally:
        rig.close()


def test_a_missing_shell_is_a_failed_start_not_a_crash(rig: Rig) -> None:
    from dataclasses import replace
    j = replace(job(1, PeriodExpr(60)), shell="/nonexistent/shell")
    assert rig.runner.start(j) is None
    rs = rig.recorder.wait_for(lambda rs: any(r["msg"] == "job failed to start" for r in rs))
    assert "nonexistent" in next(r for r in rs if r["msg"] == "job failed to start")["error"]
    assert rig.metric("opsagent_cron_failures_total", JID) == 1
    assert rig.runner.running() == 0


def test_unknown_user_is_a_failed_start(rig: Rig) -> None:
    from dataclasses import replace
    j = replace(job(1, PeriodExpr(60)), user="no-such-user-gorun")
    assert rig.runner.start(j) is None
    rig.recorder.wait_for(lambda rs: any(r["msg"] == "job failed to start" for r in rs))


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_system_crontab_jobs_run_as_their_user(rig: Rig) -> None:
    from dataclasses import replace
    j = replace(job(1, PeriodExpr(60), command="id -un; echo $HOME"), user="nobody")
    rig.runner.start(j)
    assert rig.finished(JID)["exit_code"] == 0
    import pwd
    assert rig.recorder.lines(JID) == ["nobody", pwd.getpwnam("nobody").pw_dir]


def test_signal_all_reaches_every_running_group(rig: Rig) -> None:
    for line in (1, 2):
        rig.runner.start(job(line, PeriodExpr(60), command="exec sleep 30"))
    assert rig.runner.running() == 2
    assert rig.runner.signal_all(signal.SIGTERM) == 2
    rig.finished("/etc/crontab:1")
    rig.finished("/etc/crontab:2")
    wait_until(lambda: rig.finished_count == 2)


# --- prestarted runs (gates) ------------------------------------------------------------------

AT = T0 + __import__("datetime").timedelta(seconds=60)


def test_prestarted_runs_wait_at_the_gate_until_released(rig: Rig, tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "ran"
    jobs = [job(i, PeriodExpr(60), command=f"echo $0 $# run-{i}; touch {marker}-{i}")
            for i in (1, 2)]
    runs = [rig.runner.prepare(j, AT) for j in jobs]
    assert all(r is not None and r.pid > 0 for r in runs)
    assert rig.runner.running() == 0
    # nothing runs while gated (give it a real chance to misbehave)
    time.sleep(0.3)
    assert not list(tmp_path.glob("ran-*"))
    assert rig.runner.release(AT, [(r, AT, False) for r in runs]) == []
    for i in (1, 2):
        end = rig.finished(f"/etc/crontab:{i}")
        assert end["msg"] == "job succeeded"
        # like `sh -c COMMAND`: $0 is the shell, no positional parameters
        assert rig.recorder.lines(f"/etc/crontab:{i}") == [f"/bin/sh 0 run-{i}"]
    assert sorted(p.name for p in tmp_path.glob("ran-*")) == ["ran-1", "ran-2"]
    assert rig.metric("opsagent_cron_runs_total", "/etc/crontab:1") == 1


def test_prestarted_job_gets_its_stdin_text_and_other_shells_work(rig: Rig) -> None:
    from dataclasses import replace
    j1 = job(1, PeriodExpr(60), command="cat; echo done", stdin="a\nb\n")
    j2 = replace(job(2, PeriodExpr(60), command='echo "$0"; cat'), shell="/usr/bin/dash")
    r1, r2 = rig.runner.prepare(j1, AT), rig.runner.prepare(j2, AT)
    rig.runner.release(AT, [(r1, AT, False), (r2, AT, True)])
    assert rig.finished("/etc/crontab:1")["exit_code"] == 0
    assert rig.recorder.lines("/etc/crontab:1") == ["a", "b", "done"]
    rig.finished("/etc/crontab:2")
    assert rig.recorder.lines("/etc/crontab:2") == ["/usr/bin/dash"]  # stdin was /dev/null
    started = [r for r in rig.recorder.records if r["msg"] == "job started"]
    assert {r["job"]: r.get("catch_up") for r in started} == {
        "/etc/crontab:1": None, "/etc/crontab:2": True}


def test_prestarted_runs_not_released_are_killed_not_run(rig: Rig, tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "ran"
    j1 = job(1, PeriodExpr(60), command=f"touch {marker}-1")
    j2 = job(2, PeriodExpr(60), command=f"touch {marker}-2")
    j3 = job(3, PeriodExpr(60), command=f"touch {marker}-3", stdin="x")
    r1, r2, r3 = (rig.runner.prepare(j, AT) for j in (j1, j2, j3))
    assert r1 is not None and r2 is not None and r3 is not None
    rig.runner.abort(r3)
    rig.runner.release(AT, [(r1, AT, False)])  # r2 shares the gate: killed before it opens
    rig.finished("/etc/crontab:1")
    wait_until(lambda: gone(r2.pid) and gone(r3.pid))
    time.sleep(0.2)
    assert [p.name for p in tmp_path.glob("ran-*")] == ["ran-1"]
    assert not [r for r in rig.recorder.records if r.get("job") in ("/etc/crontab:2",
                                                                     "/etc/crontab:3")]


@pytest.mark.parametrize("stdin", [None, "text"])
def test_release_applies_the_overlap_policy(rig: Rig, stdin: str | None) -> None:
    j = job(1, PeriodExpr(60), command="echo ready; exec sleep 30", stdin=stdin)
    rig.runner.start(j)
    rig.recorder.wait_for(lambda rs: "ready" in [r["msg"] for r in rs])
    pre = rig.runner.prepare(j, AT)
    assert pre is not None
    rig.runner.release(AT, [(pre, AT, False)])
    rig.recorder.wait_for(
        lambda rs: any(r["msg"].startswith("previous run still") for r in rs))
    wait_until(lambda: gone(pre.pid))
    assert rig.runner.running(JID) == 1


def test_a_prestarted_process_that_died_is_reported_for_a_direct_start(rig: Rig) -> None:
    j = job(1, PeriodExpr(60))
    pre = rig.runner.prepare(j, AT)
    assert pre is not None
    os.kill(pre.pid, signal.SIGKILL)
    wait_until(lambda: pre.dead)
    assert rig.runner.release(AT, [(pre, AT, False)]) == [j]
