"""SIGTERM while the last line of a file has no newline yet: the drain does not send the held
partial line (a shutdown is no reason to cut a line; issue 10, defect 3), the checkpoint stays
before it, and after a restart the whole line arrives as one record and nothing repeats."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.fixtures.kafka import KafkaBroker
from tests.integration.kafka import forward_oracle as oracle
from tests.integration.kafka.forward_harness import Agent, values, wait_for, write_config

pytestmark = pytest.mark.integration


def test_partial_line_is_held_at_shutdown_and_sent_whole_after_restart(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    topic = "fwd-partial"
    kafka_broker.create_topic(topic, partitions=1)
    logs = tmp_path / "logs"
    logs.mkdir()
    # partial_line_timeout (30 s in write_config) is far away: only the drain can send it.
    cfg = write_config(tmp_path / "agent.toml", state_dir=tmp_path / "state",
                       bootstrap=kafka_broker.bootstrap, topic=topic,
                       include=[f"{logs}/*.log"])
    app = logs / "app.log"
    full = b"".join(oracle.line("p", i) for i in range(10))
    app.write_bytes(full + b"p 0000000010 partial-no-newline")
    agent = Agent(cfg, tmp_path / "agent.log")
    agent.start()
    try:
        wait_for(lambda: len(values(kafka_broker, topic)) >= 10, 60, "the 10 full lines")
        assert len(values(kafka_broker, topic)) == 10, "the partial line went out before stop"
        assert agent.terminate() == 0, agent.log_tail()
        assert len(values(kafka_broker, topic)) == 10, "the shutdown sent the partial line"

        with open(app, "ab") as f:
            f.write(b"-rest\n" + b"".join(oracle.line("p", i) for i in range(11, 15)))
        agent.start()
        wait_for(lambda: len(values(kafka_broker, topic)) >= 15, 60, "the rest after restart")
        assert agent.terminate() == 0, agent.log_tail()
    finally:
        agent.stop_quietly()
    got = values(kafka_broker, topic)
    assert got[10:] == [b"p 0000000010 partial-no-newline-rest",
                        *(oracle.line("p", i).rstrip(b"\n") for i in range(11, 15))]
    verdict = oracle.check(got, {"p": 15})
    assert verdict.lost == 0 and verdict.duplicates == 0, verdict.summary()
    assert os.path.exists(tmp_path / "state" / "crit.json")
    # Metadata headers and key as consumers see them.
    recs = kafka_broker.consume_all(topic)
    h = dict(recs[3].headers)
    assert h["node"] == b"test-node"
    assert h["file"] == str(app).encode()
    assert h["offset"] == str(3 * len(oracle.line("p", 0))).encode()
    assert abs(int(h["timestamp"]) / 1000 - time.time()) < 600
    st = app.stat()
    assert {r.key for r in recs} == {recs[0].key}  # one file: one key, one partition
    assert recs[0].key.decode().startswith(f"{st.st_dev}:{st.st_ino}:")
