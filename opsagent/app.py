"""The agent: builds every job from one config and owns start / reload / drain / stop.

Signal handlers and file watchers only put events on a queue; the main loop does the work:
SIGHUP or a change of the config file (including the ConfigMap `..data` symlink swap) validates
the new config exactly as start-up does (opsagent/config/check.py) before anything stops, and
swaps only the components whose effective config changed, keeping the old config on any error.
A file change is applied only once the file has settled (reload.Settle), and never when it
would stop every job (an empty or cut-off file); SIGHUP applies at once and is the explicit
sign for that. SIGTERM/SIGINT drains every job within `drain_deadline_secs` and returns 0.

Readiness (/readyz, `opsagent_ready`) is true exactly when the agent has started and is not
draining, the config file's current content is the one running (not rejected), and every
configured component is running; the reason lists what is not.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import signal
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import TYPE_CHECKING

import prometheus_client

from opsagent.clock import Clock
from opsagent.components import (
    BuildContext,
    Component,
    CronSpec,
    ForwardComponent,
    ForwardSpec,
    ProfileSpec,
    Reconfigurable,
    RotateSpec,
    Spec,
)
from opsagent.config import schema
from opsagent.config.check import has_jobs, validate
from opsagent.config.loader import read_config
from opsagent.errors import ConfigErrors, OpsagentError
from opsagent.reload import Key, Settle, plan_reload
from opsagent.telemetry.http import Health

if TYPE_CHECKING:
    from gorun.reaper import Reaper
    from gorun.watch import CrontabWatcher

log = logging.getLogger("opsagent.app")

CONFIG_CHANGED = "config-changed"
COMPONENT_EXITED = "component-exited"   # a component's thread ended (it failed or stopped)
RESTART_BACKOFF_SECS = 5.0
# The main loop sleeps until an event (signal, config change, a component's exit) or a deadline
# of its own (settling config, a restart's backoff); at the latest after this long it beats the
# liveness heart and looks at every component (Health's max silence is 30 s).
SUPERVISE_SECS = 10.0
# A changed config file is applied once it has not changed for this long (read twice this far
# apart with the same content): a file written in parts is never applied half-written.
CONFIG_SETTLE_SECS = 1.0


def wanted_components(cfg: schema.AgentConfig, env: Mapping[str, str],
                      jobs: Callable[[Key], bool] | None = None) -> dict[Key, Spec]:
    """Component key -> its spec (section + the globals it depends on); with `jobs`, only the
    keys it selects (`opsagent forward` is the agent running forward jobs)."""
    fields = tuple(sorted(schema.static_fields(cfg.node, env).items()))
    specs: list[Spec] = []
    specs.extend(ForwardSpec(f, cfg.state_dir, fields) for f in cfg.forward)
    specs.extend(ProfileSpec(p, cfg.state_dir, fields) for p in cfg.profile)
    specs.extend(RotateSpec(r, cfg.state_dir) for r in cfg.rotate)
    if cfg.cron.crontabs:
        specs.append(CronSpec(cfg.cron, schema.cron_grace_secs(cfg)))
    out = {s.key: s for s in specs}
    return out if jobs is None else {k: v for k, v in out.items() if jobs(k)}


def file_digest(path: str) -> str | None:
    """sha256 of the config file's bytes; None when it is not a readable regular file (read
    like the validation reads it: a FIFO in its place must not block the main loop)."""
    try:
        return hashlib.sha256(read_config(path)).hexdigest()
    except ConfigErrors:
        return None


class Agent:
    def __init__(self, config_path: str, cfg: schema.AgentConfig, *, clock: Clock,
                 registry: prometheus_client.CollectorRegistry, health: Health,
                 env: Mapping[str, str], reaper: Reaper | None,
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
        self._effective: dict[Key, Spec] = {}
        # sha256 of the config bytes last validated (applied or rejected): a change event for
        # the same bytes does nothing. `opsagent run` sets the digest it validated at start.
        self.validated_digest = file_digest(config_path)
        self._settle = Settle(CONFIG_SETTLE_SECS)
        self._config_problem: str | None = None     # why the file's content is not running
        self._failures: dict[Key, str] = {}         # why a configured component is not running
        self._up_since: dict[Key, float] = {}       # when each component was (re)started
        self._started = False
        self._restart_at: dict[Key, float] = {}
        # Metric families are created once and outlive the components a reload replaces.
        self._rotation_metrics = rotation_metrics(registry)
        self._cron_metrics = CronMetrics(registry)
        self.m_reloads = prometheus_client.Counter(
            "opsagent_config_reloads", "Config reloads, by result", ["result"], registry=registry)
        self.m_restarts = prometheus_client.Counter(
            "opsagent_component_restarts", "Components restarted after failing", ["kind"],
            registry=registry)
        self.m_config_ok = prometheus_client.Gauge(
            "opsagent_config_last_reload_successful",
            "1 when the config file's current content is the one running, 0 after a rejection",
            registry=registry)
        self.m_config_ok.set(1)
        self.m_up = prometheus_client.Gauge(
            "opsagent_component_up", "1 while a configured component runs, 0 while it cannot",
            ["component", "job"], registry=registry)
        self.m_ready = prometheus_client.Gauge(
            "opsagent_ready", "1 when /readyz answers 200", registry=registry)

    # -- building -------------------------------------------------------------------------

    def _build(self, key: Key, spec: Spec) -> Component:
        """The component for `key`, built from exactly what a reload compares (its spec)."""
        return spec.build(BuildContext(
            clock=self.clock, registry=self.registry, rotation_metrics=self._rotation_metrics,
            cron_metrics=self._cron_metrics, reaper=self.reaper, undelivered=self.undelivered,
            drain_deadline_secs=self.cfg.drain_deadline_secs,
            exited=lambda: self.events.put(COMPONENT_EXITED)))

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
        self._started = True
        self._refresh_health()
        log.info("agent started", extra={"component": "agent",
                                         "jobs": [f"{k}:{n}" for k, n in self.components]})

    def _apply(self, cfg: schema.AgentConfig) -> list[str]:
        """Swap components to match `cfg`; returns what changed (for the log)."""
        wanted = wanted_components(cfg, self.env, self.jobs)
        plan = plan_reload(self._effective, wanted)
        # A component that can take its new config in place (cron: crontab by crontab, running
        # jobs untouched, @reboot not re-run) is neither stopped nor rebuilt.
        updated: list[Key] = []
        for key in plan.stop:
            comp = self.components.get(key)
            if key in wanted and comp is not None and comp.alive() and isinstance(
                    comp, Reconfigurable):
                try:
                    comp.reconfigure(wanted[key])
                except (OpsagentError, OSError, ValueError) as e:   # restarted below instead
                    log.error("cannot update component in place; restarting it", extra={
                        "component": key[0], "job": key[1], "error": str(e)})
                    continue
                self._effective[key] = wanted[key]
                updated.append(key)
        for key in plan.stop:
            if key in updated:
                continue
            comp = self.components.pop(key)
            if not comp.stop(cfg.drain_deadline_secs):
                log.warning("component did not stop in time", extra={
                    "component": key[0], "job": key[1]})
            self._effective.pop(key, None)
        self.cfg = cfg
        for key in list(self._failures):
            if key not in wanted:
                del self._failures[key]
                self.m_up.remove(*key)
        # Forwarders first: a rotation that starts asks them at once what is undelivered
        # (undelivered()), so a forwarder added in the same step must already be listed.
        for key in sorted(plan.start, key=lambda k: k[0] != "forward"):
            if key in updated:
                continue
            try:
                comp = self._build(key, wanted[key])
                comp.start()
            except (OpsagentError, OSError, ValueError) as e:
                self._failures[key] = str(e)
                log.error("cannot start component", extra={
                    "component": key[0], "job": key[1], "error": str(e)})
                continue
            self._up_since[key] = self.clock.monotonic()
            self.components[key] = comp
            self._effective[key] = wanted[key]
        for key in plan.stop:
            if key not in wanted:
                self.m_up.remove(*key)
        return ([f"update {k}:{n}" for k, n in updated]
                + [f"stop {k}:{n}" for k, n in plan.stop if (k, n) not in updated]
                + [f"start {k}:{n}" for k, n in plan.start if (k, n) not in updated])

    def _refresh_health(self) -> None:
        """Readiness and the gauges from the current state (see the module docstring)."""
        reasons: list[str] = []
        if self._config_problem is not None:
            reasons.append(f"config rejected, running the previous one: {self._config_problem}")
        now = self.clock.monotonic()
        for key in wanted_components(self.cfg, self.env):
            comp = self.components.get(key)
            up = comp is not None and comp.alive()
            if up and key in self._failures:
                # A component that failed is up again only once it has run for a backoff
                # period: one that dies at once on every restart is never reported ready.
                if now - self._up_since.get(key, now) >= RESTART_BACKOFF_SECS:
                    del self._failures[key]
                else:
                    up = False
            self.m_up.labels(*key).set(1 if up else 0)
            if not up:
                failed = comp.failed if comp is not None else None
                why = self._failures.get(key) or str(failed or "stopped")
                reasons.append(f"{key[0]}:{key[1]} not running: {why}")
        self.m_config_ok.set(0 if self._config_problem is not None else 1)
        ready = self._started and not reasons
        self.m_ready.set(1 if ready else 0)
        self.health.set_ready(ready, "ok" if ready else "; ".join(reasons) or "starting")

    # -- events ---------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def enqueue(signum: int, _frame: FrameType | None) -> None:
            self.events.put(signum)

        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, enqueue)

    def reload(self, *, explicit: bool = True) -> bool:
        """Validate the config file as start-up does and swap to it; on any error keep the
        running config. `explicit` (SIGHUP) also applies a config that stops every job; a file
        change (explicit=False) never does: an empty or cut-off file looks like that."""
        result = validate(self.config_path)
        # Remembered for rejected content too: the watcher's next events for the same bad file
        # must not log and count the rejection again (only SIGHUP or new content retries).
        self.validated_digest = result.digest
        for line in result.warnings:
            log.warning(line, extra={"component": "agent", "file": self.config_path})
        errors = list(result.errors)
        new = result.cfg
        if new is not None and not errors:
            errors = self._runtime_errors(new, explicit=explicit)
        if new is None or errors:
            return self._reject(errors)
        changes = self._apply(new)
        self._config_problem = None
        self.m_reloads.labels("applied").inc()
        self._refresh_health()
        log.info("config reloaded", extra={"component": "agent", "changes": changes})
        return True

    def _runtime_errors(self, new: schema.AgentConfig, *, explicit: bool) -> list[str]:
        """What a valid config still cannot change in a running agent."""
        where = f"{self.config_path}: "
        errors = []
        if not explicit and has_jobs(self.cfg) and not has_jobs(new):
            errors.append(where + "would stop every job (an empty or cut-off file looks like "
                          "this); send SIGHUP to apply it on purpose")
        if new.state_dir != self.cfg.state_dir:
            # The agent's lock, checkpoints and rotation state live there: moving it needs a
            # restart (which takes the lock on the new directory).
            errors.append(where + "state_dir: cannot change on reload (restart the agent)")
        if new.telemetry.http_listen != self.cfg.telemetry.http_listen:
            errors.append(where + "telemetry.http_listen: cannot change on reload (restart "
                          "the agent)")
        return errors

    def _reject(self, errors: list[str]) -> bool:
        self.m_reloads.labels("rejected").inc()
        self._config_problem = errors[0] if len(errors) == 1 else (
            f"{errors[0]} (and {len(errors) - 1} more)")
        for err in errors:
            log.error("config rejected; keeping the running config",
                      extra={"component": "agent", "file": self.config_path, "error": err})
        self._refresh_health()
        return False

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
            self._failures[key] = str(comp.failed or "exited")
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
        self._refresh_health()

    def run(self, stop: threading.Event | None = None) -> int:
        """The main loop: until SIGTERM/SIGINT (or `stop`), then drain. Returns the exit code."""
        self.start()
        while stop is None or not stop.is_set():
            self.health.beat()
            try:
                ev = self.events.get(timeout=self._sleep_secs())
            except queue.Empty:
                ev = None
            if ev in (signal.SIGTERM, signal.SIGINT):
                log.info("draining", extra={"component": "agent", "signal": ev})
                break
            if ev == signal.SIGHUP:
                self._settle = Settle(CONFIG_SETTLE_SECS)   # applied now: nothing pending
                self.reload()
            elif ev == CONFIG_CHANGED:
                self._settle.changed(self.clock.monotonic())
            stable, digest = self._settle.poll(self.clock.monotonic(),
                                               lambda: file_digest(self.config_path))
            if stable and digest != self.validated_digest:
                self.reload(explicit=False)
            if ev is None or ev == COMPONENT_EXITED:
                self._check_components()
        return self.drain()

    def _sleep_secs(self) -> float:
        """How long the main loop may wait for an event: until the config settles, a dead
        component's restart is due, or a restarted one has run for its backoff (then it counts
        as up again); SUPERVISE_SECS at most."""
        now = self.clock.monotonic()
        waits = [SUPERVISE_SECS]
        pending = self._settle.timeout(now)
        if pending is not None:
            waits.append(pending)
        waits.extend(t - now for t in self._restart_at.values())
        waits.extend(self._up_since.get(k, now) + RESTART_BACKOFF_SECS - now
                     for k in self._failures)
        return max(0.0, min(waits))
    def drain(self) -> int:
        """Stop every job concurrently within drain_deadline_secs; 0 either way (what did not
        finish in time is logged; checkpoints only ever hold acknowledged offsets)."""
        self.health.set_ready(False, "draining")
        self.m_ready.set(0)
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


def watch_config(path: str, notify: Callable[[], None]) -> CrontabWatcher:
    """Watch the config file the way gorun watches crontabs (gorun/watch.py: the directory, so a
    ConfigMap's `..data` symlink swap counts; events on other files are ignored, as they would
    keep postponing the reload). An event is only a hint: the main loop waits for the file to
    settle and compares the content. Returns the started watcher (`stop()` at shutdown)."""
    from gorun.watch import CrontabWatcher

    watcher = CrontabWatcher([path], notify)
    watcher.start()
    return watcher
