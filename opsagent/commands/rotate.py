"""`opsagent rotate --config FILE [--once] [--dry-run]`: run the [[rotate]] policies."""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
from typing import Any

from prometheus_client import CollectorRegistry

from opsagent.clock import SystemClock
from opsagent.config import schema
from opsagent.errors import ConfigErrors
from opsagent.rotation.metrics import RotationMetrics
from opsagent.rotation.service import RotationService
from opsagent.rotation.state import LockHeld, exclusive_lock
from opsagent.rotation.watch import watch
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
    try:
        cfg = schema.load(args.config)
    except ConfigErrors as e:
        for err in e.errors:
            print(err, file=sys.stderr)
        return 2
    if not cfg.rotate:
        print(f"{args.config}: no [[rotate]] policies configured", file=sys.stderr)
        return 2
    jsonlog.setup(cfg.telemetry.log_level, json_format=cfg.telemetry.log_json)
    registry = CollectorRegistry()
    metrics = RotationMetrics(registry)
    clock = SystemClock()
    if args.dry_run:
        for rc in cfg.rotate:
            svc = RotationService(rc, state_dir=cfg.state_dir, clock=clock, metrics=metrics)
            result = svc.run_pass(dry_run=True)
            for action in result.plan.actions:
                print(f"[{rc.name}] {action.describe()}")
            for path, reason in result.plan.skipped:
                print(f"[{rc.name}] refuse {path!r}: {reason}")
            for b in result.plan.breaches:
                print(f"[{rc.name}] quota {b.limit} limit still exceeded for {b.group!r}: "
                      f"{b.usage} > {b.limit_bytes} bytes")
        return 0
    try:
        with exclusive_lock(cfg.state_dir, wait=not args.once):
            services = [RotationService(rc, state_dir=cfg.state_dir, clock=clock, metrics=metrics)
                        for rc in cfg.rotate]
            if args.once:
                failed = False
                for svc in services:
                    for r in svc.run_until_stable():
                        failed |= any(o.status == "failed" for o in r.outcomes)
                return 1 if failed else 0
            return _continuous(services, [d for rc in cfg.rotate for d in rc.directories])
    except LockHeld as e:
        print(f"opsagent rotate: {e}", file=sys.stderr)
        return 1


def _continuous(services: list[RotationService], patterns: list[str]) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    queues: list[queue.Queue[str]] = [queue.Queue() for _ in services]
    fan: queue.Queue[str] = queue.Queue()
    observer = watch(patterns, fan)

    def fan_out() -> None:
        while not stop.is_set():
            try:
                d = fan.get(timeout=0.5)
            except queue.Empty:
                continue
            for q in queues:
                q.put(d)

    threads = [threading.Thread(target=fan_out, name="rotate-events", daemon=True)]
    threads += [threading.Thread(target=svc.run, args=(stop,), kwargs={"events": q},
                                 name=f"rotate-{svc.cfg.name}", daemon=True)
                for svc, q in zip(services, queues, strict=True)]
    for t in threads:
        t.start()
    log.info("rotation running", extra={"component": "rotation", "pid": os.getpid(),
                                        "policies": [s.cfg.name for s in services]})
    stop.wait()
    observer.stop()
    observer.join(5)
    for t in threads:
        t.join(10)
    return 0
