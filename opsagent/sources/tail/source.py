"""TailSource makes a set of glob patterns look like one stream of records (lines) per file,
resumable from checkpoints that advance only as far as the consumer acknowledged."""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Mapping

import prometheus_client

from opsagent.clock import Clock
from opsagent.errors import RetriableError
from opsagent.sources.tail.config import TailConfig
from opsagent.sources.tail.discovery import (
    Candidate,
    Matcher,
    NotRegularFile,
    Waker,
    find_by_inode,
    open_beneath,
)
from opsagent.sources.tail.identity import (
    FileKey,
    fingerprint,
    hash_bytes,
    head_hash,
    matches_checkpoint,
    pread_exact,
    tail_hash,
)
from opsagent.sources.tail.metadata import PathFields
from opsagent.sources.tail.metrics import tail_metrics
from opsagent.sources.tail.reader import Seg, TailedFile
from opsagent.sources.tail.records import Batch, Record, to_batches, to_records
from opsagent.sources.tail.retire import finished_reading, plan
from opsagent.state.checkpoints import Checkpoint, CheckpointStore

log = logging.getLogger("opsagent.tail")

__all__ = ["Batch", "Record", "TailSource"]


_OPEN_ERRORS = {errno.ELOOP: "symlink", errno.EACCES: "permission", errno.EPERM: "permission",
                errno.ENOTDIR: "symlink", errno.ENXIO: "not_regular"}


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
        self.name = name
        self._cfg = cfg
        self._store = checkpoints
        self._clock = clock
        self._auto_ack = auto_ack
        self._use_watchdog = use_watchdog
        self._matcher = Matcher(cfg.include, cfg.exclude)
        self._fields = PathFields(static_fields, cfg.path_pattern)
        self._waker = Waker(self._matcher)
        self._lock = threading.Lock()
        self._files: dict[tuple[int, int], TailedFile] = {}  # (dev, ino), in discovery order
        self._by_key: dict[FileKey, TailedFile] = {}
        self._resume_from: dict[tuple[int, int], Checkpoint] = {}
        self._skipped: set[tuple[str, int]] = set()
        self._seq = 0
        self._started = False
        self._last_saved: dict[str, int] = {}
        self._next_rescan = self._next_save = 0.0
        m = tail_metrics(registry)
        self._m_lines = m.lines.labels(pipeline=name)
        self._m_bytes = m.bytes.labels(pipeline=name)
        self._m_truncated_lines = m.truncated_lines.labels(pipeline=name)
        self._m_truncations = m.truncations.labels(pipeline=name)
        self._m_lost = m.lost.labels(pipeline=name)
        self._m_abandoned = m.abandoned.labels(pipeline=name)
        self._m_rotations = m.rotations.labels(pipeline=name)
        self._m_errors = m.errors
        self._m_open = m.files_open.labels(pipeline=name)

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Load checkpoints, scan the globs once, start watching (watchdog thread)."""
        with self._lock:
            if self._started:
                return
            self._started = True
            loaded = self._store.load() if self._store is not None else {}
            self._resume_from = {(cp.dev, cp.ino): cp for cp in loaded.values()}
            # Files renamed away while the agent was down are older: open (and read) them first.
            self._find_renamed_while_stopped()
            self._rescan(initial=True)
            self._resume_from = {}
            now = self._clock.monotonic()
            self._next_rescan = now + self._cfg.rescan_interval_secs
            self._next_save = now + self._cfg.checkpoint_interval_secs
        if self._use_watchdog:
            self._waker.start()

    def stop(self) -> None:
        """Stop watching, save checkpoints, close files."""
        self._waker.stop()
        with self._lock:
            self._save()
            for f in list(self._files.values()):
                self._close(f)
            self._started = False

    # ---- reading --------------------------------------------------------------------------

    def poll(self, max_records: int = 10_000, timeout: float = 0.5) -> list[Record]:
        """Up to max_records new records, waiting up to `timeout` seconds when none is ready."""
        return to_records(self._poll_segs(max_records, timeout))

    def poll_batches(self, max_lines: int = 10_000, timeout: float = 0.5) -> list[Batch]:
        """Like poll() but grouped per file run (cheaper for high line rates)."""
        return to_batches(self._poll_segs(max_lines, timeout))

    def flush_partial(self) -> list[Record]:
        """At shutdown: emit held partial lines and multiline groups."""
        with self._lock:
            out: list[tuple[TailedFile, list[Seg]]] = []
            for f in self._files.values():
                f.flush_all()
                segs = f.take(1 << 62)
                if segs:
                    out.append((f, segs))
                    if self._auto_ack and segs[-1].key == f.key:
                        f.acked = segs[-1].end
        return to_records(out)

    def ack(self, key: FileKey, end: int) -> None:
        """Everything of file `key` up to byte `end` is delivered (acks come in order per file).
        Thread-safe. Unknown keys (file retired) are ignored."""
        with self._lock:
            f = self._by_key.get(key)
            if f is not None and end > f.acked:
                f.acked = min(end, f.emitted)

    def save_checkpoints(self) -> None:
        """Save acked offsets now (poll() does it every cfg.checkpoint_interval_secs)."""
        with self._lock:
            self._save()

    def pending_bytes(self) -> dict[str, int]:
        """Per current path of every open file: bytes read but not acked + bytes not yet read.
        Thread-safe; rotation uses it to avoid deleting undelivered data."""
        out: dict[str, int] = {}
        with self._lock:
            for f in self._files.values():
                size = f.emitted
                if f.fd >= 0:
                    try:
                        size = max(os.fstat(f.fd).st_size, f.pos)
                    except OSError:
                        size = f.pos
                out[f.path] = out.get(f.path, 0) + max(0, size - f.acked)
        return out

    def _poll_segs(self, max_lines: int, timeout: float) -> list[tuple[TailedFile, list[Seg]]]:
        if not self._started:
            raise RuntimeError("TailSource.poll() before start()")
        out = self._collect(max_lines)
        if not out and timeout > 0:
            self._waker.wake.wait(timeout)
            self._waker.wake.clear()
            out = self._collect(max_lines)
        return out

    def _collect(self, max_lines: int) -> list[tuple[TailedFile, list[Seg]]]:
        out: list[tuple[TailedFile, list[Seg]]] = []
        with self._lock:
            now = self._clock.monotonic()
            if self._waker.rescan.is_set() or now >= self._next_rescan:
                self._waker.rescan.clear()
                self._rescan(initial=False)
                self._next_rescan = now + self._cfg.rescan_interval_secs
            remaining = max_lines
            flushed: set[int] = set()
            for f in list(self._files.values()):
                if remaining <= 0:
                    break
                if f.fd >= 0:
                    self._read_file(f, remaining)
                    if finished_reading(f, now, self._cfg):
                        f.flush_all()
                        flushed.add(id(f))
                segs = f.take(remaining)
                if segs:
                    remaining -= sum(len(s.lines) for s in segs)
                    out.append((f, segs))
                    if self._auto_ack and segs[-1].key == f.key:
                        f.acked = segs[-1].end
            done, abandon = plan(list(self._files.values()), now, self._cfg, flushed)
            for f in done:
                self._close(f)
            for f in abandon:
                self._abandon(f)
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
                if got or not self._check_at_eof(f):
                    break
        except OSError as e:
            self._error("read", f, e)
        self._m_bytes.inc(got)
        f.flush_due()

    def _check_at_eof(self, f: TailedFile) -> bool:
        """fstat after a read found nothing; True when the file was truncated."""
        st = os.fstat(f.fd)
        if st.st_nlink == 0 and f.deleted_at is None:
            f.deleted_at = self._clock.monotonic()
        if st.st_size < f.pos:
            self._truncated(f)
            return True
        f.size = max(f.size, st.st_size)
        f.at_eof = st.st_size == f.pos
        return False

    def _truncated(self, f: TailedFile) -> None:
        lost = max(0, f.size - f.pos)
        f.flush_all()
        old = f.key
        self._by_key.pop(old, None)
        new = FileKey(old.dev, old.ino, hash_bytes(f"{old}/{f.pos}".encode()))
        f.restart_at_zero(new)
        self._by_key[new] = f
        self._m_truncations.inc()
        self._m_lost.inc(lost)
        log.warning("file truncated, reading it again from the start",
                    extra={"component": "tail", "pipeline": self.name, "file": f.path,
                           "lost_bytes": lost})

    # ---- discovery ------------------------------------------------------------------------

    def _rescan(self, *, initial: bool) -> None:
        candidates, failed = self._matcher.scan()
        seen: set[tuple[int, int]] = set()
        for c in candidates:
            try:
                st = os.lstat(c.path)
            except OSError:
                continue
            ident = (st.st_dev, st.st_ino)
            f = self._files.get(ident)
            if f is not None:
                seen.add(ident)
                if f.path != c.path:
                    self._m_rotations.inc()
                    f.path = c.path
                f.rotated_out = False
                continue
            opened = self._open(c, initial=initial)
            if opened is not None:
                seen.add(opened)
        for ident, f in list(self._files.items()):
            if ident in seen or f.fd < 0:
                continue
            self._lost_sight(f)
        for ident, f in self._files.items():
            if ident in seen and f.fd >= 0 and f.head:
                try:
                    if pread_exact(f.fd, len(f.head), 0) != f.head:
                        self._truncated(f)
                except OSError as e:
                    self._error("read", f, e)
        for root in failed:
            log.debug("root not readable", extra={"component": "tail", "file": root})
        self._waker.watch_roots()

    def _lost_sight(self, f: TailedFile) -> None:
        """A tracked file no longer matches the globs under its name: deleted or renamed."""
        try:
            st = os.fstat(f.fd)
        except OSError as e:
            self._error("stat", f, e)
            return
        if st.st_nlink == 0:
            if f.deleted_at is None:
                f.deleted_at = self._clock.monotonic()
            return
        if f.rotated_out:
            return
        f.rotated_out = True
        self._m_rotations.inc()
        new_path = find_by_inode(os.path.dirname(f.path), st.st_dev, st.st_ino)
        if new_path is not None:
            f.path = new_path

    def _open(self, c: Candidate, *, initial: bool) -> tuple[int, int] | None:
        try:
            fd, st = open_beneath(c.root, c.path)
        except NotRegularFile:
            self._skip(c, "not_regular")
            return None
        except OSError as e:
            if e.errno == errno.ENOENT:
                return None
            self._skip(c, _OPEN_ERRORS.get(e.errno or 0, "open"))
            return None
        ident = (st.st_dev, st.st_ino)
        if ident in self._files:  # raced with a rename: same file under another name
            os.close(fd)
            return ident
        try:
            offset, key = self._resume(fd, st, c.path, self._resume_from.pop(ident, None),
                                       initial=initial)
        except OSError as e:
            os.close(fd)
            self._skip(c, "read")
            log.warning("cannot read file", extra={"component": "tail", "pipeline": self.name,
                                                   "file": c.path, "error": str(e)})
            return None
        self._track(fd, key, c.path, c.root, offset)
        return ident

    def _track(self, fd: int, key: FileKey, path: str, root: str, offset: int) -> TailedFile:
        self._seq += 1
        f = TailedFile(fd, key, path, root, self._fields.for_path(path), offset, self._cfg,
                       self._clock, lines_counter=self._m_lines,
                       truncated_counter=self._m_truncated_lines, seq=self._seq)
        self._files[(key.dev, key.ino)] = f
        self._by_key[key] = f
        self._m_open.inc()
        return f

    def _resume(self, fd: int, st: os.stat_result, path: str, cp: Checkpoint | None, *,
                initial: bool) -> tuple[int, FileKey]:
        """Where to start reading a newly opened file, and its key."""
        if cp is not None:
            if matches_checkpoint(fd, st.st_size, cp.offset, cp.head_hash, cp.tail_hash):
                return cp.offset, FileKey(cp.dev, cp.ino, cp.fingerprint)
            reason = "truncated_while_stopped" if st.st_size < cp.offset else "inode_reuse"
            self._m_errors.labels(pipeline=self.name, reason=reason).inc()
            log.warning("checkpoint does not match the file's content, reading from the start",
                        extra={"component": "tail", "pipeline": self.name, "file": path,
                               "reason": reason, "offset": cp.offset})
            return 0, FileKey(st.st_dev, st.st_ino, fingerprint(fd))
        offset = st.st_size if initial and self._cfg.start_at == "end" else 0
        return offset, FileKey(st.st_dev, st.st_ino, fingerprint(fd))

    def _find_renamed_while_stopped(self) -> None:
        """Checkpointed files renamed out of the globs while the agent was down (app.log ->
        app.log.1): finish them from their saved offset if their content still matches."""
        for ident, cp in list(self._resume_from.items()):
            root = self._matcher.root_of(cp.path)
            if root is None:
                continue
            path: str | None = None
            try:
                st = os.lstat(cp.path)
                if (st.st_dev, st.st_ino) == ident:
                    if self._matcher.matches(cp.path):
                        continue  # still under its name in the globs: the scan opens it
                    path = cp.path  # was already renamed out of the globs at the last save
            except OSError:
                pass
            if path is None:
                path = find_by_inode(os.path.dirname(cp.path), cp.dev, cp.ino)
            if path is None:
                continue
            try:
                fd, st = open_beneath(root, path)
            except OSError:
                continue
            try:
                ok = (st.st_dev, st.st_ino) == ident and matches_checkpoint(
                    fd, st.st_size, cp.offset, cp.head_hash, cp.tail_hash)
            except OSError:
                ok = False
            if not ok:
                os.close(fd)
                continue
            del self._resume_from[ident]
            f = self._track(fd, FileKey(cp.dev, cp.ino, cp.fingerprint), path, root, cp.offset)
            f.rotated_out = True
            self._m_rotations.inc()

    def _skip(self, c: Candidate, reason: str) -> None:
        """Count a name that cannot be tailed, once per (name, inode)."""
        if (c.path, c.ino) in self._skipped:
            return
        if len(self._skipped) > 10_000:
            self._skipped.clear()
        self._skipped.add((c.path, c.ino))
        self._m_errors.labels(pipeline=self.name, reason=reason).inc()
        log.warning("skipping file", extra={"component": "tail", "pipeline": self.name,
                                            "file": c.path, "reason": reason})

    def _error(self, reason: str, f: TailedFile, e: OSError) -> None:
        self._m_errors.labels(pipeline=self.name, reason=reason).inc()
        log.warning("tail I/O error", extra={"component": "tail", "pipeline": self.name,
                                             "file": f.path, "error": str(e)})

    # ---- retiring files -------------------------------------------------------------------

    def _abandon(self, f: TailedFile) -> None:
        """Close a deleted file over budget; what was read is still delivered."""
        try:
            size = os.fstat(f.fd).st_size
        except OSError:
            size = f.size
        lost = max(0, size - f.pos)
        f.flush_all()
        self._m_abandoned.inc(lost)
        self._m_errors.labels(pipeline=self.name, reason="deleted_budget").inc()
        log.warning("closing deleted file before it was fully read (budget)",
                    extra={"component": "tail", "pipeline": self.name, "file": f.path,
                           "lost_bytes": lost})
        f.close()
        self._m_open.dec()
        if not f.ready and f.acked >= f.emitted:
            self._forget(f)

    def _close(self, f: TailedFile) -> None:
        if f.fd >= 0:
            f.close()
            self._m_open.dec()
        self._forget(f)

    def _forget(self, f: TailedFile) -> None:
        self._files.pop((f.key.dev, f.key.ino), None)
        if self._by_key.get(f.key) is f:
            del self._by_key[f.key]

    # ---- checkpoints ----------------------------------------------------------------------

    def _save(self) -> None:
        if self._store is None:
            return
        entries: dict[str, Checkpoint] = {}
        offsets: dict[str, int] = {}
        wall = self._clock.time()
        for f in self._files.values():
            if f.fd < 0:
                continue
            kid = str(f.key)
            offsets[kid] = f.acked
            cp = f.saved_cp
            if cp is None or cp.offset != f.acked or cp.path != f.path or cp.id != kid:
                try:
                    cp = Checkpoint(f.key.dev, f.key.ino, f.key.fingerprint, f.path, f.acked,
                                    head_hash(f.fd, f.acked), tail_hash(f.fd, f.acked), wall)
                except OSError as e:
                    self._error("read", f, e)
                    continue
                f.saved_cp = cp
            entries[kid] = cp
        if offsets == self._last_saved:
            return
        try:
            self._store.save(entries)
        except RetriableError as e:
            self._m_errors.labels(pipeline=self.name, reason="checkpoint_write").inc()
            log.error("cannot save checkpoints", extra={"component": "tail",
                                                        "pipeline": self.name, "error": str(e)})
            return
        self._last_saved = offsets
