"""Rotation state kept in the agent's state directory (never in a watched tree): when each active
log was last rotated or first seen, for time-based rotation; and the lock that keeps one rotating
agent per node during a rolling upgrade."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
from collections.abc import Collection, Iterator, Mapping

from opsagent.state.atomic import replace_file

log = logging.getLogger("opsagent.rotation")


class LockHeld(Exception):
    """Another agent holds the rotation lock."""


@contextlib.contextmanager
def exclusive_lock(state_dir: str, *, wait: bool) -> Iterator[None]:
    """Hold `state_dir/rotate.lock` (flock) for the duration; raise LockHeld if busy and not
    waiting. The lock dies with the process, so a crashed agent never blocks the next one."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(state_dir, "rotate.lock"),
                 os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise LockHeld(f"rotation lock {state_dir}/rotate.lock is held by pid {holder}"
                               ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


class RotationState:
    """path of an active log -> wall time of its last rotation (or when first seen), and
    whether a post-rotate hook is owed (set, and saved, before a rename rotation; cleared once
    the hook succeeded: a crash in between runs the hook on the next pass)."""

    def __init__(self, state_dir: str, policy: str) -> None:
        self.path = os.path.join(state_dir, f"rotation-{policy}.json")
        self.times: dict[str, float] = {}
        self.hook_pending = False
        self._dirty = False

    def load(self) -> None:
        try:
            with open(self.path, encoding="utf-8", errors="surrogateescape") as f:
                data = json.load(f)
            self.times = {str(k): float(v) for k, v in data.get("last_rotated", {}).items()}
            self.hook_pending = bool(data.get("hook_pending", False))
        except FileNotFoundError:
            self.times = {}
        except (OSError, ValueError, AttributeError, TypeError) as e:
            # A torn or foreign file: time-based rotation restarts from archive stamps and
            # first-seen times, and an owed hook is run anyway (running it twice is harmless).
            log.warning("rotation state unreadable; starting afresh",
                        extra={"component": "rotation", "file": self.path, "error": str(e)})
            self.times = {}
            self.hook_pending = True

    def seen(self, paths: Mapping[str, float]) -> None:
        """Record first-seen times for active logs we have no time for."""
        for p, t in paths.items():
            if p not in self.times:
                self.times[p] = t
                self._dirty = True

    def prune(self, directories: Collection[str], present: Collection[str], *,
              everything: bool) -> None:
        """Forget logs that no longer exist in `directories` (and, with `everything`, in
        directories not seen at all): state stays as big as the tree, not its history. A
        forgotten log that comes back falls back on its newest archive's stamp."""
        dirs, keep = set(directories), set(present)
        gone = [p for p in self.times
                if p not in keep and (everything or os.path.dirname(p) in dirs)]
        for p in gone:
            del self.times[p]
        self._dirty |= bool(gone)

    def rotated(self, path: str, t: float) -> None:
        self.times[path] = t
        self._dirty = True

    def set_hook_pending(self, pending: bool) -> None:
        if pending != self.hook_pending:
            self.hook_pending = pending
            self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        data = json.dumps({"last_rotated": self.times, "hook_pending": self.hook_pending},
                          ensure_ascii=False)
        replace_file(self.path, data.encode("utf-8", "surrogateescape"))
        self._dirty = False


def check_state_dir(state_dir: str, patterns: Collection[str]) -> None:
    """Refuse a state directory inside a watched tree (the part of a directory glob from its
    first wildcard down, or the whole directory if it has none): writers there could replace our
    state or lock with their own files or symlinks. Compared after resolving symlinks."""
    state = os.path.realpath(state_dir)
    for pattern in patterns:
        parts = [p for p in pattern.split("/") if p]
        literal = next((i for i, p in enumerate(parts) if any(c in p for c in "*?[")),
                       len(parts))
        tree = os.path.realpath("/" + "/".join(parts[:literal]))
        if state == tree or state.startswith(tree.rstrip("/") + "/"):
            raise ValueError(f"state_dir {state_dir!r} must be outside the watched tree "
                             f"{tree!r} (directories = {pattern!r})")
