"""Plain-text log lines for humans: `TIME LEVEL LOGGER: message key=value ...` (the same fields
the JSON format carries, so `-json` only changes the encoding)."""

from __future__ import annotations

import logging
import time

from gorun.logsetup import RateLimitFilter

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [f"{ts}.{int(record.msecs):03d}Z {record.levelname.lower()} {record.name}: "
                 f"{record.getMessage()}"]
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_") or value is None or key == "component":
                continue
            text = str(value)
            if not text or any(c in text for c in ' "='):
                text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
            parts.append(f"{key}={text}")
        if record.exc_info:
            parts.append("\n" + self.formatException(record.exc_info))
        return " ".join(parts)


def exempt_job_records(logger_name: str = "gorun.job") -> None:
    """Let per-run records through the root handlers' rate limit: a job failing every minute
    must log every failure (each is a separate run), while gorun's own repeated warnings
    stay rate-limited."""
    for handler in logging.getLogger().handlers:
        for flt in list(handler.filters):
            if isinstance(flt, RateLimitFilter):
                handler.removeFilter(flt)
                handler.addFilter(_Exempt(flt, logger_name))


class _Exempt(logging.Filter):
    def __init__(self, inner: logging.Filter, logger_name: str) -> None:
        super().__init__()
        self.inner = inner
        self.logger_name = logger_name

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == self.logger_name or bool(self.inner.filter(record))
