"""The installed `gorun` script: test / next exit codes and the metrics endpoint."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.services import free_port
from tests.integration.gorun.harness import GORUN, Gorun

pytestmark = pytest.mark.integration


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GORUN, *args], capture_output=True, text=True, timeout=60)


def test_test_command(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_text("0 3 * * * echo ok\n")
    bad = tmp_path / "bad"
    bad.write_text("0 3 * * * echo ok\n0 25 * * * echo bad\n")
    assert run("test", str(good)).returncode == 0
    res = run("test", str(good), str(bad))
    assert res.returncode == 2
    assert res.stderr.startswith(f"{bad}:2: ")
    assert run("-test", str(bad)).returncode == 2


def test_next_command() -> None:
    res = run("next", "0 3 * * *", "--tz", "UTC", "--from", "2024-02-28T12:00:00Z", "-n", "2")
    assert res.returncode == 0
    assert res.stdout.split() == ["2024-02-29T03:00:00+00:00", "2024-03-01T03:00:00+00:00"]
    assert run("next", "0 0 31 4 *").returncode == 2


def test_prometheus_listen_address_serves_metrics(tmp_path: Path,
                                                  gorun: Callable[..., Gorun]) -> None:
    tab = tmp_path / "crontab"
    tab.write_text("* * * * * * * exit 1\n")
    port = free_port()
    g = gorun("-json", "-prometheus-listen-address", f"127.0.0.1:{port}", str(tab))
    g.wait_msg("job failed", n=2)
    job = f"{tab}:1"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert f'opsagent_cron_runs_total{{job="{job}"}}' in text
    assert f'opsagent_cron_failures_total{{job="{job}"}}' in text
    assert "opsagent_cron_run_duration_seconds_bucket" in text
    assert g.stop() == 0
