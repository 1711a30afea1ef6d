"""Structured logging for opsagent: gorun/logsetup.py, which gorun shares (gorun must not import
opsagent), re-exported under the names opsagent's commands use."""

from __future__ import annotations

from gorun.logsetup import (
    COMPONENT_WIDTH,
    LEVEL_WIDTH,
    JsonFormatter,
    RateLimitFilter,
    TextFormatter,
    escape,
    fields,
    json_wanted,
    setup,
    text_value,
)

__all__ = ["COMPONENT_WIDTH", "LEVEL_WIDTH", "JsonFormatter", "RateLimitFilter", "TextFormatter",
           "escape", "fields", "json_wanted", "setup", "text_value"]
