"""The chaos suite's options and fixtures.

  --chaos-seed N      replay the fault timeline of seed N (default: a new seed per run, printed)
  --chaos-minutes M   length of the fault phase in minutes (default: the short CI variant)

Options of a conftest below the rootdir are only known when pytest is pointed at this directory
or a file in it (`pytest tests/integration/chaos --chaos-seed 7`). For a run of the whole suite
(`scripts/test`) the environment variables OPSAGENT_CHAOS_SEED and OPSAGENT_CHAOS_MINUTES do the
same; an option wins over the variable.

The chaos test runs once per producer backend (`forward.kafka.client`, the `kafka_client`
parameter: "kafka-python" and "librdkafka"), each run with a broker of its own
(kafka_broker_factory) and, unless a seed is given, a seed of its own. As in the Kafka suite
(tests/integration/kafka/conftest.py), OPSAGENT_TEST_KAFKA_CLIENTS="librdkafka" (comma-separated)
narrows the set; `-k librdkafka` picks one run too.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.fixtures.kafka import kafka_broker, kafka_broker_factory
from tests.integration.chaos.chaos_plan import replay_command
from tests.integration.kafka.forward_harness import CLIENTS

__all__ = ["chaos_secs", "chaos_seed", "kafka_broker", "kafka_broker_factory"]

SHORT_SECS = 90.0   # the fault phase of the CI variant; the whole test takes 2-3 minutes


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "chaos suite (tests/integration/chaos)")
    group.addoption("--chaos-seed", type=int, default=None, metavar="N",
                    help="seed of the fault timeline (default: new per run, printed)")
    group.addoption("--chaos-minutes", type=float, default=None, metavar="M",
                    help="minutes of faults (default: the short variant, 1.5 minutes)")


def backends(wanted: str) -> list[str]:
    """The producer backends to run against: OPSAGENT_TEST_KAFKA_CLIENTS's value (names
    separated by commas; empty: all of forward_harness.CLIENTS)."""
    names = [c.strip() for c in wanted.split(",") if c.strip()] or list(CLIENTS)
    unknown = sorted(set(names) - set(CLIENTS))
    if unknown:
        raise pytest.UsageError(f"OPSAGENT_TEST_KAFKA_CLIENTS: unknown {unknown}; "
                                f"expected some of {CLIENTS}")
    return list(dict.fromkeys(names))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kafka_client" in metafunc.fixturenames:
        metafunc.parametrize("kafka_client",
                             backends(os.environ.get("OPSAGENT_TEST_KAFKA_CLIENTS", "")))


@pytest.fixture
def chaos_seed(request: pytest.FixtureRequest) -> int:
    seed = request.config.getoption("chaos_seed", default=None)
    if seed is None and os.environ.get("OPSAGENT_CHAOS_SEED"):
        seed = int(os.environ["OPSAGENT_CHAOS_SEED"])
    if seed is None:
        seed = random.SystemRandom().randrange(1, 1_000_000)
    callspec = getattr(request.node, "callspec", None)
    client = callspec.params.get("kafka_client") if callspec is not None else None
    client = None if client is None else str(client)
    # Shown at once whatever pytest captures, and again in every failure message.
    backend = "" if client is None else f", backend {client}"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"chaos seed {seed}{backend} (replay: "
                            f"{replay_command(int(seed), client)})")
    print(f"chaos seed {seed}{backend}")
    return int(seed)


@pytest.fixture
def chaos_secs(request: pytest.FixtureRequest) -> float:
    minutes = request.config.getoption("chaos_minutes", default=None)
    if minutes is None and os.environ.get("OPSAGENT_CHAOS_MINUTES"):
        minutes = float(os.environ["OPSAGENT_CHAOS_MINUTES"])
    return SHORT_SECS if minutes is None else float(minutes) * 60.0
