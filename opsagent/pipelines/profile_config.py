"""Configuration of one profile-statistics pipeline (`[[profile]]` in the agent's TOML): the
processing keys (opsagent.processors.profile.config.ProfileSettings, which holds the `tail`
section) plus where the statistics go (statsd, graphite). Beside forward_config.py: a pipeline's
config composes its source's, processors' and sinks' configs, so it lives above all three."""

from __future__ import annotations

import dataclasses

from opsagent.processors.profile.config import ProfileSettings
from opsagent.sinks.graphite_config import GraphiteConfig
from opsagent.sinks.statsd_config import StatsdConfig


@dataclasses.dataclass(frozen=True)
class ProfileConfig(ProfileSettings):
    """One pipeline: files -> (unwrap) -> parse -> aggregate per interval -> statsd / graphite.
    config/profile.example.toml documents every key."""

    statsd: StatsdConfig | None = None
    graphite: GraphiteConfig | None = None
