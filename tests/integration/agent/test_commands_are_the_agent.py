"""`opsagent forward`, `opsagent profile run` and continuous `opsagent rotate` are the agent with
a job filter: each real process serves /healthz /readyz /metrics on telemetry.http_listen, logs
at telemetry.log_level, reloads on SIGHUP with the filter re-applied (a job of another kind added
to the config is not started), and drains on SIGTERM with exit 0. No broker is needed: the
Kafka address has nothing listening, which the agent survives (liveness never depends on it)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.services import free_port, stop_process

pytestmark = pytest.mark.integration

OPSAGENT = str(Path(sys.executable).with_name("opsagent"))


def _forward(name: str, tmp: Path, kafka_port: int) -> str:
    return f"""
[[forward]]
name = "{name}"
drain_timeout_secs = 1.0
[forward.tail]
include = ["{tmp}/{name}/*.log"]
[forward.kafka]
bootstrap_servers = ["127.0.0.1:{kafka_port}"]
topic = "t"
connect_timeout_ms = 500
retry_backoff_base_secs = 0.1
retry_backoff_max_secs = 0.5
"""


def _profile(name: str, tmp: Path) -> str:
    return f"""
[[profile]]
name = "{name}"
preset = "motan"
[profile.tail]
include = ["{tmp}/{name}/*.log"]
[profile.statsd]
port = 9
"""


def _rotate(name: str, tmp: Path) -> str:
    return f"""
[[rotate]]
name = "{name}"
directories = ["{tmp}/{name}"]
"""


def _head(tmp: Path, port: int, level: str = "info") -> str:
    return (f'state_dir = "{tmp / "state"}"\ndrain_deadline_secs = 5.0\n\n'
            f'[telemetry]\nlog_level = "{level}"\nhttp_listen = "127.0.0.1:{port}"\n')


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return 0, ""


def _wait(cond: Callable[[], Any], what: str, proc: subprocess.Popen[bytes], log: Path,
          timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def _records(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def _reloads(port: int) -> float:
    _, body = _get(port, "/metrics")
    for line in body.splitlines():
        if line.startswith('opsagent_config_reloads_total{result="applied"}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize(("argv", "kind", "other_kind"), [
    (["forward"], "forward", "profile"),
    (["profile", "run"], "profile", "rotate"),
    (["rotate"], "rotate", "forward"),
], ids=["forward", "profile-run", "rotate"])
def test_command_serves_http_reloads_with_its_filter_and_drains(
        tmp_path: Path, argv: list[str], kind: str, other_kind: str) -> None:
    kafka, port = free_port(), free_port()
    section = {"forward": lambda n: _forward(n, tmp_path, kafka),
               "profile": lambda n: _profile(n, tmp_path),
               "rotate": lambda n: _rotate(n, tmp_path)}
    for d in ("one", "two", "other"):
        (tmp_path / d).mkdir()
    cfg = tmp_path / "opsagent.toml"
    cfg.write_text(_head(tmp_path, port) + section[kind]("one"))
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([OPSAGENT, *argv, "--config", str(cfg)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait(lambda: _get(port, "/readyz")[0] == 200, "/readyz 200", proc, log)
        assert _get(port, "/healthz")[0] == 200
        started = [r for r in _records(log) if r.get("msg") == "agent started"]
        assert started and started[0]["jobs"] == [f"{kind}:one"], started
        # The same config plus a job of this kind and one of another: only the first starts.
        # Written atomically; the config watcher or the SIGHUP, whichever comes first, reloads
        # it (the other finds nothing changed).
        new = tmp_path / "new.toml"
        new.write_text(_head(tmp_path, port) + section[kind]("one") + section[kind]("two")
                       + section[other_kind]("other"))
        new.rename(cfg)
        proc.send_signal(signal.SIGHUP)

        def changes() -> list[list[str]]:
            return [r["changes"] for r in _records(log) if r.get("msg") == "config reloaded"]

        _wait(lambda: [f"start {kind}:two"] in changes(), "the reload starting the new job",
              proc, log)
        assert _reloads(port) >= 1
        assert all(c in ([], [f"start {kind}:two"]) for c in changes()), changes()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            stop_process(proc)
    assert rc == 0, log.read_text()[-3000:]
    assert any(r.get("msg") == "stopped" for r in _records(log))


def test_profile_run_logs_at_the_configured_level(tmp_path: Path) -> None:
    """`profile run` used to log at info whatever telemetry.log_level said."""
    port = free_port()
    (tmp_path / "one").mkdir()
    cfg = tmp_path / "opsagent.toml"
    cfg.write_text(_head(tmp_path, port, level="debug") + _profile("one", tmp_path))
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([OPSAGENT, "profile", "run", "--config", str(cfg)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait(lambda: _get(port, "/readyz")[0] == 200, "/readyz 200", proc, log)
        _wait(lambda: any(r.get("level") == "debug" for r in _records(log)),
              "a debug-level line", proc, log)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            stop_process(proc)
    assert rc == 0, log.read_text()[-3000:]
