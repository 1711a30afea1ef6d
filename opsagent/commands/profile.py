"""`opsagent profile replay` (print the statistics a set of logs produces, deterministically)
and `opsagent profile run` (the agent running only the [[profile]] pipelines of a config: the
same signals, drain, reload, restart backoff, log level and HTTP telemetry as `opsagent run`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

import prometheus_client

from opsagent.clock import SystemClock
from opsagent.commands import agent
from opsagent.commands.jobs import JobSelection
from opsagent.config import schema
from opsagent.pipelines.profile_config import ProfileConfig

if TYPE_CHECKING:   # imported where used: `opsagent check-config` loads no processor or sink
    from opsagent.processors.profile.processor import ProfileProcessor
    from opsagent.samples import Interval
    from opsagent.sinks.graphite import GraphiteSink
    from opsagent.sinks.statsd import StatsdSink

REPLAY_CHUNK_BYTES = 8 << 20  # ~60k profile lines per batch: enough repetition to count once


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
    r.add_argument("--start-time", type=int, default=None,
                   help="epoch seconds (> 0) at which the lines count as read: the time of "
                        "lines without an event time and of unparsed lines (default: when the "
                        "replay starts; give it for byte-identical output)")
    r.add_argument("--format", choices=("wire", "json"), default="wire",
                   help="wire: the sinks' lines (default); json: the statistics as one JSON "
                        "document (docs/profile.md)")
    r.add_argument("--send", action="store_true",
                   help="also send to the configured statsd/graphite targets")
    r.add_argument("logs", nargs="+", metavar="LOG", help="log files ('-' for stdin)")
    r.set_defaults(func=replay)

    u = psub.add_parser("run", help="the agent running only the [[profile]] pipelines, "
                        "until SIGTERM/SIGINT")
    u.add_argument("--config", required=True, help="agent TOML config with [[profile]] tables")
    u.add_argument("--pipeline", action="append", default=[],
                   help="only this [[profile]] name (repeatable; default: all)")
    u.add_argument("--no-checkpoints", action="store_true",
                   help="no longer supported (exit 2): read positions are kept in state_dir")
    u.set_defaults(func=run)


def _load(path: str, names: list[str]) -> list[ProfileConfig] | None:
    """The selected pipelines, or None after printing why not."""
    cfg = schema.load_or_report(path)
    if cfg is None:
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


def read_batches(f: BinaryIO, max_line_bytes: int,
                 chunk_bytes: int = REPLAY_CHUNK_BYTES) -> Iterator[tuple[list[bytes], int]]:
    """(lines, truncated) per chunk of a stream: complete lines without their newline (the last
    line may lack one), and how many lines longer than max_line_bytes were skipped. Memory stays
    bounded by the chunk size plus one line of at most max_line_bytes."""
    carry = b""
    skipping = False  # inside an over-long line: drop bytes up to the next newline
    while True:
        chunk = f.read(chunk_bytes)
        if not chunk:
            break
        if skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                continue
            chunk = chunk[nl + 1:]
            skipping = False
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop()
        truncated = 0
        if len(carry) > max_line_bytes:
            carry, skipping, truncated = b"", True, 1
        kept = [x for x in lines if len(x) <= max_line_bytes]
        yield kept, truncated + len(lines) - len(kept)
    if carry:
        yield [carry], 0


def replay_processor(cfg: ProfileConfig, logs: list[str],
                     start_time: int) -> tuple[list[Interval], ProfileProcessor]:
    """The intervals one pipeline produces from whole logs read at `start_time`, and the
    processor (its totals)."""
    from opsagent.processors.profile.processor import ProfileProcessor

    proc = ProfileProcessor(cfg)
    now = float(start_time)
    for name in logs:
        with _open(name) as f:
            for lines, truncated in read_batches(f, cfg.tail.max_line_bytes):
                proc.count_unparsed("truncated", truncated, now)
                proc.process(name, lines, now)
    return proc.flush(None), proc


def _open(path: str) -> BinaryIO:
    if path == "-":
        return open(sys.stdin.fileno(), "rb", closefd=False)
    return open(path, "rb")


def replay(args: argparse.Namespace) -> int:
    from opsagent.processors.profile.report import pipeline_json
    from opsagent.sinks.graphite import GraphiteSink, format_lines
    from opsagent.sinks.graphite_config import GraphiteConfig
    from opsagent.sinks.statsd import StatsdSink, format_datagrams
    from opsagent.sinks.statsd_config import StatsdConfig

    profiles = _load(args.config, args.pipeline)
    if profiles is None:
        return 2
    for path in args.logs:
        if path != "-" and not os.access(path, os.R_OK):
            print(f"{path}: cannot read", file=sys.stderr)
            return 1
    if args.logs.count("-") > 0 and len(profiles) > 1:
        print("stdin ('-') can be replayed by one pipeline only (use --pipeline)",
              file=sys.stderr)
        return 2
    if args.start_time is not None and args.start_time <= 0:
        print(f"--start-time must be a positive epoch time, got {args.start_time} (lines "
              "without an event time would be dated 1970)", file=sys.stderr)
        return 2
    if args.format == "json" and args.sink:
        print("--sink selects wire lines: it does not apply to --format json",
              file=sys.stderr)
        return 2
    out = sys.stdout
    registry = prometheus_client.CollectorRegistry()
    clock = SystemClock()
    # Lines without an event time (and unparsed lines) count as read when the replay starts,
    # like the agent's arrival time: never the epoch.
    start_time = args.start_time if args.start_time is not None else int(clock.time())
    report: list[dict[str, Any]] = []
    for cfg in profiles:
        wanted = args.sink or [s for s in ("statsd", "graphite") if getattr(cfg, s)] \
            or ["statsd", "graphite"]
        statsd_cfg = cfg.statsd or StatsdConfig()
        graphite_cfg = cfg.graphite or GraphiteConfig()
        try:
            intervals, proc = replay_processor(cfg, args.logs, start_time)
        except OSError as e:
            print(f"cannot read a log: {e}", file=sys.stderr)
            return 1
        if args.format == "json":
            report.append(pipeline_json(cfg, intervals, proc))
            wanted = []
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
    if args.format == "json":
        json.dump({"start_time": start_time, "pipelines": report}, out, indent=1)
        out.write("\n")
    out.flush()
    return 0


def _drain(sink: StatsdSink | GraphiteSink, timeout_secs: float = 10.0) -> None:
    """TCP Graphite: keep writing until the buffer is empty or the timeout passes."""
    from opsagent.sinks.graphite import GraphiteSink

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
    """The agent running only the selected [[profile]] pipelines (docs/profile.md)."""
    if args.no_checkpoints:
        print("opsagent profile run: --no-checkpoints is no longer supported: `profile run` is "
              "the agent, which keeps read positions in state_dir; give the config a scratch "
              "state_dir instead, or use `opsagent profile replay`", file=sys.stderr)
        return 2
    args.jobs = JobSelection("opsagent profile run", "profile", frozenset(args.pipeline))
    return agent.run(args)
