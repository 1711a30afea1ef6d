"""Golden files for gorun's parsing layer (tests/golden/gorun/README.md).

Set GORUN_UPDATE_GOLDEN=1 to rewrite the .golden files after a deliberate change, then review the
diff: the golden files are the specification.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gorun.crontab import Crontab, Job, load_crontab
from gorun.errors import ExprError
from gorun.expr import format_time, parse_expr

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "gorun"
UPDATE = os.environ.get("GORUN_UPDATE_GOLDEN") == "1"
FROM = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
UTC = ZoneInfo("UTC")


def check(golden: Path, actual: str) -> None:
    if UPDATE:
        golden.write_text(actual)
        return
    assert golden.exists(), f"{golden} missing: run with GORUN_UPDATE_GOLDEN=1 and review it"
    expected = golden.read_text()
    assert actual.splitlines() == expected.splitlines()


def render_job(job: Job) -> list[str]:
    expr = job.expr
    head = f"job {Path(job.file).name}:{job.line} {job.spec!r}"
    if expr is None:
        lines = [f"{head} reboot"]
    else:
        kind = ("seconds " if expr.has_seconds else "") + ("fixed" if expr.fixed_time else "wild")
        lines = [f"{head} {kind} tz={expr.tz}"]
    lines.append(f"  command: {job.command!r}")
    if job.stdin is not None:
        lines.append(f"  stdin: {job.stdin!r}")
    lines.append(f"  shell: {job.shell}" + (f"  user: {job.user}" if job.user else ""))
    env = " ".join(f"{k}={v!r}" for k, v in job.env.items())
    lines.append(f"  env: {env or '-'}")
    o = job.options
    lines.append(f"  options: timeout={o.timeout_secs} overlap={o.overlap} jitter={o.jitter_secs}")
    if expr is not None:
        fires: list[str] = []
        t: dt.datetime | None = FROM
        for _ in range(3):
            assert t is not None
            t = expr.next_after(t)
            if t is None:
                fires.append("never")
                break
            fires.append(format_time(t))
        lines.append(f"  next: {' '.join(fires)}")
    return lines


def render_crontab(ct: Crontab) -> str:
    out: list[str] = []
    for job in ct.jobs:
        out.extend(render_job(job))
    for problem in ct.problems:
        where = f"{Path(problem.file).name}:{problem.line}"
        out.append(f"{problem.severity}: {where}: {problem.message}")
    out.append(f"ok: {ct.ok}")
    return "\n".join(out) + "\n"


CRONTABS = sorted((GOLDEN / "crontab").glob("*.crontab"))


@pytest.mark.parametrize("path", CRONTABS, ids=[p.stem for p in CRONTABS])
def test_crontab_golden(path: Path) -> None:
    ct = load_crontab(str(path), system=path.name.startswith("system_"), default_tz=UTC)
    check(path.with_suffix(".golden"), render_crontab(ct))


def render_next(line: str) -> list[str]:
    spec, zone, start, count = (part.strip() for part in line.split("|"))
    out = [f"{spec} | {zone} | {start}"]
    try:
        expr = parse_expr(spec, ZoneInfo(zone))
    except ExprError as e:
        return [*out, f"  error: {e}"]
    t: dt.datetime | None = dt.datetime.fromisoformat(start)
    for _ in range(int(count)):
        assert t is not None
        t = expr.next_after(t)
        if t is None:
            out.append("  never")
            break
        out.append(f"  {format_time(t)}")
    return out


NEXT = sorted((GOLDEN / "next").glob("*.txt"))


@pytest.mark.parametrize("path", NEXT, ids=[p.stem for p in NEXT])
def test_next_golden(path: Path) -> None:
    out: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            out.append(line)
        else:
            out.extend(render_next(line))
    check(path.with_suffix(".golden"), "\n".join(out) + "\n")


def test_golden_files_exist() -> None:
    assert len(CRONTABS) >= 5 and len(NEXT) >= 3
