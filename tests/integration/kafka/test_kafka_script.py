"""scripts/kafka formats storage with any valid cluster id, including one that starts with '-'
(kafka-storage read `-t -abc...` as an option: 1 in 64 random ids failed to format)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.kafka import KafkaBroker, start_kafka_broker

pytestmark = pytest.mark.integration

LEADING_DASH_ID = "-4umMG5MUXy-lpwk_c4-oA"  # 16 bytes in Kafka's Uuid text form


def test_cluster_id_starting_with_a_dash_formats_and_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_CLUSTER_ID", LEADING_DASH_ID)
    broker: KafkaBroker = start_kafka_broker(tmp_path / "kafka", sasl_plain=False)
    try:
        meta = (tmp_path / "kafka" / "data" / "meta.properties").read_text()
        assert f"cluster.id={LEADING_DASH_ID}\n" in meta
        assert broker.running
    finally:
        broker.kill()
