"""A Motan access log whose statistics are known by construction, and configs to process it.

Two label sets plus lines that do not parse:
  com.acme.UserService / get      1000 lines, whole_time 1..1000 ms (shuffled), success=false
                                  when whole_time is a multiple of 100 (10 errors)
  com.acme.OrderService / create  200 lines, whole_time 25 ms, no errors
  BAD_LINES                       2 lines that are not Motan lines (counted as unparsed)
The expected values below are computed from these definitions, not from any output.
"""

from __future__ import annotations

import math
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

PIPELINE = "svc"
RELATIVE_ACCURACY = 0.01  # the config's relative_accuracy: the bound the percentiles must meet
BUCKETS = (250.0, 500.0, 750.0, 1000.0)


@dataclass(frozen=True)
class Series:
    interface: str
    method: str
    latencies_ms: tuple[int, ...]
    errors: int

    @property
    def count(self) -> int:
        return len(self.latencies_ms)

    @property
    def latency_sum(self) -> int:
        return sum(self.latencies_ms)

    def exact_percentile(self, p: float) -> int:
        """The nearest-rank percentile: the value of 0-based rank max(0, ceil(p/100 * n) - 1)
        in sorted order, the definition the sketch estimates (docs/profile.md)."""
        xs = sorted(self.latencies_ms)
        return xs[max(0, math.ceil(p / 100 * len(xs) - 1e-9) - 1)]

    def cumulative_bucket(self, le: float) -> int:
        return sum(1 for x in self.latencies_ms if x <= le)

    def histogram_quantile(self, q: float) -> float:
        """What PromQL histogram_quantile(q, ...) gives for this series' `le` buckets: linear
        interpolation inside the bucket holding rank q * count (bucket below BUCKETS[0]
        starts at 0)."""
        rank = q * self.count
        lower, below = 0.0, 0
        for le in BUCKETS:
            cum = self.cumulative_bucket(le)
            if cum >= rank:
                return lower + (le - lower) * (rank - below) / (cum - below)
            lower, below = le, cum
        return BUCKETS[-1]


USER = Series("com.acme.UserService", "get", tuple(range(1, 1001)), errors=10)
ORDER = Series("com.acme.OrderService", "create", (25,) * 200, errors=0)
SERIES = (USER, ORDER)
BAD_LINES = ("this is not a motan line", "server|too|few|fields")
TOTAL_REQUESTS = USER.count + ORDER.count


def motan_line(s: Series, whole_ms: int, seq: int) -> str:
    success = "false" if s is USER and whole_ms % 100 == 0 else "true"
    fields = ["server", "acme-app", "acme", "10.1.2.3", s.interface, s.method,
              "java.lang.Long", "10.9.8.7", "web", "web-module", success, str(900_000 + seq),
              "120", "340", str(max(0, whole_ms - 1)), str(whole_ms)]
    return "|".join(fields)


def log_lines() -> list[str]:
    lines = [motan_line(USER, ms, i) for i, ms in enumerate(USER.latencies_ms)]
    lines += [motan_line(ORDER, ms, 5000 + i) for i, ms in enumerate(ORDER.latencies_ms)]
    lines += BAD_LINES
    random.Random(5).shuffle(lines)
    return lines


def write_log(path: Path) -> Path:
    path.write_text("".join(line + "\n" for line in log_lines()))
    return path


def config_toml(log_glob: str, *, statsd_port: int | None = None,
                statsd_max_datagram_bytes: int = 1432,
                graphite_port: int | None = None, graphite_protocol: str = "udp",
                interval_secs: int = 10, late_secs: float = 0.5,
                reconnect_max_secs: float = 60.0, state_dir: Path | None = None) -> str:
    """A [[profile]] pipeline with the motan preset over `log_glob`, sending where asked.
    `profile run` keeps its read positions in `state_dir` (give a tmp dir: never the system's)."""
    buckets = ", ".join(str(b) for b in BUCKETS)
    out = f'state_dir = "{state_dir}"\n\n' if state_dir is not None else ""
    out += f"""\
[[profile]]
name = "{PIPELINE}"
preset = "motan"
interval_secs = {interval_secs}
late_secs = {late_secs}
relative_accuracy = {RELATIVE_ACCURACY}
percentiles = [50.0, 90.0, 99.0, 99.9]
buckets = [{buckets}]

[profile.tail]
include = ["{log_glob}"]
start_at = "beginning"
rescan_interval_secs = 0.5
"""
    if statsd_port is not None:
        out += f"""
[profile.statsd]
host = "127.0.0.1"
port = {statsd_port}
prefix = "profile"
max_datagram_bytes = {statsd_max_datagram_bytes}
"""
    if graphite_port is not None:
        out += f"""
[profile.graphite]
host = "127.0.0.1"
port = {graphite_port}
protocol = "{graphite_protocol}"
prefix = "profile"
reconnect_min_secs = {min(1.0, reconnect_max_secs)}
reconnect_max_secs = {reconnect_max_secs}
"""
    return out


def opsagent_argv() -> list[str]:
    """The installed `opsagent` console script of the interpreter running the tests."""
    script = Path(sys.executable).with_name("opsagent")
    if script.exists():
        return [str(script)]
    found = shutil.which("opsagent")
    if found is None:
        raise AssertionError("no opsagent console script (run scripts/setup)")
    return [found]


def le_label(le: float) -> str:
    """The `le` label of a bucket bound as sent: shortest decimal (250.0 -> "250")."""
    return f"{le:.6f}".rstrip("0").rstrip(".")


def within_bound(estimate: float, exact: float, rel: float = RELATIVE_ACCURACY) -> bool:
    """|estimate - exact| <= rel * exact (plus rounding of the 6-decimal wire value)."""
    return abs(estimate - exact) <= rel * exact + 1e-6
