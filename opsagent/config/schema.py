"""The agent's whole configuration: one TOML file -> one frozen AgentConfig.

Each job adds its section here as a field whose type is the dataclass owned by that component
(for example `forward: list[ForwardConfig]`). The example documenting every key is
config/opsagent.example.toml.
"""

from __future__ import annotations

import dataclasses

from opsagent.config.loader import load_toml
from opsagent.pipelines.forward_config import ForwardConfig
from opsagent.processors.profile.config import ProfileConfig
from opsagent.rotation.config import RotateConfig


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    """Node identity; empty values are taken from the downward-API environment at start
    (NODE_NAME, POD_NAME, POD_NAMESPACE) by the command that wires the agent, not by components."""

    name: str = ""
    pod: str = ""
    namespace: str = ""


@dataclasses.dataclass(frozen=True)
class TelemetryConfig:
    log_level: str = "info"
    log_json: bool = True
    http_listen: str = ""  # "127.0.0.1:9101" serves /healthz /readyz /metrics; empty disables

    def __post_init__(self) -> None:
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError(f"log_level must be debug|info|warning|error, got {self.log_level!r}")


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    state_dir: str = "/var/lib/opsagent"
    node: NodeConfig = dataclasses.field(default_factory=NodeConfig)
    telemetry: TelemetryConfig = dataclasses.field(default_factory=TelemetryConfig)
    # Job sections are added below by their components, one line each.
    rotate: list[RotateConfig] = dataclasses.field(default_factory=list)
    profile: list[ProfileConfig] = dataclasses.field(default_factory=list)
    forward: list[ForwardConfig] = dataclasses.field(default_factory=list)


def load(path: str) -> AgentConfig:
    """Load and validate the agent config; raises opsagent.errors.ConfigErrors."""
    return load_toml(path, AgentConfig)
