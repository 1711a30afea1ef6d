"""Cron expressions: parse the time part of a job line and find its next fire time in a zone.

croniter (pinned to one major version) iterates wall-clock times; this module parses the fields
itself (Debian syntax and messages), feeds croniter a normalised expression, and decides the rest
where croniter differs from Debian cron (docs/cron.md lists each difference and its test):

* day of month / day of week: Vixie's rule -- if either field starts with `*` both must match,
  otherwise either may (croniter treats `*/2` as restricted and ORs it).
* years: croniter gives up after 50 years without a match (`... 2090` from 2024), so the
  year field is stepped here and croniter only sees the other six fields.
* time zones: croniter only sees naive wall-clock times; the mapping to instants (DST gaps and
  repeated hours) is done here, following Debian's rule for fixed-time and wildcard jobs.
"""

from __future__ import annotations

import calendar
import datetime
import os
import threading
from datetime import timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from gorun.errors import ExprError
from gorun.fields import DOM, DOW, HOUR, MINUTE, MONTH, SECOND, YEAR, parse_field

__all__ = ["MACROS", "CronExpr", "ExprError", "format_time", "local_zone", "parse_expr"]

# crontab(5) macros; @reboot is a crontab concept (no time), handled by gorun.crontab.
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_KINDS_5 = (MINUTE, HOUR, DOM, MONTH, DOW)
_KINDS_7 = (SECOND, MINUTE, HOUR, DOM, MONTH, DOW, YEAR)
_UTC = datetime.UTC
_TINY = timedelta(microseconds=1)
_SECOND_ZERO: frozenset[int] = frozenset({0})  # shared: 10,000 jobs need one copy
_NO_YEARS: frozenset[int] = frozenset()


class CronExpr:
    """An immutable, validated cron expression bound to a time zone.

    Results of `next_after` are aware datetimes in `tz`; in a repeated hour the second copy has
    `fold=1`. Python ignores `fold` when comparing or subtracting two datetimes that share a tzinfo,
    so compare them via `.timestamp()` or after `.astimezone(timezone.utc)`.
    """

    __slots__ = (
        "_cron",
        "_dom_star",
        "_dow_star",
        "_never",
        "_sets",
        "_years",
        "fixed_time",
        "has_seconds",
        "spec",
        "tz",
    )

    spec: str
    tz: tzinfo
    has_seconds: bool
    fixed_time: bool
    _sets: tuple[frozenset[int], ...]  # second minute hour dom month dow year
    _years: tuple[int, ...] | None  # None: every year
    _dom_star: bool
    _dow_star: bool
    _never: bool
    _cron: tuple[str, bool] | None  # see _croniter_key

    def __init__(self, spec: str, tz: tzinfo, texts: tuple[str, ...]) -> None:
        kinds = _KINDS_7 if len(texts) == 7 else _KINDS_5
        sets = tuple(parse_field(text, kind) for text, kind in zip(texts, kinds, strict=True))
        if len(texts) == 5:
            texts = ("0", *texts, "*")
            sets = (_SECOND_ZERO, *sets, _NO_YEARS)
        _, minute_t, hour_t, dom_t, _, dow_t, year_t = texts
        setattr_ = object.__setattr__
        setattr_(self, "spec", spec)
        setattr_(self, "tz", tz)
        setattr_(self, "has_seconds", len(kinds) == 7)
        setattr_(self, "fixed_time", not minute_t.startswith("*") and not hour_t.startswith("*"))
        # Vixie cron's DOM_STAR / DOW_STAR flags: set when the field text starts with '*'.
        setattr_(self, "_dom_star", dom_t.startswith("*"))
        setattr_(self, "_dow_star", dow_t.startswith("*"))
        setattr_(self, "_sets", sets)
        setattr_(self, "_years", None if year_t == "*" else tuple(sorted(sets[6])))
        setattr_(self, "_cron", None)
        setattr_(self, "_never", self._no_date_matches())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"CronExpr is immutable (cannot set {name})")

    def __repr__(self) -> str:
        return f"CronExpr({self.spec!r}, tz={self.tz!s})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronExpr):
            return NotImplemented
        return self._sets == other._sets and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self._sets, self._key()))

    def _key(self) -> tuple[object, ...]:
        return (str(self.tz), self._dom_star, self._dow_star, self._years)

    # -- matching (pure, used for the never-fires analysis and by tests) -------------------------

    def matches(self, wall: datetime.datetime) -> bool:
        """True when the naive wall-clock time `wall` matches every field (seconds ignored in
        the 5-field form, which fires at second 0)."""
        sec, minute, hour, dom, month, dow, _ = self._sets
        if wall.second not in sec or wall.minute not in minute or wall.hour not in hour:
            return False
        return wall.month in month and self._day_matches(wall.year, wall.month, wall.day)

    def _day_matches(self, year: int, month: int, day: int) -> bool:
        if self._years is not None and year not in self._years:
            return False
        dom, dow = self._sets[3], self._sets[5]
        weekday = (calendar.weekday(year, month, day) + 1) % 7  # cron: 0 = Sunday
        if self._dom_star or self._dow_star:
            return day in dom and weekday in dow
        return day in dom or weekday in dow

    def _no_date_matches(self) -> bool:
        """True when no calendar date at all matches the date fields."""
        dom, months = self._sets[3], self._sets[4]
        either = not (self._dom_star or self._dow_star)
        if self._years is None:
            if either:
                return False  # every month has every weekday
            # Over the 400-year cycle every valid (month, day) falls on every weekday.
            return not any(d <= _MAX_DAYS[m] for m in months for d in dom)
        for year in self._years:
            for month in sorted(months):
                for day in range(1, calendar.monthrange(year, month)[1] + 1):
                    if self._day_matches(year, month, day):
                        return False
        return True

    def never_fires(self) -> bool:
        """True when no date in any year matches (e.g. `0 0 30 2 *`, or Feb 29 in 2025 only)."""
        return bool(self._never)

    # -- iteration ------------------------------------------------------------------------------

    def next_after(self, t: datetime.datetime) -> datetime.datetime | None:
        """First fire time strictly after aware `t`, aware in `self.tz`; None if none remains."""
        if t.tzinfo is None or t.utcoffset() is None:
            raise ValueError("next_after needs an aware datetime")
        if self._never:
            return None
        tz = self.tz
        local = t.astimezone(tz)
        wall = local.replace(tzinfo=None, fold=0)
        start = wall
        offsets = _offsets(wall, tz)
        if offsets is not None and offsets[0] > offsets[1]:
            # t lies in a repeated (fall-back) hour [first, end) of wall-clock time.
            first, end = _overlap_bounds(t, tz, offsets, in_first_copy=local.fold == 0)
            if local.fold == 0:
                cand = self._wall_next(wall)
                if cand is not None and cand < end:
                    return cand.replace(tzinfo=tz)
                if not self.fixed_time:  # wildcard jobs also fire in the second copy
                    cand = self._wall_next(first - _TINY)
                    if cand is not None and cand < end:
                        return cand.replace(tzinfo=tz, fold=1)
            elif not self.fixed_time:
                cand = self._wall_next(wall)
                if cand is not None and cand < end:
                    return cand.replace(tzinfo=tz, fold=1)
            # Fixed-time jobs ran in the first copy only; continue after the repeated hour.
            start = max(wall, end - _TINY)
        while True:
            cand = self._wall_next(start)
            if cand is None:
                return None
            offsets = _offsets(cand, tz)
            if offsets is None or offsets[0] > offsets[1]:
                return cand.replace(tzinfo=tz)  # normal, or the first copy of a repeated time
            if self.fixed_time:
                return _gap_end(cand, tz, offsets)  # skipped by a jump: run once right after it
            start = cand  # wildcard jobs follow the wall clock: a skipped time never happens

    def _wall_next(self, wall: datetime.datetime) -> datetime.datetime | None:
        """First naive wall-clock time strictly after naive `wall` matching all fields."""
        cron, lock = _shared_croniter(*self._croniter_key())
        try:
            with lock:
                if self._years is None:
                    result: datetime.datetime = cron.get_next(datetime.datetime, start_time=wall)
                    return result
                # croniter's year field gives up after 50 years; step the years here.
                for year in self._years:
                    if year < wall.year:
                        continue
                    begin = wall if year == wall.year else datetime.datetime(year, 1, 1) - _TINY
                    result = cron.get_next(datetime.datetime, start_time=begin)
                    if result.year == year:
                        return result
                return None
        except (CroniterBadDateError, OverflowError, ValueError):  # ValueError: past year 9999
            return None

    def _croniter_key(self) -> tuple[str, bool]:
        """The normalised croniter expression (numbers only) and its day_or flag."""
        key = self._cron
        if key is None:
            sec, minute, hour, dom, month, dow, _ = self._sets
            day_and = self._dom_star or self._dow_star
            if not day_and and (dom == _ALL[3] or dow == _ALL[5]):
                dom_text = dow_text = "*"  # OR with a field that matches every day
            elif not day_and and not any(d <= _MAX_DAYS[m] for m in month for d in dom):
                # OR with an impossible day of month (Feb 30) is the day of week alone;
                # croniter would raise CroniterBadDateError instead.
                dom_text, dow_text, day_and = "*", _cron_text(dow, 5), True
            else:
                dom_text, dow_text = _cron_text(dom, 3), _cron_text(dow, 5)
            parts = [_cron_text(minute, 1), _cron_text(hour, 2), dom_text, _cron_text(month, 4)]
            parts.append(dow_text)
            if self.has_seconds:
                parts.append(_cron_text(sec, 0))  # croniter's 6-field form: seconds last
            key = (" ".join(parts), not day_and)
            object.__setattr__(self, "_cron", key)
        return key


@lru_cache(maxsize=1024)
def _shared_croniter(text: str, day_or: bool) -> tuple[croniter, threading.Lock]:
    """A croniter per normalised expression, shared by every CronExpr that has it, with the lock
    that serialises its use (croniter keeps the current time in the object). Bounded, because
    10,000 jobs would otherwise hold 10,000 croniters (~1.3 kB each); a miss costs ~0.1 ms."""
    cron = croniter(
        text, datetime.datetime(2000, 1, 1), day_or=day_or, max_years_between_matches=50
    )
    return cron, threading.Lock()


_MAX_DAYS = {m: (29 if m == 2 else calendar.monthrange(2001, m)[1]) for m in range(1, 13)}
_ALL = tuple(frozenset(range(k.low, k.high + 1)) - ({7} if k is DOW else set()) for k in _KINDS_7)


def _cron_text(values: frozenset[int], index: int) -> str:
    if values == _ALL[index]:
        return "*"
    return ",".join(str(v) for v in sorted(values))


def _offsets(wall: datetime.datetime, tz: tzinfo) -> tuple[timedelta, timedelta] | None:
    """None for an unambiguous wall time, else the UTC offsets of its fold=0 and fold=1 readings
    (fold0 > fold1: a repeated time; fold0 < fold1: a time skipped by a forward jump)."""
    off0 = wall.replace(tzinfo=tz).utcoffset()
    off1 = wall.replace(tzinfo=tz, fold=1).utcoffset()
    if off0 == off1 or off0 is None or off1 is None:
        return None
    return off0, off1


def _transition(tz: tzinfo, lo: datetime.datetime, hi: datetime.datetime) -> datetime.datetime:
    """The first whole-second UTC instant in (lo, hi] whose offset differs from lo's."""
    before = lo.astimezone(tz).utcoffset()
    lo_s, hi_s = int(lo.timestamp()) - 1, int(hi.timestamp()) + 1
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if datetime.datetime.fromtimestamp(mid, tz).utcoffset() == before:
            lo_s = mid
        else:
            hi_s = mid
    return datetime.datetime.fromtimestamp(hi_s, _UTC)


def _gap_end(
    wall: datetime.datetime, tz: tzinfo, offsets: tuple[timedelta, timedelta]
) -> datetime.datetime:
    """The instant of the forward jump that skipped naive `wall`, in `tz`."""
    off0, off1 = offsets
    lo = (wall - off1).replace(tzinfo=_UTC)
    hi = (wall - off0).replace(tzinfo=_UTC)
    return _transition(tz, lo, hi).astimezone(tz)


def _overlap_bounds(
    t: datetime.datetime,
    tz: tzinfo,
    offsets: tuple[timedelta, timedelta],
    *,
    in_first_copy: bool,
) -> tuple[datetime.datetime, datetime.datetime]:
    """Naive wall-clock [first, end) of the repeated stretch that contains instant `t`."""
    off0, off1 = offsets
    span = off0 - off1
    lo, hi = (t, t + span) if in_first_copy else (t - span, t)
    switch = _transition(tz, lo.astimezone(_UTC), hi.astimezone(_UTC)).replace(tzinfo=None)
    return switch + off1, switch + off0


def parse_expr(spec: str, tz: tzinfo | None = None) -> CronExpr:
    """Parse 5 fields, 7 fields (sec min hour dom mon dow year) or an @macro; raise ExprError.

    `tz` None means the local zone (see `local_zone`), resolved now.
    """
    zone = tz if tz is not None else local_zone()
    return _parse_cached(spec, zone)


@lru_cache(maxsize=4096)
def _parse_cached(spec: str, zone: tzinfo) -> CronExpr:
    text = spec.strip()
    if text.startswith("@"):
        if text == "@reboot":
            raise ExprError("@reboot has no time; it is only valid as a crontab job line")
        try:
            return CronExpr(text, zone, tuple(MACROS[text].split()))
        except KeyError:
            known = " ".join(["@reboot", *MACROS])
            raise ExprError(f"unknown macro {text!r} (one of {known})") from None
    tokens = tuple(text.split())
    if len(tokens) == 6:
        raise ExprError(
            "6 fields: gorun has no 6-field form (Debian would read the 6th as the command);"
            " use 5 fields, or 7 (second minute hour day-of-month month day-of-week year)"
        )
    if len(tokens) not in (5, 7):
        raise ExprError(f"expected 5 fields (or 7: second ... year), got {len(tokens)}")
    return CronExpr(" ".join(tokens), zone, tokens)


def local_zone() -> tzinfo:
    """The local time zone as a ZoneInfo: $TZ if it names a zone, else /etc/localtime, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        target = ""
    if "zoneinfo/" in target:
        try:
            return ZoneInfo(target.split("zoneinfo/", 1)[1])
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return _localtime_file()


@lru_cache(maxsize=1)
def _localtime_file() -> tzinfo:
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return ZoneInfo("UTC")


def format_time(t: datetime.datetime) -> str:
    """ISO-8601 with seconds and UTC offset: 2021-03-28T04:00:00+03:00."""
    return t.isoformat(timespec="seconds")
