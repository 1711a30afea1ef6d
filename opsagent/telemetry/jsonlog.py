"""JSON-lines logging with stable keys and rate limiting of repeated errors.

Use `logging.getLogger("opsagent.<component>")` and pass structured fields with `extra=`:
    log.warning("send failed", extra={"component": "kafka", "file": path, "error": str(e)})
Every record becomes one JSON object per line: ts, level, logger, msg, then the extra keys.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; non-JSON values are rendered with str()."""

    def format(self, record: logging.LogRecord) -> str:
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
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


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


def setup(level: str = "info", *, json_format: bool = True, stream: TextIO | None = None) -> None:
    """Configure the root logger once (called by command-line entry points only)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RateLimitFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
