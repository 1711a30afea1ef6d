"""Pure helpers of bench/common.py (percentiles, summaries, ratios, CPU %, start-delay grouping)."""

from __future__ import annotations

from datetime import datetime

import pytest

from bench import common
from bench.gorun_idle import idle_schedules


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([5.0], 99, 5.0),
        ([1.0, 2.0], 50, 1.5),
        ([3.0, 1.0, 2.0], 50, 2.0),  # unsorted input
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 25, 1.75),  # numpy.percentile's default (linear) gives 1.75
        (list(map(float, range(1, 101))), 99, 99.01),
        (list(map(float, range(1, 101))), 50, 50.5),
    ],
    ids=["one-p50", "one-p99", "two-mid", "unsorted", "p0-min", "p100-max", "p25-interp",
         "p99-of-100", "p50-of-100"],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert common.percentile(values, q) == pytest.approx(expected)


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], -1), ([1.0], 101)],
                         ids=["empty", "q-negative", "q-over-100"])
def test_percentile_rejects(values: list[float], q: float) -> None:
    with pytest.raises(ValueError):
        common.percentile(values, q)


def test_summarize() -> None:
    s = common.summarize([4.0, 1.0, 3.0, 2.0])
    assert s == {"n": 4, "min": 1.0, "p50": 2.5, "p90": 3.7, "p99": 3.97, "max": 4.0, "mean": 2.5}
    assert common.summarize([]) == {"n": 0}


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [(1.0, 4.0, 0.25), (3.0, 3.0, 1.0), (2.0, 0.0, None), (None, 1.0, None), (1.0, None, None)],
    ids=["quarter", "equal", "peer-zero", "ours-missing", "peer-missing"],
)
def test_ratio(ours: float | None, theirs: float | None, expected: float | None) -> None:
    assert common.ratio(ours, theirs) == expected


def test_cpu_percent() -> None:
    assert common.cpu_percent(0.6, 60.0) == pytest.approx(1.0)
    assert common.cpu_percent(0.0, 1.0) == 0.0
    with pytest.raises(ValueError):
        common.cpu_percent(1.0, 0.0)


def test_start_delays_groups_by_nearest_instant() -> None:
    stamps = [100.004, 100.020, 104.999, 105.010, 110.002]
    got = common.start_delays(stamps, period_s=5)
    assert list(got) == [100, 105, 110]
    assert got[100] == pytest.approx([0.004, 0.020])
    # a job started 1 ms before its second is early (-1 ms), not 4.999 s late
    assert got[105] == pytest.approx([-0.001, 0.010])
    assert got[110] == pytest.approx([0.002])


def test_start_delays_with_offset() -> None:
    # instants at 5, 15, 25...: a stamp at 14.9 is 100 ms early for 15, not 9.9 s late for 5
    got = common.start_delays([5.02, 14.9, 15.03], period_s=10, offset_s=5)
    assert got == {5: pytest.approx([0.02]), 15: pytest.approx([-0.1, 0.03])}


def test_start_delays_drops_warmup_and_rejects_bad_period() -> None:
    got = common.start_delays([60.5, 120.25, 180.1], period_s=60, not_before=100)
    assert got == {120: pytest.approx([0.25]), 180: pytest.approx([0.1])}
    with pytest.raises(ValueError):
        common.start_delays([1.0], period_s=0)


@pytest.mark.parametrize(
    ("line", "first", "spawned"),
    [
        ("7 100.500000000 2000000 3000000", 100.5, 100.495),  # 2 ms CPU + 3 ms run-queue wait
        ("7 100.500000000 -1 -1", 100.5, None),  # no /proc/self/schedstat
        ("7 100.500000000", 100.5, None),  # old two-column format
    ],
    ids=["schedstat", "no-schedstat", "two-columns"],
)
def test_parse_stamp(line: str, first: float, spawned: float | None) -> None:
    s = common.parse_stamp(line)
    assert s.tag == "7"
    assert s.first_action == pytest.approx(first)
    assert s.spawned == (None if spawned is None else pytest.approx(spawned))


def test_idle_schedules_are_distinct_and_far_away() -> None:
    now = datetime(2026, 11, 26, 7, 0)
    scheds = idle_schedules(10_000, now)
    assert len(set(scheds)) == 10_000
    months = {s.split()[3] for s in scheds}
    assert months == {"5"}  # six months after November: never fires within the measured minute
    assert all(len(s.split()) == 5 for s in scheds)
