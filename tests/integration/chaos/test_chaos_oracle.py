"""The chaos suite's own pure parts, without a broker: the oracle fails on each kind of broken
promise (so the chaos test can fail), the plan is a function of the seed with every fault, and
the test runs against every producer backend."""

from __future__ import annotations

import pytest

from tests.integration.chaos.chaos_oracle import DupLimits, duplicate_bound, judge, ranges
from tests.integration.chaos.chaos_plan import KINDS, Step, make_plan, replay_command
from tests.integration.chaos.chaos_writers import LINE_PAD
from tests.integration.chaos.conftest import backends
from tests.integration.kafka import forward_oracle as oracle
from tests.integration.kafka.forward_harness import CLIENTS


def rec(fid: str, seq: int) -> bytes:
    return oracle.line(fid, seq, LINE_PAD)[:-1]


@pytest.mark.parametrize(("values", "allowed", "lost", "allowed_lost", "malformed", "order",
                          "dups"), [
    pytest.param([rec("a", i) for i in range(5)], {}, 0, 0, 0, 0, 0, id="all-delivered"),
    pytest.param([rec("a", i) for i in (0, 1, 2, 3)], {}, 1, 0, 0, 0, 0, id="last-line-lost"),
    pytest.param([rec("a", i) for i in (0, 1, 2)], {"a": 3}, 0, 2, 0, 0, 0,
                 id="loss-past-checkpoint-allowed"),
    pytest.param([rec("a", i) for i in (0, 3, 4)], {"a": 3}, 2, 0, 0, 0, 0,
                 id="loss-before-checkpoint-not-allowed"),
    pytest.param([rec("a", 0), rec("a", 1), rec("a", 2)[:20], b"x" * 30, rec("a", 3),
                  rec("a", 4)], {}, 1, 0, 2, 0, 0, id="line-split-in-two-records"),
    pytest.param([rec("a", 0), rec("a", 2), rec("a", 1), rec("a", 3), rec("a", 4)], {},
                 0, 0, 0, 1, 0, id="out-of-order"),
    pytest.param([rec("a", i) for i in (0, 1, 2, 1, 2, 3, 4)], {}, 0, 0, 0, 0, 2,
                 id="resent-run-is-duplicate-not-disorder"),
])
def test_oracle_verdicts(values: list[bytes], allowed: dict[str, int], lost: int,
                         allowed_lost: int, malformed: int, order: int, dups: int) -> None:
    v = judge({0: values}, {"a": 5}, allowed)
    assert (v.lost, sum(len(x) for x in v.allowed_missing.values()), v.malformed,
            len(v.order), v.duplicates) == (lost, allowed_lost, malformed, order, dups), v.details()


def test_a_copy_on_another_partition_is_no_disorder() -> None:
    # copytruncate: the live file delivered 0-2 before the truncation, the copy 0-4 elsewhere
    v = judge({0: [rec("a", i) for i in range(3)], 1: [rec("a", i) for i in range(5)]},
              {"a": 5}, {})
    assert (v.lost, v.order, v.duplicates) == (0, [], 3)


def test_ranges() -> None:
    assert ranges([9, 1, 2, 3, 5, 10]) == "1-3, 5, 9-10"
    assert ranges([]) == ""


def test_duplicate_bound_adds_each_fault() -> None:
    limits = DupLimits(checkpoint_interval_secs=0.5, poll_timeout_secs=0.2,
                       max_inflight_bytes=8000, value_bytes=64, delivery_timeout_secs=4.0)
    # a record every 10 ms; a kill at 10_000 ms counts those of the last 1.7 s (171)
    ts = list(range(0, 20_000, 10))
    bound, how = duplicate_bound(limits, ts, kills_ms=[10_000], outages_secs=[9.0],
                                 copy_lines=7)
    inflight = 8000 // 80 + 1
    assert bound == 171 + inflight + (2 + 2) * inflight + 7, how


def _kinds(steps: tuple[Step, ...] | list[Step]) -> set[str]:
    out: set[str] = set()
    for s in steps:
        out.add(s.kind)
        out |= _kinds(s.during)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3, 99, 123456])
def test_plan_is_a_function_of_the_seed_and_has_every_fault(seed: int) -> None:
    a = make_plan(seed, 60, writers=4, delivery_timeout_secs=4.0)
    assert a == make_plan(seed, 60, writers=4, delivery_timeout_secs=4.0)
    assert a != make_plan(seed + 1, 60, writers=4, delivery_timeout_secs=4.0)
    assert _kinds(a) == set(KINDS)
    outages = [s for s in a if s.kind == "broker_outage"]
    assert outages and all(s.secs > 4.0 for s in outages)   # longer than delivery_timeout
    assert any(s.kind == "agent_kill" for o in outages for s in o.during)


def test_one_fragment_per_truncation_is_allowed() -> None:
    values = [rec("a", 0), rec("a", 1)[:25], rec("a", 1), rec("a", 2)[:30], rec("a", 2)]
    v = judge({0: values}, {"a": 3}, {}, {"a": 1})
    assert (v.malformed, v.fragments, v.lost) == (1, {"a": 1}, 0), v.details()
    assert judge({0: values}, {"a": 3}, {}, {"b": 2}).malformed == 2


def test_the_chaos_test_runs_once_per_backend_unless_narrowed() -> None:
    assert backends("") == list(CLIENTS) == ["kafka-python", "librdkafka"]
    assert backends(" librdkafka ,") == ["librdkafka"]
    with pytest.raises(pytest.UsageError, match="unknown.*'kafka'"):
        backends("librdkafka,kafka")


def test_the_replay_command_names_the_backend() -> None:
    assert replay_command(412337, "kafka-python") == (
        "OPSAGENT_TEST_KAFKA_CLIENTS=kafka-python pytest tests/integration/chaos "
        "--chaos-seed 412337")
    assert replay_command(7, None) == "pytest tests/integration/chaos --chaos-seed 7"
