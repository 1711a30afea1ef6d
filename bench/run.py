"""Benchmark runner: `python -m bench.run NAME [NAME...] [-- ARGS]` or `python -m bench.run --list`.

A benchmark is a module bench/<name>.py with
    DESCRIPTION: str
    def run(args: list[str]) -> dict[str, object]
returning a flat-ish JSON-able result (numbers for ours, the peer's, and their ratios, plus
notes). The runner adds the machine description and writes bench/results/<name>.json, and
prints the result. Benchmarks never run in the test suite; their numbers go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": mem_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def available() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name not in ("run", "common")
        and not m.name.startswith("_")
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(prog="python -m bench.run")
    p.add_argument("names", nargs="*")
    p.add_argument("--list", action="store_true")
    args = p.parse_args(argv)
    if args.list or not args.names:
        for name in available():
            mod = importlib.import_module(f"bench.{name}")
            print(f"{name}: {getattr(mod, 'DESCRIPTION', '')}")
        return 0
    for name in args.names:
        mod = importlib.import_module(f"bench.{name}")
        started = time.time()
        result = mod.run(extra)
        out = {
            "bench": name,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
            "machine": machine(),
            "result": result,
        }
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
