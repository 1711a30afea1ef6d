"""One open file being tailed: reads big chunks, splits lines with bytes.split, holds a partial
last line until it completes or times out, truncates over-long lines (counted, never dropped
whole), optionally joins multiline groups, and queues the results as segments."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Mapping
from typing import Protocol

from opsagent.clock import Clock
from opsagent.sources.tail.config import TailConfig
from opsagent.sources.tail.identity import HEAD_BYTES, FileKey, pread_exact
from opsagent.sources.tail.multiline import Line, MultilineJoiner
from opsagent.state.checkpoints import Checkpoint


class Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class Seg:
    """Consecutive output of one file. Regular: every line spanned len(line)+1 bytes (its
    newline), so offsets are implied. Irregular: exactly one line with explicit start/end."""

    __slots__ = ("end", "key", "lines", "regular", "start", "truncated")

    def __init__(
        self, key: FileKey, start: int, end: int, lines: list[bytes], regular: bool,
        truncated: bool = False,
    ) -> None:
        self.key = key
        self.start = start
        self.end = end
        self.lines = lines
        self.regular = regular
        self.truncated = truncated

    def split(self, n: int) -> Seg:
        """Cut off and return the first n lines of a regular segment (n < len(lines))."""
        head = self.lines[:n]
        cut = self.start + sum(map(len, head)) + n
        first = Seg(self.key, self.start, cut, head, True)
        self.lines = self.lines[n:]
        self.start = cut
        return first


class TailedFile:
    """State of one open file (one identity generation). Not thread-safe: the source locks."""

    def __init__(
        self, fd: int, key: FileKey, path: str, root: str, fields: Mapping[str, str],
        offset: int, cfg: TailConfig, clock: Clock, *, lines_counter: Counter,
        truncated_counter: Counter, seq: int, hold_partial: bool = False,
    ) -> None:
        """`hold_partial`: never emit a partial line on partial_line_timeout_secs, only at the
        end of a deleted or rotated-out file (statistics: half a line is a wrong sample)."""
        self.fd = fd
        self.key = key
        self.path = path
        self.root = root
        self.fields = fields
        self.seq = seq  # discovery order: older files are read first
        self._cfg = cfg
        self._clock = clock
        self._lines = lines_counter
        self._truncated = truncated_counter
        self._hold_partial = hold_partial
        self.pos = offset  # next byte to read
        self.line_start = offset  # start of the held partial line
        self.buf = b""  # held partial line (at most max_line_bytes)
        self.skipping = False  # inside an over-long line: discard until its newline
        self.emitted = offset  # end of the last queued segment
        self.acked = offset
        self.size = offset  # last known size
        self.at_eof = False  # the last fstat found nothing more to read
        # The file's first bytes as read (to detect truncate + regrow).
        self.head = pread_exact(fd, min(offset, HEAD_BYTES), 0)
        # When a read last returned bytes: the file has not grown since (as far as we know).
        # Reading paused at the read-ahead cap does not count: the file did not stop growing.
        self.last_growth = clock.monotonic()
        self.deleted_at: float | None = None
        self.rotated_out = False
        self.ready: deque[Seg] = deque()
        self.ready_lines = 0
        self.saved_cp: Checkpoint | None = None  # the last checkpoint written for this file
        self.joiner = MultilineJoiner(cfg.multiline, clock) if cfg.multiline else None
        os.lseek(fd, offset, os.SEEK_SET)

    # ---- reading -------------------------------------------------------------------------

    def read(self, budget: int) -> int:
        """Read up to `budget` bytes (and at most max_read_ahead beyond the acks); returns the
        number of bytes read. Stops at EOF (a short read)."""
        total = 0
        chunk_size = self._cfg.read_chunk_bytes
        cap = self.acked + self._cfg.max_read_ahead_bytes
        while total < budget:
            n = min(chunk_size, budget - total, cap - self.pos)
            if n <= 0:
                break
            chunk = os.read(self.fd, n)
            if not chunk:
                break
            total += len(chunk)
            self._consume(chunk)
            if len(chunk) < n:
                break
        if total:
            self.at_eof = False
            self.last_growth = self._clock.monotonic()
            if self.pos > self.size:
                self.size = self.pos
        return total

    def _consume(self, chunk: bytes) -> None:
        base = self.pos
        self.pos += len(chunk)
        if len(self.head) < HEAD_BYTES and base < HEAD_BYTES:
            self.head = (self.head + chunk[: HEAD_BYTES - base])[:HEAD_BYTES]
        max_line = self._cfg.max_line_bytes
        if self.skipping:
            i = chunk.find(b"\n")
            if i < 0:
                return
            self.skipping = False
            self._lines.inc()
            self._single(self.line_start, base + i + 1, self.buf, True)
            self.buf = b""
            chunk = chunk[i + 1 :]
            base += i + 1
            self.line_start = base
            if not chunk:
                return
        if self.buf:
            data = self.buf + chunk
            start = self.line_start
        else:
            data = chunk
            start = base
        last = data.rfind(b"\n")
        if last < 0:
            self.buf = data
        else:
            parts = data.split(b"\n")
            self.buf = parts.pop()
            end = start + last + 1
            self._lines.inc(len(parts))
            if max(map(len, parts)) > max_line:
                self._emit_with_long(start, parts)
            else:
                self._emit(Seg(self.key, start, end, parts, True))
            self.line_start = end
        if len(self.buf) > max_line:
            self.buf = self.buf[:max_line]
            self.skipping = True

    def _emit_with_long(self, start: int, parts: list[bytes]) -> None:
        max_line = self._cfg.max_line_bytes
        run: list[bytes] = []
        run_start = pos = start
        for line in parts:
            end = pos + len(line) + 1
            if len(line) > max_line:
                if run:
                    self._emit(Seg(self.key, run_start, pos, run, True))
                    run = []
                self._single(pos, end, line[:max_line], True)
                run_start = end
            else:
                run.append(line)
            pos = end
        if run:
            self._emit(Seg(self.key, run_start, pos, run, True))

    def _single(self, start: int, end: int, data: bytes, truncated: bool) -> None:
        if truncated:
            self._truncated.inc()
        self._emit(Seg(self.key, start, end, [data], False, truncated))

    def _emit(self, seg: Seg) -> None:
        if self.joiner is None:
            self._queue(seg)
            return
        if seg.regular:
            lines: list[Line] = []
            pos = seg.start
            for data in seg.lines:
                end = pos + len(data) + 1
                lines.append((pos, end, data, False))
                pos = end
        else:
            lines = [(seg.start, seg.end, seg.lines[0], seg.truncated)]
        self._queue_lines(self.joiner.push(lines))

    def _queue_lines(self, lines: list[Line]) -> None:
        """Queue joined records, merging runs whose offsets are implied into regular segs."""
        run: list[bytes] = []
        run_start = run_end = 0
        for start, end, data, truncated in lines:
            if not truncated and end - start == len(data) + 1 and (not run or start == run_end):
                if not run:
                    run_start = start
                run.append(data)
                run_end = end
                continue
            if run:
                self._queue(Seg(self.key, run_start, run_end, run, True))
                run = []
            if not truncated and end - start == len(data) + 1:
                run_start, run_end, run = start, end, [data]
            else:
                self._queue(Seg(self.key, start, end, [data], False, truncated))
        if run:
            self._queue(Seg(self.key, run_start, run_end, run, True))

    def _queue(self, seg: Seg) -> None:
        self.ready.append(seg)
        self.ready_lines += len(seg.lines)
        self.emitted = seg.end

    # ---- timeouts and flushing ------------------------------------------------------------

    def flush_due(self) -> None:
        """Emit a partial line once the file stopped growing at its end for
        partial_line_timeout_secs, and a multiline group held longer than its flush timeout.

        Only a real stop at EOF counts (issue 10, defect 3): the last read found the end
        (at_eof), nothing was read since `partial_line_timeout_secs`, and an fstat now still
        shows no byte beyond the read position. Reading held back by the read-ahead cap or a
        full sink is no reason to split a line in two records, nor a multiline group (its
        next lines may be right behind the cap)."""
        if not self.at_eof:
            return
        now = self._clock.monotonic()
        if ((self.buf or self.skipping) and not self._hold_partial
                and now - self.last_growth >= self._cfg.partial_line_timeout_secs
                and self.at_end()):
            self._flush_buf()
        if self.joiner is not None and self.joiner.held and self.at_end():
            self._queue_lines(self.joiner.flush_due())

    def at_end(self) -> bool:
        """Whether an fstat shows no byte beyond the read position."""
        try:
            return os.fstat(self.fd).st_size <= self.pos
        except OSError:
            return False

    def deleted_and_read(self) -> bool:
        """Whether the file is unlinked and read to its end (nothing can ever follow)."""
        try:
            st = os.fstat(self.fd)
        except OSError:
            return False
        return st.st_nlink == 0 and st.st_size <= self.pos

    def flush_all(self) -> None:
        """Emit everything held (shutdown, end of a deleted/rotated file, truncation)."""
        if self.buf or self.skipping:
            self._flush_buf()
        if self.joiner is not None:
            self._queue_lines(self.joiner.flush())

    def _flush_buf(self) -> None:
        truncated = self.skipping
        data, start = self.buf, self.line_start
        self.buf = b""
        self.skipping = False
        self.line_start = self.pos
        self._lines.inc()
        self._single(start, self.pos, data, truncated)

    @property
    def holding(self) -> bool:
        """Whether bytes were read that are not queued yet (partial line, multiline group)."""
        return bool(self.buf) or self.skipping or (self.joiner is not None and self.joiner.held)

    # ---- output ---------------------------------------------------------------------------

    def take(self, max_lines: int) -> list[Seg]:
        """Dequeue up to max_lines lines worth of segments."""
        out: list[Seg] = []
        ready = self.ready
        while ready and max_lines > 0:
            seg = ready[0]
            n = len(seg.lines)
            if n > max_lines:
                seg = seg.split(max_lines)
                n = max_lines
            else:
                ready.popleft()
            out.append(seg)
            max_lines -= n
            self.ready_lines -= n
        return out

    def restart_at_zero(self, key: FileKey) -> None:
        """After truncation: a new generation of this file, read from offset 0."""
        self.key = key
        self.pos = self.line_start = self.emitted = self.acked = 0
        self.buf = b""
        self.skipping = False
        self.head = b""
        self.size = 0
        self.at_eof = False
        self.saved_cp = None
        if self._cfg.multiline is not None:
            self.joiner = MultilineJoiner(self._cfg.multiline, self._clock)
        os.lseek(self.fd, 0, os.SEEK_SET)

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.fd = -1
