from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from opsagent.cli import main
from opsagent.telemetry.jsonlog import (
    JsonFormatter,
    RateLimitFilter,
    TextFormatter,
    json_wanted,
    setup,
    text_value,
)

OPSAGENT = str(Path(sys.executable).with_name("opsagent"))


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


# ---- the text format for a person at a terminal, and the choice between the two ----

def _record(msg: str, level: int = logging.INFO, name: str = "opsagent.app",
            **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, msg, (), None)
    rec.created, rec.msecs = 1_764_720_000.25, 250.0   # 2025-12-03T00:00:00.250Z
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


RECORDS = [
    pytest.param(_record("agent started", component="agent", jobs=["cron:a", "rotate:b"]),
                 id="list"),
    pytest.param(_record("kafka unreachable; retrying", logging.WARNING, "opsagent.kafka",
                         component="kafka", pipeline="critical", retry_in_secs=0.5,
                         error="KafkaTimeoutError: Unable to bootstrap", held_records=0),
                 id="warning-with-numbers"),
    pytest.param(_record("rotated", component="rotate", file="/pvc/a b/x=1.log", catch_up=None,
                         ok=True), id="quoting-and-null"),
    pytest.param(_record("no component here", logging.ERROR, "opsagent.sinks.resolver",
                         host="h"), id="logger-as-component"),
]


@pytest.mark.parametrize("record", RECORDS)
def test_text_and_json_carry_the_same_fields(record: logging.LogRecord) -> None:
    obj = json.loads(JsonFormatter().format(record))
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert line.startswith(f"{obj['ts']} {obj['level']:<7} ")
    component = obj.get("component", obj["logger"].removeprefix("opsagent."))
    head = f"{obj['ts']} {obj['level']:<7} {component:<9} {obj['msg']}"
    rest = line[len(head):]
    assert line.startswith(head), line
    # Every other key, in the JSON's order, as key=value; the logger's name only stands in
    # for a missing component.
    skip = {"ts", "level", "msg", "component", "logger"}
    expected = "".join(f" {k}={text_value(v)}" for k, v in obj.items() if k not in skip)
    assert rest == expected
    # ...and each value reads back as the JSON value (bare words are strings).
    for k, v in obj.items():
        if k not in skip:
            t = text_value(v)
            assert (t if isinstance(v, str) and not t.startswith('"') else json.loads(t)) == v


@pytest.mark.parametrize(("value", "text"), [
    ("plain", "plain"),
    ("two words", '"two words"'),
    ("a=b", '"a=b"'),
    ("", '""'),
    (3, "3"),
    (0.5, "0.5"),
    (True, "true"),
    (None, "null"),
    (["a", "b c"], '["a","b c"]'),
    ("line\nbreak", '"line\\nbreak"'),
    ("esc\x1b[31m", '"esc\\u001b[31m"'),
    ("c1\x9b2J", '"c1\\x9b2J"'),
    ("back\\slash", '"back\\\\slash"'),
], ids=repr)
def test_text_values(value: object, text: str) -> None:
    assert text_value(value) == text


def test_text_line_escapes_control_characters_in_message_and_keys() -> None:
    line = TextFormatter().format(_record("file \x1b]0;owned\x07 gone\nINFO fake",
                                          component="rotate"))
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line
    assert "file \\x1b]0;owned\\x07 gone\\nINFO fake" in line


def test_text_exception_is_indented_under_its_record() -> None:
    try:
        raise ValueError("bad\x1b")
    except ValueError:
        rec = _record("failed", logging.ERROR, component="agent")
        rec.exc_info = sys.exc_info()
    first, *tb = TextFormatter().format(rec).split("\n")
    assert first.endswith("agent     failed")
    assert tb and all(x.startswith("    ") for x in tb)
    assert tb[-1] == "    ValueError: bad\\x1b"


def test_color_only_when_asked() -> None:
    rec = _record("slow", logging.WARNING, component="gorun")
    assert "\x1b" not in TextFormatter().format(rec)
    colored = TextFormatter(color=True).format(rec)
    assert colored.startswith("\x1b[33m") and colored.endswith("\x1b[0m")


@contextlib.contextmanager
def _terminal() -> Iterator[TextIO]:
    primary, secondary = os.openpty()
    with os.fdopen(secondary, "w") as tty:
        try:
            yield tty
        finally:
            os.close(primary)


@pytest.mark.parametrize(("log_json", "at_terminal", "want_json"), [
    (None, True, False),
    (None, False, True),
    (True, True, True),
    (True, False, True),
    (False, False, False),
])
def test_json_wanted(log_json: bool | None, at_terminal: bool, want_json: bool) -> None:
    if at_terminal:
        with _terminal() as tty:
            assert json_wanted(log_json, tty) is want_json
    else:
        assert json_wanted(log_json, io.StringIO()) is want_json


def test_closed_stream_gets_json() -> None:
    s = io.StringIO()
    s.close()
    assert json_wanted(None, s) is True


def test_setup_picks_the_format_from_the_stream() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        with _terminal() as tty:
            setup("info", stream=tty)
            assert isinstance(root.handlers[0].formatter, TextFormatter)
            setup("info", json_format=True, stream=tty)
            assert isinstance(root.handlers[0].formatter, JsonFormatter)
        setup("info", stream=io.StringIO())
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        assert any(isinstance(f, RateLimitFilter) for f in root.handlers[0].filters)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def _agent_first_lines(tmp_path: Path, log_json: bool, at_terminal: bool) -> str:
    """stderr of `opsagent run` (a cron-only config) up to its "agent started" record."""
    cfg = tmp_path / f"agent-{log_json}-{at_terminal}.toml"
    cfg.write_text(f'state_dir = "{tmp_path / "state"}"\n'
                   f"[telemetry]\nlog_json = {str(log_json).lower()}\n")
    if at_terminal:
        primary, secondary = os.openpty()
    else:
        primary, secondary = os.pipe()
    proc = subprocess.Popen([OPSAGENT, "run", "--config", str(cfg)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=secondary)
    os.close(secondary)
    out = b""
    try:
        deadline = time.monotonic() + 60
        while b"agent started" not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 1.0)
            if ready:
                out += os.read(primary, 65536)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        os.close(primary)
    assert b"agent started" in out, out
    return out.decode(errors="replace")


def test_the_agent_logs_text_at_a_terminal_and_json_elsewhere(tmp_path: Path) -> None:
    text = _agent_first_lines(tmp_path, log_json=False, at_terminal=True)
    started = next(x for x in text.splitlines() if "agent started" in x)
    assert re.search(r"^(\x1b\[[0-9;]*m)?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info +agent +"
                     r"agent started jobs=\[\]", started), started
    piped = _agent_first_lines(tmp_path, log_json=False, at_terminal=False)
    rec = json.loads(next(x for x in piped.splitlines() if "agent started" in x))
    assert rec["component"] == "agent" and rec["jobs"] == []
    forced = _agent_first_lines(tmp_path, log_json=True, at_terminal=True)
    assert json.loads(next(x for x in forced.splitlines() if "agent started" in x))["msg"] \
        == "agent started"


def test_log_json_must_be_a_boolean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[telemetry]\nlog_json = "yes"\n')
    assert main(["check-config", str(cfg)]) == 2
    assert "telemetry.log_json: expected a boolean, got 'yes'" in capsys.readouterr().err
