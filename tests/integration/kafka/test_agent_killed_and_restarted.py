"""The agent is SIGKILLed at random points while three files are written, and restarted, several
times: nothing is lost, each file's lines arrive in order, and the duplicates (what was sent but
not yet checkpointed at each kill) stay within the bound of docs/delivery.md."""

from __future__ import annotations

import random
import time
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

KILLS = 5
RATE = 2000  # lines/s over all files
CHECKPOINT_SECS = 0.2
READ_AHEAD = 65536


def test_agent_sigkilled_at_random_points_loses_nothing(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    topic = "fwd-agent-kill"
    kafka_broker.create_topic(topic, partitions=3)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = write_config(tmp_path / "agent.toml", state_dir=tmp_path / "state",
                       bootstrap=kafka_broker.bootstrap, topic=topic, include=[f"{logs}/*.log"],
                       tail={"checkpoint_interval_secs": CHECKPOINT_SECS,
                             "read_chunk_bytes": 16384, "max_read_ahead_bytes": READ_AHEAD})
    writers = [LineWriter(logs / f"f{i}.log", f"f{i}") for i in range(3)]
    agent = Agent(cfg, tmp_path / "agent.log")
    rng = random.Random(20261126)
    agent.start()
    try:
        with BackgroundWriter(writers, RATE) as bg:
            for _ in range(KILLS):
                time.sleep(rng.uniform(0.8, 3.0))  # startup included: kills land anywhere
                agent.kill()
                time.sleep(rng.uniform(0.0, 0.5))
                agent.start()
            time.sleep(1.0)
            expected = bg.stop()
        verdict = wait_delivered(kafka_broker, topic, expected, timeout=60, agent=agent)
        assert agent.terminate() == 0, agent.log_tail()
    finally:
        agent.stop_quietly()
    print(verdict.summary())
    assert verdict.lost == 0, verdict.summary()
    assert verdict.order_violations == [], verdict.summary()
    assert verdict.unparsable == 0
    # Per kill, per file: what was read but not acknowledged (<= max_read_ahead_bytes) plus what
    # was acknowledged since the last checkpoint save (<= rate x (interval + one loop)).
    line_bytes = len(b"f0 0000000000 ") + 60 + 1
    per_kill = 3 * (READ_AHEAD // line_bytes + 1) + int(RATE * (CHECKPOINT_SECS + 0.5))
    assert verdict.duplicates <= KILLS * per_kill, verdict.summary()
