"""Kafka integration tests share the real broker fixtures (tests/fixtures/kafka.py)."""

from tests.fixtures.kafka import kafka_broker, kafka_broker_factory  # noqa: F401
