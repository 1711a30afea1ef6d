"""Data flows one way (docs/architecture.md): sources -> processors -> sinks -> pipelines, and
none of them reaches up into the wiring (app, components, commands, cli). A static scan of every
import statement (module level, inside functions and under TYPE_CHECKING alike, relative ones
resolved) fails on an import from a lower layer into a higher one, and on any import cycle
between opsagent or gorun modules (a cycle hidden behind TYPE_CHECKING or a function-level import
is still two modules that cannot be read, tested or moved apart).

Known upward imports are listed in KNOWN with the issue that removes them; one that no longer
occurs fails `test_known_exceptions_still_occur`, so the list only ever shrinks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# Lowest first: a module may import its own layer and the layers before it.
LAYERS = ("sources", "processors", "sinks", "pipelines")
WIRING = ("app", "components", "commands", "cli")   # above every layer

# (importing module, imported module) -> why it is still there (none left since issue 9).
KNOWN: dict[tuple[str, str], str] = {}


def rank(module: str) -> int | None:
    """The layer of an `opsagent.*` module (len(LAYERS) for the wiring), None for the rest."""
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "opsagent":
        return None
    if parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    if parts[1] in WIRING:
        return len(LAYERS)
    return None


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, root: Path) -> set[str]:
    """Every module file `path` imports: `from X import y` is X.y when y is a module, else X."""
    module = module_name(path, root)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(_module_of(a.name, root) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.update(_module_of(f"{target}.{a.name}", root) for a in node.names)
    return out


def _module_of(name: str, root: Path) -> str:
    """The deepest module file a dotted name lies in: `opsagent.sinks.statsd.StatsdConfig` ->
    `opsagent.sinks.statsd`; a name outside `root` stays as it is."""
    parts = name.split(".")
    while parts:
        p = root.joinpath(*parts)
        if p.with_suffix(".py").is_file() or (p / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return name


def upward_imports(root: Path) -> set[tuple[str, str]]:
    """(importer, imported) for each import from a layer into a higher layer or the wiring."""
    found: set[tuple[str, str]] = set()
    for own, layer in enumerate(LAYERS):
        for path in sorted((root / "opsagent" / layer).rglob("*.py")):
            src = module_name(path, root)
            for target in imports(path, root):
                r = rank(target)
                if r is not None and r > own:
                    found.add((src, target))
    return found


def test_no_upward_import_between_layers() -> None:
    new = sorted(upward_imports(ROOT) - KNOWN.keys())
    assert not new, ("upward imports (a lower layer importing a higher one; docs/architecture.md"
                     " 'Packages'):\n" + "\n".join(f"  {a} imports {b}" for a, b in new))


def test_known_exceptions_still_occur() -> None:
    gone = sorted(KNOWN.keys() - upward_imports(ROOT))
    assert not gone, "fixed, remove from KNOWN:\n" + "\n".join(f"  {a} -> {b}" for a, b in gone)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for d in {p.parent for p in tmp_path.rglob("*.py")}:
        if not (d / "__init__.py").exists():
            (d / "__init__.py").write_text("")
    return tmp_path


@pytest.mark.parametrize(("files", "want"), [
    ({"opsagent/sources/a.py": "from opsagent.sinks.b import X\n", "opsagent/sinks/b.py": ""},
     {("opsagent.sources.a", "opsagent.sinks.b")}),
    ({"opsagent/sources/a.py": "def f():\n    import opsagent.pipelines.p\n",
      "opsagent/pipelines/p.py": ""},
     {("opsagent.sources.a", "opsagent.pipelines.p")}),
    ({"opsagent/processors/x/a.py": "from ...sinks import b\n", "opsagent/sinks/b.py": ""},
     {("opsagent.processors.x.a", "opsagent.sinks.b")}),
    ({"opsagent/sinks/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                             "    from opsagent.app import Agent\n", "opsagent/app.py": ""},
     {("opsagent.sinks.a", "opsagent.app")}),
    ({"opsagent/pipelines/a.py": "from opsagent.sources import s\nfrom opsagent.sinks.k import K"
                                 "\nimport opsagent.clock\n",
      "opsagent/sources/s.py": "", "opsagent/sinks/k.py": ""}, set()),
    ({"opsagent/sinks/a.py": "from opsagent.sinks.b import c\nfrom . import b\n",
      "opsagent/sinks/b.py": ""}, set()),
], ids=["absolute", "inside-a-function", "relative", "type-checking-into-wiring", "downward",
        "same-layer"])
def test_scan_finds_upward_imports(tmp_path: Path, files: dict[str, str],
                                   want: set[tuple[str, str]]) -> None:
    assert upward_imports(_tree(tmp_path, files)) == want


def cycles(root: Path, packages: tuple[str, ...] = ("opsagent", "gorun")) -> list[list[str]]:
    """The import cycles (strongly connected groups of more than one module) among the modules
    of `packages`, each sorted; every kind of import counts, as in `imports`."""
    graph: dict[str, set[str]] = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            mod = module_name(path, root)
            graph[mod] = {t for t in imports(path, root) if t.split(".")[0] in packages}
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:   # Tarjan's algorithm
        order[v] = low[v] = len(order)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in graph or w == v:
                continue
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in order:
            visit(v)
    return sorted(found)


# Import cycles still there (each sorted) -> why; the list only ever shrinks.
KNOWN_CYCLES: dict[tuple[str, ...], str] = {}


def test_no_import_cycles() -> None:
    new = [c for c in cycles(ROOT) if tuple(c) not in KNOWN_CYCLES]
    assert new == [], "import cycles (modules that import each other):\n" + "\n".join(
        "  " + " <-> ".join(c) for c in new)


def test_known_cycles_still_occur() -> None:
    found = {tuple(c) for c in cycles(ROOT)}
    gone = sorted(KNOWN_CYCLES.keys() - found)
    assert not gone, "fixed, remove from KNOWN_CYCLES:\n" + "\n".join(
        "  " + " <-> ".join(c) for c in gone)


@pytest.mark.parametrize(("files", "want"), [
    ({"opsagent/a.py": "from opsagent import b\n", "opsagent/b.py": "import opsagent.a\n"},
     [["opsagent.a", "opsagent.b"]]),
    ({"opsagent/rotation/loop.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                   "    from opsagent.rotation.service import S\n",
      "opsagent/rotation/service.py": "from opsagent.rotation import loop\n"},
     [["opsagent.rotation.loop", "opsagent.rotation.service"]]),
    ({"opsagent/p/config.py": "def f():\n    from opsagent.p.presets import effective\n",
      "opsagent/p/presets.py": "from opsagent.p.config import C\n",
      "opsagent/c.py": "from opsagent.p import config\n"},
     [["opsagent.p.config", "opsagent.p.presets"]]),
    ({"opsagent/a.py": "from opsagent import b\n", "opsagent/b.py": "import opsagent.clock\n",
      "opsagent/clock.py": ""}, []),
], ids=["direct", "type-checking", "function-level", "acyclic"])
def test_cycle_scan(tmp_path: Path, files: dict[str, str], want: list[list[str]]) -> None:
    (tmp_path / "gorun").mkdir()
    assert cycles(_tree(tmp_path, files)) == want
