from __future__ import annotations

import socket
from pathlib import Path

import pytest

from opsagent.cli import main

CONFIG = """
[[profile]]
name = "a"
format = "delimited"
fields = ["k", "ms"]
latency_field = "ms"
labels = ["k"]
percentiles = [50.0]
[profile.tail]
include = ["/x/*.log"]
{sinks}

[[profile]]
name = "b"
format = "delimited"
fields = ["k", "ms"]
latency_field = "ms"
percentiles = []
[profile.tail]
include = ["/x/*.log"]
"""


def write(tmp_path: Path, sinks: str = "") -> tuple[Path, Path]:
    conf = tmp_path / "c.toml"
    conf.write_text(CONFIG.format(sinks=sinks))
    log = tmp_path / "in.log"
    log.write_bytes(b"x|5\nx|7\n")
    return conf, log


def test_replay_prints_every_pipeline_and_both_sinks_when_none_configured(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf, log = write(tmp_path)
    assert main(["profile", "replay", "--config", str(conf), "--start-time", "125",
                 str(log)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "# pipeline=a sink=statsd interval=120" in out
    assert "# pipeline=a sink=graphite interval=120" in out
    assert "profile_a_requests#k=x:2|c" in out
    assert "profile.a.x.requests 2 120" in out
    assert "profile_b_requests:2|c" in out  # no labels
    assert not any("latency_p" in x for x in out if x.startswith("profile_b"))


def test_replay_filters_pipeline_and_sink(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    conf, log = write(tmp_path)
    assert main(["profile", "replay", "--config", str(conf), "--pipeline", "b",
                 "--sink", "graphite", "--start-time", "125", str(log)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "# pipeline=b sink=graphite interval=120"
    assert all(x.startswith(("#", "profile.b.")) for x in out)


def test_lines_without_event_time_are_dated_when_the_replay_runs_never_1970(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    conf, log = write(tmp_path)
    log.write_bytes(b"x|5\njunk\n")
    before = int(time.time())
    assert main(["profile", "replay", "--config", str(conf), "--pipeline", "a",
                 "--sink", "graphite", str(log)]) == 0
    after = int(time.time())
    out = capsys.readouterr().out.splitlines()
    stamps = {int(x.rsplit(" ", 1)[1]) for x in out if not x.startswith("#")}
    assert "profile.a.unparsed.no_match 1" in " ".join(out)
    assert len(stamps) == 1
    [stamp] = stamps
    assert before // 10 * 10 <= stamp <= after


@pytest.mark.parametrize("args,needle", [
    (["--start-time", "0"], "--start-time must be a positive epoch time"),
    (["--start-time", "-5"], "--start-time must be a positive epoch time"),
    (["--format", "json", "--sink", "statsd"], "--sink selects wire lines"),
])
def test_replay_rejects_arguments_that_would_mislead(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    conf, log = write(tmp_path)
    assert main(["profile", "replay", "--config", str(conf), *args, str(log)]) == 2
    assert needle in capsys.readouterr().err


def test_replay_json_holds_the_same_statistics_as_the_wire_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    conf = tmp_path / "c.toml"
    conf.write_text(CONFIG.format(sinks="").replace(
        'percentiles = [50.0]', 'percentiles = [50.0]\nbuckets = [6.0]', 1))
    log = tmp_path / "in.log"
    log.write_bytes(b"x|5\nx|7\ny|1\njunk\n")
    assert main(["profile", "replay", "--config", str(conf), "--format", "json",
                 "--start-time", "125", str(log)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["start_time"] == 125
    a, b = doc["pipelines"]
    assert (a["pipeline"], a["interval_secs"], a["report_unit"]) == ("a", 10, "ms")
    [iv] = a["intervals"]
    assert iv["start"] == 120
    assert iv["unparsed"] == {"no_match": 1} and iv["series_overflow"] == 0
    x, y = iv["series"]
    assert x == {"labels": {"k": "x"}, "requests": 2, "errors": 0, "rate": 0.2,
                 "latency": {"sum": 12.0, "min": 5.0, "max": 7.0, "mean": 6.0,
                             "p50": x["latency"]["p50"]},
                 "buckets": {"6": 1, "+Inf": 2}}
    assert abs(x["latency"]["p50"] - 5.0) <= 0.05
    assert y["labels"] == {"k": "y"} and y["requests"] == 1
    assert a["totals"] == {"lines": 3, "unparsed": {"no_match": 1}, "series_overflow": 0,
                           "late": 0, "future": 0}
    assert b["pipeline"] == "b" and b["intervals"][0]["series"][0]["labels"] == {}
    # the same numbers as the wire lines
    assert main(["profile", "replay", "--config", str(conf), "--pipeline", "a", "--sink",
                 "statsd", "--start-time", "125", str(log)]) == 0
    wire = capsys.readouterr().out.splitlines()
    assert "profile_a_requests#k=x:2|c" in wire and "profile_a_latency_sum#k=x:12.0|c" in wire


def test_replay_uses_configured_sinks_and_sends(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    recv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    recv.bind(("127.0.0.1", 0))
    recv.settimeout(5)
    conf, log = write(tmp_path, f"[profile.statsd]\nport = {recv.getsockname()[1]}\n")
    assert main(["profile", "replay", "--config", str(conf), "--pipeline", "a", "--send",
                 str(log)]) == 0
    out = capsys.readouterr().out
    assert "sink=graphite" not in out
    data = recv.recv(65535).decode()
    recv.close()
    printed = [x for x in out.splitlines() if not x.startswith("#")]
    assert data.split("\n") == printed


@pytest.mark.parametrize("args,rc,needle", [
    (["--config", "/nonexistent.toml", "x"], 2, "cannot read config"),
    (["--pipeline", "zzz"], 2, "no [[profile]] named zzz"),
    (["/nonexistent.log"], 1, "/nonexistent.log: cannot read"),
])
def test_replay_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                       rc: int, needle: str) -> None:
    conf, log = write(tmp_path)
    argv = ["profile", "replay"]
    if "--config" not in args:
        argv += ["--config", str(conf)]
    argv += args
    if args[-1] != "x" and not args[-1].endswith(".log"):
        argv.append(str(log))
    assert main(argv) == rc
    assert needle in capsys.readouterr().err


def test_config_error_names_file_and_key(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text('[[profile]]\nname = "a"\nformat = "json"\n[profile.tail]\ninclude = ["/x"]\n')
    assert main(["profile", "replay", "--config", str(conf), str(conf)]) == 2
    err = capsys.readouterr().err
    assert str(conf) in err and "profile[0]" in err and "latency_field" in err


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
@pytest.mark.parametrize("tail,want_tail,want_truncated", [
    (b"last-no-newline", [], 2),  # 15 bytes > 10: skipped and counted like the x line
    (b"end", [b"end"], 1),  # a short unterminated last line is a line
    (b"", [], 1),
], ids=["long-tail", "short-tail", "newline-at-end"])
def test_read_batches_across_chunk_boundaries(chunk: int, tail: bytes, want_tail: list[bytes],
                                              want_truncated: int) -> None:
    import io

    from opsagent.commands.profile import read_batches

    data = b"a|1\nbb|22\n" + b"x" * 20 + b"\nc|3\n" + tail
    got: list[bytes] = []
    truncated = 0
    for lines, t in read_batches(io.BytesIO(data), max_line_bytes=10, chunk_bytes=chunk):
        got += lines
        truncated += t
    assert got == [b"a|1", b"bb|22", b"c|3", *want_tail]
    assert truncated == want_truncated
