"""Checkpoint store: per-pipeline file offsets saved atomically with a checksum, keeping the
previous generation so a corrupt or truncated state file loses at most one save interval.

Format (`<state_dir>/<name>.json`, previous generation `<name>.json.1`):
    {"version": 1, "sha256": "<hex of the canonical JSON of entries>", "entries": {
        "<dev>:<ino>:<fingerprint>": {"dev": .., "ino": .., "fingerprint": "..", "path": "..",
                                      "offset": .., "head_hash": "..", "tail_hash": "..",
                                      "updated": ..}, ...}}
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

import prometheus_client

from opsagent.errors import RetriableError
from opsagent.state.atomic import fsync_dir, write_synced
from opsagent.telemetry.registry import PerRegistry

log = logging.getLogger("opsagent.checkpoints")

VERSION = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """How far one file was delivered. `head_hash`/`tail_hash` are the identity hashes of
    opsagent.sources.tail.identity (first min(offset, 256) bytes / up to 256 bytes before
    offset) used to detect inode reuse on restart."""

    dev: int
    ino: int
    fingerprint: str
    path: str
    offset: int
    head_hash: str
    tail_hash: str
    updated: float  # wall-clock seconds of the save

    @property
    def id(self) -> str:
        """The entry key: same text as str(FileKey(dev, ino, fingerprint))."""
        return f"{self.dev}:{self.ino}:{self.fingerprint}"


class _Metrics:
    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.writes = prometheus_client.Counter(
            "opsagent_checkpoint_writes_total", "Checkpoint files written",
            ["pipeline"], registry=registry)
        self.corrupt = prometheus_client.Counter(
            "opsagent_checkpoint_corrupt_total",
            "Checkpoint files found corrupt, truncated or with a bad checksum",
            ["pipeline"], registry=registry)
        self.errors = prometheus_client.Counter(
            "opsagent_checkpoint_errors_total", "Checkpoint saves that failed (I/O)",
            ["pipeline"], registry=registry)


_metrics = PerRegistry(_Metrics)


def _digest(entries: Any) -> str:
    canonical = json.dumps(entries, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode(entries: Mapping[str, Checkpoint]) -> bytes:
    """The file content for `entries` (canonical JSON with its checksum)."""
    raw = {k: dataclasses.asdict(v) for k, v in entries.items()}
    doc = {"version": VERSION, "sha256": _digest(raw), "entries": raw}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def decode(data: bytes) -> dict[str, Checkpoint]:
    """Parse and verify a checkpoint file; raises ValueError saying what is wrong."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise ValueError("not a version-1 checkpoint document")
    raw = doc.get("entries")
    if not isinstance(raw, dict) or doc.get("sha256") != _digest(raw):
        raise ValueError("checksum mismatch")
    out: dict[str, Checkpoint] = {}
    for k, v in raw.items():
        try:
            cp = Checkpoint(**v)
        except TypeError as e:
            raise ValueError(f"entry {k!r}: {e}") from None
        if cp.id != k or not isinstance(cp.offset, int) or cp.offset < 0:
            raise ValueError(f"entry {k!r} is inconsistent")
        out[k] = cp
    return out


class CheckpointStore:
    """One JSON file per pipeline under the agent state dir. Not thread-safe: one owner."""

    def __init__(
        self, state_dir: str, name: str, *, registry: prometheus_client.CollectorRegistry
    ) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"checkpoint name must match {_NAME_RE.pattern}, got {name!r}")
        self.state_dir = state_dir
        self.name = name
        self.path = os.path.join(state_dir, f"{name}.json")
        self.previous_path = self.path + ".1"
        self._tmp_path = self.path + ".tmp"
        m = _metrics(registry)
        self._writes = m.writes.labels(pipeline=name)
        self._corrupt = m.corrupt.labels(pipeline=name)
        self._errors = m.errors.labels(pipeline=name)
        self._current_valid: bool | None = None  # is self.path known good? None: check
        # Set by load(): checkpoint files existed but no generation was usable, so the state
        # of every file is unknown (a reader must not assume "new file": see TailSource).
        self.state_lost = False

    def load(self) -> dict[str, Checkpoint]:
        """Entries by id. A missing file gives {}; a corrupt/truncated/bad-checksum file is
        reported (log + opsagent_checkpoint_corrupt_total) and the previous generation used.
        When files exist but none is usable (corrupt or unreadable) it also gives {} and sets
        `state_lost`."""
        found_any = False
        self.state_lost = False
        for path in (self.path, self.previous_path):
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            except OSError as e:
                found_any = True
                log.error("cannot read checkpoint file",
                          extra={"component": "checkpoints", "file": path, "error": str(e)})
                self._corrupt.inc()
                continue
            found_any = True
            try:
                entries = decode(data)
                self._current_valid = path == self.path
                return entries
            except ValueError as e:
                log.error("corrupt checkpoint file, trying the previous generation",
                          extra={"component": "checkpoints", "file": path, "error": str(e)})
                self._corrupt.inc()
        self._current_valid = False if found_any else None
        if found_any:
            self.state_lost = True
            log.error("no valid checkpoint generation: starting without checkpoints",
                      extra={"component": "checkpoints", "file": self.path})
        return {}

    def save(self, entries: Mapping[str, Checkpoint]) -> None:
        """Atomic: temp file, fsync, rename (previous kept as .1), fsync of the directory.
        Raises opsagent.errors.RetriableError on I/O failure (e.g. disk full); the previous
        state files are left intact."""
        data = encode(entries)
        try:
            os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
            write_synced(self._tmp_path, data)
            # A valid current generation becomes the previous one; a corrupt one is dropped so
            # the previous generation stays a good fallback.
            valid = self._current_valid
            if valid is None:
                valid = self._is_valid(self.path)
            if valid:
                try:
                    os.replace(self.path, self.previous_path)
                except FileNotFoundError:
                    pass
            self._current_valid = None
            os.replace(self._tmp_path, self.path)
            fsync_dir(self.state_dir)
            self._current_valid = True
        except OSError as e:
            self._errors.inc()
            try:
                os.unlink(self._tmp_path)
            except OSError:
                pass
            kind = "disk full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "I/O error"
            raise RetriableError(f"cannot save checkpoints to {self.path}: {kind}: {e}") from e
        self._writes.inc()

    def _is_valid(self, path: str) -> bool:
        try:
            with open(path, "rb") as f:
                decode(f.read())
        except (OSError, ValueError):
            return False
        return True
