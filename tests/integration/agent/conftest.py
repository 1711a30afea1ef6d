"""The agent end-to-end tests use the real Kafka broker and statsd_exporter fixtures."""

from tests.fixtures.kafka import kafka_broker, kafka_broker_factory
from tests.fixtures.statsd_exporter import statsd_exporter

__all__ = ["kafka_broker", "kafka_broker_factory", "statsd_exporter"]
