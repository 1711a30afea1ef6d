"""The agent: builds every job from one config and owns start / reload / drain / stop.

Signal handlers and file watchers only put events on a queue; the main loop does the work:
SIGHUP or a change of the config file (including the ConfigMap `..data` symlink swap) validates
the new config and swaps only the components whose effective config changed, keeping the old
config on any error; SIGTERM/SIGINT drains every job within `drain_deadline_secs` and returns 0.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import queue
import signal
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

import prometheus_client

from opsagent.clock import Clock
from opsagent.components import (
    Component,
    CronComponent,
    ForwardComponent,
    ProfileComponent,
    RotateComponent,
)
from opsagent.config import schema
from opsagent.errors import ConfigErrors, OpsagentError
from opsagent.reload import Key, plan_reload
from opsagent.telemetry.http import Health

log = logging.getLogger("opsagent.app")

CONFIG_CHANGED = "config-changed"
RESTART_BACKOFF_SECS = 5.0


def wanted_components(cfg: schema.AgentConfig, env: Mapping[str, str],
                      jobs: Callable[[Key], bool] | None = None) -> dict[Key, Any]:
    """Component key -> its effective config (section + the globals it depends on); with
    `jobs`, only the keys it selects (`opsagent forward` is the agent running forward jobs)."""
    fields = tuple(sorted(schema.static_fields(cfg.node, env).items()))
    out: dict[Key, Any] = {}
    for f in cfg.forward:
        out[("forward", f.name)] = (f, cfg.state_dir, fields)
    for p in cfg.profile:
        out[("profile", p.name)] = (p, cfg.state_dir, fields)
    for r in cfg.rotate:
        out[("rotate", r.name)] = (r, cfg.state_dir)
    if cfg.cron.crontabs:
        cron = dataclasses.replace(cfg.cron, grace_secs=schema.cron_grace_secs(cfg))
        out[("cron", "crontabs")] = (cron,)
    return out if jobs is None else {k: v for k, v in out.items() if jobs(k)}


DRAIN_MARGIN_SECS = 2.0


def forward_drain_secs(own: float, agent_deadline: float) -> float:
    """How long a forwarder waits for Kafka's acks on stop: its own drain_timeout_secs, but
    ending DRAIN_MARGIN_SECS before the agent's deadline, so it still closes the sink and saves
    its checkpoints before the process exits (what is not acknowledged by then is re-sent after
    the restart)."""
    return max(0.0, min(own, agent_deadline - DRAIN_MARGIN_SECS))


def file_digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


class Agent:
    def __init__(self, config_path: str, cfg: schema.AgentConfig, *, clock: Clock,
                 registry: prometheus_client.CollectorRegistry, health: Health,
                 env: Mapping[str, str], reaper: Any,
                 jobs: Callable[[Key], bool] | None = None) -> None:
        from gorun.metrics import Metrics as CronMetrics
        from opsagent.rotation.metrics import rotation_metrics

        self.config_path = config_path
        self.cfg = cfg
        self.clock = clock
        self.registry = registry
        self.health = health
        self.env = env
        self.reaper = reaper
        self.jobs = jobs   # the job filter, applied to every config this agent runs (reloads too)
        self.events: queue.SimpleQueue[int | str] = queue.SimpleQueue()
        self.components: dict[Key, Component] = {}
        self._effective: dict[Key, Any] = {}
        self._digest = file_digest(config_path)
        self._restart_at: dict[Key, float] = {}
        # Metric families are created once and outlive the components a reload replaces.
        self._rotation_metrics = rotation_metrics(registry)
        self._cron_metrics = CronMetrics(registry)
        self.m_reloads = prometheus_client.Counter(
            "opsagent_config_reloads", "Config reloads, by result", ["result"], registry=registry)
        self.m_restarts = prometheus_client.Counter(
            "opsagent_component_restarts", "Components restarted after failing", ["kind"],
            registry=registry)

    # -- building -------------------------------------------------------------------------

    def _build(self, key: Key, effective: Any) -> Component:
        # Built from exactly what a reload compares (wanted_components): the section, and for
        # the tailing jobs the node fields it was computed with.
        kind = key[0]
        section = effective[0]
        cfg = self.cfg
        fields = dict(effective[2]) if kind in ("forward", "profile") else {}
        if kind == "forward":
            return ForwardComponent(section, state_dir=cfg.state_dir, static_fields=fields,
                                    clock=self.clock, registry=self.registry,
                                    drain_timeout_secs=forward_drain_secs(
                                        section.drain_timeout_secs, cfg.drain_deadline_secs))
        if kind == "profile":
            return ProfileComponent(section, state_dir=cfg.state_dir, static_fields=fields,
                                    clock=self.clock, registry=self.registry)
        if kind == "rotate":
            return RotateComponent(section, state_dir=cfg.state_dir, clock=self.clock,
                                   metrics=self._rotation_metrics, undelivered=self.undelivered)
        return CronComponent(section, registry=self.registry, metrics=self._cron_metrics,
                             reaper=self.reaper)

    def undelivered(self) -> dict[tuple[int, int], int]:
        """Per file (st_dev, st_ino), bytes the forwarders have not delivered yet: rotation
        neither compresses nor deletes them while under the hard limit."""
        out: dict[tuple[int, int], int] = {}
        for c in list(self.components.values()):
            if isinstance(c, ForwardComponent):
                for ident, n in c.pending_by_file().items():
                    out[ident] = out.get(ident, 0) + n
        return out

    def start(self) -> None:
        self._apply(self.cfg)
        self.health.set_ready(True)
        log.info("agent started", extra={"component": "agent",
                                         "jobs": [f"{k}:{n}" for k, n in self.components]})

    def _apply(self, cfg: schema.AgentConfig) -> list[str]:
        """Swap components to match `cfg`; returns what changed (for the log)."""
        wanted = wanted_components(cfg, self.env, self.jobs)
        plan = plan_reload(self._effective, wanted)
        for key in plan.stop:
            comp = self.components.pop(key)
            if not comp.stop(cfg.drain_deadline_secs):
                log.warning("component did not stop in time", extra={
                    "component": key[0], "job": key[1]})
            self._effective.pop(key, None)
        self.cfg = cfg
        errors: list[str] = []
        for key in plan.start:
            try:
                comp = self._build(key, wanted[key])
                comp.start()
            except (OpsagentError, OSError, ValueError) as e:
                errors.append(f"{key[0]}:{key[1]}: {e}")
                log.error("cannot start component", extra={
                    "component": key[0], "job": key[1], "error": str(e)})
                continue
            self.components[key] = comp
            self._effective[key] = wanted[key]
        return [f"stop {k}:{n}" for k, n in plan.stop] + [f"start {k}:{n}" for k, n in plan.start]

    # -- events ---------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def enqueue(signum: int, _frame: FrameType | None) -> None:
            self.events.put(signum)

        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, enqueue)

    def reload(self) -> bool:
        """Validate the config file and swap to it; on any error keep the running config."""
        # Remembered for rejected content too: the watcher's next events for the same bad file
        # must not log and count the rejection again (only SIGHUP or new content retries).
        digest = file_digest(self.config_path)
        try:
            new = schema.load(self.config_path)
        except ConfigErrors as e:
            self._digest = digest
            self.m_reloads.labels("rejected").inc()
            for err in e.errors:
                log.error("config rejected; keeping the running config",
                          extra={"component": "agent", "file": self.config_path,
                                 "error": str(err)})
            return False
        if new.state_dir != self.cfg.state_dir:
            # The agent's lock, checkpoints and rotation state live there: moving it needs a
            # restart (which takes the lock on the new directory).
            self._digest = digest
            self.m_reloads.labels("rejected").inc()
            log.error("config rejected; keeping the running config", extra={
                "component": "agent", "file": self.config_path,
                "error": "state_dir: cannot change on reload (restart the agent)"})
            return False
        self._digest = digest
        changes = self._apply(new)
        self.m_reloads.labels("applied").inc()
        log.info("config reloaded", extra={"component": "agent", "changes": changes})
        return True

    def _check_components(self) -> None:
        """Restart a component that died, and retry one that could not start, once
        RESTART_BACKOFF_SECS have passed since it was first seen dead or missing."""
        now = self.clock.monotonic()
        wanted = wanted_components(self.cfg, self.env, self.jobs)
        for key in list(self._restart_at):
            if key not in wanted:
                del self._restart_at[key]
        due: set[Key] = set()
        for key, comp in list(self.components.items()):
            if comp.alive():
                continue
            if now < self._restart_at.setdefault(key, now + RESTART_BACKOFF_SECS):
                continue
            log.warning("restarting failed component", extra={"component": key[0],
                                                              "job": key[1]})
            self.m_restarts.labels(key[0]).inc()
            comp.stop(1.0)
            del self.components[key]
            self._effective.pop(key, None)
            due.add(key)
        for key in wanted.keys() - self.components.keys() - due:
            if now >= self._restart_at.setdefault(key, now + RESTART_BACKOFF_SECS):
                due.add(key)
        if due:
            for key in due:
                del self._restart_at[key]
            self._apply(self.cfg)
            for key in due - self.components.keys():   # failed to start again: back off
                self._restart_at[key] = now + RESTART_BACKOFF_SECS

    def run(self, stop: threading.Event | None = None) -> int:
        """The main loop: until SIGTERM/SIGINT (or `stop`), then drain. Returns the exit code."""
        self.start()
        while stop is None or not stop.is_set():
            self.health.beat()
            try:
                ev = self.events.get(timeout=1.0)
            except queue.Empty:
                self._check_components()
                continue
            if ev in (signal.SIGTERM, signal.SIGINT):
                log.info("draining", extra={"component": "agent", "signal": ev})
                break
            changed = ev == CONFIG_CHANGED and file_digest(self.config_path) != self._digest
            if ev == signal.SIGHUP or changed:
                self.reload()
        return self.drain()

    def drain(self) -> int:
        """Stop every job concurrently within drain_deadline_secs; 0 either way (what did not
        finish in time is logged; checkpoints only ever hold acknowledged offsets)."""
        self.health.set_ready(False, "draining")
        deadline = self.cfg.drain_deadline_secs
        results: dict[Key, bool] = {}
        threads = []
        for key, comp in self.components.items():
            def stop_one(k: Key = key, c: Component = comp) -> None:
                results[k] = c.stop(deadline)
            t = threading.Thread(target=stop_one, name=f"drain-{key[0]}-{key[1]}", daemon=True)
            t.start()
            threads.append(t)
        end = self.clock.monotonic() + deadline + 1.0
        for t in threads:
            t.join(max(0.0, end - self.clock.monotonic()))
        late = [f"{k}:{n}" for (k, n) in self.components if not results.get((k, n), False)]
        log.info("stopped", extra={"component": "agent", "late": late})
        self.components.clear()
        return 0


def watch_config(path: str, notify: Callable[[], None]) -> Any:
    """Watch the config file's directory (a ConfigMap update is a `..data` symlink swap there,
    not a write to the file); every event is a hint: the main loop compares the content."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type not in ("opened", "closed_no_write"):
                notify()

    observer = Observer()
    observer.schedule(Handler(), os.path.dirname(os.path.abspath(path)) or ".", recursive=False)
    observer.daemon = True
    observer.start()
    return observer
