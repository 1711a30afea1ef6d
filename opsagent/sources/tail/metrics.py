"""Prometheus metrics of the tail source, created once per registry (several pipelines share a
registry and tell themselves apart by the `pipeline` label)."""

from __future__ import annotations

import prometheus_client

from opsagent.telemetry.registry import PerRegistry


class TailMetrics:
    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ("pipeline",)) -> (
            prometheus_client.Counter
        ):
            return prometheus_client.Counter(name, doc, list(labels), registry=registry)

        self.lines = counter("opsagent_tail_lines_total", "Lines read (before multiline joins)")
        self.bytes = counter("opsagent_tail_bytes_total", "Bytes read from tailed files")
        self.truncated_lines = counter(
            "opsagent_tail_truncated_lines_total", "Lines cut at max_line_bytes")
        self.truncations = counter(
            "opsagent_tail_truncations_total", "Files found truncated (copytruncate)")
        self.lost = counter(
            "opsagent_tail_truncation_lost_bytes_total",
            "Bytes known to exist but not read when a file was truncated (a lower bound)")
        self.abandoned = counter(
            "opsagent_tail_abandoned_bytes_total",
            "Unread bytes of deleted files closed because of the open-deleted-files budget")
        self.rotations = counter(
            "opsagent_tail_rotations_total", "Tailed files renamed away from their name")
        self.errors = counter(
            "opsagent_tail_errors_total", "Problems by reason", ("pipeline", "reason"))
        self.files_open = prometheus_client.Gauge(
            "opsagent_tail_files_open", "Files held open", ["pipeline"], registry=registry)


tail_metrics = PerRegistry(TailMetrics)


