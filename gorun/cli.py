"""The `gorun` command: argparse and wiring only.

    gorun run CRONTAB [CRONTAB...]     run the scheduler in the foreground (also: gorun CRONTAB...)
    gorun test CRONTAB [CRONTAB...]    validate: FILE:LINE: message per problem, exit 2 on errors
    gorun next EXPR [--tz ZONE] [--from ISO8601] [-n N]   the next N fire times

supercronic's flags are accepted with `gorun [run] CRONTAB`, single- or double-dash: -json, -test,
-overlapping, -passthrough-logs, -prometheus-listen-address ADDR, -split-logs, -inotify, -debug,
-quiet.
Exit codes: 0 success, 1 runtime failure, 2 usage, invalid crontab or expression.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys
import zoneinfo
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, start_http_server

from gorun import __version__, logsetup
from gorun.app import GorunApp, GorunOptions
from gorun.crontab import load_crontab
from gorun.errors import GorunError
from gorun.expr import format_time, parse_expr
from gorun.limits import raise_nofile_limit
from gorun.logfmt import KeyValueFormatter, exempt_job_records
from gorun.reaper import become_subreaper

SUBCOMMANDS = ("run", "test", "next")


def _flags(p: argparse.ArgumentParser) -> None:
    def flag(name: str, **kw: object) -> None:
        p.add_argument(f"-{name}", f"--{name}", **kw)  # type: ignore[arg-type]
    flag("json", action="store_true", help="log one JSON object per line")
    flag("test", action="store_true", help="validate the crontabs and exit (like `gorun test`)")
    flag("overlapping", action="store_true",
         help="let a job start while its previous run is still running (overlap=allow), "
              "unless its options say otherwise")
    flag("passthrough-logs", dest="passthrough_logs", action="store_true",
         help="write job output as is to our stdout/stderr instead of as log records")
    flag("prometheus-listen-address", dest="prometheus_listen_address", metavar="ADDR",
         help="serve /metrics on HOST:PORT (supercronic: e.g. 127.0.0.1:9746)")
    flag("split-logs", dest="split_logs", action="store_true",
         help="log below warning level to stdout, warnings and errors to stderr")
    flag("inotify", action="store_true",
         help="accepted for supercronic compatibility: gorun always watches (see --no-watch)")
    flag("debug", action="store_true", help="debug logging")
    flag("quiet", action="store_true", help="log warnings and errors only")
    flag("system", action="store_true",
         help="system crontab format (/etc/crontab, /etc/cron.d): a user column after the time")
    flag("grace-secs", dest="grace_secs", type=float, default=30.0, metavar="SECS",
         help="at SIGTERM, how long running jobs get before SIGKILL (default 30)")
    flag("kill-grace-secs", dest="kill_grace_secs", type=float, default=5.0, metavar="SECS",
         help="after a job's timeout (or overlap=replace) SIGTERM, SIGKILL follows this much "
              "later (default 5)")
    flag("subreaper", action="store_true",
         help="become a child subreaper (prctl) so orphaned job processes are reaped even "
              "when gorun is not PID 1")
    flag("no-watch", dest="no_watch", action="store_true",
         help="do not watch the crontab files; reload on SIGHUP (and the periodic rescan) only")
    p.add_argument("crontabs", nargs="+", metavar="CRONTAB")


def build_parser(command: str) -> argparse.ArgumentParser:
    prog = "gorun" if command == "run" else f"gorun {command}"
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    if command == "next":
        p.add_argument("expr", metavar="EXPR", help='cron expression, e.g. "30 2 * * *"')
        p.add_argument("--tz", "-tz", metavar="ZONE", help="IANA time zone (default: local)")
        p.add_argument("--from", "-from", dest="start", metavar="ISO8601",
                       help="start after this time (default: now); naive means in --tz")
        p.add_argument("-n", type=int, default=5, metavar="N", help="how many (default 5)")
    else:
        _flags(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in in (["--version"], ["-version"]):
        print(f"gorun {__version__}")
        return 0
    command = "run"
    if args_in and args_in[0] in SUBCOMMANDS:
        command = args_in.pop(0)
    args = build_parser(command).parse_args(args_in)
    if command == "next":
        return _next(args)
    if command == "test" or args.test:
        return _test(args.crontabs, system=args.system)
    return _run(args)


def _test(paths: Sequence[str], *, system: bool) -> int:
    bad = False
    for path in paths:
        for problem in load_crontab(path, system=system).problems:
            print(str(problem), file=sys.stderr)
            bad = bad or problem.severity == "error"
    return 2 if bad else 0


def _next(args: argparse.Namespace) -> int:
    try:
        tz = zoneinfo.ZoneInfo(args.tz) if args.tz else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        print(f"gorun next: unknown time zone {args.tz!r}: {e}", file=sys.stderr)
        return 2
    if args.n < 1:
        print("gorun next: -n must be at least 1", file=sys.stderr)
        return 2
    try:
        expr = parse_expr(args.expr, tz)
    except GorunError as e:
        print(f"gorun next: {args.expr!r}: {e}", file=sys.stderr)
        return 2
    if expr.never_fires():
        print(f"gorun next: {args.expr!r}: never fires", file=sys.stderr)
        return 2
    try:
        t = (datetime.datetime.fromisoformat(args.start) if args.start
             else datetime.datetime.now(datetime.UTC))
    except ValueError as e:
        print(f"gorun next: --from: {e}", file=sys.stderr)
        return 2
    if t.tzinfo is None:
        t = t.replace(tzinfo=expr.tz)
    for _ in range(args.n):
        nxt = expr.next_after(t)
        if nxt is None:
            break
        print(format_time(nxt))
        t = nxt
    return 0


def _setup_logging(args: argparse.Namespace) -> None:
    level = "debug" if args.debug else "warning" if args.quiet else "info"
    logsetup.setup(level, json_format=args.json,
                  stream=sys.stdout if args.split_logs else sys.stderr)
    root = logging.getLogger()
    if not args.json:
        for handler in root.handlers:
            handler.setFormatter(KeyValueFormatter())
    if args.split_logs:  # supercronic's -split-logs: info to stdout, the rest to stderr
        out = root.handlers[0]
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(out.formatter)
        err.setLevel(logging.WARNING)
        for flt in out.filters:
            err.addFilter(flt)
        out.addFilter(lambda record: record.levelno < logging.WARNING)
        root.addHandler(err)
    exempt_job_records()


def _listen(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"-prometheus-listen-address {addr!r}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def _run(args: argparse.Namespace) -> int:
    _setup_logging(args)
    log = logging.getLogger("gorun")
    registry = CollectorRegistry()
    if args.prometheus_listen_address:
        try:
            host, port = _listen(args.prometheus_listen_address)
            start_http_server(port, addr=host, registry=registry)
        except (ValueError, OSError) as e:
            log.error("cannot serve metrics", extra={"component": "gorun", "error": str(e)})
            return 2
    raise_nofile_limit()  # each running job holds two or three pipes
    if args.subreaper and not become_subreaper():
        log.warning("could not become a child subreaper", extra={"component": "gorun"})
    app = GorunApp(GorunOptions(
        paths=tuple(args.crontabs), system=args.system, grace_secs=args.grace_secs,
        kill_grace_secs=args.kill_grace_secs, overlapping=args.overlapping,
        passthrough_logs=args.passthrough_logs, watch=not args.no_watch), registry=registry)
    rc = app.run(signals=True)
    # Exit now, not through interpreter finalization: daemon threads (watchdog, the metrics
    # server, a job's stdin feeder) may still hold locks that atexit handlers would wait for.
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    sys.exit(main())
