"""The default ProducerFactory: builds the backend `forward.kafka.client` names. Apart from
producer.py so the backends can import the Producer seam without a cycle."""

from __future__ import annotations

from opsagent.sinks.kafka.config import KafkaSinkConfig
from opsagent.sinks.kafka.producer import Producer


def create_producer(cfg: KafkaSinkConfig) -> Producer:
    """The default ProducerFactory: the backend `cfg.client` names (imported only then)."""
    if cfg.client == "librdkafka":
        from opsagent.sinks.kafka.librdkafka import create_librdkafka_producer

        return create_librdkafka_producer(cfg)
    from opsagent.sinks.kafka.kafka_python import create_kafka_python_producer

    return create_kafka_python_producer(cfg)
