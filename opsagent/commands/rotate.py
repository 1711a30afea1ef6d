"""`opsagent rotate --config FILE [--once] [--dry-run]`: run the [[rotate]] policies.

`--once` and `--dry-run` are one-shot tools here; without them `opsagent rotate` is the agent
(`opsagent run`) running only the [[rotate]] policies: the same signals, drain, reload, restart
backoff, log level and HTTP telemetry."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from opsagent import early_signals
from opsagent.clock import SystemClock
from opsagent.commands import agent
from opsagent.commands.jobs import JobSelection
from opsagent.config import schema
from opsagent.rotation.config import RotateConfig

if TYPE_CHECKING:   # imported where used: `opsagent check-config` loads no rotation runtime
    from opsagent.rotation.policy import Plan
from opsagent.telemetry import jsonlog


def register(sub: Any) -> None:
    p = sub.add_parser("rotate", help="rotate, compress and expire logs; hold disk quotas")
    p.add_argument("--config", required=True, help="agent TOML config with [[rotate]] policies")
    p.add_argument("--once", action="store_true",
                   help="one pass (until stable), then exit (without --once or --dry-run: "
                        "the agent, running only the [[rotate]] policies)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (what and why) and change nothing; implies --once")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not (args.once or args.dry_run):
        args.jobs = JobSelection("opsagent rotate", "rotate")
        return agent.run(args)
    early_signals.release()   # one-shot: SIGTERM ends it as usual
    cfg = schema.load_or_report(args.config)
    if cfg is None:
        return 2
    if not cfg.rotate:
        print(f"{args.config}: no [[rotate]] policies configured", file=sys.stderr)
        return 2
    jsonlog.setup(cfg.telemetry.log_level, json_format=cfg.telemetry.log_json or None)
    from opsagent.rotation.metrics import rotation_metrics
    from opsagent.rotation.service import RotationService
    from opsagent.rotation.state import LockHeld, exclusive_lock

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
        with exclusive_lock(cfg.state_dir, wait=False):
            for svc in services:
                svc.state.load()   # what the last holder of the lock left, read under the lock
            failed = False
            for svc in services:
                for r in svc.run_until_stable():
                    failed |= any(o.status == "failed" for o in r.outcomes)
            return 1 if failed else 0
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
