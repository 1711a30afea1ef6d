"""With the Graphite sink on TCP and no carbon listening, `opsagent profile run` keeps going
(statsd still gets every interval), buffers the Graphite lines and delivers them once a real
carbon-cache starts on that port; lines appended afterwards arrive too. Sending never blocks
the pipeline."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures.carbon import running_carbon
from tests.fixtures.services import free_port, stop_process
from tests.fixtures.statsd_exporter import StatsdExporter, wait_until
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


def test_lines_sent_while_carbon_is_down_arrive_when_it_starts(
        tmp_path: Path, statsd_exporter: StatsdExporter) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    log = write_log(logdir / "motan-access.log")
    carbon_tcp = free_port()  # nothing listens here yet
    cfg = tmp_path / "profile.toml"
    cfg.write_text(config_toml(str(logdir / "*.log"), statsd_port=statsd_exporter.udp_port,
                               graphite_port=carbon_tcp, graphite_protocol="tcp",
                               interval_secs=1, late_secs=0.5,
                               state_dir=tmp_path / "state", reconnect_max_secs=1.0))
    agent_log = tmp_path / "agent.log"
    started = int(time.time()) - 5
    with agent_log.open("wb") as out:
        proc = subprocess.Popen([*opsagent_argv(), "profile", "run", "--config", str(cfg)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    rc: int | None = None
    try:
        user = {"interface": USER.interface, "method": USER.method}
        # The intervals were computed and sent to statsd while Graphite could not connect.
        statsd_exporter.wait_for_value(NAME + "requests", user, USER.count, timeout=60)
        wait_until(lambda: "graphite connect failed" in agent_log.read_text(errors="replace"),
                   30.0, "the agent to log a failed Graphite connection")

        metric = f"profile.{PIPELINE}.{USER.interface.replace('.', '_')}.{USER.method}.requests"
        with running_carbon(tmp_path / "carbon", tcp_port=carbon_tcp) as carbon:

            def whisper_total(expected: int) -> bool:
                return sum(v for _t, v in carbon.fetch(metric, started)) == expected

            wait_until(lambda: whisper_total(USER.count), 60.0,
                       f"buffered {metric} points adding up to {USER.count}", interval=0.5)
            with log.open("a") as f:
                f.writelines(motan_line(USER, 40, 20_000 + i) + "\n" for i in range(APPENDED))
            wait_until(lambda: whisper_total(USER.count + APPENDED), 60.0,
                       f"{metric} points adding up to {USER.count + APPENDED}", interval=0.5)
        statsd_exporter.wait_for_value(NAME + "requests", user, USER.count + APPENDED)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            stop_process(proc)
    assert rc == 0, f"opsagent profile run exited {rc}:\n{agent_log.read_text()[-3000:]}"
