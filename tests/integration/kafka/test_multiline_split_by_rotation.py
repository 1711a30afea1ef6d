"""Java stack traces joined into one record each, with one trace split by a rename rotation
(head and first frame in the rotated file, the other frames in the new file): each file's part
becomes its own record, every physical line arrives exactly once, order per file holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fixtures.kafka import KafkaBroker
from tests.integration.kafka import forward_oracle as oracle
from tests.integration.kafka.forward_harness import (
    Agent,
    has_open,
    values,
    wait_delivered,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration


def append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def test_multiline_event_split_by_rotation(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    topic = "fwd-multiline-rotation"
    kafka_broker.create_topic(topic, partitions=1)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = write_config(tmp_path / "agent.toml", state_dir=tmp_path / "state",
                       bootstrap=kafka_broker.bootstrap, topic=topic, include=[f"{logs}/*.log"],
                       tail={"multiline": {"mode": "continuation", "flush_timeout_secs": 0.5},
                             "rotated_file_idle_secs": 1.0})
    app = logs / "app.log"
    # Order is promised per file: the rotated file's events are "old" 0..10 (10 split), the
    # new file's "new" 0..8 after the split trace's tail.
    old = [oracle.multiline_event("old", seq, frames=3) for seq in range(11)]
    new = [oracle.multiline_event("new", seq, frames=3) for seq in range(9)]
    written: list[bytes] = []
    agent = Agent(cfg, tmp_path / "agent.log")
    agent.start()
    try:
        for ev in old[:10]:
            append(app, ev)
        split = old[10].splitlines(keepends=True)
        append(app, b"".join(split[:2]))  # head + first frame
        assert agent.proc is not None
        pid, ino = agent.proc.pid, app.stat().st_ino
        wait_for(lambda: has_open(pid, ino), 60, "agent opened app.log")
        wait_for(lambda: len(values(kafka_broker, topic)) >= 10, 60, "the first ten events")
        app.rename(logs / "app.log.1")
        append(app, b"".join(split[2:]))  # the rest of the trace lands in the new file
        for ev in new:
            append(app, ev)
        written = [ln for ev in old + new for ln in ev.splitlines()]
        verdict = wait_delivered(kafka_broker, topic, {"old": 11, "new": 9}, 90, agent)
        assert agent.terminate() == 0, agent.log_tail()
    finally:
        agent.stop_quietly()
    got = values(kafka_broker, topic)
    print(verdict.summary(), len(got))
    assert verdict.lost == 0 and verdict.duplicates == 0, verdict.summary()
    assert verdict.order_violations == [], verdict.summary()
    assert verdict.unparsable == 1  # the split trace's tail: frames without a head
    # Whole events are one record each, byte for byte, in order per file.
    for events in (old[:10], new):
        whole = [ev.rstrip(b"\n") for ev in events]
        assert [v for v in got if v in whole] == whole
    # The split one: the rotated file's part, then the new file's part, as two records.
    assert b"".join(split[:2]).rstrip(b"\n") in got
    assert b"".join(split[2:]).rstrip(b"\n") in got
    # And every physical line exactly once.
    assert sorted(ln for v in got for ln in v.split(b"\n")) == sorted(written)
