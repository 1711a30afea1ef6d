"""The agent's jobs behind one small interface, so the app can start, stop and swap them alike.

Each job kind has a frozen spec (ForwardSpec, ProfileSpec, RotateSpec, CronSpec): its config
section plus the global values it depends on (state_dir, the node's static fields). A spec is
what a reload compares (frozen dataclasses compare by value, reload.plan_reload) and what builds
the component, from a BuildContext: the collaborators the agent lends every component and that
are not part of the comparison (clock, registry, shared metric families, reaper, ...).

A component is started on its own thread(s), stopped with a deadline (`stop(timeout_secs)` is
True when it stopped in time) and reports `alive()`. The wrapped objects (ForwardPipeline,
ProfilePipeline, RotationService, GorunApp) know nothing of the agent; these adapters are the
only place that knows how each one runs and drains.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import prometheus_client

from opsagent.clock import Clock
from opsagent.reload import Key

if TYPE_CHECKING:   # the job modules are imported when a component is built, not by the wiring
    from gorun.metrics import Metrics as CronMetrics
    from gorun.reaper import Reaper
    from opsagent.config.schema import CronConfig
    from opsagent.pipelines.forward_config import ForwardConfig
    from opsagent.pipelines.profile_config import ProfileConfig
    from opsagent.rotation.config import RotateConfig
    from opsagent.rotation.metrics import RotationMetrics
    from opsagent.rotation.service import Undelivered

log = logging.getLogger("opsagent.app")

@dataclasses.dataclass(frozen=True)
class BuildContext:
    """What the agent lends the components it builds; never compared on reload."""

    clock: Clock
    registry: prometheus_client.CollectorRegistry
    rotation_metrics: RotationMetrics   # metric families outlive the components a reload swaps
    cron_metrics: CronMetrics
    reaper: Reaper | None               # None: gorun reaps its own children
    undelivered: Callable[[], Undelivered]   # forwarders' unsent bytes per file, for rotation
    drain_deadline_secs: float          # the agent's; a forwarder ends its drain before it
    exited: Callable[[], None] = lambda: None   # a component's thread ended (wakes the agent)


DRAIN_MARGIN_SECS = 2.0


def forward_drain_secs(own: float, agent_deadline: float) -> float:
    """How long a forwarder waits for Kafka's acks on stop: its own drain_timeout_secs, but
    ending DRAIN_MARGIN_SECS before the agent's deadline, so it still closes the sink and saves
    its checkpoints before the process exits (what is not acknowledged by then is re-sent after
    the restart)."""
    return max(0.0, min(own, agent_deadline - DRAIN_MARGIN_SECS))


@dataclasses.dataclass(frozen=True)
class ForwardSpec:
    """A [[forward]] pipeline: tail -> Kafka."""

    section: ForwardConfig
    state_dir: str
    static_fields: tuple[tuple[str, str], ...]   # sorted (name, value): node identity

    @property
    def key(self) -> Key:
        return ("forward", self.section.name)

    def build(self, ctx: BuildContext) -> ForwardComponent:
        return ForwardComponent(self, ctx)


@dataclasses.dataclass(frozen=True)
class ProfileSpec:
    """A [[profile]] pipeline: tail -> aggregation -> statsd/Graphite."""

    section: ProfileConfig
    state_dir: str
    static_fields: tuple[tuple[str, str], ...]

    @property
    def key(self) -> Key:
        return ("profile", self.section.name)

    def build(self, ctx: BuildContext) -> ProfileComponent:
        return ProfileComponent(self, ctx)


@dataclasses.dataclass(frozen=True)
class RotateSpec:
    """A [[rotate]] policy."""

    section: RotateConfig
    state_dir: str

    @property
    def key(self) -> Key:
        return ("rotate", self.section.name)

    def build(self, ctx: BuildContext) -> RotateComponent:
        return RotateComponent(self, ctx)


@dataclasses.dataclass(frozen=True)
class CronSpec:
    """The [cron] section, with grace_secs resolved against the agent's drain deadline."""

    section: CronConfig
    grace_secs: float

    @property
    def key(self) -> Key:
        return ("cron", "crontabs")

    def build(self, ctx: BuildContext) -> CronComponent:
        return CronComponent(self, ctx)


Spec = ForwardSpec | ProfileSpec | RotateSpec | CronSpec


class Component(Protocol):
    key: Key                          # (kind, name)
    spec: Spec                        # what it was built from (what a reload compares)
    failed: BaseException | None      # why it died, once it has

    def start(self) -> None: ...
    def stop(self, timeout_secs: float) -> bool: ...   # True when it stopped in time
    def alive(self) -> bool: ...


@runtime_checkable
class Reconfigurable(Protocol):
    """A component that takes a changed spec in place instead of being stopped and rebuilt."""

    def reconfigure(self, spec: Spec) -> None: ...


class _Threaded:
    """A component whose work is one blocking `body(stop_event)` on a thread."""

    def __init__(self, key: Key, exited: Callable[[], None] = lambda: None) -> None:
        self.key = key
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failed: BaseException | None = None
        self._exited = exited

    def body(self, stop: threading.Event) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            self.body(self._stop)
        except Exception as e:  # reported, counted by the app; the agent keeps running
            self.failed = e
            log.error("component failed", exc_info=True,
                      extra={"component": self.key[0], "job": self.key[1], "error": str(e)})
        finally:
            if not self._stop.is_set():
                self._exited()   # died on its own: the agent restarts it after a backoff

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"{self.key[0]}-{self.key[1]}",
                                        daemon=True)
        self._thread.start()

    def interrupt(self) -> None:
        """End the body's current wait (after `_stop` is set); a body that sleeps until an
        event says how. Nothing by default."""

    def stop(self, timeout_secs: float) -> bool:
        self._stop.set()
        self.interrupt()
        if self._thread is not None:
            self._thread.join(max(0.0, timeout_secs))
            return not self._thread.is_alive()
        return True

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class ForwardComponent(_Threaded):
    def __init__(self, spec: ForwardSpec, ctx: BuildContext) -> None:
        super().__init__(spec.key, ctx.exited)
        from opsagent.pipelines.forward import build

        self.spec: Spec = spec
        # The pipeline runs with a drain that fits the agent's deadline; the spec (what a
        # reload compares) keeps the configured value.
        run_cfg = dataclasses.replace(spec.section, drain_timeout_secs=forward_drain_secs(
            spec.section.drain_timeout_secs, ctx.drain_deadline_secs))
        self.pipeline = build(run_cfg, state_dir=spec.state_dir,
                              static_fields=dict(spec.static_fields), clock=ctx.clock,
                              registry=ctx.registry)

    def body(self, stop: threading.Event) -> None:
        self.pipeline.run(stop)

    def interrupt(self) -> None:
        self.pipeline.wake()  # an idle pipeline sleeps until a file event otherwise

    def pending_by_file(self) -> Mapping[tuple[int, int], int]:
        """Bytes of each tailed file not yet delivered (rotation must not destroy them)."""
        return self.pipeline.pending_by_file()


class ProfileComponent:
    def __init__(self, spec: ProfileSpec, ctx: BuildContext) -> None:
        from opsagent.pipelines.profile import ProfilePipeline
        from opsagent.state.checkpoints import CheckpointStore

        self.key = spec.key
        self.spec: Spec = spec
        self.failed: BaseException | None = None   # its loop logs and retries; never dies
        cfg = spec.section
        store = CheckpointStore(spec.state_dir, f"profile-{cfg.name}", registry=ctx.registry)
        self.pipeline = ProfilePipeline(cfg, clock=ctx.clock, registry=ctx.registry,
                                        checkpoints=store,
                                        static_fields=dict(spec.static_fields))

    def start(self) -> None:
        self.pipeline.start(thread=True)

    def stop(self, timeout_secs: float) -> bool:
        # Flushes every open interval and closes the sinks, within the deadline.
        return self.pipeline.stop(timeout_secs)

    def alive(self) -> bool:
        return self.pipeline.alive()


class RotateComponent(_Threaded):
    def __init__(self, spec: RotateSpec, ctx: BuildContext) -> None:
        super().__init__(spec.key, ctx.exited)
        from opsagent.rotation.service import RotationService

        self.spec: Spec = spec
        self.events: queue.Queue[str] = queue.Queue()
        self.service = RotationService(spec.section, state_dir=spec.state_dir, clock=ctx.clock,
                                       metrics=ctx.rotation_metrics,
                                       undelivered=ctx.undelivered)

    def body(self, stop: threading.Event) -> None:
        # The service's loop runs its own inotify watcher on exactly the directories the
        # policy matched (file events make a pass follow within min_interval_secs; the
        # periodic rescan is the backstop).
        self.service.run(stop, events=self.events)

    def interrupt(self) -> None:
        from opsagent.rotation.loop import WAKE

        self.events.put(WAKE)  # the idle loop sleeps until its next pass otherwise


class CronComponent(_Threaded):
    def __init__(self, spec: CronSpec, ctx: BuildContext) -> None:
        super().__init__(spec.key, ctx.exited)
        from gorun.app import GorunApp, GorunOptions

        self.spec: Spec = spec
        self.app = GorunApp(GorunOptions(paths=tuple(spec.section.crontabs),
                                         system=spec.section.system,
                                         grace_secs=spec.grace_secs),
                            registry=ctx.registry, metrics=ctx.cron_metrics,
                            reaper=ctx.reaper)

    def body(self, stop: threading.Event) -> None:
        self.app.run()

    def reconfigure(self, spec: Spec) -> None:
        """A changed [cron] section, applied crontab by crontab (docs/cron.md "Reload"): the
        scheduler keeps running, so running jobs are not killed and @reboot does not re-run."""
        if not isinstance(spec, CronSpec):
            raise TypeError(f"cron component given a {type(spec).__name__}")
        self.app.reconfigure(tuple(spec.section.crontabs), system=spec.section.system,
                             grace_secs=spec.grace_secs)
        self.spec = spec

    def interrupt(self) -> None:
        # After `_stop` is set: the thread's end is then not reported as a failure.
        self.app.stop()
