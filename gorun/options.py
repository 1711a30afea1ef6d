"""Per-job options: parse `# gorun: timeout=30s overlap=replace jitter=10s` comment lines.

An option comment applies to the job line right after it. Debian cron ignores comments, so a
crontab that uses options still means the same thing there (minus the options).
"""

from __future__ import annotations

import re
from typing import Literal, cast

__all__ = ["OPTION_PREFIX", "OptionError", "is_option_comment", "parse_duration", "parse_options"]

OPTION_PREFIX = re.compile(r"^\s*#\s*gorun:")
_DURATION = re.compile(
    r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$"
)
_OVERLAPS = ("skip", "allow", "replace")
KEYS = ("timeout", "overlap", "jitter")


class OptionError(ValueError):
    """An invalid option comment; the message names the option."""


def is_option_comment(line: str) -> bool:
    """True for a `# gorun: ...` line (any spacing around `#`)."""
    return OPTION_PREFIX.match(line) is not None


def parse_duration(text: str) -> float:
    """Seconds in `30`, `30s`, `5m`, `1h`, `1h30m`, `1.5s`; raises ValueError."""
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    match = _DURATION.match(text)
    if not text or match is None:
        raise ValueError(f"bad duration {text!r} (examples: 30, 30s, 5m, 1h30m)")
    parts = match.groupdict()
    return sum(float(parts[u] or 0) * mult for u, mult in (("h", 3600), ("m", 60), ("s", 1)))


Overlap = Literal["skip", "allow", "replace"]


def parse_options(line: str, into: dict[str, str]) -> dict[str, float | str | None]:
    """Parse one option comment line, merging its raw `key=value` pairs into `into` (the pairs
    seen so far for the same job) and returning the typed values of all of them.

    Raises OptionError for an unknown key, a repeated key, or a bad value.
    """
    body = OPTION_PREFIX.sub("", line, count=1).strip()
    for word in body.split():
        key, eq, value = word.partition("=")
        if not eq or not key or not value:
            raise OptionError(f"gorun option {word!r}: expected key=value ({', '.join(KEYS)})")
        if key not in KEYS:
            raise OptionError(f"unknown gorun option {key!r} (one of {', '.join(KEYS)})")
        if key in into:
            raise OptionError(f"gorun option {key!r} given twice")
        into[key] = value
    if not into:
        raise OptionError(f"empty gorun option comment (options: {', '.join(KEYS)})")
    return typed_options(into)


def typed_options(raw: dict[str, str]) -> dict[str, float | str | None]:
    """Check and convert raw option values: timeout > 0, jitter >= 0, overlap one of three."""
    typed: dict[str, float | str | None] = {}
    for key, value in raw.items():
        if key == "overlap":
            if value not in _OVERLAPS:
                raise OptionError(f"overlap={value}: expected one of {', '.join(_OVERLAPS)}")
            typed["overlap"] = cast(Overlap, value)
            continue
        try:
            seconds = parse_duration(value)
        except ValueError as e:
            raise OptionError(f"{key}={value}: {e}") from None
        if key == "timeout" and seconds <= 0:
            raise OptionError(f"timeout={value}: must be more than 0 (omit it for no timeout)")
        typed[key] = seconds
    return typed
