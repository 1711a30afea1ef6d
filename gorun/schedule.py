"""Which runs are due and when to wake next: a pure function of jobs, times and state.

No I/O and no clock reads: the daemon passes wall time and monotonic time to `Schedule.tick`, which
returns the due runs. Next-fire times live in a heap, so an idle schedule of 10,000 jobs costs one
heap peek per wake-up, not a scan.

Clock jumps (Vixie cron's cron.c, adapted to seconds; thresholds in docs/cron.md):
- a jump is a difference between wall-clock progress and monotonic progress since the last tick
  larger than `jump_tolerance_secs`; DST changes are not jumps (UTC is continuous);
- small forward jump (<= `catchup_limit_secs`, 3 h): fixed-time jobs whose runs it skipped run once
  each (catch-up); wildcard jobs are not caught up, they continue from the new wall time;
- big forward jump: nothing is caught up, everything continues from the new wall time;
- small backward jump: fixed-time jobs keep their next fire time, so nothing that already ran runs
  again; wildcard jobs follow the wall clock (they fire again at the repeated times);
- big backward jump: treated as a clock reset, everything is rescheduled from the new wall time.
"""

from __future__ import annotations

import datetime
import hashlib
import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from gorun.crontab import Job
from gorun.expr import CronExpr

CATCHUP_LIMIT_SECS = 3 * 3600.0
JUMP_TOLERANCE_SECS = 1.0
# Counting the runs a stall or jump skipped walks the expression; stop counting here.
MISSED_COUNT_CAP = 60

_US = datetime.timedelta(microseconds=1)


def _next(expr: CronExpr, t: datetime.datetime) -> datetime.datetime | None:
    """The next fire time in UTC. CronExpr answers in the job's zone, where the second copy of
    a repeated hour carries fold=1; arithmetic (`+ jitter`) and comparisons within one zone
    ignore fold, so the schedule only ever holds UTC times."""
    nxt = expr.next_after(t)
    return None if nxt is None else nxt.astimezone(datetime.UTC)


def jitter_offset(job_id: str, jitter_secs: float) -> datetime.timedelta:
    """Deterministic delay in [0, jitter_secs) for a job: a hash of its id, so restarts and
    reloads keep it, and jobs with the same schedule spread out."""
    if jitter_secs <= 0:
        return datetime.timedelta(0)
    h = int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:8], "big")
    return datetime.timedelta(milliseconds=int(h / 2**64 * jitter_secs * 1000))


@dataclass(frozen=True)
class Due:
    """A run to start now. `scheduled` is the cron fire time (in the job's zone), `at` adds the
    jitter (the moment the run was meant to start), `catch_up` marks a run a clock jump skipped."""

    job: Job
    scheduled: datetime.datetime
    at: datetime.datetime
    catch_up: bool = False


@dataclass(frozen=True)
class Jump:
    """A clock step seen by a tick: `secs` > 0 forward, < 0 backward."""

    secs: float
    kind: Literal["forward", "backward"]
    big: bool


@dataclass
class Tick:
    """The outcome of one tick: runs to start, runs skipped per job id, a jump if one was seen."""

    due: list[Due] = field(default_factory=list)
    missed: dict[str, int] = field(default_factory=dict)
    jump: Jump | None = None


@dataclass
class _Entry:
    job: Job
    fire: datetime.datetime | None  # next cron fire time; None = never again
    jitter: datetime.timedelta
    version: int

    @property
    def at(self) -> datetime.datetime | None:
        return None if self.fire is None else self.fire + self.jitter


def _same_timing(a: Job, b: Job) -> bool:
    if a.spec != b.spec or a.options.jitter_secs != b.options.jitter_secs:
        return False
    if a.expr is None or b.expr is None:
        return a.expr is b.expr
    return a.expr.tz == b.expr.tz


class Schedule:
    """The scheduled (non-@reboot) jobs of all crontab files and their next fire times."""

    def __init__(
        self,
        now: datetime.datetime,
        mono: float,
        *,
        catchup_limit_secs: float = CATCHUP_LIMIT_SECS,
        jump_tolerance_secs: float = JUMP_TOLERANCE_SECS,
    ) -> None:
        self._entries: dict[str, _Entry] = {}
        self._by_file: dict[str, list[str]] = {}
        self._heap: list[tuple[datetime.datetime, int, str, int]] = []
        self._seq = itertools.count()
        self._versions = itertools.count(1)
        self._last_wall = now
        self._last_mono = mono
        self._unsettled: list[tuple[_Entry, datetime.datetime, Tick]] = []
        self.catchup_limit_secs = catchup_limit_secs
        self.jump_tolerance_secs = jump_tolerance_secs

    # --- jobs -----------------------------------------------------------------------------

    def set_jobs(self, file: str, jobs: Iterable[Job], now: datetime.datetime) -> None:
        """Replace the jobs of `file`. A job whose id, schedule and jitter are unchanged keeps
        its next fire time (a reload never makes a job fire twice or skip); @reboot jobs are
        ignored here (the daemon runs them once at start)."""
        self.settle()
        old_ids = self._by_file.pop(file, [])
        new_ids: list[str] = []
        kept: dict[str, _Entry] = {}
        for jid in old_ids:
            entry = self._entries.pop(jid, None)
            if entry is not None:
                kept[jid] = entry
        for job in jobs:
            if job.expr is None:
                continue
            old = kept.get(job.id)
            if old is not None and _same_timing(old.job, job):
                fire = old.fire
            else:
                fire = _next(job.expr, now)
            entry = _Entry(job, fire, jitter_offset(job.id, job.options.jitter_secs),
                           next(self._versions))
            self._entries[job.id] = entry
            new_ids.append(job.id)
            self._push(entry)
        if new_ids:
            self._by_file[file] = new_ids
        self._maybe_compact()

    def drop_file(self, file: str) -> None:
        self.set_jobs(file, (), self._last_wall)

    def jobs(self) -> list[Job]:
        return [e.job for e in self._entries.values()]

    def next_fire(self, job_id: str) -> datetime.datetime | None:
        entry = self._entries.get(job_id)
        return None if entry is None else entry.fire

    def __len__(self) -> int:
        return len(self._entries)

    # --- time -----------------------------------------------------------------------------

    def next_wake(self) -> datetime.datetime | None:
        """When the earliest entry is due (jitter included), or None if nothing ever fires."""
        self.settle()
        while self._heap:
            at, _, jid, version = self._heap[0]
            entry = self._entries.get(jid)
            if entry is not None and entry.version == version:
                return at
            heapq.heappop(self._heap)
        return None

    def upcoming(self, limit: datetime.datetime
                 ) -> tuple[list[tuple[Job, datetime.datetime]], datetime.datetime | None]:
        """Entries due at or before `limit` (job, due time), without consuming them, and the
        earliest due time after `limit` (possibly early: an entry since replaced). A walk of
        the heap's top, pruned where a node is past `limit`: cost in the number returned."""
        self.settle()
        out: list[tuple[Job, datetime.datetime]] = []
        beyond: datetime.datetime | None = None
        heap = self._heap
        stack = [0] if heap else []
        while stack:
            i = stack.pop()
            at, _, jid, version = heap[i]
            if at > limit:
                if beyond is None or at < beyond:
                    beyond = at
                continue
            entry = self._entries.get(jid)
            if entry is not None and entry.version == version:
                out.append((entry.job, at))
            stack.extend(k for k in (2 * i + 1, 2 * i + 2) if k < len(heap))
        return out, beyond

    def tick(self, now: datetime.datetime, mono: float, *, defer: bool = False) -> Tick:
        """Advance to wall time `now` (monotonic `mono`) and return what is due. With `defer`,
        computing the due jobs' next fire times (and their missed runs, added to the returned
        Tick) waits for `settle()`, so the caller can start the runs first."""
        self.settle()
        out = Tick()
        expected = self._last_wall + datetime.timedelta(seconds=mono - self._last_mono)
        step = (now - expected).total_seconds()
        self._last_wall, self._last_mono = now, mono
        if abs(step) > self.jump_tolerance_secs:
            big = abs(step) > self.catchup_limit_secs
            out.jump = Jump(step, "forward" if step > 0 else "backward", big)
            if step < 0:
                self._backward(now, big, out)
            else:
                self._forward(now, expected, big, out)
        self._fire_due(now, out)
        if not defer:
            self.settle()
        return out

    def settle(self) -> None:
        """Compute the next fire times of the entries the last tick fired."""
        unsettled, self._unsettled = self._unsettled, []
        for entry, now, out in unsettled:
            assert entry.fire is not None
            missed, nxt = self._count_until(entry, entry.fire, now, entry.jitter)
            if missed:
                out.missed[entry.job.id] = out.missed.get(entry.job.id, 0) + missed
            self._reschedule(entry, nxt)

    # --- internals ------------------------------------------------------------------------

    def _push(self, entry: _Entry) -> None:
        at = entry.at
        if at is not None:
            heapq.heappush(self._heap, (at, next(self._seq), entry.job.id, entry.version))

    def _reschedule(self, entry: _Entry, fire: datetime.datetime | None) -> None:
        entry.fire = fire
        entry.version = next(self._versions)
        self._push(entry)

    def _maybe_compact(self) -> None:
        if len(self._heap) > 2 * len(self._entries) + 64:
            self._heap = [
                (at, seq, jid, v) for at, seq, jid, v in self._heap
                if (e := self._entries.get(jid)) is not None and e.version == v
            ]
            heapq.heapify(self._heap)

    def _pop_due(self, now: datetime.datetime) -> list[_Entry]:
        out: list[_Entry] = []
        while self._heap and self._heap[0][0] <= now:
            _, _, jid, version = heapq.heappop(self._heap)
            entry = self._entries.get(jid)
            if entry is not None and entry.version == version:
                out.append(entry)
        return out

    @staticmethod
    def _from_wall(entry: _Entry, now: datetime.datetime) -> datetime.datetime | None:
        """Next fire following the wall clock: an occurrence in the current second still
        counts (so a wildcard job fires at the new wall time, as cron runs the current minute)."""
        expr = entry.job.expr
        assert expr is not None
        return _next(expr, now.replace(microsecond=0) - _US)

    @staticmethod
    def _count_until(entry: _Entry, start: datetime.datetime, limit: datetime.datetime,
                     jitter: datetime.timedelta) -> tuple[int, datetime.datetime | None]:
        """Occurrences after `start` whose due time is <= `limit` (capped), and the first after."""
        expr = entry.job.expr
        assert expr is not None
        n = 0
        nxt = _next(expr, start)
        while nxt is not None and nxt + jitter <= limit:
            n += 1
            if n >= MISSED_COUNT_CAP:
                return n, _next(expr, limit - jitter)
            nxt = _next(expr, nxt)
        return n, nxt

    def _fire_due(self, now: datetime.datetime, out: Tick) -> None:
        for entry in self._pop_due(now):
            assert entry.fire is not None
            fire = entry.fire
            out.due.append(Due(entry.job, fire, fire + entry.jitter))
            # Late (a stall, or many due at once): one run, the rest are counted as missed.
            self._unsettled.append((entry, now, out))

    def _forward(self, now: datetime.datetime, expected: datetime.datetime, big: bool,
                 out: Tick) -> None:
        for entry in self._pop_due(now):
            assert entry.fire is not None and entry.job.expr is not None
            at = entry.fire + entry.jitter
            if at <= expected:
                # It was due before the jump: an ordinary (late) run.
                self._reschedule(entry, entry.fire)
                continue
            if not big and entry.job.expr.fixed_time:
                out.due.append(Due(entry.job, entry.fire, at, catch_up=True))
                missed, nxt = self._count_until(entry, entry.fire, now, entry.jitter)
                if missed:
                    out.missed[entry.job.id] = out.missed.get(entry.job.id, 0) + missed
                self._reschedule(entry, nxt)
                continue
            new = self._from_wall(entry, now)
            skipped, _ = self._count_until(
                entry, entry.fire - _US, now.replace(microsecond=0) - _US, entry.jitter)
            if skipped:
                out.missed[entry.job.id] = out.missed.get(entry.job.id, 0) + skipped
            self._reschedule(entry, new)

    def _backward(self, now: datetime.datetime, big: bool, out: Tick) -> None:
        for entry in list(self._entries.values()):
            expr = entry.job.expr
            if expr is None:
                continue
            if big or not expr.fixed_time:
                self._reschedule(entry, self._from_wall(entry, now))
        self._maybe_compact()
