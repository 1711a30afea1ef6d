"""The sequence-number oracle of the forwarding fault suite: generated lines carry (file id, seq);
`check` reads what reached Kafka and says what is missing, duplicated or out of order per file.

Line format (bytes): b"<fid> <seq:010d> <padding>" without the newline (the forwarder strips it).
Multiline events are b"<fid> <seq:010d> START\n\tat frame 1\n\tat frame 2" and count as one seq.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

_LINE = re.compile(rb"^(?P<fid>[A-Za-z0-9_.-]+) (?P<seq>\d{10})(?: |$)")


def line(fid: str, seq: int, pad: int = 40) -> bytes:
    """One generated line with its trailing newline."""
    body = f"{fid} {seq:010d} ".encode() + b"x" * pad
    return body + b"\n"


def multiline_event(fid: str, seq: int, frames: int = 3) -> bytes:
    """A Java-stack-trace-like event: a head line and `frames` tab-indented "at" lines."""
    head = f"{fid} {seq:010d} Exception in thread main java.lang.IllegalStateException\n".encode()
    return head + b"".join(f"\tat com.example.Frame{i}.run(Frame.java:{i})\n".encode()
                           for i in range(frames))


def parse(value: bytes) -> tuple[str, int] | None:
    m = _LINE.match(value)
    if not m:
        return None
    return m.group("fid").decode(), int(m.group("seq"))


@dataclasses.dataclass
class Verdict:
    """The oracle's findings for one topic."""

    received: int
    missing: dict[str, list[int]]
    duplicates: int
    order_violations: list[str]
    unparsable: int
    first_missing: dict[str, int]

    @property
    def lost(self) -> int:
        return sum(len(v) for v in self.missing.values())

    def summary(self) -> str:
        miss = {f: (len(v), v[:5]) for f, v in self.missing.items() if v}
        return (f"received={self.received} lost={self.lost} {miss} duplicates={self.duplicates} "
                f"order_violations={self.order_violations[:5]} unparsable={self.unparsable}")


def check(values: Iterable[bytes], expected: dict[str, int]) -> Verdict:
    """Check Kafka record values (in partition order; one file's records share a partition) against
    `expected` = {fid: number of lines written, seqs 0..n-1}.

    Order per file: the first occurrence of each seq must come after the first occurrence of every
    smaller seq of the same file. A re-send after a failure repeats a contiguous run of already
    delivered seqs (counted as duplicates), which does not violate the order."""
    seen: dict[str, set[int]] = {f: set() for f in expected}
    high: dict[str, int] = {}
    dups = 0
    received = 0
    unparsable = 0
    order: list[str] = []
    for v in values:
        received += 1
        p = parse(v)
        if p is None:
            unparsable += 1
            continue
        fid, seq = p
        s = seen.setdefault(fid, set())
        if seq in s:
            dups += 1
            continue
        s.add(seq)
        h = high.get(fid, -1)
        if seq != h + 1:
            order.append(f"{fid}: seq {seq} first seen after {h}")
        high[fid] = max(h, seq)
    missing = {f: sorted(set(range(n)) - seen.get(f, set())) for f, n in expected.items()}
    first_missing = {f: v[0] for f, v in missing.items() if v}
    return Verdict(received, missing, dups, order, unparsable, first_missing)
