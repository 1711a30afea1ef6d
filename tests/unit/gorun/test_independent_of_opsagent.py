"""gorun stands alone: opsagent may import gorun (the agent embeds GorunApp and shares its
logging and limits), never the reverse. A static scan of every import statement in gorun/
(module level, inside functions and under TYPE_CHECKING alike) fails on one that names opsagent,
so `gorun` can be packaged and run without opsagent."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def opsagent_imports(package: Path) -> list[str]:
    """`file:line module` for each import of opsagent (or a module under it) in `package`."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if name == "opsagent" or name.startswith("opsagent."):
                    found.append(f"{path.relative_to(package.parent)}:{node.lineno} {name}")
    return found


def test_gorun_imports_nothing_from_opsagent() -> None:
    found = opsagent_imports(ROOT / "gorun")
    assert not found, "gorun must not import opsagent (move the shared piece into gorun):\n" + \
        "\n".join(found)


@pytest.mark.parametrize(("source", "want"), [
    ("from opsagent.telemetry.jsonlog import RateLimitFilter\n",
     ["gorun/a.py:1 opsagent.telemetry.jsonlog"]),
    ("def f():\n    import opsagent.process_limits\n", ["gorun/a.py:2 opsagent.process_limits"]),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from opsagent import app\n",
     ["gorun/a.py:3 opsagent"]),
    ("import opsagentx\nfrom gorun.logsetup import setup\nfrom . import limits\n", []),
], ids=["module-level", "inside-a-function", "type-checking", "not-opsagent"])
def test_the_scan_finds_every_kind_of_import(tmp_path: Path, source: str,
                                             want: list[str]) -> None:
    (tmp_path / "gorun").mkdir()
    (tmp_path / "gorun" / "a.py").write_text(source)
    assert opsagent_imports(tmp_path / "gorun") == want
