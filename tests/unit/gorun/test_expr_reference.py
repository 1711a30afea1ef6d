"""gorun.expr against a brute-force reference of Debian's rules (property tests with hypothesis).

The reference walks every UTC minute near DST transitions in several zones and decides, minute by
minute, whether the job runs:
  * the wall-clock time matches the fields (day of month / day of week by Vixie's star rule), and
    for a fixed-time job only in the first copy of a repeated hour; or
  * the minute is the instant right after a forward jump, the job is fixed-time, and some skipped
    wall-clock minute matches (it runs once, at the jump).
Field values come from small hand-written tables, so the reference shares no parsing code with
gorun. `CronExpr.next_after` iterated from a random start must produce exactly the same instants.
"""

from __future__ import annotations

import calendar
import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from gorun.expr import parse_expr

UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)
WINDOW = dt.timedelta(hours=30)

MINUTES = [("*", range(60)), ("*/15", range(0, 60, 15)), ("0", [0]), ("30", [30]),
           ("0,30", [0, 30]), ("5-10", range(5, 11)), ("*/7", range(0, 60, 7)), ("45", [45])]
HOURS = [("*", range(24)), ("1", [1]), ("2", [2]), ("3", [3]), ("*/2", range(0, 24, 2)),
         ("1-3", [1, 2, 3]), ("0,2", [0, 2]), ("23", [23]), ("0", [0])]
DOMS = [("*", range(1, 32)), ("*/2", range(1, 32, 2)), ("1-7", range(1, 8)), ("31", [31]),
        ("3,4", [3, 4]), ("28-31", range(28, 32))]
MONTHS = [("*", range(1, 13)), ("3,4", [3, 4]), ("9-11", [9, 10, 11]), ("*/2", range(1, 13, 2))]
DOWS = [("*", range(7)), ("0", [0]), ("1-5", range(1, 6)), ("*/2", [0, 2, 4, 6]),
        ("sun,sat", [0, 6]), ("7", [0])]

# (zone, a UTC instant near one of its transitions)
TRANSITIONS = [
    ("Europe/Berlin", "2021-03-28T01:00:00"), ("Europe/Berlin", "2021-10-31T01:00:00"),
    ("Europe/Helsinki", "2021-03-28T01:00:00"), ("Europe/Helsinki", "2021-10-31T01:00:00"),
    ("America/New_York", "2021-03-14T07:00:00"), ("America/New_York", "2021-11-07T06:00:00"),
    ("Australia/Lord_Howe", "2021-10-02T15:30:00"), ("Australia/Lord_Howe", "2021-04-03T15:00:00"),
    ("Asia/Tehran", "2021-03-21T20:30:00"), ("Asia/Tehran", "2021-09-21T19:30:00"),
    ("UTC", "2024-02-28T23:00:00"),
]


class Reference:
    def __init__(self, fields: list[tuple[str, range | list[int]]], tz: ZoneInfo) -> None:
        texts = [f[0] for f in fields]
        self.spec = " ".join(texts)
        self.minute, self.hour, self.dom, self.month, self.dow = (set(f[1]) for f in fields)
        self.star = texts[2].startswith("*") or texts[4].startswith("*")
        self.fixed = not texts[0].startswith("*") and not texts[1].startswith("*")
        self.tz = tz

    def wall_matches(self, w: dt.datetime) -> bool:
        if w.minute not in self.minute or w.hour not in self.hour or w.month not in self.month:
            return False
        in_dom = w.day in self.dom
        in_dow = (calendar.weekday(w.year, w.month, w.day) + 1) % 7 in self.dow
        return (in_dom and in_dow) if self.star else (in_dom or in_dow)

    def fires(self, u: dt.datetime) -> bool:
        local = u.astimezone(self.tz)
        wall = local.replace(tzinfo=None)
        if self.wall_matches(wall) and not (self.fixed and local.fold == 1):
            return True
        if not self.fixed:
            return False
        before = (u - MINUTE).astimezone(self.tz)
        jump = local.utcoffset() - before.utcoffset()  # type: ignore[operator]
        if jump <= dt.timedelta(0):
            return False
        skipped = wall - jump
        while skipped < wall:
            if self.wall_matches(skipped):
                return True
            skipped += MINUTE
        return False

    def between(self, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
        u = start.astimezone(UTC).replace(second=0, microsecond=0) + MINUTE
        out = []
        while u <= end:
            if self.fires(u):
                out.append(u)
            u += MINUTE
        return out


@settings(max_examples=250, deadline=None)
@given(
    st.sampled_from(MINUTES), st.sampled_from(HOURS), st.sampled_from(DOMS),
    st.sampled_from(MONTHS), st.sampled_from(DOWS), st.sampled_from(TRANSITIONS),
    st.integers(min_value=-4 * 3600, max_value=4 * 3600),
)
def test_next_after_matches_reference(
    minute: tuple[str, range], hour: tuple[str, range], dom: tuple[str, range],
    month: tuple[str, range], dow: tuple[str, range], transition: tuple[str, str], shift: int,
) -> None:
    zone, near = transition
    tz = ZoneInfo(zone)
    ref = Reference([minute, hour, dom, month, dow], tz)
    start = dt.datetime.fromisoformat(near).replace(tzinfo=UTC) + dt.timedelta(seconds=shift)
    end = start + WINDOW
    expected = ref.between(start, end)

    expr = parse_expr(ref.spec, tz)
    got: list[dt.datetime] = []
    t: dt.datetime | None = start
    while True:
        assert t is not None
        t = expr.next_after(t)
        if t is None or t.astimezone(UTC) > end:
            break
        assert t.tzinfo is tz
        got.append(t.astimezone(UTC))
        assert len(got) <= len(expected) + 1, (ref.spec, zone, start, got, expected)
    assert got == expected, (ref.spec, zone, start)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(MINUTES), st.sampled_from(HOURS), st.sampled_from(DOMS),
    st.sampled_from(MONTHS), st.sampled_from(DOWS), st.sampled_from(TRANSITIONS),
    st.integers(min_value=-10**8, max_value=10**8),
)
def test_next_after_is_strictly_later_and_monotonic(
    minute: tuple[str, range], hour: tuple[str, range], dom: tuple[str, range],
    month: tuple[str, range], dow: tuple[str, range], transition: tuple[str, str], shift: int,
) -> None:
    zone, near = transition
    ref = Reference([minute, hour, dom, month, dow], ZoneInfo(zone))
    expr = parse_expr(ref.spec, ZoneInfo(zone))
    t = dt.datetime.fromisoformat(near).replace(tzinfo=UTC) + dt.timedelta(seconds=shift)
    for _ in range(4):
        nxt = expr.next_after(t)
        assert nxt is not None
        assert nxt.timestamp() > t.timestamp()
        assert nxt.second == 0 and nxt.microsecond == 0
        # Either a matching wall time, or (fixed-time jobs only) the instant after a jump.
        if not ref.wall_matches(nxt.replace(tzinfo=None)):
            assert ref.fixed and ref.fires(nxt.astimezone(UTC))
        t = nxt


SECONDS = [("*/20", range(0, 60, 20)), ("0", [0]), ("15,45", [15, 45])]
SECOND = dt.timedelta(seconds=1)


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from(SECONDS), st.sampled_from(MINUTES[:4]), st.sampled_from(HOURS[:6]),
    st.sampled_from(TRANSITIONS[:8]), st.integers(min_value=-3600, max_value=3600),
)
def test_seconds_form_matches_reference(
    second: tuple[str, range], minute: tuple[str, range], hour: tuple[str, range],
    transition: tuple[str, str], shift: int,
) -> None:
    """The 7-field form near DST transitions, against a second-by-second reference."""
    zone, near = transition
    tz = ZoneInfo(zone)
    secs, mins, hours = set(second[1]), set(minute[1]), set(hour[1])
    fixed = not minute[0].startswith("*") and not hour[0].startswith("*")

    def wall_matches(w: dt.datetime) -> bool:
        return w.second in secs and w.minute in mins and w.hour in hours

    start = dt.datetime.fromisoformat(near).replace(tzinfo=UTC) + dt.timedelta(seconds=shift)
    end = start + dt.timedelta(hours=3)
    expected = []
    u = start.replace(microsecond=0) + SECOND
    while u <= end:
        local = u.astimezone(tz)
        wall = local.replace(tzinfo=None)
        fires = wall_matches(wall) and not (fixed and local.fold == 1)
        jump = local.utcoffset() - (u - SECOND).astimezone(tz).utcoffset()  # type: ignore[operator]
        if not fires and fixed and jump > dt.timedelta(0):
            fires = any(wall_matches(wall - jump + k * SECOND)
                        for k in range(int(jump.total_seconds())))
        if fires:
            expected.append(u)
        u += SECOND

    expr = parse_expr(f"{second[0]} {minute[0]} {hour[0]} * * * *", tz)
    got: list[dt.datetime] = []
    t: dt.datetime | None = start
    while True:
        assert t is not None
        t = expr.next_after(t)
        if t is None or t.astimezone(UTC) > end:
            break
        got.append(t.astimezone(UTC))
    assert got == expected
