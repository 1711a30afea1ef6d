"""Issue 10, defect 3, for statistics: a request line written in two pieces with a SIGTERM of
`opsagent profile run` in between counts once, with its real latency, and nothing is counted as
unparsed (the stop used to count the first piece as a request and the rest as a no_match)."""

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
)

pytestmark = pytest.mark.integration

NAME = f"profile_{PIPELINE}_"


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


def test_a_line_cut_by_sigterm_counts_once_with_its_latency(
        tmp_path: Path, statsd_exporter: StatsdExporter) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    log = logdir / "motan-access.log"
    whole = motan_line(USER, 42, 99)
    assert whole.endswith("|42")
    log.write_text("".join(motan_line(USER, 5, i) + "\n" for i in range(10)) + whole[:-1])
    cfg = tmp_path / "profile.toml"
    cfg.write_text(config_toml(str(logdir / "*.log"), statsd_port=statsd_exporter.udp_port,
                               interval_secs=1, late_secs=0.5, state_dir=tmp_path / "state"))
    out = tmp_path / "agent.log"
    user = {"interface": USER.interface, "method": USER.method}

    proc = start(cfg, out)
    try:
        statsd_exporter.wait_for_value(NAME + "requests", user, 10, timeout=60)
    finally:
        stop(proc, out)  # "...|4" has no newline yet: not a request
    statsd_exporter.barrier()
    assert statsd_exporter.value(NAME + "requests", user) == 10, "the stop counted half a line"

    with log.open("a") as f:
        f.write(whole[-1:] + "\n")
    proc = start(cfg, out)
    try:
        statsd_exporter.wait_for_value(NAME + "requests", user, 11, timeout=60)
    finally:
        stop(proc, out)
    statsd_exporter.barrier()
    assert statsd_exporter.value(NAME + "requests", user) == 11
    assert statsd_exporter.value(NAME + "latency_sum", user) == 10 * 5 + 42
    unparsed = [s for s in statsd_exporter.samples() if s.name.startswith(NAME + "unparsed")
                and s.value]
    assert unparsed == []
