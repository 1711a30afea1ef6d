"""The seam between the Kafka sink and a Kafka client library: the small `Producer` interface
the sink (and its tests' fakes) use. `factory.create_producer` builds the one chosen by
`forward.kafka.client` (kafka_python.py or librdkafka.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from opsagent.errors import FatalError
from opsagent.sinks.kafka.config import KafkaSinkConfig


class OnDone(Protocol):
    """Called once per record from the client's thread: kafka-python calls it with the record
    metadata or the exception; librdkafka with (error or None, message). records.Completion."""

    def __call__(self, result: Any, msg: Any = ..., /) -> None: ...


class Producer(Protocol):
    def send(self, topic: str, *, key: bytes, value: bytes,
             headers: list[tuple[str, bytes]], on_done: OnDone) -> None:
        """Queue one record; `on_done` reports its outcome. May raise (record too large,
        metadata timeout, authorization): then `on_done` is never called."""
        ...

    def abort(self) -> None:
        """Stop sending now; every incomplete record fails soon. Callable from a callback."""
        ...

    def close(self, timeout: float) -> None:
        """Release the producer, waiting up to `timeout` for in-flight requests."""
        ...

    def poll_error(self) -> BaseException | None:
        """An error about no record in particular (authentication, a fatal producer state),
        once; None when there is none."""
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
