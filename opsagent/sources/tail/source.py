"""TailSource makes a set of glob patterns look like one stream of records (lines) per file,
resumable from checkpoints that advance only as far as the consumer acknowledged."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import prometheus_client

from opsagent.clock import Clock
from opsagent.sources.tail.config import TailConfig
from opsagent.sources.tail.identity import FileKey
from opsagent.state.checkpoints import CheckpointStore


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """One line (or one joined multiline group) of one file."""

    key: FileKey
    path: str  # path at read time (may be a rotated name)
    start: int  # offset of the line's first byte
    end: int  # offset just past its newline (== start + len(line) for a timed-out partial line)
    data: bytes  # without the newline; multiline groups joined with b"\n"; maybe truncated
    truncated: bool  # data was cut at max_line_bytes (the whole span start..end was consumed)
    fields: Mapping[str, str]  # node, pod, namespace + path_pattern groups (shared per file)


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """Consecutive records of one file without a Record object per line (the fast path).

    lines[i] is the data of one record; the batch spans start..end (ack with `end`).
    `truncated` counts the lines cut at max_line_bytes."""

    key: FileKey
    path: str
    start: int
    end: int
    lines: list[bytes]
    truncated: int
    fields: Mapping[str, str]


class TailSource:
    """Tails the files selected by `cfg`, pull model: the caller's thread calls poll().

    Delivery: ack(key, end) tells the source that everything of that file up to `end` was
    delivered; only then may the checkpoint advance. With `auto_ack=True` (for consumers that
    do not need at-least-once, e.g. statistics) records count as acked when poll returns them.
    The source reads ahead of the acks by at most cfg.max_read_ahead_bytes per file.
    """

    def __init__(
        self,
        name: str,
        cfg: TailConfig,
        *,
        checkpoints: CheckpointStore | None,
        clock: Clock,
        registry: prometheus_client.CollectorRegistry,
        static_fields: Mapping[str, str] = {},  # read only
        auto_ack: bool = False,
        use_watchdog: bool = True,
    ) -> None:
        raise NotImplementedError

    def start(self) -> None:
        """Load checkpoints, scan the globs once, start watching (watchdog thread)."""
        raise NotImplementedError

    def poll(self, max_records: int = 10_000, timeout: float = 0.5) -> list[Record]:
        """Up to max_records new records, waiting up to `timeout` seconds when none is ready."""
        raise NotImplementedError

    def poll_batches(self, max_lines: int = 10_000, timeout: float = 0.5) -> list[Batch]:
        """Like poll() but grouped per file run (cheaper for high line rates)."""
        raise NotImplementedError

    def ack(self, key: FileKey, end: int) -> None:
        """Everything of file `key` up to byte `end` is delivered (acks come in order per file).
        Thread-safe. Unknown keys (file retired) are ignored."""
        raise NotImplementedError

    def flush_partial(self) -> list[Record]:
        """At shutdown: emit held partial lines and multiline groups."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop watching, save checkpoints, close files."""
        raise NotImplementedError

    def save_checkpoints(self) -> None:
        """Save acked offsets now (poll() does it every cfg.checkpoint_interval_secs)."""
        raise NotImplementedError

    def pending_bytes(self) -> dict[str, int]:
        """Per current path of every open file: bytes read but not acked + bytes not yet read.
        Thread-safe; rotation uses it to avoid deleting undelivered data."""
        raise NotImplementedError
