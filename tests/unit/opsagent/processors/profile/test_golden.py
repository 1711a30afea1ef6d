"""Golden tests: `opsagent profile replay` on tests/golden/profile/<case>/{config.toml,input.log}
must print exactly expected.txt. Regenerate with UPDATE_GOLDEN=1 (then review the diff by hand:
a golden file must be right, not merely stable)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from opsagent.cli import main

GOLDEN = Path(__file__).resolve().parents[5] / "tests" / "golden" / "profile"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "config.toml").exists())
START_TIME = "1700000000"  # stamps lines without an event time (and unparsed lines)


def test_every_format_and_preset_has_a_case() -> None:
    assert {"regex", "delimited", "json", "logfmt", "nginx", "motan", "cri", "docker"} <= set(
        CASES)


@pytest.mark.parametrize("case", CASES)
def test_replay_matches_golden(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    d = GOLDEN / case
    rc = main(["profile", "replay", "--config", str(d / "config.toml"),
               "--start-time", START_TIME, str(d / "input.log")])
    out = capsys.readouterr().out
    assert rc == 0
    expected = d / "expected.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        expected.write_text(out)
    assert out == expected.read_text()
