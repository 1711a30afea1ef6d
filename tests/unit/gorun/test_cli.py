"""The gorun command line: test / next / flag parsing (running is covered by integration tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gorun.cli import _listen, build_parser, main


def write(tmp: Path, text: str) -> str:
    p = tmp / "crontab"
    p.write_text(text)
    return str(p)


def test_test_valid_crontab_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "# ok\nFOO=bar\n*/5 * * * * echo hi\n")
    assert main(["test", path]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("argv0", [["test"], ["-test"], ["--test"]])
def test_test_reports_each_problem_and_exits_2(tmp_path: Path, argv0: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "61 * * * * echo a\n* * * * * echo ok\n5-1 * * * * echo b\n")
    assert main([*argv0, path]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].startswith(f"{path}:1: ") and err[1].startswith(f"{path}:3: ")


def test_test_warnings_do_not_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "0 0 30 2 * echo never\n")
    assert main(["test", path]) == 0
    assert f"{path}:1: warning" in capsys.readouterr().err


def test_test_missing_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(tmp_path / "nope")]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err


def test_next_prints_times_with_offsets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["next", "30 2 * * *", "--tz", "Europe/Berlin",
                 "--from", "2021-03-27T00:00:00", "-n", "3"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "2021-03-27T02:30:00+01:00", "2021-03-28T03:00:00+02:00", "2021-03-29T02:30:00+02:00"]


def test_next_from_is_strictly_after(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["next", "0 * * * *", "--tz", "UTC", "--from", "2024-01-01T10:00:00+00:00",
                 "-n", "1"]) == 0
    assert capsys.readouterr().out == "2024-01-01T11:00:00+00:00\n"


@pytest.mark.parametrize("argv", [
    pytest.param(["next", "61 * * * *"], id="invalid"),
    pytest.param(["next", "0 0 30 2 *"], id="never-fires"),
    pytest.param(["next", "* * * * *", "--tz", "Mars/Olympus"], id="bad-zone"),
    pytest.param(["next", "* * * * *", "--from", "yesterday"], id="bad-from"),
    pytest.param(["next", "* * * * *", "-n", "0"], id="bad-n"),
])
def test_next_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("gorun next: ")


@pytest.mark.parametrize("dash", ["-", "--"])
def test_supercronic_flags_single_or_double_dash(dash: str) -> None:
    args = build_parser("run").parse_args([
        f"{dash}json", f"{dash}overlapping", f"{dash}passthrough-logs",
        f"{dash}prometheus-listen-address", "127.0.0.1:9746", f"{dash}grace-secs", "3",
        f"{dash}system", "a", "b"])
    assert args.json and args.overlapping and args.passthrough_logs and args.system
    assert args.prometheus_listen_address == "127.0.0.1:9746"
    assert args.grace_secs == 3.0 and args.crontabs == ["a", "b"]


def test_no_crontab_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2


@pytest.mark.parametrize("addr,expected", [
    ("127.0.0.1:9746", ("127.0.0.1", 9746)), (":9746", ("0.0.0.0", 9746)),
    ("[::1]:80", ("::1", 80))])
def test_listen_address(addr: str, expected: tuple[str, int]) -> None:
    assert _listen(addr) == expected


def test_listen_address_without_port_is_rejected() -> None:
    with pytest.raises(ValueError):
        _listen("localhost")


def test_job_records_are_not_rate_limited_but_others_are() -> None:
    import io
    import logging

    from gorun import logsetup as jsonlog
    from gorun.logfmt import exempt_job_records
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    out = io.StringIO()
    try:
        jsonlog.setup("info", json_format=True, stream=out)
        exempt_job_records()
        for _ in range(20):
            logging.getLogger("gorun.job").warning("job failed")
            logging.getLogger("gorun.daemon").warning("scheduled runs missed")
        text = out.getvalue()
        assert text.count('"job failed"') == 20
        assert 0 < text.count('"scheduled runs missed"') < 20
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
