"""Every example config in config/ must load cleanly: the docs and the code agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsagent.config import schema

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "config").glob("*.toml"))


def test_there_are_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_config_loads(path: Path) -> None:
    schema.load(str(path))
