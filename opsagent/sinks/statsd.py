"""Sends profile statistics to statsd (statsd_exporter) over UDP, many metrics per datagram.

Wire format: `<name>#<label>=<value>,...:<value>|c` (counters, per-interval deltas) and `...|g`
(gauges), labels as Librato-style tags, which statsd_exporter turns into Prometheus labels
(https://github.com/prometheus/statsd_exporter#tagging-extensions). Librato style keeps the tags
inside the stat name, so the `statsd` package's own formatting and datagram packing
(`StatsClientBase.incr/gauge` and `udp.Pipeline`) are used unchanged; only its transport is
replaced: the package's StatsClient resolves its host once at construction (blocking) and drops
send errors silently, while this sink re-resolves periodically without blocking and counts every
failure. Names are `<prefix>_<pipeline>_<stat>` with anything outside [A-Za-z0-9_] replaced by
"_"; label values keep [A-Za-z0-9_.+/-] and replace the rest with "_" (empty -> "none").
"""

from __future__ import annotations

import errno
import logging
import re
import socket
from typing import Any

import prometheus_client
from statsd.client.base import StatsClientBase
from statsd.client.udp import Pipeline

from opsagent.clock import Clock
from opsagent.samples import Interval
from opsagent.sinks.resolver import ResolveFn, Resolver, getaddrinfo_resolve
from opsagent.sinks.statsd_config import StatsdConfig
from opsagent.sinks.udp import UdpSender
from opsagent.telemetry.registry import PerRegistry

log = logging.getLogger("opsagent.sinks.statsd")

_BAD_NAME = re.compile(r"[^A-Za-z0-9_]")
_BAD_VALUE = re.compile(r"[^A-Za-z0-9_.+/\-]")


def sanitize_name(name: str) -> str:
    out = _BAD_NAME.sub("_", name)
    return "_" + out if out[:1].isdigit() else out


def sanitize_value(value: str) -> str:
    return _BAD_VALUE.sub("_", value) if value else "none"


class _Client(StatsClientBase):  # type: ignore[misc]  # the package ships no type hints
    """The statsd package's client API with our transport (`deliver` gets each datagram).

    Private surface of the package, on purpose: none of its public clients can re-resolve
    without blocking, count send errors, or hand datagrams back for `profile replay`
    (docs/dependencies.md, "statsd"); the tests of the wire format and packing pin it."""

    def __init__(self, deliver: Any, max_datagram_bytes: int) -> None:
        self._prefix = None
        # udp.Pipeline starts a new datagram when len(stat) + len(data) + 1 >= _maxudpsize.
        self._maxudpsize = max_datagram_bytes + 1
        self._deliver = deliver

    def _send(self, data: str) -> None:
        self._deliver(data)

    def pipeline(self) -> Pipeline:
        return Pipeline(self)


class _Metrics:
    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.datagrams = prometheus_client.Counter(
            "opsagent_statsd_datagrams", "statsd datagrams sent", ["pipeline"],
            registry=registry)
        self.metrics = prometheus_client.Counter(
            "opsagent_statsd_metrics", "statsd metric lines handed to the socket",
            ["pipeline"], registry=registry)
        self.errors = prometheus_client.Counter(
            "opsagent_statsd_send_errors", "statsd datagrams not sent, by reason",
            ["pipeline", "reason"], registry=registry)


_metrics = PerRegistry(_Metrics)


def format_datagrams(pipeline: str, cfg: StatsdConfig, interval: Interval) -> list[str]:
    """The datagrams (newline-joined metric lines) for one interval, in order."""
    out: list[str] = []
    client = _Client(out.append, cfg.max_datagram_bytes)
    base = sanitize_name(f"{cfg.prefix}_{pipeline}_" if cfg.prefix else f"{pipeline}_")
    with client.pipeline() as pipe:
        for s in interval.samples:
            stat = base + sanitize_name(s.name)
            if s.labels:
                stat += "#" + ",".join(
                    f"{sanitize_name(k)}={sanitize_value(v)}" for k, v in s.labels)
            if s.kind == "c":
                pipe.incr(stat, s.value)
            else:
                pipe.gauge(stat, s.value)
    return out


class StatsdSink:
    """Formats intervals and sends them over a non-blocking UDP socket; never raises on I/O."""

    def __init__(self, pipeline: str, cfg: StatsdConfig, *, clock: Clock,
                 registry: prometheus_client.CollectorRegistry,
                 resolve: ResolveFn = getaddrinfo_resolve, background: bool = True) -> None:
        self.pipeline, self.cfg = pipeline, cfg
        self.resolver = Resolver(cfg.host, cfg.port, socktype=socket.SOCK_DGRAM,
                                 interval_secs=cfg.resolve_interval_secs, clock=clock,
                                 resolve=resolve, background=background)
        m = _metrics(registry)
        self._datagrams = m.datagrams.labels(pipeline)
        self._metric_lines = m.metrics.labels(pipeline)
        self._errors = m.errors
        self._udp = UdpSender(self.resolver)

    def start(self) -> None:
        """Resolve the host once, synchronously (before anything is sent)."""
        self.resolver.resolve_now()

    def send(self, interval: Interval) -> None:
        for dg in format_datagrams(self.pipeline, self.cfg, interval):
            self._send_datagram(dg)

    def _error(self, reason: str) -> None:
        self._errors.labels(self.pipeline, reason).inc()

    def _send_datagram(self, data: str) -> None:
        failed = self._udp.send(data.encode("utf-8"))
        if failed is None:
            self._datagrams.inc()
            self._metric_lines.inc(data.count("\n") + 1)
            return
        reason, e = failed
        self._error(reason)
        if reason == "os_error" and e is not None:
            log.warning("statsd send failed", extra={
                "component": "statsd", "pipeline": self.pipeline,
                "error": errno.errorcode.get(e.errno or 0, str(e))})

    def tick(self) -> None:
        """Nothing to do between sends (UDP)."""

    def busy(self) -> bool:
        return False

    def close(self) -> None:
        self._udp.close()
