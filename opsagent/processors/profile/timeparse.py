"""Event time of profile lines: epoch seconds of a time field, and the interval each line
belongs to, parsing every distinct second once instead of every line.

A millisecond time column makes nearly every line's time distinct, so strptime per value was
most of the cost of a timed log. The second before the fraction repeats (a thousand lines per
second share "2024-01-01 12:00:00"), so `TimeParser` parses that head once, caches its epoch,
and adds the fraction; `TimeBucketer` goes further for grouping: the fraction never moves a
line to another interval (intervals are whole seconds), so the column is cut at the fraction
separator in C (`bytes.partition`) before the lines are counted, and each distinct head is
mapped to its interval start once.

Rules (docs/profile.md, "Event time"):
- `unix` (seconds, fractional allowed), `unix_ms`, `iso8601`, or a strptime format.
- Times without a zone are in `tz` (time_zone, default UTC). A local time that happens twice
  (DST ends) is the first occurrence, a local time that does not exist (DST starts) uses the
  offset before the change: zoneinfo's fold=0.
- In a strptime format, the fraction `%f` after `.` or `,` may be 1-9 digits and may be absent
  ("12:00:00" parses with "%H:%M:%S.%f"); a field may continue after the time with a space
  and other words (a log4j/logback `%d{...} [%p] ` prefix joined to the first field), which
  are ignored.
- The interval of a line depends on its second only, so TimeBucketer does not read the
  fraction at all when the format ends with it (a malformed fraction is not an error there).
"""

from __future__ import annotations

import calendar
import math
import operator
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, tzinfo
from itertools import repeat

Raw = bytes | str | None

_CACHE_MAX = 100_000
_ISO_SEPS = ".,"


class TimeParser:
    """Epoch seconds (float) of raw time values of one `time_format`; None when unparseable."""

    def __init__(self, fmt: str, tz: tzinfo = UTC) -> None:
        self.fmt = fmt
        self.tz = tz
        self._utc = tz is UTC
        self._epochs: dict[str, float | None] = {}  # head text (no fraction) -> epoch
        self._sep = ""  # strptime: the byte before %f ("." or ","), "" when none
        self._head_fmt = fmt  # the format without its fraction
        self.cut_sep: bytes | None = None  # heads can be cut at this byte (fraction last)
        if fmt not in ("unix", "unix_ms", "iso8601"):
            i = fmt.find("%f")
            if i >= 1 and fmt[i - 1] in ".," and fmt.count("%f") == 1 \
                    and fmt[:i - 1].find(fmt[i - 1]) < 0:
                self._sep = fmt[i - 1]
                self._head_fmt = fmt[:i - 1] + fmt[i + 2:]
                if not fmt[i + 2:]:
                    self.cut_sep = self._sep.encode()
        self._words = len(self._head_fmt.split(" "))

    def __call__(self, raw: Raw) -> float | None:
        if raw is None:
            return None
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        fmt = self.fmt
        try:
            if fmt == "unix":
                t = float(text)
            elif fmt == "unix_ms":
                t = float(text) / 1000.0
            elif fmt == "iso8601":
                return self._fractional(text.strip(), _ISO_SEPS)
            elif self._sep:
                return self._fractional(text, self._sep)
            else:
                return self._epoch(text)
        except (ValueError, OverflowError):
            return None
        return t if math.isfinite(t) else None

    def _fractional(self, text: str, seps: str) -> float | None:
        """head[sep digits]rest -> epoch(head + rest) + 0.digits."""
        cut = -1
        for sep in seps:
            j = text.find(sep)
            if j >= 0 and (cut < 0 or j < cut):
                cut = j
        if cut < 0:
            return self._epoch(text)
        k = cut + 1
        n = len(text)
        while k < n and "0" <= text[k] <= "9":
            k += 1
        digits = text[cut + 1:k]
        if not digits or len(digits) > 9:
            return None
        epoch = self._epoch(text[:cut] + text[k:])
        if epoch is None:
            return None
        return epoch + int(digits) / 10.0 ** len(digits)

    def _epoch(self, text: str) -> float | None:
        """Epoch of a time without fraction, cached per distinct text."""
        cache = self._epochs
        if text in cache:
            return cache[text]
        t = self._parse_whole(text)
        if t is None and text.count(" ") >= self._words:
            # The field goes on after the time: keep as many words as the format has.
            t = self._parse_whole(" ".join(text.split(" ", self._words)[:self._words]))
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[text] = t
        return t

    def _parse_whole(self, text: str) -> float | None:
        try:
            if self.fmt == "iso8601":
                dt = datetime.fromisoformat(text)
            else:
                dt = datetime.strptime(text, self._head_fmt)
            if dt.tzinfo is not None:
                t = dt.timestamp()
            elif self._utc:
                t = calendar.timegm(dt.timetuple()) + dt.microsecond / 1e6
            else:
                t = dt.replace(tzinfo=self.tz).timestamp()
        except (ValueError, OverflowError):
            return None
        return t if math.isfinite(t) else None


class TimeBucketer:
    """Interval start (epoch seconds, a multiple of interval_secs) of each raw time value of a
    column; None for a value without a parseable time."""

    def __init__(self, parser: TimeParser, interval_secs: int) -> None:
        self.parser = parser
        self.interval = interval_secs
        self._starts = _StartCache(self._start)

    def _start(self, raw: Raw) -> int | None:
        t = self.parser(raw)
        return None if t is None else int(t // self.interval) * self.interval

    def map_bytes(self, times: Iterable[bytes]) -> Iterator[int | None]:
        """Lazily, for values that are all bytes: the fraction is cut off in C and each
        distinct head is parsed once (a dict look-up per line, in C, otherwise)."""
        sep = self.parser.cut_sep
        heads: Iterable[bytes] = times if sep is None else \
            map(operator.itemgetter(0), map(bytes.partition, times, repeat(sep)))
        return map(self._starts.__getitem__, heads)

    def starts(self, column: Sequence[Raw]) -> list[int | None]:
        """For any values (bytes, str or None); cut like map_bytes, so every format puts a
        value in the same interval."""
        if all(isinstance(v, bytes) for v in column):
            return list(self.map_bytes(typing.cast(Sequence[bytes], column)))
        sep = self.parser.cut_sep
        if sep is not None:
            seps = sep.decode()
            column = [v.partition(seps)[0] if isinstance(v, str) else
                      v.partition(sep)[0] if isinstance(v, bytes) else None for v in column]
        return list(map(self._starts.__getitem__, column))

    def start(self, raw: Raw) -> int | None:
        return self.starts([raw])[0]


class _StartCache(dict[Raw, int | None]):
    """raw time -> interval start; a miss computes it (dict.__getitem__ stays in C for hits).
    Bounded: cleared when full."""

    def __init__(self, compute: Callable[[Raw], int | None]) -> None:
        super().__init__()
        self._compute = compute

    def __missing__(self, key: Raw) -> int | None:
        if len(self) >= _CACHE_MAX:
            self.clear()
        value = self[key] = self._compute(key)
        return value


def parse_time(raw: Raw, fmt: str, tz: tzinfo = UTC) -> float | None:
    """Epoch seconds of one time value (see TimeParser); None when it does not parse."""
    return TimeParser(fmt, tz)(raw)


__all__ = ["TimeBucketer", "TimeParser", "parse_time"]
