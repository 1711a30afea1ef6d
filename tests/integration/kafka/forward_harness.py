"""Helpers of the forwarding fault suite: a config writer, the real `opsagent forward` process
(started, SIGKILLed, restarted), log writers with rotation, and polling until the oracle is met."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.fixtures.services import ROOT
from tests.integration.kafka import forward_oracle as oracle

OPSAGENT = ROOT / ".venv" / "bin" / "opsagent"

# The producer backends (forward.kafka.client) the Kafka suite runs against: conftest.py runs
# every test of a module that writes configs (or makes sinks) once per backend and sets
# `client` for it; OPSAGENT_TEST_KAFKA_CLIENTS="librdkafka" (comma-separated) narrows the set.
# A test's own kafka={"client": ...} wins.
CLIENTS = ("kafka-python", "librdkafka")
client = "kafka-python"


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def toml_table(name: str, values: Mapping[str, Any]) -> str:
    lines = [f"[{name}]"]
    subs = []
    for k, v in values.items():
        if isinstance(v, Mapping):
            subs.append(toml_table(f"{name}.{k}", v))
        else:
            lines.append(f"{k} = {toml_value(v)}")
    return "\n".join(lines) + "\n" + "".join("\n" + s for s in subs)


def write_config(path: Path, *, state_dir: Path, bootstrap: str, topic: str, include: list[str],
                 tail: Mapping[str, Any] | None = None, kafka: Mapping[str, Any] | None = None,
                 forward: Mapping[str, Any] | None = None, name: str = "crit") -> Path:
    """A config with one [[forward]] pipeline tuned for tests: short intervals and timeouts."""
    tail_cfg = {"include": include, "rescan_interval_secs": 0.5,
                "partial_line_timeout_secs": 30.0, "checkpoint_interval_secs": 0.2,
                "rotated_file_idle_secs": 2.0, **(tail or {})}
    kafka_cfg = {"bootstrap_servers": [bootstrap], "topic": topic, "client": client,
                 **(kafka or {})}
    fwd = {"name": name, "drain_timeout_secs": 15.0, **(forward or {})}
    text = (f"state_dir = {toml_value(str(state_dir))}\n\n[node]\nname = \"test-node\"\n\n"
            "[telemetry]\nlog_level = \"info\"\n\n"
            + "[[forward]]\n" + "\n".join(f"{k} = {toml_value(v)}" for k, v in fwd.items())
            + "\n\n" + toml_table("forward.tail", tail_cfg) + "\n"
            + toml_table("forward.kafka", kafka_cfg))
    path.write_text(text)
    return path


class Agent:
    """The real `opsagent forward --config FILE` process; its stderr goes to `log_path`."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "agent already running"
        self.runs += 1
        with open(self.log_path, "ab") as log:
            log.write(f"=== run {self.runs}\n".encode())
            log.flush()
            self.proc = subprocess.Popen([str(OPSAGENT), "forward", "--config", str(self.config)],
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         cwd=ROOT)

    def kill(self) -> None:
        """SIGKILL: no drain, no checkpoint save; in-flight deliveries are lost to the agent."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 40.0) -> int:
        """SIGTERM and wait for the drain; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def stop_quietly(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)


def values(broker: Any, topic: str) -> list[bytes]:
    return [r.value for r in broker.consume_all(topic)]


def wait_delivered(broker: Any, topic: str, expected: Mapping[str, int], timeout: float,
                   agent: Agent | None = None) -> oracle.Verdict:
    """Consume the topic until nothing in `expected` is missing or `timeout`; return the verdict."""
    deadline = time.monotonic() + timeout
    while True:
        verdict = oracle.check(values(broker, topic), dict(expected))
        if verdict.lost == 0 or time.monotonic() > deadline:
            return verdict
        if agent is not None and agent.proc is not None and agent.proc.poll() is not None:
            raise AssertionError(f"agent exited with {agent.proc.returncode}:\n{agent.log_tail()}")
        time.sleep(0.5)


def saved_offsets(state_file: Path) -> list[int]:
    """The read offsets in a pipeline's checkpoint file, sorted ([] while there is none)."""
    from opsagent.state.checkpoints import decode
    try:
        return sorted(cp.offset for cp in decode(state_file.read_bytes()).values())
    except (OSError, ValueError):
        return []


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class LineWriter:
    """Appends oracle lines to one file per fid, unbuffered (one write per line)."""

    def __init__(self, path: Path, fid: str, pad: int = 60) -> None:
        self.path = path
        self.fid = fid
        self.pad = pad
        self.seq = 0
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, n: int = 1) -> None:
        data = b"".join(oracle.line(self.fid, self.seq + i, self.pad) for i in range(n))
        os.write(self.fd, data)
        self.seq += n

    def close(self) -> None:
        os.close(self.fd)


def write_paced(writers: Iterable[LineWriter], lines_per_sec: float, secs: float,
                during: Callable[[float], None] | None = None, batch: int = 10,
                stop: threading.Event | None = None) -> None:
    """Write `batch` lines to each writer in turn at about `lines_per_sec` (total) for `secs`
    or until `stop` is set; `during(elapsed)` is called between batches (fault injection)."""
    ws = list(writers)
    t0 = time.monotonic()
    per_round = batch * len(ws)
    n = 0
    while (elapsed := time.monotonic() - t0) < secs and not (stop and stop.is_set()):
        for w in ws:
            w.write(batch)
        n += per_round
        if during is not None:
            during(elapsed)
        ahead = n / lines_per_sec - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)


class BackgroundWriter:
    """write_paced in a thread until stop(); `expected()` gives the oracle's {fid: count}."""

    def __init__(self, writers: list[LineWriter], lines_per_sec: float) -> None:
        self.writers = writers
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=write_paced, args=(writers, lines_per_sec, 1e9),
            kwargs={"stop": self._stop}, name="line-writer", daemon=True)

    def __enter__(self) -> BackgroundWriter:
        self._thread.start()
        return self

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the line writer did not stop"
        return self.expected()

    def expected(self) -> dict[str, int]:
        return {w.fid: w.seq for w in self.writers}

    def __exit__(self, *exc: object) -> None:
        self.stop()
        for w in self.writers:
            w.close()


def has_open(pid: int, ino: int) -> bool:
    """Whether process `pid` holds a file with inode `ino` open (also once it is deleted)."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return False
    for name in names:
        try:
            if os.stat(os.path.join(fd_dir, name)).st_ino == ino:
                return True
        except OSError:
            continue
    return False
