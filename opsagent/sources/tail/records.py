"""What the tail source hands out: one Record per line, or a Batch per run of lines of one file
(the fast path: no object per line)."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, cast

from opsagent.sources.tail.identity import FileKey
from opsagent.sources.tail.reader import Seg, TailedFile


class Record(NamedTuple):
    """One line (or one joined multiline group) of one file. A named tuple, not a frozen
    dataclass: one is made per line forwarded, and a frozen dataclass costs ~1.3 µs to
    construct (object.__setattr__ per field) against ~0.1 µs for a tuple (issue 13)."""

    key: FileKey
    path: str  # path at read time (may be a rotated name)
    start: int  # offset of the line's first byte
    end: int  # offset just past its newline (== start + len(line) for a timed-out partial line)
    data: bytes  # without the newline; multiline groups joined with b"\n"; maybe truncated
    truncated: bool  # data was cut at max_line_bytes (the whole span start..end was consumed)
    fields: Mapping[str, str]  # node, pod, namespace + path_pattern groups (shared per file)


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """Consecutive records of one file without a Record object per line (the fast path).

    lines[i] is the data of one record; the batch spans start..end (ack with `end`).
    `cut` holds the indices in `lines` of the lines cut at max_line_bytes (a line of exactly
    max_line_bytes that was not cut is not among them)."""

    key: FileKey
    path: str
    start: int
    end: int
    lines: list[bytes]
    cut: tuple[int, ...]
    fields: Mapping[str, str]

    @property
    def truncated(self) -> int:
        """How many lines were cut at max_line_bytes."""
        return len(self.cut)


# Record from a 7-tuple, without a Python-level call: map() over zip() builds a regular
# segment's records entirely in C.
_new_record = cast(Callable[[Iterable[Any]], Record], functools.partial(tuple.__new__, Record))


def to_records(parts: list[tuple[TailedFile, list[Seg]]]) -> list[Record]:
    out: list[Record] = []
    repeat = itertools.repeat
    for f, segs in parts:
        path, fields = f.path, f.fields
        for seg in segs:
            key = seg.key
            if not seg.regular:
                out.append(Record(key, path, seg.start, seg.end, seg.lines[0], seg.truncated,
                                  fields))
                continue
            # Offsets are implied: each line spans len(line) + 1 bytes (its newline), so line
            # k starts at start + (lengths before it) + k.
            pos = list(map(operator.add,
                           itertools.accumulate(map(len, seg.lines), initial=seg.start),
                           itertools.count()))
            ends = iter(pos)
            next(ends)
            out.extend(map(_new_record, zip(repeat(key), repeat(path), pos, ends, seg.lines,
                                            repeat(False), repeat(fields), strict=False)))
    return out

def to_batches(parts: list[tuple[TailedFile, list[Seg]]]) -> list[Batch]:
    out: list[Batch] = []
    for f, segs in parts:
        i = 0
        while i < len(segs):
            key = segs[i].key
            j = i
            lines: list[bytes] = []
            cut: list[int] = []
            while j < len(segs) and segs[j].key == key:
                if segs[j].truncated:  # an irregular segment: exactly one line
                    cut.append(len(lines))
                lines.extend(segs[j].lines)
                j += 1
            out.append(Batch(key, f.path, segs[i].start, segs[j - 1].end, lines, tuple(cut),
                             f.fields))
            i = j
    return out
