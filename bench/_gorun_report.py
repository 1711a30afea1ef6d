"""Markdown tables for docs/benchmarks.md from bench/results/gorun_{start_delay,idle}.json:
`python -m bench._gorun_report` (after `python -m bench.run gorun_start_delay gorun_idle`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
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


def main() -> int:
    print(start_delay_table(_load("gorun_start_delay")))
    print()
    print(idle_table(_load("gorun_idle")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
