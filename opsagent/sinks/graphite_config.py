"""Configuration of the Graphite sink (`[profile.graphite]`): a config-only module, so loading
and checking a config imports no sockets (opsagent/sinks/graphite.py is the sink)."""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

BAD_SEGMENT = re.compile(r"[^A-Za-z0-9_\-]")   # a path segment keeps [A-Za-z0-9_-]


@dataclasses.dataclass(frozen=True)
class GraphiteConfig:
    host: str = "127.0.0.1"
    port: int = 2003  # carbon's plaintext port (UDP needs ENABLE_UDP_LISTENER = True)
    protocol: Literal["udp", "tcp"] = "udp"
    prefix: str = "profile"  # first path segments ("" for none; may contain dots)
    max_datagram_bytes: int = 1432  # udp: lines per datagram up to this size
    max_buffer_bytes: int = 4_194_304  # tcp: unsent bytes kept while disconnected; then dropped
    reconnect_min_secs: float = 1.0  # tcp: backoff after a failed connection, doubling ...
    reconnect_max_secs: float = 60.0  # ... up to this
    resolve_interval_secs: float = 30.0

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("host must not be empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be within 1..65535, got {self.port}")
        if not 64 <= self.max_datagram_bytes <= 65507:
            raise ValueError(
                f"max_datagram_bytes must be within 64..65507, got {self.max_datagram_bytes}")
        if self.max_buffer_bytes < 1024:
            raise ValueError("max_buffer_bytes must be >= 1024")
        if not 0 < self.reconnect_min_secs <= self.reconnect_max_secs:
            raise ValueError("need 0 < reconnect_min_secs <= reconnect_max_secs")
        if self.resolve_interval_secs <= 0:
            raise ValueError("resolve_interval_secs must be > 0")
        if self.prefix and any(not _segment_ok(p) for p in self.prefix.split(".")):
            raise ValueError(f"prefix segments must match [A-Za-z0-9_-]+, got {self.prefix!r}")


def _segment_ok(seg: str) -> bool:
    return bool(seg) and not BAD_SEGMENT.search(seg)
