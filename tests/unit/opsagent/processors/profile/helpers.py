"""Builders for profile test configs."""

from __future__ import annotations

from typing import Any

from opsagent.config.loader import from_dict
from opsagent.pipelines.profile_config import ProfileConfig


def profile(**keys: Any) -> ProfileConfig:
    data: dict[str, Any] = {"name": "t", "tail": {"include": ["/logs/*.log"]}}
    data.update(keys)
    return from_dict(ProfileConfig, data)
