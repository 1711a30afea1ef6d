"""Pure helpers of bench/profile_throughput.py: exact ranks, the generated log's statistics, the
mtail program's regex, and the parsers of both tools' outputs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import profile_throughput as pt


@pytest.mark.parametrize(
    ("p", "n", "rank"),
    [(50.0, 4, 1), (50.0, 5, 2), (99.0, 3, 2), (99.0, 100, 98), (99.9, 1000, 998),
     (7.0, 100, 6), (0.0, 10, 0), (100.0, 10, 9)],
    ids=lambda v: str(v),
)
def test_nearest_rank(p: float, n: int, rank: int) -> None:
    assert pt.nearest_rank(p, n) == rank


def test_generated_log_matches_its_exact_statistics(tmp_path: Path) -> None:
    log = tmp_path / "g.log"
    exact = pt.generate(log, 5000, 6, 0.05, seed=3)
    per: dict[str, list[int]] = {}
    errors: dict[str, int] = {}
    regex = re.compile(pt.mtail_regex())
    for line in log.read_text().splitlines():
        m = regex.match(line)
        assert m is not None, line
        key = f"{m['interface']}|{m['method']}"
        per.setdefault(key, []).append(int(m["whole_time"]))
        errors[key] = errors.get(key, 0) + (m["success"] == "false")
    assert sum(len(v) for v in per.values()) == exact["lines"] == 5000
    assert set(per) == set(exact["series"])
    for key, xs in per.items():
        s = exact["series"][key]
        xs.sort()
        assert (s["count"], s["errors"], s["sum"]) == (len(xs), errors[key], sum(xs))
        for p in pt.PERCENTILES:
            assert s["percentiles"][str(p)] == xs[pt.nearest_rank(p, len(xs))]
    assert 0 < exact["errors"] < 5000 * 0.1


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    cum = {10.0: 50, 20.0: 100, float("inf"): 100}
    assert pt.histogram_quantile(0.5, cum, 100) == 10.0
    assert pt.histogram_quantile(0.75, cum, 100) == 15.0
    assert pt.histogram_quantile(0.25, cum, 100) == 5.0
    assert pt.histogram_quantile(1.0, {10.0: 50, float("inf"): 100}, 100) == 10.0


def test_parse_mtail_makes_buckets_cumulative() -> None:
    out = {
        "profile_requests_total": [{"LabelValues": [
            {"Labels": ["I", "m"], "Value": {"Value": 3}}]}],
        "profile_errors_total": [{"LabelValues": [
            {"Labels": ["I", "m"], "Value": {"Value": 1}}]}],
        "profile_latency_ms": [{"LabelValues": [{"Labels": ["I", "m"], "Value": {
            "Count": 3, "Buckets": {"1": 1, "2": 0, "+Inf": 2}}}]}],
    }
    s = pt.parse_mtail(out)["I|m"]
    assert (s["count"], s["errors"], s["hist_count"]) == (3, 1, 3)
    assert s["buckets"] == {1.0: 1, 2.0: 1, float("inf"): 3}


def test_parse_statsd_sums_counters_and_keeps_gauges() -> None:
    text = "\n".join([
        "# pipeline=bench sink=statsd interval=0",
        "profile_bench_requests#interface=a.B,method=get:3|c",
        "profile_bench_requests#interface=a.B,method=get:2|c",
        "profile_bench_latency_p99#interface=a.B,method=get:12.5|g",
        "profile_bench_unparsed#reason=no_match:1|c",
        "profile_other_requests#interface=x,method=y:9|c",
    ])
    assert pt.parse_statsd(text) == {"a.B|get": {"requests": 5.0, "latency_p99": 12.5}}
    assert pt.ours_estimates(pt.parse_statsd(text)) == {"a.B|get": {99.0: 12.5}}
