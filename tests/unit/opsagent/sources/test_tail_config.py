"""TailConfig / MultilineConfig validation through the config loader (key-path errors)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from opsagent.config.loader import from_dict
from opsagent.errors import ConfigErrors
from opsagent.sources.tail.config import MultilineConfig, TailConfig


@dataclasses.dataclass(frozen=True)
class Root:
    source: TailConfig


def test_valid_config_converts() -> None:
    cfg = from_dict(Root, {"source": {"include": ["/var/log/*.log"], "start_at": "end",
                                      "multiline": {"mode": "start", "pattern": "^\\d"}}})
    assert cfg.source.include == ("/var/log/*.log",)
    assert cfg.source.multiline == MultilineConfig(mode="start", pattern="^\\d")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "source.include: required key is missing"),
        ({"include": []}, "source: include must list at least one glob pattern"),
        ({"include": ["rel/*.log"]}, "source: include[0] must be an absolute path"),
        ({"include": ["/a"], "path_pattern": "(?P<x"}, "source: path_pattern: invalid regular"),
        ({"include": ["/a"], "max_line_bytes": 0}, "source: max_line_bytes must be > 0"),
        ({"include": ["/a"], "start_at": "middle"}, "source.start_at: must be one of"),
        ({"include": ["/a"], "multiline": {"pattern": "("}},
         "source.multiline: pattern: invalid regular expression"),
        ({"include": ["/a"], "multiline": {"max_lines": 0}},
         "source.multiline: max_lines must be >= 1"),
        ({"include": ["/a"], "read_chunk_bytes": 100, "max_read_ahead_bytes": 10},
         "source: max_read_ahead_bytes must be >= read_chunk_bytes"),
        ({"include": ["/a"], "bogus": 1}, "source.bogus: unknown key"),
    ],
    ids=["missing-include", "empty-include", "relative", "bad-regex", "zero-max-line",
         "bad-start-at", "bad-multiline-regex", "zero-max-lines", "read-ahead-small",
         "unknown-key"],
)
def test_invalid_config_names_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigErrors) as info:
        from_dict(Root, {"source": data})
    assert message in str(info.value)
