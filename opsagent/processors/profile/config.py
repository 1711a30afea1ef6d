"""What the profile processors are configured with: the reading, parsing and statistics keys of
a `[[profile]]` section (ProfileSettings). The section itself, which adds the sinks' configs, is
opsagent.pipelines.profile_config.ProfileConfig: processors never import sink modules."""

from __future__ import annotations

import dataclasses
import re
import zoneinfo
from datetime import UTC, tzinfo
from typing import Literal

from opsagent.processors.profile.presets import effective
from opsagent.sources.tail.config import TailConfig

UNIT_EXP = {"s": 0, "ms": -3, "us": -6, "ns": -9}  # power of ten of a second
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class ProfileSettings:
    """One pipeline's processing: files -> (unwrap) -> parse -> aggregate per interval.

    Empty values ("" / None) are filled from `preset` when one is set (opsagent.processors
    .profile.presets); `effective()` returns the filled-in values. config/profile.example.toml
    documents every key."""

    name: str  # metric name segment and self-metric label; [A-Za-z][A-Za-z0-9_]*
    tail: TailConfig
    preset: Literal["", "nginx", "motan", "motan_timed"] = ""
    format: Literal["", "regex", "delimited", "json", "logfmt"] = ""
    wrapper: Literal["auto", "none", "cri", "docker"] = "auto"
    pattern: str = ""  # format "regex": Python regex with named groups, matched at line start
    delimiter: str = ""  # format "delimited" (default "|")
    fields: tuple[str, ...] = ()  # format "delimited": field names in order ("" skips one)
    latency_field: str = ""
    latency_unit: Literal["", "s", "ms", "us", "ns"] = ""  # unit in the log (default ms)
    report_unit: Literal["s", "ms", "us"] = "ms"  # unit of every latency statistic sent
    error_field: str = ""  # line is an error when this field ...
    error_values: tuple[str, ...] = ()  # ... equals one of these, or
    error_min: float | None = None  # ... is a number >= this (e.g. HTTP status 500)
    time_field: str = ""  # event time from the line; "" = time the line was read
    time_format: str = ""  # strptime format, or "unix", "unix_ms", "iso8601"
    time_zone: str = "UTC"  # IANA zone of event times written without an offset
    labels: tuple[str, ...] | None = None  # fields (or tail path_pattern groups) to group by
    interval_secs: int = 10
    percentiles: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)
    buckets: tuple[float, ...] = ()  # `le` bounds (report_unit) of latency_bucket counters
    max_series: int = 1000  # label sets per interval; the rest goes to the `other` series
    relative_accuracy: float = 0.01  # sketch bound on percentile relative error (<= 0.01)
    max_sketch_buckets: int = 2048  # per series; bounds memory
    late_secs: float = 2.0  # `profile run`: an interval is sent this long after it ends

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"name must match [A-Za-z][A-Za-z0-9_]*, got {self.name!r}")
        if self.tail.multiline is not None:
            raise ValueError("tail.multiline is not supported for profile logs (one request "
                             "per line)")
        if self.interval_secs < 1:
            raise ValueError(f"interval_secs must be >= 1, got {self.interval_secs}")
        for p in self.percentiles:
            if not 0.0 <= p <= 100.0:
                raise ValueError(f"percentiles must be within [0, 100], got {p}")
        if list(self.buckets) != sorted(set(self.buckets)) or any(b <= 0 for b in self.buckets):
            raise ValueError("buckets must be positive and strictly increasing")
        if self.max_series < 1:
            raise ValueError(f"max_series must be >= 1, got {self.max_series}")
        if not 0.0 < self.relative_accuracy <= 0.01:
            raise ValueError(
                f"relative_accuracy must be in (0, 0.01], got {self.relative_accuracy}")
        if self.max_sketch_buckets < 16:
            raise ValueError(f"max_sketch_buckets must be >= 16, got {self.max_sketch_buckets}")
        if self.late_secs < 0:
            raise ValueError(f"late_secs must be >= 0, got {self.late_secs}")
        self.tzinfo()  # raises ValueError naming time_zone
        effective(self)  # raises ValueError naming the key when the combination is incomplete

    def tzinfo(self) -> tzinfo:
        """The zone of event times without an offset (ValueError naming time_zone)."""
        if self.time_zone == "UTC":
            return UTC
        try:
            return zoneinfo.ZoneInfo(self.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"time_zone: unknown time zone {self.time_zone!r} (an IANA name "
                             "such as \"Asia/Shanghai\", or \"UTC\")") from None


def percentile_name(p: float) -> str:
    """50 -> "p50", 99.9 -> "p999", 99.99 -> "p9999", 0 -> "p0"."""
    text = f"{p:.6f}".rstrip("0").rstrip(".")
    return "p" + text.replace(".", "")
