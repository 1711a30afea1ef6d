"""gorun's error hierarchy, drawn once.

    GorunError                 base of every error gorun raises on purpose
    └── ExprError              an invalid cron expression (time part of a job line); the message
                               names the field ("minute: 61 out of range 0-59") but no location:
                               the crontab parser adds FILE:LINE when it turns it into a Problem

Crontab files never raise for bad content: `gorun.crontab.parse_crontab` reports each bad line as
a `Problem` and keeps every other job, so one bad line never stops the others.
"""

from __future__ import annotations


class GorunError(Exception):
    """Base class of every error gorun raises on purpose."""


class ExprError(GorunError):
    """An invalid cron expression. The message names the field, never a file or line."""
