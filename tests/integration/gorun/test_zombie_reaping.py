"""No zombies: orphans of jobs are reaped by gorun as a child subreaper and as PID 1 of a PID
namespace; job exit statuses are still reported correctly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.services import free_port
from tests.integration.gorun.harness import Gorun, children, children_zombies

pytestmark = pytest.mark.integration
# Each run leaves an orphan (the backgrounded subshell) that exits a moment later.
JOB = "* * * * * * * (sleep 0.2; exit 5) & echo forked; exit 7\n"


def scrape(port: int) -> str:
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def assert_no_lingering_zombies(pid: int) -> None:
    """Sample the children of `pid` for a while: a zombie may exist for an instant between an
    exit and its reaping (longer on a busy machine, where the reaping thread waits for a CPU),
    but every one seen must be reaped: none may still be there 10 s later."""
    for _ in range(15):
        zs = set(children_zombies(pid))
        deadline = time.monotonic() + 10
        while zs:
            zs &= set(children_zombies(pid))
            assert not zs or time.monotonic() < deadline, f"zombies not reaped: {zs}"
            time.sleep(0.05)
        time.sleep(0.1)


def test_subreaper_reaps_orphans_and_keeps_exit_statuses(tmp_path: Path,
                                                         gorun: Callable[..., Gorun]) -> None:
    tab = tmp_path / "crontab"
    tab.write_text(JOB)
    port = free_port()
    g = gorun("-json", "-subreaper", "-prometheus-listen-address", f"127.0.0.1:{port}",
              str(tab))
    ends = g.wait_msg("job failed", n=4)
    assert {e["exit_code"] for e in ends} == {7}
    deadline = time.monotonic() + 30
    while metric(scrape(port), "opsagent_cron_orphans_reaped_total") < 3:
        assert time.monotonic() < deadline, "orphans were not reaped"
        time.sleep(0.1)
    assert_no_lingering_zombies(g.proc.pid)
    assert g.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="PID namespaces need root and unshare(1)")
def test_as_pid_1_no_zombies(tmp_path: Path, gorun: Callable[..., Gorun]) -> None:
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare --pid not permitted here: {probe.stderr.decode().strip()}")
    tab = tmp_path / "crontab"
    tab.write_text(JOB)
    g = gorun("-json", str(tab), prefix=["unshare", "--pid", "--fork", "--kill-child"])
    ends = g.wait_msg("job failed", n=4)
    assert {e["exit_code"] for e in ends} == {7}
    inner = children(g.proc.pid)  # unshare's child is gorun, PID 1 inside the namespace
    assert len(inner) == 1
    with open(f"/proc/{inner[0]}/status") as f:
        nspid = [ln for ln in f if ln.startswith("NSpid:")][0].split()
    assert nspid[-1] == "1"
    assert_no_lingering_zombies(inner[0])
    os.kill(inner[0], signal.SIGTERM)  # unshare --fork ignores SIGTERM itself
    assert g.proc.wait(45) == 0
    g.close()
