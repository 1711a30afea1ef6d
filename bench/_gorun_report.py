"""Markdown tables for docs/benchmarks.md from bench/results/gorun_{start_delay,idle}.json:
`python -m bench._gorun_report` prints them; `--write` replaces them in docs/benchmarks.md between
their `<!-- gorun-...:begin/end -->` markers, leaving every other line of the file alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
NAMES = {"gorun": "gorun", "supercronic": "supercronic", "cron": "Debian cron"}


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESULTS / f"{name}.json").read_text())
    return data


def start_delay_table(doc: dict[str, Any]) -> str:
    r = doc["result"]
    out = [f"{doc['date']}, load average {' / '.join(map(str, r['loadavg_before']))} at the start "
           "(milliseconds after the scheduled instant):", "",
           "| scheduler | schedule | jobs | first action p50 | p99 | max | first job | "
           "spawn p50 | spawn p99 |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, label in NAMES.items():
        m = r.get(key)
        if m is None:
            continue
        if "skipped" in m:
            out.append(f"| {label} | skipped: {m['skipped']} | | | | | | | |")
            continue
        d, s = m["first_action_ms"], m["spawn_ms"]
        out.append(f"| {label} | `{m['schedule']}` | {m['jobs_seen']}/{m['jobs_expected']} | "
                   f"{d.get('p50')} | {d.get('p99')} | {d.get('max')} | {d.get('min')} | "
                   f"{s.get('p50')} | {s.get('p99')} |")
    floor = r.get("floor")
    if floor is not None:
        f = floor["first_action_ms"]
        out.append(f"| floor: no scheduler, gated `/bin/sh` released by hand | at whole seconds | "
                   f"{floor['jobs_seen']}/{floor['jobs_expected']} | {f.get('p50')} | "
                   f"{f.get('p99')} | {f.get('max')} | {f.get('min')} | | |")
    out.append("")
    for k, v in r["ratios"].items():
        if k.endswith("first_action_ms"):
            out.append(f"- {k.split()[0]} first action: p50 {v['p50']}, p99 {v['p99']}, "
                       f"max {v['max']}")
    return "\n".join(out)


def idle_table(doc: dict[str, Any]) -> str:
    r = doc["result"]
    out = [f"{doc['date']}, load average {' / '.join(map(str, r['loadavg_before']))} at the "
           "start:", "",
           "| scheduler | CPU, % of one core | CPU in the idle minute | RSS peak | RSS end | "
           "startup CPU |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for key, label in NAMES.items():
        m = r.get(key)
        if m is None:
            continue
        if "cpu_pct" not in m:
            out.append(f"| {label} | {m.get('skipped') or m.get('error')} | | | | |")
            continue
        out.append(f"| {label} | {m['cpu_pct']} % | {round(m['idle_cpu_s'] * 1000, 1)} ms | "
                   f"{m['rss_peak_mib']} MiB | {m['rss_end_mib']} MiB | {m['startup_cpu_s']} s |")
    out.append("")
    for k, v in r["ratios"].items():
        out.append(f"- {k}: CPU {v['cpu_pct']}, RSS peak {v['rss_peak_mib']}, "
                   f"RSS end {v['rss_end_mib']}")
    return "\n".join(out)


def replace_between(text: str, name: str, body: str) -> str:
    """text with the lines between `<!-- NAME:begin -->` and `<!-- NAME:end -->` set to body."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    i, j = text.index(begin) + len(begin), text.index(end)
    return text[:i] + "\n" + body + "\n" + text[j:]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    tables = {"gorun-start-delay": start_delay_table(_load("gorun_start_delay")),
              "gorun-idle": idle_table(_load("gorun_idle"))}
    if "--write" in args:
        text = DOC.read_text()
        for name, body in tables.items():
            text = replace_between(text, name, body)
        DOC.write_text(text)
    else:
        print("\n\n".join(tables.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
