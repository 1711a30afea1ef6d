"""One pipeline's processing without I/O: batches of lines of one file -> unwrap -> parse ->
aggregate; flush() returns finished intervals. Used by `profile replay` and the running
pipeline alike, so both produce the same statistics from the same lines."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable, Mapping

import prometheus_client

from opsagent.processors.profile.aggregate import Aggregator, StatsSettings
from opsagent.processors.profile.config import ProfileSettings
from opsagent.processors.profile.parse import Parser
from opsagent.processors.profile.presets import effective
from opsagent.processors.profile.timeparse import TimeBucketer, TimeParser
from opsagent.processors.profile.unwrap import Unwrapper
from opsagent.samples import Interval
from opsagent.telemetry.registry import PerRegistry


class _Metrics:
    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.lines = prometheus_client.Counter(
            "opsagent_profile_lines", "profile lines aggregated", ["pipeline"],
            registry=registry)
        self.unparsed = prometheus_client.Counter(
            "opsagent_profile_unparsed_lines", "profile lines not aggregated, by reason",
            ["pipeline", "reason"], registry=registry)
        self.overflow = prometheus_client.Counter(
            "opsagent_profile_overflow_lines",
            "profile lines put in the `other` series by the max_series cap", ["pipeline"],
            registry=registry)
        self.late = prometheus_client.Counter(
            "opsagent_profile_late_lines",
            "profile lines whose interval was already sent (counted in the next one)",
            ["pipeline"], registry=registry)
        self.future = prometheus_client.Counter(
            "opsagent_profile_future_lines",
            "profile lines dated more than max_future_secs ahead (counted at read time)",
            ["pipeline"], registry=registry)


_metrics = PerRegistry(_Metrics)


_MAX_UNWRAPPERS = 4096


class ProfileProcessor:
    def __init__(self, cfg: ProfileSettings,
                 registry: prometheus_client.CollectorRegistry | None = None,
                 static_labels: tuple[str, ...] = ("node", "pod", "namespace"),
                 max_future_secs: float | None = None) -> None:
        self.cfg = cfg
        eff = effective(cfg)
        known = eff.format_fields()
        path_groups = set(re.compile(cfg.tail.path_pattern).groupindex) \
            if cfg.tail.path_pattern else set()
        # Labels the line cannot supply come from the record's fields (path_pattern groups,
        # node/pod/namespace).
        record_labels = tuple(
            name for name in eff.labels
            if name in path_groups or (known is not None and name not in known)
            or (known is None and name in static_labels))
        bucketer = TimeBucketer(TimeParser(eff.time_format, cfg.tzinfo()), cfg.interval_secs) \
            if eff.time_field else None
        self.parser = Parser(eff, record_labels, bucketer)
        self.agg = Aggregator(eff, self.parser.columns, self.parser.label_start, StatsSettings(
            interval_secs=cfg.interval_secs, percentiles=cfg.percentiles, buckets=cfg.buckets,
            max_series=cfg.max_series, relative_accuracy=cfg.relative_accuracy,
            max_sketch_buckets=cfg.max_sketch_buckets, report_unit=cfg.report_unit))
        self.agg.max_future_secs = max_future_secs
        self._unwrappers: dict[Hashable, Unwrapper] = {}
        self._max_line = cfg.tail.max_line_bytes
        self._m = _metrics(registry).__dict__ if registry is not None else None
        self._name = cfg.name

    def process(self, file: Hashable, lines: list[bytes], now: float,
                fields: Mapping[str, str] | None = None) -> None:
        """Add the lines of one file; `now` (epoch seconds) stamps lines without event time."""
        bad: Counter[str] = Counter()
        if self.cfg.wrapper != "none":
            un = self._unwrappers.get(file)
            if un is None:
                if len(self._unwrappers) >= _MAX_UNWRAPPERS:  # files come and go (rotation)
                    for k in [k for k, u in self._unwrappers.items() if not u.pending()]:
                        del self._unwrappers[k]
                un = self._unwrappers[file] = Unwrapper(self.cfg.wrapper, self._max_line)
            lines = un.unwrap(lines, bad)
        counts, bad_parse = self.parser.parse(lines)
        bad.update(bad_parse)
        agg = self.agg
        before = (agg.parsed, Counter(agg.unparsed_total), agg.overflow_total, agg.late,
                  agg.future)
        agg.add_unparsed(bad, now)
        agg.add(counts, now, fields)
        if self._m is not None:
            name = self._name
            self._m["lines"].labels(name).inc(agg.parsed - before[0])
            for reason, n in (agg.unparsed_total - before[1]).items():
                self._m["unparsed"].labels(name, reason).inc(n)
            if agg.overflow_total > before[2]:
                self._m["overflow"].labels(name).inc(agg.overflow_total - before[2])
            if agg.late > before[3]:
                self._m["late"].labels(name).inc(agg.late - before[3])
            if agg.future > before[4]:
                self._m["future"].labels(name).inc(agg.future - before[4])

    def count_unparsed(self, reason: str, n: int, now: float) -> None:
        """Lines dropped before parsing (e.g. truncated by the tail source), read at `now`."""
        if n:
            self.agg.add_unparsed({reason: n}, now)
            if self._m is not None:
                self._m["unparsed"].labels(self._name, reason).inc(n)

    def next_end(self) -> float | None:
        """End of the earliest interval not yet flushed (see Aggregator.next_end)."""
        return self.agg.next_end()

    def flush(self, before: float | None = None) -> list[Interval]:
        """Finished intervals (see Aggregator.flush)."""
        return self.agg.flush(before)
