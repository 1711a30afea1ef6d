from __future__ import annotations

import pytest

from opsagent import __version__
from opsagent.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"opsagent {__version__}"


def test_no_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().err


def test_every_command_is_registered() -> None:
    from opsagent.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert isinstance(sub.choices, dict)
    assert set(sub.choices) == {"version", "run", "check-config", "rotate", "profile", "forward",
                                "status", "top"}
