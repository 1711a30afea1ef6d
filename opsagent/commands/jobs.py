"""Which of a config's jobs a runtime command runs: `opsagent forward`, `opsagent profile run`
and continuous `opsagent rotate` are `opsagent run` with a JobSelection (docs/architecture.md).

The selection is handed to the Agent as its job filter, so every config the agent applies,
the first and each reloaded one, is filtered the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opsagent.config import schema
from opsagent.reload import Key

# Table name, and the noun its entries are called in messages.
_TABLES = {"forward": ("[[forward]]", "pipeline"), "profile": ("[[profile]]", "pipelines"),
           "rotate": ("[[rotate]]", "policies")}


@dataclass(frozen=True)
class JobSelection:
    """Every job of `kind`, or only those named in `names` (empty: all of that kind)."""

    command: str                     # what the user typed, for messages: "opsagent forward"
    kind: str                        # "forward" | "profile" | "rotate"
    names: frozenset[str] = frozenset()

    def __call__(self, key: Key) -> bool:
        return key[0] == self.kind and (not self.names or key[1] in self.names)

    def problems(self, path: str, cfg: schema.AgentConfig) -> list[str]:
        """Why this selection cannot run with `cfg` (printed, exit 2): nothing of its kind is
        configured, or a name asked for is not."""
        table, noun = _TABLES[self.kind]
        configured = configured_names(cfg, self.kind)
        unknown = sorted(self.names - set(configured))
        if unknown:
            return [f"{path}: no {table} named {', '.join(unknown)}"]
        if not configured:
            return [f"{path}: no {table} {noun} configured"]
        return []


def configured_names(cfg: schema.AgentConfig, kind: str) -> Sequence[str]:
    if kind == "forward":
        return [f.name for f in cfg.forward]
    if kind == "profile":
        return [p.name for p in cfg.profile]
    return [r.name for r in cfg.rotate]


def runs_rotation(cfg: schema.AgentConfig, jobs: JobSelection | None) -> bool:
    """Whether an agent with this filter rotates (and so must hold the rotation lock)."""
    return any(jobs is None or jobs(("rotate", r.name)) for r in cfg.rotate)
