"""The event-time parser (per-second cache + fraction) and the interval bucketer."""

from __future__ import annotations

import calendar
import random
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest

from opsagent.processors.profile.timeparse import TimeBucketer, TimeParser, parse_time

MS = "%Y-%m-%d %H:%M:%S.%f"
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize("raw,fmt,tz,want", [
    # fractions
    (b"2024-01-01 00:00:10.250", MS, UTC, 1704067210.25),
    (b"2024-01-01 00:00:10.5", MS, UTC, 1704067210.5),
    (b"2024-01-01 00:00:10.000001", MS, UTC, 1704067210.000001),
    (b"2024-01-01 00:00:10.123456789", MS, UTC, 1704067210.123456789),
    (b"2024-01-01 00:00:10.1234567890", MS, UTC, None),
    (b"2024-01-01 00:00:10,250", "%Y-%m-%d %H:%M:%S,%f", UTC, 1704067210.25),
    (b"2024-01-01 00:00:10", MS, UTC, 1704067210.0),
    (b"2024-01-01 00:00:10.", MS, UTC, None),
    (b"2024-01-01 00:00:10.25 [INFO] server", MS, UTC, 1704067210.25),
    (b"2024-01-01 00:00:10 [INFO] server", MS, UTC, 1704067210.0),
    (b"2024-01-01T00:00:10.250+0100", "%Y-%m-%dT%H:%M:%S.%f%z", UTC, 1704067210.25 - 3600),
    (b"1700000000.5", "unix", UTC, 1700000000.5),
    (b"1700000000500", "unix_ms", UTC, 1700000000.5),
    (b"2024-01-01T00:00:10.25Z", "iso8601", UTC, 1704067210.25),
    (b"2024-01-01T08:00:10,25+08:00", "iso8601", UTC, 1704067210.25),
    (b"2024-01-01T00:00:10", "iso8601", SHANGHAI, 1704067210.0 - 8 * 3600),
    # time zones: an offset in the value wins over time_zone
    (b"01/Jan/2024:01:00:10 +0100", "%d/%b/%Y:%H:%M:%S %z", NEW_YORK, 1704067210.0),
    (b"2024-01-01 08:00:10.250", MS, SHANGHAI, 1704067210.25),
    # DST: Berlin springs forward 02:00 -> 03:00 on 2024-03-31, falls back 03:00 -> 02:00 on
    # 2024-10-27; New York 02:00 -> 03:00 on 2024-03-10
    (b"2024-03-31 01:59:59.999", MS, BERLIN, 1711846799.999),
    (b"2024-03-31 03:00:00.000", MS, BERLIN, 1711846800.0),
    (b"2024-03-31 02:30:00.000", MS, BERLIN, 1711848600.0),  # gap: offset before (+01:00)
    (b"2024-10-27 02:30:00.000", MS, BERLIN, 1729989000.0),  # twice: first (+02:00)
    (b"2024-10-27 03:30:00.000", MS, BERLIN, 1729992600.0 + 3600),
    (b"2024-03-10 01:59:59.999", MS, NEW_YORK, 1710053999.999),
    (b"2024-03-10 03:00:00.000", MS, NEW_YORK, 1710054000.0),
    # year boundaries and leap days
    (b"2023-12-31 23:59:59.999", MS, UTC, 1704067199.999),
    (b"2024-01-01 00:00:00.000", MS, UTC, 1704067200.0),
    (b"2024-01-01 00:00:00.000", MS, SHANGHAI, 1704038400.0),
    (b"2024-02-29 12:00:00.000", MS, UTC, 1709208000.0),
    (b"2023-02-29 12:00:00.000", MS, UTC, None),
    # bad bytes
    (b"\xff\xfe\xfd", MS, UTC, None),
    (b"2024-01-01 00:00:10.\xef\xbc\x91", MS, UTC, None),  # fullwidth digit in the fraction
    (b"2024-01-01 00:00:10.2x5", MS, UTC, None),
    (b"2024-13-01 00:00:10.250", MS, UTC, None),
    (b"", MS, UTC, None),
    (None, MS, UTC, None),
    (b"nope", "unix", UTC, None),
    (b"inf", "unix", UTC, None),
    (b"nan", "unix_ms", UTC, None),
    ("2024-01-01 00:00:10.250", MS, UTC, 1704067210.25),  # str (JSON) as bytes
], ids=lambda v: repr(v)[:40] if isinstance(v, bytes | str) else None)
def test_time_parser(raw: bytes | str | None, fmt: str, tz: tzinfo, want: float | None) -> None:
    got = TimeParser(fmt, tz)(raw)
    if want is None:
        assert got is None
    else:
        assert got == pytest.approx(want, abs=1e-9)
    assert parse_time(raw, fmt, tz) == got


def reference(text: str, fmt: str, tz: tzinfo) -> float:
    """The previous implementation (strptime per value), extended with time zones."""
    dt = datetime.strptime(text, fmt)
    if dt.tzinfo is not None:
        return dt.timestamp()
    if tz is UTC:
        return calendar.timegm(dt.timetuple()) + dt.microsecond / 1e6
    return dt.replace(tzinfo=tz).timestamp()


@pytest.mark.parametrize("tz", [UTC, BERLIN, NEW_YORK, SHANGHAI], ids=str)
def test_cached_seconds_plus_fraction_equals_strptime(tz: tzinfo) -> None:
    rng = random.Random(7)
    parser = TimeParser(MS, tz)
    start = datetime(2023, 12, 31, 22, tzinfo=UTC)
    for _ in range(1000):  # spans the new year and random days with repeated seconds
        when = start + timedelta(milliseconds=rng.randrange(0, 3 * 3600 * 1000)) \
            if rng.random() < 0.5 else \
            start + timedelta(days=rng.randrange(0, 400), milliseconds=rng.randrange(86400000))
        text = when.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S.") + \
            f"{when.microsecond // 1000:03d}"
        want = reference(text, MS, tz)
        assert parser(text.encode()) == pytest.approx(want, abs=1e-6), text


@pytest.mark.parametrize("values,starts", [
    ([b"2024-01-01 00:00:09.999", b"2024-01-01 00:00:10.000", b"2024-01-01 00:00:19.999 x",
      b"2024-01-01 00:00:20", b"junk", b"2023-12-31 23:59:59.999"],
     [1704067200, 1704067210, 1704067210, 1704067220, None, 1704067190]),
    (["2024-01-01 00:00:09.999", None, "2024-01-01 00:00:10.5", "bad"],
     [1704067200, None, 1704067210, None]),
], ids=["bytes-cut-at-the-fraction", "str-and-none"])
def test_bucketer_puts_each_value_in_the_interval_of_its_exact_time(
        values: list[bytes | str | None], starts: list[int | None]) -> None:
    parser = TimeParser(MS, UTC)
    b = TimeBucketer(parser, 10)
    exact = [parser(v) for v in values]
    assert [None if t is None else int(t // 10) * 10 for t in exact] == starts
    assert b.starts(values) == starts
    assert b.starts(values) == starts  # again, from the cache


def test_bucketer_never_reads_the_fraction_whatever_the_value_type() -> None:
    # A fraction cannot move a line to another interval, so it is not read (nor checked): the
    # same for bytes (delimited, regex) and str (JSON) values.
    values: list[bytes | str | None] = [
        b"2024-01-01 00:00:10.\xef\xbc\x91", b"2024-01-01 00:00:19.x",
        "2024-01-01 00:00:10.\uff11", "2024-01-01 00:00:19.x"]
    assert TimeParser(MS)(values[0]) is None  # an exact time is not available
    assert TimeBucketer(TimeParser(MS), 10).starts(values) == [1704067210] * 4
    assert TimeBucketer(TimeParser(MS), 10).starts(values[2:]) == [1704067210] * 2


def test_bucketer_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import opsagent.processors.profile.timeparse as tp

    monkeypatch.setattr(tp, "_CACHE_MAX", 5)
    b = TimeBucketer(TimeParser("unix"), 10)
    values = [str(1700000000 + i).encode() for i in range(20)]
    assert b.starts(values) == [1700000000 + (i // 10) * 10 for i in range(20)]
    assert len(b._starts) <= 5


def test_fraction_is_cut_only_when_it_ends_the_format() -> None:
    assert TimeParser(MS).cut_sep == b"."
    assert TimeParser("%Y-%m-%d %H:%M:%S,%f").cut_sep == b","
    assert TimeParser("%Y-%m-%dT%H:%M:%S.%f%z").cut_sep is None  # the zone follows
    assert TimeParser("%d.%m.%Y %H:%M:%S.%f").cut_sep is None  # "." also earlier
    assert TimeParser("%d.%m.%Y %H:%M:%S.%f")(b"01.01.2024 00:00:10.250") == 1704067210.25
    assert TimeParser("iso8601").cut_sep is None
