from __future__ import annotations

import socket
from collections.abc import Iterator

import prometheus_client
import pytest

from opsagent.clock import FakeClock
from opsagent.samples import Interval, Sample
from opsagent.sinks.resolver import Address
from opsagent.sinks.statsd import (
    StatsdConfig,
    StatsdSink,
    format_datagrams,
    sanitize_name,
    sanitize_value,
)


def iv(n: int = 1, **labels: str) -> Interval:
    lab = tuple(labels.items())
    return Interval(100, [Sample(f"stat{i}", lab, i, "c" if i % 2 else "g") for i in range(n)])


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    yield s
    s.close()


def test_wire_format_librato_tags_and_sanitising() -> None:
    interval = Interval(0, [
        Sample("requests", (("interface", "com.x.Svc"), ("method", "get:a|b#c=d,e")), 5, "c"),
        Sample("latency_p99", (("interface", ""),), 1.25, "g"),
        Sample("latency_bucket", (("le", "+Inf"),), 3, "c"),
        Sample("rate", (), 0.5, "g"),
    ])
    [dg] = format_datagrams("my-pipe", StatsdConfig(prefix="svc.prof"), interval)
    assert dg.split("\n") == [
        "svc_prof_my_pipe_requests#interface=com.x.Svc,method=get_a_b_c_d_e:5|c",
        "svc_prof_my_pipe_latency_p99#interface=none:1.25|g",
        "svc_prof_my_pipe_latency_bucket#le=+Inf:3|c",
        "svc_prof_my_pipe_rate:0.5|g",
    ]


def test_no_prefix() -> None:
    [dg] = format_datagrams("p", StatsdConfig(prefix=""), iv(1))
    assert dg == "p_stat0:0|g"


@pytest.mark.parametrize("name,want", [("a.b-c", "a_b_c"), ("9x", "_9x"), ("ok_1", "ok_1")])
def test_sanitize_name(name: str, want: str) -> None:
    assert sanitize_name(name) == want


@pytest.mark.parametrize("value,want", [("", "none"), ("/a/b.c", "/a/b.c"), ("a b\n", "a_b_"),
                                        ("é", "_")])
def test_sanitize_value(value: str, want: str) -> None:
    assert sanitize_value(value) == want


@pytest.mark.parametrize("size", [64, 200, 1432])
def test_datagrams_are_packed_up_to_the_size_and_keep_every_line(size: int) -> None:
    interval = iv(300, interface="com.example.Service")
    dgs = format_datagrams("p", StatsdConfig(max_datagram_bytes=size), interval)
    assert all(len(d.encode()) <= size for d in dgs)
    lines = [line for d in dgs for line in d.split("\n")]
    assert len(lines) == 300 and lines[0].startswith("profile_p_stat0#")
    # Packed: each datagram but the last could not take the next line.
    for a, b in zip(dgs, dgs[1:], strict=False):
        assert len(a) + 1 + len(b.split("\n")[0]) > size


def sink(port: int, clock: FakeClock, reg: prometheus_client.CollectorRegistry,
         **cfg: object) -> StatsdSink:
    return StatsdSink("p", StatsdConfig(port=port, **cfg), clock=clock,  # type: ignore[arg-type]
                      registry=reg, background=False)


def test_sends_over_udp(receiver: socket.socket) -> None:
    reg = prometheus_client.CollectorRegistry()
    s = sink(receiver.getsockname()[1], FakeClock(), reg, max_datagram_bytes=200)
    s.start()
    s.send(iv(20, interface="a"))
    got: list[str] = []
    while len(got) < 20:
        got.extend(receiver.recv(65535).decode().split("\n"))
    assert got == [x for d in format_datagrams("p", s.cfg, iv(20, interface="a"))
                   for x in d.split("\n")]
    assert reg.get_sample_value("opsagent_statsd_metrics_total", {"pipeline": "p"}) == 20
    assert reg.get_sample_value("opsagent_statsd_datagrams_total", {"pipeline": "p"}) >= 3
    s.close()


def test_host_is_re_resolved_periodically(receiver: socket.socket) -> None:
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    other.settimeout(5)
    ports = [receiver.getsockname()[1], other.getsockname()[1]]
    calls: list[str] = []

    def resolve(host: str, port: int, socktype: int) -> Address:
        calls.append(host)
        return (socket.AF_INET, ("127.0.0.1", ports[min(len(calls) - 1, 1)]))

    clock = FakeClock()
    s = StatsdSink("p", StatsdConfig(host="exporter.svc", resolve_interval_secs=30), clock=clock,
                   registry=prometheus_client.CollectorRegistry(), resolve=resolve,
                   background=False)
    s.start()
    s.send(iv(1))
    assert receiver.recv(100) == b"profile_p_stat0:0|g"
    clock.advance(10)
    s.send(iv(1))
    assert receiver.recv(100) == b"profile_p_stat0:0|g"  # not due yet: same address
    clock.advance(25)
    s.send(iv(1))  # due: looked up again, the "pod" moved
    assert other.recv(100) == b"profile_p_stat0:0|g"
    assert calls == ["exporter.svc", "exporter.svc"]
    other.close()
    s.close()


def test_unresolvable_host_counts_errors_and_never_raises() -> None:
    def resolve(host: str, port: int, socktype: int) -> Address:
        raise socket.gaierror(socket.EAI_NONAME, "no such host")

    reg = prometheus_client.CollectorRegistry()
    s = StatsdSink("p", StatsdConfig(host="nowhere.invalid"), clock=FakeClock(), registry=reg,
                   resolve=resolve, background=False)
    s.start()
    s.send(iv(3))
    assert reg.get_sample_value("opsagent_statsd_send_errors_total",
                                {"pipeline": "p", "reason": "unresolved"}) == 1
    assert s.resolver.failures >= 1


def test_send_error_is_counted(receiver: socket.socket) -> None:
    reg = prometheus_client.CollectorRegistry()
    s = sink(receiver.getsockname()[1], FakeClock(), reg)
    s.start()
    s.send(Interval(0, [Sample("x" * 70000, (), 1, "c")]))  # larger than any UDP datagram
    assert reg.get_sample_value("opsagent_statsd_send_errors_total",
                                {"pipeline": "p", "reason": "os_error"}) == 1
    s.close()


def test_background_resolution_does_not_block_sending(receiver: socket.socket) -> None:
    import threading

    release = threading.Event()
    port = receiver.getsockname()[1]
    n = {"calls": 0}

    def resolve(host: str, port_: int, socktype: int) -> Address:
        n["calls"] += 1
        if n["calls"] > 1:
            release.wait(5)  # a slow DNS server
        return (socket.AF_INET, ("127.0.0.1", port))

    clock = FakeClock()
    s = StatsdSink("p", StatsdConfig(resolve_interval_secs=1), clock=clock,
                   registry=prometheus_client.CollectorRegistry(), resolve=resolve)
    s.start()
    clock.advance(2)
    s.send(iv(1))  # starts the slow look-up in the background, sends with the old address
    assert receiver.recv(100) == b"profile_p_stat0:0|g"
    release.set()
    s.close()
