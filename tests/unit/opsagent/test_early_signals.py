"""A signal that arrives while the agent starts is held and replayed into the runtime (it
drains and exits 0), not fatal; other commands get the default handlers back at once."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.unit.opsagent.test_app import config_text


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)


def test_held_signals_are_replayed_in_order_then_released(tmp_path: Path) -> None:
    r = _python("""
        import os, signal
        from opsagent import early_signals
        early_signals.hold()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGHUP)
        got = []
        early_signals.replay(got.append)
        print(got)
        early_signals.release()
        print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
    """, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == [f"[{int(signal.SIGTERM)}, {int(signal.SIGHUP)}]", "True"]


def test_release_delivers_a_held_signal_with_its_default_action(tmp_path: Path) -> None:
    r = _python("""
        import os, signal
        from opsagent import early_signals
        early_signals.hold()
        os.kill(os.getpid(), signal.SIGTERM)
        print("still here", flush=True)
        early_signals.release()
        print("not reached")
    """, tmp_path)
    assert r.returncode == -signal.SIGTERM
    assert r.stdout == "still here\n"


def test_sigterm_while_the_agent_starts_drains_and_exits_0(tmp_path: Path) -> None:
    """SIGTERM lands after hold() and before the agent installs its handlers (here: during
    config validation); the agent must still start, drain and exit 0."""
    (tmp_path / "crontab").write_text("")
    conf = tmp_path / "opsagent.toml"
    conf.write_text(config_text(tmp_path, drain=3.0))
    r = _python(f"""
        import os, signal, sys
        from opsagent import cli
        from opsagent.commands import agent
        real = agent.validate
        def validate(path):
            os.kill(os.getpid(), signal.SIGTERM)
            return real(path)
        agent.validate = validate
        sys.exit(cli.main(["run", "--config", {str(conf)!r}]))
    """, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "agent started" in r.stderr and "draining" in r.stderr, r.stderr[-3000:]


def test_one_shot_commands_keep_the_default_action(tmp_path: Path) -> None:
    r = _python("""
        import os, signal, sys
        from opsagent import cli
        from opsagent.commands import agent
        def check(args):
            os.kill(os.getpid(), signal.SIGTERM)
            print("not reached")
            return 0
        agent.check_config = check      # register() binds it when main() builds the parser
        sys.exit(cli.main(["check-config", "x.toml"]))
    """, tmp_path)
    assert r.returncode == -signal.SIGTERM, r
    assert "not reached" not in r.stdout
