"""Waiting for children: every exit status of a job goes through a reaper, which also reaps
orphans when gorun is PID 1 (or a child subreaper) so no zombie is ever left behind.

Why one place: as PID 1, orphaned grandchildren are re-parented to us, and reaping them
with `waitpid(-1)` would also steal the exit status of jobs the runner is waiting for. So the
runner never waits itself; it spawns through `Reaper.spawn`, which registers the child's pid under
the same lock the reaper holds while it reaps. The reaper thread blocks in
`waitid(P_ALL, WEXITED | WNOWAIT)`, which reports a zombie without reaping it; it then takes the
lock and reaps that pid, so a child can never be reaped before its pid is registered
(https://github.com/krallin/tini does the same job with a signal loop; we use a thread so the main
loop stays free).

`OrphanReaper` reaps every child (standalone `gorun`); `ChildReaper` waits only for the children
it spawned, one thread each, and is the one to use when gorun is embedded in a process that runs
other subprocesses (the agent).
"""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import threading
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("gorun.reaper")

OnExit = Callable[[int], None]  # receives the raw wait status (os.waitstatus_to_exitcode)
PR_SET_CHILD_SUBREAPER = 36


class Reaper(Protocol):
    def spawn(self, start: Callable[[], subprocess.Popen[bytes]],
              on_exit: OnExit) -> subprocess.Popen[bytes]:
        """Start a child with `start()` and call `on_exit(status)` (from another thread) once it
        has exited and been reaped. `start` exceptions propagate; nothing is registered then."""
        ...

    def stop(self) -> None: ...


def become_subreaper() -> bool:
    """Ask Linux to re-parent our orphaned descendants to us (prctl PR_SET_CHILD_SUBREAPER)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class OrphanReaper:
    """Reaps every child of this process: registered ones report to their callback, the others
    (orphans re-parented to PID 1 or to a subreaper) are reaped and counted."""

    def __init__(self, on_orphan: Callable[[int, int], None] | None = None) -> None:
        self._lock = threading.Lock()
        # pid -> (its Popen, kept alive: a collected Popen with no returncode would be polled by
        # subprocess._cleanup(), which could take the status first; its callback)
        self._callbacks: dict[int, tuple[subprocess.Popen[bytes], OnExit]] = {}
        self._spawned = threading.Event()
        self._stopping = False
        self._on_orphan = on_orphan
        self.orphans_reaped = 0
        self._thread = threading.Thread(target=self._loop, name="gorun-reaper", daemon=True)
        self._thread.start()

    def spawn(self, start: Callable[[], subprocess.Popen[bytes]],
              on_exit: OnExit) -> subprocess.Popen[bytes]:
        with self._lock:
            proc = start()
            self._callbacks[proc.pid] = (proc, on_exit)
        self._spawned.set()
        return proc

    def stop(self) -> None:
        self._stopping = True
        self._spawned.set()

    def _loop(self) -> None:
        while not self._stopping:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                # No children at all: none can exit (and no orphan can appear) until we spawn.
                self._spawned.wait(1.0)
                self._spawned.clear()
                continue
            if info is None or self._stopping:
                continue
            with self._lock:
                try:
                    pid, status = os.waitpid(info.si_pid, os.WNOHANG)
                except ChildProcessError:
                    continue  # reaped by someone else (Popen after a failed exec)
                if pid == 0:
                    continue
                entry = self._callbacks.pop(pid, None)
            if entry is not None:
                entry[0].returncode = os.waitstatus_to_exitcode(status)
                entry[1](status)
            else:
                self.orphans_reaped += 1
                log.debug("reaped orphan", extra={"component": "gorun", "pid": pid,
                                                  "exit_code": os.waitstatus_to_exitcode(status)})
                if self._on_orphan is not None:
                    self._on_orphan(pid, status)


class ChildReaper:
    """Waits for exactly the children it spawned (`waitpid(pid)`), never for anybody else's."""

    def __init__(self) -> None:
        self.orphans_reaped = 0

    def spawn(self, start: Callable[[], subprocess.Popen[bytes]],
              on_exit: OnExit) -> subprocess.Popen[bytes]:
        proc = start()
        threading.Thread(target=self._wait, args=(proc, on_exit),
                         name=f"gorun-wait-{proc.pid}", daemon=True).start()
        return proc

    @staticmethod
    def _wait(proc: subprocess.Popen[bytes], on_exit: OnExit) -> None:
        _, status = os.waitpid(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        on_exit(status)

    def stop(self) -> None:
        pass
