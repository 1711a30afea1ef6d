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
    Series,
    config_toml,
    le_label,
    motan_line,
    opsagent_argv,
    within_bound,
    write_log,
)

pytestmark = pytest.mark.integration

NAME = f"profile_{PIPELINE}_"


def replay_send(tmp_path: Path, exporter: StatsdExporter, log: Path | None = None,
                max_datagram_bytes: int = 1432) -> str:
    """Replay (and send) the known log, or `log`; returns what replay printed."""
    log = log or write_log(tmp_path / "motan-access.log")
    cfg = tmp_path / "profile.toml"
    cfg.write_text(config_toml(str(log), statsd_port=exporter.udp_port,
                               statsd_max_datagram_bytes=max_datagram_bytes))
    start = int(time.time()) // 10 * 10
    out = subprocess.run(
        [*opsagent_argv(), "profile", "replay", "--config", str(cfg), "--send",
         "--start-time", str(start), str(log)],
        capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_replay_prints_what_it_sends(tmp_path: Path, statsd_exporter: StatsdExporter) -> None:
    printed = replay_send(tmp_path, statsd_exporter)
    for s in SERIES:
        assert f"{NAME}requests#interface={s.interface},method={s.method}:{s.count}|c" \
            in printed.splitlines()


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


def test_many_series_packed_into_small_datagrams_all_arrive(
        tmp_path: Path, statsd_exporter: StatsdExporter) -> None:
    # 60 label sets x ~13 metric lines in datagrams of at most 512 bytes: >60 datagrams, each
    # of which the exporter must parse whole (a line cut at a datagram edge would be lost).
    series = [Series(f"com.acme.Svc{i:02d}", "call", tuple(range(1, i + 2)), errors=0)
              for i in range(60)]
    log = tmp_path / "many.log"
    log.write_text("".join(motan_line(s, ms, n) + "\n" for s in series
                           for n, ms in enumerate(s.latencies_ms)))
    printed = replay_send(tmp_path, statsd_exporter, log, max_datagram_bytes=512)
    lines = [x for x in printed.split("\n") if x and not x.startswith("#")]
    assert sum(len(x) + 1 for x in lines) > 60 * 512  # so it took more than 60 datagrams
    for s in series:
        labels = {"interface": s.interface, "method": s.method}
        statsd_exporter.wait_for_value(NAME + "requests", labels, s.count)
        statsd_exporter.wait_for_value(NAME + "latency_sum", labels, s.latency_sum)
        statsd_exporter.wait_for_value(NAME + "latency_max", labels, max(s.latencies_ms))
