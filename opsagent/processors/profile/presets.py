"""Ready-made formats (nginx access log with $request_time, Motan access log with or without
its log4j time prefix) and the merge of a preset with the user's keys into the effective
settings of a pipeline."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Protocol


class Keys(Protocol):
    """The section effective() fills in (processors.profile.config.ProfileSettings; a protocol
    here, as that module calls effective() to validate itself)."""

    @property
    def preset(self) -> str: ...

# nginx `log_format timed '$remote_addr - $remote_user [$time_local] "$request" $status '
#   '$body_bytes_sent "$http_referer" "$http_user_agent" $request_time';` (the "combined"
# format plus $request_time). Anything after $request_time (e.g. $upstream_response_time) is
# ignored. A request line that is not "METHOD PATH PROTO" (e.g. "-" for 400s) leaves method and
# path empty instead of failing the line.
NGINX_PATTERN = (
    r'(?P<remote_addr>\S+) \S+ (?P<remote_user>\S+) \[(?P<time_local>[^\]]+)\] '
    r'"(?:(?P<method>[A-Z]+) (?P<path>[^ ?"]*)(?:\?[^ "]*)? (?P<protocol>HTTP/[0-9.]+)|[^"]*)" '
    r'(?P<status>\d{3}) (?P<body_bytes_sent>\d+|-) "(?P<http_referer>[^"]*)" '
    r'"(?P<http_user_agent>[^"]*)" (?P<request_time>[0-9.]+)'
)

# Motan's com.weibo.api.motan.filter.AccessLogFilter (motan 1.1.x): fields joined with "|",
# each URL-encoded; success is "true"/"false"; segment_time and whole_time in milliseconds.
MOTAN_FIELDS = (
    "side", "application", "module", "local_ip", "interface", "method", "params",
    "remote_ip", "remote_application", "remote_module", "success", "request_id",
    "request_bytes", "response_bytes", "segment_time", "whole_time",
)

# The same lines as Motan's own log4j configuration writes them (motan-demo log4j.properties,
# accessfile: `%-d{yyyy-MM-dd HH:mm:ss} [%p] %m%n`) or with logback's millisecond
# `%d{yyyy-MM-dd HH:mm:ss.SSS} %m%n`: a time prefix, then the 16 fields. The prefix and the
# `side` field share the first "|" field ("2024-01-01 12:00:00.123 [INFO] server"), named `time`;
# the time parser reads its leading date and time and ignores the words after them, and the
# fraction is optional, so both layouts parse with one format.
MOTAN_TIMED_FIELDS = ("time", *MOTAN_FIELDS[1:])

PRESETS: dict[str, dict[str, object]] = {
    "nginx": {
        "format": "regex", "pattern": NGINX_PATTERN, "latency_field": "request_time",
        "latency_unit": "s", "error_field": "status", "error_min": 500.0,
        "time_field": "time_local", "time_format": "%d/%b/%Y:%H:%M:%S %z",
        "labels": ("method", "status"),
    },
    "motan": {
        "format": "delimited", "delimiter": "|", "fields": MOTAN_FIELDS,
        "latency_field": "whole_time", "latency_unit": "ms", "error_field": "success",
        "error_values": ("false",), "labels": ("interface", "method"),
    },
    "motan_timed": {
        "format": "delimited", "delimiter": "|", "fields": MOTAN_TIMED_FIELDS,
        "latency_field": "whole_time", "latency_unit": "ms", "error_field": "success",
        "error_values": ("false",), "labels": ("interface", "method"),
        "time_field": "time", "time_format": "%Y-%m-%d %H:%M:%S.%f",
    },
}


@dataclasses.dataclass(frozen=True)
class Effective:
    """A pipeline's parsing and statistics settings after applying its preset."""

    format: str
    pattern: str
    delimiter: str
    fields: tuple[str, ...]
    latency_field: str
    latency_unit: str
    error_field: str
    error_values: tuple[str, ...]
    error_min: float | None
    time_field: str
    time_format: str
    labels: tuple[str, ...]

    def format_fields(self) -> tuple[str, ...] | None:
        """Names the format can produce (None: any name, as in JSON and logfmt)."""
        if self.format == "delimited":
            return tuple(f for f in self.fields if f)
        if self.format == "regex":
            return tuple(re.compile(self.pattern).groupindex)
        return None


def effective(cfg: Keys) -> Effective:
    """Fill the empty keys of `cfg` from its preset and check the result (ValueError naming
    the key)."""
    base: dict[str, object] = dict(PRESETS.get(cfg.preset, {}))

    def pick(key: str, empty: object, default: object) -> Any:
        value = getattr(cfg, key)
        if value != empty:
            return value
        return base.get(key, default)

    fmt = str(pick("format", "", ""))
    if not fmt:
        raise ValueError("format: set a format (regex, delimited, json, logfmt) or a preset")
    eff = Effective(
        format=fmt,
        pattern=str(pick("pattern", "", "")),
        delimiter=str(pick("delimiter", "", "|")),
        fields=tuple(pick("fields", (), ())),
        latency_field=str(pick("latency_field", "", "")),
        latency_unit=str(pick("latency_unit", "", "ms")),
        error_field=str(pick("error_field", "", "")),
        error_values=tuple(pick("error_values", (), ())),
        error_min=pick("error_min", None, None),
        time_field=str(pick("time_field", "", "")),
        time_format=str(pick("time_format", "", "")),
        labels=tuple(pick("labels", None, ())),
    )
    if not eff.latency_field:
        raise ValueError("latency_field: required (the field holding the request's latency)")
    if eff.format == "regex":
        if not eff.pattern:
            raise ValueError("pattern: required for format \"regex\"")
        try:
            rx = re.compile(eff.pattern)
        except re.error as e:
            raise ValueError(f"pattern: invalid regular expression: {e}") from None
        if not rx.groupindex:
            raise ValueError("pattern: needs named groups, e.g. (?P<latency>[0-9.]+)")
    if eff.format == "delimited":
        if not eff.fields:
            raise ValueError("fields: required for format \"delimited\"")
        if len(eff.delimiter.encode()) != 1 or eff.delimiter == "\n":
            raise ValueError(f"delimiter: must be one byte, got {eff.delimiter!r}")
    if (eff.error_values or eff.error_min is not None) and not eff.error_field:
        raise ValueError("error_field: required when error_values or error_min is set")
    if eff.time_field and not eff.time_format:
        raise ValueError("time_format: required when time_field is set")
    if eff.time_format and not eff.time_field:
        raise ValueError("time_field: required when time_format is set")
    names = eff.format_fields()
    if names is not None:
        for key in ("latency_field", "error_field", "time_field"):
            value = getattr(eff, key)
            if value and value not in names:
                raise ValueError(f"{key}: {value!r} is not a field of the format "
                                 f"(fields: {', '.join(names)})")
    if len(set(eff.labels)) != len(eff.labels):
        raise ValueError("labels: duplicate label")
    for label in eff.labels:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", label) or label in ("le", "reason"):
            raise ValueError(f"labels: {label!r} is not a valid label name (not le/reason)")
    return eff
