"""Sending datagrams to a re-resolved target: shared by the statsd and Graphite (UDP) sinks."""

from __future__ import annotations

import socket

from opsagent.sinks.resolver import Resolver


class UdpSender:
    """One non-blocking UDP socket to the resolver's current address, made again when the
    address family changes (a target re-resolved from IPv4 to IPv6). Never blocks or raises."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self._sock: socket.socket | None = None
        self._family = -1

    def send(self, payload: bytes) -> tuple[str, OSError | None] | None:
        """None once sent; else why not: ("unresolved", None) while no address is known,
        ("would_block", e) when the socket buffer is full, ("os_error", e) otherwise."""
        addr = self.resolver.current()
        if addr is None:
            return "unresolved", None
        family, sockaddr = addr
        try:
            if self._sock is None or family != self._family:
                self.close()
                self._sock = socket.socket(family, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
                self._family = family
            self._sock.sendto(payload, sockaddr)
        except BlockingIOError as e:
            return "would_block", e
        except OSError as e:
            return "os_error", e
        return None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
