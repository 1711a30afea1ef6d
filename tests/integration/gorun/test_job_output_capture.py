"""Real gorun, real /bin/sh jobs: output lines, exit status, log formats, passthrough."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.gorun.harness import Gorun, lines

pytestmark = pytest.mark.integration
EVERY_SECOND = "* * * * * * *"


def test_output_lines_exit_status_and_run_numbers(tmp_path: Path,
                                                  gorun: Callable[..., Gorun]) -> None:
    tab = tmp_path / "crontab"
    tab.write_text(f"GREETING=hello world\n"
                   f"{EVERY_SECOND} echo \"$GREETING\"; echo oops >&2; exit 3\n"
                   f"@reboot cat%first line%second line\n")
    g = gorun("-json", str(tab))
    job, boot = f"{tab}:2", f"{tab}:3"
    fails = g.wait_msg("job failed", n=2, job=job)
    g.wait_msg("job succeeded", job=boot)  # its own process: not ordered with the other job
    assert [f["run"] for f in fails[:2]] == [1, 2]
    assert all(f["exit_code"] == 3 and "duration_secs" in f for f in fails)
    recs = g.records()
    assert lines(recs, job)[:2] == ["hello world", "hello world"]
    assert lines(recs, job, "stderr")[:2] == ["oops", "oops"]
    out = [r for r in recs if r.get("job") == job and r.get("run") == 1]
    assert [r["msg"] for r in out] == ["job started", "hello world", "oops", "job failed"] or \
        [r["msg"] for r in out] == ["job started", "oops", "hello world", "job failed"]
    assert lines(recs, boot) == ["first line", "second line"]
    assert len([r for r in recs if r.get("job") == boot and r["msg"] == "job started"]) == 1
    assert g.stop() == 0
    for line in g.err_path.read_text().splitlines():
        assert json.loads(line)["ts"]  # -json: every line is one JSON object


def test_plain_text_logs_by_default(tmp_path: Path, gorun: Callable[..., Gorun]) -> None:
    tab = tmp_path / "crontab"
    tab.write_text(f"{EVERY_SECOND} echo plain-output\n")
    g = gorun(str(tab))
    g.wait_for(lambda _: "job succeeded" in g.err_path.read_text(), "a finished run")
    assert g.stop() == 0
    text = g.err_path.read_text()
    assert f"plain-output job={tab}:1 run=1 stream=stdout" in text
    assert not text.lstrip().startswith("{")


def test_passthrough_logs_write_job_output_raw(tmp_path: Path,
                                               gorun: Callable[..., Gorun]) -> None:
    tab = tmp_path / "crontab"
    tab.write_text(f"{EVERY_SECOND} echo raw-out; echo raw-err >&2\n")
    g = gorun("-json", "-passthrough-logs", str(tab))
    g.wait_msg("job succeeded", n=2)
    assert g.stop() == 0
    assert "raw-out\n" in g.out_path.read_text()
    assert "raw-err\n" in g.err_path.read_text()
    assert not [r for r in g.records() if r.get("stream")]


def test_long_lines_and_floods_are_bounded(tmp_path: Path, gorun: Callable[..., Gorun]) -> None:
    tab = tmp_path / "crontab"
    tab.write_text("@reboot head -c 100000 /dev/zero | tr '\\0' x; echo; seq 1 300000\n")
    g = gorun("-json", str(tab))
    end = g.wait_msg("job succeeded")[0]
    assert end["truncated_lines"] == 1
    long_line = [r for r in g.records() if r.get("truncated")]
    assert len(long_line) == 1 and len(long_line[0]["msg"]) == 16384
    assert g.stop() == 0


def test_split_logs_puts_info_on_stdout_and_warnings_on_stderr(
        tmp_path: Path, gorun: Callable[..., Gorun]) -> None:
    import time
    tab = tmp_path / "crontab"
    tab.write_text("@reboot echo to-stdout; exit 1\n")
    g = gorun("-json", "-split-logs", "-inotify", str(tab))
    g.wait_msg("job failed")  # a warning: on stderr
    deadline = time.monotonic() + 30
    while '"to-stdout"' not in g.out_path.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert g.stop() == 0
    out = [json.loads(x) for x in g.out_path.read_text().splitlines()]
    err = g.records()
    assert {r["level"] for r in out} == {"info"}
    assert {r["level"] for r in err} <= {"warning", "error"}
    assert "job started" in [r["msg"] for r in out]
