"""What a reload changes: a pure comparison of the running components' configs with the new
config's, so only what changed is stopped or started (checkpoints live on disk and survive)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

Key = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class ReloadPlan:
    stop: tuple[Key, ...]      # removed or changed: stopped (drained) first
    start: tuple[Key, ...]     # added or changed: started after the stops
    keep: tuple[Key, ...]      # unchanged: left running untouched

    @property
    def empty(self) -> bool:
        return not self.stop and not self.start


def plan_reload(running: Mapping[Key, Any], wanted: Mapping[Key, Any]) -> ReloadPlan:
    """`running`/`wanted`: component key -> the full effective config that built it (section
    plus anything global it depends on, e.g. state_dir and node identity)."""
    changed = [k for k in running if k in wanted and running[k] != wanted[k]]
    removed = [k for k in running if k not in wanted]
    added = [k for k in wanted if k not in running]
    keep = [k for k in running if k in wanted and running[k] == wanted[k]]
    return ReloadPlan(stop=tuple(removed + changed), start=tuple(changed + added),
                      keep=tuple(keep))
