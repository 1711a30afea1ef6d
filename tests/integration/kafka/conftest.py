"""Kafka integration tests share the real broker fixtures (tests/fixtures/kafka.py), and run
once per producer backend (forward.kafka.client) when they write agent configs with the harness
or build sinks with make_sink (forward_harness.CLIENTS). `kafka_broker` here is one session
broker per backend: the tests' topic names are fixed, so the two runs of a test must not share
a broker."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.fixtures.kafka import KafkaBroker, kafka_broker_factory, start_kafka_broker  # noqa: F401
from tests.integration.kafka import forward_harness


def _clients() -> list[str]:
    wanted = os.environ.get("OPSAGENT_TEST_KAFKA_CLIENTS", "")
    names = [c.strip() for c in wanted.split(",") if c.strip()] or list(forward_harness.CLIENTS)
    unknown = set(names) - set(forward_harness.CLIENTS)
    if unknown:
        raise pytest.UsageError(f"OPSAGENT_TEST_KAFKA_CLIENTS: unknown {sorted(unknown)}; "
                                f"expected some of {forward_harness.CLIENTS}")
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module
    uses_backend = getattr(module, "write_config", None) is forward_harness.write_config \
        or hasattr(module, "make_sink")
    if not uses_backend:
        return
    if "kafka_client" not in metafunc.fixturenames:
        metafunc.fixturenames.append("kafka_client")
    metafunc.parametrize("kafka_client", _clients())


@pytest.fixture(autouse=True)
def _kafka_backend(request: pytest.FixtureRequest) -> Iterator[None]:
    """Sets forward_harness.client to the backend this test runs against, if parametrized."""
    callspec = getattr(request.node, "callspec", None)
    name = callspec.params.get("kafka_client") if callspec is not None else None
    if name is None:
        yield
        return
    forward_harness.client = str(name)
    try:
        yield
    finally:
        forward_harness.client = "kafka-python"


@pytest.fixture(scope="session")
def _kafka_brokers() -> Iterator[dict[str, KafkaBroker]]:
    brokers: dict[str, KafkaBroker] = {}
    yield brokers
    for b in brokers.values():
        b.stop()


@pytest.fixture
def kafka_broker(request: pytest.FixtureRequest, _kafka_brokers: dict[str, KafkaBroker],
                 tmp_path_factory: pytest.TempPathFactory) -> KafkaBroker:
    """The session broker (SASL and SSL listeners) of this test's backend, started once."""
    callspec = getattr(request.node, "callspec", None)
    client = str(callspec.params.get("kafka_client", "")) if callspec is not None else ""
    broker = _kafka_brokers.get(client)
    if broker is None:
        workdir = tmp_path_factory.mktemp(f"kafka-session-{client or 'any'}")
        broker = _kafka_brokers[client] = start_kafka_broker(workdir, ssl=True)
    return broker
