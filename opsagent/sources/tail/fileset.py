"""The set of files one tail source holds open, by identity: applies what a scan found (new,
renamed, deleted files), detects truncation, matches checkpoints on restart, closes files."""

from __future__ import annotations

import errno
import logging
import os

from opsagent.clock import Clock
from opsagent.sources.tail.config import TailConfig
from opsagent.sources.tail.discovery import (
    Candidate,
    HardLinked,
    Matcher,
    NotRegularFile,
    find_by_inode,
    open_beneath,
)
from opsagent.sources.tail.identity import (
    FileKey,
    fingerprint,
    hash_bytes,
    matches_checkpoint,
    pread_exact,
    starts_as_fingerprinted,
)
from opsagent.sources.tail.metadata import PathFields
from opsagent.sources.tail.metrics import TailMetrics
from opsagent.sources.tail.reader import TailedFile
from opsagent.state.checkpoints import Checkpoint

log = logging.getLogger("opsagent.tail")

_OPEN_ERRORS = {errno.ELOOP: "symlink", errno.EACCES: "permission", errno.EPERM: "permission",
                errno.ENOTDIR: "symlink", errno.ENXIO: "not_regular"}


class FileSet:
    """Open files by (dev, ino) in discovery order (older files are read first) and by key.
    Not thread-safe: the source calls it under its lock."""

    def __init__(self, name: str, cfg: TailConfig, clock: Clock, matcher: Matcher,
                 fields: PathFields, metrics: TailMetrics) -> None:
        self.name = name
        self._cfg = cfg
        self._clock = clock
        self._matcher = matcher
        self._fields = fields
        self.files: dict[tuple[int, int], TailedFile] = {}
        self.by_key: dict[FileKey, TailedFile] = {}
        # Checkpoints loaded at start whose file was not found (yet): kept, and saved again,
        # until `orphans_until` (monotonic), so a file that shows up late (volume mounted
        # later, transient open error) still resumes instead of being read again from 0.
        self.resume_from: dict[tuple[int, int], Checkpoint] = {}
        self.orphans_until = 0.0
        # start_at = "end" for files found by the first scan; the source turns it off when the
        # checkpoints were lost (files then are not new: read them again rather than skip).
        self.start_at_end = cfg.start_at == "end"
        # Partial lines are emitted only at the end of a deleted or rotated-out file, never
        # on partial_line_timeout_secs (set by the source: statistics consumers).
        self.hold_partial = False
        self._skipped: set[tuple[str, int]] = set()
        self._seq = 0
        m = metrics
        self._m_lines = m.lines.labels(pipeline=name)
        self._m_truncated_lines = m.truncated_lines.labels(pipeline=name)
        self._m_truncations = m.truncations.labels(pipeline=name)
        self._m_lost = m.lost.labels(pipeline=name)
        self._m_abandoned = m.abandoned.labels(pipeline=name)
        self._m_rotations = m.rotations.labels(pipeline=name)
        self._m_errors = m.errors
        self._m_open = m.files_open.labels(pipeline=name)

    def count_error(self, reason: str) -> None:
        self._m_errors.labels(pipeline=self.name, reason=reason).inc()

    def check_at_eof(self, f: TailedFile) -> bool:
        """fstat after a read found nothing; True when the file was truncated."""
        st = os.fstat(f.fd)
        if st.st_nlink == 0 and f.deleted_at is None:
            f.deleted_at = self._clock.monotonic()
        if st.st_size < f.pos:
            self.truncated(f)
            return True
        f.size = max(f.size, st.st_size)
        f.at_eof = st.st_size == f.pos
        return False

    def truncated(self, f: TailedFile) -> None:
        lost = max(0, f.size - f.pos)
        f.flush_all()
        old = f.key
        self.by_key.pop(old, None)
        new = FileKey(old.dev, old.ino, hash_bytes(f"{old}/{f.pos}".encode()))
        f.restart_at_zero(new)
        self.by_key[new] = f
        self._m_truncations.inc()
        self._m_lost.inc(lost)
        log.warning("file truncated, reading it again from the start",
                    extra={"component": "tail", "pipeline": self.name, "file": f.path,
                           "lost_bytes": lost})

    def rescan(self, *, initial: bool) -> None:
        if self.resume_from and self._clock.monotonic() >= self.orphans_until:
            self.resume_from = {}
        candidates, failed = self._matcher.scan()
        seen: set[tuple[int, int]] = set()
        for c in candidates:
            try:
                st = os.lstat(c.path)
            except OSError:
                continue
            ident = (st.st_dev, st.st_ino)
            f = self.files.get(ident)
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
        for ident, f in list(self.files.items()):
            if ident in seen or f.fd < 0:
                continue
            self._lost_sight(f)
        for ident, f in self.files.items():
            if ident in seen and f.fd >= 0 and f.head:
                try:
                    if pread_exact(f.fd, len(f.head), 0) != f.head:
                        self.truncated(f)
                except OSError as e:
                    self.error("read", f, e)
        for root in failed:
            log.debug("root not readable", extra={"component": "tail", "file": root})

    def _lost_sight(self, f: TailedFile) -> None:
        """A tracked file no longer matches the globs under its name: deleted or renamed."""
        try:
            st = os.fstat(f.fd)
        except OSError as e:
            self.error("stat", f, e)
            return
        if st.st_nlink == 0:
            if f.deleted_at is None:
                f.deleted_at = self._clock.monotonic()
            return
        if f.rotated_out:
            try:
                here = os.lstat(f.path)
                if (here.st_dev, here.st_ino) == (st.st_dev, st.st_ino):
                    return
            except OSError:
                pass
            # Renamed again (app.log.1 -> app.log.2): follow it, so pending_bytes() reports
            # undelivered data under the name the rotation sees.
        else:
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
        except HardLinked:
            self._skip(c, "hard_link")
            return None
        except OSError as e:
            if e.errno == errno.ENOENT:
                return None
            self._skip(c, _OPEN_ERRORS.get(e.errno or 0, "open"))
            return None
        ident = (st.st_dev, st.st_ino)
        if ident in self.files:  # raced with a rename: same file under another name
            os.close(fd)
            return ident
        try:
            offset, key = self._resume(fd, st, c.path, self.resume_from.pop(ident, None),
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
                       truncated_counter=self._m_truncated_lines, seq=self._seq,
                       hold_partial=self.hold_partial)
        self.files[(key.dev, key.ino)] = f
        self.by_key[key] = f
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
        offset = st.st_size if initial and self.start_at_end else 0
        return offset, FileKey(st.st_dev, st.st_ino, fingerprint(fd))

    def find_renamed_while_stopped(self) -> None:
        """Checkpointed files renamed out of the globs while the agent was down (app.log ->
        app.log.1): finish them from their saved offset if their content still matches."""
        for ident, cp in list(self.resume_from.items()):
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
            if path is None or self._matcher.excluded(path):
                continue   # excluded (an archive): never read, whatever its inode
            try:
                fd, st = open_beneath(root, path)
            except OSError:
                continue
            try:
                # The inode may have been reused: the content must be the checkpointed file's,
                # from its first bytes (the fingerprint) to those before the saved offset.
                ok = (st.st_dev, st.st_ino) == ident and matches_checkpoint(
                    fd, st.st_size, cp.offset, cp.head_hash, cp.tail_hash
                ) and starts_as_fingerprinted(fd, cp.fingerprint)
            except OSError:
                ok = False
            if not ok:
                os.close(fd)
                continue
            del self.resume_from[ident]
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

    def error(self, reason: str, f: TailedFile, e: OSError) -> None:
        self._m_errors.labels(pipeline=self.name, reason=reason).inc()
        log.warning("tail I/O error", extra={"component": "tail", "pipeline": self.name,
                                             "file": f.path, "error": str(e)})

    def abandon(self, f: TailedFile) -> None:
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

    def close(self, f: TailedFile) -> None:
        if f.fd >= 0:
            f.close()
            self._m_open.dec()
        self._forget(f)

    def _forget(self, f: TailedFile) -> None:
        self.files.pop((f.key.dev, f.key.ino), None)
        if self.by_key.get(f.key) is f:
            del self.by_key[f.key]
