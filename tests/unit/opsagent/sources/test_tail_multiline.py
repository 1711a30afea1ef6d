"""MultilineJoiner: continuation and start modes, limits, flush timeout, spans."""

from __future__ import annotations

import pytest

from opsagent.clock import FakeClock
from opsagent.sources.tail.config import MultilineConfig
from opsagent.sources.tail.multiline import Line, MultilineJoiner


def as_lines(*texts: bytes, start: int = 0) -> list[Line]:
    out: list[Line] = []
    pos = start
    for t in texts:
        out.append((pos, pos + len(t) + 1, t, False))
        pos += len(t) + 1
    return out


JAVA = [b"2024 ERROR failed", b"java.lang.X: boom", b"\tat a.B.c(B.java:1)",
        b"\tat d.E.f(E.java:2)", b"Caused by: java.io.IOException", b"\t... 3 more",
        b"2024 INFO ok"]


@pytest.mark.parametrize(
    ("cfg", "texts", "expected_data"),
    [
        (MultilineConfig(), JAVA,
         [b"2024 ERROR failed", b"java.lang.X: boom\n\tat a.B.c(B.java:1)\n\tat d.E.f(E.java:2)"
          b"\nCaused by: java.io.IOException\n\t... 3 more"]),
        (MultilineConfig(mode="start", pattern=r"^\d{4} "), JAVA,
         [b"2024 ERROR failed\njava.lang.X: boom\n\tat a.B.c(B.java:1)\n\tat d.E.f(E.java:2)"
          b"\nCaused by: java.io.IOException\n\t... 3 more"]),
        (MultilineConfig(max_lines=2), [b"E", b"\tat 1", b"\tat 2", b"\tat 3", b"N"],
         [b"E\n\tat 1", b"\tat 2\n\tat 3"]),
        (MultilineConfig(max_bytes=11), [b"Error", b"\tat 1", b"\tat 2", b"N"],
         [b"Error\n\tat 1", b"\tat 2"]),
        (MultilineConfig(max_bytes=4), [b"123456", b"N"], [b"1234"]),
        (MultilineConfig(), [b"\tat orphan", b"\tat 2", b"N"], [b"\tat orphan\n\tat 2"]),
        (MultilineConfig(), [b"a", b"b", b"c"], [b"a", b"b"]),
    ],
    ids=["continuation-java", "start-mode", "max-lines-splits", "max-bytes-splits",
         "single-line-over-max-bytes-cut", "leading-continuation", "no-joins"],
)
def test_push_groups(cfg: MultilineConfig, texts: list[bytes],
                     expected_data: list[bytes]) -> None:
    j = MultilineJoiner(cfg, FakeClock())
    out = j.push(as_lines(*texts))
    assert [d for _s, _e, d, _t in out] == expected_data
    # Spans are contiguous from the first byte, nothing skipped, nothing overlapping.
    pos = 0
    for start, end, _d, _t in out:
        assert start == pos
        pos = end
    assert j.held


def test_spans_and_truncated_flag() -> None:
    j = MultilineJoiner(MultilineConfig(max_bytes=4), FakeClock())
    out = j.push(as_lines(b"123456", b"N", start=100))
    assert out == [(100, 107, b"1234", True)]
    assert j.flush() == [(107, 109, b"N", False)]
    assert not j.held and j.flush() == []


def test_joined_span_covers_first_to_last_line() -> None:
    j = MultilineJoiner(MultilineConfig(), FakeClock())
    j.push(as_lines(b"E", b"\tat x", start=10))
    j.push([(18, 25, b"\tat yy", False)])  # lines may arrive in separate pushes
    assert j.held_start == 10
    assert j.flush() == [(10, 25, b"E\n\tat x\n\tat yy", False)]


def test_flush_timeout_uses_time_since_last_line() -> None:
    clock = FakeClock()
    j = MultilineJoiner(MultilineConfig(flush_timeout_secs=2.0), clock)
    j.push(as_lines(b"E"))
    clock.advance(1.5)
    j.push([(2, 8, b"\tat x", False)])
    clock.advance(1.9)
    assert j.flush_due() == []
    clock.advance(0.1)
    assert j.flush_due() == [(0, 8, b"E\n\tat x", False)]
    assert j.flush_due() == []


def test_truncated_line_marks_group_truncated() -> None:
    j = MultilineJoiner(MultilineConfig(), FakeClock())
    j.push([(0, 2, b"E", False), (2, 50, b"\tat cut", True)])
    assert j.flush() == [(0, 50, b"E\n\tat cut", True)]
