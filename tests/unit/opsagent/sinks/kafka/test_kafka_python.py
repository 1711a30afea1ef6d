"""The default producer factory's checks, with an injected stand-in for kafka.KafkaProducer:
idempotence verified, a bootstrap failure's logged cause reported."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kafka import errors as ke

from opsagent.errors import FatalError
from opsagent.sinks.kafka.config import KafkaSinkConfig
from opsagent.sinks.kafka.kafka_python import create_kafka_python_producer

CFG = KafkaSinkConfig(bootstrap_servers=("127.0.0.1:9092",), topic="logs")


class FakeKafkaProducer:
    """Accepts KafkaProducer's keyword arguments; `logged` is what the bootstrap logs before
    `raises` is raised (kafka-python logs the real cause, then raises a timeout)."""

    logged: list[BaseException] = []
    raises: BaseException | None = None
    idempotent = True

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        for exc in self.logged:
            logging.getLogger("kafka.net.manager").warning(
                "Bootstrap connection to %s failed: %s (backoff %.2f secs)", "b-0", exc, 0.1)
        if self.raises is not None:
            raise self.raises
        self.config = {"enable_idempotence": self.idempotent and kwargs["enable_idempotence"]}
        self.closed = False

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def fake(**attrs: Any) -> type[FakeKafkaProducer]:
    return type("P", (FakeKafkaProducer,), attrs)


def test_creates_an_idempotent_acks_all_producer() -> None:
    producer = create_kafka_python_producer(CFG, fake())
    inner = producer._p  # type: ignore[attr-defined]
    assert inner.kwargs["acks"] == "all" and inner.kwargs["enable_idempotence"] is True


def test_a_producer_that_is_not_idempotent_is_refused_loudly() -> None:
    with pytest.raises(FatalError, match="not idempotent"):
        create_kafka_python_producer(CFG, fake(idempotent=False))


def test_authentication_failure_hidden_behind_a_bootstrap_timeout_is_fatal() -> None:
    cls = fake(logged=[ke.KafkaConnectionError("socket disconnected"),
                       ke.SaslAuthenticationFailedError("Invalid username or password")],
               raises=ke.KafkaTimeoutError("Unable to bootstrap"))
    with pytest.raises(FatalError, match="authentication.*Invalid username or password"):
        create_kafka_python_producer(CFG, cls)


def test_other_bootstrap_failures_stay_retriable_and_say_why() -> None:
    cls = fake(logged=[ke.KafkaConnectionError("Handshake failed: CERTIFICATE_VERIFY_FAILED")],
               raises=ke.KafkaTimeoutError("Unable to bootstrap"))
    with pytest.raises(ke.KafkaTimeoutError, match="last error: .*CERTIFICATE_VERIFY_FAILED"):
        create_kafka_python_producer(CFG, cls)


def test_fatal_construction_errors_become_fatal_error() -> None:
    cls = fake(raises=ke.KafkaConfigurationError("enable_idempotence=True is incompatible"))
    with pytest.raises(FatalError, match="incompatible"):
        create_kafka_python_producer(CFG, cls)


def test_cause_is_found_even_when_kafka_logging_is_turned_down(
        caplog: pytest.LogCaptureFixture) -> None:
    lg = logging.getLogger("kafka.net.manager")
    cls = fake(logged=[ke.SaslAuthenticationFailedError("Invalid username or password")],
               raises=ke.KafkaTimeoutError("Unable to bootstrap"))
    with caplog.at_level(logging.DEBUG, logger="kafka.net.manager"):
        lg.setLevel(logging.ERROR)  # the operator's choice: no kafka warnings
        with pytest.raises(FatalError, match="authentication"):
            create_kafka_python_producer(CFG, cls)
        assert lg.level == logging.ERROR  # restored
    assert not [r for r in caplog.records if r.name == "kafka.net.manager"]
