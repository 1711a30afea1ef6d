"""Small fakes for gorun's runtime tests: an expression that fires every `period` seconds."""

from __future__ import annotations

import datetime
from typing import Any

from gorun.crontab import Job, JobOptions

UTC = datetime.UTC
T0 = datetime.datetime(2024, 1, 10, 12, 0, 0, tzinfo=UTC)


class PeriodExpr:
    """Fires at every multiple of `period` seconds since the epoch, plus `offset` (all UTC).
    `fixed` says whether it behaves like a cron expression with fixed minute and hour."""

    def __init__(self, period: float, offset: float = 0.0, *, fixed: bool = False,
                 spec: str | None = None, until: datetime.datetime | None = None) -> None:
        self.period = period
        self.offset = offset
        self.fixed_time = fixed
        self.has_seconds = True
        self.tz = UTC
        self.spec = spec or f"every {period}s+{offset}"
        self.until = until

    def next_after(self, t: datetime.datetime) -> datetime.datetime | None:
        ts = t.timestamp() - self.offset
        k = int(ts // self.period) + 1
        out = datetime.datetime.fromtimestamp(k * self.period + self.offset, tz=UTC)
        if self.until is not None and out > self.until:
            return None
        return out

    def never_fires(self) -> bool:
        return False


def job(line: int = 1, expr: Any = None, *, command: str = "true", file: str = "/etc/crontab",
        options: JobOptions | None = None, stdin: str | None = None,
        env: dict[str, str] | None = None, spec: str | None = None) -> Job:
    return Job(file=file, line=line, spec=spec or (expr.spec if expr is not None else "@reboot"),
               expr=expr, command=command, stdin=stdin, env=env or {},
               options=options or JobOptions())
