"""Creating the Kafka sink's producers without blocking its caller.

Creating a producer can block for connect_timeout_ms (kafka-python bootstraps in its constructor
and cannot be interrupted), so a forwarder stuck there ignored SIGTERM and overran the drain
deadline (issue 10, defect 5). `ThreadConnector` makes each attempt on a thread of its own: the
sink polls for the outcome and stops waiting whenever it is told to stop; a producer that
arrives after the sink was closed is closed by that thread. `InlineConnector` makes the attempt
in the caller (unit tests with fake producers and a fake clock).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from opsagent.sinks.kafka.config import KafkaSinkConfig
from opsagent.sinks.kafka.producer import Producer, ProducerFactory

log = logging.getLogger("opsagent.kafka")

# The outcome of one attempt: the producer, or what creating it raised.
Outcome = tuple[Producer | None, Exception | None]


class Connector(Protocol):
    def begin(self, cfg: KafkaSinkConfig) -> None:
        """Start one attempt to create a producer (ignored while one is running)."""
        ...

    def take(self) -> Outcome | None:
        """The outcome of the finished attempt (once), or None while none has finished."""
        ...

    @property
    def busy(self) -> bool:
        """An attempt is running or its outcome has not been taken."""
        ...

    def abandon(self) -> None:
        """Stop waiting: an attempt still running closes its producer when it gets one."""
        ...


class InlineConnector:
    """Each attempt runs in the caller's thread, inside begin()."""

    def __init__(self, factory: ProducerFactory) -> None:
        self._factory = factory
        self._outcome: Outcome | None = None

    def begin(self, cfg: KafkaSinkConfig) -> None:
        if self._outcome is not None:
            return
        try:
            self._outcome = (self._factory(cfg), None)
        except Exception as e:  # sorted by the sink (classify)
            self._outcome = (None, e)

    def take(self) -> Outcome | None:
        out, self._outcome = self._outcome, None
        return out

    @property
    def busy(self) -> bool:
        return self._outcome is not None

    def abandon(self) -> None:
        out, self._outcome = self._outcome, None
        if out is not None and out[0] is not None:
            out[0].close(0)


class ThreadConnector:
    """Each attempt runs on its own daemon thread; `wake()` is called when it finishes."""

    def __init__(self, name: str, factory: ProducerFactory, wake: Callable[[], None]) -> None:
        self._name = name
        self._factory = factory
        self._wake = wake
        self._lock = threading.Lock()
        self._running = False
        self._outcome: Outcome | None = None
        self._abandoned = False

    def begin(self, cfg: KafkaSinkConfig) -> None:
        with self._lock:
            if self._running or self._outcome is not None or self._abandoned:
                return
            self._running = True
        threading.Thread(target=self._attempt, args=(cfg,), name=f"kafka-connect-{self._name}",
                         daemon=True).start()

    def _attempt(self, cfg: KafkaSinkConfig) -> None:
        producer: Producer | None = None
        error: Exception | None = None
        try:
            producer = self._factory(cfg)
        except Exception as e:  # sorted by the sink (classify)
            error = e
        with self._lock:
            self._running = False
            late = self._abandoned
            if not late:
                self._outcome = (producer, error)
        if late:
            if producer is not None:
                try:
                    producer.close(0)
                except Exception as e:  # the sink is gone; nothing else to do with it
                    log.warning("closing a producer created after the sink closed failed",
                                extra={"component": "kafka", "pipeline": self._name,
                                       "error": str(e)})
            return
        self._wake()

    def take(self) -> Outcome | None:
        with self._lock:
            out, self._outcome = self._outcome, None
            return out

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._running or self._outcome is not None

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            out, self._outcome = self._outcome, None
        if out is not None and out[0] is not None:
            out[0].close(0)
