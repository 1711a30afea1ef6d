"""Overlap policies and per-job timeouts with the real gorun."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.gorun.harness import Gorun

pytestmark = pytest.mark.integration
EVERY_SECOND = "* * * * * * *"


def test_default_skips_overlapping_runs_with_a_warning(tmp_path: Path,
                                                       gorun: Callable[..., Gorun]) -> None:
    tab = tmp_path / "crontab"
    tab.write_text(f"{EVERY_SECOND} sleep 3\n")
    g = gorun("-json", str(tab))
    skips = g.wait_msg("previous run still running, skipping this one", n=2)
    assert skips[0]["running_run"] == 1 and skips[0]["level"] == "warning"
    recs = g.records()
    started = [r["run"] for r in recs if r["msg"] == "job started"]
    assert started == sorted(set(started))
    assert g.stop() == 0


def test_overlapping_flag_allows_concurrent_runs(tmp_path: Path,
                                                 gorun: Callable[..., Gorun]) -> None:
    tab = tmp_path / "crontab"
    tab.write_text(f"{EVERY_SECOND} sleep 3\n")
    g = gorun("-json", "-overlapping", str(tab))
    recs = g.wait_msg("job started", n=3)
    assert [r["run"] for r in recs[:3]] == [1, 2, 3]
    assert not [r for r in g.records() if r["msg"].startswith("previous run")]
    assert g.stop() == 0


def test_overlap_replace_terminates_the_previous_run(tmp_path: Path,
                                                     gorun: Callable[..., Gorun]) -> None:
    tab = tmp_path / "crontab"
    tab.write_text(f"# gorun: overlap=replace\n{EVERY_SECOND} sleep 30\n")
    g = gorun("-json", str(tab))
    ends = g.wait_msg("job failed", n=1, replaced=True)
    assert ends[0]["signal"] == "SIGTERM"
    assert g.stop() == 0


def test_timeout_sigterms_the_group_then_sigkills(tmp_path: Path,
                                                  gorun: Callable[..., Gorun]) -> None:
    tab = tmp_path / "crontab"
    tab.write_text("# gorun: timeout=1s\n@reboot trap '' TERM; echo started; "
                   "while :; do sleep 0.1; done\n")
    g = gorun("-json", "-kill-grace-secs", "1", str(tab))
    end = g.wait_msg("job failed", timed_out=True)[0]
    assert end["signal"] == "SIGKILL"
    assert any(r["msg"] == "job timed out, stopping it" for r in g.records())
    assert g.stop() == 0


def test_timeout_of_a_job_that_obeys_sigterm(tmp_path: Path, gorun: Callable[..., Gorun]) -> None:
    tab = tmp_path / "crontab"
    tab.write_text("# gorun: timeout=1s\n@reboot exec sleep 60\n")
    g = gorun("-json", str(tab))
    end = g.wait_msg("job failed", timed_out=True)[0]
    assert end["signal"] == "SIGTERM"
    assert g.stop() == 0
