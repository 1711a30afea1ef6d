"""Configuration of one forward pipeline (`[[forward]]` in the agent's TOML): which files, which
Kafka topic, and how the pipeline batches, reports and drains."""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

from opsagent.sinks.kafka.config import KafkaSinkConfig
from opsagent.sources.tail.config import TailConfig

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclasses.dataclass(frozen=True)
class ForwardConfig:
    """One file-to-Kafka pipeline. `name` names its checkpoint file and its metrics label."""

    name: str
    tail: TailConfig
    kafka: KafkaSinkConfig
    # "line": the record value is the line's bytes as read (invalid UTF-8 passed through).
    # "json": {"message", "file", "offset", "timestamp_ms", + node/pod/namespace/path fields};
    # a line that is not valid UTF-8 gets "message" with U+FFFD and the exact bytes in
    # "message_b64".
    value_format: Literal["line", "json"] = "line"
    max_batch_records: int = 2000  # records taken from the source per poll
    poll_timeout_secs: float = 0.2  # how long one poll waits for new lines (bounds ack latency)
    drain_timeout_secs: float = 30.0  # on stop: flush partial lines, wait for acks this long

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"name must be 1-64 characters of [A-Za-z0-9_.-] (it names the checkpoint "
                f"file), got {self.name!r}"
            )
        if self.max_batch_records < 1:
            raise ValueError(f"max_batch_records must be >= 1, got {self.max_batch_records}")
        if self.poll_timeout_secs <= 0:
            raise ValueError(f"poll_timeout_secs must be > 0, got {self.poll_timeout_secs}")
        if self.drain_timeout_secs < 0:
            raise ValueError(f"drain_timeout_secs must be >= 0, got {self.drain_timeout_secs}")
