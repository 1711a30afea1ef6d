"""Configuration of the Kafka sink (the `kafka` table of a `[[forward]]` pipeline).

`acks` is not configurable: it is always "all", with idempotence enabled, because the forwarder's
promise (no line lost) depends on it. Units are in the key names.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_HOSTPORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")

# Only codecs the installed libraries can do: gzip (stdlib), zstd (zstandard). lz4 and snappy
# need packages the agent does not ship.
Compression = Literal["none", "gzip", "zstd"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
# The producer backend: librdkafka (confluent-kafka's bundled C client; the default: 2.5x less
# CPU per GB in bench/kafka_forward.py) or kafka-python (pure Python). Same guarantees;
# docs/kafka.md ("Choosing the client") compares them.
Client = Literal["kafka-python", "librdkafka"]


@dataclasses.dataclass(frozen=True)
class KafkaSinkConfig:
    """Where and how records are produced. Every key is documented in config/ and docs/kafka.md."""

    bootstrap_servers: tuple[str, ...]
    topic: str
    client: Client = "librdkafka"
    client_id: str = "opsagent"
    compression: Compression = "zstd"
    linger_ms: int = 5
    batch_size: int = 262_144  # bytes per partition batch
    max_request_size: int = 1_048_576  # largest record (bytes) the client will send
    # Bytes submitted but not yet acknowledged (or dead-lettered); submit() blocks beyond this.
    max_inflight_bytes: int = 16 * 1024 * 1024
    # A record not acknowledged after this long fails inside the client and is re-sent by the
    # sink (from the first unacknowledged record of its file, with backoff).
    delivery_timeout_ms: int = 120_000
    request_timeout_ms: int = 30_000
    # How long one attempt to reach the cluster (create the producer) may block.
    connect_timeout_ms: int = 10_000
    retry_backoff_base_secs: float = 0.5
    retry_backoff_max_secs: float = 30.0
    # The client's reconnect backoff (kafka-python reconnect_backoff_ms / _max_ms, librdkafka
    # reconnect.backoff.ms / .max.ms): after the cluster comes back, delivery resumes within
    # about reconnect_backoff_max_ms (kafka-python's own default is 30 s). While Kafka is
    # unreachable the sink also starts its next connection attempt within this long.
    reconnect_backoff_ms: int = 50
    reconnect_backoff_max_ms: int = 1000
    # TLS (security_protocol SSL or SASL_SSL)
    security_protocol: SecurityProtocol = "PLAINTEXT"
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_check_hostname: bool = True
    # SASL (security_protocol SASL_PLAINTEXT or SASL_SSL)
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = ""
    sasl_password_file: str = ""  # read at start; takes the place of sasl_password
    # Dead letters (records Kafka can never accept): JSON lines in the agent's state directory,
    # in two generations of at most dead_letter_max_bytes / 2 each.
    dead_letter_max_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.bootstrap_servers:
            problems.append("bootstrap_servers: at least one host:port is required")
        for i, hp in enumerate(self.bootstrap_servers):
            m = _HOSTPORT.match(hp)
            if not m or not 0 < int(m.group(2)) < 65536:
                problems.append(f"bootstrap_servers[{i}]: expected host:port, got {hp!r}")
        if not _TOPIC.match(self.topic) or self.topic in (".", ".."):
            problems.append(f"topic: 1-249 characters of [A-Za-z0-9._-], got {self.topic!r}")
        for name in ("linger_ms", "dead_letter_max_bytes"):
            if getattr(self, name) < 0:
                problems.append(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "max_request_size", "max_inflight_bytes",
                     "delivery_timeout_ms", "request_timeout_ms", "connect_timeout_ms",
                     "reconnect_backoff_ms", "reconnect_backoff_max_ms"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.delivery_timeout_ms < self.request_timeout_ms + self.linger_ms:
            problems.append("delivery_timeout_ms: must be >= request_timeout_ms + linger_ms "
                            f"({self.request_timeout_ms + self.linger_ms})")
        if self.reconnect_backoff_max_ms < self.reconnect_backoff_ms:
            problems.append("reconnect_backoff_max_ms: must be >= reconnect_backoff_ms "
                            f"({self.reconnect_backoff_ms})")
        if self.retry_backoff_base_secs <= 0:
            problems.append("retry_backoff_base_secs: must be > 0")
        if self.retry_backoff_max_secs < self.retry_backoff_base_secs:
            problems.append("retry_backoff_max_secs: must be >= retry_backoff_base_secs")
        if self.client == "librdkafka":  # librdkafka's own ranges (it refuses the producer)
            if self.linger_ms > 900_000:
                problems.append(f"linger_ms: at most 900000 with client librdkafka, got "
                                f"{self.linger_ms}")
            if not 1000 <= self.max_request_size <= 1_000_000_000:
                problems.append("max_request_size: 1000..1000000000 with client librdkafka, "
                                f"got {self.max_request_size}")
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and not self.sasl_username:
            problems.append(f"sasl_username: required with security_protocol "
                            f"{self.security_protocol}")
        if sasl and not (self.sasl_password or self.sasl_password_file):
            problems.append("sasl_password: one of sasl_password or sasl_password_file is "
                            "required with SASL")
        if self.sasl_password and self.sasl_password_file:
            problems.append("sasl_password_file: give sasl_password or sasl_password_file, "
                            "not both")
        if not sasl and (self.sasl_username or self.sasl_password or self.sasl_password_file):
            problems.append("sasl_username: SASL settings need security_protocol SASL_PLAINTEXT "
                            "or SASL_SSL")
        tls = self.security_protocol in ("SSL", "SASL_SSL")
        if not tls and (self.ssl_cafile or self.ssl_certfile or self.ssl_keyfile):
            problems.append("ssl_cafile: TLS settings need security_protocol SSL or SASL_SSL")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            problems.append("ssl_certfile: ssl_certfile and ssl_keyfile go together")
        if problems:
            # The loader reports this under the table's key path (e.g. forward[0].kafka).
            raise ValueError("; ".join(problems))
