"""The seam between the Kafka sink and a Kafka client library: the small `Producer` interface
the sink (and its tests' fakes) use, and `create_producer`, which builds the one chosen by
`forward.kafka.client` (kafka_python.py or librdkafka.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from opsagent.errors import FatalError
from opsagent.sinks.kafka.config import KafkaSinkConfig


class Future(Protocol):
    """What the sink needs of a send's result (kafka-python's FutureRecordMetadata)."""

    def add_callback(self, fn: Callable[[Any], Any]) -> Any: ...
    def add_errback(self, fn: Callable[[BaseException], Any]) -> Any: ...


class Producer(Protocol):
    def send(self, topic: str, *, key: bytes, value: bytes,
             headers: list[tuple[str, bytes]]) -> Future:
        """Queue one record; may raise (record too large, metadata timeout, authorization)."""
        ...

    def abort(self) -> None:
        """Stop sending now; every incomplete future fails soon. Callable from a callback."""
        ...

    def close(self, timeout: float) -> None:
        """Release the producer, waiting up to `timeout` for in-flight requests."""
        ...


ProducerFactory = Callable[[KafkaSinkConfig], Producer]


def read_password(cfg: KafkaSinkConfig) -> str:
    if not cfg.sasl_password_file:
        return cfg.sasl_password
    try:
        with open(cfg.sasl_password_file, encoding="utf-8") as f:
            return f.read().rstrip("\r\n")
    except OSError as e:
        raise FatalError(f"kafka: cannot read sasl_password_file {cfg.sasl_password_file}: "
                         f"{e.strerror}") from e



def create_producer(cfg: KafkaSinkConfig) -> Producer:
    """The default ProducerFactory: the backend `cfg.client` names."""
    from opsagent.sinks.kafka.kafka_python import create_kafka_python_producer

    return create_kafka_python_producer(cfg)
