"""to_records: one Record per line with the offsets a regular segment implies (each line spans
its bytes and its newline), built in bulk; irregular segments keep their explicit span."""

from __future__ import annotations

from typing import cast

import pytest

from opsagent.sources.tail.identity import FileKey
from opsagent.sources.tail.reader import Seg, TailedFile
from opsagent.sources.tail.records import Record, to_records

KEY = FileKey(8, 1234, "abcd")
OTHER = FileKey(8, 99, "ef01")


class _File:
    """What to_records reads of a TailedFile."""

    def __init__(self, path: str, fields: dict[str, str]) -> None:
        self.path = path
        self.fields = fields


def _reference(start: int, lines: list[bytes]) -> list[tuple[int, int, bytes]]:
    out = []
    for line in lines:
        out.append((start, start + len(line) + 1, line))
        start += len(line) + 1
    return out


@pytest.mark.parametrize("lines", [
    pytest.param([b"one"], id="one-line"),
    pytest.param([b"a", b"", b"ccc", b"", b""], id="empty-lines"),
    pytest.param([bytes([65 + i % 26]) * i for i in range(300)], id="growing-lengths"),
    pytest.param([b"\xff\xfe invalid utf-8", b"tab\tand\rcr"], id="any-bytes"),
])
@pytest.mark.parametrize("start", [0, 7, 1 << 40])
def test_regular_segment_offsets_are_implied_by_line_lengths(lines: list[bytes],
                                                             start: int) -> None:
    f = _File("/logs/app.log", {"node": "n1"})
    seg = Seg(KEY, start, start + sum(map(len, lines)) + len(lines), list(lines), True)
    recs = to_records([(cast(TailedFile, f), [seg])])
    assert [(r.start, r.end, r.data) for r in recs] == _reference(start, lines)
    assert all(type(r) is Record and r.key is KEY and r.path == "/logs/app.log"
               and r.fields is f.fields and r.truncated is False for r in recs)
    assert recs[-1].end == seg.end


def test_irregular_segments_keep_their_span_and_files_their_own_path_and_fields() -> None:
    a = _File("/logs/a.log", {"pod": "a"})
    b = _File("/logs/b.log.1", {"pod": "b"})
    parts = [
        (cast(TailedFile, a), [Seg(KEY, 0, 8, [b"abc", b"def"], True),
                               # a line cut at max_line_bytes: 5 bytes kept of 100 consumed
                               Seg(KEY, 8, 108, [b"xxxxx"], False, truncated=True),
                               # a partial line flushed after its timeout: no newline
                               Seg(KEY, 108, 111, [b"end"], False)]),
        (cast(TailedFile, b), [Seg(OTHER, 50, 53, [b"zz"], True)]),
    ]
    assert to_records(parts) == [
        Record(KEY, "/logs/a.log", 0, 4, b"abc", False, {"pod": "a"}),
        Record(KEY, "/logs/a.log", 4, 8, b"def", False, {"pod": "a"}),
        Record(KEY, "/logs/a.log", 8, 108, b"xxxxx", True, {"pod": "a"}),
        Record(KEY, "/logs/a.log", 108, 111, b"end", False, {"pod": "a"}),
        Record(OTHER, "/logs/b.log.1", 50, 53, b"zz", False, {"pod": "b"}),
    ]


def test_no_segments_no_records() -> None:
    assert to_records([]) == []
    assert to_records([(cast(TailedFile, _File("/x", {})), [])]) == []
