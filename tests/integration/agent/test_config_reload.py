"""A real `opsagent run` process under live config changes, as an operator makes them: a crontab
added to [cron] is picked up crontab by crontab (the running job is not killed, @reboot does
not run again); a config saved as Latin-1, a FIFO in place of the config and an empty file are
each rejected with the reason in /readyz (503) and the metrics, while every job keeps running
and /healthz stays 200; fixing the file makes the agent ready again; SIGTERM exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.services import free_port, stop_process
from tests.fixtures.statsd_exporter import parse_exposition, wait_until

pytestmark = pytest.mark.integration

OPSAGENT = str(Path(sys.executable).with_name("opsagent"))
EVERY_SECOND = "* * * * * * *"


class Agent:
    def __init__(self, config: Path, log: Path, http_port: int) -> None:
        self.log_path = log
        self.http_port = http_port
        with log.open("wb") as out:
            self.proc = subprocess.Popen([OPSAGENT, "run", "--config", str(config)],
                                         stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=config.parent)

    def get(self, path: str) -> tuple[int, str]:
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}",
                                        timeout=5) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        want = labels or {}
        return sum(s.value for s in parse_exposition(self.get("/metrics")[1])
                   if s.name == name and want.items() <= s.labels.items())

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def wait(self, cond: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        try:
            return wait_until(cond, timeout, what)
        except TimeoutError as e:
            raise AssertionError(f"{e}; agent log tail:\n{self.tail()}") from None


def config_text(d: Path, port: int, crontabs: list[Path]) -> str:
    tabs = ", ".join(f'"{t}"' for t in crontabs)
    return f"""
state_dir = "{d / 'state'}"
drain_deadline_secs = 5

[telemetry]
http_listen = "127.0.0.1:{port}"

[cron]
crontabs = [{tabs}]

[[rotate]]
name = "apps"
directories = ["{d}/logs"]
"""


def replace(path: Path, data: bytes) -> None:
    """Write a new version the way editors and kubectl cp do: a new file renamed over it."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for a in started:
        stop_process(a.proc, 30)


def test_live_config_changes_are_applied_or_rejected_and_the_agent_never_dies(
        tmp_path: Path, agents: list[Agent]) -> None:
    d = tmp_path
    (d / "logs").mkdir()
    first = d / "first.crontab"
    # The @reboot job records each run, then stays running (exec keeps its pid).
    first.write_text(f"@reboot echo boot >> {d}/reboots; echo $$ > {d}/long.pid; "
                     "exec sleep 300\n")
    second = d / "second.crontab"
    second.write_text(f"@reboot echo boot2 >> {d}/reboots\n"
                      f"{EVERY_SECOND} echo tick >> {d}/ticks\n")
    config = d / "opsagent.toml"
    port = free_port()
    good = config_text(d, port, [first])
    config.write_text(good)
    agent = Agent(config, d / "agent.log", port)
    agents.append(agent)
    agent.wait(lambda: agent.get("/readyz") == (200, "ok\n"), "ready")
    pid_file = d / "long.pid"
    agent.wait(lambda: pid_file.exists() and pid_file.read_text().strip(), "the long job")
    pid = int(pid_file.read_text())

    # 1. A crontab added to [cron]: loaded in place, the running job untouched.
    with_second = config_text(d, port, [first, second])
    replace(config, with_second.encode())
    agent.wait(lambda: (d / "ticks").exists(), "the added crontab's job runs")
    assert alive(pid), "the running @reboot job was killed by the reload"
    assert (d / "reboots").read_text() == "boot\n"       # @reboot once, the new one not at all
    assert agent.metric("opsagent_config_reloads_total", {"result": "applied"}) == 1
    assert agent.metric("opsagent_component_up", {"component": "cron"}) == 1

    # 2. `# café` saved as Latin-1: rejected, reported, nothing stops.
    replace(config, with_second.encode() + "# café\n".encode("latin-1"))
    agent.wait(lambda: agent.get("/readyz")[0] == 503, "not ready after the bad edit")
    code, why = agent.get("/readyz")
    assert "config rejected" in why and "not UTF-8" in why, why
    assert agent.get("/healthz")[0] == 200
    assert agent.metric("opsagent_config_last_reload_successful") == 0
    assert agent.metric("opsagent_ready") == 0
    assert agent.metric("opsagent_config_reloads_total", {"result": "rejected"}) == 1

    # 3. A FIFO in place of the config: rejected at once, the main loop never blocks.
    fifo = d / "fifo"
    os.mkfifo(fifo)
    os.replace(fifo, config)
    agent.wait(lambda: "not a regular file" in agent.get("/readyz")[1], "the FIFO rejected")
    assert agent.get("/healthz")[0] == 200

    # 4. An empty file: would stop every job, so it is held (SIGHUP would apply it).
    replace(config, b"")
    agent.wait(lambda: "would stop every job" in agent.get("/readyz")[1], "the empty file held")

    # 5. Fixed: ready again; every job kept running through all of it.
    replace(config, with_second.encode())
    agent.wait(lambda: agent.get("/readyz") == (200, "ok\n"), "ready again")
    assert alive(pid)
    ticks = len((d / "ticks").read_text().splitlines())
    agent.wait(lambda: len((d / "ticks").read_text().splitlines()) > ticks, "cron still runs")
    assert agent.metric("opsagent_config_reloads_total", {"result": "applied"}) == 2
    assert agent.metric("opsagent_config_reloads_total", {"result": "rejected"}) == 3
    errors = " ".join(str(r.get("error")) for r in agent.records()
                      if r.get("msg", "").startswith("config rejected"))
    for why in ("not UTF-8", "not a regular file (a FIFO)", "would stop every job"):
        assert why in errors, errors

    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(30) == 0, agent.tail()
    assert not any("Traceback" in line for line in agent.tail(1000).splitlines())
