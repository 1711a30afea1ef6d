"""`opsagent check-config FILE`: every problem printed with its key path or crontab FILE:LINE,
exit 2; the shipped example configs pass with 0."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from opsagent.cli import main

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_CRONTAB_IN_POD = "/etc/opsagent/crontab"
EXAMPLES = sorted([*(ROOT / "config").glob("*.toml"), ROOT / "config" / "demo" / "opsagent.toml"])


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    rc = main(["check-config", str(path)])
    return rc, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(ROOT)) for p in EXAMPLES])
def test_example_configs_pass(path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(ROOT)      # the demo names its crontab relative to the checkout
    text = path.read_text()
    if EXAMPLE_CRONTAB_IN_POD in text:
        # The complete example names the crontab's path in the pod; check it with the shipped
        # example crontab in its place (the only change).
        copy = tmp_path / path.name
        copy.write_text(text.replace(EXAMPLE_CRONTAB_IN_POD, str(ROOT / "config" /
                                                                 "crontab.example")))
        path = copy
    rc, lines = check(path, capsys)
    assert rc == 0, "\n".join(lines)
    assert lines[-1] == f"{path}: ok"


def test_complete_example_reports_its_missing_crontab(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Where the example's crontab does not exist (here), that is the one problem reported."""
    if os.path.exists(EXAMPLE_CRONTAB_IN_POD):
        pytest.skip(f"{EXAMPLE_CRONTAB_IN_POD} exists on this machine")
    rc, lines = check(ROOT / "config" / "opsagent.example.toml", capsys)
    assert rc == 2
    assert lines == [f"{EXAMPLE_CRONTAB_IN_POD}:0: cannot read crontab: No such file or "
                     "directory"]


def test_every_config_error_is_printed_with_its_key_path(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "opsagent.toml"
    cfg.write_text(f"""
state_dir = "{tmp_path}/state"
drain_deadline_secs = "soon"
surprise = 1

[telemetry]
log_level = "chatty"

[[rotate]]
name = "apps"
directories = ["relative/logs"]

[[forward]]
name = "critical"
[forward.tail]
include = ["{tmp_path}/*.log"]
[forward.kafka]
bootstrap_servers = ["127.0.0.1:9092"]
topic = "t"
acks_maybe = 1
""")
    rc, lines = check(cfg, capsys)
    assert rc == 2
    # Every problem, each once, the file and key path first (a value check made by a section's
    # dataclass names the section, its message the key).
    acks = [line for line in lines
            if line.startswith(f"{cfg}: forward[0].kafka.acks_maybe: unknown key (known keys: ")]
    assert len(acks) == 1, lines
    assert sorted(lines) == sorted([*acks,
        f"{cfg}: drain_deadline_secs: expected a number, got 'soon'",
        f"{cfg}: surprise: unknown key (known keys: cron, drain_deadline_secs, forward, node, "
        "profile, rotate, state_dir, telemetry)",
        f"{cfg}: telemetry: log_level must be debug|info|warning|error, got 'chatty'",
        f"{cfg}: rotate[0]: directories: 'relative/logs' must be an absolute path",
    ])
    assert "ok" not in lines[-1]


def test_crontab_problems_name_file_and_line(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    crontab = tmp_path / "crontab"
    crontab.write_text("# a comment\n"
                       "*/5 * * * * echo fine\n"
                       "61 * * * * echo bad minute\n"
                       "\n"
                       "* * * * * * * * * echo too many fields? no: a command\n"
                       "this is not a crontab line\n")
    missing = tmp_path / "nope"
    cfg = tmp_path / "opsagent.toml"
    cfg.write_text(f'state_dir = "{tmp_path}/state"\n[cron]\n'
                   f'crontabs = ["{crontab}", "{missing}"]\n')
    rc, lines = check(cfg, capsys)
    assert rc == 2
    errors = [line for line in lines if "warning" not in line]
    assert any(line.startswith(f"{crontab}:3: ") for line in errors), lines
    assert any(line.startswith(f"{crontab}:6: ") for line in errors), lines
    assert any(line.startswith(f"{missing}:0: cannot read crontab") for line in errors), lines
    assert not any(line.startswith(f"{crontab}:2:") for line in lines)


def test_warnings_alone_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    crontab = tmp_path / "crontab"
    crontab.write_text("*/10 * * * * * * echo seconds form\n")
    cfg = tmp_path / "opsagent.toml"
    cfg.write_text(f'state_dir = "{tmp_path}/state"\n[cron]\ncrontabs = ["{crontab}"]\n')
    rc, lines = check(cfg, capsys)
    assert rc == 0
    assert lines[0].startswith(f"{crontab}:1: warning:")
    assert lines[-1] == f"{cfg}: ok"


def test_unreadable_config_file_exits_2(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    rc, lines = check(tmp_path / "absent.toml", capsys)
    assert rc == 2
    assert any(os.fspath(tmp_path / "absent.toml") in line for line in lines), lines


@pytest.mark.parametrize("state", ["tree/pod-a/state", "tree-link/pod-a"],
                         ids=["inside", "through-a-symlink"])
def test_state_dir_inside_a_watched_tree_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], state: str) -> None:
    (tmp_path / "tree" / "pod-a").mkdir(parents=True)
    (tmp_path / "tree-link").symlink_to(tmp_path / "tree")
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'state_dir = "{tmp_path / state}"\n'
                   f'[[rotate]]\nname = "r"\ndirectories = ["{tmp_path}/tree/*"]\n')
    rc, lines = check(cfg, capsys)
    assert rc == 2
    assert lines == [f"{cfg}: state_dir: state_dir {str(tmp_path / state)!r} must be outside "
                     f"the watched tree {str(tmp_path / 'tree')!r} "
                     f"(directories = {str(tmp_path / 'tree') + '/*'!r})"]
    # `opsagent run` refuses the same config before starting anything.
    assert main(["run", "--config", str(cfg)]) == 2


def test_run_refuses_while_a_standalone_rotate_holds_the_rotation_lock(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from opsagent.rotation.state import exclusive_lock

    (tmp_path / "tree").mkdir()
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'state_dir = "{tmp_path / "state"}"\n'
                   f'[[rotate]]\nname = "r"\ndirectories = ["{tmp_path}/tree/*"]\n')
    with exclusive_lock(str(tmp_path / "state"), wait=False):
        assert main(["run", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert f"rotate.lock is held by pid {os.getpid()}" in err


def test_a_config_that_is_not_utf8_is_reported_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_bytes(f'state_dir = "{tmp_path}/state"\n'.encode() + "# café\n".encode("latin-1"))
    rc, lines = check(cfg, capsys)
    assert rc == 2
    assert lines == [f"{cfg}: not UTF-8 (TOML files must be): invalid byte at line 2, "
                     "column 6"]
    # `opsagent run` refuses it the same way, before starting anything.
    assert main(["run", "--config", str(cfg)]) == 2
    assert capsys.readouterr().err.splitlines() == lines


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_a_fifo_as_the_config_is_refused_at_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    fifo = tmp_path / "agent.toml"
    os.mkfifo(fifo)
    argv = ["check-config", str(fifo)] if command == "check-config" else [
        "run", "--config", str(fifo)]
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(main(argv)), daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), f"{command} blocked on the FIFO"
    assert result == [2]
    assert capsys.readouterr().err.splitlines() == [
        f"{fifo}: cannot read config: not a regular file (a FIFO)"]


def test_a_fifo_as_a_crontab_is_refused_at_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "crontab"
    os.mkfifo(fifo)
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'state_dir = "{tmp_path}/state"\n[cron]\ncrontabs = ["{fifo}"]\n')
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(main(["check-config", str(cfg)])),
                         daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "check-config blocked on the FIFO crontab"
    assert result == [2]
    assert capsys.readouterr().err.splitlines() == [
        f"{fifo}:0: cannot read crontab: not a regular file"]


@pytest.mark.parametrize(("listen", "why"), [
    ("9101", "must be HOST:PORT"),
    ("127.0.0.1:99999", "a port from 0 to 65535"),
    ("127.0.0.1:", "a port from 0 to 65535"),
    ("::1:9101", "an IPv6 address needs brackets"),
    ("[::g]:9101", "is not an IPv6 address"),
    ("bad host:9101", "is not an IPv4 address or host name"),
], ids=["port-only", "port-too-big", "no-port", "ipv6-unbracketed", "ipv6-bad", "bad-host"])
def test_a_bad_http_listen_is_a_config_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], listen: str, why: str) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'state_dir = "{tmp_path}/state"\n[telemetry]\nhttp_listen = "{listen}"\n')
    rc, lines = check(cfg, capsys)
    assert rc == 2
    assert len(lines) == 1 and lines[0].startswith(f"{cfg}: telemetry: http_listen: "), lines
    assert why in lines[0] and repr(listen) in lines[0]


@pytest.mark.parametrize("listen", ["127.0.0.1:9101", ":9101", "[::1]:9101", "[::]:0",
                                    "localhost:9101"])
def test_good_http_listen_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 listen: str) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'state_dir = "{tmp_path}/state"\n[telemetry]\nhttp_listen = "{listen}"\n')
    assert check(cfg, capsys) == (0, [f"{cfg}: ok"])


def test_http_port_in_use_is_a_clean_error_at_start(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = tmp_path / "agent.toml"
        cfg.write_text(f'state_dir = "{tmp_path}/state"\n[telemetry]\n'
                       f'http_listen = "127.0.0.1:{port}"\n')
        assert main(["run", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [f"opsagent run: {cfg}: telemetry.http_listen: cannot listen on "
                                f"127.0.0.1:{port}: Address already in use"]


def test_a_secret_of_the_wrong_type_is_not_echoed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"""
state_dir = "{tmp_path}/state"
[[forward]]
name = "critical"
[forward.tail]
include = ["{tmp_path}/logs/*.log"]
[forward.kafka]
bootstrap_servers = ["127.0.0.1:9092"]
topic = "t"
security_protocol = "SASL_SSL"
sasl_username = "user"
sasl_password = 98765432123
""")
    rc, lines = check(cfg, capsys)
    assert rc == 2
    assert lines == [f"{cfg}: forward[0].kafka.sasl_password: expected a string, got an "
                     "integer (not shown: secret key)"]
    assert "98765432123" not in "\n".join(lines)


# What check-config must not load: the sending, reading and rotating machinery (and the
# third-party clients behind it). Config types live in config-only modules for this.
RUNTIME_MODULES = (
    "opsagent.sinks.statsd", "opsagent.sinks.graphite", "opsagent.sinks.udp",
    "opsagent.sinks.resolver", "opsagent.sources.tail.source", "opsagent.sources.tail.reader",
    "opsagent.state.checkpoints", "opsagent.rotation.service", "opsagent.rotation.executor",
    "opsagent.processors.profile.processor", "opsagent.pipelines.forward",
    "opsagent.pipelines.profile", "statsd", "kafka", "watchdog",
)


def test_check_config_imports_no_runtime_module() -> None:
    import subprocess
    import sys

    code = ("import sys, contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()), "
            "contextlib.redirect_stderr(io.StringIO()):\n"
            "    from opsagent.cli import main\n"
            f"    main(['check-config', {str(ROOT / 'config' / 'opsagent.example.toml')!r}])\n"
            "print('\\n'.join(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.split()
    assert "opsagent.config.schema" in out        # it did load and check the config
    assert [m for m in RUNTIME_MODULES if m in out] == []
