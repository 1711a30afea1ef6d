"""`opsagent profile run` stopped and started again over the same log (read positions in its
state_dir) counts every line exactly once into a real statsd_exporter: lines appended while it
was down are picked up, nothing already sent is sent again."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.services import stop_process
from tests.fixtures.statsd_exporter import StatsdExporter
from tests.integration.profile.known_log import (
    PIPELINE,
    USER,
    config_toml,
    motan_line,
    opsagent_argv,
    write_log,
)

pytestmark = pytest.mark.integration

NAME = f"profile_{PIPELINE}_"
APPENDED = 100


def start(cfg: Path, out: Path) -> subprocess.Popen[bytes]:
    with out.open("ab") as f:
        return subprocess.Popen([*opsagent_argv(), "profile", "run", "--config", str(cfg)],
                                stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop(proc: subprocess.Popen[bytes], out: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(30)
    except subprocess.TimeoutExpired:
        stop_process(proc)
        rc = None
    assert rc == 0, f"opsagent profile run exited {rc}:\n{out.read_text()[-3000:]}"


def test_restart_resumes_where_it_stopped(tmp_path: Path,
                                          statsd_exporter: StatsdExporter) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    log = write_log(logdir / "motan-access.log")
    cfg = tmp_path / "profile.toml"
    cfg.write_text(config_toml(str(logdir / "*.log"), statsd_port=statsd_exporter.udp_port,
                               interval_secs=1, late_secs=0.5, state_dir=tmp_path / "state"))
    out = tmp_path / "agent.log"
    user = {"interface": USER.interface, "method": USER.method}

    proc = start(cfg, out)
    try:
        statsd_exporter.wait_for_value(NAME + "requests", user, USER.count, timeout=60)
    finally:
        stop(proc, out)

    with log.open("a") as f:  # written while no agent runs
        f.writelines(motan_line(USER, 40, 30_000 + i) + "\n" for i in range(APPENDED))

    proc = start(cfg, out)
    try:
        statsd_exporter.wait_for_value(NAME + "requests", user, USER.count + APPENDED,
                                       timeout=60)
    finally:
        stop(proc, out)  # sends every open interval before exiting
    statsd_exporter.barrier()  # everything the agent sent is applied now
    assert statsd_exporter.value(NAME + "requests", user) == USER.count + APPENDED
    assert statsd_exporter.value(NAME + "errors", user) == USER.errors
    assert statsd_exporter.value(NAME + "latency_sum", user) == \
        USER.latency_sum + 40 * APPENDED
