"""`opsagent_forward_lag_bytes{pipeline,file}`: per tailed file of every running [[forward]]
pipeline, the bytes not yet delivered to Kafka (not read yet, or read and not acknowledged),
computed when /metrics is scraped from the pipeline's own pending_bytes(). It is what a person
asks first when Kafka is slow or down: how far behind is each file, and is it growing
(deploy/alerts: ForwardLagGrowing)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import prometheus_client
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from opsagent.telemetry.registry import PerRegistry

NAME = "opsagent_forward_lag_bytes"
Pending = Callable[[], dict[str, int]]


class ForwardLagCollector(Collector):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pipelines: dict[str, Pending] = {}

    def add(self, pipeline: str, pending: Pending) -> None:
        with self._lock:
            self._pipelines[pipeline] = pending

    def remove(self, pipeline: str, pending: Pending) -> None:
        """Forget `pipeline` unless a newer instance (a reload) has replaced it meanwhile."""
        with self._lock:
            if self._pipelines.get(pipeline) == pending:
                del self._pipelines[pipeline]

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(NAME, "", labels=["pipeline", "file"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            NAME, "Bytes of a tailed file not yet delivered to Kafka (unread or unacknowledged)",
            labels=["pipeline", "file"])
        with self._lock:
            pipelines = sorted(self._pipelines.items())
        for name, pending in pipelines:
            for path, n in sorted(pending().items()):
                family.add_metric([name, path], n)
        yield family


def _make(registry: prometheus_client.CollectorRegistry) -> ForwardLagCollector:
    collector = ForwardLagCollector()
    registry.register(collector)
    return collector


forward_lag = PerRegistry(_make)
