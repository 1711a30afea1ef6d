"""One non-recursive inotify watcher for log directories, shared by rotation and tail discovery:
a watch on exactly the directories a policy or a glob matched, and on the directories above them
down from the glob's trusted prefix. Writes, creations, renames and deletions in a matched
directory put its path on the owner's queue (and/or call its `notify`); a directory appearing or
going above them, or a queue overflow, puts FULL (run a full pass, which also re-syncs the
watches).

Watching nothing else (not recursively under the trusted prefix, as watchdog would) keeps
writers from using up fs.inotify.max_user_watches with directories of their own and keeps events
of other volumes away. If watches do run out, the error is logged and the periodic rescan still
enforces everything. Watches are added with IN_DONT_FOLLOW|IN_ONLYDIR: a name swapped for a
symlink is not followed (and an event is only ever a hint: the pass opens nothing by path).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import queue
import select
import struct
import threading
from collections.abc import Callable, Collection

log = logging.getLogger("opsagent.dirwatch")

FULL = ""   # on the queue: run a full pass

_MODIFY, _CLOSE_WRITE, _MOVED_FROM, _MOVED_TO = 0x2, 0x8, 0x40, 0x80
_CREATE, _DELETE, _DELETE_SELF, _MOVE_SELF = 0x100, 0x200, 0x400, 0x800
_Q_OVERFLOW, _IGNORED, _ISDIR = 0x4000, 0x8000, 0x40000000
_ONLYDIR, _DONT_FOLLOW = 0x01000000, 0x02000000
_NONBLOCK, _CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
UPPER_MASK = _CREATE | _MOVED_TO | _MOVED_FROM | _DELETE | _DELETE_SELF | _MOVE_SELF
LEAF_MASK = UPPER_MASK | _MODIFY | _CLOSE_WRITE
_NAMES = _CREATE | _MOVED_TO | _MOVED_FROM | _DELETE
_HEADER = struct.Struct("iIII")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class DirWatcher:
    """One inotify instance for one owner (a rotation policy, a tail source); `sync` sets the
    watched directories, `pump` (run in a thread) turns events into queue items until `stop` is
    set. `notify(path, names_changed)`, when given, is also called per dirty directory (FULL:
    path ""), names_changed telling a creation/rename/deletion from a write."""

    def __init__(self, q: queue.Queue[str] | None = None, *,
                 notify: Callable[[str, bool], None] | None = None,
                 component: str = "rotation") -> None:
        self.q = q
        self._notify = notify
        self._component = component
        self._libc = _libc()
        self.fd = self._libc.inotify_init1(_NONBLOCK | _CLOEXEC)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        # interrupt() writes here: pump() waits without a timeout (an idle agent does not
        # wake up to look at a stop flag).
        self._wake_r, self._wake_w = os.pipe2(_NONBLOCK | _CLOEXEC)
        self._lock = threading.Lock()
        self._closed = False
        self._by_wd: dict[int, tuple[str, bool]] = {}    # wd -> (path, is a matched dir)
        self._by_path: dict[str, int] = {}
        self._exhausted_logged = False
        # Directories the last sync wanted but could not watch (watches exhausted, vanished):
        # while any is left, a write may make no event, so an owner that sleeps until an
        # event must poll instead (`complete`).
        self._unwatched: set[str] = set()

    def sync(self, leaves: Collection[str], uppers: Collection[str]) -> list[str]:
        """Watch exactly `leaves` (matched directories) and `uppers` (their ancestors below the
        trusted prefix, and the prefix itself). Returns the leaves watched from now on that were
        not before: a write there between the pass that found them and this call made no
        event, so the caller passes over them once more."""
        want = {p: False for p in uppers}
        want.update({p: True for p in leaves})
        added: list[str] = []
        unwatched: set[str] = set()
        with self._lock:
            for path, wd in list(self._by_path.items()):
                if want.get(path) != self._by_wd.get(wd, ("", None))[1]:
                    self._libc.inotify_rm_watch(self.fd, wd)
                    self._forget(wd)
            for path, leaf in want.items():
                if path in self._by_path:
                    continue
                if self._add(path, leaf):
                    if leaf:
                        added.append(path)
                elif leaf:
                    unwatched.add(path)
            self._unwatched = unwatched
        return added

    @property
    def complete(self) -> bool:
        """Whether every matched directory of the last sync is watched (writes make events)."""
        return not self._unwatched

    def _add(self, path: str, leaf: bool) -> bool:
        mask = (LEAF_MASK if leaf else UPPER_MASK) | _ONLYDIR | _DONT_FOLLOW
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            err = ctypes.get_errno()
            if err == errno.ENOSPC and not self._exhausted_logged:
                self._exhausted_logged = True
                log.error("inotify watches exhausted (fs.inotify.max_user_watches): relying on "
                          "the periodic rescan", extra={"component": self._component, "file": path})
            return False  # vanished, or not a directory any more: the next full pass sees it
        old = self._by_wd.get(wd)
        if old is not None:          # the same directory under another name
            self._by_path.pop(old[0], None)
        self._by_wd[wd] = (path, leaf)
        self._by_path[path] = wd
        return True

    def _forget(self, wd: int) -> None:
        path, _ = self._by_wd.pop(wd, ("", False))
        if self._by_path.get(path) == wd:
            del self._by_path[path]

    def pump(self, stop: threading.Event) -> None:
        """Turn events into queue items / notify calls until `stop` is set and interrupt()
        called. Sleeps in poll(2) without a timeout: no wake-ups while nothing happens."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not stop.is_set():
            ready = poller.poll()
            if any(fd == self._wake_r for fd, _ in ready):
                try:
                    os.read(self._wake_r, 512)
                except BlockingIOError:
                    pass
                continue
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                continue
            self._dispatch(data)

    def _dispatch(self, data: bytes) -> None:
        dirty: dict[str, bool] = {}  # path -> names changed there
        off = 0
        with self._lock:
            while off + _HEADER.size <= len(data):
                wd, mask, _cookie, length = _HEADER.unpack_from(data, off)
                off += _HEADER.size + length
                if mask & _Q_OVERFLOW:
                    dirty[FULL] = True
                    continue
                path, leaf = self._by_wd.get(wd, ("", False))
                if mask & (_IGNORED | _MOVE_SELF):
                    # Gone, or renamed away (the watch would follow the old inode, not the
                    # name): forget it, so the next full pass's sync watches the name again.
                    if mask & _MOVE_SELF and path:
                        self._libc.inotify_rm_watch(self.fd, wd)
                    self._forget(wd)
                    dirty[FULL] = True
                elif not path:
                    continue
                elif leaf and not mask & (_DELETE_SELF | _MOVE_SELF):
                    dirty[path] = dirty.get(path, False) or bool(mask & _NAMES)
                elif mask & (_ISDIR | _DELETE_SELF | _MOVE_SELF):
                    dirty[FULL] = True   # a directory came or went: discovery may change
        for d, names in dirty.items():
            if self.q is not None:
                self.q.put(d)
            if self._notify is not None:
                self._notify(d, names)

    def interrupt(self) -> None:
        """Wake pump() (after setting its stop event); safe from any thread, and after close."""
        with self._lock:
            if self._closed:
                return
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:  # pipe full: already woken
                pass

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self.fd)
            os.close(self._wake_r)
            os.close(self._wake_w)
