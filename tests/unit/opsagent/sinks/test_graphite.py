from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import prometheus_client
import pytest

from opsagent.clock import FakeClock
from opsagent.samples import Interval, Sample
from opsagent.sinks.graphite import GraphiteSink, format_lines, segment
from opsagent.sinks.graphite_config import GraphiteConfig


def test_paths_labels_as_segments_le_and_reason_after_the_stat() -> None:
    interval = Interval(1700000000, [
        Sample("requests", (("interface", "com.x.Svc"), ("method", "get")), 5, "c"),
        Sample("latency_p99", (("interface", ""), ("method", "a b/c")), 1.25, "g"),
        Sample("latency_bucket", (("interface", "i"), ("method", "m"), ("le", "0.25")), 3, "c"),
        Sample("latency_bucket", (("interface", "i"), ("method", "m"), ("le", "+Inf")), 4, "c"),
        Sample("unparsed", (("reason", "no_match"),), 2, "c"),
        Sample("series_overflow", (), 7, "c"),
    ])
    assert format_lines("motan", GraphiteConfig(prefix="svc.profile"), interval) == [
        "svc.profile.motan.com_x_Svc.get.requests 5 1700000000",
        "svc.profile.motan.none.a_b_c.latency_p99 1.25 1700000000",
        "svc.profile.motan.i.m.latency_bucket.0_25 3 1700000000",
        "svc.profile.motan.i.m.latency_bucket.inf 4 1700000000",
        "svc.profile.motan.unparsed.no_match 2 1700000000",
        "svc.profile.motan.series_overflow 7 1700000000",
    ]
    assert format_lines("m", GraphiteConfig(prefix=""), Interval(5, interval.samples[-1:])) == [
        "m.series_overflow 7 5"]


@pytest.mark.parametrize("value,want", [("", "none"), ("a.b", "a_b"), ("+Inf", "inf"),
                                        ("ok-1_2", "ok-1_2")])
def test_segment(value: str, want: str) -> None:
    assert segment(value) == want


def many(n: int) -> Interval:
    return Interval(60, [Sample(f"s{i}", (("k", "v"),), i, "c") for i in range(n)])


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    yield s
    s.close()


def test_udp_lines_packed_into_datagrams(udp: socket.socket) -> None:
    reg = prometheus_client.CollectorRegistry()
    cfg = GraphiteConfig(port=udp.getsockname()[1], max_datagram_bytes=100)
    s = GraphiteSink("p", cfg, clock=FakeClock(), registry=reg, background=False)
    s.start()
    s.send(many(30))
    got: list[bytes] = []
    sizes = []
    while sum(d.count(b"\n") for d in got) < 30:
        d = udp.recv(65535)
        sizes.append(len(d))
        got.append(d)
    assert max(sizes) <= 100 and len(got) > 1
    lines = b"".join(got).decode().splitlines()
    assert lines == format_lines("p", cfg, many(30))
    assert reg.get_sample_value("opsagent_graphite_lines_total", {"pipeline": "p"}) == 30
    s.close()


@pytest.fixture
def tcp_server() -> Iterator[socket.socket]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(30)
    yield srv
    srv.close()


def read_lines(conn: socket.socket, n: int) -> list[str]:
    conn.settimeout(30)
    buf = b""
    while buf.count(b"\n") < n:
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf.decode().splitlines()


def pump(s: GraphiteSink, until: float = 30.0) -> None:
    """Call tick() until the buffer drains (real sockets need a moment to connect)."""
    deadline = time.monotonic() + until
    while s.pending_bytes() and time.monotonic() < deadline:
        s.tick()
        time.sleep(0.001)


def test_tcp_sends_and_reconnects_after_the_server_drops(tcp_server: socket.socket) -> None:
    reg = prometheus_client.CollectorRegistry()
    clock = FakeClock()
    cfg = GraphiteConfig(port=tcp_server.getsockname()[1], protocol="tcp",
                         reconnect_min_secs=1, reconnect_max_secs=4)
    s = GraphiteSink("p", cfg, clock=clock, registry=reg, background=False)
    s.start()
    s.send(many(5))
    conn, _ = tcp_server.accept()
    pump(s)
    assert read_lines(conn, 5) == format_lines("p", cfg, many(5))
    conn.close()
    # The peer is gone: sends fail until a reconnect, which waits for the backoff.
    for _ in range(50):
        s.send(many(2))
        pump(s, 0.02)
        if s.pending_bytes():
            break
    assert s.pending_bytes() > 0
    failures = reg.get_sample_value("opsagent_graphite_send_errors_total",
                                    {"pipeline": "p", "reason": "send"})
    assert failures == 1
    s.tick()  # within the backoff: no new connection
    tcp_server.settimeout(0.2)
    with pytest.raises(TimeoutError):
        tcp_server.accept()
    clock.advance(1.5)
    s.tick()
    tcp_server.settimeout(30)
    conn2, _ = tcp_server.accept()
    pump(s)
    assert s.pending_bytes() == 0
    lines = read_lines(conn2, 2)
    assert lines[-2:] == format_lines("p", cfg, many(2))
    conn2.close()
    s.close()


def test_tcp_buffer_is_bounded_and_drops_are_counted() -> None:
    reg = prometheus_client.CollectorRegistry()
    # Nothing listens on this port: connections are refused, data waits in the buffer.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    cfg = GraphiteConfig(port=port, protocol="tcp", max_buffer_bytes=1024)
    s = GraphiteSink("p", cfg, clock=FakeClock(), registry=reg, background=False)
    s.start()
    for _ in range(10):
        s.send(many(20))
        s.tick()
    assert s.pending_bytes() <= 1024
    assert reg.get_sample_value("opsagent_graphite_dropped_lines_total", {"pipeline": "p"}) > 0
    s.close()


def test_tcp_reconnect_drops_the_rest_of_a_half_sent_line(tcp_server: socket.socket) -> None:
    cfg = GraphiteConfig(port=tcp_server.getsockname()[1], protocol="tcp")
    clock = FakeClock()
    s = GraphiteSink("p", cfg, clock=clock, registry=prometheus_client.CollectorRegistry(),
                     background=False)
    s.start()
    # As if the previous connection died after writing "a.b 1" of "a.b 1 60\n".
    s._buf += b" 60\nc.d 2 60\n"
    s._mid_line = True
    pump(s)
    conn, _ = tcp_server.accept()
    assert read_lines(conn, 1) == ["c.d 2 60"]
    conn.close()
    s.close()
