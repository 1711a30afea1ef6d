"""Carries out a rotation plan with the fd-relative operations of safefs, and snapshots
directories for the planner.

Crash safety: a compressed archive is written to `.opsagent-tmp.<random>`, fsynced, renamed (never
replacing) to `<archive>.zst`, the directory fsynced, and only then the original removed. A crash
at any step leaves either the original alone, or the original plus a complete `.zst` (the next
pass verifies the `.zst` and removes the original), plus perhaps a temp file (removed next pass).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import secrets
import stat
import subprocess
from collections.abc import Callable, Sequence

import zstandard

from opsagent.rotation import safefs
from opsagent.rotation.naming import TEMP_PREFIX, classify
from opsagent.rotation.policy import Action, DirSnapshot, Entry

log = logging.getLogger("opsagent.rotation")

CHUNK = 1 << 20


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
            entries.append(Entry(name, st.st_size, st.st_blocks * 512, st.st_mtime, st.st_nlink))
    entries.sort(key=lambda e: e.name)
    return DirSnapshot(path, tuple(entries), tuple(skipped))


class Executor:
    """Executes actions inside one directory fd. `run_hook` runs a post-rotate argv (no shell)."""

    def __init__(
        self,
        *,
        compress_level: int,
        post_rotate_argv: Sequence[str] = (),
        post_rotate_timeout_secs: float = 30.0,
        run_hook: Callable[[Sequence[str], float], int] | None = None,
    ) -> None:
        self.compress_level = compress_level
        self.post_rotate_argv = tuple(post_rotate_argv)
        self.post_rotate_timeout = post_rotate_timeout_secs
        self.run_hook = run_hook or _run_hook

    def execute(self, dir_fd: int, action: Action) -> Outcome:
        dir_dev = os.fstat(dir_fd).st_dev
        try:
            if action.kind == "rotate" and action.method == "skip":
                return Outcome(action, "skipped", action.reason)
            fn = getattr(self, f"_do_{action.kind}")
            out: Outcome = fn(dir_fd, dir_dev, action)
            return out
        except safefs.UnsafeFile as e:
            return Outcome(action, "refused", e.reason)
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
        os.unlink(a.name, dir_fd=dir_fd)
        return Outcome(a, "done")

    def _do_delete(self, dir_fd: int, dir_dev: int, a: Action) -> Outcome:
        st = os.stat(a.name, dir_fd=dir_fd, follow_symlinks=False)
        safefs.check_regular(a.name, st, dir_dev)
        safefs.unlink_if_same(dir_fd, a.name, st)
        return Outcome(a, "done", bytes_in=st.st_blocks * 512)

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
        fd, st = safefs.open_regular(dir_fd, a.name, os.O_RDONLY, dir_dev)
        os.close(fd)
        if not safefs.same_file(dir_fd, a.name, st):
            return Outcome(a, "skipped", "replaced while rotating")
        safefs.rename_noreplace(dir_fd, a.name, a.target)
        safefs.fsync_dir(dir_fd)
        if self.post_rotate_argv:
            rc = self.run_hook(self.post_rotate_argv, self.post_rotate_timeout)
            if rc != 0:
                return Outcome(a, "done", f"post_rotate_argv exited {rc}", bytes_in=st.st_size)
        return Outcome(a, "done", bytes_in=st.st_size)

    def _copytruncate(self, dir_fd: int, dir_dev: int, a: Action) -> Outcome:
        src, _st = safefs.open_regular(dir_fd, a.name, os.O_RDWR, dir_dev)
        try:
            dst = safefs.create_excl(dir_fd, a.target)
            copied = 0
            try:
                # Copy, make the copy durable (slow), then catch up with what was appended
                # meanwhile (fast) and truncate at once: the loss window is the gap between the
                # last read reaching EOF and ftruncate (docs/rotation.md measures it).
                copied += _copy_range(src, dst, 0, os.fstat(src).st_size)
                os.fsync(dst)
                for _ in range(8):
                    n = _copy_range(src, dst, copied, 1 << 62)
                    copied += n
                    if n == 0:
                        break
            except BaseException:
                os.close(dst)
                os.unlink(a.target, dir_fd=dir_fd)
                raise
            os.ftruncate(src, 0)
            try:
                os.fsync(dst)
            finally:
                os.close(dst)
            safefs.fsync_dir(dir_fd)
        finally:
            os.close(src)
        return Outcome(a, "done", bytes_in=copied)

    def _do_compress(self, dir_fd: int, dir_dev: int, a: Action) -> Outcome:
        src, st = safefs.open_regular(dir_fd, a.name, os.O_RDONLY, dir_dev)
        tmp = TEMP_PREFIX + secrets.token_hex(8)
        try:
            out = safefs.create_excl(dir_fd, tmp)
            try:
                written, read = _compress(src, out, self.compress_level)
                os.fsync(out)
            except BaseException:
                os.close(out)
                os.unlink(tmp, dir_fd=dir_fd)
                raise
            os.close(out)
            if os.fstat(src).st_size != read:
                # Still being written (an app that has not reopened yet): try again later.
                os.unlink(tmp, dir_fd=dir_fd)
                return Outcome(a, "skipped", "archive still growing")
            try:
                safefs.rename_noreplace(dir_fd, tmp, a.target)
            except BaseException:
                os.unlink(tmp, dir_fd=dir_fd)
                raise
            safefs.fsync_dir(dir_fd)
            safefs.unlink_if_same(dir_fd, a.name, st)
            return Outcome(a, "done", bytes_in=read, bytes_out=written)
        finally:
            os.close(src)

    def _do_finish_compress(self, dir_fd: int, dir_dev: int, a: Action) -> Outcome:
        src, st = safefs.open_regular(dir_fd, a.name, os.O_RDONLY, dir_dev)
        os.close(src)
        zfd, _ = safefs.open_regular(dir_fd, a.target, os.O_RDONLY, dir_dev)
        try:
            total = _verify_zst(zfd)
        finally:
            os.close(zfd)
        if total != st.st_size:
            os.unlink(a.target, dir_fd=dir_fd)  # incomplete: compress again next pass
            return Outcome(a, "done", "compressed copy was incomplete: removed, to be redone")
        safefs.unlink_if_same(dir_fd, a.name, st)
        return Outcome(a, "done", bytes_in=st.st_size)


def _copy_range(src: int, dst: int, offset: int, count: int) -> int:
    done = 0
    while done < count:
        chunk = os.pread(src, min(CHUNK, count - done), offset + done)
        if not chunk:
            break
        view = memoryview(chunk)
        while view:
            n = os.write(dst, view)
            view = view[n:]
        done += len(chunk)
    return done


def _compress(src: int, out: int, level: int) -> tuple[int, int]:
    # zstandard releases the GIL while compressing: archives compress in parallel threads.
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
    read = written = 0
    with os.fdopen(os.dup(out), "wb", closefd=True) as fh:
        with cctx.stream_writer(fh, closefd=False) as w:
            while True:
                chunk = os.read(src, CHUNK)
                if not chunk:
                    break
                read += len(chunk)
                w.write(chunk)
        fh.flush()
        written = fh.tell()
    return written, read


def _verify_zst(fd: int) -> int:
    """Decompress fully (the frame checksum is verified); return the decompressed length."""
    dctx = zstandard.ZstdDecompressor()
    total = 0
    with os.fdopen(os.dup(fd), "rb", closefd=True) as fh:
        try:
            reader = dctx.stream_reader(fh)
            while chunk := reader.read(CHUNK):
                total += len(chunk)
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
