from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest

from opsagent.config.loader import from_dict, load_toml
from opsagent.errors import ConfigErrors


@dataclasses.dataclass(frozen=True)
class Inner:
    port: int = 8125
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, got {self.port}")


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str
    interval_secs: float = 10.0
    mode: Literal["a", "b"] = "a"
    tags: tuple[str, ...] = ()
    inner: Inner = dataclasses.field(default_factory=Inner)
    many: list[Inner] = dataclasses.field(default_factory=list)
    extra: dict[str, int] = dataclasses.field(default_factory=dict)
    maybe: int | None = None


def test_converts_nested_values() -> None:
    out = from_dict(
        Outer,
        {"name": "x", "interval_secs": 5, "tags": ["a"], "inner": {"port": 9},
         "many": [{"host": "h"}], "extra": {"k": 1}, "maybe": 3},
    )
    assert out == Outer(name="x", interval_secs=5.0, tags=("a",), inner=Inner(port=9),
                        many=[Inner(host="h")], extra={"k": 1}, maybe=3)
    assert isinstance(out.interval_secs, float)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, "name: required key is missing"),
        ({"name": "x", "bogus": 1}, "bogus: unknown key"),
        ({"name": 1}, "name: expected a string, got 1"),
        ({"name": "x", "interval_secs": "5"}, "interval_secs: expected a number"),
        ({"name": "x", "mode": "c"}, "mode: must be one of 'a', 'b'"),
        ({"name": "x", "inner": {"port": True}}, "inner.port: expected an integer"),
        ({"name": "x", "inner": {"port": 0}}, "inner: port must be 1..65535, got 0"),
        ({"name": "x", "many": [{}, {"hots": "h"}]}, "many[1].hots: unknown key"),
        ({"name": "x", "extra": {"k": "v"}}, "extra.k: expected an integer"),
        ({"name": "x", "tags": "a"}, "tags: expected an array"),
    ],
    ids=["missing", "unknown", "str-type", "float-type", "literal", "bool-not-int",
         "post-init", "list-path", "dict-path", "array-type"],
)
def test_errors_name_key_path(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigErrors) as exc:
        from_dict(Outer, data)
    assert any(expected in str(e) for e in exc.value.errors), str(exc.value)


def test_all_errors_reported_at_once() -> None:
    with pytest.raises(ConfigErrors) as exc:
        from_dict(Outer, {"name": 1, "bogus": 2, "inner": {"port": "x"}})
    assert len(exc.value.errors) == 3


def test_load_toml_names_file(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('name = "x"\n[inner]\nprot = 1\n')
    with pytest.raises(ConfigErrors) as exc:
        load_toml(str(p), Outer)
    assert str(exc.value).startswith(f"{p}: inner.prot: unknown key")


def test_load_toml_syntax_error_has_line(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('name = "x"\nfoo = = 1\n')
    with pytest.raises(ConfigErrors) as exc:
        load_toml(str(p), Outer)
    assert "line 2" in str(exc.value)
