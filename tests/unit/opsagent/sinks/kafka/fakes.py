"""Injected fakes for the Kafka sink's unit tests: a producer whose futures the test resolves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kafka.errors import IllegalStateError

from opsagent.sinks.kafka.config import KafkaSinkConfig


class FakeFuture:
    def __init__(self) -> None:
        self._cbs: list[Callable[[Any], Any]] = []
        self._ebs: list[Callable[[BaseException], Any]] = []
        self.outcome: tuple[bool, Any] | None = None

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def add_callback(self, fn: Callable[[Any], Any]) -> FakeFuture:
        if self.outcome is None:
            self._cbs.append(fn)
        elif self.outcome[0]:
            fn(self.outcome[1])
        return self

    def add_errback(self, fn: Callable[[BaseException], Any]) -> FakeFuture:
        if self.outcome is None:
            self._ebs.append(fn)
        elif not self.outcome[0]:
            fn(self.outcome[1])
        return self

    def succeed(self) -> None:
        assert self.outcome is None, "future already completed"
        self.outcome = (True, "metadata")
        for fn in self._cbs:
            fn("metadata")

    def fail(self, exc: BaseException) -> None:
        assert self.outcome is None, "future already completed"
        self.outcome = (False, exc)
        for fn in self._ebs:
            fn(exc)


class Sent:
    def __init__(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]],
                 future: FakeFuture) -> None:
        self.topic, self.key, self.value, self.headers, self.future = (
            topic, key, value, headers, future)


class FakeProducer:
    """Records sends; `raise_on_send[value] = exc` makes send() raise for that value. abort()
    fails every incomplete future with IllegalStateError, as kafka-python's force close does."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.raise_on_send: dict[bytes, BaseException] = {}
        self.aborted = False
        self.fail_on_abort = True  # False: in-flight futures stay open (may succeed late)
        self.closed: float | None = None
        self.error: BaseException | None = None  # what poll_error() reports next

    def send(self, topic: str, *, key: bytes, value: bytes,
             headers: list[tuple[str, bytes]], on_done: Callable[..., None]) -> None:
        if self.aborted or self.closed is not None:
            raise AssertionError("send on an aborted or closed producer")
        if value in self.raise_on_send:
            raise self.raise_on_send[value]
        fut = FakeFuture()
        fut.add_callback(on_done)
        fut.add_errback(on_done)
        self.sent.append(Sent(topic, key, value, headers, fut))

    def poll_error(self) -> BaseException | None:
        err, self.error = self.error, None
        return err

    def abort(self) -> None:
        self.aborted = True
        if not self.fail_on_abort:
            return
        for s in self.sent:
            if not s.future.done:
                s.future.fail(IllegalStateError("Producer is closed forcefully."))

    def close(self, timeout: float) -> None:
        self.closed = timeout

    def values(self) -> list[bytes]:
        return [s.value for s in self.sent]

    def by_value(self, value: bytes) -> FakeFuture:
        matches = [s.future for s in self.sent if s.value == value]
        assert matches, f"{value!r} was not sent"
        return matches[-1]


class FakeFactory:
    """ProducerFactory: returns new FakeProducers, or raises the queued exceptions first."""

    def __init__(self) -> None:
        self.producers: list[FakeProducer] = []
        self.failures: list[BaseException] = []
        self.configs: list[KafkaSinkConfig] = []

    def __call__(self, cfg: KafkaSinkConfig) -> FakeProducer:
        self.configs.append(cfg)
        if self.failures:
            raise self.failures.pop(0)
        p = FakeProducer()
        self.producers.append(p)
        return p

    @property
    def current(self) -> FakeProducer:
        return self.producers[-1]
