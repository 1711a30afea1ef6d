"""Crontab files: parse crontab(5) text into jobs and per-line problems.

Debian/Vixie cron is the reference (docs/cron.md). Each line is a comment, a blank, an
environment line `NAME=value` (applies to the jobs after it), a `# gorun: ...` option comment
(applies to the job line right after it) or a job line. A bad line is reported as a `Problem` and
skipped: it never stops the other jobs.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from types import MappingProxyType
from typing import Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gorun.errors import ExprError
from gorun.expr import CronExpr, local_zone, parse_expr
from gorun.options import OptionError, is_option_comment, parse_options

__all__ = ["Crontab", "Job", "JobOptions", "Problem", "directory_problem", "file_problem",
           "load_crontab", "parse_crontab"]

DEFAULT_SHELL = "/bin/sh"
# Debian's load_env: a name (no blanks, no '='), optional blanks, '=', the value.
_ENV_LINE = re.compile(r"^\s*(?P<name>[^\s=]+)\s*=(?P<value>.*)$")
_TOKEN = re.compile(r"\S+")
# The 7-field rule: the 7th token must be `*` or contain a 4-digit year 1970-2099.
_YEAR_LIKE = re.compile(r"(?<!\d)(?:19[7-9]\d|20\d\d)(?!\d)")


@dataclass(frozen=True)
class JobOptions:
    """Per-job options from a `# gorun: timeout=30s overlap=replace jitter=10s` comment."""

    timeout_secs: float | None = None
    # None: not set in the crontab, so the runner's default applies ("skip", or "allow" under
    # supercronic's -overlapping); an explicit `overlap=skip` stays skip.
    overlap: Literal["skip", "allow", "replace"] | None = None
    jitter_secs: float = 0.0


@dataclass(frozen=True, slots=True)
class Job:
    """One valid job line of a crontab."""

    file: str
    line: int  # 1-based
    spec: str  # the time part as written (fields joined by one space), "@reboot" for reboot jobs
    expr: CronExpr | None  # None only for @reboot
    command: str  # the part before the first unescaped %
    stdin: str | None  # text after the first unescaped % (later % are newlines), else None
    env: Mapping[str, str] = field(hash=False)  # the crontab's environment lines in effect
    shell: str = DEFAULT_SHELL
    user: str | None = None  # system-crontab form only
    options: JobOptions = field(default_factory=JobOptions)

    @property
    def reboot(self) -> bool:
        return self.expr is None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Problem:
    """A bad (error) or suspicious (warning) line; line 0 means the whole file."""

    file: str
    line: int
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        kind = "warning: " if self.severity == "warning" else ""
        return f"{self.file}:{self.line}: {kind}{self.message}"


@dataclass(frozen=True)
class Crontab:
    """A parsed crontab file: its valid jobs and its problems, both in line order."""

    path: str
    jobs: tuple[Job, ...]
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        """No error-severity problems (warnings allowed)."""
        return not any(p.severity == "error" for p in self.problems)


def parse_crontab(
    text: str, path: str, *, system: bool = False, default_tz: tzinfo | None = None
) -> Crontab:
    """Parse crontab text; `system` reads the user column of /etc/crontab and /etc/cron.d.

    `default_tz` (None: the local zone) applies until a CRON_TZ line.
    """
    lines: list[str | None] = list(text.split("\n"))
    return _Parser(path, system, default_tz).run(lines, final_newline=text.endswith("\n"))


def load_crontab(path: str, *, system: bool = False, default_tz: tzinfo | None = None) -> Crontab:
    """Read and parse a crontab file.

    An unreadable file gives one error Problem at line 0; a line that is not valid UTF-8 is an
    error naming that line (the other lines are still parsed). A file that someone other than
    the user its jobs run as could have written is refused whole, as Debian cron does
    (`file_problem`, `directory_problem`): one error Problem at line 0, no jobs.
    """
    try:
        # O_NONBLOCK: a FIFO put in the crontab's place is opened without waiting for a writer,
        # then refused as not a regular file (reading it would block the scheduler for ever).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            # The checks look at the file we opened (fstat), not at a name that could change.
            refused = file_problem(os.fstat(f.fileno()), system=system) \
                or directory_problem(path, system=system)
            if refused:
                return Crontab(path, (), (Problem(path, 0, f"refusing crontab: {refused}"),))
            data = f.read()
    except OSError as e:
        reason = e.strerror or str(e)
        return Crontab(path, (), (Problem(path, 0, f"cannot read crontab: {reason}"),))
    lines: list[str | None] = []
    for raw in data.split(b"\n"):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(None)
    return _Parser(path, system, default_tz).run(lines, final_newline=data.endswith(b"\n"))


def _owners(system: bool) -> tuple[int, ...]:
    """Who may own a crontab: root; without `system`, also the user its jobs run as (us)."""
    return (0,) if system else tuple(sorted({0, os.geteuid()}))


def file_problem(st: os.stat_result, *, system: bool) -> str | None:
    """Debian cron's rules for the crontab file itself (database.c): a regular file with one
    link, owned by root (system form: its jobs run as any user) or by the user its jobs run as,
    and writable by nobody else (group/other-writable is refused). None if it passes."""
    owners = _owners(system)
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid not in owners:
        who = ("root" if system or os.geteuid() == 0
               else f"root or uid {os.geteuid()} (the user its jobs run as)")
        return f"owned by uid {st.st_uid}, not by {who}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                "chmod go-w")
    if st.st_nlink != 1:
        return f"has {st.st_nlink} hard links"
    return None


def directory_problem(path: str, *, system: bool) -> str | None:
    """Refuse a crontab inside a tree that others may write (a watched log tree, a pod's
    volume): whoever can write a directory on its way can replace the file, whatever its own
    owner and mode. Every directory above the file, as named and as resolved, must be owned by
    root or the crontab's user and be writable by nobody else, unless sticky (like /tmp: others
    cannot rename what they do not own) or on a read-only mount (Kubernetes mounts a ConfigMap
    read-only in a directory of mode 0777)."""
    owners = _owners(system)
    seen: set[str] = set()
    for base in (os.path.abspath(path), os.path.realpath(path)):
        d = os.path.dirname(base)
        while d not in seen:
            seen.add(d)
            st = os.stat(d)
            if not _read_only(d):
                if st.st_uid not in owners:
                    return (f"directory {d!r} is owned by uid {st.st_uid}: the crontab is in a "
                            "tree others can write")
                sticky = bool(st.st_mode & stat.S_ISVTX)
                if not sticky and (st.st_mode & stat.S_IWOTH
                                   or st.st_mode & stat.S_IWGRP and st.st_gid != 0):
                    return (f"directory {d!r} is writable by group or others (mode "
                            f"{stat.S_IMODE(st.st_mode):04o}): the crontab is in a tree others "
                            "can write")
            parent = os.path.dirname(d)
            if parent == d:
                break
            d = parent
    return None


def _read_only(d: str) -> bool:
    try:
        return bool(os.statvfs(d).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def split_percent(text: str) -> tuple[str, str | None]:
    """Vixie cron's `%` rule (do_command.c): the first unescaped `%` ends the command and
    starts stdin, later unescaped `%` become newlines, and `\\%` is a literal `%` (other
    backslashes stay)."""
    command: list[str] = []
    escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
            if ch == "%":
                command[-1] = "%"  # the backslash before it is dropped
                continue
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            return "".join(command), _stdin_text(text[i + 1 :])
        command.append(ch)
    return "".join(command), None


def _stdin_text(text: str) -> str:
    out: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            if ch != "%":
                out.append("\\")
        elif ch == "%":
            ch = "\n"
        escaped = ch == "\\"
        if not escaped:
            out.append(ch)
    if escaped:
        out.append("\\")
    return "".join(out)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


class _Parser:
    """One pass over the lines of one file; the state is what the lines so far have set."""

    def __init__(self, path: str, system: bool, default_tz: tzinfo | None) -> None:
        self.path = path
        self.system = system
        self.default_tz = default_tz if default_tz is not None else local_zone()
        self.tz = self.default_tz
        self.bad_tz_line = 0  # line of an invalid CRON_TZ in effect, 0 when none
        self.env: dict[str, str] = {}
        self.env_view: Mapping[str, str] = MappingProxyType({})
        self.shell = DEFAULT_SHELL
        self.jobs: list[Job] = []
        self.problems: list[Problem] = []
        # `# gorun:` comment lines waiting for their job line.
        self.option_line = 0
        self.option_raw: dict[str, str] = {}
        self.option_values: dict[str, float | str | None] = {}
        self.option_error = ""

    def problem(self, line: int, message: str, severity: str = "error") -> None:
        sev = cast(Literal["error", "warning"], severity)
        self.problems.append(Problem(self.path, line, message, sev))

    def run(self, lines: Sequence[str | None], *, final_newline: bool) -> Crontab:
        if final_newline or lines[-1] == "":
            lines = lines[:-1]
        elif lines[-1] is not None and lines[-1].strip():
            self.problem(
                len(lines),
                "no newline at end of file (Debian's crontab refuses such a file)",
                "warning",
            )
        crlf_seen = False
        for number, text in enumerate(lines, start=1):
            if text is None:
                self.drop_options(number)
                self.problem(number, "line is not valid UTF-8; skipped")
                continue
            if text.endswith("\r"):
                text = text[:-1]
                if not crlf_seen:
                    crlf_seen = True
                    self.problem(number, "CRLF line endings (Debian cron keeps the \\r)", "warning")
            self.line(number, text)
        self.drop_options(len(lines) + 1)
        problems = sorted(self.problems, key=lambda p: p.line)  # stable: same-line order kept
        return Crontab(self.path, tuple(self.jobs), tuple(problems))

    def line(self, number: int, text: str) -> None:
        stripped = text.strip()
        if is_option_comment(stripped):
            self.option(number, stripped)
            return
        if not stripped or stripped.startswith("#"):
            self.drop_options(number)
            return
        env = _ENV_LINE.match(text)
        if env is not None:
            self.drop_options(number)
            self.environment(number, _unquote(env["name"]), _unquote(env["value"].strip()))
            return
        self.job(number, text)

    def option(self, number: int, text: str) -> None:
        if not self.option_line:
            self.option_line = number
        if self.option_error:
            return
        try:
            self.option_values = parse_options(text, self.option_raw)
        except OptionError as e:
            self.option_error = str(e)
            self.problem(number, str(e))

    def drop_options(self, number: int) -> None:
        """A non-job line follows option comments: they apply to nothing."""
        if self.option_line and not self.option_error:
            self.problem(
                self.option_line,
                f"gorun option comment is not immediately followed by a job line (line {number})",
            )
        self.reset_options()

    def reset_options(self) -> None:
        self.option_line = 0
        self.option_raw = {}
        self.option_values = {}
        self.option_error = ""

    def environment(self, number: int, name: str, value: str) -> None:
        self.env[name] = value
        self.env_view = MappingProxyType(dict(self.env))  # one shared snapshot per change
        if name == "SHELL":
            if not value:
                self.problem(number, "SHELL is empty; jobs after it use /bin/sh")
            self.shell = value or DEFAULT_SHELL
        elif name == "CRON_TZ":
            self.bad_tz_line = 0
            if not value:
                self.tz = self.default_tz
                return
            try:
                self.tz = ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                self.bad_tz_line = number
                self.problem(
                    number, f"CRON_TZ: unknown time zone {value!r}; jobs after it are not scheduled"
                )

    def job(self, number: int, text: str) -> None:
        option_line, option_values, option_error = (
            self.option_line,
            self.option_values,
            self.option_error,
        )
        self.reset_options()
        try:
            job, warnings = self.read_job(number, text)
        except ExprError as e:
            self.problem(number, str(e))
            return
        if option_error:
            self.problem(
                number, f"job not scheduled: its gorun options (line {option_line}) are invalid"
            )
            return
        if self.bad_tz_line:
            self.problem(
                number, f"job not scheduled: CRON_TZ on line {self.bad_tz_line} is invalid"
            )
            return
        for message in warnings:
            self.problem(number, message, "warning")
        if option_values:
            timeout = option_values.get("timeout")
            overlap = option_values.get("overlap")
            options = JobOptions(
                timeout_secs=cast(float | None, timeout),
                overlap=cast(Literal["skip", "allow", "replace"] | None, overlap),
                jitter_secs=cast(float, option_values.get("jitter", 0.0)),
            )
            job = _with_options(job, options)
        self.jobs.append(job)

    def read_job(self, number: int, text: str) -> tuple[Job, list[str]]:
        """The job on line `number`; raises ExprError (with a field-naming message) when bad."""
        tokens = list(_TOKEN.finditer(text))
        words = [m.group() for m in tokens]
        warnings: list[str] = []
        expr: CronExpr | None
        if words[0].startswith("@"):
            count = 1
            spec = words[0]
            expr = None if spec == "@reboot" else parse_expr(spec, self.tz)
        else:
            count, expr = self.time_fields(words)
            spec = " ".join(words[:count])
            if count == 7:
                debian = f"would run {' '.join(words[5:])!r}"
                if self.system:
                    debian = f"would run {' '.join(words[6:])!r} as user {words[5]!r}"
                warnings.append(
                    "7 time fields (second minute hour day-of-month month day-of-week year);"
                    f" Debian cron reads 5 and {debian}"
                )
        user = None
        if self.system:
            if len(words) <= count:
                raise ExprError("missing user and command (system crontab: fields, user, command)")
            user = words[count]
            count += 1
        if len(words) <= count:
            raise ExprError("missing command after the time fields")
        command, stdin = split_percent(text[tokens[count].start() :])
        if not command.strip():
            raise ExprError("empty command (nothing before the first %)")
        if expr is not None and expr.never_fires():
            warnings.append(f"this job can never fire: no date matches {spec!r}")
        job = Job(
            file=self.path,
            line=number,
            spec=spec,
            expr=expr,
            command=command,
            stdin=stdin,
            env=self.env_view,
            shell=self.shell,
            user=user,
        )
        return job, warnings

    def time_fields(self, words: list[str]) -> tuple[int, CronExpr]:
        """Decide 7 or 5 fields by the documented rule and parse them."""
        if len(words) >= 7 and (words[6] == "*" or _YEAR_LIKE.search(words[6])):
            try:
                return 7, parse_expr(" ".join(words[:7]), self.tz)
            except ExprError:
                pass  # not a 7-field line: read it as Debian does
        if len(words) < 5:
            raise ExprError(
                f"wrong field count: {len(words)} field(s); a job line needs 5 time fields"
                " (or 7, or an @macro) and a command"
            )
        return 5, parse_expr(" ".join(words[:5]), self.tz)


def _with_options(job: Job, options: JobOptions) -> Job:
    return dataclasses.replace(job, options=options)
