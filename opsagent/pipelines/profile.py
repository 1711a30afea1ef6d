"""A running profile-statistics pipeline: TailSource -> ProfileProcessor -> statsd / Graphite,
on an injected clock. Intervals are sent `late_secs` after they end; stop() sends the rest."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

import prometheus_client

from opsagent.clock import Clock
from opsagent.pipelines.profile_config import ProfileConfig
from opsagent.processors.profile.processor import ProfileProcessor
from opsagent.samples import Interval
from opsagent.sinks.graphite import GraphiteSink
from opsagent.sinks.statsd import StatsdSink
from opsagent.sources.tail import Batch, Record, TailSource
from opsagent.state.checkpoints import CheckpointStore

log = logging.getLogger("opsagent.pipelines.profile")

# Lines per poll: large batches repeat the same (labels, latency) tuples more, and the parser
# counts identical tuples once (see opsagent.processors.profile.parse).
POLL_MAX_LINES = 65_536


class Sink(Protocol):
    def start(self) -> None: ...
    def send(self, interval: Interval) -> None: ...
    def tick(self) -> None: ...
    def busy(self) -> bool: ...   # tick() has work to do soon (a TCP backlog)
    def close(self) -> None: ...


class BatchSource(Protocol):
    def start(self) -> None: ...
    def poll_batches(self, max_lines: int = ..., timeout: float = ..., *,
                     idle_max: float = ...) -> list[Batch]: ...
    def wake(self) -> None: ...
    def flush_partial(self) -> list[Record]: ...
    def stop(self) -> None: ...


def build_sinks(cfg: ProfileConfig, *, clock: Clock,
                registry: prometheus_client.CollectorRegistry) -> list[Sink]:
    sinks: list[Sink] = []
    if cfg.statsd is not None:
        sinks.append(StatsdSink(cfg.name, cfg.statsd, clock=clock, registry=registry))
    if cfg.graphite is not None:
        sinks.append(GraphiteSink(cfg.name, cfg.graphite, clock=clock, registry=registry))
    return sinks


class ProfilePipeline:
    def __init__(self, cfg: ProfileConfig, *, clock: Clock,
                 registry: prometheus_client.CollectorRegistry,
                 checkpoints: CheckpointStore | None = None,
                 static_fields: Mapping[str, str] | None = None,
                 source: BatchSource | None = None,
                 sinks: Sequence[Sink] | None = None,
                 poll_timeout_secs: float = 0.5, error_backoff_secs: float = 1.0) -> None:
        self.cfg = cfg
        self.clock = clock
        # An event time more than one interval ahead of the clock is taken as the read time.
        self.processor = ProfileProcessor(cfg, registry, max_future_secs=cfg.interval_secs)
        self.source: BatchSource = source if source is not None else TailSource(
            f"profile-{cfg.name}", cfg.tail, checkpoints=checkpoints, clock=clock,
            registry=registry, static_fields=static_fields or {}, auto_ack=True,
            # Half a request line is a wrong latency plus a no_match: wait for its newline
            # however long the writer pauses (issue 10, defect 3).
            hold_partial_lines=True)
        self.sinks = list(sinks) if sinks is not None else build_sinks(
            cfg, clock=clock, registry=registry)
        self.poll_timeout = poll_timeout_secs
        self.error_backoff = error_backoff_secs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one run_once at a time (thread vs. stop())
        self._closed = False           # stop() has flushed and closed: nothing runs again

    def start(self, *, thread: bool = True) -> None:
        for s in self.sinks:
            s.start()
        self.source.start()
        if thread:
            self._thread = threading.Thread(target=self._loop, name=f"profile-{self.cfg.name}",
                                            daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as e:  # keep the pipeline alive; the error is logged and counted
                log.exception("profile pipeline iteration failed", extra={
                    "component": "profile", "pipeline": self.cfg.name, "error": str(e)})
                self._stop.wait(self.error_backoff)

    def run_once(self) -> int:
        """Poll once, aggregate, send the intervals that are due; returns lines processed."""
        with self._lock:
            if self._closed:
                return 0
            batches = self.source.poll_batches(POLL_MAX_LINES, self.poll_timeout,
                                               idle_max=self._idle_max())
            now = self.clock.time()
            n = 0
            for b in batches:
                lines = b.lines
                if b.cut:  # a cut line is counted as unparsed, never half-parsed
                    cut = set(b.cut)
                    lines = [x for i, x in enumerate(lines) if i not in cut]
                    self.processor.count_unparsed("truncated", len(cut), now)
                self.processor.process(b.key, lines, now, b.fields)
                n += len(b.lines)
            self._send(self.processor.flush(now - self.cfg.late_secs))
            for s in self.sinks:
                s.tick()
            return n

    def _idle_max(self) -> float:
        """How long the poll may sleep with no line arriving: until the earliest open interval
        is due (late_secs after its end), without limit when none is open; not at all beyond
        poll_timeout while a sink has a backlog to write (idle cost, issue 12)."""
        if any(s.busy() for s in self.sinks):
            return 0.0
        end = self.processor.next_end()
        if end is None:
            return math.inf
        return max(0.0, end + self.cfg.late_secs - self.clock.time())

    def _send(self, intervals: list[Interval]) -> None:
        for iv in intervals:
            for s in self.sinks:
                s.send(iv)

    def alive(self) -> bool:
        """True while the pipeline's thread runs (start(thread=True) until stop())."""
        t = self._thread
        return t is not None and t.is_alive()

    def stop(self, timeout_secs: float | None = None) -> bool:
        """Stop reading, send every open interval (partial ones too), close the sinks. A line
        still without its newline is not counted: the checkpoint stays before it and the next
        run counts it whole (only the last line of a deleted file is counted as it is).

        With `timeout_secs`, gives up once it has passed (an iteration stuck in a read or a
        send) and returns False; the thread then ends at its next check. The flush happens at
        most once. True when everything was flushed and closed in time."""
        self._stop.set()
        self.source.wake()   # the loop may sleep in an idle poll
        deadline = None if timeout_secs is None else time.monotonic() + max(0.0, timeout_secs)

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        if self._thread is not None:
            self._thread.join(left())
            if self._thread.is_alive():
                return False
            self._thread = None
        wait = left()
        if not self._lock.acquire(timeout=-1 if wait is None else wait):
            return False
        try:
            if self._closed:
                return True
            self._closed = True
            now = self.clock.time()
            by_file: dict[object, list[Record]] = {}
            for rec in self.source.flush_partial():  # last lines without a newline
                by_file.setdefault(rec.key, []).append(rec)
            for key, recs in by_file.items():
                self.processor.process(key, [r.data for r in recs], now, recs[0].fields)
            self.source.stop()
            self._send(self.processor.flush(None))
            for s in self.sinks:
                s.tick()  # TCP: one last non-blocking write
                s.close()
        finally:
            self._lock.release()
        return True
