"""Prometheus scraping the statsd_exporter that `opsagent profile replay --send` fed answers
PromQL over its HTTP API with the values the known log implies: per-series and summed counters,
histogram_quantile() over the `le` bucket counters (what a dashboard computes across pods), and
the sketch percentile gauges within their relative-error bound."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures.prometheus import Prometheus
from tests.fixtures.statsd_exporter import StatsdExporter
from tests.integration.profile.known_log import (
    PIPELINE,
    TOTAL_REQUESTS,
    USER,
    config_toml,
    opsagent_argv,
    within_bound,
    write_log,
)

pytestmark = pytest.mark.integration

NAME = f"profile_{PIPELINE}_"
USER_SEL = f'interface="{USER.interface}",method="{USER.method}"'


def test_promql_answers_from_a_replayed_log(tmp_path: Path, statsd_exporter: StatsdExporter,
                                            prometheus: Prometheus) -> None:
    log = write_log(tmp_path / "motan-access.log")
    cfg = tmp_path / "profile.toml"
    cfg.write_text(config_toml(str(log), statsd_port=statsd_exporter.udp_port))
    out = subprocess.run(
        [*opsagent_argv(), "profile", "replay", "--config", str(cfg), "--send",
         "--start-time", str(int(time.time()) // 10 * 10), str(log)],
        capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr

    prometheus.wait_for_value(f"{NAME}requests{{{USER_SEL}}}", USER.count)
    prometheus.wait_for_value(f"sum({NAME}requests)", TOTAL_REQUESTS)
    prometheus.wait_for_value(f"{NAME}errors{{{USER_SEL}}}", USER.errors)
    prometheus.wait_for_value(f"{NAME}latency_sum{{{USER_SEL}}}", USER.latency_sum)
    for q in (0.5, 0.9):
        prometheus.wait_for_value(
            f"histogram_quantile({q}, sum by (le) ({NAME}latency_bucket{{{USER_SEL}}}))",
            USER.histogram_quantile(q), rel_tol=1e-9)
    p99 = prometheus.scalar(f"{NAME}latency_p99{{{USER_SEL}}}")
    assert p99 is not None and within_bound(p99, USER.exact_percentile(99.0)), p99
