"""The agent side of a chaos run: the generated `opsagent run` config ([[forward]] and [[rotate]]
with quotas over the same pod log directories), the agent process, the topic reader, and the
checkpoint offsets a starting agent would use."""

from __future__ import annotations

import dataclasses
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opsagent.state.checkpoints import decode
from tests.fixtures.services import ROOT
from tests.integration.chaos.chaos_writers import LINE_PAD
from tests.integration.kafka import forward_oracle as oracle
from tests.integration.kafka.forward_harness import OPSAGENT, Agent, toml_table, toml_value

PIPELINE = "crit"
PODS = ("pod-a", "pod-b")


@dataclasses.dataclass(frozen=True)
class Settings:
    """The agent's settings for the run (small, so that every cap is reached) and the load."""

    client: str = "librdkafka"           # forward.kafka.client: the producer backend
    writers: int = 4
    lines_per_sec: float = 60.0          # per writer
    partial_prob: float = 0.08           # per batch of 5 lines: the last one in two pieces
    gap_max_secs: float = 1.0            # pause inside such a line (< partial_line_timeout)
    partial_line_timeout_secs: float = 5.0
    rescan_interval_secs: float = 0.5
    checkpoint_interval_secs: float = 0.5
    poll_timeout_secs: float = 0.2
    read_chunk_bytes: int = 8192
    max_read_ahead_bytes: int = 32768
    max_inflight_bytes: int = 131072
    delivery_timeout_ms: int = 4000
    request_timeout_ms: int = 2000
    rotate_size_bytes: int = 40000
    quota_soft_bytes: int = 100000
    keep: int = 3
    drain_deadline_secs: float = 10.0
    drain_timeout_secs: float = 6.0     # the forwarder's share of the deadline


def config_text(root: Path, state: Path, http_port: int, bootstrap: str, topic: str,
                s: Settings) -> str:
    logs = root / "logs"
    rotate = {"name": "pods", "directories": [f"{logs}/pod-*"], "include": ["*.log"],
              "rotate_size_bytes": s.rotate_size_bytes, "keep": s.keep, "compress": True,
              "compress_level": 1, "quota_scope": "directory",
              "quota_soft_bytes": s.quota_soft_bytes, "quota_hard_bytes": 0,
              "min_interval_secs": 0.2, "rescan_interval_secs": 2.0}
    forward = {"name": PIPELINE, "drain_timeout_secs": s.drain_timeout_secs,
               "poll_timeout_secs": s.poll_timeout_secs}
    # As config/opsagent.example.toml recommends: the globs match the rotated names too (a file
    # created and renamed away while the agent is down is found at start), minus compressed
    # archives (the same lines again).
    tail = {"include": [f"{logs}/pod-*/*.log*"], "exclude": ["*.zst", "*.gz"],
            "rescan_interval_secs": s.rescan_interval_secs,
            "partial_line_timeout_secs": s.partial_line_timeout_secs,
            "checkpoint_interval_secs": s.checkpoint_interval_secs,
            "read_chunk_bytes": s.read_chunk_bytes,
            "max_read_ahead_bytes": s.max_read_ahead_bytes,
            "rotated_file_idle_secs": 3.0}
    kafka = {"bootstrap_servers": [bootstrap], "topic": topic, "client": s.client,
             "linger_ms": 5,
             "max_inflight_bytes": s.max_inflight_bytes,
             "delivery_timeout_ms": s.delivery_timeout_ms,
             "request_timeout_ms": s.request_timeout_ms, "connect_timeout_ms": 2000,
             "retry_backoff_base_secs": 0.2, "retry_backoff_max_secs": 1.0}
    return (f"state_dir = {toml_value(str(state))}\n"
            f"drain_deadline_secs = {toml_value(s.drain_deadline_secs)}\n\n"
            "[node]\nname = \"chaos-node\"\n\n"
            "[telemetry]\nlog_level = \"info\"\n"
            f"http_listen = \"127.0.0.1:{http_port}\"\n\n"
            "[[rotate]]\n" + "\n".join(f"{k} = {toml_value(v)}" for k, v in rotate.items())
            + "\n\n[[forward]]\n"
            + "\n".join(f"{k} = {toml_value(v)}" for k, v in forward.items()) + "\n\n"
            + toml_table("forward.tail", tail) + "\n" + toml_table("forward.kafka", kafka))


class RunAgent(Agent):
    """The real `opsagent run --config FILE` (the forward harness' Agent runs `forward`)."""

    def __init__(self, config: Path, log_path: Path, http_port: int) -> None:
        super().__init__(config, log_path)
        self.http_port = http_port
        self.started_at = 0.0
        self.ready_at: float | None = None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "agent already running"
        self.runs += 1
        with open(self.log_path, "ab") as log:
            log.write(f"=== run {self.runs}\n".encode())
            log.flush()
            self.proc = subprocess.Popen([str(OPSAGENT), "run", "--config", str(self.config)],
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         cwd=ROOT)
        self.started_at = time.monotonic()
        self.ready_at = None

    def ready_since(self) -> float | None:
        """When /readyz was first seen answering 200 in this run (None: not yet)."""
        if self.ready_at is None and self.alive():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz",
                                            timeout=1.0) as r:
                    if r.status == 200:
                        self.ready_at = time.monotonic()
            except (urllib.error.URLError, OSError):
                pass
        return self.ready_at

    def metrics(self, prefixes: tuple[str, ...]) -> list[str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics",
                                        timeout=5.0) as r:
                text = r.read().decode()
        except (urllib.error.URLError, OSError) as e:
            return [f"(metrics unavailable: {e})"]
        return [ln for ln in text.splitlines()
                if ln.startswith(prefixes) and not ln.rstrip().endswith(" 0.0")]


class TopicReader:
    """Reads the topic incrementally from the beginning: values and CreateTime per partition,
    and where the first records that are not a whole generated line came from (`odd`)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      group_id=None, auto_offset_reset="earliest",
                                      client_id="chaos-oracle", max_poll_records=5000)
        deadline = time.monotonic() + 60
        parts = self.consumer.partitions_for_topic(topic)
        while parts is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {topic!r} not found")
            time.sleep(0.2)
            parts = self.consumer.partitions_for_topic(topic)
        self.tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(self.tps)
        self.consumer.seek_to_beginning(*self.tps)
        self.values: dict[int, list[bytes]] = {tp.partition: [] for tp in self.tps}
        self.timestamps: list[int] = []
        self.odd: dict[bytes, str] = {}   # value -> partition, offset, key, headers

    def _note_odd(self, r: Any) -> None:
        parsed = oracle.parse(r.value)
        if parsed is not None and r.value == oracle.line(*parsed, LINE_PAD)[:-1]:
            return
        if len(self.odd) < 50:
            headers = ", ".join(f"{k}={(v or b'').decode(errors='replace')}"
                                for k, v in r.headers)
            self.odd.setdefault(r.value, f"partition {r.partition} offset {r.offset} key "
                                         f"{r.key!r} CreateTime {r.timestamp}; {headers}")

    def catch_up(self, timeout: float = 60.0) -> None:
        end = self.consumer.end_offsets(self.tps)
        deadline = time.monotonic() + timeout
        while any(self.consumer.position(tp) < end[tp] for tp in self.tps):
            if time.monotonic() > deadline:
                raise AssertionError(f"reading the topic incomplete after {timeout}s")
            for tp, records in self.consumer.poll(timeout_ms=500).items():
                for r in records:
                    self.values[tp.partition].append(r.value)
                    self.timestamps.append(r.timestamp)
                    self._note_odd(r)

    def close(self) -> None:
        self.consumer.close()


def checkpoint_offsets(state_file: Path) -> dict[tuple[int, int], int]:
    """(dev, ino) -> smallest saved offset among the entries of that inode, from the current
    generation or, if it is unreadable, the previous one (what a starting agent would use)."""
    for path in (state_file, state_file.with_name(state_file.name + ".1")):
        try:
            entries = decode(path.read_bytes())
        except (OSError, ValueError):
            continue
        out: dict[tuple[int, int], int] = {}
        for cp in entries.values():
            key = (cp.dev, cp.ino)
            out[key] = min(out.get(key, cp.offset), cp.offset)
        return out
    return {}


def wait_until(pred: Callable[[], bool], timeout: float, interval: float, *,
               progress: Callable[[], int], stall_secs: float) -> bool:
    """Poll `pred` until it holds (True), `timeout` passes, or `progress()` stays the same for
    `stall_secs` (False: waiting longer would not help)."""
    deadline = time.monotonic() + timeout
    last, since = progress(), time.monotonic()
    while not pred():
        now = time.monotonic()
        if (p := progress()) != last:
            last, since = p, now
        if now > deadline or now - since > stall_secs:
            return False
        time.sleep(interval)
    return True
