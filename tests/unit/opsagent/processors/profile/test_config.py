from __future__ import annotations

from typing import Any

import pytest

from opsagent.config.loader import from_dict
from opsagent.config.schema import AgentConfig
from opsagent.errors import ConfigErrors
from opsagent.processors.profile.config import percentile_name
from opsagent.processors.profile.presets import effective

from .helpers import profile


def errors_of(entry: dict[str, Any]) -> str:
    data = {"profile": [{"name": "p", "tail": {"include": ["/l/*.log"]}, **entry}]}
    with pytest.raises(ConfigErrors) as e:
        from_dict(AgentConfig, data)
    return str(e.value)


@pytest.mark.parametrize("entry,needle", [
    ({}, "format: set a format"),
    ({"format": "regex", "latency_field": "ms"}, "pattern: required"),
    ({"format": "regex", "pattern": "(", "latency_field": "ms"}, "invalid regular expression"),
    ({"format": "regex", "pattern": "x", "latency_field": "ms"}, "needs named groups"),
    ({"format": "regex", "pattern": "(?P<a>x)", "latency_field": "ms"}, "not a field"),
    ({"format": "delimited", "latency_field": "ms"}, "fields: required"),
    ({"format": "delimited", "fields": ["ms"], "delimiter": "||", "latency_field": "ms"},
     "delimiter: must be one byte"),
    ({"format": "json"}, "latency_field: required"),
    ({"format": "json", "latency_field": "ms", "error_values": ["x"]}, "error_field: required"),
    ({"format": "json", "latency_field": "ms", "time_field": "t"}, "time_format: required"),
    ({"format": "json", "latency_field": "ms", "labels": ["a-b"]}, "not a valid label name"),
    ({"format": "json", "latency_field": "ms", "labels": ["le"]}, "not a valid label name"),
    ({"preset": "motan", "percentiles": [101]}, "percentiles"),
    ({"preset": "motan", "buckets": [2, 1]}, "strictly increasing"),
    ({"preset": "motan", "relative_accuracy": 0.05}, "relative_accuracy"),
    ({"preset": "motan", "interval_secs": 0}, "interval_secs"),
    ({"preset": "motan", "name": "a.b"}, "name must match"),
    ({"preset": "motan", "statsd": {"port": 0}}, "profile[0].statsd: port"),
    ({"preset": "motan", "graphite": {"protocol": "x"}}, "profile[0].graphite.protocol"),
    ({"preset": "motan", "graphite": {"prefix": "a..b"}}, "prefix segments"),
    ({"preset": "nope"}, "profile[0].preset"),
    ({"preset": "motan_timed", "time_zone": "Mars/Olympus"}, "profile[0]: time_zone: unknown"),
    ({"preset": "motan_timed", "time_zone": "../etc/passwd"}, "time_zone: unknown"),
    ({"preset": "motan", "colour": 1}, "profile[0].colour: unknown key"),
    ({"preset": "motan", "tail": {"include": ["/x"], "multiline": {}}}, "multiline"),
])
def test_config_errors_name_the_key(entry: dict[str, Any], needle: str) -> None:
    msg = errors_of(entry)
    assert needle in msg
    assert "profile[0]" in msg


def test_preset_fills_only_empty_keys() -> None:
    eff = effective(profile(preset="motan", labels=["side"], latency_field="segment_time"))
    assert eff.format == "delimited" and eff.delimiter == "|"
    assert eff.labels == ("side",)
    assert eff.latency_field == "segment_time"
    assert eff.error_values == ("false",)
    nginx = effective(profile(preset="nginx"))
    assert (nginx.latency_unit, nginx.error_min, nginx.time_field) == ("s", 500.0, "time_local")


def test_time_zone_and_the_timed_motan_preset() -> None:
    from datetime import UTC
    from zoneinfo import ZoneInfo

    assert profile(preset="motan_timed").tzinfo() is UTC
    assert profile(preset="motan_timed", time_zone="Asia/Shanghai").tzinfo() == \
        ZoneInfo("Asia/Shanghai")
    eff = effective(profile(preset="motan_timed"))
    assert eff.fields[0] == "time" and eff.fields[1:] == effective(
        profile(preset="motan")).fields[1:]
    assert (eff.time_field, eff.time_format) == ("time", "%Y-%m-%d %H:%M:%S.%f")


@pytest.mark.parametrize("p,name", [(50, "p50"), (99.9, "p999"), (99.99, "p9999"), (0, "p0"),
                                    (75.5, "p755"), (100, "p100")])
def test_percentile_name(p: float, name: str) -> None:
    assert percentile_name(p) == name
