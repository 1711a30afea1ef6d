"""Kafka is down for several times the producer's delivery timeout while ~15 MB are written:
the agent's memory stays bounded (it reads ahead at most max_read_ahead_bytes per file and
holds at most max_inflight_bytes), and after the broker is back every line is delivered."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.fixtures.kafka import KafkaBroker
from tests.integration.kafka.forward_harness import (
    Agent,
    LineWriter,
    values,
    wait_delivered,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration

DELIVERY_TIMEOUT_MS = 4000
OUTAGE_SECS = 2.5 * DELIVERY_TIMEOUT_MS / 1000
MIB = 1 << 20


def test_outage_longer_than_delivery_timeout(
        kafka_broker_factory: Callable[..., KafkaBroker], tmp_path: Path) -> None:
    broker = kafka_broker_factory(sasl_plain=False)
    topic = "fwd-outage"
    broker.create_topic(topic, partitions=2)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = write_config(
        tmp_path / "agent.toml", state_dir=tmp_path / "state", bootstrap=broker.bootstrap,
        topic=topic, include=[f"{logs}/*.log"],
        tail={"max_read_ahead_bytes": MIB, "read_chunk_bytes": 65536},
        kafka={"request_timeout_ms": 2000, "delivery_timeout_ms": DELIVERY_TIMEOUT_MS,
               "connect_timeout_ms": 2000, "retry_backoff_base_secs": 0.2,
               "retry_backoff_max_secs": 2.0, "max_inflight_bytes": MIB})
    writers = [LineWriter(logs / f"o{i}.log", f"o{i}", pad=500) for i in range(2)]
    agent = Agent(cfg, tmp_path / "agent.log")
    agent.start()
    try:
        for w in writers:
            w.write(100)
        wait_for(lambda: len(values(broker, topic)) >= 200, 60, "delivery before the outage")
        assert agent.proc is not None
        proc = psutil.Process(agent.proc.pid)
        rss_before = proc.memory_info().rss
        broker.kill()
        t0 = time.monotonic()
        rss_peak = rss_before
        while time.monotonic() - t0 < OUTAGE_SECS:  # ~15 MB written while Kafka is down
            for w in writers:
                w.write(300)
            rss_peak = max(rss_peak, proc.memory_info().rss)
            time.sleep(0.2)
        written = sum(w.seq for w in writers) * 515
        broker.start()
        expected = {w.fid: w.seq for w in writers}
        verdict = wait_delivered(broker, topic, expected, timeout=90, agent=agent)
        assert agent.terminate() == 0, agent.log_tail()
    finally:
        agent.stop_quietly()
        for w in writers:
            w.close()
    print(verdict.summary(), f"rss growth during outage {(rss_peak - rss_before) / MIB:.1f} MiB")
    assert verdict.lost == 0, verdict.summary()
    assert verdict.order_violations == [], verdict.summary()
    # Bound: 2 files x 1 MiB read-ahead, 1 MiB in flight, plus per-record overhead and
    # allocator slack; well below the data written during the outage.
    assert rss_peak - rss_before < 10 * MIB, (rss_peak - rss_before) / MIB
    assert written > 12 * MIB
