"""Shared setup for the tail-source tests: a source over a tmp dir driven by a FakeClock."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prometheus_client

from opsagent.clock import FakeClock
from opsagent.sources.tail import Record, TailConfig, TailSource
from opsagent.state.checkpoints import CheckpointStore


@dataclasses.dataclass
class Env:
    logs: Path
    state: Path
    clock: FakeClock
    registry: prometheus_client.CollectorRegistry
    sources: list[TailSource] = dataclasses.field(default_factory=list)

    def source(self, *, include: tuple[str, ...] = ("*.log",), checkpoints: bool = True,
               start: bool = True, name: str = "p", **kw: Any) -> TailSource:
        src_kw = {k: kw.pop(k) for k in ("auto_ack", "static_fields", "use_inotify") if k in kw}
        src_kw.setdefault("use_inotify", False)
        cfg = TailConfig(include=tuple(str(self.logs / p) for p in include), **kw)
        store = CheckpointStore(str(self.state), name, registry=self.registry) \
            if checkpoints else None
        src = TailSource(name, cfg, checkpoints=store, clock=self.clock,
                         registry=self.registry, **src_kw)
        if start:
            src.start()
        self.sources.append(src)
        return src

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, {"pipeline": "p", **labels})
        return value or 0.0

    def write(self, name: str, data: bytes, mode: str = "ab") -> Path:
        path = self.logs / name
        with open(path, mode) as f:
            f.write(data)
        return path

    def rescan(self) -> None:
        """Let the periodic rescan run at the next poll."""
        self.clock.advance(10.0)


def drain(src: TailSource, *, ack: bool = True, rounds: int = 20) -> list[Record]:
    """Poll until nothing more comes (no waiting), acking every record when `ack`."""
    out: list[Record] = []
    for _ in range(rounds):
        got = src.poll(timeout=0)
        if not got:
            break
        out.extend(got)
        if ack:
            for r in got:
                src.ack(r.key, r.end)
    return out


def lines(records: list[Record]) -> list[bytes]:
    return [r.data for r in records]


def make_env(tmp_path: Path) -> Iterator[Env]:
    logs = tmp_path / "logs"
    logs.mkdir()
    env = Env(logs, tmp_path / "state", FakeClock(), prometheus_client.CollectorRegistry())
    yield env
    for src in env.sources:
        try:
            src.stop()
        except OSError:
            pass


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))
