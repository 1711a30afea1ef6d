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
from collections.abc import Mapping

import prometheus_client


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


class CheckpointStore:
    """One JSON file per pipeline under the agent state dir. Not thread-safe: one owner."""

    def __init__(
        self, state_dir: str, name: str, *, registry: prometheus_client.CollectorRegistry
    ) -> None:
        raise NotImplementedError

    def load(self) -> dict[str, Checkpoint]:
        """Entries by id. A missing file gives {}; a corrupt/truncated/bad-checksum file is
        reported (log + opsagent_checkpoint_corrupt_total) and the previous generation used."""
        raise NotImplementedError

    def save(self, entries: Mapping[str, Checkpoint]) -> None:
        """Atomic: temp file, fsync, rename (previous kept as .1), fsync of the directory.
        Raises opsagent.errors.RetriableError on I/O failure (e.g. disk full); the previous
        state files are left intact."""
        raise NotImplementedError
