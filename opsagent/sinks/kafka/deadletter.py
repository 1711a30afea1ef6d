"""The Kafka sink's dead-letter file: records Kafka can never accept, kept as JSON lines in the
agent's state directory, bounded in size.

One JSON object per line: ts (UTC, ISO 8601), pipeline, topic, key, end (file offset after the
record), reason (bounded label), error (the broker's message), headers ({name: text}, or
name -> {"b64": ...} for non-UTF-8 values), then "value" (text) or "value_b64" (bytes that are not
UTF-8), and "value_truncated": true when the value was cut to fit the size bound.

Size bound: two generations, `<name>.jsonl` and `<name>.jsonl.1`, each at most max_bytes / 2;
when the current one would pass that, it replaces the previous generation (which is discarded and
counted by the sink).
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opsagent.clock import Clock

if TYPE_CHECKING:
    from opsagent.sinks.kafka.records import OutRecord

log = logging.getLogger("opsagent.kafka")


def _text_or_b64(data: bytes) -> tuple[str, bool]:
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), True


def dead_letter_line(*, ts: float, pipeline: str, topic: str, key: str, end: int, reason: str,
                     error: str, headers: Sequence[tuple[str, bytes]], value: bytes,
                     max_value_bytes: int) -> bytes:
    """One dead letter as a JSON line (pure). The value is cut to `max_value_bytes`."""
    doc: dict[str, Any] = {
        "ts": datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z"),
        "pipeline": pipeline, "topic": topic, "key": key, "end": end,
        "reason": reason, "error": error,
    }
    hdrs: dict[str, Any] = {}
    for name, hv in headers:
        text, is_b64 = _text_or_b64(hv)
        hdrs[name] = {"b64": text} if is_b64 else text
    doc["headers"] = hdrs
    cut = value[:max(0, max_value_bytes)]
    text, is_b64 = _text_or_b64(cut)
    doc["value_b64" if is_b64 else "value"] = text
    if len(cut) < len(value):
        doc["value_truncated"] = True
        doc["value_bytes"] = len(value)
    return (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


class DeadLetterFile:
    """Appends dead letters to `<directory>/<name>.jsonl` with the two-generation bound."""

    def __init__(self, directory: str, name: str, max_bytes: int) -> None:
        self.directory = directory
        self.path = os.path.join(directory, f"{name}.jsonl")
        self.max_bytes = max_bytes
        self.discarded_generations = 0

    @property
    def generation_bytes(self) -> int:
        return self.max_bytes // 2

    def append(self, line: bytes) -> None:
        """Append one line (raises OSError). A line that alone exceeds a generation is written
        to an emptied file (the caller cuts values so this stays near the bound)."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(line) > self.generation_bytes:
            prev = self.path + ".1"
            if os.path.exists(prev):
                self.discarded_generations += 1
            os.replace(self.path, prev)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(line)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        finally:
            os.close(fd)


class DeadLetters:
    """Writes a record Kafka can never accept to the dead-letter file, with its metric and log
    line. `counter` is the sink's opsagent_kafka_dead_letter family (labels pipeline, reason)."""

    def __init__(self, file: DeadLetterFile, *, pipeline: str, topic: str, clock: Clock,
                 counter: Any) -> None:
        self.file = file
        self.pipeline = pipeline
        self.topic = topic
        self.clock = clock
        self.counter = counter

    def write(self, rec: OutRecord, reason: str, exc: BaseException) -> None:
        """Never raises: a dead letter that cannot be written is logged and counted
        (reason "write_failed"); the record is handled either way, Kafka will not take it."""
        self.counter.labels(self.pipeline, reason).inc()
        line = dead_letter_line(
            ts=self.clock.time(), pipeline=self.pipeline, topic=self.topic, key=rec.key,
            end=rec.end, reason=reason, error=str(exc), headers=rec.headers, value=rec.value,
            max_value_bytes=max(0, self.file.generation_bytes - 4096))
        extra: dict[str, Any] = {"component": "kafka", "pipeline": self.pipeline,
                                 "file": rec.key, "end": rec.end, "reason": reason,
                                 "error": str(exc)}
        before = self.file.discarded_generations
        try:
            self.file.append(line)
        except OSError as e:
            self.counter.labels(self.pipeline, "write_failed").inc()
            log.error("cannot write dead letter; record dropped",
                      extra={**extra, "write_error": str(e)})
            return
        if self.file.discarded_generations > before:
            self.counter.labels(self.pipeline, "generation_discarded").inc()
        log.warning("record sent to the dead-letter file", extra={**extra,
                                                                  "path": self.file.path})
