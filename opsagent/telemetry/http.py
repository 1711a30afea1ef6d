"""HTTP endpoints of the agent: /healthz (the main loop is alive), /readyz (config loaded and
pipelines started), /metrics (the prometheus_client registry).

Liveness never depends on Kafka or any other downstream: it only asks whether the main loop
has beaten its heart recently.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from opsagent.config.schema import parse_listen

__all__ = ["Health", "TelemetryServer", "parse_listen"]


class Health:
    """Heartbeat and readiness, shared by the main loop (writer) and the HTTP thread (reader)."""

    def __init__(self, clock: Callable[[], float], max_silence_secs: float = 30.0) -> None:
        self._clock = clock
        self._max_silence = max_silence_secs
        self._last_beat = clock()
        self._ready = False
        self._reason = "starting"

    def beat(self) -> None:
        self._last_beat = self._clock()

    def set_ready(self, ready: bool, reason: str = "") -> None:
        self._ready, self._reason = ready, reason

    def alive(self) -> tuple[bool, str]:
        silence = self._clock() - self._last_beat
        if silence > self._max_silence:
            return False, f"main loop silent for {silence:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        return self._ready, self._reason or ("ok" if self._ready else "not ready")


class TelemetryServer:
    """Serves the endpoints from a daemon thread; `port` is the bound port (0 picks one).

    Raises ValueError for a malformed address and OSError when it cannot listen (port in use,
    address not on this node): the caller reports either without a traceback."""

    def __init__(self, listen: str, registry: CollectorRegistry, health: Health) -> None:
        host, port = parse_listen(listen)
        handler = _handler(registry, health)
        server_cls = _Server6 if ":" in host else ThreadingHTTPServer
        self._server = server_cls((host, port), handler)
        self._server.daemon_threads = True
        self._server.timeout = 0   # handle_request: the loop below already knows it is ready
        self.port: int = self._server.server_address[1]
        # stop() writes here. socketserver's serve_forever wakes every poll_interval to look
        # for a shutdown request; this loop sleeps until a connection or stop (idle cost).
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._serve, name="telemetry-http",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._server.socket, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = sel.select()
                if any(key.fileobj == self._wake_r for key, _ in ready):
                    return
                self._server.handle_request()   # accept and hand to a handler thread

    def stop(self) -> None:
        if self._wake_w < 0:
            return
        if self._thread.is_alive():
            os.write(self._wake_w, b"x")
            self._thread.join(5.0)
        self._server.server_close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._wake_w = -1


class _Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler(registry: CollectorRegistry, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, why = health.alive() if path == "/healthz" else health.ready()
                self._send(200 if ok else 503, (why + "\n").encode(), "text/plain")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # probes every few seconds would flood the log

    return Handler
