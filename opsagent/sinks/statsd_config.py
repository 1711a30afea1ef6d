"""Configuration of the statsd sink (`[profile.statsd]`): a config-only module, so loading and
checking a config imports no sockets (opsagent/sinks/statsd.py is the sink)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class StatsdConfig:
    host: str = "127.0.0.1"
    port: int = 9125  # statsd_exporter's default UDP port
    prefix: str = "profile"  # first part of every metric name ("" for none)
    max_datagram_bytes: int = 1432  # fits a 1500-byte MTU; use 8932 for jumbo frames
    resolve_interval_secs: float = 30.0

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("host must not be empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be within 1..65535, got {self.port}")
        if not 64 <= self.max_datagram_bytes <= 65507:
            raise ValueError(
                f"max_datagram_bytes must be within 64..65507, got {self.max_datagram_bytes}")
        if self.resolve_interval_secs <= 0:
            raise ValueError("resolve_interval_secs must be > 0")
