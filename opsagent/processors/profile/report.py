"""Machine-readable statistics of one pipeline (`opsagent profile replay --format json`): the
same samples the sinks send, grouped per interval and label set, plus the pipeline's totals."""

from __future__ import annotations

from collections import Counter
from typing import Any

from opsagent.processors.profile.config import ProfileSettings
from opsagent.processors.profile.processor import ProfileProcessor
from opsagent.samples import Interval


def interval_json(iv: Interval) -> dict[str, Any]:
    """{"start", "series": [{"labels", "requests", "errors", "rate", "latency": {sum, min, max,
    mean, p50...}, "buckets": {le: cumulative count}}], "unparsed": {reason: n},
    "series_overflow": n}; series in the order the sinks send them (sorted by label values)."""
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    unparsed: dict[str, int] = {}
    overflow = 0
    for s in iv.samples:
        if s.name == "unparsed":
            unparsed[dict(s.labels)["reason"]] = int(s.value)
            continue
        if s.name == "series_overflow":
            overflow = int(s.value)
            continue
        labels = s.labels[:-1] if s.name == "latency_bucket" else s.labels
        entry = series.get(labels)
        if entry is None:
            entry = series[labels] = {"labels": dict(labels), "requests": 0, "errors": 0,
                                      "rate": 0.0, "latency": {}}
        if s.name in ("requests", "errors", "rate"):
            entry[s.name] = s.value
        elif s.name == "latency_bucket":
            entry.setdefault("buckets", {})[s.labels[-1][1]] = s.value
        else:  # latency_sum, latency_min, ..., latency_p99
            entry["latency"][s.name.removeprefix("latency_")] = s.value
    return {"start": iv.start, "series": list(series.values()), "unparsed": unparsed,
            "series_overflow": overflow}


def pipeline_json(cfg: ProfileSettings, intervals: list[Interval],
                  proc: ProfileProcessor | None = None) -> dict[str, Any]:
    """One pipeline's statistics; with `proc`, its totals over the whole input too."""
    out: dict[str, Any] = {"pipeline": cfg.name, "interval_secs": cfg.interval_secs,
                           "report_unit": cfg.report_unit,
                           "intervals": [interval_json(iv) for iv in intervals]}
    if proc is not None:
        agg = proc.agg
        out["totals"] = {"lines": agg.parsed,
                         "unparsed": dict(sorted(Counter(agg.unparsed_total).items())),
                         "series_overflow": agg.overflow_total, "late": agg.late,
                         "future": agg.future}
    return out


__all__ = ["interval_json", "pipeline_json"]
