"""`opsagent profile replay` (print the statistics a set of logs produces, deterministically)
and `opsagent profile run` (run the [[profile]] pipelines of a config in the foreground)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

import prometheus_client

from opsagent.clock import SystemClock
from opsagent.config import schema
from opsagent.errors import ConfigErrors
from opsagent.processors.profile.config import ProfileConfig
from opsagent.processors.profile.processor import ProfileProcessor
from opsagent.processors.profile.samples import Interval
from opsagent.sinks.graphite import GraphiteConfig, GraphiteSink, format_lines
from opsagent.sinks.statsd import StatsdConfig, StatsdSink, format_datagrams
from opsagent.telemetry import jsonlog

log = logging.getLogger("opsagent.commands.profile")

REPLAY_BATCH_LINES = 65_536


def register(sub: Any) -> None:
    p = sub.add_parser("profile", help="profile-log statistics (replay, run)")
    psub = p.add_subparsers(dest="profile_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda _a: (p.print_help(sys.stderr), 2)[1])

    r = psub.add_parser("replay", help="read logs once and print the wire lines they produce")
    r.add_argument("--config", required=True, help="agent TOML config with [[profile]] tables")
    r.add_argument("--pipeline", action="append", default=[],
                   help="only this [[profile]] name (repeatable; default: all)")
    r.add_argument("--sink", action="append", choices=("statsd", "graphite"), default=[],
                   help="print only this sink's lines (repeatable; default: the configured "
                        "sinks, or both when none is configured)")
    r.add_argument("--start-time", type=int, default=0,
                   help="epoch seconds for lines without an event time (default 0)")
    r.add_argument("--send", action="store_true",
                   help="also send to the configured statsd/graphite targets")
    r.add_argument("logs", nargs="+", metavar="LOG", help="log files ('-' for stdin)")
    r.set_defaults(func=replay)

    u = psub.add_parser("run", help="run the [[profile]] pipelines until SIGTERM/SIGINT")
    u.add_argument("--config", required=True)
    u.add_argument("--pipeline", action="append", default=[])
    u.set_defaults(func=run)


def _load(path: str, names: list[str]) -> list[ProfileConfig] | None:
    try:
        cfg = schema.load(path)
    except ConfigErrors as e:
        print(str(e), file=sys.stderr)
        return None
    profiles: list[ProfileConfig] = list(cfg.profile)
    if names:
        unknown = sorted(set(names) - {p.name for p in profiles})
        if unknown:
            print(f"{path}: no [[profile]] named {', '.join(unknown)}", file=sys.stderr)
            return None
        profiles = [p for p in profiles if p.name in names]
    if not profiles:
        print(f"{path}: no [[profile]] pipelines configured", file=sys.stderr)
        return None
    return profiles


def _read_lines(path: str) -> list[bytes]:
    if path == "-":
        data = sys.stdin.buffer.read()
    else:
        with open(path, "rb") as f:
            data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def replay_intervals(cfg: ProfileConfig, logs: list[tuple[str, list[bytes]]],
                     start_time: int) -> list[Interval]:
    """The intervals one pipeline produces from whole logs (deterministic: no clock)."""
    proc = ProfileProcessor(cfg)
    limit = cfg.tail.max_line_bytes
    for name, lines in logs:
        for i in range(0, len(lines), REPLAY_BATCH_LINES):
            batch = lines[i:i + REPLAY_BATCH_LINES]
            kept = [x for x in batch if len(x) <= limit]
            proc.count_unparsed("truncated", len(batch) - len(kept), float(start_time))
            proc.process(name, kept, float(start_time))
    return proc.flush(None)


def replay(args: argparse.Namespace) -> int:
    profiles = _load(args.config, args.pipeline)
    if profiles is None:
        return 2
    logs: list[tuple[str, list[bytes]]] = []
    for path in args.logs:
        try:
            logs.append((path, _read_lines(path)))
        except OSError as e:
            print(f"{path}: cannot read: {e.strerror}", file=sys.stderr)
            return 1
    out = sys.stdout
    registry = prometheus_client.CollectorRegistry()
    clock = SystemClock()
    for cfg in profiles:
        wanted = args.sink or [s for s in ("statsd", "graphite") if getattr(cfg, s)] \
            or ["statsd", "graphite"]
        statsd_cfg = cfg.statsd or StatsdConfig()
        graphite_cfg = cfg.graphite or GraphiteConfig()
        intervals = replay_intervals(cfg, logs, args.start_time)
        for iv in intervals:
            if "statsd" in wanted:
                out.write(f"# pipeline={cfg.name} sink=statsd interval={iv.start}\n")
                for dg in format_datagrams(cfg.name, statsd_cfg, iv):
                    out.write(dg + "\n")
            if "graphite" in wanted:
                out.write(f"# pipeline={cfg.name} sink=graphite interval={iv.start}\n")
                for line in format_lines(cfg.name, graphite_cfg, iv):
                    out.write(line + "\n")
        if args.send:
            sinks: list[StatsdSink | GraphiteSink] = []
            if cfg.statsd is not None:
                sinks.append(StatsdSink(cfg.name, cfg.statsd, clock=clock, registry=registry))
            if cfg.graphite is not None:
                sinks.append(GraphiteSink(cfg.name, cfg.graphite, clock=clock,
                                          registry=registry))
            for s in sinks:
                s.start()
                for iv in intervals:
                    s.send(iv)
                _drain(s)
                s.close()
    out.flush()
    return 0


def _drain(sink: StatsdSink | GraphiteSink, timeout_secs: float = 10.0) -> None:
    """TCP Graphite: keep writing until the buffer is empty or the timeout passes."""
    if not isinstance(sink, GraphiteSink):
        return
    done = threading.Event()
    waited = 0.0
    while sink.pending_bytes() and waited < timeout_secs:
        sink.tick()
        done.wait(0.05)
        waited += 0.05
    if sink.pending_bytes():
        print(f"graphite: {sink.pending_bytes()} bytes not sent", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from opsagent.pipelines.profile import ProfilePipeline

    profiles = _load(args.config, args.pipeline)
    if profiles is None:
        return 2
    jsonlog.setup("info")
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()  # handlers only enqueue; the main thread does the work

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    clock = SystemClock()
    registry = prometheus_client.CollectorRegistry()
    pipelines = [ProfilePipeline(cfg, clock=clock, registry=registry) for cfg in profiles]
    started = []
    try:
        for p in pipelines:
            p.start()
            started.append(p)
        log.info("profile pipelines running", extra={
            "component": "profile", "pipelines": [p.cfg.name for p in pipelines]})
        while not stop.wait(1.0):
            pass
    finally:
        for p in started:
            p.stop()
    log.info("profile pipelines stopped", extra={"component": "profile"})
    return 0
