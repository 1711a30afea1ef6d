"""Issue 10, defect 2: while the agent is stopped, app.log gets more lines and is rotated, a new
app.log lives its whole life (created, written, rotated to app.log.2), a compressed archive
appears, and a third app.log is created. With the documented globs (rotated names included,
compressed archives excluded) the restart reads all of it: every line once, none twice."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fixtures.kafka import KafkaBroker
from tests.integration.kafka import forward_oracle as oracle
from tests.integration.kafka.forward_harness import (
    Agent,
    LineWriter,
    values,
    wait_delivered,
    write_config,
)

pytestmark = pytest.mark.integration


def test_files_rotated_while_the_agent_is_down_are_read_once_at_start(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    topic = "fwd-rotated-while-down"
    kafka_broker.create_topic(topic, partitions=1)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = write_config(tmp_path / "agent.toml", state_dir=tmp_path / "state",
                       bootstrap=kafka_broker.bootstrap, topic=topic,
                       include=[f"{logs}/app*.log*"], tail={"exclude": ["*.zst", "*.gz"]})
    agent = Agent(cfg, tmp_path / "agent.log")
    a = LineWriter(logs / "app.log", "a")
    a.write(500)
    agent.start()
    try:
        assert wait_delivered(kafka_broker, topic, {"a": 500}, 60, agent).lost == 0
        assert agent.terminate() == 0, agent.log_tail()

        a.write(300)  # the writer keeps its fd: these land in the file renamed below
        os.rename(logs / "app.log", logs / "app.log.1")
        a.close()
        b = LineWriter(logs / "app.log", "b")
        b.write(400)
        b.close()
        os.rename(logs / "app.log", logs / "app.log.2")
        (logs / "app.log.2.zst").write_bytes(oracle.line("z", 0))  # stands for a compressed copy
        c = LineWriter(logs / "app.log", "c")
        c.write(200)
        c.close()

        agent.start()
        verdict = wait_delivered(kafka_broker, topic, {"a": 800, "b": 400, "c": 200}, 90, agent)
        assert agent.terminate() == 0, agent.log_tail()
    finally:
        agent.stop_quietly()
    print(verdict.summary())
    assert verdict.lost == 0 and verdict.duplicates == 0, verdict.summary()
    assert verdict.order_violations == [], verdict.summary()
    assert not [v for v in values(kafka_broker, topic) if v.startswith(b"z ")]
