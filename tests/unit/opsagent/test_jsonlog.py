from __future__ import annotations

import io
import json
import logging

from opsagent.telemetry.jsonlog import JsonFormatter, RateLimitFilter


def _logger(stream: io.StringIO, flt: logging.Filter | None = None) -> logging.Logger:
    log = logging.getLogger(f"test.jsonlog.{id(stream)}")
    log.propagate = False
    h = logging.StreamHandler(stream)
    h.setFormatter(JsonFormatter())
    if flt:
        h.addFilter(flt)
    log.handlers[:] = [h]
    log.setLevel(logging.DEBUG)
    return log


def test_one_json_object_per_line_with_extra_keys() -> None:
    s = io.StringIO()
    _logger(s).warning("send failed\nsecond", extra={"component": "kafka", "file": "/a\nb"})
    lines = s.getvalue().splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert obj["msg"] == "send failed\nsecond"
    assert obj["component"] == "kafka" and obj["file"] == "/a\nb" and obj["level"] == "warning"


def test_repeated_errors_are_rate_limited_and_counted() -> None:
    now = [0.0]
    s = io.StringIO()
    log = _logger(s, RateLimitFilter(period_secs=10, burst=2, clock=lambda: now[0]))
    for _ in range(5):
        log.error("boom")
    log.info("info is never limited")
    now[0] = 11.0
    log.error("boom")
    objs = [json.loads(x) for x in s.getvalue().splitlines()]
    assert [o["msg"] for o in objs] == ["boom", "boom", "info is never limited", "boom"]
    assert objs[-1]["suppressed"] == 3
