"""Issue 10, defect 4, as the issue reproduced it with `opsagent run`: a [[forward]] on
critical*.log whose broker is unreachable, and a [[rotate]] policy with rotate_size_bytes=100000,
keep=0 and quota_soft_bytes=65536 in the same agent, over a 405 KB critical.log. Rotation used to
rename, compress and delete the file ~10 ms after start, before the forwarder had read a byte.
Now the forwarder's first scan happens before rotation acts on its answer: the renamed file is
held (neither compressed nor deleted; the quota breach log names the undelivered bytes), and
after a restart with a reachable broker every line arrives, after which rotation frees it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.kafka import KafkaBroker
from tests.fixtures.services import free_port, stop_process
from tests.integration.kafka import forward_oracle as oracle
from tests.integration.kafka.forward_harness import OPSAGENT, wait_delivered

pytestmark = pytest.mark.integration

LINES = 405_000 // len(oracle.line("c", 0))


def agent_config(tmp: Path, bootstrap: str, topic: str) -> Path:
    path = tmp / "agent.toml"
    path.write_text(f"""
state_dir = "{tmp}/state"
drain_deadline_secs = 5.0

[node]
name = "test-node"

[telemetry]
log_level = "info"
http_listen = "127.0.0.1:{free_port()}"

[[rotate]]
name = "pvc"
directories = ["{tmp}/pvc/*/logs"]
include = ["critical*.log"]
rotate_size_bytes = 100000
keep = 0
quota_soft_bytes = 65536
min_interval_secs = 0.1
rescan_interval_secs = 0.5

[[forward]]
name = "crit"
drain_timeout_secs = 2.0

[forward.tail]
include = ["{tmp}/pvc/*/logs/critical*.log"]
rescan_interval_secs = 0.5
checkpoint_interval_secs = 0.2

[forward.kafka]
bootstrap_servers = ["{bootstrap}"]
topic = "{topic}"
""")
    return path


def records(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def wait(cond: Callable[[], bool], what: str, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise AssertionError(f"timed out waiting for {what}; agent log:\n{tail}")
        time.sleep(0.1)


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([str(OPSAGENT), "run", "--config", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=config.parent)


def test_rotation_holds_critical_logs_until_the_forwarder_delivered_them(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    topic = "fwd-rotation-at-start"
    kafka_broker.create_topic(topic, partitions=1)
    logs = tmp_path / "pvc" / "pod-1" / "logs"
    logs.mkdir(parents=True)
    content = b"".join(oracle.line("c", i) for i in range(LINES))
    (logs / "critical.log").write_bytes(content)
    log = tmp_path / "agent.log"

    def contents() -> list[bytes]:  # what the uncompressed names in the log dir hold
        return [p.read_bytes() for p in logs.iterdir() if not p.name.endswith(".zst")]

    def breaches() -> list[dict[str, Any]]:
        return [r for r in records(log) if r.get("msg") == "quota still exceeded after the pass"]

    # Phase 1: nothing listens on the broker's port.
    proc = start(agent_config(tmp_path, f"127.0.0.1:{free_port()}", topic), log)
    try:
        # Two rotation passes after the rename (the second one used to compress and delete),
        # or the data gone: either ends the wait.
        wait(lambda: len(breaches()) >= 2 or content not in contents(),
             "two rotation passes", log)
        assert content in contents(), "rotation destroyed critical.log before it was forwarded"
        assert not (logs / "critical.log").exists() or \
            (logs / "critical.log").stat().st_size < len(content), "rotation did not run"
        assert breaches()[-1]["undelivered_bytes"] >= len(content), breaches()[-1]
        assert not [p for p in logs.iterdir() if p.name.endswith(".zst")]
        proc.terminate()
        assert proc.wait(30) == 0
    finally:
        stop_process(proc)
    assert content in contents()

    # Phase 2: the broker is reachable: every line arrives, then rotation frees the space.
    proc = start(agent_config(tmp_path, kafka_broker.bootstrap, topic), log)
    try:
        verdict = wait_delivered(kafka_broker, topic, {"c": LINES}, 120)
        assert verdict.lost == 0, verdict.summary()
        assert verdict.duplicates == 0, verdict.summary()
        wait(lambda: content not in contents(), "rotation deleting the delivered archive", log)
        proc.terminate()
        assert proc.wait(30) == 0
    finally:
        stop_process(proc)
    assert os.path.exists(tmp_path / "state" / "crit.json")
