"""The agent's jobs behind one small interface, so the app can start, stop and swap them alike.

A component is built from its config section, started on its own thread(s), and stopped with a
deadline. The wrapped objects (ForwardPipeline, ProfilePipeline, RotationService, GorunApp) know
nothing of the agent; these adapters are the only place that knows how each one runs and drains.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import prometheus_client

from opsagent.clock import Clock
from opsagent.rotation.service import Undelivered

log = logging.getLogger("opsagent.app")


class Component(Protocol):
    key: tuple[str, str]          # (kind, name): what a reload compares
    config: Any                   # the frozen config section it was built from

    def start(self) -> None: ...
    def stop(self, timeout_secs: float) -> bool: ...   # True when it stopped in time
    def alive(self) -> bool: ...


class _Threaded:
    """A component whose work is one blocking `body(stop_event)` on a thread."""

    def __init__(self, key: tuple[str, str], config: Any) -> None:
        self.key = key
        self.config = config
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failed: BaseException | None = None

    def body(self, stop: threading.Event) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            self.body(self._stop)
        except Exception as e:  # reported, counted by the app; the agent keeps running
            self.failed = e
            log.error("component failed", exc_info=True,
                      extra={"component": self.key[0], "job": self.key[1], "error": str(e)})

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"{self.key[0]}-{self.key[1]}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_secs: float) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(0.0, timeout_secs))
            return not self._thread.is_alive()
        return True

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class ForwardComponent(_Threaded):
    def __init__(self, cfg: Any, *, state_dir: str, static_fields: Mapping[str, str],
                 clock: Clock, registry: prometheus_client.CollectorRegistry,
                 drain_timeout_secs: float | None = None) -> None:
        super().__init__(("forward", cfg.name), cfg)
        import dataclasses

        from opsagent.pipelines.forward import build

        run_cfg = cfg if drain_timeout_secs is None else dataclasses.replace(
            cfg, drain_timeout_secs=drain_timeout_secs)
        self.pipeline = build(run_cfg, state_dir=state_dir, static_fields=static_fields,
                              clock=clock, registry=registry)

    def body(self, stop: threading.Event) -> None:
        self.pipeline.run(stop)

    def pending_by_file(self) -> Mapping[tuple[int, int], int]:
        """Bytes of each tailed file not yet delivered (rotation must not destroy them)."""
        return self.pipeline.pending_by_file()


class ProfileComponent:
    def __init__(self, cfg: Any, *, state_dir: str, static_fields: Mapping[str, str],
                 clock: Clock, registry: prometheus_client.CollectorRegistry) -> None:
        from opsagent.pipelines.profile import ProfilePipeline
        from opsagent.state.checkpoints import CheckpointStore

        self.key = ("profile", cfg.name)
        self.config = cfg
        store = CheckpointStore(state_dir, f"profile-{cfg.name}", registry=registry)
        self.pipeline = ProfilePipeline(cfg, clock=clock, registry=registry, checkpoints=store,
                                        static_fields=static_fields)

    def start(self) -> None:
        self.pipeline.start(thread=True)

    def stop(self, timeout_secs: float) -> bool:
        self.pipeline.stop()   # flushes every open interval, closes the sinks
        return True

    def alive(self) -> bool:
        t = self.pipeline._thread
        return t is not None and t.is_alive()


class RotateComponent(_Threaded):
    def __init__(self, cfg: Any, *, state_dir: str, clock: Clock, metrics: Any,
                 undelivered: Callable[[], Undelivered]) -> None:
        super().__init__(("rotate", cfg.name), cfg)
        from opsagent.rotation.service import RotationService

        self.events: queue.Queue[str] = queue.Queue()
        self.service = RotationService(cfg, state_dir=state_dir, clock=clock, metrics=metrics,
                                       undelivered=undelivered)

    def body(self, stop: threading.Event) -> None:
        # The service's loop runs its own inotify watcher on exactly the directories the
        # policy matched (file events make a pass follow within min_interval_secs; the
        # periodic rescan is the backstop).
        self.service.run(stop, events=self.events)


class CronComponent(_Threaded):
    def __init__(self, cfg: Any, *, registry: prometheus_client.CollectorRegistry,
                 metrics: Any, reaper: Any) -> None:
        super().__init__(("cron", "crontabs"), cfg)
        from gorun.app import GorunApp, GorunOptions

        grace = 1.0 if cfg.grace_secs is None else cfg.grace_secs  # app.py resolves None
        self.app = GorunApp(GorunOptions(paths=tuple(cfg.crontabs), system=cfg.system,
                                         grace_secs=grace),
                            registry=registry, metrics=metrics, reaper=reaper)

    def body(self, stop: threading.Event) -> None:
        self.app.run()

    def reconfigure(self, cfg: Any) -> None:
        """A changed [cron] section, applied crontab by crontab (docs/cron.md "Reload"): the
        scheduler keeps running, so running jobs are not killed and @reboot does not re-run."""
        grace = 1.0 if cfg.grace_secs is None else cfg.grace_secs
        self.app.reconfigure(tuple(cfg.crontabs), system=cfg.system, grace_secs=grace)
        self.config = cfg

    def stop(self, timeout_secs: float) -> bool:
        self.app.stop()
        return super().stop(timeout_secs)
