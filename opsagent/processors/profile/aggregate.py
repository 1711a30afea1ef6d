"""Per-interval, per-label-set statistics from parsed column counts.

Per interval (start aligned to a multiple of interval_secs since the epoch) and label set:
count, errors, rate, sum, min, max, mean and percentiles from a DDSketch, optionally cumulative
`le` bucket counts. Counters (requests, errors, latency_sum, latency_bucket, unparsed,
series_overflow) are per-interval deltas. A cap on the label sets of an interval sends the excess
lines to the series whose every label is "other" and counts them (series_overflow).

Output is a list of `Interval`s, each a timestamp and `Sample`s (name suffix, labels, value,
kind "c" counter or "g" gauge); sinks turn them into wire lines.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections import Counter
from collections.abc import Mapping, Sequence

from opsagent.processors.profile.config import UNIT_EXP, percentile_name
from opsagent.processors.profile.parse import Key, Raw
from opsagent.processors.profile.presets import Effective
from opsagent.processors.profile.sketch import ZERO_THRESHOLD, DDSketch
from opsagent.processors.profile.timeparse import parse_time
from opsagent.samples import Interval, Labels, Sample

OTHER = "other"
_MISSING: tuple[int | None, float] = (None, -1.0)  # cache-miss marker (compared by identity)
_CACHE_MAX = 100_000


class _Series:
    __slots__ = ("errors", "sketch", "buckets")

    def __init__(self, acc: float, max_buckets: int, nbuckets: int) -> None:
        self.errors = 0
        self.sketch = DDSketch(acc, max_buckets)
        self.buckets = [0] * nbuckets


@dataclasses.dataclass(frozen=True)
class StatsSettings:
    interval_secs: int
    percentiles: tuple[float, ...]
    buckets: tuple[float, ...]
    max_series: int
    relative_accuracy: float
    max_sketch_buckets: int
    report_unit: str


class Aggregator:
    """Accumulates parsed counts into intervals; flush() returns the finished ones in order."""

    def __init__(self, eff: Effective, columns: Sequence[str], label_start: int,
                 stats: StatsSettings) -> None:
        """`columns` as produced by Parser: latency, [error], [time], then the labels that come
        from the line (from `label_start` on, in the order of eff.labels). With an event time,
        each key is (start of the line's interval or None when its time does not parse, the
        other columns in order): Parser with a TimeBucketer."""
        self.eff = eff
        self.stats = stats
        self.interval = stats.interval_secs
        self._lat_i = 0
        self._err_i = 1 if eff.error_field else None
        self._time_i = (2 if eff.error_field else 1) if eff.time_field else None
        # Labels' position in a key (timed keys hold the other columns without the time).
        self._ls = label_start - 1 if eff.time_field else label_start
        line_labels = columns[label_start:]
        # Per label: position among the line's label values, or None (from the record).
        self._label_src: list[tuple[str, int | None]] = []
        j = 0
        for name in eff.labels:
            if j < len(line_labels) and line_labels[j] == name:
                self._label_src.append((name, j))
                j += 1
            else:
                self._label_src.append((name, None))
        # Exact decimal scaling: 1500 us / 1000 is 1.5 ms exactly, 1500 * (1e-6 / 1e-3) is not.
        shift = UNIT_EXP[eff.latency_unit] - UNIT_EXP[stats.report_unit]
        self._mul = float(10 ** shift) if shift >= 0 else 1.0
        self._div = float(10 ** -shift) if shift < 0 else 1.0
        self._error_values = {v.encode() for v in eff.error_values} | set(eff.error_values)
        self._other = tuple(OTHER for _ in eff.labels)
        self._proto = DDSketch(stats.relative_accuracy, stats.max_sketch_buckets)
        self._lat_cache: dict[Raw, tuple[int | None, float] | None] = {}
        self._err_cache: dict[Raw, bool] = {}
        self._label_cache: dict[Raw, str] = {}
        self.open: dict[int, dict[tuple[str, ...], _Series]] = {}
        # Per interval start: unparsed lines by reason (stamped with the time they were read)
        # and lines sent to the `other` series; plus running totals for self-metrics.
        self.unparsed_by: dict[int, Counter[str]] = {}
        self.overflow_by: dict[int, int] = {}
        self.unparsed_total: Counter[str] = Counter()
        self.overflow_total = 0
        self.late = 0  # lines whose interval was already flushed (counted in a later one)
        self.future = 0  # lines dated after now + max_future_secs (counted at now instead)
        # Live pipelines set this so a wrong clock in a log cannot open far-future intervals
        # (they would stay in memory until shutdown); replay leaves it None.
        self.max_future_secs: float | None = None
        self.parsed = 0
        self.flushed_before = -math.inf  # intervals starting before this are already sent

    def _open_start(self, t: float) -> int:
        """Start of the interval of time t, moved up to the first one not yet flushed."""
        start = int(t // self.interval) * self.interval
        return start if start >= self.flushed_before else int(self.flushed_before)

    def add_unparsed(self, reasons: Mapping[str, int], now: float) -> None:
        """Count lines that were not aggregated, in the interval of `now`."""
        if not reasons:
            return
        start = self._open_start(now)
        c = self.unparsed_by.get(start)
        if c is None:
            c = self.unparsed_by[start] = Counter()
        c.update(reasons)
        self.unparsed_total.update(reasons)

    def add(self, counts: Mapping[Key, int], now: float,
            fields: Mapping[str, str] | None = None) -> None:
        """Add parsed column counts; `now` stamps lines without an event time; `fields` are
        the record's fields (tail path_pattern groups, node, pod...) for record labels."""
        interval = self.interval
        now_start = self._open_start(now)
        now_late = now_start != int(now // interval) * interval  # the clock went back
        bad: Counter[str] = Counter()
        err_i, time_i = self._err_i, self._time_i
        future_limit = None if self.max_future_secs is None else now + self.max_future_secs
        lat_cache, err_cache = self._lat_cache, self._err_cache
        rec = {name: (fields or {}).get(name, "") for name, i in self._label_src if i is None}
        ls = self._ls
        # (interval start, raw label values) -> (series, overflowed): one look-up per key.
        series_cache: dict[tuple[int, tuple[Raw, ...]], tuple[_Series, bool]] = {}
        t_start: int | None = None
        for key, n in counts.items():
            if time_i is not None:
                t_start, key = key
            raw = key[0]
            lat = lat_cache.get(raw, _MISSING)
            if lat is _MISSING:
                lat = self._latency(raw)
                if len(lat_cache) >= _CACHE_MAX:
                    lat_cache.clear()
                lat_cache[raw] = lat
            if lat is None:
                bad["bad_value"] += n
                continue
            if time_i is not None:
                if t_start is None:
                    bad["bad_time"] += n
                    continue
                start = t_start
                if future_limit is not None and start > future_limit:
                    self.future += n
                    start = int(now // interval) * interval
                if start < self.flushed_before:
                    self.late += n
                    start = int(self.flushed_before)
            else:
                start = now_start
                if now_late:
                    self.late += n
            err: bool | None = False
            if err_i is not None:
                rawe = key[err_i]
                err = err_cache.get(rawe)
                if err is None:
                    err = err_cache[rawe] = self._is_error(rawe)
            ck = (start, key[ls:])
            hit = series_cache.get(ck)
            if hit is None:
                hit = series_cache[ck] = self._series(start, key[ls:], rec)
            s, overflowed = hit
            if overflowed:
                self.overflow_by[start] = self.overflow_by.get(start, 0) + n
                self.overflow_total += n
            bkey, value = lat
            s.sketch.add_key(bkey, value, n)
            if err:
                s.errors += n
            if self.stats.buckets:
                s.buckets[bisect.bisect_left(self.stats.buckets, value)] += n
            self.parsed += n
        if bad:
            self.add_unparsed(bad, now)

    def _series(self, start: int, raw_labels: tuple[Raw, ...],
                rec: Mapping[str, str]) -> tuple[_Series, bool]:
        labels = tuple(self._label(raw_labels[i]) if i is not None else rec[name]
                       for name, i in self._label_src)
        series_map = self.open.get(start)
        if series_map is None:
            series_map = self.open[start] = {}
        s = series_map.get(labels)
        if s is not None:
            return s, False
        overflowed = len(series_map) >= self.stats.max_series
        if overflowed:
            labels = self._other
            s = series_map.get(labels)
            if s is not None:
                return s, True
        s = series_map[labels] = _Series(self.stats.relative_accuracy,
                                         self.stats.max_sketch_buckets,
                                         len(self.stats.buckets) + 1)
        return s, overflowed

    def _latency(self, raw: Raw) -> tuple[int | None, float] | None:
        try:
            value = float(raw) * self._mul / self._div  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        if not math.isfinite(value) or value < 0:
            return None
        if value <= ZERO_THRESHOLD:
            return (None, value)
        return (self._proto.key(value), value)

    def _is_error(self, raw: Raw) -> bool:
        if raw is None:
            return False
        if raw in self._error_values:
            return True
        if self.eff.error_min is not None:
            try:
                return float(raw) >= self.eff.error_min
            except ValueError:
                return False
        return False

    def _label(self, raw: Raw) -> str:
        cache = self._label_cache
        out = cache.get(raw)
        if out is None:
            if raw is None:
                out = ""
            elif isinstance(raw, bytes):
                out = raw.decode("utf-8", "replace")
            else:
                out = raw
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[raw] = out
        return out

    def next_end(self) -> float | None:
        """End (epoch seconds) of the earliest interval holding anything, None when none does:
        flush(before) returns it once `before` reaches this."""
        pending = [*self.open, *self.unparsed_by, *self.overflow_by]
        return min(pending) + self.interval if pending else None

    def flush(self, before: float | None = None) -> list[Interval]:
        """Finish and return, in time order, every interval that ends at or before `before`
        (None: all of them), with its unparsed and series_overflow counts."""
        pending = set(self.open) | set(self.unparsed_by) | set(self.overflow_by)
        if before is None:
            starts = sorted(pending)
        else:
            starts = sorted(s for s in pending if s + self.interval <= before)
        out: list[Interval] = []
        for start in starts:
            samples = self._finish(self.open.pop(start, {}))
            unparsed = self.unparsed_by.pop(start, Counter())
            for reason in sorted(unparsed):
                samples.append(Sample("unparsed", (("reason", reason),), unparsed[reason], "c"))
            overflow = self.overflow_by.pop(start, 0)
            if overflow:
                samples.append(Sample("series_overflow", (), overflow, "c"))
            out.append(Interval(start, samples))
            self.flushed_before = max(self.flushed_before, start + self.interval)
        return out

    def _finish(self, series_map: dict[tuple[str, ...], _Series]) -> list[Sample]:
        st = self.stats
        names = [name for name, _ in self._label_src]
        qs = [p / 100.0 for p in st.percentiles]
        pnames = ["latency_" + percentile_name(p) for p in st.percentiles]
        les = [_num(b) for b in st.buckets] + ["+Inf"]
        out: list[Sample] = []
        for values in sorted(series_map):
            s = series_map[values]
            sk = s.sketch
            labels: Labels = tuple(zip(names, values, strict=True))
            out.append(Sample("requests", labels, sk.count, "c"))
            out.append(Sample("errors", labels, s.errors, "c"))
            out.append(Sample("latency_sum", labels, _round(sk.sum), "c"))
            out.append(Sample("rate", labels, _round(sk.count / st.interval_secs), "g"))
            out.append(Sample("latency_min", labels, _round(sk.min), "g"))
            out.append(Sample("latency_max", labels, _round(sk.max), "g"))
            out.append(Sample("latency_mean", labels, _round(sk.sum / sk.count), "g"))
            if qs:
                for pname, est in zip(pnames, sk.quantiles(qs), strict=True):
                    out.append(Sample(pname, labels, _round(est), "g"))
            if st.buckets:
                cum = 0
                for le, c in zip(les, s.buckets, strict=True):
                    cum += c
                    out.append(Sample("latency_bucket", (*labels, ("le", le)), cum, "c"))
        return out


def _round(v: float) -> float:
    """Values leave with 6 decimals: enough for microseconds in seconds, stable in golden files."""
    r = round(v, 6)
    return 0.0 if r == 0 else r


def _num(v: float) -> str:
    return f"{v:.6f}".rstrip("0").rstrip(".")


__all__ = ["Aggregator", "Interval", "Sample", "StatsSettings", "parse_time"]
