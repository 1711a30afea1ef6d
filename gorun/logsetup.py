"""Structured logging: one record per line, as JSON for machines or as text for a person at a
terminal, with stable keys and rate limiting of repeated errors.

Use `logging.getLogger("opsagent.<component>")` and pass structured fields with `extra=`:
    log.warning("send failed", extra={"component": "kafka", "file": path, "error": str(e)})
JSON (stderr not a terminal, or forced): one object per line: ts, level, logger, msg, then the
extra keys. Text (a terminal): `TIME LEVEL COMPONENT message key=value ...` with the same time,
level, message and extra keys (the component column is `component`, else the logger name), so
switching formats never loses a field. Control characters are escaped in both: a file name under
a log directory cannot break a line or send terminal escape sequences.

Shared by gorun and opsagent, so it lives in gorun: opsagent depends on gorun, never the reverse
(opsagent.telemetry.jsonlog re-exports these names).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

LEVEL_WIDTH = 7       # "warning"
COMPONENT_WIDTH = 9
_COLORS = {"debug": "\x1b[2m", "info": "", "warning": "\x1b[33m", "error": "\x1b[31m",
           "critical": "\x1b[1;31m"}
_RESET = "\x1b[0m"

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, Any]:
    """The record as the keys both formats write: ts, level, logger, msg, the extra keys, exc."""
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            out[key] = value
    if record.exc_info:
        out["exc"] = formatter.formatException(record.exc_info)
    return out


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; non-JSON values are rendered with str()."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(fields(record, self), default=str, ensure_ascii=False)


# C0 controls, DEL and C1 controls (ESC starts terminal sequences; CSI is 0x9b).
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7f, *range(0x80, 0xa0)]}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def escape(text: str) -> str:
    """`text` on one line with no control characters (backslash escapes instead)."""
    return text.replace("\\", "\\\\").translate(_CONTROL) if _needs_escape(text) else text


def _needs_escape(text: str) -> bool:
    return "\\" in text or any(ord(c) in _CONTROL for c in text)


def text_value(value: Any) -> str:
    """A value as it appears after `key=`: bare when it is a plain word, else JSON-quoted
    (strings) or compact JSON (lists, numbers, booleans, null); never more than one line."""
    if isinstance(value, str):
        if value and not any(c in value for c in ' "=\\') and not _needs_escape(value):
            return value
        return json.dumps(value, ensure_ascii=False).translate(_CONTROL)
    try:
        return escape(json.dumps(value, default=str, ensure_ascii=False,
                                 separators=(",", ":")))
    except ValueError:  # a circular structure
        return escape(repr(value))


class TextFormatter(logging.Formatter):
    """`TIME LEVEL COMPONENT message key=value ...` for a person at a terminal; the fields of
    JsonFormatter (the logger's name only when there is no component to show)."""

    def __init__(self, color: bool = False) -> None:
        super().__init__()
        self.color = color

    def format(self, record: logging.LogRecord) -> str:
        f = fields(record, self)
        component = f.pop("component", None)
        logger = f.pop("logger")
        if component is None:
            component = logger.removeprefix("opsagent.")
        level = f.pop("level")
        head = (f"{f.pop('ts')} {level:<{LEVEL_WIDTH}} {escape(str(component)):<{COMPONENT_WIDTH}} "
                f"{escape(f.pop('msg'))}")
        exc = f.pop("exc", None)
        parts = [head, *(f"{escape(k)}={text_value(v)}" for k, v in f.items())]
        line = " ".join(parts)
        if self.color and _COLORS.get(level):
            line = f"{_COLORS[level]}{line}{_RESET}"
        if exc:  # indented under the record, one line per traceback line
            line += "".join(f"\n    {escape(x)}" for x in exc.splitlines())
        return line


def json_wanted(log_json: bool | None, stream: TextIO) -> bool:
    """JSON when forced (True), text when forced (False); by default (None) JSON unless the
    stream is a terminal."""
    if log_json is not None:
        return log_json
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return True


class RateLimitFilter(logging.Filter):
    """Lets through at most `burst` records per `(logger, msg, error-key)` every `period_secs`;
    when a window closes, the next record carries `suppressed=N` for the ones dropped."""

    def __init__(
        self, period_secs: float = 60.0, burst: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.period = period_secs
        self.burst = burst
        self.clock = clock
        self._windows: dict[tuple[str, str], list[float | int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        win = self._windows.get(key)
        if win is None or now - win[0] >= self.period:
            suppressed = int(win[2]) if win else 0
            self._windows[key] = [now, 1, 0]
            if suppressed:
                record.suppressed = suppressed
            if len(self._windows) > 10_000:  # bound memory: forget the oldest windows
                for k in list(self._windows)[:5_000]:
                    del self._windows[k]
            return True
        if win[1] < self.burst:
            win[1] += 1
            return True
        win[2] += 1
        return False


def setup(level: str = "info", *, json_format: bool | None = None,
          stream: TextIO | None = None) -> None:
    """Configure the root logger once (called by command-line entry points only).
    json_format: True JSON, False text, None (default) JSON unless `stream` is a terminal."""
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    if json_wanted(json_format, out):
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(color=json_format is None))
    handler.addFilter(RateLimitFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
