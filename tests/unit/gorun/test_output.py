"""LineSplitter (table-driven), the bounded writer and the pump."""

from __future__ import annotations

import io
import logging
import os
import threading

import pytest

from gorun.output import LineSplitter, OutputWriter, Pump


@pytest.mark.parametrize("chunks,max_line,lines,flushed,truncated_bytes", [
    pytest.param([b"a\nb\n"], 10, [(b"a", False), (b"b", False)], [], 0, id="two-lines"),
    pytest.param([b"ab", b"c\nd"], 10, [(b"abc", False)], [(b"d", False)], 0, id="split-chunks"),
    pytest.param([b"\n\n"], 10, [(b"", False), (b"", False)], [], 0, id="empty-lines"),
    pytest.param([b"0123456789AB\nx\n"], 10, [(b"0123456789", True), (b"x", False)], [], 2,
                 id="long-line-in-one-chunk"),
    pytest.param([b"01234567", b"89ABCD", b"EF\nok\n"], 10,
                 [(b"0123456789", True), (b"ok", False)], [], 6, id="long-line-across-chunks"),
    pytest.param([b"0123456789"], 10, [], [(b"0123456789", False)], 0, id="exactly-max"),
    pytest.param([b"x" * 25], 10, [(b"x" * 10, True)], [], 15, id="endless-line-is-bounded"),
])
def test_line_splitter(chunks: list[bytes], max_line: int, lines: list[tuple[bytes, bool]],
                       flushed: list[tuple[bytes, bool]], truncated_bytes: int) -> None:
    s = LineSplitter(max_line)
    out: list[tuple[bytes, bool]] = []
    for c in chunks:
        out += s.feed(c)
    assert out == lines
    assert s.flush() == flushed
    assert s.truncated_bytes == truncated_bytes


def test_splitter_memory_is_bounded_by_max_line() -> None:
    s = LineSplitter(100)
    for _ in range(1000):
        s.feed(b"y" * 1000)
    assert len(s._buf) <= 100


class Blocking(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.msgs: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.gate.wait(10)
        self.msgs.append(record.getMessage())


def test_writer_drops_output_when_full_but_never_control_records() -> None:
    logger = logging.getLogger("test.gorun.writer")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    h = Blocking()
    logger.addHandler(h)
    w = OutputWriter(logger, max_pending_bytes=1000)
    accepted = sum(w.output(f"line {i}", {}) for i in range(100))
    assert 0 < accepted < 100
    w.control(logging.INFO, "end", {})
    h.gate.set()
    w.close()
    assert h.msgs[-1] == "end"
    assert len(h.msgs) == accepted + 1
    logger.removeHandler(h)


def test_writer_raw_passthrough() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    w = OutputWriter(logging.getLogger("test.gorun.raw"), stdout=out, stderr=err)
    w.raw("stdout", b"a\n")
    w.raw("stderr", b"b")
    w.close()
    assert (out.getvalue(), err.getvalue()) == (b"a\n", b"b")


def test_pump_reads_until_eof_and_closes() -> None:
    pump = Pump()
    r, w = os.pipe()
    got: list[bytes] = []
    eof = threading.Event()
    pump.watch(r, got.append, eof.set)
    os.write(w, b"hello ")
    os.write(w, b"world")
    os.close(w)
    assert eof.wait(10)
    assert b"".join(got) == b"hello world"
    with pytest.raises(OSError):
        os.fstat(r)  # the pump closed it
    pump.stop()
