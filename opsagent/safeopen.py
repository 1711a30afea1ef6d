"""Opening one name in a directory an attacker can write: shared by rotation (rotation/safefs)
and the tail source, both of which run as root over the business pods' log directories.

1. The name is opened with O_PATH|O_NOFOLLOW, which runs no driver code (a device node named
   like a log is looked at, never opened: a watchdog device would reboot the node) and connects
   to no FIFO.
2. fstat must show a regular file with exactly one link (a hard link could point at /etc/shadow
   on the same filesystem), on the directory's device when one is given.
3. The entry must still be linked. One link is not enough on its own: the name may have been a
   hard link to a file outside the tree (two links), removed right after our open, so that the
   outside link is the one fstat counted. The kernel marks the entry an fd was opened through
   once it is unlinked (or replaced by a rename), for good, and /proc/self/fd shows it as
   "PATH (deleted)". So if the fd still reads exactly DIR/NAME, the entry was linked all along
   since the open: the one link counted was ours, and the attacker, who cannot write outside
   the tree, cannot have linked the file anywhere else since.
4. Only then is the file reopened, through /proc/self/fd/N: exactly the inode checked, whatever
   happens to the name meanwhile. Without /proc the file is refused (opening by name again would
   reopen the race).

Steps 2 and 3 look at names and link counts, which a racing attacker can change between two
system calls: they narrow the hard-link race, they cannot close it (issue 11). What closes it
is done on the inode itself, by the kernel:

5. All of the above runs with the file-system identity of the directory's owner
   (opsagent.fsidentity: fsuid/fsgid of the directory, no supplementary groups, no
   CAP_DAC_OVERRIDE/CAP_FOWNER...), so the reopen of step 4 is granted only if that owner could
   open the inode itself, whatever name led to it.
6. The file opened must belong to the directory's owner (fstat of the descriptor, before and
   after the reopen): a file of another user linked in is refused even if its mode would let
   the owner read it. (Only when we are root: an agent running as an ordinary user, like the
   sidecar, opens as itself and has no one else's rights to lend.)
The argument, per case and with what is left, is in docs/rotation.md.
"""

from __future__ import annotations

import errno
import os
import stat

from opsagent import fsidentity


class UnsafeFile(Exception):
    """We refuse to operate on this entry; `reason` says why in words, `kind` in one word
    (symlink, not_regular, hard_link, other_device, unlinked, no_proc, owner, denied,
    no_identity or unsafe)."""

    def __init__(self, name: str, reason: str, kind: str = "unsafe") -> None:
        super().__init__(f"{name!r}: {reason}")
        self.name = name
        self.reason = reason
        self.kind = kind


def check_regular(name: str, st: os.stat_result, dir_dev: int | None) -> None:
    """A regular file with at most one link (on `dir_dev` unless None), else UnsafeFile.

    No link at all is accepted: the file was deleted after we opened it, and a link count of
    0 is final (an unlinked inode cannot be linked again), so no outside name can reach it."""
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(name, "is not a regular file", "not_regular")
    if st.st_nlink > 1:
        raise UnsafeFile(name, "has more than one hard link", "hard_link")
    if dir_dev is not None and st.st_dev != dir_dev:
        raise UnsafeFile(name, "is on another device", "other_device")


def open_regular(dir_fd: int, name: str, flags: int,
                 dir_dev: int | None) -> tuple[int, os.stat_result]:
    """Open `name` in `dir_fd` with `flags` as described above; returns (fd, fstat of it).
    Raises UnsafeFile for what must not be touched, OSError for what cannot be opened."""
    owner = fsidentity.of_directory(dir_fd)
    uid = owner_rule(owner)
    try:
        return fsidentity.run_as(owner, _open_as_owner, dir_fd, name, flags, dir_dev, uid)
    except fsidentity.IdentityError as e:
        # A fixed reason (it labels a metric); the cause (missing CAP_SETUID...) is in `e`.
        raise UnsafeFile(name, "cannot take the directory owner's identity (needs CAP_SETUID "
                         "and CAP_SETGID)", "no_identity") from e


def owner_rule(owner: fsidentity.Identity) -> int | None:
    """The uid files in a directory of `owner` must belong to, or None for any. An agent that
    is not root (the sidecar) holds no one's rights but its own, and the kernel checks its opens
    as itself: the owner rule guards root's power only."""
    return owner.uid if os.geteuid() == 0 else None


def check_owner(name: str, st: os.stat_result, uid: int | None) -> None:
    """The file must belong to `uid`, the owner of its directory (None: any owner)."""
    if uid is not None and st.st_uid != uid:
        # A fixed reason: it labels a metric, and the uids are the writer's to choose.
        raise UnsafeFile(name, "does not belong to the directory's owner", "owner")


def _open_as_owner(dir_fd: int, name: str, flags: int, dir_dev: int | None,
                   uid: int | None) -> tuple[int, os.stat_result]:
    try:
        pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EMLINK):
            raise UnsafeFile(name, "is a symlink", "symlink") from None
        raise
    try:
        st = os.fstat(pfd)
        if stat.S_ISLNK(st.st_mode):  # O_PATH|O_NOFOLLOW opens a symlink itself
            raise UnsafeFile(name, "is a symlink", "symlink")
        check_regular(name, st, dir_dev)
        check_owner(name, st, uid)
        if st.st_nlink:   # deleted meanwhile (0 links, final): no name to check
            _check_still_linked(dir_fd, pfd, name)
        fd = _reopen(pfd, name, flags)
    finally:
        os.close(pfd)
    try:
        cur = os.fstat(fd)
        if (cur.st_dev, cur.st_ino) != (st.st_dev, st.st_ino):  # cannot happen; cheap to check
            raise UnsafeFile(name, "changed while being opened", "unlinked")
        check_regular(name, cur, dir_dev)
        check_owner(name, cur, uid)
    except BaseException:
        os.close(fd)
        raise
    return fd, cur


def _check_still_linked(dir_fd: int, pfd: int, name: str) -> None:
    try:
        target = os.readlink(f"/proc/self/fd/{pfd}")
        here = os.readlink(f"/proc/self/fd/{dir_fd}")
    except OSError:
        raise UnsafeFile(name, "cannot verify its link: /proc is not mounted", "no_proc") \
            from None
    # Exactly DIR/NAME: still linked (a live name that itself ends in " (deleted)" passes).
    # Anything else: unlinked (" (deleted)"), replaced or renamed meanwhile - refused.
    if target != os.path.join(here, name):
        raise UnsafeFile(name, "was unlinked, replaced or renamed while being opened",
                         "unlinked")


def _reopen(pfd: int, name: str, flags: int) -> int:
    flags = (flags | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC) & ~(os.O_CREAT | os.O_TRUNC)
    try:
        return os.open(f"/proc/self/fd/{pfd}", flags)
    except FileNotFoundError:
        # Only without /proc (the magic link reaches even an unlinked file).
        raise UnsafeFile(name, "cannot reopen safely: /proc is not mounted", "no_proc") \
            from None
    except PermissionError:
        # The kernel's answer for the directory's owner: it could not open this inode itself.
        raise UnsafeFile(name, "the directory's owner may not open it", "denied") from None
