"""gorun.crontab: crontab(5) lines, environment, %, macros, system form, the 7-field rule,
per-job options, and every error class (each reported with FILE:LINE; other jobs kept)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gorun.crontab import (
    Crontab,
    Job,
    JobOptions,
    Problem,
    load_crontab,
    parse_crontab,
    split_percent,
)
from gorun.expr import format_time
from gorun.options import parse_duration

UTC = ZoneInfo("UTC")


def parse(text: str, **kwargs: object) -> Crontab:
    return parse_crontab(text, "ct", default_tz=UTC, **kwargs)  # type: ignore[arg-type]


def only_job(text: str, **kwargs: object) -> Job:
    ct = parse(text, **kwargs)
    errors = [str(p) for p in ct.problems if p.severity == "error"]
    assert not errors
    assert len(ct.jobs) == 1
    return ct.jobs[0]


def messages(ct: Crontab) -> list[str]:
    return [str(p) for p in ct.problems]


# -- job lines ------------------------------------------------------------------------------


def test_basic_job() -> None:
    job = only_job("# a comment\n\n  */15  9-17 * * mon-fri   /usr/bin/backup --now  \n")
    assert job.line == 3
    assert job.id == "ct:3"
    assert job.spec == "*/15 9-17 * * mon-fri"
    assert job.command == "/usr/bin/backup --now  "  # as Debian: the rest of the line
    assert job.stdin is None
    assert job.shell == "/bin/sh"
    assert job.user is None
    assert job.options == JobOptions()
    assert not job.reboot
    assert job.expr is not None and job.expr.tz is UTC


@pytest.mark.parametrize(
    ("macro", "first"),
    [
        ("@yearly", "2025-01-01T00:00:00+00:00"),
        ("@annually", "2025-01-01T00:00:00+00:00"),
        ("@monthly", "2024-07-01T00:00:00+00:00"),
        ("@weekly", "2024-06-16T00:00:00+00:00"),  # June 15 2024 is a Saturday
        ("@daily", "2024-06-16T00:00:00+00:00"),
        ("@midnight", "2024-06-16T00:00:00+00:00"),
        ("@hourly", "2024-06-15T13:00:00+00:00"),
    ],
)
def test_macros(macro: str, first: str) -> None:
    job = only_job(f"{macro} echo hi\n")
    assert job.spec == macro and job.command == "echo hi"
    assert job.expr is not None
    nxt = job.expr.next_after(dt.datetime(2024, 6, 15, 12, 30, tzinfo=UTC))
    assert nxt is not None and format_time(nxt) == first


def test_reboot() -> None:
    job = only_job("@reboot echo started\n")
    assert job.reboot and job.expr is None and job.spec == "@reboot"
    assert job.command == "echo started"


@pytest.mark.parametrize(
    ("text", "command", "stdin"),
    [
        ("echo hi", "echo hi", None),
        ("cat%line1%line2", "cat", "line1\nline2"),
        ("cat %a%b%", "cat ", "a\nb\n"),
        (r"echo 100\%", "echo 100%", None),
        (r"date +\%Y-\%m", "date +%Y-%m", None),
        (r"cat%50\% off%", "cat", "50% off\n"),
        (r"echo a\b", r"echo a\b", None),  # other backslashes are kept
        (r"echo \\%x", "echo \\\\", "x"),  # Vixie: '\\' escapes the second '\', not the %
        (r"cat%a\b\\", "cat", "a\\b\\\\"),
        ("%only stdin", "", "only stdin"),
    ],
)
def test_percent(text: str, command: str, stdin: str | None) -> None:
    assert split_percent(text) == (command, stdin)


def test_percent_in_job_line() -> None:
    job = only_job("0 0 * * * mail -s hi root%Dear root,%%bye\n")
    assert job.command == "mail -s hi root"
    assert job.stdin == "Dear root,\n\nbye"


# -- environment lines ------------------------------------------------------------------------


def test_environment_lines() -> None:
    text = (
        "A=1\n"
        "B = two words \n"
        "C=\"quoted  value\"\n"
        "D='single'\n"
        "E=\n"
        "\"F\"=quoted-name\n"
        "G=a=b\n"
        "0 0 * * * first\n"
        "A=changed\n"
        "0 1 * * * second\n"
    )
    ct = parse(text)
    assert messages(ct) == []
    first, second = ct.jobs
    assert dict(first.env) == {
        "A": "1", "B": "two words", "C": "quoted  value", "D": "single", "E": "",
        "F": "quoted-name", "G": "a=b",
    }
    assert second.env["A"] == "changed"
    assert first.env["A"] == "1"  # a snapshot per job
    with pytest.raises(TypeError):
        first.env["A"] = "x"  # type: ignore[index]


def test_env_applies_only_after_it() -> None:
    first, second = parse("0 0 * * * one\nX=1\n0 0 * * * two\n").jobs
    assert "X" not in first.env and second.env["X"] == "1"


def test_shell() -> None:
    ct = parse("0 0 * * * a\nSHELL=/bin/bash\n0 0 * * * b\n")
    assert [j.shell for j in ct.jobs] == ["/bin/sh", "/bin/bash"]
    assert ct.jobs[1].env["SHELL"] == "/bin/bash"
    assert "SHELL" not in ct.jobs[0].env


def test_empty_shell_is_an_error_and_falls_back() -> None:
    ct = parse("SHELL=\n0 0 * * * a\n")
    assert messages(ct) == ["ct:1: SHELL is empty; jobs after it use /bin/sh"]
    assert ct.jobs[0].shell == "/bin/sh"


def test_cron_tz() -> None:
    ct = parse(
        "0 9 * * * utc\n"
        "CRON_TZ=Asia/Tokyo\n"
        "0 9 * * * tokyo\n"
        "CRON_TZ=Mars/Olympus\n"
        "0 9 * * * not-scheduled\n"
        "@reboot also-not-scheduled\n"
        "CRON_TZ=\n"
        "0 9 * * * back-to-default\n"
    )
    assert [j.command for j in ct.jobs] == ["utc", "tokyo", "back-to-default"]
    zones = [str(j.expr.tz) for j in ct.jobs if j.expr is not None]
    assert zones == ["UTC", "Asia/Tokyo", "UTC"]
    assert messages(ct) == [
        "ct:4: CRON_TZ: unknown time zone 'Mars/Olympus'; jobs after it are not scheduled",
        "ct:5: job not scheduled: CRON_TZ on line 4 is invalid",
        "ct:6: job not scheduled: CRON_TZ on line 4 is invalid",
    ]


def test_default_tz_none_is_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    job = parse_crontab("0 9 * * * x\n", "ct").jobs[0]
    assert job.expr is not None and str(job.expr.tz) == "America/New_York"


# -- system crontab form ----------------------------------------------------------------------


def test_system_form() -> None:
    ct = parse(
        "17 * * * * root cd / && run-parts --report /etc/cron.hourly\n"
        "@reboot nobody echo up\n"
        "*/10 * * * * * * www-data echo seconds\n"
        "0 0 * * * root\n",
        system=True,
    )
    users = [(j.user, j.command) for j in ct.jobs]
    assert users == [
        ("root", "cd / && run-parts --report /etc/cron.hourly"),
        ("nobody", "echo up"),
        ("www-data", "echo seconds"),
    ]
    assert [str(p) for p in ct.problems if p.severity == "error"] == [
        "ct:4: missing command after the time fields"
    ]


def test_user_form_has_no_user_column() -> None:
    job = only_job("17 * * * * root echo x\n")
    assert job.user is None and job.command == "root echo x"


# -- the 7-field rule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "spec", "command"),
    [
        ("*/5 * * * * * * echo tick", "*/5 * * * * * *", "echo tick"),
        ("0 30 2 * * * 2024 echo once", "0 30 2 * * * 2024", "echo once"),
        ("0 0 0 1 1 * 2025-2030/5 echo", "0 0 0 1 1 * 2025-2030/5", "echo"),
        ("0 0 0 1 1 * 1999,2030 echo", "0 0 0 1 1 * 1999,2030", "echo"),
        # Not 7 fields: the 7th is neither * nor a year, so Debian's 5-field reading applies.
        ("0 0 * * * * */2 cmd", "0 0 * * *", "* */2 cmd"),
        ("0 0 * * * * 2100 cmd", "0 0 * * *", "* 2100 cmd"),
        ("0 0 * * * 1 12 cmd", "0 0 * * *", "1 12 cmd"),
        ("0 0 * * * echo 2024 x", "0 0 * * *", "echo 2024 x"),  # 6th is not a day of week
        ("0 0 * * * 2024 * echo", "0 0 * * *", "2024 * echo"),  # 2024 is no day of week
        ("* * * * * ls *", "* * * * *", "ls *"),
        ("* * * * * ls * *", "* * * * *", "ls * *"),  # 6th word is not a day of week
    ],
)
def test_seven_field_rule(line: str, spec: str, command: str) -> None:
    ct = parse(line + "\n")
    assert [(j.spec, j.command) for j in ct.jobs] == [(spec, command)]
    seven = len(spec.split()) == 7
    assert ct.jobs[0].expr is not None and ct.jobs[0].expr.has_seconds is seven
    warned = any("Debian cron reads 5" in p.message for p in ct.problems)
    assert warned is seven
    assert [p for p in ct.problems if p.severity == "error"] == []


def test_seven_field_without_command_is_an_error() -> None:
    ct = parse("0 0 0 1 1 * 2030\n")
    assert ct.jobs == ()
    assert messages(ct) == ["ct:1: missing command after the time fields"]


def test_seven_field_warning_text() -> None:
    ct = parse("*/5 * * * * * * echo tick\n")
    assert messages(ct) == [
        "ct:1: warning: 7 time fields (second minute hour day-of-month month day-of-week year);"
        " Debian cron reads 5 and would run '* * echo tick'"
    ]
    assert ct.ok


# -- per-job options --------------------------------------------------------------------------


def test_options_apply_to_the_next_job_only() -> None:
    ct = parse(
        "# gorun: timeout=30s overlap=replace jitter=10s\n"
        "0 0 * * * with-options\n"
        "0 0 * * * defaults\n"
        "#gorun: timeout=1h30m\n"
        "  #   gorun: overlap=allow\n"
        "@reboot merged\n"
    )
    assert messages(ct) == []
    assert [(j.command, j.options) for j in ct.jobs] == [
        ("with-options", JobOptions(timeout_secs=30.0, overlap="replace", jitter_secs=10.0)),
        ("defaults", JobOptions()),
        ("merged", JobOptions(timeout_secs=5400.0, overlap="allow", jitter_secs=0.0)),
    ]


def test_plain_comment_mentioning_gorun_is_not_an_option() -> None:
    job = only_job("# gorun runs this nightly\n0 0 * * * x\n")
    assert job.options == JobOptions()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("timeout=30x", "timeout=30x: bad duration '30x' (examples: 30, 30s, 5m, 1h30m)"),
        ("timeout=0", "timeout=0: must be more than 0 (omit it for no timeout)"),
        ("overlap=queue", "overlap=queue: expected one of skip, allow, replace"),
        ("jitter=-5s", "jitter=-5s: bad duration '-5s' (examples: 30, 30s, 5m, 1h30m)"),
        ("retries=3", "unknown gorun option 'retries' (one of timeout, overlap, jitter)"),
        ("timeout", "gorun option 'timeout': expected key=value (timeout, overlap, jitter)"),
        ("timeout=1s timeout=2s", "gorun option 'timeout' given twice"),
        ("", "empty gorun option comment (options: timeout, overlap, jitter)"),
    ],
)
def test_bad_option_makes_the_job_an_error(option: str, message: str) -> None:
    ct = parse(f"# gorun: {option}\n0 0 * * * guarded\n0 1 * * * other\n")
    assert messages(ct) == [
        f"ct:1: {message}",
        "ct:2: job not scheduled: its gorun options (line 1) are invalid",
    ]
    assert [j.command for j in ct.jobs] == ["other"]


@pytest.mark.parametrize("between", ["", "# a comment", "X=1"])
def test_option_comment_must_be_right_before_a_job(between: str) -> None:
    ct = parse(f"# gorun: timeout=5s\n{between}\n0 0 * * * x\n")
    assert messages(ct) == [
        "ct:1: gorun option comment is not immediately followed by a job line (line 2)"
    ]
    assert ct.jobs[0].options == JobOptions()


def test_option_comment_at_end_of_file() -> None:
    ct = parse("0 0 * * * x\n# gorun: timeout=5s\n")
    assert messages(ct) == [
        "ct:2: gorun option comment is not immediately followed by a job line (line 3)"
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1h30m", 5400.0),
     ("1.5s", 1.5), ("2h0m5s", 7205.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1m1h", "5 m", "1d", "-1", "1e3"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


# -- errors: every class, FILE:LINE, the other jobs kept ----------------------------------------

ERRORS = [
    ("out-of-range", "61 * * * * x", "ct:2: minute: 61 out of range 0-59"),
    ("out-of-range-hour", "0 24 * * * x", "ct:2: hour: 24 out of range 0-23"),
    ("out-of-range-dom", "0 0 32 * * x", "ct:2: day of month: 32 out of range 1-31"),
    ("out-of-range-month", "0 0 * 0 * x", "ct:2: month: 0 out of range 1-12"),
    ("out-of-range-dow", "0 0 * * 8 x", "ct:2: day of week: 8 out of range 0-7"),
    ("reversed-range", "5-1 * * * * x", "ct:2: minute: reversed range '5-1'"),
    ("zero-step", "*/0 * * * * x", "ct:2: minute: zero step in '*/0'"),
    ("unknown-name", "0 0 * foo * x", "ct:2: month: unknown name 'foo'"),
    ("unknown-dow-name", "0 0 * * funday x", "ct:2: day of week: unknown name 'funday'"),
    ("name-in-number-field", "0 jan * * * x", "ct:2: hour: names are not allowed here: 'jan'"),
    ("step-after-number", "5/10 * * * * x",
     "ct:2: minute: a step needs * or a range before it: '5/10' (write 5-59/10)"),
    ("empty-list-element", "1,,2 * * * * x", "ct:2: minute: empty list element"),
    ("too-few-fields", "* * * *", "ct:2: wrong field count: 4 field(s); a job line needs 5 time"
     " fields (or 7, or an @macro) and a command"),
    ("one-word", "backup", "ct:2: wrong field count: 1 field(s); a job line needs 5 time fields"
     " (or 7, or an @macro) and a command"),
    ("missing-command", "* * * * *", "ct:2: missing command after the time fields"),
    ("empty-command", "* * * * * %stdin only", "ct:2: empty command (nothing before the first %)"),
    ("unknown-macro", "@every echo x", "ct:2: unknown macro '@every'"),
    ("macro-case", "@Daily echo x", "ct:2: unknown macro '@Daily'"),
    ("macro-without-command", "@daily", "ct:2: missing command after the time fields"),
]


@pytest.mark.parametrize(("name", "line", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors(name: str, line: str, message: str) -> None:
    ct = parse(f"0 0 * * * before\n{line}\n0 1 * * * after\n")
    errors = [str(p) for p in ct.problems if p.severity == "error"]
    assert len(errors) == 1 and errors[0].startswith(message), errors
    assert [j.command for j in ct.jobs] == ["before", "after"]
    assert not ct.ok


def test_bad_year_line_reads_as_five_fields() -> None:
    """`2030x` contains a year but is no valid year field, so the 7-field reading fails and the
    line is read as 5 fields, as Debian reads it."""
    ct = parse("0 0 1 1 * * 2030x echo\n")
    assert [(j.spec, j.command) for j in ct.jobs] == [("0 0 1 1 *", "* 2030x echo")]
    assert messages(ct) == []


def test_never_firing_job_is_a_warning() -> None:
    ct = parse("0 0 30 2 * x\n")
    assert messages(ct) == ["ct:1: warning: this job can never fire: no date matches '0 0 30 2 *'"]
    assert ct.ok and len(ct.jobs) == 1


def test_missing_final_newline_is_a_warning() -> None:
    ct = parse("0 0 * * * a\n0 1 * * * b")
    assert messages(ct) == [
        "ct:2: warning: no newline at end of file (Debian's crontab refuses such a file)"
    ]
    assert len(ct.jobs) == 2 and ct.ok


def test_crlf_is_a_warning_once() -> None:
    ct = parse("A=1\r\n0 0 * * * a\r\n")
    assert messages(ct) == ["ct:1: warning: CRLF line endings (Debian cron keeps the \\r)"]
    assert ct.jobs[0].env["A"] == "1" and ct.jobs[0].command == "a"


def test_problem_format() -> None:
    assert str(Problem("f", 3, "bad")) == "f:3: bad"
    assert str(Problem("f", 3, "hmm", "warning")) == "f:3: warning: hmm"


def test_problems_in_line_order() -> None:
    ct = parse("61 * * * * a\n*/5 * * * * * * b\n0 0 * * * c")
    assert [p.line for p in ct.problems] == [1, 2, 3]


# -- files --------------------------------------------------------------------------------------


def test_load_crontab(tmp_path: Path) -> None:
    path = tmp_path / "crontab"
    path.write_text("0 0 * * * a\n")
    ct = load_crontab(str(path), default_tz=UTC)
    assert ct.path == str(path) and ct.ok
    assert ct.jobs[0].file == str(path) and ct.jobs[0].id == f"{path}:1"


def test_unreadable_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    ct = load_crontab(missing)
    assert ct.jobs == ()
    assert messages(ct) == [f"{missing}:0: cannot read crontab: No such file or directory"]
    assert not ct.ok


def test_directory_is_unreadable(tmp_path: Path) -> None:
    ct = load_crontab(str(tmp_path))
    assert len(ct.problems) == 1 and ct.problems[0].line == 0 and not ct.ok


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "crontab"
    path.write_bytes(b"0 0 * * * a\n0 1 * * * echo \xff\xfe\n0 2 * * * b\n")
    ct = load_crontab(str(path), default_tz=UTC)
    assert messages(ct) == [f"{path}:2: line is not valid UTF-8; skipped"]
    assert [j.command for j in ct.jobs] == ["a", "b"]


def test_invalid_utf8_after_option_comment(tmp_path: Path) -> None:
    path = tmp_path / "crontab"
    path.write_bytes(b"# gorun: timeout=5s\n\xff\n")
    ct = load_crontab(str(path), default_tz=UTC)
    assert [p.line for p in ct.problems] == [1, 2]


def test_example_crontab_is_valid() -> None:
    """config/crontab.example is what ./scripts/demo runs: valid, with a 5-second seconds job."""
    root = Path(__file__).resolve().parents[3]
    ct = load_crontab(str(root / "config" / "crontab.example"), default_tz=UTC)
    assert ct.ok, messages(ct)
    every5 = [j for j in ct.jobs if j.expr is not None and j.expr.has_seconds
              and j.spec.startswith("*/5 ")]
    assert every5 and every5[0].command.startswith("echo")
    expr = every5[0].expr
    assert expr is not None
    t0 = dt.datetime(2024, 1, 1, tzinfo=UTC)
    t1 = expr.next_after(t0)
    assert t1 is not None and (t1 - t0).total_seconds() == 5
    assert any(j.reboot for j in ct.jobs)
    assert any(j.options.timeout_secs for j in ct.jobs)
