"""`opsagent rotate --config FILE [--once] [--dry-run]`: run the [[rotate]] policies."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry

from opsagent.clock import SystemClock
from opsagent.config import schema
from opsagent.rotation.config import RotateConfig
from opsagent.rotation.metrics import rotation_metrics
from opsagent.rotation.policy import Plan
from opsagent.rotation.service import RotationService
from opsagent.rotation.state import LockHeld, exclusive_lock
from opsagent.telemetry import jsonlog

log = logging.getLogger("opsagent.rotation")


def register(sub: Any) -> None:
    p = sub.add_parser("rotate", help="rotate, compress and expire logs; hold disk quotas")
    p.add_argument("--config", required=True, help="agent TOML config with [[rotate]] policies")
    p.add_argument("--once", action="store_true", help="one pass (until stable), then exit")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (what and why) and change nothing; implies --once")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = schema.load_or_report(args.config)
    if cfg is None:
        return 2
    if not cfg.rotate:
        print(f"{args.config}: no [[rotate]] policies configured", file=sys.stderr)
        return 2
    jsonlog.setup(cfg.telemetry.log_level, json_format=cfg.telemetry.log_json or None)
    registry = CollectorRegistry()
    metrics = rotation_metrics(registry)
    clock = SystemClock()
    try:
        services = [RotationService(rc, state_dir=cfg.state_dir, clock=clock, metrics=metrics)
                    for rc in cfg.rotate]
    except ValueError as e:
        print(f"{args.config}: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(f"# dry run at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(clock.time()))}:"
              " nothing is changed")
        for svc in services:
            for line in format_plan(svc.cfg, svc.run_pass(dry_run=True).plan):
                print(f"[{svc.cfg.name}] {line}")
        return 0
    try:
        with exclusive_lock(cfg.state_dir, wait=not args.once):
            for svc in services:
                svc.state.load()   # what the agent we waited for left, not what was there before
            if args.once:
                failed = False
                for svc in services:
                    for r in svc.run_until_stable():
                        failed |= any(o.status == "failed" for o in r.outcomes)
                return 1 if failed else 0
            return _continuous(services)
    except LockHeld as e:
        print(f"opsagent rotate: {e}", file=sys.stderr)
        return 1


def format_plan(cfg: RotateConfig, plan: Plan) -> list[str]:
    """The dry-run report of one policy: every action and its reason, every name refused,
    quota usage against the limits, and what is left over a limit."""
    lines = [a.describe() for a in plan.actions]
    lines += [f"refuse {path!r}: {reason}" for path, reason in plan.skipped]
    if cfg.soft_limit:
        for group, used in sorted(plan.usage.items()):
            hard = f", hard limit {cfg.hard_limit}" if cfg.hard_limit else ""
            lines.append(f"quota {group!r}: {used} bytes allocated, soft limit "
                         f"{cfg.soft_limit}{hard}")
    for b in plan.breaches:
        lines.append(f"quota {b.limit} limit still exceeded for {b.group!r} after this pass: "
                     f"{b.usage} > {b.limit_bytes} bytes")
    if cfg.soft_limit and any(a.kind == "compress" for a in plan.actions):
        lines.append("note: compression savings are known only once done; if the group is "
                     "still over the soft limit, the next pass deletes the oldest archives")
    if not plan.actions:
        lines.append("nothing to do")
    return lines


def _continuous(services: list[RotationService]) -> int:
    # Signal handlers only set the event; each policy's loop watches its own directories.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = [threading.Thread(target=svc.run, args=(stop,), name=f"rotate-{svc.cfg.name}",
                                daemon=True) for svc in services]
    for t in threads:
        t.start()
    log.info("rotation running", extra={"component": "rotation", "pid": os.getpid(),
                                        "policies": [s.cfg.name for s in services]})
    stop.wait()
    for t in threads:
        t.join(10)
    return 0
