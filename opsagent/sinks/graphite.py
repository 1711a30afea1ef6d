"""Sends profile statistics to Graphite (carbon) as plaintext `path value timestamp` lines,
over UDP (several lines per datagram) or TCP (non-blocking, buffered, reconnecting).

Paths: `<prefix>.<pipeline>.<label value>....<stat>`, label values in the order of the
pipeline's `labels`; the `le` and `reason` labels follow the stat
(`...latency_bucket.0_25`, `...unparsed.no_match`). Segments keep [A-Za-z0-9_-] and replace the
rest with "_" (dots too: they separate segments); an empty value becomes "none", `+Inf` "inf".
Timestamps are the interval's start in epoch seconds.
"""

from __future__ import annotations

import errno
import logging
import select
import socket

import prometheus_client

from opsagent.clock import Clock
from opsagent.samples import Interval
from opsagent.sinks.graphite_config import BAD_SEGMENT as _BAD_SEGMENT
from opsagent.sinks.graphite_config import GraphiteConfig
from opsagent.sinks.resolver import ResolveFn, Resolver, getaddrinfo_resolve
from opsagent.sinks.udp import UdpSender
from opsagent.telemetry.registry import PerRegistry

log = logging.getLogger("opsagent.sinks.graphite")

_AFTER_STAT = ("le", "reason")


def segment(value: str) -> str:
    if value == "+Inf":
        return "inf"
    return _BAD_SEGMENT.sub("_", value) if value else "none"


def format_lines(pipeline: str, cfg: GraphiteConfig, interval: Interval) -> list[str]:
    """The plaintext lines (without newline) for one interval."""
    base = f"{cfg.prefix}.{segment(pipeline)}" if cfg.prefix else segment(pipeline)
    ts = interval.start
    out: list[str] = []
    for s in interval.samples:
        parts = [base]
        parts.extend(segment(v) for k, v in s.labels if k not in _AFTER_STAT)
        parts.append(segment(s.name))
        parts.extend(segment(v) for k, v in s.labels if k in _AFTER_STAT)
        out.append(f"{'.'.join(parts)} {s.value} {ts}")
    return out


class _Metrics:
    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.lines = prometheus_client.Counter(
            "opsagent_graphite_lines", "Graphite lines written to the socket", ["pipeline"],
            registry=registry)
        self.dropped = prometheus_client.Counter(
            "opsagent_graphite_dropped_lines", "Graphite lines dropped (send failed, buffer full)",
            ["pipeline"], registry=registry)
        self.errors = prometheus_client.Counter(
            "opsagent_graphite_send_errors", "Graphite send or connect failures, by reason",
            ["pipeline", "reason"], registry=registry)


_metrics = PerRegistry(_Metrics)


class GraphiteSink:
    """Never blocks and never raises on I/O: failures are counted and logged (rate-limited)."""

    def __init__(self, pipeline: str, cfg: GraphiteConfig, *, clock: Clock,
                 registry: prometheus_client.CollectorRegistry,
                 resolve: ResolveFn = getaddrinfo_resolve, background: bool = True) -> None:
        self.pipeline, self.cfg, self.clock = pipeline, cfg, clock
        kind = socket.SOCK_DGRAM if cfg.protocol == "udp" else socket.SOCK_STREAM
        self.resolver = Resolver(cfg.host, cfg.port, socktype=kind,
                                 interval_secs=cfg.resolve_interval_secs, clock=clock,
                                 resolve=resolve, background=background)
        m = _metrics(registry)
        self._lines = m.lines.labels(pipeline)
        self._dropped = m.dropped.labels(pipeline)
        self._errors = m.errors
        self._udp = UdpSender(self.resolver)
        # tcp state
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._connected = False
        self._mid_line = False  # the last send ended inside a line: drop its rest on reconnect
        self._next_connect = -float("inf")
        self._backoff = cfg.reconnect_min_secs

    def start(self) -> None:
        self.resolver.resolve_now()

    def send(self, interval: Interval) -> None:
        lines = format_lines(self.pipeline, self.cfg, interval)
        if self.cfg.protocol == "udp":
            self._send_udp(lines)
        else:
            self._enqueue_tcp(lines)
            self.tick()

    def _error(self, reason: str) -> None:
        self._errors.labels(self.pipeline, reason).inc()

    # -- udp ---------------------------------------------------------------------------------

    def _send_udp(self, lines: list[str]) -> None:
        limit = self.cfg.max_datagram_bytes
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            b = line.encode() + b"\n"
            if chunk and size + len(b) > limit:
                self._datagram(chunk)
                chunk, size = [], 0
            chunk.append(b)
            size += len(b)
        if chunk:
            self._datagram(chunk)

    def _datagram(self, chunk: list[bytes]) -> None:
        failed = self._udp.send(b"".join(chunk))
        if failed is None:
            self._lines.inc(len(chunk))
        else:
            self._error(failed[0])
            self._dropped.inc(len(chunk))

    # -- tcp ---------------------------------------------------------------------------------

    def _enqueue_tcp(self, lines: list[str]) -> None:
        limit = self.cfg.max_buffer_bytes
        dropped = 0
        for line in lines:
            b = line.encode() + b"\n"
            if len(self._buf) + len(b) > limit:
                dropped += 1
            else:
                self._buf += b
        if dropped:
            self._dropped.inc(dropped)
            self._error("buffer_full")

    def busy(self) -> bool:
        """Whether tick() has lines to write (TCP backlog): the pipeline then ticks often."""
        return self.cfg.protocol == "tcp" and bool(self._buf)

    def tick(self) -> None:
        """TCP: connect when due and write what the socket takes now. Call it often."""
        if self.cfg.protocol != "tcp" or not self._buf:
            return
        if self._sock is None and not self._connect():
            return
        assert self._sock is not None
        if not self._connected:
            _r, w, _x = select.select([], [self._sock], [], 0)
            if not w:
                return
            err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail("connect", err)
                return
            self._connected = True
            self._backoff = self.cfg.reconnect_min_secs
            if self._mid_line:
                nl = self._buf.find(b"\n")
                del self._buf[: nl + 1]
                self._dropped.inc()
                self._mid_line = False
        while self._buf:
            try:
                n = self._sock.send(self._buf)
            except BlockingIOError:
                return
            except OSError as e:
                self._fail("send", e.errno or 0)
                return
            self._lines.inc(self._buf.count(b"\n", 0, n))
            self._mid_line = self._buf[n - 1:n] != b"\n"
            del self._buf[:n]

    def _connect(self) -> bool:
        if self.clock.monotonic() < self._next_connect:
            return False
        addr = self.resolver.current()
        if addr is None:
            self._error("unresolved")
            self._next_connect = self.clock.monotonic() + self._backoff
            return False
        family, sockaddr = addr
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        rc = sock.connect_ex(sockaddr)
        if rc not in (0, errno.EINPROGRESS):
            sock.close()
            self._fail("connect", rc)
            return False
        self._sock, self._connected = sock, False
        return True

    def _fail(self, what: str, err: int) -> None:
        self._error(what)
        log.warning(f"graphite {what} failed", extra={
            "component": "graphite", "pipeline": self.pipeline,
            "error": errno.errorcode.get(err, str(err))})
        self.close()
        self._next_connect = self.clock.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.cfg.reconnect_max_secs)

    def pending_bytes(self) -> int:
        return len(self._buf)

    def close(self) -> None:
        self._udp.close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._connected = False
