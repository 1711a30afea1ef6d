"""The agent's whole configuration: one TOML file -> one frozen AgentConfig.

Each job adds its section here as a field whose type is the dataclass owned by that component
(for example `forward: list[ForwardConfig]`). The example documenting every key is
config/opsagent.example.toml.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping

from opsagent.config.loader import load_toml
from opsagent.pipelines.forward_config import ForwardConfig
from opsagent.pipelines.profile_config import ProfileConfig
from opsagent.rotation.config import RotateConfig


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    """Node identity; empty values are taken from the downward-API environment at start
    (NODE_NAME, POD_NAME, POD_NAMESPACE) by the command that wires the agent, not by components."""

    name: str = ""
    pod: str = ""
    namespace: str = ""


def static_fields(node: NodeConfig, env: Mapping[str, str]) -> dict[str, str]:
    """node/pod/namespace for every record: config first, then the downward-API environment;
    empty values are left out (a path_pattern group of the same name fills them per file)."""
    values = {
        "node": node.name or env.get("NODE_NAME", ""),
        "pod": node.pod or env.get("POD_NAME", ""),
        "namespace": node.namespace or env.get("POD_NAMESPACE", ""),
    }
    return {k: v for k, v in values.items() if v}


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def parse_listen(addr: str) -> tuple[str, int]:
    """ "127.0.0.1:9101", ":9101" (every IPv4 address), "[::1]:9101", "[::]:9101" (IPv6, and
    IPv4 too where the node allows dual-stack sockets), "localhost:9101" -> (host, port) with
    the brackets removed; port 0 picks a free one. Raises ValueError saying what is wrong."""
    example = "e.g. \"0.0.0.0:9101\", \":9101\" or \"[::1]:9101\""
    host, sep, port = addr.rpartition(":")
    if not sep:
        raise ValueError(f"must be HOST:PORT ({example}), got {addr!r}")
    if not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be HOST:PORT with a port from 0 to 65535 ({example}), "
                         f"got {addr!r}")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"HOST:PORT: {host} is not an IPv6 address, got {addr!r}") from None
        return host[1:-1], int(port)
    if ":" in host or "[" in host or "]" in host:
        raise ValueError(f"HOST:PORT: an IPv6 address needs brackets ({example}), got {addr!r}")
    if host and not _HOSTNAME.match(host):
        raise ValueError(f"HOST:PORT: {host!r} is not an IPv4 address or host name, "
                         f"got {addr!r}")
    return host or "0.0.0.0", int(port)


@dataclasses.dataclass(frozen=True)
class TelemetryConfig:
    log_level: str = "info"
    log_json: bool = False  # true: always JSON; false: JSON unless stderr is a terminal
    http_listen: str = ""  # "127.0.0.1:9101" serves /healthz /readyz /metrics; empty disables

    def __post_init__(self) -> None:
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError(f"log_level must be debug|info|warning|error, got {self.log_level!r}")
        if self.http_listen:
            try:
                parse_listen(self.http_listen)
            except ValueError as e:
                raise ValueError(f"http_listen: {e}") from None


@dataclasses.dataclass(frozen=True)
class CronConfig:
    """gorun inside the agent: crontab files (Debian crontab(5) format, docs/cron.md)."""

    crontabs: tuple[str, ...] = ()
    system: bool = False          # /etc/crontab form with a user column
    # On stop, running jobs get SIGTERM, then SIGKILL after this; None: 2 s less than the
    # agent's drain_deadline_secs (at least 1 s), so jobs never outlive the drain.
    grace_secs: float | None = None

    def __post_init__(self) -> None:
        if self.grace_secs is not None and self.grace_secs < 0:
            raise ValueError("grace_secs must be >= 0")


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    state_dir: str = "/var/lib/opsagent"
    node: NodeConfig = dataclasses.field(default_factory=NodeConfig)
    telemetry: TelemetryConfig = dataclasses.field(default_factory=TelemetryConfig)
    # On SIGTERM every job drains within this (keep it below the pod's grace period).
    drain_deadline_secs: float = 25.0
    cron: CronConfig = dataclasses.field(default_factory=CronConfig)
    # Job sections are added below by their components, one line each.
    rotate: list[RotateConfig] = dataclasses.field(default_factory=list)
    profile: list[ProfileConfig] = dataclasses.field(default_factory=list)
    forward: list[ForwardConfig] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.drain_deadline_secs <= 0:
            raise ValueError("drain_deadline_secs must be > 0")
        grace = self.cron.grace_secs
        if self.cron.crontabs and grace is not None and grace >= self.drain_deadline_secs:
            raise ValueError(f"cron.grace_secs ({grace:g}) must be below "
                             f"drain_deadline_secs ({self.drain_deadline_secs:g}): running jobs "
                             "would outlive the agent's drain")
        clash = {f.name for f in self.forward} & {f"profile-{p.name}" for p in self.profile}
        if clash:
            # Both keep their checkpoints in state_dir as <forward name>.json and
            # profile-<profile name>.json.
            raise ValueError(f"forward name(s) {', '.join(map(repr, sorted(clash)))} would share "
                             "a checkpoint file with a profile pipeline")
        for section in ("rotate", "profile", "forward"):
            names = [c.name for c in getattr(self, section)]
            dups = sorted({n for n in names if names.count(n) > 1})
            if dups:
                # Names key checkpoint and state files: two pipelines must never share one.
                raise ValueError(f"{section}: duplicate name(s) {', '.join(map(repr, dups))}")


def cron_grace_secs(cfg: AgentConfig) -> float:
    """The grace period running cron jobs get on stop, within the agent's drain deadline."""
    if cfg.cron.grace_secs is not None:
        return cfg.cron.grace_secs
    return max(1.0, cfg.drain_deadline_secs - 2.0)


def load(path: str) -> AgentConfig:
    """Load and validate the agent config; raises opsagent.errors.ConfigErrors."""
    return load_toml(path, AgentConfig)


def load_or_report(path: str) -> AgentConfig | None:
    """For commands: the config, or None after printing every problem (one per line, with
    file and key path) to stderr; the caller exits 2."""
    import sys

    from opsagent.errors import ConfigErrors

    try:
        return load(path)
    except ConfigErrors as e:
        for err in e.errors:
            print(err, file=sys.stderr)
        return None
