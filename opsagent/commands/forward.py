"""`opsagent forward --config FILE`: run the [[forward]] pipelines of a config in the foreground
until SIGTERM/SIGINT, then drain them (each within its drain_timeout_secs) and exit 0.

Exit codes: 0 after a drain, 1 when a pipeline failed (e.g. a fatal Kafka error), 2 for a bad
config. Node identity: [node] keys, else the downward-API env NODE_NAME, POD_NAME, POD_NAMESPACE.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
from types import FrameType

import prometheus_client

from opsagent import gc_tuning
from opsagent.clock import SystemClock
from opsagent.config import schema
from opsagent.config.schema import static_fields
from opsagent.errors import OpsagentError
from opsagent.telemetry import jsonlog

log = logging.getLogger("opsagent.forward")

# How often the main loop checks that every pipeline thread is still alive.
_WATCH_SECS = 1.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("forward", help="tail files and forward their lines to Kafka "
                       "(the [[forward]] pipelines of the config) until SIGTERM")
    p.add_argument("--config", required=True, metavar="FILE", help="agent TOML config")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = schema.load_or_report(args.config)
    if cfg is None:
        return 2
    forward = cfg.forward
    if not forward:
        print(f"{args.config}: no [[forward]] pipeline configured", file=sys.stderr)
        return 2
    jsonlog.setup(cfg.telemetry.log_level, json_format=cfg.telemetry.log_json or None)
    if cfg.telemetry.log_level.lower() != "debug":
        # kafka-python logs every connection at INFO; its warnings and errors still show.
        logging.getLogger("kafka").setLevel(logging.WARNING)
    events: queue.SimpleQueue[int] = queue.SimpleQueue()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        events.put(signum)  # only enqueue: the main loop does the work

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, on_signal)

    # Imported here so `opsagent --help` does not load kafka-python.
    from opsagent.pipelines.forward import ForwardPipeline, build

    clock = SystemClock()
    registry = prometheus_client.CollectorRegistry()
    fields = static_fields(cfg.node, os.environ)
    try:
        pipelines = [build(fc, state_dir=cfg.state_dir, static_fields=fields, clock=clock,
                           registry=registry) for fc in forward]
    except (OpsagentError, OSError, ValueError) as e:
        log.error("cannot build pipelines", extra={"component": "forward", "error": str(e)})
        return 1

    gc_tuning.tune_after_startup()
    stop = threading.Event()
    failed: list[str] = []

    def body(p: ForwardPipeline) -> None:
        try:
            p.run(stop)
        except Exception as e:  # a pipeline's death is reported, then the agent exits 1
            failed.append(p.name)
            log.error("pipeline failed", exc_info=True,
                      extra={"component": "forward", "pipeline": p.name, "error": str(e)})
            events.put(0)

    threads = [threading.Thread(target=body, args=(p,), name=f"forward-{p.name}")
               for p in pipelines]
    for t in threads:
        t.start()
    log.info("forwarding", extra={"component": "forward",
                                  "pipelines": [p.name for p in pipelines]})
    while True:
        try:
            ev = events.get(timeout=_WATCH_SECS)
        except queue.Empty:
            continue
        if ev in (signal.SIGTERM, signal.SIGINT):
            log.info("draining", extra={"component": "forward", "signal": ev})
        break
    stop.set()
    for t in threads:
        t.join()
    clean = all(p.drained_clean for p in pipelines)
    log.info("stopped", extra={"component": "forward", "drained_clean": clean})
    return 1 if failed else 0
