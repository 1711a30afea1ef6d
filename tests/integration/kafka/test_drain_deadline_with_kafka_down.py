"""SIGTERM while Kafka cannot be reached: the drain gives up at drain_timeout_secs, the agent exits
0 without checkpointing anything undelivered, and a later run against a reachable broker
delivers every line once, the partial last line (which no drain sends) when the file has not grown
for partial_line_timeout_secs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fixtures.kafka import KafkaBroker
from tests.fixtures.services import free_port
from tests.integration.kafka import forward_oracle as oracle
from tests.integration.kafka.forward_harness import (
    Agent,
    LineWriter,
    values,
    wait_delivered,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration

DRAIN_SECS = 3.0
FAST_FAIL = {"request_timeout_ms": 1000, "delivery_timeout_ms": 2000,
             "connect_timeout_ms": 2000, "retry_backoff_base_secs": 0.2,
             "retry_backoff_max_secs": 1.0}


def test_drain_deadline_with_kafka_unreachable_then_delivery_later(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    topic = "fwd-drain-deadline"
    kafka_broker.create_topic(topic, partitions=1)
    logs, state = tmp_path / "logs", tmp_path / "state"
    logs.mkdir()
    w = LineWriter(logs / "app.log", "dd")
    w.write(100)
    with open(logs / "app.log", "ab") as f:
        f.write(b"dd 0000000100 partial")
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    down = write_config(tmp_path / "down.toml", state_dir=state, bootstrap=nowhere, topic=topic,
                        include=[f"{logs}/*.log"], kafka=FAST_FAIL,
                        forward={"drain_timeout_secs": DRAIN_SECS})
    agent = Agent(down, tmp_path / "agent.log")
    agent.start()
    try:
        # Terminate only once the sink holds the 100 complete lines (the outage line, logged
        # when the first connection attempt failed, says so); before that a drain has nothing
        # in flight and ends clean, which is no test.
        wait_for(lambda: any(str(r.get("msg", "")).startswith("kafka unreachable")
                             and r.get("held_records", 0) >= 100
                             for r in agent.log_records()), 60,
                 "the sink holding the lines while Kafka is unreachable")
        t0 = time.monotonic()
        # Without the deadline the drain would wait for Kafka forever: terminate's timeout is
        # the guard against that, no timing check.
        assert agent.terminate(timeout=DRAIN_SECS + 20) == 0, agent.log_tail()
        took = time.monotonic() - t0
        msgs = [r.get("msg", "") for r in agent.log_records()]
        assert any("drain deadline passed" in m for m in msgs), agent.log_tail()

        # The partial last line is never completed: it goes once the file has not grown at
        # its end for partial_line_timeout_secs (a shutdown never sends it; issue 10).
        up = write_config(tmp_path / "up.toml", state_dir=state,
                          bootstrap=kafka_broker.bootstrap, topic=topic,
                          include=[f"{logs}/*.log"], tail={"partial_line_timeout_secs": 1.0})
        agent.config = up
        agent.start()
        verdict = wait_delivered(kafka_broker, topic, {"dd": 100}, 90, agent)
        wait_for(lambda: len(values(kafka_broker, topic)) >= 101, 60, "the partial line")
        assert agent.terminate() == 0, agent.log_tail()
    finally:
        agent.stop_quietly()
        w.close()
    print(verdict.summary(), f"drain took {took:.1f}s")
    got = values(kafka_broker, topic)
    assert verdict.lost == 0 and verdict.duplicates == 0, verdict.summary()
    assert got[-1] == b"dd 0000000100 partial" and len(got) == 101
    assert oracle.check(got, {"dd": 101}).lost == 0
