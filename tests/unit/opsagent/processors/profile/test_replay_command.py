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
                 "--sink", "graphite", str(log)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "# pipeline=b sink=graphite interval=0"
    assert all(x.startswith(("#", "profile.b.")) for x in out)


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
