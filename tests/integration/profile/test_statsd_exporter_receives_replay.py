"""`opsagent profile replay --send` pushes a known log's statistics over UDP into a real
statsd_exporter, whose /metrics then shows every series with the values the log implies:
counters (requests, errors, latency_sum, le buckets, unparsed lines) exactly, min/max exactly,
and the percentiles within the sketch's relative-error bound of the exact rank values."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures.statsd_exporter import StatsdExporter
from tests.integration.profile.known_log import (
    BAD_LINES,
    BUCKETS,
    ORDER,
    PIPELINE,
    SERIES,
    USER,
    config_toml,
    le_label,
    opsagent_argv,
    within_bound,
    write_log,
)

pytestmark = pytest.mark.integration

NAME = f"profile_{PIPELINE}_"


def replay_send(tmp_path: Path, exporter: StatsdExporter) -> None:
    log = write_log(tmp_path / "motan-access.log")
    cfg = tmp_path / "profile.toml"
    cfg.write_text(config_toml(str(log), statsd_port=exporter.udp_port))
    start = int(time.time()) // 10 * 10
    out = subprocess.run(
        [*opsagent_argv(), "profile", "replay", "--config", str(cfg), "--send",
         "--start-time", str(start), str(log)],
        capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    # The replay also prints what it sent: the requests line of each series must be there.
    for s in SERIES:
        assert f"{NAME}requests#interface={s.interface},method={s.method}:{s.count}|c" \
            in out.stdout


def test_counters_arrive_exactly(tmp_path: Path, statsd_exporter: StatsdExporter) -> None:
    replay_send(tmp_path, statsd_exporter)
    for s in SERIES:
        labels = {"interface": s.interface, "method": s.method}
        statsd_exporter.wait_for_value(NAME + "requests", labels, s.count)
        statsd_exporter.wait_for_value(NAME + "errors", labels, s.errors)
        statsd_exporter.wait_for_value(NAME + "latency_sum", labels, s.latency_sum)
        for le in BUCKETS:
            statsd_exporter.wait_for_value(NAME + "latency_bucket",
                                           {**labels, "le": le_label(le)},
                                           s.cumulative_bucket(le))
        statsd_exporter.wait_for_value(NAME + "latency_bucket", {**labels, "le": "+Inf"},
                                       s.count)
    unparsed = statsd_exporter.wait_for_series(NAME + "unparsed")
    assert sum(x.value for x in unparsed) == len(BAD_LINES)


def test_gauges_arrive_within_the_sketch_bound(tmp_path: Path,
                                               statsd_exporter: StatsdExporter) -> None:
    replay_send(tmp_path, statsd_exporter)
    labels = {"interface": USER.interface, "method": USER.method}
    statsd_exporter.wait_for_value(NAME + "requests", labels, USER.count)  # all has arrived
    assert statsd_exporter.value(NAME + "latency_min", labels) == 1.0
    assert statsd_exporter.value(NAME + "latency_max", labels) == 1000.0
    assert statsd_exporter.value(NAME + "latency_mean", labels) == pytest.approx(500.5)
    for p, suffix in ((50.0, "p50"), (90.0, "p90"), (99.0, "p99"), (99.9, "p999")):
        got = statsd_exporter.value(NAME + "latency_" + suffix, labels)
        exact = USER.exact_percentile(p)
        assert got is not None and within_bound(got, exact), (suffix, got, exact)
    order = {"interface": ORDER.interface, "method": ORDER.method}
    statsd_exporter.wait_for_value(NAME + "requests", order, ORDER.count)
    got = statsd_exporter.value(NAME + "latency_p99", order)
    assert got is not None and within_bound(got, 25.0)
