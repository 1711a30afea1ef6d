from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from opsagent.telemetry.http import Health, TelemetryServer, parse_listen
from opsagent.telemetry.process import register


@pytest.fixture
def server() -> Iterator[tuple[TelemetryServer, Health, list[float]]]:
    now = [100.0]
    reg = CollectorRegistry()
    Counter("opsagent_test_things", "things", registry=reg).inc(3)
    register(reg, volumes=["/", "/does/not/exist"])
    health = Health(lambda: now[0], max_silence_secs=30)
    srv = TelemetryServer("127.0.0.1:0", reg, health)
    srv.start()
    yield srv, health, now
    srv.stop()


def _get(srv: TelemetryServer, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_health_ready_and_metrics(server: tuple[TelemetryServer, Health, list[float]]) -> None:
    srv, health, now = server
    assert _get(srv, "/healthz") == (200, "ok\n")
    assert _get(srv, "/readyz")[0] == 503
    health.set_ready(True)
    assert _get(srv, "/readyz") == (200, "ok\n")
    now[0] += 31          # the main loop stopped beating
    code, body = _get(srv, "/healthz")
    assert code == 503 and "silent" in body
    health.beat()
    assert _get(srv, "/healthz")[0] == 200
    code, text = _get(srv, "/metrics")
    assert code == 200
    assert "opsagent_test_things_total 3.0" in text
    assert "opsagent_process_resident_memory_bytes" in text
    assert 'opsagent_volume_used_bytes{path="/"}' in text
    assert "/does/not/exist" not in text
    assert _get(srv, "/nope")[0] == 404


@pytest.mark.parametrize(("addr", "expected"), [
    ("127.0.0.1:9101", ("127.0.0.1", 9101)), (":80", ("0.0.0.0", 80)),
    ("[::1]:9", ("::1", 9))])
def test_parse_listen(addr: str, expected: tuple[str, int]) -> None:
    assert parse_listen(addr) == expected


@pytest.mark.parametrize("addr", ["9101", "host:", "host:99999", "host:x"])
def test_parse_listen_rejects(addr: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen(addr)


def test_serves_on_ipv6_when_the_address_is_ipv6() -> None:
    """`[::1]:PORT` is advertised and validated, so it must really listen on IPv6."""
    import socket

    srv = TelemetryServer("[::1]:0", CollectorRegistry(), Health(lambda: 0.0))
    srv.start()
    try:
        with socket.create_connection(("::1", srv.port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.0 200") and reply.endswith(b"ok\n")
    finally:
        srv.stop()


def test_stop_ends_the_serving_thread_and_closes_the_port() -> None:
    """The server sleeps without a poll interval (idle cost); stop() must still end it."""
    srv = TelemetryServer("127.0.0.1:0", CollectorRegistry(), Health(lambda: 0.0))
    srv.start()
    assert _get(srv, "/healthz")[0] == 200
    srv.stop()
    assert not srv._thread.is_alive()
    with pytest.raises(urllib.error.URLError):
        _get(srv, "/healthz")
    srv.stop()  # twice: no error
