"""Shutdown: SIGTERM stops scheduling, SIGTERMs each job's group, waits the grace, SIGKILLs the
rest and exits 0."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.gorun.harness import Gorun, children

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_jobs_get_sigterm_and_finish_cleanly(tmp_path: Path, gorun: Callable[..., Gorun],
                                             sig: int) -> None:
    tab = tmp_path / "crontab"
    tab.write_text("@reboot trap 'echo got-term; exit 0' TERM; echo started; "
                   "while :; do sleep 0.1; done\n")
    g = gorun("-json", str(tab))
    g.wait_for(lambda rs: any(r["msg"] == "started" for r in rs), "job running")
    g.signal(sig)
    assert g.proc.wait(45) == 0
    recs = g.records()
    assert "got-term" in [r["msg"] for r in recs]
    assert [r["msg"] for r in recs if r.get("run") == 1][-1] == "job succeeded"
    assert recs[-1]["msg"] == "stopped"
    g.close()


def test_jobs_ignoring_sigterm_are_killed_after_the_grace(tmp_path: Path,
                                                          gorun: Callable[..., Gorun]) -> None:
    tab = tmp_path / "crontab"
    tab.write_text("@reboot trap '' TERM; echo started; while :; do sleep 0.1; done\n")
    g = gorun("-json", "-grace-secs", "1", str(tab))
    g.wait_for(lambda rs: any(r["msg"] == "started" for r in rs), "job running")
    kids = children(g.proc.pid)
    assert kids
    g.signal(signal.SIGTERM)
    assert g.proc.wait(45) == 0
    recs = g.records()
    assert any(r["msg"] == "grace period over, killed the remaining jobs" for r in recs)
    end = [r for r in recs if r["msg"] in ("job failed", "job succeeded")]
    assert end and end[0]["signal"] == "SIGKILL"
    g.close()


def test_no_new_runs_start_after_sigterm(tmp_path: Path, gorun: Callable[..., Gorun]) -> None:
    tab = tmp_path / "crontab"
    tab.write_text("* * * * * * * echo tick\n")
    g = gorun("-json", str(tab))
    g.wait_msg("job succeeded")
    g.signal(signal.SIGTERM)
    assert g.proc.wait(45) == 0
    recs = g.records()
    stop_at = next(i for i, r in enumerate(recs) if r["msg"] == "stopping")
    assert not [r for r in recs[stop_at:] if r["msg"] == "job started"]
    g.close()
