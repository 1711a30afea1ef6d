"""`opsagent status --once` against a real `opsagent run`: Kafka is down (nothing listens on
its port), so the forward pipeline holds its lines and its file lags; a cron job fails every
second and another waits for its next minute; a rotation policy watches a directory; a broken
config reload is rejected. The view names each of them with live numbers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.services import free_port
from tests.fixtures.statsd_exporter import wait_until

pytestmark = pytest.mark.integration

OPSAGENT = str(Path(sys.executable).with_name("opsagent"))


def status(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OPSAGENT, "status", "--once", "--interval", "0.5", "--url", url],
                          capture_output=True, text=True, timeout=60)


def test_status_shows_every_job_of_a_live_agent(tmp_path: Path) -> None:
    for sub in ("critical", "pvc/pod-a/logs", "state"):
        (tmp_path / sub).mkdir(parents=True)
    critical = tmp_path / "critical" / "critical.log"
    critical.write_text("".join(f"CRITICAL line {i}\n" for i in range(50)))
    (tmp_path / "pvc" / "pod-a" / "logs" / "app.log").write_text("x\n" * 100)
    crontab = tmp_path / "crontab"
    crontab.write_text("* * * * * * * exit 3\n0 4 * * * echo nightly\n")
    http_port, dead_kafka = free_port(), free_port()
    text = f"""
state_dir = "{tmp_path / 'state'}"
drain_deadline_secs = 5.0
[telemetry]
http_listen = "127.0.0.1:{http_port}"
[cron]
crontabs = ["{crontab}"]
[[rotate]]
name = "pvc"
directories = ["{tmp_path}/pvc/*/logs"]
rotate_size_bytes = 1048576
quota_soft_bytes = 10485760
[[forward]]
name = "critical"
drain_timeout_secs = 1.0
[forward.tail]
include = ["{tmp_path}/critical/*.log"]
start_at = "beginning"
[forward.kafka]
bootstrap_servers = ["127.0.0.1:{dead_kafka}"]
topic = "critical"
connect_timeout_ms = 500
"""
    cfg = tmp_path / "agent.toml"
    cfg.write_text(text)
    url = f"http://127.0.0.1:{http_port}"
    with (tmp_path / "agent.log").open("wb") as log:
        agent = subprocess.Popen([OPSAGENT, "run", "--config", str(cfg)], stdout=log,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        def failed_twice() -> bool:
            r = status(url)
            return r.returncode == 0 and re.search(r"crontab:1: [2-9]\d* failed run", r.stdout) \
                is not None

        wait_until(failed_twice, 60, "two failed runs of the failing job in the view")
        cfg.write_text(text + "no_such_key = 1\n")
        agent.send_signal(signal.SIGHUP)
        # (the file watch may see the write as well: one or two rejections)
        wait_until(lambda: re.search(r"config rejected \d time\(s\)", status(url).stdout), 60,
                   "the rejected reload in the view")
        out = status(url).stdout
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)
    lines = out.splitlines()
    assert lines[0].startswith(f"opsagent status  {url}  ")
    # Forward: the pipeline, its file with every byte still to deliver, bytes held for Kafka.
    pipeline = next(x for x in lines if x.startswith("critical "))
    cells = pipeline.split()
    assert cells[0] == "critical" and re.fullmatch(r"\d+\.\d", cells[1])
    held = re.search(r"(\d+(?:\.\d)? (?:B|KiB|MiB))\s+0\s+0 B$", pipeline)  # held, dead, lost
    assert held and held.group(1) != "0 B", pipeline
    file_row = next(x for x in lines if str(critical) in x).split()
    # nothing acknowledged: the whole file is the lag
    assert file_row[:3] == [str(critical), f"{os.path.getsize(critical)}", "B"], file_row
    # Rotation: the quota group with its usage; cron: both jobs, the nightly one scheduled.
    assert any(x.startswith("pvc ") and "pod-a/logs" in x for x in lines), out
    nightly = next(x for x in lines if x.startswith(f"{crontab}:2 "))
    assert re.search(r"in \d+(\.\d)?[smhd]\s*$", nightly), nightly
    assert agent.returncode == 0
