"""The oracle of the chaos suite: what reached the topic against what the writers wrote.

It checks exactly the promise of docs/delivery.md:
- **nothing missing**: every line of every file, except the lines the docs allow to lose,
  given per file id as the first seq that may be missing (a file deleted while the agent was
  down, or deleted while it ran and the agent was then SIGKILLed: everything after the offset
  in the checkpoint the next agent starts from);
- **every record one whole line** (value == the line written, without its newline): a line
  written in two pieces less than `partial_line_timeout_secs` apart is one record. The one
  documented exception (docs/tailing.md, "copytruncate / truncation"): at a truncation the
  agent emits the partial line it holds, so a file that was copytruncated may have one
  fragment (a prefix of one of its lines; the whole line is in the copy);
- **order**: in each partition, the first occurrences of each file's lines are in file order
  (a copytruncate copy is a second file with the same lines; each is in order by itself);
- **duplicates** within the bound of docs/delivery.md's table, computed per fault
  (`duplicate_bound`).
Parsing and line generation come from tests/integration/kafka/forward_oracle.py.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence

from tests.integration.chaos.chaos_writers import LINE_PAD
from tests.integration.kafka import forward_oracle as oracle

_FRAGMENT = re.compile(rb"^([A-Za-z0-9_.-]+) (\d{10}) ")


def ranges(seqs: Iterable[int]) -> str:
    """"3-7, 9, 12-40" for sorted or unsorted seqs."""
    out: list[str] = []
    s = sorted(seqs)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        out.append(str(s[i]) if i == j else f"{s[i]}-{s[j]}")
        i = j + 1
    return ", ".join(out)


@dataclasses.dataclass
class Verdict:
    received: int
    duplicates: int
    missing: dict[str, list[int]]          # lost and not allowed by the docs
    allowed_missing: dict[str, list[int]]  # lost, as the docs allow
    malformed: int
    malformed_samples: list[bytes]
    order: list[str]
    fragments: dict[str, int] = dataclasses.field(default_factory=dict)  # allowed, per fid

    @property
    def lost(self) -> int:
        return sum(len(v) for v in self.missing.values())

    def summary(self) -> str:
        allowed = sum(len(v) for v in self.allowed_missing.values())
        return (f"received={self.received} lost={self.lost} "
                f"(allowed losses: {allowed}) duplicates={self.duplicates} "
                f"malformed={self.malformed} (truncation fragments: "
                f"{sum(self.fragments.values())}) order_violations={len(self.order)}")

    def details(self) -> str:
        lines = []
        for fid, seqs in sorted(self.missing.items()):
            lines.append(f"  LOST {fid}: {len(seqs)} lines, seqs {ranges(seqs)}")
        for fid, seqs in sorted(self.allowed_missing.items()):
            lines.append(f"  allowed loss {fid}: {len(seqs)} lines, seqs {ranges(seqs)}")
        for v in self.malformed_samples:
            lines.append(f"  MALFORMED record {v[:120]!r}")
        for o in self.order[:20]:
            lines.append(f"  ORDER {o}")
        return "\n".join(lines)


def fragment_of(value: bytes) -> str | None:
    """The file id if `value` is a strict prefix of one of the generated lines, else None."""
    m = _FRAGMENT.match(value)
    if m is None:
        return None
    fid = m.group(1).decode()
    full = oracle.line(fid, int(m.group(2)), LINE_PAD)[:-1]
    return fid if len(value) < len(full) and full.startswith(value) else None


def judge(partitions: Mapping[int, Sequence[bytes]], expected: Mapping[str, int],
          may_lose_from: Mapping[str, int],
          fragments_ok: Mapping[str, int] | None = None) -> Verdict:
    """`partitions`: record values per partition in offset order; `expected`: lines written
    per file id (seqs 0..n-1); `may_lose_from`: file id -> first seq the docs allow to lose;
    `fragments_ok`: file id -> how many line fragments it may have (its truncations)."""
    fragments_ok = fragments_ok or {}
    fragments: dict[str, int] = {}
    seen: dict[str, set[int]] = {f: set() for f in expected}
    received = dups = malformed = 0
    samples: list[bytes] = []
    order: list[str] = []
    for p in sorted(partitions):
        high: dict[str, int] = {}
        first_here: dict[str, set[int]] = {}
        for v in partitions[p]:
            received += 1
            parsed = oracle.parse(v)
            if parsed is None or v != oracle.line(*parsed, LINE_PAD)[:-1]:
                frag = fragment_of(v)
                if frag is not None and fragments.get(frag, 0) < fragments_ok.get(frag, 0):
                    fragments[frag] = fragments.get(frag, 0) + 1
                    continue
                malformed += 1
                if len(samples) < 10:
                    samples.append(v)
                continue
            fid, seq = parsed
            s = seen.setdefault(fid, set())
            if seq in s:
                dups += 1
            s.add(seq)
            here = first_here.setdefault(fid, set())
            if seq not in here:
                here.add(seq)
                h = high.get(fid, -1)
                if seq < h:
                    order.append(f"partition {p}: {fid} seq {seq} first seen after seq {h}")
                high[fid] = max(h, seq)
    missing: dict[str, list[int]] = {}
    allowed: dict[str, list[int]] = {}
    for fid, n in expected.items():
        gone = [q for q in range(n) if q not in seen.get(fid, set())]
        if not gone:
            continue
        limit = may_lose_from.get(fid, n)
        bad = [q for q in gone if q < limit]
        ok = [q for q in gone if q >= limit]
        if bad:
            missing[fid] = bad
        if ok:
            allowed[fid] = ok
    return Verdict(received, dups, missing, allowed, malformed, samples, order, fragments)


@dataclasses.dataclass(frozen=True)
class DupLimits:
    """The settings docs/delivery.md's duplicate bound is made of."""

    checkpoint_interval_secs: float
    poll_timeout_secs: float
    max_inflight_bytes: int
    value_bytes: int              # the smallest record value (a line without its newline)
    delivery_timeout_secs: float
    slack_secs: float = 1.0       # scheduling delay of a loaded machine, added to the window


def duplicate_bound(limits: DupLimits, timestamps_ms: Sequence[int], kills_ms: Sequence[int],
                    outages_secs: Sequence[float], copy_lines: int,
                    terms: int = 0) -> tuple[int, str]:
    """The documented bound for this run, and how it is made up:
    - per agent SIGKILL: (a) acknowledged but not yet saved, i.e. the records the agent produced
      in the `checkpoint_interval_secs + poll_timeout_secs` before the kill (counted from the
      records' CreateTime, + `slack_secs`), plus (b) read but unacknowledged: at most
      `max_inflight_bytes` of records (each accounted as at least value + 16 bytes);
    - per SIGTERM: nothing if the drain finished, else (b); counted as (b);
    - per broker failure: `max_inflight_bytes` of records per producer abort (one at the
      failure and one per `delivery_timeout_ms` of outage);
    - per copytruncate copy inside the globs: the whole copy."""
    window_ms = int(1000 * (limits.checkpoint_interval_secs + limits.poll_timeout_secs
                            + limits.slack_secs))
    ts = sorted(timestamps_ms)
    per_window = [bisect.bisect_right(ts, k) - bisect.bisect_left(ts, k - window_ms)
                  for k in kills_ms]
    inflight = limits.max_inflight_bytes // (limits.value_bytes + 16) + 1
    aborts = sum(2 + int(s / limits.delivery_timeout_secs) for s in outages_secs)
    total = (sum(per_window) + (len(kills_ms) + terms) * inflight + aborts * inflight
             + copy_lines)
    how = (f"(kills {len(kills_ms)} + SIGTERMs {terms}) x in-flight {inflight} + "
           f"acked-not-saved {sum(per_window)} ({per_window}) + producer aborts {aborts} x "
           f"{inflight} + copies {copy_lines}")
    return total, how
