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


def _keys(cls: type, prefix: str = "") -> list[str]:
    """Every TOML key path of a config dataclass, nested tables and arrays of tables included."""
    import dataclasses
    import typing

    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f.metadata.get("key", f.name)
        out.append(prefix + key)
        tp = hints[f.name]
        for cand in (tp, *typing.get_args(tp)):
            if dataclasses.is_dataclass(cand):
                out += _keys(cand, f"{prefix}{key}.")  # type: ignore[arg-type]
    return out


def test_complete_example_documents_every_key() -> None:
    import re

    text = (Path(__file__).resolve().parents[3] / "config" / "opsagent.example.toml").read_text()
    missing = [k for k in _keys(schema.AgentConfig)
               if not re.search(rf"^\s*#?\s*{re.escape(k.rsplit('.', 1)[-1])}\s*=", text, re.M)
               # a table is documented by its header (one section's, where several share it)
               and not re.search(rf"^\s*\[\[?[\w.]*\b{re.escape(k.rsplit('.', 1)[-1])}\]\]?\s*$",
                                 text, re.M)]
    assert missing == []
