"""scripts/demo's crontab (config/demo/crontab): gorun finds nothing to warn about in it, and
under a real agent its workload jobs write the demo's logs and end cleanly when the agent drains
(exit 0, no "Terminated" noise, no warning in the agent's log)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gorun.cli import main as gorun_main
from tests.fixtures.services import ROOT
from tests.fixtures.statsd_exporter import wait_until

pytestmark = pytest.mark.integration

CRONTAB = ROOT / "config" / "demo" / "crontab"
OPSAGENT = str(Path(sys.executable).with_name("opsagent"))


def test_gorun_has_nothing_to_say_about_the_demo_crontab(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert gorun_main(["test", str(CRONTAB)]) == 0
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def test_demo_workload_runs_and_stops_cleanly(tmp_path: Path) -> None:
    pod = tmp_path / "pvc" / "pod-a"
    for sub in ("logs", "profile", "critical"):
        (pod / sub).mkdir(parents=True)
    text = CRONTAB.read_text()
    assert "\nDEMO=/tmp/opsagent-demo/pvc/pod-a\n" in text
    crontab = tmp_path / "crontab"
    crontab.write_text(text.replace("DEMO=/tmp/opsagent-demo/pvc/pod-a", f"DEMO={pod}"))
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'state_dir = "{tmp_path / "state"}"\ndrain_deadline_secs = 10.0\n'
                   f'[cron]\ncrontabs = ["{crontab}"]\n')
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([OPSAGENT, "run", "--config", str(cfg)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: _size(pod / "logs" / "app.log") > 100_000
                   and _size(pod / "profile" / "access.log") > 20_000
                   and _size(pod / "critical" / "critical.log") > 0, 60, "the demo's logs")
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    records: list[dict[str, Any]] = [json.loads(x) for x in log.read_text().splitlines()]
    assert rc == 0, records[-10:]
    assert not [r for r in records if r["level"] in ("warning", "error")], records
    ended = {r["job"]: r for r in records if r.get("msg") in ("job succeeded", "job failed")}
    loops = [r["job"] for r in records if r.get("msg") == "job started"
             and "while :" in r.get("command", "")]
    assert len(loops) == 3
    for job in loops:
        assert ended[job]["msg"] == "job succeeded" and ended[job]["exit_code"] == 0
    assert not [r for r in records if r.get("stream") == "stderr"], records
    assert any(r.get("msg") == "hello from gorun: the workload jobs below are starting"
               for r in records)
