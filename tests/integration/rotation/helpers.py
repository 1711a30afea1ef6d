"""Shared tree-building helpers for the rotation tests (real files in tmp dirs, run as root)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from opsagent.clock import FakeClock
from opsagent.rotation.config import RotateConfig
from opsagent.rotation.service import RotationService

NOW = 1_790_000_000.0


def make_service(root: Path, state: Path, clock: FakeClock | None = None, *,
                 registry: CollectorRegistry | None = None, **kw: Any) -> RotationService:
    base: dict[str, Any] = {"name": "t", "directories": (f"{root}/*/logs",), "keep": 3}
    base.update(kw)
    return RotationService(RotateConfig(**base), state_dir=str(state),
                           clock=clock or FakeClock(wall=NOW),
                           registry=registry or CollectorRegistry())


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, {"policy": "t", **labels}) or 0.0


def fingerprint(path: Path) -> tuple[int, int, str]:
    """Inode, size and content hash of a file outside the tree: must never change."""
    st = os.stat(path, follow_symlinks=False)
    return st.st_ino, st.st_size, hashlib.sha256(path.read_bytes()).hexdigest()


def outside_files(tmp_path: Path) -> dict[Path, tuple[int, int, str]]:
    out = tmp_path / "outside"
    out.mkdir(exist_ok=True)
    for name in ("secret", "app.log", "victim.log"):
        (out / name).write_bytes(b"do not touch\n" * 1000)
    return {p: fingerprint(p) for p in out.iterdir()}


def assert_untouched(before: dict[Path, tuple[int, int, str]]) -> None:
    for p, fp in before.items():
        assert fingerprint(p) == fp, f"{p} was modified"
    out_dir = next(iter(before)).parent
    assert {p.name for p in out_dir.iterdir()} == {p.name for p in before}
