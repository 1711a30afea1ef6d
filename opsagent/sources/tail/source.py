"""TailSource makes a set of glob patterns look like one stream of records (lines) per file,
resumable from checkpoints that advance only as far as the consumer acknowledged."""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Mapping

import prometheus_client

from opsagent.clock import Clock
from opsagent.errors import RetriableError
from opsagent.sources.tail.config import TailConfig
from opsagent.sources.tail.discovery import Matcher, Waker
from opsagent.sources.tail.due import next_due
from opsagent.sources.tail.fileset import FileSet
from opsagent.sources.tail.identity import FileKey, head_hash, tail_hash
from opsagent.sources.tail.metadata import PathFields
from opsagent.sources.tail.metrics import tail_metrics
from opsagent.sources.tail.reader import Seg, TailedFile
from opsagent.sources.tail.records import Batch, Record, to_batches, to_records
from opsagent.sources.tail.retire import finished_reading, plan
from opsagent.state.checkpoints import Checkpoint, CheckpointStore

log = logging.getLogger("opsagent.tail")

__all__ = ["Batch", "Record", "TailSource"]

_EVENT_RESCAN_SECS = 0.25


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
        use_inotify: bool = True,
        hold_partial_lines: bool = False,
    ) -> None:
        """`hold_partial_lines`: a last line without newline is never emitted because of
        partial_line_timeout_secs, only when its file ended (deleted, or rotated out and
        idle): for consumers to whom half a line is a wrong value (profile statistics)."""
        self.name = name
        self._cfg = cfg
        self._store = checkpoints
        self._clock = clock
        self._auto_ack = auto_ack
        self._use_inotify = use_inotify
        self._matcher = Matcher(cfg.include, cfg.exclude)
        self._fields = PathFields(static_fields, cfg.path_pattern)
        self._waker = Waker(self._matcher)
        self._lock = threading.Lock()
        m = tail_metrics(registry)
        self._set = FileSet(name, cfg, clock, self._matcher, self._fields, m)
        self._set.hold_partial = hold_partial_lines
        self._started = False
        self._scanned = False  # the first scan (_first_scan) is done
        self._stopped = False  # stop() ran: files closed, pending_* report the globs' files
        self._at_stop: dict[tuple[int, int], int] = {}  # ... and what was pending at stop()
        self._last_saved: dict[str, tuple[int, str]] = {}
        self._next_rescan = self._next_save = self._last_rescan = 0.0
        self._next_first = 0  # index of the file the next poll reads first
        self._m_bytes = m.bytes.labels(pipeline=name)

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Load checkpoints, scan the globs once, start watching (inotify thread)."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._first_scan()
        if self._use_inotify:
            self._waker.start()

    def _first_scan(self) -> None:
        """Load checkpoints and open every file the globs match (once; under the lock).

        start() runs it, and so does the first pending_by_file()/pending_bytes() call if it
        comes earlier (rotation asking while the pipeline still connects to Kafka): until this
        scan every file of ours is undelivered, and once it is done every file is held open
        and followed through renames, so rotation cannot destroy what was never read
        (issue 10, defect 4)."""
        if self._scanned:
            return
        loaded = self._store.load() if self._store is not None else {}
        if self._store is not None and self._store.state_lost and self._set.start_at_end:
            # Every generation corrupt: files present now may hold lines written while the
            # agent was down. Read them from the start: duplicates instead of loss.
            self._set.start_at_end = False
            log.warning("checkpoints lost: reading present files from their start despite "
                        "start_at = \"end\"",
                        extra={"component": "tail", "pipeline": self.name})
        self._set.resume_from = {(cp.dev, cp.ino): cp for cp in loaded.values()}
        # Files renamed away while the agent was down are older: open (and read) them first.
        self._set.find_renamed_while_stopped()
        now = self._clock.monotonic()
        self._set.orphans_until = now + self._cfg.deleted_file_max_secs
        self._set.rescan(initial=True)
        self._last_rescan = now
        self._next_rescan = now + self._cfg.rescan_interval_secs
        self._next_save = now + self._cfg.checkpoint_interval_secs
        self._scanned = True
        # Saved at once: a file found now and renamed out of the globs before the first
        # periodic save (rotation at start, a crash, a stop stuck in a Kafka connect) is found
        # again by its inode after a restart.
        self._save()

    def stop(self) -> None:
        """Stop watching, save checkpoints, close files."""
        self._waker.stop()
        with self._lock:
            if self._started:
                # A last scan gives files created since the last one a checkpoint (offset 0):
                # if they are rotated out of the globs while the agent is down, the restart
                # finds them by inode and reads them.
                self._set.rescan(initial=False)
            self._save()
            # What was not delivered stays reported after the files are closed: rotation must
            # not destroy it before the next run (or the pipeline replacing this one) has it.
            self._at_stop = {(f.key.dev, f.key.ino): n for f, n in self._pending() if n}
            for f in list(self._set.files.values()):
                self._set.close(f)
            self._started = False
            self._stopped = True

    # ---- reading --------------------------------------------------------------------------

    def poll(self, max_records: int = 10_000, timeout: float = 0.5, *,
             idle_max: float = 0.0) -> list[Record]:
        """Up to max_records new records, waiting up to `timeout` seconds when none is ready.

        `idle_max` > `timeout`: the caller has nothing to do on a timer for that long (its sink
        is idle: math.inf), so when inotify covers every tailed directory the wait lasts until
        an event (a write, a rename, an ack freeing read-ahead, wake()) or the source's own next
        deadline (rescan, checkpoint save, partial-line and rotated-file timeouts: due.py), at
        most `idle_max`, never less than `timeout`. An idle agent then does not wake up."""
        return to_records(self._poll_segs(max_records, timeout, idle_max))

    def poll_batches(self, max_lines: int = 10_000, timeout: float = 0.5, *,
                     idle_max: float = 0.0) -> list[Batch]:
        """Like poll() but grouped per file run (cheaper for high line rates)."""
        return to_batches(self._poll_segs(max_lines, timeout, idle_max))

    def wake(self) -> None:
        """End a poll's wait now (a stop request, new work for the caller). Any thread."""
        self._waker.wake.set()

    def flush_partial(self) -> list[Record]:
        """At shutdown: emit what is held (partial line, multiline group) of files that ended
        for good: deleted and read to their end, so no restart could read them again. A live
        file's held bytes are not emitted because of a shutdown (issue 10, defect 3): they stay
        unacknowledged, the checkpoint stays before them, and the restart reads the line whole
        (with its rest, if the writer finishes it meanwhile)."""
        with self._lock:
            out: list[tuple[TailedFile, list[Seg]]] = []
            for f in self._set.files.values():
                if f.fd >= 0 and f.deleted_and_read():
                    f.flush_all()
                self._take(f, 1 << 62, out)
        return to_records(out)

    def ack(self, key: FileKey, end: int) -> None:
        """Everything of file `key` up to byte `end` is delivered (acks come in order per file).
        Thread-safe. Unknown keys (file retired) are ignored."""
        with self._lock:
            f = self._set.by_key.get(key)
            if f is not None and end > f.acked:
                capped = f.pos - f.acked >= self._cfg.max_read_ahead_bytes
                f.acked = min(end, f.emitted)
                if capped:
                    self._waker.wake.set()  # a poll waiting for data can read again

    def save_checkpoints(self) -> None:
        """Save acked offsets now (poll() does it every cfg.checkpoint_interval_secs)."""
        with self._lock:
            self._save()

    def pending_bytes(self) -> dict[str, int]:
        """Per current path of every open file: bytes read but not acked + bytes not yet read.
        Thread-safe; rotation uses it to avoid deleting undelivered data."""
        out: dict[str, int] = {}
        with self._lock:
            if not self._ready_to_report():
                return {path: size for path, (_, size) in self._matching().items()}
            for f, n in self._pending():
                out[f.path] = out.get(f.path, 0) + n
        return out

    def pending_by_file(self) -> dict[tuple[int, int], int]:
        """Like pending_bytes() but keyed by (st_dev, st_ino), for callers that hold the file
        open and fstat it (robust against renames between the two calls)."""
        with self._lock:
            if not self._ready_to_report():
                return {**self._at_stop, **dict(self._matching().values())}
            return {(f.key.dev, f.key.ino): n for f, n in self._pending()}

    def _ready_to_report(self) -> bool:
        """Make sure the first scan ran (rotation may ask before start()); False when the
        files cannot be reported one by one (scan failed, source stopped): then every file
        the globs match counts as undelivered in full."""
        if self._stopped:
            return False
        if not self._scanned:
            try:
                self._first_scan()
            except (OSError, RetriableError) as e:
                log.warning("first scan failed: every matching file counts as undelivered",
                            extra={"component": "tail", "pipeline": self.name,
                                   "error": str(e)})
                return False
            log.info("first scan done before the pipeline started, on rotation's request: "
                     "its files are held open and count as undelivered until delivered",
                     extra={"component": "tail", "pipeline": self.name,
                            "files": len(self._set.files)})
        return True

    def _matching(self) -> dict[str, tuple[tuple[int, int], int]]:
        """Every regular file the globs match now: path -> ((st_dev, st_ino), size)."""
        out: dict[str, tuple[tuple[int, int], int]] = {}
        for c in self._matcher.scan()[0]:
            try:
                st = os.lstat(c.path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                out[c.path] = ((st.st_dev, st.st_ino), st.st_size)
        return out

    def _pending(self) -> list[tuple[TailedFile, int]]:
        out: list[tuple[TailedFile, int]] = []
        for f in self._set.files.values():
            size = f.emitted
            if f.fd >= 0:
                try:
                    size = max(os.fstat(f.fd).st_size, f.pos)
                except OSError:
                    size = f.pos
            out.append((f, max(0, size - f.acked)))
        return out

    def _poll_segs(self, max_lines: int, timeout: float,
                   idle_max: float = 0.0) -> list[tuple[TailedFile, list[Seg]]]:
        if not self._started:
            raise RuntimeError("TailSource.poll() before start()")
        out = self._collect(max_lines)
        if not out and timeout > 0:
            if idle_max > timeout:
                timeout = min(idle_max, self._idle_wait(timeout))
            self._waker.wake.wait(timeout)
            self._waker.wake.clear()
            out = self._collect(max_lines)
        return out

    def _idle_wait(self, short: float) -> float:
        """How long a poll with nothing to return may sleep (see poll's `until_due`)."""
        with self._lock:
            if not self._waker.reliable:
                return short   # some write would make no event: poll as before
            now = self._clock.monotonic()
            deadlines = [self._next_rescan]
            due = next_due(self._set.files.values(), now, self._cfg,
                           hold_partial=self._set.hold_partial)
            if due is not None:
                deadlines.append(due)
            if self._set.resume_from:
                deadlines.append(self._set.orphans_until)
            if self._waker.rescan.is_set():   # an event-driven rescan held back by its pace
                deadlines.append(self._last_rescan + _EVENT_RESCAN_SECS)
            if self._store is not None and self._offsets() != self._last_saved:
                deadlines.append(self._next_save)
            # Never shorter than `short`: a deadline that passed without effect (a partial
            # line whose file grew meanwhile) must not turn the wait into a busy loop.
            return max(short, min(deadlines) - now)

    def _take(self, f: TailedFile, max_lines: int,
              out: list[tuple[TailedFile, list[Seg]]]) -> int:
        """Move up to `max_lines` ready lines of `f` to `out` (auto-acked when nobody acks);
        returns how many were taken."""
        segs = f.take(max_lines)
        if not segs:
            return 0
        out.append((f, segs))
        if self._auto_ack and segs[-1].key == f.key:
            f.acked = segs[-1].end
        return sum(len(s.lines) for s in segs)

    def discover(self) -> None:
        """Rescan the globs when due (inotify event or rescan interval) and save due
        checkpoints, without reading: new files are opened, so their content survives a later
        rename out of the globs or a deletion, and renames are followed. The consumer calls it
        while it cannot take records (Kafka down, sink full), so discovery never stalls."""
        if not self._started:
            return
        with self._lock:
            now = self._clock.monotonic()
            self._rescan_if_due(now)
            if now >= self._next_save:
                self._save()
                self._next_save = now + self._cfg.checkpoint_interval_secs

    def _rescan_if_due(self, now: float) -> None:
        # inotify says names changed: rescan, but at most once per _EVENT_RESCAN_SECS (a
        # busy directory must not turn every poll into a directory walk).
        event = self._waker.rescan.is_set() and now - self._last_rescan >= _EVENT_RESCAN_SECS
        if event or now >= self._next_rescan:
            self._waker.rescan.clear()
            self._set.rescan(initial=False)
            self._waker.sync(*self._matcher.watch_dirs)
            self._last_rescan = now
            self._next_rescan = now + self._cfg.rescan_interval_secs

    def _collect(self, max_lines: int) -> list[tuple[TailedFile, list[Seg]]]:
        out: list[tuple[TailedFile, list[Seg]]] = []
        with self._lock:
            now = self._clock.monotonic()
            self._rescan_if_due(now)
            remaining = max_lines
            flushed: set[int] = set()
            files = list(self._set.files.values())
            # Oldest file first (a rotated file is finished before its successor), but when
            # one poll cannot take everything, the next one starts after the file that used up
            # the budget, so a busy file cannot starve the others.
            start = self._next_first if self._next_first < len(files) else 0
            self._next_first = 0
            for i in range(start, start + len(files)):
                f = files[i % len(files)]
                if remaining <= 0:
                    self._next_first = i % len(files)
                    break
                if f.fd >= 0:
                    self._read_file(f, remaining)
                    if finished_reading(f, now, self._cfg):
                        f.flush_all()
                        flushed.add(id(f))
                remaining -= self._take(f, remaining, out)
            done, abandon = plan(list(self._set.files.values()), now, self._cfg, flushed)
            for f in done:
                self._set.close(f)
            for f in abandon:
                self._set.abandon(f)
            if now >= self._next_save:
                self._save()
                self._next_save = now + self._cfg.checkpoint_interval_secs
        return out

    def _read_file(self, f: TailedFile, want: int) -> None:
        """Read until `want` lines are queued, EOF, or the read-ahead cap; at EOF check for
        truncation (then read the new content at once) and deletion."""
        chunk = self._cfg.read_chunk_bytes
        got = 0
        try:
            for _generation in range(2):
                while f.ready_lines < want:
                    n = f.read(chunk)
                    got += n
                    if n < chunk:
                        break
                if got or not self._set.check_at_eof(f):
                    break
        except OSError as e:
            self._set.error("read", f, e)
        self._m_bytes.inc(got)
        f.flush_due()

    # ---- checkpoints ----------------------------------------------------------------------

    def _offsets(self) -> dict[str, tuple[int, str]]:
        """What _save would compare with the last save: (acked offset, path) per identity."""
        offsets = {str(f.key): (f.acked, f.path) for f in self._set.files.values() if f.fd >= 0}
        for cp in self._set.resume_from.values():
            offsets.setdefault(cp.id, (cp.offset, cp.path))
        return offsets

    def _save(self) -> None:
        if self._store is None:
            return
        offsets = self._offsets()
        if offsets == self._last_saved:
            return
        entries: dict[str, Checkpoint] = {}
        wall = self._clock.time()
        for f in self._set.files.values():
            if f.fd < 0:
                continue
            kid = str(f.key)
            cp = f.saved_cp
            if cp is None or cp.offset != f.acked or cp.path != f.path or cp.id != kid:
                try:
                    cp = Checkpoint(f.key.dev, f.key.ino, f.key.fingerprint, f.path, f.acked,
                                    head_hash(f.fd, f.acked), tail_hash(f.fd, f.acked), wall)
                except OSError as e:
                    self._set.error("read", f, e)
                    continue
                f.saved_cp = cp
            entries[kid] = cp
        for cp in self._set.resume_from.values():
            entries.setdefault(cp.id, cp)
        try:
            self._store.save(entries)
        except RetriableError as e:
            self._set.count_error("checkpoint_write")
            log.error("cannot save checkpoints", extra={"component": "tail",
                                                        "pipeline": self.name, "error": str(e)})
            return
        self._last_saved = offsets
