"""gorun.expr: field syntax, errors, next fire times (zones, DST, leap days, years, DOM/DOW).

Expected times are worked out by hand from the zone rules (cited per table), never copied from
output. The croniter-differences section at the end names each place where gorun corrects croniter;
those tests also assert what croniter itself returns, so a croniter upgrade that changes it fails
here and docs/cron.md gets updated.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from croniter import CroniterBadDateError, croniter

from gorun.errors import ExprError, GorunError
from gorun.expr import CronExpr, format_time, parse_expr
from gorun.fields import DOM, DOW, HOUR, MINUTE, MONTH, SECOND, YEAR, FieldKind, parse_field

UTC = ZoneInfo("UTC")


def times(spec: str, tz: str, start: str, n: int) -> list[str]:
    """The next n fire times of spec in zone tz strictly after ISO time start (formatted)."""
    expr = parse_expr(spec, ZoneInfo(tz))
    t: dt.datetime | None = dt.datetime.fromisoformat(start)
    out: list[str] = []
    for _ in range(n):
        assert t is not None
        t = expr.next_after(t)
        if t is None:
            out.append("never")
            break
        out.append(format_time(t))
    return out


# -- fields -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("*", HOUR, set(range(24))),
        ("*/15", MINUTE, {0, 15, 30, 45}),
        ("1-30/10", MINUTE, {1, 11, 21}),
        ("5-7", HOUR, {5, 6, 7}),
        ("1,5,9-10", DOM, {1, 5, 9, 10}),
        ("0", SECOND, {0}),
        ("jan", MONTH, {1}),
        ("JAN,Mar-may", MONTH, {1, 3, 4, 5}),
        ("*/3", MONTH, {1, 4, 7, 10}),
        ("mon-fri", DOW, {1, 2, 3, 4, 5}),
        ("sat,SUN", DOW, {6, 0}),
        ("7", DOW, {0}),
        ("0,7", DOW, {0}),
        ("5-7", DOW, {5, 6, 0}),
        ("1-7/2", DOW, {1, 3, 5, 0}),
        ("*/2", DOW, {0, 2, 4, 6}),
        ("05", MINUTE, {5}),
        ("*/100", MINUTE, {0}),
        ("2024-2030/3", YEAR, {2024, 2027, 2030}),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_field_values(text: str, kind: FieldKind, expected: set[int]) -> None:
    assert parse_field(text, kind) == frozenset(expected)


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("60", MINUTE, "minute: 60 out of range 0-59"),
        ("24", HOUR, "hour: 24 out of range 0-23"),
        ("0", DOM, "day of month: 0 out of range 1-31"),
        ("13", MONTH, "month: 13 out of range 1-12"),
        ("8", DOW, "day of week: 8 out of range 0-7"),
        ("1969", YEAR, "year: 1969 out of range 1970-2099"),
        ("5-1", MINUTE, "minute: reversed range '5-1'"),
        ("fri-sun", DOW, "day of week: reversed range 'fri-sun'"),
        ("*/0", MINUTE, "minute: zero step in '*/0'"),
        ("1-10/0", HOUR, "hour: zero step in '1-10/0'"),
        ("5/10", MINUTE, "minute: a step needs * or a range before it: '5/10' (write 5-59/10)"),
        ("foo", MONTH, "month: unknown name 'foo'"),
        ("monday", DOW, "day of week: unknown name 'monday'"),
        ("jan", HOUR, "hour: names are not allowed here: 'jan'"),
        ("", MINUTE, "minute: empty field"),
        ("1,,2", MINUTE, "minute: empty list element"),
        ("1,", MINUTE, "minute: empty list element"),
        ("-1", MINUTE, "minute: missing number in '-1'"),
        ("*/x", MINUTE, "minute: bad step 'x' in '*/x'"),
        ("L", DOM, "day of month: names are not allowed here: 'L'"),
        ("L", DOW, "day of week: unknown name 'L'"),
        ("5#2", DOW, "day of week: bad value '5#2'"),
        ("?", DOM, "day of month: bad value '?'"),
        ("١", MINUTE, "minute: bad value '١'"),  # a non-ASCII digit
    ],
)
def test_field_errors(text: str, kind: FieldKind, message: str) -> None:
    with pytest.raises(ExprError) as err:
        parse_field(text, kind)
    assert str(err.value).startswith(message)


# -- whole expressions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("* * * *", "expected 5 fields (or 7: second ... year), got 4"),
        ("* * * * * * * *", "expected 5 fields (or 7: second ... year), got 8"),
        ("", "expected 5 fields (or 7: second ... year), got 0"),
        ("0 * * * * *", "6 fields: gorun has no 6-field form"),
        ("@reboot", "@reboot has no time"),
        ("@every 5m", "unknown macro '@every 5m'"),
        ("@Daily", "unknown macro '@Daily'"),
        ("61 * * * *", "minute: 61 out of range 0-59"),
        ("0 0 0 * * * 2100", "year: 2100 out of range 1970-2099"),
        ("60 0 0 * * * *", "second: 60 out of range 0-59"),
    ],
)
def test_expression_errors(spec: str, message: str) -> None:
    with pytest.raises(ExprError) as err:
        parse_expr(spec, UTC)
    assert str(err.value).startswith(message)
    assert isinstance(err.value, GorunError)


@pytest.mark.parametrize(
    ("spec", "has_seconds", "fixed_time"),
    [
        ("30 3 * * *", False, True),
        ("30 */2 * * *", False, False),
        ("*/5 3 * * *", False, False),
        ("0-30/10 3,4 * * *", False, True),
        ("*/5 30 3 * * * *", True, True),
        ("0 * 3 * * * *", True, False),
        ("@daily", False, True),
        ("@hourly", False, False),
    ],
)
def test_flags(spec: str, has_seconds: bool, fixed_time: bool) -> None:
    expr = parse_expr(spec, UTC)
    assert (expr.has_seconds, expr.fixed_time) == (has_seconds, fixed_time)


def test_expr_is_immutable_and_compares_by_meaning() -> None:
    expr = parse_expr("0 0 * * *", UTC)
    with pytest.raises(AttributeError):
        expr.spec = "x"  # type: ignore[misc]
    assert parse_expr("@daily", UTC) == expr
    assert parse_expr("0 0 * * *", ZoneInfo("Europe/Berlin")) != expr
    assert isinstance(hash(expr), int)


def test_local_zone_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    expr = parse_expr("0 9 * * *")
    assert str(expr.tz) == "Asia/Tokyo"
    nxt = expr.next_after(dt.datetime(2023, 12, 31, 23, 0, tzinfo=UTC))  # 08:00 in Tokyo
    assert nxt is not None and format_time(nxt) == "2024-01-01T09:00:00+09:00"


def test_naive_start_is_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_expr("* * * * *", UTC).next_after(dt.datetime(2024, 1, 1))


def test_format_time() -> None:
    t = dt.datetime(2021, 3, 28, 4, 0, 0, 123456, tzinfo=ZoneInfo("Europe/Helsinki"))
    assert format_time(t) == "2021-03-28T04:00:00+03:00"


# -- next fire times, no DST --------------------------------------------------------------------

PLAIN = [
    ("every-minute", "* * * * *", "UTC", "2024-01-01T00:00:30+00:00",
     ["2024-01-01T00:01:00+00:00", "2024-01-01T00:02:00+00:00"]),
    ("strictly-after", "0 12 * * *", "UTC", "2024-01-01T12:00:00+00:00",
     ["2024-01-02T12:00:00+00:00"]),
    ("quarter-hours", "*/15 * * * *", "UTC", "2024-01-01T23:50:00+00:00",
     ["2024-01-02T00:00:00+00:00", "2024-01-02T00:15:00+00:00"]),
    ("start-in-other-zone", "0 9 * * *", "Asia/Tokyo", "2023-12-31T23:00:00+00:00",
     ["2024-01-01T09:00:00+09:00", "2024-01-02T09:00:00+09:00"]),
    ("month-names", "0 0 1 jan,jul *", "UTC", "2024-02-01T00:00:00+00:00",
     ["2024-07-01T00:00:00+00:00", "2025-01-01T00:00:00+00:00"]),
    ("weekdays", "0 8 * * mon-fri", "UTC", "2024-01-05T09:00:00+00:00",  # a Friday
     ["2024-01-08T08:00:00+00:00", "2024-01-09T08:00:00+00:00"]),
    ("sunday-as-7", "0 0 * * 7", "UTC", "2024-01-01T00:00:00+00:00",
     ["2024-01-07T00:00:00+00:00", "2024-01-14T00:00:00+00:00"]),
    ("day-31", "0 0 31 * *", "UTC", "2024-01-31T00:00:00+00:00",
     ["2024-03-31T00:00:00+00:00", "2024-05-31T00:00:00+00:00"]),
    ("yearly", "@yearly", "UTC", "2024-06-01T00:00:00+00:00",
     ["2025-01-01T00:00:00+00:00"]),
    ("weekly", "@weekly", "UTC", "2024-01-01T00:00:00+00:00",
     ["2024-01-07T00:00:00+00:00"]),
    ("monthly", "@monthly", "UTC", "2024-01-15T00:00:00+00:00",
     ["2024-02-01T00:00:00+00:00"]),
    ("hourly", "@hourly", "UTC", "2024-01-15T10:00:00+00:00",
     ["2024-01-15T11:00:00+00:00"]),
    ("seconds-every-5", "*/5 * * * * * *", "UTC", "2024-01-01T00:00:58.5+00:00",
     ["2024-01-01T00:01:00+00:00", "2024-01-01T00:01:05+00:00"]),
    ("seconds-fractional-start", "* * * * * * *", "UTC", "2024-01-01T00:00:00.5+00:00",
     ["2024-01-01T00:00:01+00:00"]),
    ("seconds-list", "10,40 0 * * * * *", "UTC", "2024-01-01T00:00:10+00:00",
     ["2024-01-01T00:00:40+00:00", "2024-01-01T01:00:10+00:00"]),
]


@pytest.mark.parametrize(("name", "spec", "tz", "start", "expected"), PLAIN,
                         ids=[c[0] for c in PLAIN])
def test_next_plain(name: str, spec: str, tz: str, start: str, expected: list[str]) -> None:
    assert times(spec, tz, start, len(expected)) == expected


# -- leap days and the year field ---------------------------------------------------------------

YEARS = [
    # Feb 29 only in leap years; 2100 is not one (divisible by 100, not by 400).
    ("feb29", "0 0 29 2 *", "2021-01-01T00:00:00+00:00",
     ["2024-02-29T00:00:00+00:00", "2028-02-29T00:00:00+00:00"]),
    ("feb29-skips-2100", "0 0 29 2 *", "2096-03-01T00:00:00+00:00",
     ["2104-02-29T00:00:00+00:00"]),
    ("feb29-and-year-range", "0 0 12 29 2 * 2025-2030", "2024-03-01T00:00:00+00:00",
     ["2028-02-29T12:00:00+00:00", "never"]),
    ("single-future-year", "0 0 0 1 1 * 2030", "2024-01-01T00:00:00+00:00",
     ["2030-01-01T00:00:00+00:00", "never"]),
    ("year-list", "0 30 6 1 6 * 2025,2027", "2024-01-01T00:00:00+00:00",
     ["2025-06-01T06:30:00+00:00", "2027-06-01T06:30:00+00:00", "never"]),
    ("year-in-the-past", "0 0 0 1 1 * 2020", "2024-01-01T00:00:00+00:00", ["never"]),
    ("year-star", "0 0 0 1 1 * *", "2024-01-01T00:00:00+00:00",
     ["2025-01-01T00:00:00+00:00"]),
    ("within-the-year", "0 0 0 1 * * 2024", "2024-11-15T00:00:00+00:00",
     ["2024-12-01T00:00:00+00:00", "never"]),
    ("last-year-2099", "0 0 0 31 12 * 2099", "2099-12-30T00:00:00+00:00",
     ["2099-12-31T00:00:00+00:00", "never"]),
]


@pytest.mark.parametrize(("name", "spec", "start", "expected"), YEARS, ids=[c[0] for c in YEARS])
def test_next_years(name: str, spec: str, start: str, expected: list[str]) -> None:
    assert times(spec, "UTC", start, len(expected)) == expected


@pytest.mark.parametrize(
    ("spec", "never"),
    [
        ("0 0 30 2 *", True),
        ("0 0 31 4,6,9,11 *", True),
        ("0 0 31 2,4 *", True),
        ("0 0 31 2,5 *", False),
        ("0 0 29 2 *", False),
        ("0 0 30 2 1", False),  # both restricted: OR, so every Monday fires
        ("0 0 30 2 */2", True),  # dow starts with *: AND, and Feb 30 never exists
        ("0 0 0 29 2 * 2025", True),
        ("0 0 0 29 2 * 2025-2027", True),
        ("0 0 0 29 2 * 2025-2028", False),
        ("0 0 0 13 * 5 2024", False),
        ("0 0 0 */2 2 */7 2026", False),  # Feb 1 2026 is an odd-day Sunday
        ("0 0 0 29 2 */7 2024", True),  # Feb 29 2024 is a Thursday, and */7 is Sunday
    ],
)
def test_never_fires(spec: str, never: bool) -> None:
    expr = parse_expr(spec, UTC)
    assert expr.never_fires() is never
    nxt = expr.next_after(dt.datetime(1970, 1, 1, tzinfo=UTC))
    assert (nxt is None) is never


# -- day of month and day of week (Vixie's rule) -------------------------------------------------

DAYS = [
    # January 2024 starts on a Monday.
    ("dom-star-dow-alone", "0 0 * * 1", "2024-01-01T00:00:00+00:00",
     ["2024-01-08T00:00:00+00:00", "2024-01-15T00:00:00+00:00"]),
    ("dow-star-dom-alone", "0 0 13 * *", "2024-01-01T00:00:00+00:00",
     ["2024-01-13T00:00:00+00:00", "2024-02-13T00:00:00+00:00"]),
    ("both-restricted-or", "0 0 13 * 5", "2024-01-01T00:00:00+00:00",
     ["2024-01-05T00:00:00+00:00", "2024-01-12T00:00:00+00:00", "2024-01-13T00:00:00+00:00",
      "2024-01-19T00:00:00+00:00"]),
    ("both-restricted-or-names", "0 0 1,15 * mon", "2024-01-01T00:00:00+00:00",
     ["2024-01-08T00:00:00+00:00", "2024-01-15T00:00:00+00:00", "2024-01-22T00:00:00+00:00",
      "2024-01-29T00:00:00+00:00", "2024-02-01T00:00:00+00:00"]),
    # `*/2` starts with '*': Vixie sets DOM_STAR, so both fields must match (odd-day Mondays).
    ("dom-star-step-and", "0 0 */2 * 1", "2024-01-01T00:00:00+00:00",
     ["2024-01-15T00:00:00+00:00", "2024-01-29T00:00:00+00:00", "2024-02-05T00:00:00+00:00",
      "2024-02-19T00:00:00+00:00"]),
    # The 1st of a month falling on Sun/Tue/Thu/Sat: Feb 1 (Thu), Jun 1 (Sat), Aug 1 (Thu) 2024.
    ("dow-star-step-and", "0 0 1 * */2", "2024-01-01T00:00:00+00:00",
     ["2024-02-01T00:00:00+00:00", "2024-06-01T00:00:00+00:00", "2024-08-01T00:00:00+00:00"]),
    # 1-31 does not start with '*': OR with Mondays = every day.
    ("full-range-is-restricted", "0 0 1-31 * 1", "2024-01-01T00:00:00+00:00",
     ["2024-01-02T00:00:00+00:00", "2024-01-03T00:00:00+00:00"]),
    ("dom-and-month", "0 0 31 * 0", "2024-02-01T00:00:00+00:00",
     ["2024-02-04T00:00:00+00:00", "2024-02-11T00:00:00+00:00"]),
]


@pytest.mark.parametrize(("name", "spec", "start", "expected"), DAYS, ids=[c[0] for c in DAYS])
def test_next_days(name: str, spec: str, start: str, expected: list[str]) -> None:
    assert times(spec, "UTC", start, len(expected)) == expected


# -- daylight saving time -----------------------------------------------------------------------
# Zone rules used (tzdata):
#   Europe/Berlin      2021-03-28 02:00 CET -> 03:00 CEST; 2021-10-31 03:00 CEST -> 02:00 CET
#   Europe/Helsinki    2021-03-28 03:00 -> 04:00 (+03); 2021-10-31 04:00 -> 03:00 (+02)
#   America/New_York   2021-03-14 02:00 EST -> 03:00 EDT; 2021-11-07 02:00 EDT -> 01:00 EST
#   Australia/Lord_Howe 30-minute shift: 2021-10-03 02:00 -> 02:30 (+11);
#                      2021-04-04 02:00 -> 01:30 (+10:30)
#   Asia/Tehran (DST abolished after 2022): 2021-03-22 00:00 -> 01:00 (+04:30);
#                      2021-09-22 00:00 -> 2021-09-21 23:00 (+03:30)

DST = [
    # Spring forward: a fixed-time job whose time is skipped runs once, right after the jump.
    ("helsinki-gap-fixed", "30 3 * * *", "Europe/Helsinki", "2021-03-27T12:00:00+02:00",
     ["2021-03-28T04:00:00+03:00", "2021-03-29T03:30:00+03:00"]),
    ("berlin-gap-fixed", "30 2 * * *", "Europe/Berlin", "2021-03-27T12:00:00+01:00",
     ["2021-03-28T03:00:00+02:00", "2021-03-29T02:30:00+02:00"]),
    ("berlin-gap-fixed-two-times-run-once", "0,30 2 * * *", "Europe/Berlin",
     "2021-03-27T12:00:00+01:00",
     ["2021-03-28T03:00:00+02:00", "2021-03-29T02:00:00+02:00"]),
    ("berlin-gap-fixed-and-real-time-run-once", "0 2,3 * * *", "Europe/Berlin",
     "2021-03-28T01:00:00+01:00",
     ["2021-03-28T03:00:00+02:00", "2021-03-29T02:00:00+02:00"]),
    ("berlin-gap-fixed-seconds", "15 30 2 * * * *", "Europe/Berlin", "2021-03-27T12:00:00+01:00",
     ["2021-03-28T03:00:00+02:00", "2021-03-29T02:30:15+02:00"]),
    ("berlin-gap-from-the-jump", "30 2 * * *", "Europe/Berlin", "2021-03-28T03:00:00+02:00",
     ["2021-03-29T02:30:00+02:00"]),
    ("newyork-gap-fixed", "30 2 * * *", "America/New_York", "2021-03-13T12:00:00-05:00",
     ["2021-03-14T03:00:00-04:00", "2021-03-15T02:30:00-04:00"]),
    ("newyork-gap-fixed-on-the-hour", "0 2 * * *", "America/New_York",
     "2021-03-13T12:00:00-05:00",
     ["2021-03-14T03:00:00-04:00", "2021-03-15T02:00:00-04:00"]),
    ("lordhowe-gap-fixed-half-hour", "15 2 * * *", "Australia/Lord_Howe",
     "2021-10-02T12:00:00+10:30",
     ["2021-10-03T02:30:00+11:00", "2021-10-04T02:15:00+11:00"]),
    ("tehran-gap-fixed-midnight", "30 0 * * *", "Asia/Tehran", "2021-03-21T12:00:00+03:30",
     ["2021-03-22T01:00:00+04:30", "2021-03-23T00:30:00+04:30"]),
    # Spring forward: wildcard jobs follow the wall clock and skip the missing times.
    ("berlin-gap-wildcard-minute", "*/30 2 * * *", "Europe/Berlin", "2021-03-28T01:00:00+01:00",
     ["2021-03-29T02:00:00+02:00", "2021-03-29T02:30:00+02:00"]),
    ("berlin-gap-wildcard-hour", "30 * * * *", "Europe/Berlin", "2021-03-28T01:00:00+01:00",
     ["2021-03-28T01:30:00+01:00", "2021-03-28T03:30:00+02:00"]),
    ("berlin-gap-hourly", "0 * * * *", "Europe/Berlin", "2021-03-28T00:30:00+01:00",
     ["2021-03-28T01:00:00+01:00", "2021-03-28T03:00:00+02:00", "2021-03-28T04:00:00+02:00"]),
    ("helsinki-gap-every-20", "*/20 * * * *", "Europe/Helsinki", "2021-03-28T02:30:00+02:00",
     ["2021-03-28T02:40:00+02:00", "2021-03-28T04:00:00+03:00", "2021-03-28T04:20:00+03:00"]),
    ("lordhowe-gap-every-10", "*/10 * * * *", "Australia/Lord_Howe",
     "2021-10-03T01:45:00+10:30",
     ["2021-10-03T01:50:00+10:30", "2021-10-03T02:30:00+11:00"]),
    # Fall back: a fixed-time job in the repeated hour runs once (the first copy).
    ("helsinki-repeat-fixed", "30 3 * * *", "Europe/Helsinki", "2021-10-30T12:00:00+03:00",
     ["2021-10-31T03:30:00+03:00", "2021-11-01T03:30:00+02:00"]),
    ("helsinki-repeat-fixed-from-second-copy", "30 3 * * *", "Europe/Helsinki",
     "2021-10-31T03:10:00+02:00", ["2021-11-01T03:30:00+02:00"]),
    ("helsinki-repeat-fixed-between-copies", "30 3 * * *", "Europe/Helsinki",
     "2021-10-31T03:45:00+03:00", ["2021-11-01T03:30:00+02:00"]),
    ("berlin-repeat-fixed", "30 2 * * *", "Europe/Berlin", "2021-10-30T12:00:00+02:00",
     ["2021-10-31T02:30:00+02:00", "2021-11-01T02:30:00+01:00"]),
    ("newyork-repeat-fixed", "30 1 * * *", "America/New_York", "2021-11-06T12:00:00-04:00",
     ["2021-11-07T01:30:00-04:00", "2021-11-08T01:30:00-05:00"]),
    ("lordhowe-repeat-fixed", "45 1 * * *", "Australia/Lord_Howe", "2021-04-03T12:00:00+11:00",
     ["2021-04-04T01:45:00+11:00", "2021-04-05T01:45:00+10:30"]),
    ("lordhowe-before-repeat-fixed", "15 1 * * *", "Australia/Lord_Howe",
     "2021-04-03T12:00:00+11:00",
     ["2021-04-04T01:15:00+11:00", "2021-04-05T01:15:00+10:30"]),
    ("tehran-repeat-fixed", "30 23 * * *", "Asia/Tehran", "2021-09-21T12:00:00+04:30",
     ["2021-09-21T23:30:00+04:30", "2021-09-22T23:30:00+03:30"]),
    # Fall back: wildcard jobs fire in both copies of the repeated hour.
    ("berlin-repeat-wildcard-minute", "*/30 2 * * *", "Europe/Berlin",
     "2021-10-31T01:45:00+02:00",
     ["2021-10-31T02:00:00+02:00", "2021-10-31T02:30:00+02:00", "2021-10-31T02:00:00+01:00",
      "2021-10-31T02:30:00+01:00", "2021-11-01T02:00:00+01:00"]),
    ("berlin-repeat-hourly", "0 * * * *", "Europe/Berlin", "2021-10-31T01:30:00+02:00",
     ["2021-10-31T02:00:00+02:00", "2021-10-31T02:00:00+01:00", "2021-10-31T03:00:00+01:00"]),
    ("helsinki-repeat-every-20-from-first-copy-end", "*/20 3 * * *", "Europe/Helsinki",
     "2021-10-31T03:50:00+03:00",
     ["2021-10-31T03:00:00+02:00", "2021-10-31T03:20:00+02:00", "2021-10-31T03:40:00+02:00",
      "2021-11-01T03:00:00+02:00"]),
    ("helsinki-repeat-every-20-from-second-copy", "*/20 3 * * *", "Europe/Helsinki",
     "2021-10-31T03:10:00+02:00",
     ["2021-10-31T03:20:00+02:00", "2021-10-31T03:40:00+02:00", "2021-11-01T03:00:00+02:00"]),
    ("lordhowe-repeat-every-15", "*/15 1 * * *", "Australia/Lord_Howe",
     "2021-04-04T01:20:00+11:00",
     ["2021-04-04T01:30:00+11:00", "2021-04-04T01:45:00+11:00", "2021-04-04T01:30:00+10:30",
      "2021-04-04T01:45:00+10:30", "2021-04-05T01:00:00+10:30"]),
    ("newyork-repeat-seconds-wildcard", "*/30 * 1 * * * *", "America/New_York",
     "2021-11-07T01:59:45-04:00",
     ["2021-11-07T01:00:00-05:00", "2021-11-07T01:00:30-05:00"]),
    # Minute and hour fixed: a fixed-time job even though the seconds field has a step.
    ("newyork-repeat-seconds-fixed", "*/30 59 1 * * * *", "America/New_York",
     "2021-11-07T01:59:15-04:00",
     ["2021-11-07T01:59:30-04:00", "2021-11-08T01:59:00-05:00"]),
    # The start time given in the second copy (fold=1), expressed in UTC.
    ("newyork-repeat-start-in-utc", "*/20 1 * * *", "America/New_York",
     "2021-11-07T06:10:00+00:00",
     ["2021-11-07T01:20:00-05:00", "2021-11-07T01:40:00-05:00", "2021-11-08T01:00:00-05:00"]),
    # UTC never shifts.
    ("utc-control", "30 2 * * *", "UTC", "2021-03-27T12:00:00+00:00",
     ["2021-03-28T02:30:00+00:00", "2021-03-29T02:30:00+00:00"]),
]


@pytest.mark.parametrize(("name", "spec", "tz", "start", "expected"), DST, ids=[c[0] for c in DST])
def test_next_dst(name: str, spec: str, tz: str, start: str, expected: list[str]) -> None:
    assert times(spec, tz, start, len(expected)) == expected


def test_second_copy_results_carry_fold() -> None:
    """The repeated hour's second copy is returned with fold=1, so the offset is right."""
    expr = parse_expr("0 * * * *", ZoneInfo("Europe/Berlin"))
    first = expr.next_after(dt.datetime.fromisoformat("2021-10-31T01:30:00+02:00"))
    assert first is not None
    second = expr.next_after(first)
    assert second is not None and second.fold == 1
    assert second.timestamp() - first.timestamp() == 3600


# -- croniter differences (docs/cron.md, "Differences from croniter") ---------------------------


def croniter_times(spec: str, tz: str, start: str, n: int, **kwargs: object) -> list[str]:
    it = croniter(spec, dt.datetime.fromisoformat(start).astimezone(ZoneInfo(tz)), **kwargs)
    return [format_time(it.get_next(dt.datetime)) for _ in range(n)]


def test_croniter_diff_dom_star_step_is_and() -> None:
    """croniter ORs `*/2` with a restricted day of week; Vixie ANDs (DOM_STAR)."""
    ours = times("0 0 */2 * 1", "UTC", "2024-01-01T00:00:00+00:00", 2)
    theirs = croniter_times("0 0 */2 * 1", "UTC", "2024-01-01T00:00:00+00:00", 2)
    assert ours == ["2024-01-15T00:00:00+00:00", "2024-01-29T00:00:00+00:00"]
    assert theirs == ["2024-01-03T00:00:00+00:00", "2024-01-05T00:00:00+00:00"]


def test_croniter_diff_dow_star_step_is_and() -> None:
    """croniter ORs a day of month with `*/2` in day of week; Vixie ANDs (DOW_STAR)."""
    ours = times("0 0 1 * */2", "UTC", "2024-01-01T00:00:00+00:00", 1)
    theirs = croniter_times("0 0 1 * */2", "UTC", "2024-01-01T00:00:00+00:00", 1)
    assert ours == ["2024-02-01T00:00:00+00:00"]
    assert theirs == ["2024-01-02T00:00:00+00:00"]


@pytest.mark.parametrize(
    ("spec", "tz", "start", "first", "twice"),
    [
        ("30 3 * * *", "Europe/Helsinki", "2021-10-30T12:00:00+03:00",
         "2021-10-31T03:30:00+03:00", "2021-10-31T03:30:00+02:00"),
        ("30 2 * * *", "Europe/Berlin", "2021-10-30T12:00:00+02:00",
         "2021-10-31T02:30:00+02:00", "2021-10-31T02:30:00+01:00"),
        ("30 1 * * *", "America/New_York", "2021-11-06T12:00:00-04:00",
         "2021-11-07T01:30:00-04:00", "2021-11-07T01:30:00-05:00"),
        ("45 1 * * *", "Australia/Lord_Howe", "2021-04-03T12:00:00+11:00",
         "2021-04-04T01:45:00+11:00", "2021-04-04T01:45:00+10:30"),
        ("30 23 * * *", "Asia/Tehran", "2021-09-21T12:00:00+04:30",
         "2021-09-21T23:30:00+04:30", "2021-09-21T23:30:00+03:30"),
    ],
    ids=["helsinki", "berlin", "new-york", "lord-howe", "tehran"],
)
def test_croniter_diff_fixed_job_runs_twice_in_repeated_hour(
    spec: str, tz: str, start: str, first: str, twice: str
) -> None:
    """croniter fires a fixed-time job in both copies of a repeated hour; Debian runs it once."""
    assert croniter_times(spec, tz, start, 2) == [first, twice]
    ours = times(spec, tz, start, 2)
    assert ours[0] == first and twice not in ours


def test_croniter_diff_wildcard_job_caught_up_after_gap() -> None:
    """croniter runs `*/30 2 * * *` at 03:00 after Berlin's spring jump; a job with '*' in the
    minute follows the wall clock and has no 02:xx that day (Debian does not catch them up)."""
    start = "2021-03-28T01:00:00+01:00"
    assert croniter_times("*/30 2 * * *", "Europe/Berlin", start, 1) == [
        "2021-03-28T03:00:00+02:00"
    ]
    assert times("*/30 2 * * *", "Europe/Berlin", start, 1) == ["2021-03-29T02:00:00+02:00"]


def test_croniter_diff_gives_up_after_50_years() -> None:
    """croniter stops searching 50 years ahead (max_years_between_matches); a year field allows up
    to 2099, so gorun steps the years itself."""
    with pytest.raises(CroniterBadDateError):
        croniter("0 0 1 1 * 0 2090", dt.datetime(2024, 1, 1)).get_next(dt.datetime)
    assert times("0 0 0 1 1 * 2090", "UTC", "2024-01-01T00:00:00+00:00", 2) == [
        "2090-01-01T00:00:00+00:00",
        "never",
    ]


def test_croniter_diff_or_with_impossible_day_of_month() -> None:
    """`0 0 30 2 1` is Feb 30 OR a Monday in February: Vixie fires on February's Mondays;
    croniter gives up because its day-of-month half never matches."""
    with pytest.raises(CroniterBadDateError):
        croniter("0 0 30 2 1", dt.datetime(2024, 1, 1)).get_next(dt.datetime)
    assert times("0 0 30 2 1", "UTC", "2024-01-01T00:00:00+00:00", 2) == [
        "2024-02-05T00:00:00+00:00",
        "2024-02-12T00:00:00+00:00",
    ]


@pytest.mark.parametrize(
    "spec",
    ["5/10 * * * *", "0 0 * * fri-sun", "0 0 * * 5-1", "0 0 L * *", "0 0 * * 5#2", "0 0 ? * *",
     "0 0 1W * *", "* * * * * *"],
    ids=["step-after-number", "dow-wrap-names", "dow-wrap-numbers", "L", "hash", "question",
         "W", "six-fields"],
)
def test_croniter_diff_syntax_debian_rejects(spec: str) -> None:
    """croniter accepts syntax Debian cron rejects (its extensions, wrap-around ranges, `5/10`,
    a 6th seconds field); gorun rejects it as Debian does."""
    assert croniter.is_valid(spec)
    with pytest.raises(ExprError):
        parse_expr(spec, UTC)


def test_croniter_diff_impossible_date_returns_none() -> None:
    """croniter raises after searching 50 years for Feb 30; gorun knows up front (None)."""
    with pytest.raises(CroniterBadDateError):
        croniter("0 0 30 2 *", dt.datetime(2024, 1, 1)).get_next(dt.datetime)
    expr = parse_expr("0 0 30 2 *", UTC)
    assert expr.never_fires()
    assert expr.next_after(dt.datetime(2024, 1, 1, tzinfo=UTC)) is None


def test_cronexpr_type() -> None:
    assert isinstance(parse_expr("* * * * *", UTC), CronExpr)
