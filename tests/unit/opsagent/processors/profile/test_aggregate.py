from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from opsagent.processors.profile.aggregate import parse_time
from opsagent.processors.profile.config import percentile_name
from opsagent.processors.profile.processor import ProfileProcessor
from opsagent.samples import Interval, Sample

from .helpers import profile

BASE = {"format": "delimited", "fields": ["iface", "ok", "ms"], "latency_field": "ms",
        "error_field": "ok", "error_values": ["false"], "labels": ["iface"],
        "percentiles": [50.0, 100.0], "interval_secs": 10}


def proc(**keys: Any) -> ProfileProcessor:
    return ProfileProcessor(profile(**{**BASE, **keys}))


def by_name(iv: Interval) -> dict[tuple[str, tuple[tuple[str, str], ...]], Sample]:
    return {(s.name, s.labels): s for s in iv.samples}


def test_statistics_of_one_interval() -> None:
    p = proc()
    p.process("f", [b"a|true|10", b"a|false|20", b"a|true|30", b"a|true|40", b"b|true|5"], 1003.0)
    [iv] = p.flush()
    assert iv.start == 1000
    s = by_name(iv)
    a = (("iface", "a"),)
    assert s[("requests", a)] == Sample("requests", a, 4, "c")
    assert s[("errors", a)].value == 1
    assert s[("latency_sum", a)].value == 100.0
    assert s[("rate", a)] == Sample("rate", a, 0.4, "g")
    assert s[("latency_min", a)].value == 10.0
    assert s[("latency_max", a)].value == 40.0
    assert s[("latency_mean", a)].value == 25.0
    assert s[("latency_p50", a)].value == pytest.approx(20.0, rel=0.01)
    assert s[("latency_p100", a)].value == 40.0
    assert s[("requests", (("iface", "b"),))].value == 1
    # Series in sorted label order, statistics in a fixed order.
    assert [x.name for x in iv.samples[:9]] == [
        "requests", "errors", "latency_sum", "rate", "latency_min", "latency_max",
        "latency_mean", "latency_p50", "latency_p100"]


def test_units_are_converted_to_report_unit() -> None:
    p = proc(latency_unit="s", report_unit="ms")
    p.process("f", [b"a|true|0.25"], 0.0)
    [iv] = p.flush()
    assert by_name(iv)[("latency_max", (("iface", "a"),))].value == 250.0


def test_counters_are_deltas_per_interval() -> None:
    p = proc()
    p.process("f", [b"a|true|1"] * 3, 5.0)
    first = p.flush(before=10.0)
    p.process("f", [b"a|true|1"] * 2, 15.0)
    second = p.flush(before=20.0)
    assert [iv.start for iv in first + second] == [0, 10]
    assert by_name(first[0])[("requests", (("iface", "a"),))].value == 3
    assert by_name(second[0])[("requests", (("iface", "a"),))].value == 2


def test_open_interval_is_not_flushed_early_and_late_lines_move_forward() -> None:
    p = proc()
    p.process("f", [b"a|true|1"], 5.0)
    assert p.flush(before=9.0) == []
    [iv] = p.flush(before=10.0)
    p.process("f", [b"a|true|1"], 7.0)  # belongs to [0, 10) which was already sent
    assert p.agg.late == 1
    [iv2] = p.flush()
    assert iv2.start == 10


def test_event_time_from_line_and_bad_values() -> None:
    p = proc(fields=["t", "iface", "ok", "ms"], time_field="t", time_format="unix")
    p.process("f", [b"1005|a|true|1", b"1015|a|true|1", b"1016|a|true|2", b"x|a|true|1",
                    b"1017|a|true|-1", b"1017|a|true|nan", b"1017|a|true|", b"bad"], 2000.0)
    ivs = p.flush()
    # Lines are placed by their own time; unparsed ones by the time they were read.
    assert [iv.start for iv in ivs] == [1000, 1010, 2000]
    assert by_name(ivs[1])[("requests", (("iface", "a"),))].value == 2
    unparsed = {s.labels: s.value for s in ivs[-1].samples if s.name == "unparsed"}
    assert unparsed == {(("reason", "bad_time"),): 1, (("reason", "bad_value"),): 3,
                        (("reason", "no_match"),): 1}


def test_unparsed_are_sent_in_the_interval_they_were_read() -> None:
    p = proc()
    p.process("f", [b"junk"], 43.0)
    assert p.flush(before=49.0) == []
    [iv] = p.flush(before=50.0)
    assert iv == Interval(40, [Sample("unparsed", (("reason", "no_match"),), 1, "c")])
    p.count_unparsed("truncated", 2, 45.0)  # interval 40 was sent: counted in the next one
    assert p.flush() == [Interval(50, [Sample("unparsed", (("reason", "truncated"),), 2, "c")])]


def test_cardinality_cap_overflows_into_other() -> None:
    p = proc(max_series=2)
    p.process("f", [b"a|true|1", b"b|true|1", b"c|true|1", b"d|false|1", b"a|true|1"], 0.0)
    [iv] = p.flush()
    s = by_name(iv)
    assert s[("requests", (("iface", "a"),))].value == 2
    assert s[("requests", (("iface", "other"),))].value == 2
    assert s[("errors", (("iface", "other"),))].value == 1
    assert s[("series_overflow", ())].value == 2
    assert {lbl for _n, lbl in s} >= {(("iface", "a"),), (("iface", "b"),)}


def test_buckets_are_cumulative_with_inf() -> None:
    p = proc(buckets=[1.0, 10.0])
    p.process("f", [b"a|true|0.5", b"a|true|1", b"a|true|5", b"a|true|50"], 0.0)
    [iv] = p.flush()
    got = [(s.labels[-1][1], s.value) for s in iv.samples if s.name == "latency_bucket"]
    assert got == [("1", 2), ("10", 3), ("+Inf", 4)]


def test_error_min_for_numeric_status() -> None:
    p = proc(fields=["iface", "status", "ms"], error_field="status", error_values=[],
             error_min=500)
    p.process("f", [b"a|200|1", b"a|500|1", b"a|503|1", b"a|-|1"], 0.0)
    [iv] = p.flush()
    assert by_name(iv)[("errors", (("iface", "a"),))].value == 2


def test_record_labels_from_file_fields() -> None:
    p = ProfileProcessor(profile(**{**BASE, "labels": ["pod", "iface"], "tail": {
        "include": ["/logs/*.log"], "path_pattern": "/logs/(?P<pod>[^.]+)"}}))
    p.process("f1", [b"a|true|1"], 0.0, {"pod": "p1"})
    p.process("f2", [b"a|true|1"], 0.0, {"pod": "p2"})
    [iv] = p.flush()
    reqs = {s.labels: s.value for s in iv.samples if s.name == "requests"}
    assert reqs == {(("pod", "p1"), ("iface", "a")): 1, (("pod", "p2"), ("iface", "a")): 1}


def test_self_metrics() -> None:
    import prometheus_client

    reg = prometheus_client.CollectorRegistry()
    p = ProfileProcessor(profile(**{**BASE, "max_series": 1}), reg)
    p.process("f", [b"a|true|1", b"b|true|1", b"junk"], 0.0)
    p.count_unparsed("truncated", 2, 0.0)

    def v(name: str, **labels: str) -> float | None:
        return reg.get_sample_value(name, {"pipeline": "t", **labels})

    assert v("opsagent_profile_lines_total") == 2
    assert v("opsagent_profile_unparsed_lines_total", reason="no_match") == 1
    assert v("opsagent_profile_unparsed_lines_total", reason="truncated") == 2
    assert v("opsagent_profile_overflow_lines_total") == 1


def test_same_lines_in_any_batching_give_the_same_output() -> None:
    lines = [f"i{i % 7}|{'false' if i % 13 == 0 else 'true'}|{(i * 37) % 500}".encode()
             for i in range(2000)]
    one = proc()
    one.process("f", lines, 0.0)
    many = proc()
    for i in range(0, len(lines), 37):
        many.process("f", lines[i:i + 37], 0.0)
    assert one.flush() == many.flush()


@pytest.mark.parametrize("raw,fmt,want", [
    (b"1700000000.5", "unix", 1700000000.5),
    (b"1700000000500", "unix_ms", 1700000000.5),
    (b"2024-01-01T00:00:10Z", "iso8601", 1704067210.0),
    (b"2024-01-01T08:00:10+08:00", "iso8601", 1704067210.0),
    (b"2024-01-01 00:00:10.250", "%Y-%m-%d %H:%M:%S.%f", 1704067210.25),
    (b"01/Jan/2024:01:00:10 +0100", "%d/%b/%Y:%H:%M:%S %z", 1704067210.0),
    (b"nope", "unix", None),
    (None, "unix", None),
    (b"inf", "unix", None),
], ids=["unix", "unix_ms", "iso-z", "iso-offset", "strptime-naive-utc", "nginx", "bad",
        "missing", "inf"])
def test_parse_time(raw: bytes | None, fmt: str, want: float | None) -> None:
    assert parse_time(raw, fmt) == want


def test_counter_of_reasons_is_pending_until_flush() -> None:
    p = proc()
    p.process("f", [b"junk", b"a|true|1"], 0.0)
    assert p.agg.unparsed_by == {0: Counter({"no_match": 1})}
    p.flush()
    assert not p.agg.unparsed_by


def test_far_future_event_times_are_counted_at_read_time_when_limited() -> None:
    import prometheus_client

    reg = prometheus_client.CollectorRegistry()
    p = ProfileProcessor(profile(**{**BASE, "fields": ["t", "iface", "ok", "ms"],
                                    "time_field": "t", "time_format": "unix"}),
                         reg, max_future_secs=10)
    p.process("f", [b"1015|a|true|1", b"99999999|a|true|1"], 1008.0)
    assert [iv.start for iv in p.flush()] == [1000, 1010]
    assert p.agg.future == 1
    assert reg.get_sample_value("opsagent_profile_future_lines_total", {"pipeline": "t"}) == 1
    replay = proc(fields=["t", "iface", "ok", "ms"], time_field="t", time_format="unix")
    replay.process("f", [b"99999999|a|true|1"], 0.0)  # replay: no limit
    assert [iv.start for iv in replay.flush()] == [99999990]


@pytest.mark.parametrize("seed", range(5))
def test_statistics_match_an_exact_computation(seed: int) -> None:
    import math
    import random

    rng = random.Random(seed)
    rows = [(f"i{rng.randrange(6)}", rng.random() < 0.1, round(rng.lognormvariate(2, 1.5), 3))
            for _ in range(3000)]
    lines = [f"{i}|{'false' if e else 'true'}|{v}".encode() for i, e, v in rows]
    pcts = [50.0, 90.0, 99.0, 99.9]
    p = proc(percentiles=pcts, buckets=[5.0, 50.0])
    for k in range(0, len(lines), 500):
        p.process("f", lines[k:k + 500], 0.0)
    [iv] = p.flush()
    s = by_name(iv)
    for iface in sorted({r[0] for r in rows}):
        vals = sorted(v for i, _e, v in rows if i == iface)
        lab = (("iface", iface),)
        n = len(vals)
        assert s[("requests", lab)].value == n
        assert s[("errors", lab)].value == sum(1 for i, e, _v in rows if i == iface and e)
        assert s[("latency_sum", lab)].value == pytest.approx(sum(vals), abs=1e-5)
        assert s[("latency_min", lab)].value == round(vals[0], 6)
        assert s[("latency_max", lab)].value == round(vals[-1], 6)
        for pct in pcts:
            want = vals[max(0, math.ceil(pct / 100 * n - 1e-9) - 1)]
            got = s[("latency_" + percentile_name(pct), lab)].value
            assert abs(got - want) <= 0.01 * want + 1e-6, (iface, pct, got, want)
        cum = [sum(1 for v in vals if v <= b) for b in (5.0, 50.0)] + [n]
        got_b = [x.value for x in iv.samples
                 if x.name == "latency_bucket" and x.labels[0] == lab[0]]
        assert got_b == cum


def test_millisecond_times_give_per_interval_statistics_of_exactly_their_lines() -> None:
    """Grouping by interval instead of timestamp changes nothing in the statistics: every
    interval holds exactly the lines whose own time falls in it, whatever the batching."""
    import random

    rng = random.Random(3)
    rows = sorted((1704067195.0 + rng.randrange(30_000) / 1000, f"i{rng.randrange(3)}",
                   rng.random() < 0.1, rng.randrange(1, 300)) for _ in range(3000))

    def fmt(t: float) -> str:
        from datetime import UTC, datetime

        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]

    lines = [f"{fmt(t)}|{i}|{'false' if e else 'true'}|{ms}".encode() for t, i, e, ms in rows]
    keys = {**BASE, "fields": ["t", "iface", "ok", "ms"], "time_field": "t",
            "time_format": "%Y-%m-%d %H:%M:%S.%f", "percentiles": [50.0, 99.0, 100.0]}
    one = ProfileProcessor(profile(**keys))
    one.process("f", lines, 0.0)
    many = ProfileProcessor(profile(**keys))
    for k in range(0, len(lines), 97):
        many.process("f", lines[k:k + 97], 0.0)
    ivs = one.flush()
    assert ivs == many.flush()
    assert [iv.start for iv in ivs] == [1704067190, 1704067200, 1704067210, 1704067220]
    for iv in ivs:
        s = by_name(iv)
        for iface in ("i0", "i1", "i2"):
            mine = [r for r in rows if iv.start <= r[0] < iv.start + 10 and r[1] == iface]
            lab = (("iface", iface),)
            assert s[("requests", lab)].value == len(mine)
            assert s[("errors", lab)].value == sum(1 for r in mine if r[2])
            assert s[("latency_max", lab)].value == max(r[3] for r in mine)
            assert s[("latency_sum", lab)].value == sum(r[3] for r in mine)


@pytest.mark.parametrize("keys,labels", [
    ({"fields": ["t", "ms"], "labels": [], "error_field": "", "error_values": []}, ()),
    ({"fields": ["t", "iface", "ok", "ms"], "labels": ["pod", "iface"],
      "tail": {"include": ["/logs/*.log"], "path_pattern": "/logs/(?P<pod>[^.]+)"}},
     (("pod", "p1"), ("iface", "a"))),
], ids=["time-and-latency-only", "label-from-the-file"])
def test_timed_keys_with_one_other_column_or_a_record_label(keys: dict[str, Any],
                                                            labels: tuple[Any, ...]) -> None:
    p = ProfileProcessor(profile(**{**BASE, "time_field": "t", "time_format": "unix", **keys}))
    lines = [b"1005.5|a|true|1", b"1009.999|a|true|3", b"1010|a|true|2"] if len(
        keys["fields"]) == 4 else [b"1005.5|1", b"1009.999|3", b"1010|2"]
    p.process("f", lines, 0.0, {"pod": "p1"})
    first, second = p.flush()
    assert (first.start, second.start) == (1000, 1010)
    assert by_name(first)[("requests", labels)].value == 2
    assert by_name(first)[("latency_sum", labels)].value == 4
    assert by_name(second)[("requests", labels)].value == 1
