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

from opsagent import gc_tuning
from opsagent.clock import SystemClock
from opsagent.config import schema
from opsagent.errors import ConfigErrors
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


def watched_globs(cfg: schema.AgentConfig) -> list[str]:
    """Directory globs of every tree the agent watches (rotated or tailed)."""
    globs = [d for r in cfg.rotate for d in r.directories]
    globs += [os.path.dirname(g) for f in cfg.forward for g in f.tail.include]
    globs += [os.path.dirname(g) for p in cfg.profile for g in p.tail.include]
    return globs


def placement_errors(path: str, cfg: schema.AgentConfig) -> list[str]:
    """Problems no single key shows: the state directory or a crontab inside a tree whose
    writers are not trusted (they could plant our lock, checkpoints or rotation state, or jobs
    that we would run)."""
    from opsagent.rotation.state import check_state_dir

    errors: list[str] = []
    try:
        check_state_dir(cfg.state_dir, watched_globs(cfg))
    except ValueError as e:
        errors.append(f"{path}: state_dir: {e}")
    # A crontab in a watched tree: its writers could make root run their jobs.
    for i, crontab in enumerate(cfg.cron.crontabs):
        try:
            check_state_dir(crontab, watched_globs(cfg))
        except ValueError:
            errors.append(f"{path}: cron.crontabs[{i}]: crontab {crontab!r} is inside a watched "
                          "tree (rotated or tailed directories are written by untrusted pods)")
    return errors


def problems(path: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) of a config file and of the crontabs it names, as printed lines."""
    try:
        cfg = schema.load(path)
    except ConfigErrors as e:
        return [str(err) for err in e.errors], []
    from gorun.crontab import load_crontab

    errors: list[str] = placement_errors(path, cfg)
    warnings: list[str] = []
    for crontab in cfg.cron.crontabs:
        ct = load_crontab(crontab, system=cfg.cron.system)
        for prob in ct.problems:
            (errors if prob.severity == "error" else warnings).append(str(prob))
    return errors, warnings


def check_config(args: argparse.Namespace) -> int:
    errors, warnings = problems(args.config)
    for line in (*warnings, *errors):
        print(line, file=sys.stderr)
    if errors:
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
    cfg = schema.load_or_report(args.config)
    if cfg is None:
        return 2
    placement = placement_errors(args.config, cfg)
    for line in placement:
        print(line, file=sys.stderr)
    if placement:
        return 2
    jsonlog.setup(cfg.telemetry.log_level, json_format=cfg.telemetry.log_json)
    if cfg.telemetry.log_level.lower() != "debug":
        # kafka-python logs every connection attempt; the sink reports what matters (rate-limited).
        logging.getLogger("kafka").setLevel(logging.CRITICAL)

    os.makedirs(cfg.state_dir, mode=0o700, exist_ok=True)
    try:
        lock_fd = lock_state_dir(cfg.state_dir)
    except (AgentLockHeld, OSError) as e:
        print(f"opsagent run: {e}", file=sys.stderr)
        return 1
    try:
        # The rotation lock too, so a standalone `opsagent rotate` on this state directory
        # cannot rotate the same trees while the agent does.
        from opsagent.rotation.state import LockHeld, exclusive_lock

        with contextlib.ExitStack() as stack:
            if cfg.rotate:
                try:
                    stack.enter_context(exclusive_lock(cfg.state_dir, wait=False))
                except LockHeld as e:
                    print(f"opsagent run: {e}", file=sys.stderr)
                    return 1
            return _run_locked(args, cfg)
    finally:
        os.close(lock_fd)


def _run_locked(args: argparse.Namespace, cfg: schema.AgentConfig) -> int:
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
        server = TelemetryServer(cfg.telemetry.http_listen, registry, health)
        server.start()
    # As PID 1 (the container's init) orphans are re-parented to us: reap them all, and route
    # every child we start through the same reaper so no exit status is stolen.
    reaper = OrphanReaper() if os.getpid() == 1 else ChildReaper()
    agent = Agent(args.config, cfg, clock=clock, registry=registry, health=health,
                  env=os.environ, reaper=reaper)
    agent.install_signal_handlers()
    observer = watch_config(args.config, lambda: agent.events.put(CONFIG_CHANGED))
    gc_tuning.tune_after_startup()  # docs/benchmarks.md "Kafka forwarding": GC was ~15% CPU
    try:
        return agent.run()
    finally:
        observer.stop()
        if server is not None:
            server.stop()
        reaper.stop()
