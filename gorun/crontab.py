"""Crontab files: parse crontab(5) text into jobs and per-line problems (one bad line never stops
the others). Interface skeleton (bodies being filled in); semantics in docs/cron.md."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Literal

from gorun.expr import CronExpr

__all__ = ["Crontab", "Job", "JobOptions", "Problem", "load_crontab", "parse_crontab"]


@dataclass(frozen=True)
class JobOptions:
    """Per-job options from a `# gorun: timeout=30s overlap=replace jitter=10s` comment."""

    timeout_secs: float | None = None
    overlap: Literal["skip", "allow", "replace"] = "skip"
    jitter_secs: float = 0.0


@dataclass(frozen=True)
class Job:
    """One job line of a crontab."""

    file: str
    line: int
    spec: str
    expr: CronExpr | None
    command: str
    stdin: str | None
    env: Mapping[str, str]
    shell: str = "/bin/sh"
    user: str | None = None
    options: JobOptions = field(default_factory=JobOptions)

    @property
    def reboot(self) -> bool:
        return self.expr is None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Problem:
    """A bad (error) or suspicious (warning) line."""

    file: str
    line: int
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        kind = "warning: " if self.severity == "warning" else ""
        return f"{self.file}:{self.line}: {kind}{self.message}"


@dataclass(frozen=True)
class Crontab:
    """A parsed crontab file: its valid jobs and its problems."""

    path: str
    jobs: tuple[Job, ...]
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


def parse_crontab(
    text: str, path: str, *, system: bool = False, default_tz: tzinfo | None = None
) -> Crontab:
    """Parse crontab text; `system` reads the user column of /etc/crontab and /etc/cron.d."""
    raise NotImplementedError


def load_crontab(path: str, *, system: bool = False, default_tz: tzinfo | None = None) -> Crontab:
    """Read and parse a crontab file; an unreadable file gives one error Problem at line 0."""
    raise NotImplementedError
