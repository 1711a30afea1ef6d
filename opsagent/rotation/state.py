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
from collections.abc import Iterator, Mapping

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
    """path of an active log -> wall time of its last rotation (or when first seen)."""

    def __init__(self, state_dir: str, policy: str) -> None:
        self.path = os.path.join(state_dir, f"rotation-{policy}.json")
        self.times: dict[str, float] = {}
        self._dirty = False

    def load(self) -> None:
        try:
            with open(self.path, encoding="utf-8", errors="surrogateescape") as f:
                data = json.load(f)
            self.times = {str(k): float(v) for k, v in data.get("last_rotated", {}).items()}
        except FileNotFoundError:
            self.times = {}
        except (OSError, ValueError, AttributeError) as e:
            log.warning("rotation state unreadable; starting afresh",
                        extra={"component": "rotation", "file": self.path, "error": str(e)})
            self.times = {}

    def seen(self, paths: Mapping[str, float]) -> None:
        """Record first-seen times for active logs we have no time for."""
        for p, t in paths.items():
            if p not in self.times:
                self.times[p] = t
                self._dirty = True

    def rotated(self, path: str, t: float) -> None:
        self.times[path] = t
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        tmp = f"{self.path}.tmp"
        data = json.dumps({"last_rotated": self.times}, ensure_ascii=False)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                     0o600)
        try:
            os.write(fd, data.encode("utf-8", "surrogateescape"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dfd = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self._dirty = False
