"""Run the real `gorun` console script in a tmp dir and read its JSON logs as they come."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
GORUN = str(ROOT / ".venv" / "bin" / "gorun")
DEADLINE = 45.0

Record = dict[str, Any]


class Gorun:
    def __init__(self, tmp: Path, args: list[str], *, prefix: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.err_path = tmp / "gorun.stderr"
        self.out_path = tmp / "gorun.stdout"
        self._err = open(self.err_path, "wb")  # noqa: SIM115 (closed in close())
        self._out = open(self.out_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([*(prefix or []), GORUN, *args], stdout=self._out,
                                     stderr=self._err, cwd=tmp,
                                     env={**os.environ, **(env or {})})

    def records(self) -> list[Record]:
        out: list[Record] = []
        for line in self.err_path.read_text(errors="replace").splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(item, dict):
                out.append(item)
        return out

    def wait_for(self, pred: Callable[[list[Record]], bool], what: str,
                 timeout: float = DEADLINE) -> list[Record]:
        deadline = time.monotonic() + timeout
        while True:
            recs = self.records()
            if pred(recs):
                return recs
            if self.proc.poll() is not None:
                raise AssertionError(f"gorun exited ({self.proc.returncode}) before: {what}\n"
                                     + self.err_path.read_text()[-4000:])
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for: {what}\n"
                                     + self.err_path.read_text()[-4000:])
            time.sleep(0.05)

    def wait_msg(self, msg: str, n: int = 1, **fields: Any) -> list[Record]:
        def match(r: Record) -> bool:
            return r.get("msg") == msg and all(r.get(k) == v for k, v in fields.items())
        recs = self.wait_for(lambda rs: sum(map(match, rs)) >= n, f"{n}x {msg} {fields}")
        return [r for r in recs if match(r)]

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = DEADLINE) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._err.close()
        self._out.close()


def lines(recs: list[Record], job: str, stream: str = "stdout") -> list[str]:
    return [r["msg"] for r in recs if r.get("job") == job and r.get("stream") == stream]


def children_zombies(pid: int) -> list[int]:
    """Zombie processes whose parent is `pid`."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == pid and stat[0] == "Z":
            out.append(int(entry))
    return out


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                out.append(int(entry))
    return out
