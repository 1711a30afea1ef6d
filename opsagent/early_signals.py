"""Signals that arrive while the agent is still starting are held, not fatal.

Between the interpreter's start and `Agent.install_signal_handlers()` the agent validates its
config, imports its components and binds its HTTP port; a SIGTERM in that window (a pod
deleted right after it started, a chaos test) would kill it with the default action: no drain,
exit -15. `hold()` (first thing in `opsagent.cli.main`) only records such signals; the runtime
replays them into its event queue once its own handlers are installed (`replay`), so the
agent starts and drains as for any SIGTERM. Commands that are not the runtime `release()`
them: default handlers back, and a held signal is delivered again at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

HELD = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_pending: list[int] = []


def _remember(signum: int, _frame: FrameType | None) -> None:
    _pending.append(signum)   # only record: the runtime's main loop does the work


def _main_thread() -> bool:
    # Handlers can only be set from the main thread (main() called from a test's thread:
    # nothing to hold there).
    return threading.current_thread() is threading.main_thread()


def hold() -> None:
    if not _main_thread():
        return
    for s in HELD:
        signal.signal(s, _remember)


def replay(put: Callable[[int], None]) -> None:
    """Hand the held signals to the runtime (call after installing its own handlers)."""
    while _pending:
        put(_pending.pop(0))


def release() -> None:
    """Default handlers back; a signal held meanwhile is delivered now."""
    if not _main_thread():
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)
    pending, _pending[:] = list(_pending), []
    for signum in pending:
        signal.raise_signal(signum)
