"""Cron expressions: parse the time part of a job line and compute its next fire time in a zone.

Interface skeleton (bodies being filled in): see docs/cron.md for the semantics.
"""

from __future__ import annotations

import datetime
from datetime import tzinfo

from gorun.errors import ExprError

__all__ = ["CronExpr", "ExprError", "format_time", "parse_expr"]


class CronExpr:
    """An immutable, validated cron expression bound to a time zone."""

    __slots__ = ("fixed_time", "has_seconds", "spec", "tz")

    spec: str
    tz: tzinfo
    has_seconds: bool
    fixed_time: bool

    def next_after(self, t: datetime.datetime) -> datetime.datetime | None:
        """First fire time strictly after aware `t`, aware in `self.tz`; None if none remains."""
        raise NotImplementedError

    def never_fires(self) -> bool:
        """True when no date at all matches (e.g. `0 0 30 2 *`, or a year field in the past)."""
        raise NotImplementedError


def parse_expr(spec: str, tz: tzinfo | None = None) -> CronExpr:
    """Parse 5 fields, 7 fields (sec min hour dom mon dow year) or an @macro; raise ExprError."""
    raise ExprError("not implemented yet")


def format_time(t: datetime.datetime) -> str:
    """ISO-8601 with seconds and UTC offset: 2021-03-28T04:00:00+03:00."""
    return t.isoformat(timespec="seconds")
