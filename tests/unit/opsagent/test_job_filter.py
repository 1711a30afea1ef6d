"""`opsagent forward`, `profile run` and continuous `rotate` are the agent with a job filter:
the filter selects the jobs at start, on every reload and on every restart after a failure;
what cannot run under a filter is a usage error (exit 2) naming the config file."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import prometheus_client
import pytest

from opsagent.app import RESTART_BACKOFF_SECS
from opsagent.cli import main
from opsagent.clock import FakeClock
from opsagent.commands.jobs import JobSelection, runs_rotation
from opsagent.config import schema
from opsagent.reload import Key
from opsagent.telemetry.http import Health
from tests.unit.opsagent.test_app import FakeAgent, config_text, reloads, wait_for

FORWARD = JobSelection("opsagent forward", "forward")
PROFILE_B = JobSelection("opsagent profile run", "profile", frozenset({"b"}))
ROTATE = JobSelection("opsagent rotate", "rotate")


@pytest.mark.parametrize(("jobs", "key", "want"), [
    (FORWARD, ("forward", "critical"), True),
    (FORWARD, ("profile", "critical"), False),
    (FORWARD, ("cron", "crontabs"), False),
    (PROFILE_B, ("profile", "b"), True),
    (PROFILE_B, ("profile", "a"), False),
    (PROFILE_B, ("forward", "b"), False),
    (ROTATE, ("rotate", "apps"), True),
], ids=["forward-kind", "other-kind-same-name", "cron", "named", "not-named",
        "name-of-other-kind", "rotate"])
def test_selection_matches_kind_and_names(jobs: JobSelection, key: Key, want: bool) -> None:
    assert jobs(key) is want


def _agent(tmp_path: Path, text: str, jobs: JobSelection | None) -> tuple[FakeAgent, Path,
                                                                           FakeClock]:
    path = tmp_path / "opsagent.toml"
    path.write_text(text)
    (tmp_path / "crontab").write_text("")    # validated on every reload, as at start
    clock = FakeClock()
    agent = FakeAgent(str(path), schema.load(str(path)), clock=clock,
                      registry=prometheus_client.CollectorRegistry(),
                      health=Health(clock.monotonic), env={}, reaper=None, jobs=jobs)
    return agent, path, clock


SECOND_JOBS = """
[[profile]]
name = "b"
preset = "motan"
[profile.tail]
include = ["{tmp}/profile-b/*.log"]

[[forward]]
name = "second"
[forward.tail]
include = ["{tmp}/second/*.log"]
[forward.kafka]
bootstrap_servers = ["127.0.0.1:9"]
topic = "t"
"""


def test_filter_holds_at_start_and_across_reloads(tmp_path: Path) -> None:
    agent, path, _ = _agent(tmp_path, config_text(tmp_path), FORWARD)
    agent.start()
    assert set(agent.components) == {("forward", "critical")}
    # A reload that adds a profile and a forwarder starts only the forwarder; one that
    # changes only unselected jobs touches nothing.
    path.write_text(config_text(tmp_path) + SECOND_JOBS.format(tmp=tmp_path))
    assert agent.reload()
    assert set(agent.components) == {("forward", "critical"), ("forward", "second")}
    before = dict(agent.components)
    path.write_text(config_text(tmp_path, interval=5, keep=2)
                    + SECOND_JOBS.format(tmp=tmp_path))
    assert agent.reload()
    assert agent.components == before
    assert len(agent.built) == 2


def test_filter_holds_for_restarts_after_the_backoff(tmp_path: Path) -> None:
    text = config_text(tmp_path) + SECOND_JOBS.format(tmp=tmp_path)
    agent, _, clock = _agent(tmp_path, text, PROFILE_B)
    agent.fail_build = {("profile", "b")}
    agent.start()
    assert agent.components == {}
    agent.fail_build = set()
    agent._check_components()           # first sight of the missing job: the backoff starts
    clock.advance(RESTART_BACKOFF_SECS + 1)
    agent._check_components()
    # Only the selected job is retried: the unselected ones are not "missing".
    assert set(agent.components) == {("profile", "b")}
    assert [c.key for c in agent.built] == [("profile", "b")]


def test_run_loop_with_a_filter_reloads_on_sighup_and_drains(tmp_path: Path) -> None:
    agent, path, _ = _agent(tmp_path, config_text(tmp_path), ROTATE)
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(agent.run()), daemon=True)
    t.start()
    wait_for(lambda: set(agent.components) == {("rotate", "apps")}, "start")
    path.write_text(config_text(tmp_path, keep=3, interval=5))
    agent.events.put(signal.SIGHUP)
    wait_for(lambda: reloads(agent, "applied") == 1, "SIGHUP reload")
    agent.events.put(signal.SIGTERM)
    t.join(30)
    assert result == [0]
    assert [c.key for c in agent.built] == [("rotate", "apps"), ("rotate", "apps")]
    assert all(c.stopped_with is not None for c in agent.built)


def test_rotation_lock_only_when_rotation_is_selected(tmp_path: Path) -> None:
    cfg = schema.load(str(_write(tmp_path, config_text(tmp_path))))
    assert runs_rotation(cfg, None)
    assert runs_rotation(cfg, ROTATE)
    assert not runs_rotation(cfg, FORWARD)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(("argv", "needle"), [
    (["forward"], "no [[forward]] pipeline configured"),
    (["rotate"], "no [[rotate]] policies configured"),
    (["profile", "run"], "no [[profile]] pipelines configured"),
    (["profile", "run", "--pipeline", "zzz", "--pipeline", "yyy"],
     "no [[profile]] named yyy, zzz"),
], ids=["forward-none", "rotate-none", "profile-none", "profile-unknown-name"])
def test_nothing_to_run_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         argv: list[str], needle: str) -> None:
    text = f'state_dir = "{tmp_path / "state"}"\n'
    if "--pipeline" in argv:
        text += '[[profile]]\nname = "a"\npreset = "motan"\n[profile.tail]\ninclude = ["/l/*"]\n'
    conf = _write(tmp_path, text)
    assert main([*argv, "--config", str(conf)]) == 2
    err = capsys.readouterr().err
    assert f"{conf}: {needle}" in err
    assert not (tmp_path / "state").exists()   # nothing started, no lock taken


def test_profile_run_no_checkpoints_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = _write(tmp_path, config_text(tmp_path))
    assert main(["profile", "run", "--config", str(conf), "--no-checkpoints"]) == 2
    assert "--no-checkpoints is no longer supported" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["run"], ["profile", "run"]], ids=["run", "profile-run"])
def test_unusable_state_dir_is_a_clear_error(tmp_path: Path, argv: list[str]) -> None:
    """The old `profile run` ran on without checkpoints; the agent needs its state_dir (lock,
    read positions) and says why it cannot start instead of a traceback. (A subprocess: the
    agent sets up the process's logging before it gets there.)"""
    (tmp_path / "file").write_text("")
    (tmp_path / "crontab").write_text("")
    text = config_text(tmp_path, state_dir=str(tmp_path / "file" / "state"))
    conf = _write(tmp_path, text)
    r = subprocess.run([sys.executable, "-m", "opsagent.cli", *argv, "--config", str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    prog = "opsagent " + " ".join(argv)
    assert f"{prog}: " in r.stderr and "Not a directory" in r.stderr
    assert "Traceback" not in r.stderr
