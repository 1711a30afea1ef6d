"""The Kafka sink's record type, its errors, the backoff rule, and the per-record bookkeeping."""

from __future__ import annotations

import collections
import random
import threading
from collections.abc import Callable

from opsagent.errors import RetriableError


class OutRecord:
    """One record for Kafka. `key` is the file's identity (str(FileKey)); `end` is the file
    offset just after this record, reported back by poll_acked once the record is handled.

    `size` is what it counts against max_inflight_bytes (record_size); a builder that knows it
    cheaply passes it (the forward pipeline: per file, the headers differ only in the offset),
    else it is computed here. Treated as immutable; a plain class with slots rather than a
    frozen dataclass because one is made per line (~0.15 against ~0.9 µs: issue 13)."""

    __slots__ = ("end", "headers", "key", "size", "value")

    def __init__(self, key: str, value: bytes, headers: list[tuple[str, bytes]], end: int,
                 size: int = -1) -> None:
        self.key = key
        self.value = value
        self.headers = headers
        self.end = end
        self.size = size if size >= 0 else record_size(key, value, headers)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OutRecord):
            return NotImplemented
        return (self.key == other.key and self.value == other.value
                and self.headers == other.headers and self.end == other.end)

    __hash__ = None  # type: ignore[assignment]  # equal by value, but headers is a list

    def __repr__(self) -> str:
        return (f"OutRecord(key={self.key!r}, value={self.value!r}, headers={self.headers!r}, "
                f"end={self.end!r})")


class SinkFull(RetriableError):
    """submit(timeout=...) passed its timeout; `accepted` records of the batch were taken."""

    def __init__(self, accepted: int) -> None:
        super().__init__(f"kafka sink full: accepted {accepted} records before the timeout")
        self.accepted = accepted


class SinkClosed(RetriableError):
    """The sink was closed while submit waited; `accepted` records of the batch were taken."""

    def __init__(self, accepted: int) -> None:
        super().__init__(f"kafka sink closed: accepted {accepted} records")
        self.accepted = accepted


def backoff_secs(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Delay before retry number `attempt` (1, 2, ...): base * 2^(attempt-1) capped at `cap`,
    then "equal jitter": half fixed, half uniform random (so retries of many agents spread)."""
    d = min(cap, base * float(2 ** min(max(attempt - 1, 0), 30)))
    return d / 2 + float(rng.uniform(0, d / 2))


class Entry:
    """The sink's state of one record it holds (a plain class: one is made per record)."""

    __slots__ = ("alone", "done", "gen", "rec", "size", "suspect")

    def __init__(self, rec: OutRecord) -> None:
        self.rec = rec
        self.size = rec.size
        self.gen = -1  # producer generation of its latest send; -1 = waiting to be sent
        self.done = False
        self.suspect = False  # failed with a REJECT error while not alone: not yet proven bad
        self.alone = False  # its latest send was the only record in flight (isolation)


def record_size(key: str, value: bytes, headers: list[tuple[str, bytes]]) -> int:
    """What a record counts against max_inflight_bytes (key, value, headers, and overhead)."""
    n = len(value) + len(key) + 16
    for k, v in headers:
        n += len(k) + len(v)
    return n


class Inbox:
    """Where completions arrive from the client's thread: `done` (deque.append is atomic) and
    the wake-up of a caller waiting for them (set only while `waiting`, so an idle sink is not
    woken per record); `on_failure(gen)` runs on that thread for every failed delivery. While
    `notify_after` > 0, the completion that makes `done` that long also calls `notify`, once
    (the sink's caller may be waiting on something else that only acknowledgements unblock:
    see KafkaSink.poll_acked)."""

    __slots__ = ("done", "notify", "notify_after", "on_failure", "wake", "waiting")

    def __init__(self, on_failure: Callable[[int], None]) -> None:
        self.done: collections.deque[Completion] = collections.deque()
        self.wake = threading.Event()
        self.waiting = False
        self.on_failure = on_failure
        self.notify: Callable[[], None] | None = None
        self.notify_after = 0


_NO_MSG = object()


class Completion:
    """The outcome of one send, called from the client's thread: kafka-python calls it with
    the record metadata (success) or the exception (failure); librdkafka with (error or None,
    message), its error turned into LibrdkafkaError. One object per record serves as its only
    callback and queue item (fewer allocations and calls per record: this runs for every line
    forwarded)."""

    __slots__ = ("entry", "exc", "gen", "inbox")

    def __init__(self, inbox: Inbox, entry: Entry, gen: int) -> None:
        self.inbox = inbox
        self.entry = entry
        self.gen = gen
        self.exc: BaseException | None = None

    def __call__(self, result: object, msg: object = _NO_MSG, /) -> None:
        if result is not None:  # else librdkafka's success
            if msg is not _NO_MSG:
                self.exc = LibrdkafkaError.of(result)
            elif isinstance(result, BaseException):
                self.exc = result
        inbox = self.inbox
        inbox.done.append(self)
        if self.exc is not None:
            inbox.on_failure(self.gen)
        elif inbox.waiting:
            inbox.wake.set()
        n = inbox.notify_after
        if n and len(inbox.done) >= n:
            inbox.notify_after = 0
            notify = inbox.notify
            if notify is not None:
                notify()


class LibrdkafkaError(Exception):
    """A librdkafka error (confluent_kafka.KafkaError) as an exception the sink can classify
    without importing confluent_kafka: its code's name (e.g. "_MSG_TIMED_OUT"), whether
    librdkafka calls it retriable or fatal, and its text."""

    def __init__(self, name: str, text: str, *, retriable: bool = False,
                 fatal: bool = False) -> None:
        super().__init__(f"{name}: {text}" if text else name)
        self.name = name
        self.retriable = retriable
        self.fatal = fatal

    @classmethod
    def of(cls, err: object) -> LibrdkafkaError:
        """From a confluent_kafka.KafkaError (or a KafkaException carrying one)."""
        args = getattr(err, "args", None)
        if isinstance(err, BaseException) and args and hasattr(args[0], "name"):
            err = args[0]
        get = getattr
        try:
            return cls(str(get(err, "name")()), str(get(err, "str")()),
                       retriable=bool(get(err, "retriable")()), fatal=bool(get(err, "fatal")()))
        except (AttributeError, TypeError):
            return cls("_UNKNOWN", str(err))
