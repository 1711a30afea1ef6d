"""The test services themselves work end to end with hand-written wire lines (independent of
opsagent's sinks): a statsd datagram with DogStatsD tags becomes exporter series, Prometheus
scrapes them, and a Graphite plaintext line over UDP lands in a whisper file. If these fail, the
opsagent end-to-end tests beside them cannot say anything."""

from __future__ import annotations

import time

import pytest

from tests.fixtures.carbon import Carbon
from tests.fixtures.prometheus import Prometheus
from tests.fixtures.statsd_exporter import StatsdExporter

pytestmark = pytest.mark.integration


def test_statsd_datagram_with_tags_becomes_labelled_series(statsd_exporter: StatsdExporter) -> None:
    statsd_exporter.send(b"selftest_requests_total:3|c|#iface:A.b,status:ok\n"
                         b"selftest_requests_total:4|c|#iface:A.b,status:ok")
    assert statsd_exporter.wait_for_value(
        "selftest_requests_total", {"iface": "A.b", "status": "ok"}, 7.0) == 7.0


def test_prometheus_scrapes_the_exporter(statsd_exporter: StatsdExporter,
                                         prometheus: Prometheus) -> None:
    statsd_exporter.send(b"selftest_requests_total:5|c|#iface:A.b")
    assert prometheus.wait_for_value('selftest_requests_total{iface="A.b"}', 5.0) == 5.0


def test_graphite_udp_line_lands_in_whisper(carbon: Carbon) -> None:
    ts = int(time.time()) - 30
    carbon.send_udp([f"selftest.a.b 12.5 {ts}", f"selftest.a.b 13.5 {ts + 1}"])
    points = carbon.wait_for_points("selftest.a.b", 2, start=ts - 5)
    assert points == [(ts, 12.5), (ts + 1, 13.5)]
