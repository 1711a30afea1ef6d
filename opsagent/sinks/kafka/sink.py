"""The Kafka sink: delivers records with acks=all and idempotence, bounds what is in flight,
re-sends after failures in per-file order, and reports which file offsets Kafka acknowledged.

docs/kafka.md ("Delivery") states the rules: records stay here until acknowledged or
dead-lettered; a failure aborts the producer from its callback, then everything unacknowledged is
re-sent in file order by a new one after a backoff; a REJECT error is proven by sending the record
alone before it is dead-lettered; a FATAL one stops the sink. One caller thread uses submit /
poll_acked / close; kafka-python's sender thread only runs the callbacks. Producers are created
on a connector thread (opsagent/sinks/kafka/connect.py), so no caller ever blocks in a connection
attempt and close() keeps its deadline while Kafka is unreachable.

An outage (no producer can be created, a delivery failed for want of the cluster, records in
flight got no acknowledgement for STALL_SECS, or records wait for a connection attempt running
longer than that) is logged once when it starts and once when it
ends, with the pipeline's name, and shown by opsagent_kafka_unreachable.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
from collections.abc import Callable, Sequence

import prometheus_client

from opsagent.clock import Clock
from opsagent.errors import FatalError
from opsagent.sinks.kafka.config import KafkaSinkConfig
from opsagent.sinks.kafka.connect import Connector, ThreadConnector
from opsagent.sinks.kafka.deadletter import DeadLetterFile, DeadLetters
from opsagent.sinks.kafka.errors import Kind, classify
from opsagent.sinks.kafka.factory import create_producer
from opsagent.sinks.kafka.metrics import KafkaMetrics
from opsagent.sinks.kafka.producer import Producer, ProducerFactory
from opsagent.sinks.kafka.records import (
    Completion,
    Entry,
    Inbox,
    OutRecord,
    SinkClosed,
    SinkFull,
    backoff_secs,
)

__all__ = ["KafkaSink", "KafkaSinkConfig", "OutRecord", "SinkClosed", "SinkFull", "backoff_secs"]

log = logging.getLogger("opsagent.kafka")

_WAIT_SLICE_SECS = 0.05  # how often a blocked submit/close re-checks retries and the deadline
# Records in flight without any acknowledgement for this long: Kafka is taken as unreachable
# (the client retries inside until delivery_timeout_ms and says nothing to the sink meanwhile).
STALL_SECS = 5.0
# Failures that say the cluster could not be reached: the next producer's connection attempt
# paces itself (the client reconnects every reconnect_backoff_max_ms at most), so the sink
# waits no longer than that before it, and delivery resumes soon after the cluster is back.
_UNREACHABLE = frozenset({"timeout", "connection", "broker_unavailable"})
# poll_acked's notification comes once this fraction of the records in flight completed.
_NOTIFY_FRACTION = 8


class KafkaSink:
    def __init__(self, name: str, cfg: KafkaSinkConfig, *, clock: Clock,
                 registry: prometheus_client.CollectorRegistry,
                 rng: random.Random | None = None,
                 producer_factory: ProducerFactory | None = None,
                 connector: Connector | None = None,
                 dead_letter_dir: str) -> None:
        """`connector` (default: a ThreadConnector over `producer_factory`) is for tests that
        need connection attempts made inline (connect.InlineConnector)."""
        self.name = name
        self.cfg = cfg
        self._clock = clock
        self._rng = rng or random.Random()
        self._factory = producer_factory or create_producer
        self._connector: Connector = connector or ThreadConnector(name, self._factory,
                                                                  self._wake_up)
        self._m = KafkaMetrics.for_registry(registry, name)
        self._dead = DeadLetters(DeadLetterFile(dead_letter_dir, f"kafka-dead-letter-{name}",
                                                cfg.dead_letter_max_bytes),
                                 pipeline=name, topic=cfg.topic, clock=clock,
                                 counter=self._m.dead_letters)
        # The caller's state is guarded by _lock (never held while waiting); the client's
        # callbacks touch only the inbox (_done_q, _wake) and, via _on_failure, _abort_lock.
        self._lock = threading.Lock()
        self._abort_lock = threading.Lock()
        self._inbox = Inbox(self._on_failure)
        self._wake = self._inbox.wake
        self._done_q = self._inbox.done
        # Counted per record, added to the prometheus counters once per _pump (cheaper).
        self._n_sent = self._n_bytes = self._n_acked = 0
        self._key_bytes: dict[str, bytes] = {}
        self._topic = cfg.topic
        self._files: dict[str, collections.deque[Entry]] = {}
        self._acks: dict[str, int] = {}
        self._inflight_bytes = 0
        self._settled = False  # completions were taken since the handled prefixes were dropped
        self._producer: Producer | None = None
        self._gen = 0
        self._outstanding: collections.Counter[int] = collections.Counter()
        self._aborted: set[int] = set()  # generations whose producer was aborted
        self._fence_started = 0.0
        self._retry_at: float | None = None  # no producer: next attempt to create one
        self._attempt = 0  # consecutive failures without an acknowledgement in between
        self._needs_backoff = False  # the current fence follows a retriable failure
        self._fence_cause: str | None = None  # first failure of the current fence, for the log
        self._suspects = 0  # unhandled entries with suspect=True: isolation mode while > 0
        self._alone: Entry | None = None  # the one record in flight during isolation
        self._held = False  # records wait unsent because of isolation
        self._fatal: FatalError | None = None
        self._closed = False  # close() called: submit refuses, retries go on until the deadline
        self._released = False  # close() finished: no new producer
        self._outage_since: float | None = None  # Kafka unreachable since (monotonic)
        self._progress_at = clock.monotonic()  # last ack, or first send with nothing in flight
        self._fence_unreachable = False  # the current fence follows an unreachable cluster
        self._connect_started = 0.0  # when the current connection attempt began

    # ---- public interface ----------------------------------------------------------------

    def start(self) -> None:
        """Start connecting (on the connector's thread: this does not wait for Kafka). Raises
        FatalError when retrying cannot help (credentials, no idempotence, bad settings) and
        the connector already knows it; later, submit and poll_acked raise it."""
        with self._lock:
            self._retry_at = self._clock.monotonic()
            self._pump()
            self._raise_if_fatal()

    def submit(self, records: Sequence[OutRecord], timeout: float | None = None,
               stop: threading.Event | None = None) -> None:
        """Take `records` (each file's records in file order). Blocks while the sink holds
        max_inflight_bytes; raises SinkFull after `timeout` secs, SinkClosed if the sink is
        closed or `stop` is set meanwhile (both carry `.accepted`: the records taken, a prefix),
        FatalError after a fatal error. A taken record is never dropped; one not taken is
        after every taken record of its file, so a checkpoint never passes it."""
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        i = 0
        while True:
            self._wake.clear()
            with self._lock:
                self._pump()
                self._raise_if_fatal()
                if self._closed:
                    raise SinkClosed(i)
                i = self._accept(records, i)
                self._m.inflight_bytes.set(self._inflight_bytes)
                if i == len(records):
                    self._flush_counts()
                    return
                if stop is not None and stop.is_set():
                    raise SinkClosed(i)
                if deadline is not None and self._clock.monotonic() >= deadline:
                    raise SinkFull(i)
                slice_secs = self._wait_slice(deadline)
            self._wait(slice_secs)

    def poll_acked(self) -> list[tuple[str, int]]:
        """(file key, end offset) for each file whose handled prefix grew since the last call:
        every record of that file up to `end` is acknowledged by Kafka or dead-lettered.

        While records are held, set_notify's function is also called, once, when an eighth
        of the records in flight (at least one) completed after this call: a caller that now
        waits elsewhere (a source that stopped reading at its read-ahead bound until
        acknowledgements come back) is woken with a useful amount of them instead of sleeping
        out its timeout, and not per completion (each wake-up costs the caller an empty loop).
        Armed before the pump, so completions racing with it still count."""
        with self._lock:
            inbox = self._inbox
            if inbox.notify is not None and self._files:
                inbox.notify_after = max(1, self._outstanding[self._gen] // _NOTIFY_FRACTION)
            else:
                inbox.notify_after = 0
            self._pump()
            if not self._files:
                inbox.notify_after = 0
            self._raise_if_fatal()
            out = list(self._acks.items())
            self._acks.clear()
            return out

    def idle(self) -> bool:
        """Nothing held and nothing on a timer (no reconnect scheduled, no fence to finish):
        the caller may sleep until new records or set_notify's call (a connection attempt's
        outcome). Records held need the caller back within STALL_SECS-scale waits instead."""
        return not self._files and self._retry_at is None and not self._is_aborted(self._gen)

    def set_notify(self, notify: Callable[[], None]) -> None:
        """Called (from another thread) when the sink has news for an idle caller, and after
        poll_acked once part of what is in flight completed (see there)."""
        self._inbox.notify = notify

    @property
    def inflight_bytes(self) -> int:
        return self._inflight_bytes

    def pending_records(self) -> int:
        with self._lock:
            return sum(len(d) for d in self._files.values())

    def close(self, deadline_secs: float) -> None:
        """Wait up to `deadline_secs` for everything held to be handled (retrying as usual),
        then release the producer; what is still unacknowledged stays unacknowledged (the
        source's checkpoint has not passed it, so it is re-sent after a restart)."""
        self._closed = True
        self._wake.set()  # a submit blocked in another thread gives up (SinkClosed)
        deadline = self._clock.monotonic() + max(0.0, deadline_secs)
        # Each wait lasts at most one slice, so this also bounds the real time spent when the
        # injected clock does not move (a test's FakeClock).
        waits_left = int(max(0.0, deadline_secs) / _WAIT_SLICE_SECS) + 1
        while True:
            self._wake.clear()
            with self._lock:
                self._pump()
                if self._fatal is not None or not self._files or waits_left <= 0 \
                        or self._clock.monotonic() >= deadline:
                    break
                slice_secs = self._wait_slice(deadline)
            self._wait(slice_secs)
            waits_left -= 1
        with self._lock:
            self._released = True
            with self._abort_lock:
                producer, self._producer = self._producer, None
            unfinished = bool(self._files)
        # A connection attempt still running is not waited for (it may last connect_timeout_ms):
        # its producer, if it gets one, is closed by the connector.
        self._connector.abandon()
        if producer is not None:
            if unfinished:
                producer.abort()
            producer.close(max(0.0, min(5.0, deadline - self._clock.monotonic())))
        with self._lock:
            self._pump()

    # ---- internals (caller thread, under self._lock) -------------------------------------

    def _wake_up(self) -> None:
        """The connector's outcome is ready (its thread)."""
        self._wake.set()
        notify = self._inbox.notify
        if notify is not None:
            notify()

    def _wait(self, secs: float) -> None:
        """Wait for a completion (or `secs`). The flag is raised before the queue is checked, so
        a completion queued after the check finds it raised and sets the event."""
        self._inbox.waiting = True
        try:
            if not self._done_q:
                self._wake.wait(secs)
        finally:
            self._inbox.waiting = False

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    def _wait_slice(self, deadline: float | None) -> float:
        now = self._clock.monotonic()
        limits = [_WAIT_SLICE_SECS]
        if deadline is not None:
            limits.append(max(0.0, deadline - now))
        if self._retry_at is not None:
            limits.append(max(0.0, self._retry_at - now))
        return min(limits)

    def _accept(self, records: Sequence[OutRecord], i: int) -> int:
        """Take records[i:] while they fit in max_inflight_bytes (always one, however large,
        when nothing is held) and send them unless isolation holds them or there is no
        producer; returns the index of the first record not taken. One pass per batch: the
        per-record work here is the hot path of forwarding (issue 13)."""
        limit = self.cfg.max_inflight_bytes
        inflight = self._inflight_bytes
        files = self._files
        taken: list[Entry] = []
        append = taken.append
        n = len(records)
        last_key: str | None = None
        q: collections.deque[Entry] | None = None
        while i < n:
            rec = records[i]
            size = rec.size
            if inflight and inflight + size > limit:
                break
            inflight += size
            key = rec.key
            if key is not last_key or q is None:
                q = files.get(key)
                if q is None:
                    q = files[key] = collections.deque()
                last_key = key
            entry = Entry(rec)
            q.append(entry)
            append(entry)
            i += 1
        self._inflight_bytes = inflight
        if taken:
            if self._suspects:
                self._held = True
            elif self._producer is not None and not self._is_aborted(self._gen):
                self._send_many(taken)
        return i

    def _send(self, entry: Entry, *, alone: bool = False) -> None:
        if alone:
            self._alone = entry
        self._send_many((entry,), alone=alone)

    def _send_many(self, entries: Sequence[Entry], *, alone: bool = False) -> None:
        """Send `entries` (each file's in order) with the current producer; stops when it is
        aborted (a failure callback on the client's thread may do so meanwhile)."""
        producer = self._producer
        assert producer is not None
        send = producer.send
        gen = self._gen
        topic = self._topic
        aborted = self._aborted
        outstanding = self._outstanding
        inbox = self._inbox
        in_flight_before = outstanding[gen]
        sent = nbytes = retries = 0
        last_key: str | None = None
        key = b""
        for entry in entries:
            if gen in aborted:  # a set lookup is atomic; writers hold _abort_lock
                break
            if entry.gen >= 0:
                retries += 1
            entry.gen = gen
            entry.alone = alone
            rec = entry.rec
            if rec.key is not last_key:
                last_key = rec.key
                key = self._key_bytes.get(last_key) or self._encode_key(last_key)
            headers = rec.headers if type(rec.headers) is list else list(rec.headers)
            # One small object per send serves as its callback: fewer allocations per record
            # matter here (they drive the garbage collector on the hot path).
            done = Completion(inbox, entry, gen)
            try:
                send(topic, key=key, value=rec.value, headers=headers, on_done=done)
            except Exception as e:  # sorted by classify, the one place that knows kafka errors
                # Raised by send() itself, so about this record alone (client-side size check,
                # topic authorization from metadata): a REJECT is certain, the producer fine.
                entry.alone = True
                outstanding[gen] += 1
                done.exc = e
                self._done_q.append(done)
                if classify(e).kind is not Kind.REJECT:
                    self._abort(gen)
                continue
            sent += 1
            nbytes += len(rec.value)
        if sent:
            if not in_flight_before:  # nothing was in flight: waiting for an ack starts now
                self._progress_at = self._clock.monotonic()
            outstanding[gen] += sent
            self._n_sent += sent
            self._n_bytes += nbytes
        if retries:
            self._m.retries.inc(retries)

    def _encode_key(self, key: str) -> bytes:
        if len(self._key_bytes) >= 4096:  # bounded: only files with records in flight
            self._key_bytes.clear()
        b = self._key_bytes[key] = key.encode("utf-8", "surrogateescape")
        return b

    def _on_failure(self, gen: int) -> None:
        """A delivery of generation `gen` failed (the client's thread; the completion is
        queued already): abort the producer before it sends anything more. (After a
        non-retriable batch error kafka-python 3.x puts an idempotent producer in a fatal state
        and fails every other batch with the same error, so that error does not prove which
        record was bad: see _complete.)"""
        self._abort(gen)
        self._wake.set()

    def _is_aborted(self, gen: int) -> bool:
        return gen in self._aborted  # a set lookup is atomic; writers hold _abort_lock

    def _abort(self, gen: int) -> None:
        """Stop producer generation `gen` (any thread). Nothing of any file is sent by it after
        this, so no record can land behind a failed one of its file."""
        with self._abort_lock:
            if gen in self._aborted or gen != self._gen or self._producer is None:
                return
            self._aborted.add(gen)
            self._fence_started = self._clock.monotonic()
            producer = self._producer
        producer.abort()

    def _pump(self) -> None:
        """Process completions, finish a fence, (re)connect when due, collect acks."""
        producer = self._producer
        if producer is not None and (err := producer.poll_error()) is not None:
            self._producer_error(err)
        acked_before = self._n_acked
        if self._done_q:
            self._take_completions()
        now = self._clock.monotonic()
        if self._n_acked != acked_before:
            self._progress_at = now
            self._outage_end()
        elif self._outage_since is None and self._gen in self._outstanding \
                and now - self._progress_at > STALL_SECS:
            self._outage_begin(f"no acknowledgement for {STALL_SECS:g} s", now)
        elif self._outage_since is None and self._producer is None and self._files \
                and self._connector.busy and now - self._connect_started > STALL_SECS:
            # An attempt lasts up to connect_timeout_ms: records wait meanwhile; say so.
            self._outage_begin(f"no connection for {STALL_SECS:g} s", now)
        if self._producer is not None and self._is_aborted(self._gen):
            waited = now - self._fence_started
            if self._gen not in self._outstanding or waited > self.cfg.request_timeout_ms / 1000:
                self._drop_producer()
        if self._producer is None and self._fatal is None and not self._released:
            if self._retry_at is not None and self._clock.monotonic() >= self._retry_at:
                self._retry_at = None
                self._connect_started = now
                self._connector.begin(self.cfg)
            outcome = self._connector.take()
            if outcome is not None:
                self._connected(*outcome)
        elif self._producer is not None and self._alone is None and self._fatal is None \
                and not self._is_aborted(self._gen) and self._held:
            # The record sent alone is settled: the next one, or back to normal sending.
            self._dispatch()
        if self._settled:
            self._settled = False
            self._collect_acks()
        self._m.inflight_bytes.set(self._inflight_bytes)
        self._flush_counts()

    def _take_completions(self) -> None:
        """Process the queued completions: successes inline (the hot path), the rest by
        _complete."""
        pop = self._done_q.popleft
        gen = -1
        count = 0  # completions of generation `gen` not yet subtracted from outstanding
        acked = 0
        while True:
            try:
                done = pop()
            except IndexError:
                break
            if done.gen != gen:
                if count:
                    self._count_done(gen, count)
                gen, count = done.gen, 0
            count += 1
            entry = done.entry
            if done.exc is None:
                if entry.done:
                    continue
                if entry is self._alone and gen == entry.gen:
                    self._alone = None
                entry.done = True
                if entry.suspect:
                    entry.suspect = False
                    self._suspects -= 1
                acked += 1
            else:
                self._complete(entry, gen, done.exc)
        if count:
            self._count_done(gen, count)
        if acked:
            self._attempt = 0
            self._n_acked += acked
        self._settled = True

    def _count_done(self, gen: int, count: int) -> None:
        """`count` completions of generation `gen` arrived: fewer of its sends are in flight."""
        n = self._outstanding[gen] - count
        if n <= 0:
            self._outstanding.pop(gen, None)
        else:
            self._outstanding[gen] = n

    def _collect_acks(self) -> None:
        """Drop each file's handled prefix (acknowledged or dead-lettered) and note its end."""
        inflight = self._inflight_bytes
        for key in list(self._files):
            entries = self._files[key]
            if not entries[0].done:
                continue
            popleft = entries.popleft
            e = popleft()
            inflight -= e.size
            while entries and entries[0].done:
                e = popleft()
                inflight -= e.size
            self._acks[key] = e.rec.end
            if not entries:
                del self._files[key]
        self._inflight_bytes = inflight

    def _flush_counts(self) -> None:
        if self._n_sent:
            self._m.sent.inc(self._n_sent)
            self._m.bytes.inc(self._n_bytes)
            self._n_sent = self._n_bytes = 0
        if self._n_acked:
            self._m.acked.inc(self._n_acked)
            self._n_acked = 0

    def _complete(self, entry: Entry, gen: int, exc: BaseException | None) -> None:
        if entry.done:
            return
        if entry is self._alone and gen == entry.gen:
            self._alone = None
        if exc is None:
            self._settle(entry)
            self._attempt = 0
            self._n_acked += 1
            return
        if gen != entry.gen:
            return  # a newer send of this record exists
        verdict = classify(exc)
        if verdict.reason != "producer_aborted":  # not counted: the sink's own abort
            self._m.errors.labels(self.name, verdict.reason).inc()
            if self._fence_cause is None:
                self._fence_cause = f"{verdict.reason}: {exc}"
        if verdict.kind is Kind.REJECT and entry.alone:
            self._dead.write(entry.rec, verdict.reason, exc)
            self._settle(entry)
        elif verdict.kind is Kind.REJECT:
            # Maybe this record, maybe its batch or producer: prove it by sending it alone.
            if not entry.suspect:
                entry.suspect = True
                self._suspects += 1
        elif verdict.kind is Kind.FATAL:
            self._fail(FatalError(f"kafka sink {self.name}: {verdict.reason}: {exc}"))
        elif verdict.reason != "producer_aborted":
            # Stays unhandled: the next producer re-sends it (this one was aborted).
            if not self._needs_backoff:
                self._fence_unreachable = verdict.reason in _UNREACHABLE
            self._needs_backoff = True

    def _producer_error(self, err: BaseException) -> None:
        """An error the client reported about no record in particular (librdkafka's error
        callback): fatal ones stop the sink; the others show in the records' own outcomes."""
        verdict = classify(err)
        if verdict.kind is Kind.FATAL:
            self._fail(FatalError(f"kafka sink {self.name}: {verdict.reason}: {err}"))
        else:
            log.debug("kafka client error", extra={"component": "kafka", "pipeline": self.name,
                                                   "error": str(err)})

    def _settle(self, entry: Entry) -> None:
        entry.done = True
        if entry.suspect:
            entry.suspect = False
            self._suspects -= 1

    @property
    def _isolating(self) -> bool:
        return self._suspects > 0

    def _drop_producer(self) -> None:
        with self._abort_lock:
            producer, self._producer = self._producer, None
        self._alone = None
        if self._fence_unreachable:
            self._outage_begin(self._fence_cause or "delivery failed", self._clock.monotonic())
        # A fence only to isolate a suspect or after a dead letter reconnects at once.
        delay = self._schedule_retry(backoff=self._needs_backoff,
                                     unreachable=self._fence_unreachable)
        self._m.producer_resets.inc()
        # During an outage this is routine (it was logged once when it started).
        quiet = not self._needs_backoff or self._outage_since is not None
        log.log(logging.INFO if quiet else logging.WARNING,
                "kafka producer replaced; unacknowledged records are re-sent in file order",
                extra={"component": "kafka", "pipeline": self.name,
                       "error": self._fence_cause or "", "retry_in_secs": round(delay, 3),
                       "unacked_records": sum(len(d) for d in self._files.values()),
                       "isolating": self._suspects})
        self._needs_backoff = False
        self._fence_unreachable = False
        self._fence_cause = None
        if producer is not None:
            try:
                producer.close(0)
            except Exception as e:  # closing a dead producer must not stop the retry
                log.warning("closing the aborted producer failed",
                            extra={"component": "kafka", "pipeline": self.name, "error": str(e)})

    def _schedule_retry(self, *, backoff: bool, unreachable: bool = False) -> float:
        """When to try the next producer. After the cluster was unreachable, at most
        reconnect_backoff_max_ms: the attempt itself waits for the cluster (connect_timeout_ms,
        reconnecting at that pace), so waiting longer would only delay the resumption."""
        delay = 0.0
        if backoff:
            self._attempt += 1
            cap = self.cfg.retry_backoff_max_secs
            if unreachable:
                cap = min(cap, self.cfg.reconnect_backoff_max_ms / 1000)
            delay = backoff_secs(self._attempt, min(self.cfg.retry_backoff_base_secs, cap), cap,
                                 self._rng)
        self._retry_at = self._clock.monotonic() + delay
        return delay

    def _held_records(self) -> int:
        return sum(len(d) for d in self._files.values())

    def _outage_begin(self, cause: str, now: float) -> None:
        if self._outage_since is not None:
            return
        self._outage_since = now
        self._m.outages.inc()
        self._m.unreachable.set(1)
        log.warning("kafka unreachable; records are held and sent when it is back", extra={
            "component": "kafka", "pipeline": self.name, "error": cause,
            "bootstrap_servers": ",".join(self.cfg.bootstrap_servers),
            "held_records": self._held_records()})

    def _outage_end(self) -> None:
        if self._outage_since is None:
            return
        secs = self._clock.monotonic() - self._outage_since
        self._outage_since = None
        self._m.unreachable.set(0)
        log.warning("kafka reachable again; delivery resumed", extra={
            "component": "kafka", "pipeline": self.name, "outage_secs": round(secs, 3),
            "held_records": self._held_records()})

    def _connected(self, producer: Producer | None, error: Exception | None) -> None:
        """Take the outcome of a connection attempt: install the producer, or sort the error."""
        if error is not None or producer is None:
            e = error or RuntimeError("no producer")
            if isinstance(e, FatalError):
                self._fail(e)
                return
            verdict = classify(e)
            if verdict.kind is Kind.FATAL:
                self._fail(FatalError(f"kafka sink {self.name}: {verdict.reason}: {e}"))
                return
            self._m.errors.labels(self.name, verdict.reason).inc()
            self._outage_begin(f"{verdict.reason}: {e}", self._clock.monotonic())
            delay = self._schedule_retry(backoff=True, unreachable=True)
            log.debug("kafka unreachable; retrying", extra={
                "component": "kafka", "pipeline": self.name, "error": str(e),
                "retry_in_secs": round(delay, 3), "held_records": self._held_records()})
            return
        if not self._files:  # else the first acknowledgement proves the cluster is back
            self._outage_end()
        with self._abort_lock:
            self._gen += 1
            self._producer = producer
        self._retry_at = None
        self._dispatch()

    def _dispatch(self) -> None:
        """(Re-)send what this producer has not sent yet, each file in order. While suspects
        exist, only one record at a time: the next unhandled record of the first file holding a
        suspect, so a REJECT then is certainly about that record."""
        self._held = self._isolating
        if self._isolating:
            for entries in self._files.values():
                if any(e.suspect for e in entries):
                    head = next(e for e in entries if not e.done)
                    self._send(head, alone=True)
                    return
        gen = self._gen
        for entries in list(self._files.values()):
            if self._is_aborted(gen):
                return
            self._send_many([e for e in entries if not e.done and e.gen != gen])

    def _fail(self, err: FatalError) -> None:
        if self._fatal is None:
            self._fatal = err
            log.error("kafka sink stopped", extra={"component": "kafka", "pipeline": self.name,
                                                   "error": str(err)})
        self._abort(self._gen)
