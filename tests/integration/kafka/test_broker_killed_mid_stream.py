"""The broker is SIGKILLed and restarted several times while three files are written: nothing is
lost, each file's lines arrive in order, and the re-sends duplicate at most the in-flight window
per failure."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.kafka import KafkaBroker
from tests.integration.kafka.forward_harness import (
    Agent,
    BackgroundWriter,
    LineWriter,
    wait_delivered,
    write_config,
)

pytestmark = pytest.mark.integration

KILLS = 3
INFLIGHT = 262_144
# Fail fast and retry fast: a dead broker is noticed within seconds.
KAFKA = {"request_timeout_ms": 3000, "delivery_timeout_ms": 6000, "connect_timeout_ms": 3000,
         "retry_backoff_base_secs": 0.2, "retry_backoff_max_secs": 2.0,
         "max_inflight_bytes": INFLIGHT}


def test_broker_sigkilled_and_restarted_mid_stream_loses_nothing(
        kafka_broker_factory: Callable[..., KafkaBroker], tmp_path: Path) -> None:
    broker = kafka_broker_factory(sasl_plain=False)
    topic = "fwd-broker-kill"
    broker.create_topic(topic, partitions=3)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = write_config(tmp_path / "agent.toml", state_dir=tmp_path / "state",
                       bootstrap=broker.bootstrap, topic=topic, include=[f"{logs}/*.log"],
                       kafka=KAFKA)
    writers = [LineWriter(logs / f"f{i}.log", f"f{i}") for i in range(3)]
    agent = Agent(cfg, tmp_path / "agent.log")
    rng = random.Random(7)
    agent.start()
    try:
        with BackgroundWriter(writers, 1500) as bg:
            for _ in range(KILLS):
                time.sleep(rng.uniform(1.5, 3.0))
                broker.kill()
                time.sleep(rng.uniform(0.5, 2.0))
                broker.start()
            time.sleep(2.0)
            expected = bg.stop()
        verdict = wait_delivered(broker, topic, expected, timeout=90, agent=agent)
        assert agent.terminate() == 0, agent.log_tail()
    finally:
        agent.stop_quietly()
    print(verdict.summary())
    assert verdict.lost == 0, verdict.summary()
    assert verdict.order_violations == [], verdict.summary()
    line_bytes = len(b"f0 0000000000 ") + 60
    window = INFLIGHT // line_bytes  # records the sink holds unacknowledged, at most
    assert verdict.duplicates <= KILLS * window, verdict.summary()
