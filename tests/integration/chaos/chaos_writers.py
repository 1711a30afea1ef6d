"""Application writers of the chaos suite: threads appending numbered lines to their log, each
physical file (inode, or generation after a truncation) under its own file id, so the oracle can
check every file's lines and their order.

A writer behaves like an application using Python's WatchedFileHandler: before each batch it
stats its path and reopens when the name points at another inode (the agent's own rename
rotation has no post-rotate hook here, so a few batches may still land in the renamed file).
Some lines are written in two pieces with a pause between them (a partial line at EOF for up to
`gap_max_secs`). The test's own rotations (rename, copytruncate) take the writer's lock, so they
happen between lines, as logrotate sees an application that is between two writes.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import threading
import time
from pathlib import Path

from tests.integration.kafka import forward_oracle as oracle

LINE_PAD = 48


def line_len(fid: str) -> int:
    return len(oracle.line(fid, 0, LINE_PAD))


@dataclasses.dataclass
class FileRec:
    """One physical file's lines: `fid` seqs 0..lines-1 at byte offsets seq * line_len."""

    fid: str
    writer: int
    dev: int
    ino: int
    line_len: int
    lines: int = 0
    copy_of: str = ""      # a copytruncate copy holds the lines of this fid
    history: list[str] = dataclasses.field(default_factory=list)

    def seq_at(self, offset: int) -> int:
        """The first seq whose line is not complete before byte `offset`."""
        return offset // self.line_len


class Registry:
    """Every file the writers created, by fid and by current inode; every event of each file,
    with its time since the start of the run, for the failure message."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.lock = threading.Lock()
        self.by_fid: dict[str, FileRec] = {}
        self.by_inode: dict[tuple[int, int], FileRec] = {}

    def now(self) -> float:
        return time.monotonic() - self.t0

    def add(self, rec: FileRec, what: str) -> None:
        with self.lock:
            if not rec.copy_of:
                self.by_fid[rec.fid] = rec
            self.by_inode[(rec.dev, rec.ino)] = rec
            rec.history.append(f"{self.now():.1f}s {what}")

    def note(self, rec: FileRec, what: str) -> None:
        with self.lock:
            rec.history.append(f"{self.now():.1f}s {what}")
            if rec.copy_of:
                self.by_fid[rec.copy_of].history.append(f"{self.now():.1f}s copy: {what}")

    def expected(self) -> dict[str, int]:
        with self.lock:
            return {f: r.lines for f, r in self.by_fid.items()}

    def at_inode(self, dev: int, ino: int) -> FileRec | None:
        with self.lock:
            return self.by_inode.get((dev, ino))


class AppWriter(threading.Thread):
    """Appends `batch` lines at a time to `path` at about `lines_per_sec`, until stopped."""

    def __init__(self, idx: int, path: Path, registry: Registry, *, seed: int,
                 lines_per_sec: float, partial_prob: float, gap_max_secs: float,
                 batch: int = 5) -> None:
        super().__init__(name=f"chaos-writer-{idx}", daemon=True)
        self.idx = idx
        self.path = path
        self.registry = registry
        self.rng = random.Random(seed)
        self.lines_per_sec = lines_per_sec
        self.partial_prob = partial_prob
        self.gap_max_secs = gap_max_secs
        self.batch = batch
        self.lock = threading.Lock()   # held for one batch (and its partial-line pause)
        self.files = 0
        self.cur: FileRec | None = None
        self.fd = -1
        self.partials = 0
        self.truncated: list[str] = []   # fids whose file was truncated (copytruncate)
        self.error: BaseException | None = None
        self._stop_event = threading.Event()
        with self.lock:
            self._open("created")

    # -- file handling (callers hold self.lock) -------------------------------------------------

    def _new_fid(self) -> str:
        self.files += 1
        return f"w{self.idx}-{self.files}"

    def _open(self, why: str) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        st = os.fstat(self.fd)
        fid = self._new_fid()
        self.cur = FileRec(fid, self.idx, st.st_dev, st.st_ino, line_len(fid))
        self.registry.add(self.cur, f"{why} {self.path.parent.name}/{self.path.name} "
                                    f"(ino {st.st_ino}, {st.st_size} bytes before)")

    def _reopen_if_rotated(self) -> None:
        assert self.cur is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.registry.note(self.cur, f"renamed away (seen by writer at seq {self.cur.lines})")
            self._open("created after rotation")
            return
        if (st.st_dev, st.st_ino) != (self.cur.dev, self.cur.ino):
            self.registry.note(self.cur, f"renamed away (seen by writer at seq {self.cur.lines})")
            self._open("reopened after rotation")

    def _write_batch(self) -> None:
        assert self.cur is not None
        rec = self.cur
        data = b"".join(oracle.line(rec.fid, rec.lines + i, LINE_PAD) for i in range(self.batch))
        if self.rng.random() < self.partial_prob:
            # The last line in two pieces: the agent sees a partial line at EOF for a while.
            # Cut inside the padding or before the newline: the first piece always names its
            # file and seq (a fragment the agent emits at a truncation can be attributed).
            head = len(f"{rec.fid} {rec.lines + self.batch - 1:010d} ")
            cut = len(data) - self.rng.randint(1, rec.line_len - head)
            os.write(self.fd, data[:cut])
            self.partials += 1
            self._stop_event.wait(self.rng.uniform(0.05, self.gap_max_secs))  # stop: finish it
            os.write(self.fd, data[cut:])
        else:
            os.write(self.fd, data)
        rec.lines += self.batch

    # -- the thread -----------------------------------------------------------------------------

    def run(self) -> None:
        t0 = time.monotonic()
        written = 0
        try:
            while not self._stop_event.is_set():
                with self.lock:
                    self._reopen_if_rotated()
                    self._write_batch()
                written += self.batch
                ahead = written / self.lines_per_sec - (time.monotonic() - t0)
                if ahead > 0:
                    self._stop_event.wait(ahead)
        except BaseException as e:  # reported by stop(); a writer must never die silently
            self.error = e

    def stop(self) -> None:
        self._stop_event.set()
        self.join(30)
        assert not self.is_alive(), f"writer {self.idx} did not stop"
        if self.error is not None:
            raise AssertionError(f"writer {self.idx} failed: {self.error!r}") from self.error
        with self.lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1

    # -- rotations done by the test (logrotate's part) ------------------------------------------

    def current_inode(self) -> tuple[int, int]:
        with self.lock:
            assert self.cur is not None
            return self.cur.dev, self.cur.ino

    def rename_rotate(self, new_name: str) -> str:
        """Rename the log away and reopen at once (an app told to reopen by the hook)."""
        with self.lock:
            for attempt in range(3):
                self._reopen_if_rotated()   # the agent may have rotated it a moment ago
                try:
                    os.rename(self.path, self.path.with_name(new_name))
                    break
                except FileNotFoundError:
                    # The agent's own rotation renamed it between the check and the rename
                    # (seed 636241): reopen like the app would, and rename the new file.
                    if attempt == 2:
                        raise
            st = os.stat(self.path.with_name(new_name))
            rec = self.registry.at_inode(st.st_dev, st.st_ino)
            what = f"renamed by the test to {new_name}"
            if rec is not None:
                self.registry.note(rec, what)
            self._open("created after test rename")
            return f"{self.path.name} ({rec.fid if rec else '?'}) -> {new_name}"

    def copytruncate(self, copy_name: str) -> tuple[str, int]:
        """Copy the log to `copy_name` (inside the globs: a new file, read in full), then
        truncate it in place; the writer is between lines, so the copy holds every line."""
        with self.lock:
            self._reopen_if_rotated()
            assert self.cur is not None
            rec = self.cur
            tmp = self.path.with_name(f"ct-tmp-{self.idx}")   # outside every glob
            # Copied and truncated through the writer's own file (as logrotate does through
            # the fd it opened): the agent's rotation may rename the log meanwhile.
            with open(f"/proc/self/fd/{self.fd}", "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
                dst.flush()
                os.fsync(dst.fileno())
            os.rename(tmp, self.path.with_name(copy_name))
            st = os.stat(self.path.with_name(copy_name))
            size = st.st_size
            copy = FileRec(rec.fid, self.idx, st.st_dev, st.st_ino, rec.line_len,
                           lines=size // rec.line_len, copy_of=rec.fid)
            self.registry.add(copy, f"copy of {rec.fid} ({copy.lines} lines) as {copy_name}")
            os.ftruncate(self.fd, 0)
            self.registry.note(rec, f"copied to {copy_name} and truncated at {rec.lines} lines")
            self.truncated.append(rec.fid)
            # The same inode now holds a new generation: a new fid from byte 0.
            fid = self._new_fid()
            self.cur = FileRec(fid, self.idx, rec.dev, rec.ino, line_len(fid))
            self.registry.add(self.cur, f"new generation of {rec.fid} after truncation")
            return (f"{self.path.name} ({rec.fid}, {rec.lines} lines) -> {copy_name}, truncated",
                    copy.lines)
