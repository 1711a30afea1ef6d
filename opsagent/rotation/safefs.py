"""File operations that stay inside a directory an attacker can write.

Every operation is relative to a directory file descriptor that was opened component by
component with O_NOFOLLOW, so a symlink or a swapped directory can never lead outside the tree.
Files are opened with opsagent.safeopen.open_regular (O_PATH first; a regular file with one
link on the directory's device, still linked, belonging to the directory's owner; then reopened
through /proc/self/fd with that owner's file-system identity). New files are created with
O_EXCL, archives as the owner of the log they keep (create_like), renames never replace a target
(renameat2 RENAME_NOREPLACE, or link + unlink where the filesystem lacks it).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fnmatch
import os
import stat
from collections.abc import Callable, Iterator

from opsagent import fsidentity
from opsagent.rotation.policy import is_sparse
from opsagent.safeopen import UnsafeFile as UnsafeFile  # re-exported: rotation's callers
from opsagent.safeopen import check_regular as check_regular
from opsagent.safeopen import open_regular as open_regular

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_FILE = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_RENAME_NOREPLACE = 1


def _libc_renameat2() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _libc_renameat2()


def split_trusted(pattern: str) -> tuple[str, list[str]]:
    """Split a directory glob into its trusted literal prefix and the components below it.
    `/pvc/*/logs` -> ("/pvc", ["*", "logs"]). Components below the first wildcard are opened
    one by one without following symlinks."""
    parts = [p for p in pattern.split("/") if p]
    for i, p in enumerate(parts):
        if any(c in p for c in "*?["):
            return "/" + "/".join(parts[:i]), parts[i:]
    # No wildcard: the last component is still opened with O_NOFOLLOW.
    return "/" + "/".join(parts[:-1]), parts[-1:]


def open_dirs(pattern: str, *, on_error: Callable[[str, OSError], None] | None = None,
              visit: Callable[[str], None] | None = None) -> Iterator[tuple[str, int]]:
    """Yield (path, dir_fd) for every directory matching `pattern`, walking below the trusted
    prefix with O_NOFOLLOW. The caller closes each fd. Entries that vanish, or turn out to be
    symlinks or non-directories when opened, are skipped; any other failure (out of file
    descriptors, I/O error) is passed to `on_error` and that directory skipped, never silently.
    `visit` is told the path of every directory opened above the matches (the watcher's)."""
    prefix, comps = split_trusted(pattern)
    report = on_error or _ignore
    try:
        root = os.open(prefix, O_DIR & ~os.O_NOFOLLOW)
    except OSError as e:
        if e.errno != errno.ENOENT:
            report(prefix, e)
        return
    yield from _walk(prefix, root, comps, report, visit or _ignore_path)


_EXPECTED = (errno.ENOENT, errno.ELOOP, errno.ENOTDIR)


def _ignore(path: str, e: OSError) -> None:
    pass


def _ignore_path(path: str) -> None:
    pass


def _walk(path: str, fd: int, comps: list[str], report: Callable[[str, OSError], None],
          visit: Callable[[str], None]) -> Iterator[tuple[str, int]]:
    if not comps:
        yield path, fd
        return
    visit(path)
    head, rest = comps[0], comps[1:]
    try:
        if any(c in head for c in "*?["):
            try:
                with os.scandir(fd) as it:
                    names = sorted(e.name for e in it
                                   if fnmatch.fnmatchcase(e.name, head)
                                   and e.is_dir(follow_symlinks=False))
            except OSError as e:
                report(path, e)
                return
        else:
            names = [head]
        for name in names:
            try:
                child = os.open(name, O_DIR, dir_fd=fd)
            except OSError as e:
                if e.errno not in _EXPECTED:   # vanished, a symlink, not a directory: fine
                    report(os.path.join(path, name), e)
                continue
            yield from _walk(os.path.join(path, name), child, rest, report, visit)
    finally:
        os.close(fd)


def check_sparse(name: str, st: os.stat_result) -> None:
    """Refuse mostly-hole files: copying or compressing one reads (and for a copy, allocates)
    its full apparent size, up to terabytes, for a few real blocks."""
    if is_sparse(st.st_size, st.st_blocks * 512):
        raise UnsafeFile(name, "is sparse (mostly holes)")


def create_excl(dir_fd: int, name: str, mode: int = 0o640) -> int:
    """Create a new file; fails if anything (a symlink included) already has that name."""
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_FILE, mode, dir_fd=dir_fd)


def create_like(dir_fd: int, name: str, like: os.stat_result) -> int:
    """Create a new file (O_EXCL) the way `like`'s owner would: as its uid and gid (so with its
    owner and group), with its permission bits (setuid, setgid and sticky bits dropped). As in
    logrotate, the pod that wrote a log can read its archives. Made with that owner's identity,
    the creation needs neither CAP_CHOWN nor CAP_FOWNER."""
    return fsidentity.run_as(fsidentity.Identity(like.st_uid, like.st_gid), _create_like,
                             dir_fd, name, like)


def _create_like(dir_fd: int, name: str, like: os.stat_result) -> int:
    fd = create_excl(dir_fd, name, 0o600)
    try:
        if os.fstat(fd).st_gid != like.st_gid and os.geteuid() == 0:
            # A set-group-ID directory gave it the directory's group; as the owner, whose
            # fsgid is `like`'s group, we may give it that group.
            os.fchown(fd, -1, like.st_gid)
        os.fchmod(fd, stat.S_IMODE(like.st_mode) & 0o777)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)
        raise
    return fd


def copy_times(fd: int, like: os.stat_result) -> None:
    """Give the file `fd` (created by create_like, after its last write) the access and
    modification times of `like`. Setting times needs the owner (or CAP_FOWNER): done as it."""
    fsidentity.run_as(fsidentity.Identity(like.st_uid, like.st_gid), _copy_times, fd, like)


def _copy_times(fd: int, like: os.stat_result) -> None:
    os.utime(fd, ns=(like.st_atime_ns, like.st_mtime_ns))


def rename_noreplace(dir_fd: int, src: str, dst: str) -> None:
    """Rename within one directory without ever replacing an existing `dst` (FileExistsError)."""
    if _renameat2 is not None:
        rc = _renameat2(dir_fd, os.fsencode(src), dir_fd, os.fsencode(dst), _RENAME_NOREPLACE)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):  # EINVAL: filesystem without NOREPLACE
            raise OSError(err, os.strerror(err), src)
    os.link(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    os.unlink(src, dir_fd=dir_fd)


def same_file(dir_fd: int, name: str, st: os.stat_result) -> bool:
    """Is `name` (not followed) still the file described by `st`?"""
    try:
        cur = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (cur.st_dev, cur.st_ino) == (st.st_dev, st.st_ino)


def unlink_if_same(dir_fd: int, name: str, st: os.stat_result) -> bool:
    """Remove `name` if it is still the file `st` describes. unlink never follows symlinks, so
    the worst a racing attacker achieves is the removal of a name in their own directory."""
    if not same_file(dir_fd, name, st):
        return False
    os.unlink(name, dir_fd=dir_fd)
    return True


def fsync_dir(dir_fd: int) -> None:
    os.fsync(dir_fd)
