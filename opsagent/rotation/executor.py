"""Carries out a rotation plan with the fd-relative operations of safefs, and snapshots
directories for the planner.

Every open of a log's content (copytruncate, truncation, compression, verification) and every
archive creation is made with the file-system identity of the directory's owner (safefs,
opsagent.fsidentity): a hard link planted to a file the owner could not touch is refused by the
kernel. Archives keep the owner, group, permission bits and mtime of what they archive.

Crash safety: a compressed archive is written to `.opsagent-tmp.<random>`, fsynced, renamed (never
replacing) to `<archive>.zst`, the directory fsynced, and only then the original removed. A crash
at any step leaves either the original alone, or the original plus a complete `.zst` (the next
pass verifies the `.zst` and removes the original), plus perhaps a temp file (removed next pass).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import secrets
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence

import zstandard

from opsagent import fsidentity, safeopen
from opsagent.rotation import safefs
from opsagent.rotation.naming import TEMP_PREFIX, classify
from opsagent.rotation.policy import Action, DirSnapshot, Entry

log = logging.getLogger("opsagent.rotation")

CHUNK = 1 << 20
GROWING = "archive still growing"


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    action: Action
    status: str            # "done" | "refused" | "failed" | "skipped"
    detail: str = ""
    bytes_in: int = 0
    bytes_out: int = 0


def snapshot(
    path: str, dir_fd: int, include: tuple[str, ...], exclude: tuple[str, ...]
) -> DirSnapshot:
    """List the regular files of one directory that the policy owns; every owned-looking name
    that is not a plain file is listed in `skipped` with the reason."""
    entries: list[Entry] = []
    skipped: list[tuple[str, str]] = []
    with os.scandir(dir_fd) as it:
        for de in it:
            name = de.name
            if classify(name, include, exclude) is None:
                continue
            try:
                st = de.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished
            if not stat.S_ISREG(st.st_mode):
                kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
                skipped.append((name, kind))
                continue
            entries.append(Entry(name, st.st_size, st.st_blocks * 512, st.st_mtime, st.st_nlink,
                                 st.st_ino))
    entries.sort(key=lambda e: e.name)
    return DirSnapshot(path, tuple(entries), tuple(skipped), os.fstat(dir_fd).st_dev)


class Stopping(Exception):
    """The agent is stopping: an action in progress was abandoned cleanly (temp file removed)."""


class Executor:
    """Executes actions inside one directory fd. `run_hook` runs a post-rotate argv (no shell).

    `fault` is called with the name of each step that a crash could interrupt
    ("compress:written", "compress:renamed", "rotate:renamed", "copytruncate:copied",
    "copytruncate:renamed", "compress:chunk"); the crash tests make it kill the process there.
    Setting `stop` abandons a compression or copy in progress at the next chunk."""

    def __init__(
        self,
        *,
        compress_level: int,
        post_rotate_argv: Sequence[str] = (),
        post_rotate_timeout_secs: float = 30.0,
        run_hook: Callable[[Sequence[str], float], int] | None = None,
        fault: Callable[[str], None] | None = None,
    ) -> None:
        self.compress_level = compress_level
        self.post_rotate_argv = tuple(post_rotate_argv)
        self.post_rotate_timeout = post_rotate_timeout_secs
        self.run_hook = run_hook or _run_hook
        self.fault = fault or _no_fault
        self.stop = threading.Event()

    def post_rotate(self) -> int:
        """Run post_rotate_argv once (after a pass's rename rotations); its exit status."""
        return self.run_hook(self.post_rotate_argv, self.post_rotate_timeout)

    def execute(self, dir_fd: int, action: Action) -> Outcome:
        try:
            if action.kind == "rotate" and action.method == "skip":
                return Outcome(action, "skipped", action.reason)
            dir_dev = os.fstat(dir_fd).st_dev
            fn = getattr(self, f"_do_{action.kind}")
            out: Outcome = fn(dir_fd, dir_dev, action)
            return out
        except safefs.UnsafeFile as e:
            return Outcome(action, "refused", e.reason)
        except Stopping:
            return Outcome(action, "skipped", "agent stopping")
        except FileNotFoundError:
            return Outcome(action, "skipped", "vanished")
        except FileExistsError:
            return Outcome(action, "failed", "target exists")
        except OSError as e:
            return Outcome(action, "failed", f"{errno.errorcode.get(e.errno or 0, 'E?')}: "
                           f"{e.strerror}")

    # -- actions ---------------------------------------------------------------------------

    def _do_remove_temp(self, dir_fd: int, dir_dev: int, a: Action) -> Outcome:
        st = os.stat(a.name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            raise safefs.UnsafeFile(a.name, "is a directory")
        with _LIVE_LOCK:
            if a.name in _LIVE_TEMPS:
                return Outcome(a, "skipped", "being written by this agent")
        os.unlink(a.name, dir_fd=dir_fd)
        return Outcome(a, "done")

    def _do_delete(self, dir_fd: int, dir_dev: int, a: Action) -> Outcome:
        st = os.stat(a.name, dir_fd=dir_fd, follow_symlinks=False)
        safefs.check_regular(a.name, st, dir_dev)
        safefs.unlink_if_same(dir_fd, a.name, st)
        return Outcome(a, "done", bytes_in=st.st_blocks * 512)

    def _do_finish_rename(self, dir_fd: int, dir_dev: int, a: Action) -> Outcome:
        # link(active, archive) was done, unlink(active) was not (rename_noreplace's fallback
        # crashed in between): drop the old name, as the rename would have.
        st = os.stat(a.name, dir_fd=dir_fd, follow_symlinks=False)
        other = os.stat(a.target, dir_fd=dir_fd, follow_symlinks=False)
        if not (stat.S_ISREG(st.st_mode) and st.st_nlink == 2 and st.st_dev == dir_dev
                and (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)):
            raise safefs.UnsafeFile(a.name, "has more than one hard link")
        safefs.unlink_if_same(dir_fd, a.name, st)
        safefs.fsync_dir(dir_fd)
        return Outcome(a, "done", bytes_in=st.st_size)

    def _do_truncate(self, dir_fd: int, dir_dev: int, a: Action) -> Outcome:
        fd, st = safefs.open_regular(dir_fd, a.name, os.O_WRONLY, dir_dev)
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)
        return Outcome(a, "done", bytes_in=st.st_size)

    def _do_rotate(self, dir_fd: int, dir_dev: int, a: Action) -> Outcome:
        if a.method == "copytruncate":
            return self._copytruncate(dir_fd, dir_dev, a)
        # A rename never opens the file: lstat is enough to refuse what we must not touch.
        st = os.stat(a.name, dir_fd=dir_fd, follow_symlinks=False)
        safefs.check_regular(a.name, st, dir_dev)
        uid = safeopen.owner_rule(fsidentity.of_directory(dir_fd))
        safeopen.check_owner(a.name, st, uid)
        safefs.rename_noreplace(dir_fd, a.name, a.target)
        # rename acts on whatever the name is by then: a hard link to a file outside, planted
        # between our lstat and the rename, would now be an "archive". Give the name back.
        if not safefs.same_file(dir_fd, a.target, st):
            self._undo_rename(dir_fd, a)
            raise safefs.UnsafeFile(a.name, "changed while being rotated", "unlinked")
        safefs.fsync_dir(dir_fd)
        self.fault("rotate:renamed")
        return Outcome(a, "done", bytes_in=st.st_size)

    @staticmethod
    def _undo_rename(dir_fd: int, a: Action) -> None:
        try:
            safefs.rename_noreplace(dir_fd, a.target, a.name)
        except FileExistsError:
            # The writer made a new `name` meanwhile: drop the planted one (a name in their own
            # directory; unlink never touches the file's other names).
            _unlink_quietly(dir_fd, a.target)
        except FileNotFoundError:
            pass

    def _copytruncate(self, dir_fd: int, dir_dev: int, a: Action) -> Outcome:
        # Copy into a temp file and rename it into place before truncating: a crash leaves
        # either the source untouched (+ a temp the next pass removes), or a complete archive
        # of a prefix of the source plus the untouched source (the next pass archives it again:
        # duplicated, never lost). docs/rotation.md "copytruncate".
        src, st = safefs.open_regular(dir_fd, a.name, os.O_RDWR, dir_dev)
        try:
            safefs.check_sparse(a.name, st)
            with _temp_name() as tmp:
                dst = safefs.create_like(dir_fd, tmp, st)
                try:
                    copied = self._copy(src, dst, 0, st.st_size)
                    self.fault("copytruncate:copied")
                    os.fsync(dst)
                    safefs.rename_noreplace(dir_fd, tmp, a.target)
                except BaseException:
                    os.close(dst)
                    _unlink_quietly(dir_fd, tmp)
                    raise
            try:
                safefs.fsync_dir(dir_fd)
                self.fault("copytruncate:renamed")
                # Catch up with what was appended meanwhile, then truncate at once: the loss
                # window is the gap between the last read reaching EOF and ftruncate.
                cur = st
                for _ in range(8):
                    cur = os.fstat(src)
                    safefs.check_sparse(a.name, cur)   # extended with holes meanwhile: stop
                    n = self._copy(src, dst, copied, cur.st_size - copied, stoppable=False)
                    copied += n
                    if n == 0:
                        break
                safefs.copy_times(dst, cur)  # the archive keeps the log's last mtime
                os.ftruncate(src, 0)
                os.fsync(dst)
            finally:
                os.close(dst)
        finally:
            os.close(src)
        return Outcome(a, "done", bytes_in=copied)

    def _do_compress(self, dir_fd: int, dir_dev: int, a: Action) -> Outcome:
        src, st = safefs.open_regular(dir_fd, a.name, os.O_RDONLY, dir_dev)
        try:
            safefs.check_sparse(a.name, st)
            with _temp_name() as tmp:
                out = safefs.create_like(dir_fd, tmp, st)
                try:
                    try:
                        # Read what the file held when opened, no more: a writer extending it
                        # meanwhile (with holes, to a terabyte) cannot keep us busy.
                        written, read = self._compress(src, out, st.st_size)
                        safefs.copy_times(out, st)
                        os.fsync(out)
                    finally:
                        os.close(out)
                    self.fault("compress:written")
                    if os.fstat(src).st_size != read:
                        # Still being written (an app that has not reopened yet): later.
                        os.unlink(tmp, dir_fd=dir_fd)
                        return Outcome(a, "skipped", GROWING)
                    safefs.rename_noreplace(dir_fd, tmp, a.target)
                except BaseException:
                    _unlink_quietly(dir_fd, tmp)
                    raise
            safefs.fsync_dir(dir_fd)
            self.fault("compress:renamed")
            safefs.unlink_if_same(dir_fd, a.name, st)
            return Outcome(a, "done", bytes_in=read, bytes_out=written)
        finally:
            os.close(src)

    def _do_finish_compress(self, dir_fd: int, dir_dev: int, a: Action) -> Outcome:
        src, st = safefs.open_regular(dir_fd, a.name, os.O_RDONLY, dir_dev)
        os.close(src)
        zfd, _ = safefs.open_regular(dir_fd, a.target, os.O_RDONLY, dir_dev)
        try:
            total = _verify_zst(zfd, limit=st.st_size)
        finally:
            os.close(zfd)
        if total != st.st_size:
            os.unlink(a.target, dir_fd=dir_fd)  # incomplete or not ours: compress again
            return Outcome(a, "done", "compressed copy was incomplete: removed, to be redone")
        safefs.unlink_if_same(dir_fd, a.name, st)
        return Outcome(a, "done", bytes_in=st.st_size)

    # -- data movers -----------------------------------------------------------------------

    def _copy(self, src: int, dst: int, offset: int, count: int, *,
              stoppable: bool = True) -> int:
        done = 0
        while done < count:
            if stoppable and self.stop.is_set():
                raise Stopping()
            chunk = os.pread(src, min(CHUNK, count - done), offset + done)
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                n = os.write(dst, view)
                view = view[n:]
            done += len(chunk)
        return done

    def _compress(self, src: int, out: int, limit: int) -> tuple[int, int]:
        # zstandard releases the GIL while compressing: archives compress in parallel threads.
        cctx = zstandard.ZstdCompressor(level=self.compress_level, write_checksum=True)
        read = written = 0
        with os.fdopen(os.dup(out), "wb", closefd=True) as fh:
            with cctx.stream_writer(fh, closefd=False) as w:
                while read < limit:
                    self.fault("compress:chunk")
                    if self.stop.is_set():
                        raise Stopping()
                    chunk = os.pread(src, min(CHUNK, limit - read), read)
                    if not chunk:
                        break
                    read += len(chunk)
                    w.write(chunk)
            fh.flush()
            written = fh.tell()
        return written, read


# Temp files being written right now by this process: a pass of another policy sharing the
# directory must not remove one under a compression in progress. A crashed agent's temps are in
# no live process's set and the next pass removes them.
_LIVE_TEMPS: set[str] = set()
_LIVE_LOCK = threading.Lock()


@contextlib.contextmanager
def _temp_name() -> Iterator[str]:
    name = TEMP_PREFIX + secrets.token_hex(8)
    with _LIVE_LOCK:
        _LIVE_TEMPS.add(name)
    try:
        yield name
    finally:
        with _LIVE_LOCK:
            _LIVE_TEMPS.discard(name)


def _unlink_quietly(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _no_fault(step: str) -> None:
    pass


def _verify_zst(fd: int, *, limit: int) -> int:
    """Decompress fully (the frame checksum is verified); return the decompressed length, or
    -1 if the data is corrupt or inflates past `limit` (the original's size: a bomb planted
    next to an archive is not inflated further)."""
    dctx = zstandard.ZstdDecompressor()
    total = 0
    with os.fdopen(os.dup(fd), "rb", closefd=True) as fh:
        try:
            reader = dctx.stream_reader(fh)
            while chunk := reader.read(CHUNK):
                total += len(chunk)
                if total > limit:
                    return -1
        except zstandard.ZstdError:
            return -1
    return total


def _run_hook(argv: Sequence[str], timeout: float) -> int:
    try:
        return subprocess.run(list(argv), timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL).returncode
    except subprocess.TimeoutExpired:
        log.error("post_rotate_argv timed out", extra={"component": "rotation"})
        return -1
    except OSError as e:
        log.error("post_rotate_argv failed", extra={"component": "rotation", "error": str(e)})
        return -1
