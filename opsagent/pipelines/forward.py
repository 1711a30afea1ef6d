"""The forward pipeline: tailed lines -> Kafka records with metadata headers -> acknowledged
offsets back to the source, whose checkpoints therefore never pass an undelivered byte.

    TailSource.poll ──records──> build OutRecords ──submit──> KafkaSink
         ^                                                       │
         └──────────── ack(key, end) <──── poll_acked ───────────┘

One thread per pipeline runs `run(stop)`; setting `stop` starts the drain: intake stops, held
partial lines are flushed and sent, in-flight deliveries are awaited up to drain_timeout_secs,
then the sink is closed and the source saves its checkpoints. Memory stays bounded while Kafka
is down because the source reads at most `tail.max_read_ahead_bytes` per file beyond the acked
offset (docs/delivery.md).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import operator
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import prometheus_client

from opsagent.clock import Clock
from opsagent.errors import FatalError, RetriableError
from opsagent.pipelines.forward_config import ForwardConfig
from opsagent.pipelines.forward_lag import forward_lag
from opsagent.sinks.kafka import OutRecord, SinkClosed, SinkFull
from opsagent.sinks.kafka.records import record_size
from opsagent.sources.tail import FileKey, Record
from opsagent.telemetry.registry import PerRegistry

log = logging.getLogger("opsagent.forward")

# Header names, in the order they are attached to every record.
HEADER_FILE = "file"
HEADER_OFFSET = "offset"
HEADER_TIMESTAMP = "timestamp"
# Fields of the source (node, pod, namespace, path_pattern groups) come first, in this order
# when present, then any others sorted by name.
FIELD_ORDER = ("node", "pod", "namespace")

_KEY = operator.attrgetter("key")
_END = operator.attrgetter("end")
_VALUE = operator.attrgetter("value")
_HEADER_CACHE_MAX = 4096  # (file key, path) -> encoded field headers; cleared when full


class Source(Protocol):
    """What the pipeline needs from opsagent.sources.tail.TailSource."""

    def start(self) -> None: ...
    def poll(self, max_records: int = ..., timeout: float = ..., *,
             idle_max: float = ...) -> list[Record]: ...
    def wake(self) -> None: ...
    def discover(self) -> None: ...
    def ack(self, key: FileKey, end: int) -> None: ...
    def flush_partial(self) -> list[Record]: ...
    def stop(self) -> None: ...
    def pending_bytes(self) -> dict[str, int]: ...
    def pending_by_file(self) -> dict[tuple[int, int], int]: ...


class Sink(Protocol):
    """What the pipeline needs from opsagent.sinks.kafka.KafkaSink."""

    def start(self) -> None: ...
    def submit(self, records: Sequence[OutRecord], timeout: float | None = None) -> None: ...
    def poll_acked(self) -> list[tuple[str, int]]: ...
    def idle(self) -> bool: ...
    def set_notify(self, notify: Callable[[], None]) -> None: ...
    def close(self, deadline_secs: float) -> None: ...


class _Metrics:
    """The pipeline's metrics, created once per registry (pipelines share one and differ by
    the `pipeline` label)."""

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        lbl = ["pipeline"]
        self.records = prometheus_client.Counter(
            "opsagent_forward_records", "Records handed to the Kafka sink", lbl, registry=registry)
        self.bytes = prometheus_client.Counter(
            "opsagent_forward_bytes", "Line bytes handed to the Kafka sink", lbl,
            registry=registry)
        self.acks = prometheus_client.Counter(
            "opsagent_forward_acks", "Acknowledgements routed from the sink to the source", lbl,
            registry=registry)
        self.errors = prometheus_client.Counter(
            "opsagent_forward_errors", "Errors of the forward loop by kind", ["pipeline", "kind"],
            registry=registry)
        self.drain_unacked = prometheus_client.Counter(
            "opsagent_forward_drain_unacked_files",
            "Files with deliveries still unacknowledged when a drain deadline passed "
            "(re-sent after restart)", lbl, registry=registry)


_metrics = PerRegistry(_Metrics)


def field_headers(fields: Mapping[str, str]) -> list[tuple[str, bytes]]:
    """The source's fields as Kafka headers: node, pod, namespace first, then the rest by name."""
    names = [n for n in FIELD_ORDER if n in fields]
    names += sorted(n for n in fields if n not in FIELD_ORDER)
    return [(n, fields[n].encode("utf-8", "surrogateescape")) for n in names]


def json_value(rec: Record, timestamp_ms: int) -> bytes:
    """The JSON envelope of one record (value_format = "json"); lossless for invalid UTF-8."""
    doc: dict[str, object] = dict(rec.fields)
    try:
        doc["message"] = rec.data.decode("utf-8")
    except UnicodeDecodeError:
        doc["message"] = rec.data.decode("utf-8", "replace")
        doc["message_b64"] = base64.b64encode(rec.data).decode("ascii")
    doc["file"] = rec.path
    doc["offset"] = rec.start
    doc["timestamp_ms"] = timestamp_ms
    if rec.truncated:
        doc["truncated"] = True
    try:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        # A file name (or a path_pattern field taken from it) that is not valid UTF-8 reaches
        # us with surrogate escapes, which UTF-8 cannot encode: U+FFFD in the text, and the
        # path's exact bytes in "file_b64" (the `file` header has them too).
        for name, text in doc.items():
            if isinstance(text, str):
                doc[name] = _valid_text(text)
        raw = rec.path.encode("utf-8", "surrogateescape")
        if raw.decode("utf-8", "replace") != rec.path:
            doc["file_b64"] = base64.b64encode(raw).decode("ascii")
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _valid_text(text: str) -> str:
    """`text` with each surrogate escape (an undecodable byte of a name) as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class ForwardPipeline:
    """Runs one [[forward]] pipeline; `run(stop)` is the thread body (start_thread spawns it)."""

    def __init__(
        self,
        cfg: ForwardConfig,
        *,
        source: Source,
        sink: Sink,
        clock: Clock,
        registry: prometheus_client.CollectorRegistry,
        wait: Callable[[float], None] | None = None,
    ) -> None:
        """`wait(secs)` pauses the drain loop between ack checks (default: an Event wait; tests
        pass their fake clock's advance)."""
        self.cfg = cfg
        self._wait = wait or threading.Event().wait
        self.name = cfg.name
        self._source = source
        self._sink = sink
        self._clock = clock
        m = _metrics(registry)
        self._m_records = m.records.labels(cfg.name)
        self._m_bytes = m.bytes.labels(cfg.name)
        self._m_acks = m.acks.labels(cfg.name)
        self._m_errors = m.errors
        self._m_drain_unacked = m.drain_unacked.labels(cfg.name)
        self._lag = forward_lag(registry)
        # Last submitted end offset of every file with deliveries not yet acknowledged.
        self._outstanding: dict[str, int] = {}
        self._keys: dict[str, FileKey] = {}
        self._pending: list[OutRecord] = []  # built, not yet taken by the (full) sink
        self._headers: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
        self.drained_clean: bool | None = None  # after run(): every delivery acked in time?

    # ---- building records (pure apart from the cache) -------------------------------------

    def build(self, records: Sequence[Record], timestamp_ms: int) -> list[OutRecord]:
        """Kafka records for source records: key = file identity (one file -> one partition),
        value = line (or JSON envelope), headers = fields + file + offset + timestamp."""
        if self.cfg.value_format == "json":
            return self._build_json(records, timestamp_ms)
        out: list[OutRecord] = []
        append = out.append
        ts_header = (HEADER_TIMESTAMP, str(timestamp_ms).encode("ascii"))
        last_fk: FileKey | None = None
        last_path = ""
        key = ""
        prefix: list[tuple[str, bytes]] = []
        fixed = 0
        out_record = OutRecord
        # Record is a named tuple: unpacked without attribute lookups.
        for fk, path, start, end, data, _, fields in records:
            # Consecutive records of one file share their key and path objects: look up once.
            if fk is not last_fk or path is not last_path:
                last_fk, last_path = fk, path
                key, prefix = self._file_headers(fk, path, fields)
                # What every record of this file counts against the sink's in-flight bound
                # besides its value and offset digits (records.record_size, summed once).
                fixed = record_size(key, b"", [*prefix, (HEADER_OFFSET, b""), ts_header])
            offset = b"%d" % start
            append(out_record(key, data, [*prefix, (HEADER_OFFSET, offset), ts_header], end,
                              fixed + len(data) + len(offset)))
        return out

    def _build_json(self, records: Sequence[Record], timestamp_ms: int) -> list[OutRecord]:
        ts_header = (HEADER_TIMESTAMP, str(timestamp_ms).encode("ascii"))
        out: list[OutRecord] = []
        for rec in records:
            key, prefix = self._file_headers(rec.key, rec.path, rec.fields)
            out.append(OutRecord(key, json_value(rec, timestamp_ms),
                                 [*prefix, (HEADER_OFFSET, b"%d" % rec.start), ts_header],
                                 rec.end))
        return out

    def _file_headers(self, fk: FileKey, path: str,
                      fields: Mapping[str, str]) -> tuple[str, list[tuple[str, bytes]]]:
        """The record key of a file and its headers before offset and timestamp."""
        key = str(fk)
        cached = self._headers.get((key, path))
        if cached is None:
            if len(self._headers) >= _HEADER_CACHE_MAX:
                self._headers.clear()
            cached = field_headers(fields)
            cached.append((HEADER_FILE, path.encode("utf-8", "surrogateescape")))
            self._headers[(key, path)] = cached
        return key, cached

    # ---- the loop ---------------------------------------------------------------------------

    def start_thread(self, stop: threading.Event) -> threading.Thread:
        t = threading.Thread(target=self.run, args=(stop,), name=f"forward-{self.name}",
                             daemon=True)
        t.start()
        return t

    def run(self, stop: threading.Event) -> None:
        """Forward until `stop` is set, then drain (see module docstring). A FatalError of the
        sink propagates after the drain stopped the source (checkpoints saved)."""
        self.open()
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.drain()

    def wake(self) -> None:
        """End the current step's wait (stop requested, or the sink has news). Any thread."""
        self._source.wake()

    def open(self) -> None:
        """Start the sink, then the source (which loads checkpoints and scans the globs; log
        rotation may have made it scan already, see pending_by_file)."""
        self._sink.set_notify(self.wake)
        try:
            self._sink.start()
        except BaseException:
            self._source.stop()  # closes files a scan on rotation's request opened
            raise
        try:
            self._source.start()
        except BaseException:
            self._sink.close(0)
            raise
        self._lag.add(self.name, self.pending_bytes)

    def step(self) -> int:
        """One iteration: route acks; hand the sink what it could not take last time, else new
        lines. Returns the number of records the sink took.

        While the sink is full the source is not polled (memory stays bounded), but it still
        discovers files: one created and renamed out of the globs during an outage is opened
        and followed, so it is read once the sink has room (issue 10, defect 1)."""
        self.route_acks()
        if self._pending:
            taken = self._offer(self.cfg.poll_timeout_secs)
            try:
                self._source.discover()
            except (RetriableError, OSError) as e:
                self._error("source", e)
            return taken
        try:
            # With nothing held by the sink, nothing needs a timer here: the poll may sleep
            # until a file event, the source's own deadline, or wake() (stop, sink news).
            records = self._source.poll(self.cfg.max_batch_records, self.cfg.poll_timeout_secs,
                                        idle_max=math.inf if self._sink.idle() else 0.0)
        except RetriableError as e:
            self._error("source", e)
            return 0
        if not records:
            return 0
        self._pending = self.build(records, int(self._clock.time() * 1000))
        return self._offer(self.cfg.poll_timeout_secs)

    def _offer(self, timeout: float) -> int:
        """Submit the pending records, waiting at most `timeout` for room in the sink (so a
        stop request is seen promptly while Kafka is down). Returns how many were taken."""
        batch = self._pending
        try:
            self._sink.submit(batch, timeout=timeout)
            taken = len(batch)
        except (SinkFull, SinkClosed) as e:
            taken = e.accepted
        done = batch[:taken] if taken < len(batch) else batch
        # The last end per file (a dict keeps the last value of a key) and the value bytes,
        # both in C: this runs for every line forwarded.
        self._outstanding.update(zip(map(_KEY, done), map(_END, done), strict=True))
        nbytes = sum(map(len, map(_VALUE, done)))
        self._pending = batch[taken:]
        self._m_records.inc(taken)
        self._m_bytes.inc(nbytes)
        return taken

    def route_acks(self) -> int:
        """Pass the sink's acknowledgements to the source (which checkpoints them)."""
        acks = self._sink.poll_acked()
        for key, end in acks:
            fk = self._keys.get(key)
            if fk is None:
                fk = self._keys[key] = FileKey.parse(key)
            self._source.ack(fk, end)
            last = self._outstanding.get(key)
            if last is not None and end >= last:
                # Nothing of this file in flight: forget it (bounds both maps by open files).
                del self._outstanding[key]
                del self._keys[key]
        self._m_acks.inc(len(acks))
        return len(acks)

    def in_flight_files(self) -> int:
        return len(self._outstanding)

    def pending_bytes(self) -> dict[str, int]:
        """Per current path of every tailed file: bytes not yet delivered (unread, or read and
        not acknowledged by Kafka). Thread-safe: log rotation asks it from its own thread so
        it never deletes or compresses undelivered data."""
        return self._source.pending_bytes()

    def pending_by_file(self) -> dict[tuple[int, int], int]:
        """Like pending_bytes() but keyed by (st_dev, st_ino): rotation matches it against its
        own snapshot, so a rename between the two scans cannot hide undelivered bytes. Asked
        before the source started (Kafka still connecting), the source runs its first scan
        now: every file the globs match is opened and counts as undelivered until delivered."""
        return self._source.pending_by_file()

    def drain(self) -> None:
        """Stop intake, flush partial lines, wait for in-flight acks up to the deadline, close
        the sink, route the last acks, stop the source (which saves the checkpoints)."""
        deadline = self._clock.monotonic() + self.cfg.drain_timeout_secs
        fatal: FatalError | None = None
        try:
            try:
                held = self._source.flush_partial()
            except (RetriableError, OSError) as e:
                held = []
                self._error("drain", e)
            if held:  # after what the sink could not take yet: same file, later lines
                self._pending = [*self._pending, *self.build(held,
                                                             int(self._clock.time() * 1000))]
            while self._pending and self._clock.monotonic() < deadline:
                self.route_acks()
                self._offer(min(self.cfg.poll_timeout_secs,
                                max(0.0, deadline - self._clock.monotonic())))
            while self._outstanding:
                self.route_acks()
                left = deadline - self._clock.monotonic()
                if not self._outstanding or left <= 0:
                    break
                self._wait(min(0.05, left))
        except FatalError as e:
            fatal = e
        finally:
            try:
                self._sink.close(max(0.0, deadline - self._clock.monotonic()))
                self.route_acks()
            except FatalError as e:
                fatal = fatal or e
            finally:
                self.drained_clean = not self._outstanding and not self._pending
                if not self.drained_clean:
                    self._m_drain_unacked.inc(len(self._outstanding))
                    log.warning("drain deadline passed with deliveries in flight; they are "
                                "re-sent after restart",
                                extra={"component": "forward", "pipeline": self.name,
                                       "files": len(self._outstanding),
                                       "unsent_records": len(self._pending)})
                self._lag.remove(self.name, self.pending_bytes)
                self._source.stop()
        if fatal is not None:
            raise fatal

    def _error(self, kind: str, e: Exception) -> None:
        self._m_errors.labels(self.name, kind).inc()
        log.warning("forward error", extra={"component": "forward", "pipeline": self.name,
                                            "kind": kind, "error": str(e)})


def build(
    cfg: ForwardConfig,
    *,
    state_dir: str,
    static_fields: Mapping[str, str],
    clock: Clock,
    registry: prometheus_client.CollectorRegistry,
) -> ForwardPipeline:
    """Wire one pipeline from its config: checkpoint store and dead letters in `state_dir`."""
    from opsagent.sinks.kafka import KafkaSink
    from opsagent.sources.tail import TailSource
    from opsagent.state.checkpoints import CheckpointStore

    store = CheckpointStore(state_dir, cfg.name, registry=registry)
    source = TailSource(cfg.name, cfg.tail, checkpoints=store, clock=clock, registry=registry,
                        static_fields=static_fields)
    sink = KafkaSink(cfg.name, cfg.kafka, clock=clock, registry=registry,
                     dead_letter_dir=state_dir)
    return ForwardPipeline(cfg, source=source, sink=sink, clock=clock, registry=registry)
