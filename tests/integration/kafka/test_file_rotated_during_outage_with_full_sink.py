"""Issue 10, defect 1, as reproduced there: the broker is killed, three files get far more lines
than the sink's max_inflight_bytes, then app-0.log is rotated, a new app-0.log gets lines and is
renamed out of the globs too before the broker returns. The forwarder must still discover the
new file while its sink is full (it used to stop rescanning: those lines were never read), and
every line arrives once the broker is back."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.kafka import KafkaBroker
from tests.integration.kafka.forward_harness import (
    Agent,
    LineWriter,
    has_open,
    wait_delivered,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration

INFLIGHT = 65_536
KAFKA = {"request_timeout_ms": 3000, "delivery_timeout_ms": 6000, "connect_timeout_ms": 3000,
         "retry_backoff_base_secs": 0.2, "retry_backoff_max_secs": 2.0,
         "max_inflight_bytes": INFLIGHT}


def test_file_created_and_rotated_away_while_the_sink_is_full_is_delivered(
        kafka_broker_factory: Callable[..., KafkaBroker], tmp_path: Path) -> None:
    broker = kafka_broker_factory(sasl_plain=False)
    topic = "fwd-rotated-in-outage"
    broker.create_topic(topic, partitions=3)
    logs = tmp_path / "logs"
    logs.mkdir()
    # Globs on the live names only: what is tested is discovery while running.
    cfg = write_config(tmp_path / "agent.toml", state_dir=tmp_path / "state",
                       bootstrap=broker.bootstrap, topic=topic, include=[f"{logs}/app-*.log"],
                       kafka=KAFKA)
    writers = [LineWriter(logs / f"app-{i}.log", f"f{i}") for i in range(3)]
    agent = Agent(cfg, tmp_path / "agent.log")
    agent.start()
    try:
        for w in writers:
            w.write(100)
        assert wait_delivered(broker, topic, {w.fid: w.seq for w in writers}, 60,
                              agent).lost == 0
        broker.kill()
        for w in writers:  # ~20 x max_inflight_bytes per file: the sink fills up
            w.write(20_000)
        for w in writers:
            w.close()
        time.sleep(2.0)  # let the agent read up to its read-ahead and fill the sink
        os.rename(logs / "app-0.log", logs / "app-0.log.1")
        new = LineWriter(logs / "app-0.log", "n")
        new.write(1_000)
        new.close()
        ino = (logs / "app-0.log").stat().st_ino
        assert agent.proc is not None
        pid = agent.proc.pid
        wait_for(lambda: has_open(pid, ino), 30, "the agent to open the new app-0.log")
        os.rename(logs / "app-0.log", logs / "app-0.log.2")  # out of the globs, unread
        broker.start()
        expected = {**{w.fid: w.seq for w in writers}, "n": 1_000}
        verdict = wait_delivered(broker, topic, expected, timeout=180, agent=agent)
        assert agent.terminate() == 0, agent.log_tail()
    finally:
        agent.stop_quietly()
    print(verdict.summary())
    assert verdict.lost == 0, verdict.summary()
    assert verdict.order_violations == [], verdict.summary()
