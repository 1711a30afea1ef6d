"""Job output: pipes read by one thread into bounded lines, written out by another.

A job must never block on its output, whatever our own stdout does. So the pump thread always
reads every pipe (select), cuts lines at `max_line_bytes` (the rest of a long line is dropped and
counted), and hands records to the writer thread through a queue bounded in bytes; when that queue
is full, output lines are dropped and counted per run (the run's final record says how many).
Control records (a run's start and end) are never dropped, so they stay in order with its output.
"""

from __future__ import annotations

import logging
import os
import selectors
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

READ_CHUNK = 65536
# When 100 jobs start in the same second, their processes should get the CPU before we format
# their log records: on Linux, niceness is per thread, so these two threads yield to the jobs
# (and to the scheduling thread). Under sustained overload the bounded queue drops lines.
WRITER_NICE = 10
PUMP_NICE = 5


def lower_thread_priority(nice: int) -> None:
    """Raise the calling thread's niceness by `nice` (Linux: per thread); no-op elsewhere."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except (OSError, AttributeError):
        pass


class LineSplitter:
    """Bytes in, complete lines out (without the newline), each at most `max_line` bytes; the
    tail of a longer line is dropped and counted in `truncated_bytes`."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._skipping = False  # inside the tail of a line already emitted truncated
        self.truncated_bytes = 0

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        out: list[tuple[bytes, bool]] = []
        start = 0
        if self._skipping:
            nl = data.find(b"\n")
            if nl < 0:
                self.truncated_bytes += len(data)
                return out
            self.truncated_bytes += nl
            self._skipping = False
            start = nl + 1
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            piece = data[start:nl]
            if self._buf:
                self._buf += piece
                piece = bytes(self._buf)
                self._buf.clear()
            out.append(self._cut(piece))
            start = nl + 1
        rest = data[start:]
        if len(self._buf) + len(rest) > self.max_line:
            self._buf += rest
            line = bytes(self._buf[: self.max_line])
            self.truncated_bytes += len(self._buf) - self.max_line
            self._buf.clear()
            self._skipping = True
            out.append((line, True))
        else:
            self._buf += rest
        return out

    def flush(self) -> list[tuple[bytes, bool]]:
        """The unterminated last line, if any (called at end of stream)."""
        self._skipping = False
        if not self._buf:
            return []
        line = bytes(self._buf)
        self._buf.clear()
        return [(line, False)]

    def _cut(self, line: bytes) -> tuple[bytes, bool]:
        if len(line) > self.max_line:
            self.truncated_bytes += len(line) - self.max_line
            return line[: self.max_line], True
        return line, False


@dataclass
class _Item:
    kind: str  # "log" | "raw"
    size: int
    level: int = logging.INFO
    msg: str = ""
    extra: dict[str, Any] | None = None
    data: bytes = b""
    stream: str = "stdout"


class OutputWriter:
    """The writer thread: logs records and writes raw output (passthrough) from a bounded queue."""

    def __init__(self, logger: logging.Logger, *, max_pending_bytes: int = 4 << 20,
                 stdout: BinaryIO | None = None, stderr: BinaryIO | None = None) -> None:
        self._log = logger
        self._max = max_pending_bytes
        self._streams = {"stdout": stdout, "stderr": stderr}
        self._items: deque[_Item] = deque()
        self._pending = 0
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="gorun-writer", daemon=True)
        self._thread.start()

    def output(self, msg: str, extra: dict[str, Any]) -> bool:
        """Queue one output line; False (dropped) when the queue is full."""
        return self._put(_Item("log", len(msg) + 64, msg=msg, extra=extra), droppable=True)

    def raw(self, stream: str, data: bytes) -> bool:
        return self._put(_Item("raw", len(data), data=data, stream=stream), droppable=True)

    def control(self, level: int, msg: str, extra: dict[str, Any], *,
                notify: bool = True) -> None:
        """Queue a record that is never dropped. `notify=False` leaves the writer asleep (for
        a burst of job starts, where waking it would compete for the GIL); call `wake()`."""
        self._put(_Item("log", 0, level=level, msg=msg, extra=extra), droppable=False,
                  notify=notify)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def _put(self, item: _Item, *, droppable: bool, notify: bool = True) -> bool:
        with self._cond:
            if droppable and self._pending + item.size > self._max:
                return False
            self._pending += item.size
            self._items.append(item)
            if notify:
                self._cond.notify()
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (up to `timeout`) and stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    def _loop(self) -> None:
        lower_thread_priority(WRITER_NICE)
        while True:
            with self._cond:
                while not self._items and not self._closing:
                    self._cond.wait()
                if not self._items:
                    return
                item = self._items.popleft()
                self._pending -= item.size
            if item.kind == "log":
                self._log.log(item.level, item.msg, extra=item.extra)
            else:
                out = self._streams.get(item.stream)
                if out is not None:
                    try:
                        out.write(item.data)
                        out.flush()
                    except (OSError, ValueError):
                        pass  # our own stdout went away: the job must not suffer for it


class Pump:
    """The reader thread: every job pipe in one selector. `watch(fd, on_data, on_eof)` hands a
    pipe over (the pump closes it at EOF); `call(fn)` runs `fn` on the pump thread, where
    `drain(fd)` may be used to read what a pipe holds right now."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._calls: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="gorun-pump", daemon=True)
        self._thread.start()

    def watch(self, fd: int, on_data: Callable[[bytes], None],
              on_eof: Callable[[], None]) -> None:
        os.set_blocking(fd, False)

        def register() -> None:
            self._sel.register(fd, selectors.EVENT_READ, (on_data, on_eof))
        self.call(register)

    def call(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._calls.append(fn)
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # already awake

    def drain(self, fd: int) -> None:
        """On the pump thread: read everything `fd` has right now (a job that exited has
        written all it will; its lines must be logged before its end record)."""
        key = self._sel.get_map().get(fd)
        if key is None:
            return
        while self._sel.get_map().get(fd) is key:
            if not self._read(key):
                return

    def stop(self) -> None:
        self._stopping = True
        self.call(lambda: None)
        self._thread.join(5.0)

    def _read(self, key: selectors.SelectorKey) -> bool:
        """Read once from a pipe; False when nothing more is available now (or at EOF)."""
        on_data, on_eof = key.data
        try:
            data = os.read(key.fd, READ_CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if data:
            on_data(data)
            return True
        self._sel.unregister(key.fd)
        os.close(key.fd)
        on_eof()
        return False

    def _loop(self) -> None:
        lower_thread_priority(PUMP_NICE)
        while not self._stopping:
            for key, _ in self._sel.select():
                if key.data is None:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    while True:
                        with self._lock:
                            if not self._calls:
                                break
                            fn = self._calls.popleft()
                        fn()
                elif self._sel.get_map().get(key.fd) is key:
                    self._read(key)
