"""The broker fixture itself: a fresh broker survives SIGKILL and restarts on the same port with
its data (what the fault-injection tests rely on)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kafka import KafkaProducer

from tests.fixtures.kafka import KafkaBroker

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    try:
        for v in values:
            producer.send(topic, v).get(30)
    finally:
        producer.close(10)


def test_killed_broker_restarts_on_same_port_with_its_data(
        kafka_broker_factory: Callable[..., KafkaBroker]) -> None:
    broker = kafka_broker_factory(sasl_plain=False)
    broker.create_topic("restart", partitions=2)
    _produce(broker.bootstrap, "restart", [b"a", b"b"])
    port, pid = broker.port, broker.pid
    broker.kill()
    assert not broker.running
    broker.start()
    assert broker.port == port and broker.pid != pid
    _produce(broker.bootstrap, "restart", [b"c"])
    assert sorted(r.value for r in broker.consume_all("restart")) == [b"a", b"b", b"c"]
