"""`opsagent profile replay --send` with a Graphite sink puts a known log's statistics into a
real carbon-cache (UDP listener on; TCP plaintext as the option) and they read back from the
whisper files at the interval's timestamp: counters and min/max exactly, percentiles within the
sketch's relative-error bound."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures.carbon import Carbon
from tests.fixtures.statsd_exporter import wait_until
from tests.integration.profile.known_log import (
    BAD_LINES,
    BUCKETS,
    ORDER,
    PIPELINE,
    USER,
    config_toml,
    le_label,
    opsagent_argv,
    within_bound,
    write_log,
)

pytestmark = pytest.mark.integration

INTERVAL_SECS = 10


def segment(value: str) -> str:
    """A label value as a Graphite path segment (dots separate segments, so they become _)."""
    return value.replace(".", "_")


def path(interface: str, method: str, stat: str) -> str:
    return f"profile.{PIPELINE}.{segment(interface)}.{method}.{stat}"


def replay_to_carbon(tmp_path: Path, carbon: Carbon, protocol: str) -> int:
    """Replay the known log into carbon; returns the interval start (the points' timestamp)."""
    log = write_log(tmp_path / "motan-access.log")
    cfg = tmp_path / "profile.toml"
    port = carbon.udp_port if protocol == "udp" else carbon.tcp_port
    cfg.write_text(config_toml(str(log), graphite_port=port, graphite_protocol=protocol,
                               interval_secs=INTERVAL_SECS))
    # Lines have no event time: --start-time stamps them. A recent time, inside the whisper
    # retention (carbon drops points older than that).
    start = (int(time.time()) - 120) // INTERVAL_SECS * INTERVAL_SECS
    out = subprocess.run(
        [*opsagent_argv(), "profile", "replay", "--config", str(cfg), "--send",
         "--start-time", str(start), str(log)],
        capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return start


def value_at(carbon: Carbon, metric: str, ts: int) -> float:
    points = carbon.wait_for_points(metric, 1, start=ts - 5)
    assert [t for t, _v in points] == [ts], (metric, points)
    return points[0][1]


def check_stored(carbon: Carbon, ts: int) -> None:
    def user(stat: str) -> float:
        return value_at(carbon, path(USER.interface, USER.method, stat), ts)

    assert user("requests") == USER.count
    assert user("errors") == USER.errors
    assert user("latency_sum") == USER.latency_sum
    assert user("latency_min") == 1.0
    assert user("latency_max") == 1000.0
    for p, stat in ((50.0, "latency_p50"), (99.0, "latency_p99"), (99.9, "latency_p999")):
        got, exact = user(stat), USER.exact_percentile(p)
        assert within_bound(got, exact), (stat, got, exact)
    for le in BUCKETS:
        assert user(f"latency_bucket.{segment(le_label(le))}") == USER.cumulative_bucket(le)
    assert value_at(carbon, path(ORDER.interface, ORDER.method, "requests"), ts) == ORDER.count
    assert value_at(carbon, path(ORDER.interface, ORDER.method, "errors"), ts) == 0

    def unparsed_total() -> float | None:  # one metric per reason; their files may come later
        names = [m for m in carbon.metrics() if m.startswith(f"profile.{PIPELINE}.unparsed.")]
        total = sum(v for m in names for _t, v in carbon.fetch(m, ts - 5))
        return total if total == len(BAD_LINES) else None

    wait_until(unparsed_total, 60.0, f"{len(BAD_LINES)} unparsed lines in whisper")


def test_udp_lines_land_in_whisper(tmp_path: Path, carbon: Carbon) -> None:
    check_stored(carbon, replay_to_carbon(tmp_path, carbon, "udp"))


def test_tcp_option_lands_in_whisper_too(tmp_path: Path, carbon: Carbon) -> None:
    check_stored(carbon, replay_to_carbon(tmp_path, carbon, "tcp"))
