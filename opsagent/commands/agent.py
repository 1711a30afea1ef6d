"""`opsagent run --config FILE` (every configured job in one process) and
`opsagent check-config FILE` (every problem with its key path or crontab FILE:LINE; exit 2)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import logging
import os
import sys
from typing import Any

import prometheus_client

from opsagent import early_signals, gc_tuning
from opsagent.clock import SystemClock
from opsagent.commands.jobs import JobSelection, runs_rotation
from opsagent.config import schema
from opsagent.config.check import validate, watched_globs
from opsagent.telemetry import jsonlog

log = logging.getLogger("opsagent.app")


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run every configured job (cron, rotate, profile, forward)")
    p.add_argument("--config", required=True, metavar="FILE", help="agent TOML config")
    p.set_defaults(func=run)
    c = sub.add_parser("check-config",
                       help="validate a config (and its crontabs); exit 2 on errors")
    c.add_argument("config", metavar="FILE")
    c.set_defaults(func=check_config)


def check_config(args: argparse.Namespace) -> int:
    result = validate(args.config)
    for line in (*result.warnings, *result.errors):
        print(line, file=sys.stderr)
    if not result.ok:
        return 2
    print(f"{args.config}: ok", file=sys.stderr)
    return 0


def _volumes(cfg: schema.AgentConfig) -> list[str]:
    from opsagent.rotation.safefs import split_trusted

    return sorted({split_trusted(g)[0] for g in watched_globs(cfg)} | {cfg.state_dir})


class AgentLockHeld(Exception):
    """Another agent runs on the same state directory."""


def lock_state_dir(state_dir: str) -> int:
    """Hold `state_dir/agent.lock` (flock) for the life of the process; returns its fd.

    Raises AgentLockHeld when another agent holds it. The lock dies with its process (a crashed
    agent never blocks the next one); O_CLOEXEC keeps cron jobs from inheriting it."""
    path = os.path.join(state_dir, "agent.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise AgentLockHeld(f"{path} is held by pid {holder}: another agent runs on this "
                                f"state directory") from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def run(args: argparse.Namespace) -> int:
    # `opsagent forward`, `profile run` and continuous `rotate` are this runtime with a filter.
    jobs: JobSelection | None = getattr(args, "jobs", None)
    prog = jobs.command if jobs is not None else "opsagent run"
    # Exactly what check-config and every reload check (opsagent/config/check.py).
    result = validate(args.config)
    job_problems = (jobs.problems(args.config, result.cfg)
                    if jobs is not None and result.cfg is not None else [])
    for line in (*job_problems, *result.warnings, *result.errors):
        print(line, file=sys.stderr)
    if result.cfg is None or not result.ok or job_problems:
        return 2
    cfg = result.cfg
    jsonlog.setup(cfg.telemetry.log_level, json_format=cfg.telemetry.log_json or None)
    if cfg.telemetry.log_level.lower() != "debug":
        # kafka-python logs every connection attempt; the sink reports what matters (rate-limited).
        logging.getLogger("kafka").setLevel(logging.CRITICAL)

    try:
        os.makedirs(cfg.state_dir, mode=0o700, exist_ok=True)
        lock_fd = lock_state_dir(cfg.state_dir)
    except (AgentLockHeld, OSError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    try:
        # The rotation lock too, so a standalone `opsagent rotate` on this state directory
        # cannot rotate the same trees while the agent does.
        from opsagent.rotation.state import LockHeld, exclusive_lock

        with contextlib.ExitStack() as stack:
            if runs_rotation(cfg, jobs):
                try:
                    stack.enter_context(exclusive_lock(cfg.state_dir, wait=False))
                except LockHeld as e:
                    print(f"{prog}: {e}", file=sys.stderr)
                    return 1
            return _run_locked(args, cfg, result.digest)
    finally:
        os.close(lock_fd)


def _run_locked(args: argparse.Namespace, cfg: schema.AgentConfig, digest: str | None) -> int:
    from gorun.reaper import ChildReaper, OrphanReaper
    from opsagent.app import CONFIG_CHANGED, Agent, watch_config
    from opsagent.telemetry.http import Health, TelemetryServer
    from opsagent.telemetry.process import register as register_process

    clock = SystemClock()
    registry = prometheus_client.CollectorRegistry()
    register_process(registry, _volumes(cfg))
    health = Health(clock.monotonic)
    server = None
    if cfg.telemetry.http_listen:
        try:
            server = TelemetryServer(cfg.telemetry.http_listen, registry, health)
        except OSError as e:    # port in use, address not on this node, unknown host name
            print(f"opsagent run: {args.config}: telemetry.http_listen: cannot listen on "
                  f"{cfg.telemetry.http_listen}: {e.strerror or e}", file=sys.stderr)
            return 1
        server.start()
    # As PID 1 (the container's init) orphans are re-parented to us: reap them all, and route
    # every child we start through the same reaper so no exit status is stolen.
    reaper = OrphanReaper() if os.getpid() == 1 else ChildReaper()
    agent = Agent(args.config, cfg, clock=clock, registry=registry, health=health,
                  env=os.environ, reaper=reaper, jobs=getattr(args, "jobs", None))
    agent.validated_digest = digest   # the bytes validated above, not a later version
    agent.install_signal_handlers()
    early_signals.replay(agent.events.put)   # a SIGTERM during start-up drains like any other
    observer = watch_config(args.config, lambda: agent.events.put(CONFIG_CHANGED))
    gc_tuning.tune_after_startup()  # docs/benchmarks.md "Kafka forwarding": GC was ~15% CPU
    try:
        return agent.run()
    finally:
        observer.stop()
        if server is not None:
            server.stop()
        reaper.stop()
