"""`opsagent profile run` tails a growing Motan log and pushes every interval to a real
statsd_exporter and a real carbon-cache at once: after the known log and then 100 appended lines,
the exporter's counters equal the line counts (per-interval deltas, not running totals, or they
would double count) and the whisper points of all intervals add up to the same; SIGTERM stops
the foreground process cleanly."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures.carbon import Carbon
from tests.fixtures.services import stop_process
from tests.fixtures.statsd_exporter import StatsdExporter, wait_until
from tests.integration.profile.known_log import (
    ORDER,
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
APPENDED_MS = 40  # latency of each appended USER line; every 100 ms multiple is an error, 40 not


def test_run_tails_and_sends_deltas_to_both_sinks(tmp_path: Path,
                                                  statsd_exporter: StatsdExporter,
                                                  carbon: Carbon) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    log = write_log(logdir / "motan-access.log")
    cfg = tmp_path / "profile.toml"
    cfg.write_text(config_toml(str(logdir / "*.log"), statsd_port=statsd_exporter.udp_port,
                               graphite_port=carbon.udp_port, interval_secs=1, late_secs=0.5,
                               state_dir=tmp_path / "state"))
    started = int(time.time()) - 5
    proc = subprocess.Popen([*opsagent_argv(), "profile", "run", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    try:
        user = {"interface": USER.interface, "method": USER.method}
        statsd_exporter.wait_for_value(NAME + "requests", user, USER.count, timeout=60)
        statsd_exporter.wait_for_value(NAME + "errors", user, USER.errors)
        statsd_exporter.wait_for_value(NAME + "latency_sum", user, USER.latency_sum)
        statsd_exporter.wait_for_value(
            NAME + "requests", {"interface": ORDER.interface, "method": ORDER.method},
            ORDER.count)

        with log.open("a") as f:
            f.writelines(motan_line(USER, APPENDED_MS, 10_000 + i) + "\n"
                         for i in range(APPENDED))
        statsd_exporter.wait_for_value(NAME + "requests", user, USER.count + APPENDED,
                                       timeout=60)
        statsd_exporter.wait_for_value(NAME + "latency_sum", user,
                                       USER.latency_sum + APPENDED * APPENDED_MS)
        statsd_exporter.wait_for_value(NAME + "errors", user, USER.errors)

        metric = f"profile.{PIPELINE}.{USER.interface.replace('.', '_')}.{USER.method}.requests"

        def whisper_total() -> float | None:
            total = sum(v for _t, v in carbon.fetch(metric, started))
            return total if total == USER.count + APPENDED else None

        wait_until(whisper_total, 60.0, f"{metric} points adding up to {USER.count + APPENDED}",
                   interval=0.5)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        rc: int | None = None
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            stop_process(proc)
        output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    assert rc == 0, f"opsagent profile run exited {rc}:\n{output[-3000:]}"
