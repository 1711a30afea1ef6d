"""Keeps a host name's address fresh for UDP/TCP sinks without blocking the sender.

A rescheduled statsd_exporter or carbon pod comes back under the same Service name with a new
address, so the address is looked up again every `interval_secs`. The look-up (getaddrinfo can
block for seconds) runs on a short-lived daemon thread; senders keep using the last good address
meanwhile. `resolve_now()` is for start-up, before anything is sent.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from opsagent.clock import Clock

log = logging.getLogger("opsagent.sinks.resolver")

Address = tuple[int, tuple[str, int]]  # (socket family, (host, port))
ResolveFn = Callable[[str, int, int], Address]


def getaddrinfo_resolve(host: str, port: int, socktype: int) -> Address:
    family, _t, _p, _c, addr = socket.getaddrinfo(host, port, 0, socktype)[0]
    return (family, (str(addr[0]), int(addr[1])))


class Resolver:
    def __init__(self, host: str, port: int, *, socktype: int, interval_secs: float,
                 clock: Clock, resolve: ResolveFn = getaddrinfo_resolve,
                 background: bool = True) -> None:
        self.host, self.port, self.socktype = host, port, socktype
        self.interval = interval_secs
        self.clock = clock
        self._resolve = resolve
        self._background = background
        self._lock = threading.Lock()
        self._addr: Address | None = None
        self._next = -float("inf")
        self._busy = False
        self.failures = 0

    def resolve_now(self) -> Address | None:
        """Look up synchronously (start-up only); returns the address or None on failure."""
        self._next = self.clock.monotonic() + self.interval
        self._run()
        return self._addr

    def current(self) -> Address | None:
        """The last good address (None before the first success); starts a background
        look-up when one is due."""
        now = self.clock.monotonic()
        if now >= self._next:
            with self._lock:
                start = not self._busy
                if start:
                    self._busy = True
                    self._next = now + self.interval
            if start:
                if self._background:
                    threading.Thread(target=self._run, name=f"resolve-{self.host}",
                                     daemon=True).start()
                else:
                    self._run()
        return self._addr

    def _run(self) -> None:
        try:
            addr = self._resolve(self.host, self.port, self.socktype)
        except (OSError, UnicodeError) as e:
            self.failures += 1
            log.warning("address look-up failed", extra={
                "component": "resolver", "host": self.host, "error": str(e)})
        else:
            if addr != self._addr and self._addr is not None:
                log.info("address changed", extra={
                    "component": "resolver", "host": self.host, "address": addr[1][0]})
            self._addr = addr
        finally:
            with self._lock:
                self._busy = False
