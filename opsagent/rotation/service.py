"""One rotation policy at work: discover its directories, snapshot, plan, execute, record.

`run_pass` is one pass (the one-shot mode and the tests use it); `run` is the continuous mode:
watchdog events mark directories dirty and a pass follows within `min_interval_secs`; a periodic
rescan is the backstop for inotify overflows and drives time-based rotation.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import re
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry

from opsagent.clock import Clock
from opsagent.rotation import safefs
from opsagent.rotation.config import RotateConfig
from opsagent.rotation.executor import Executor, Outcome, snapshot
from opsagent.rotation.metrics import RotationMetrics
from opsagent.rotation.policy import DirSnapshot, Plan, plan
from opsagent.rotation.state import RotationState

log = logging.getLogger("opsagent.rotation")


@dataclasses.dataclass(frozen=True)
class PassResult:
    plan: Plan
    outcomes: tuple[Outcome, ...]


class RotationService:
    def __init__(
        self,
        cfg: RotateConfig,
        *,
        state_dir: str,
        clock: Clock,
        metrics: RotationMetrics | None = None,
        registry: CollectorRegistry | None = None,
        executor: Executor | None = None,
        undelivered: Callable[[], Mapping[str, int]] = dict,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.metrics = metrics or RotationMetrics(registry or CollectorRegistry())
        self.executor = executor or Executor(
            compress_level=cfg.compress_level,
            post_rotate_argv=cfg.post_rotate_argv,
            post_rotate_timeout_secs=cfg.post_rotate_timeout_secs,
        )
        self.undelivered = undelivered
        self.workers = cfg.compress_workers or os.cpu_count() or 1
        self.state = RotationState(state_dir, cfg.name)
        self.state.load()
        self._pod = re.compile(cfg.pod_pattern) if cfg.quota_scope == "pod" else None

    def group(self, directory: str) -> str:
        if self._pod is not None:
            m = self._pod.search(directory + "/")
            if m and m["pod"]:
                return f"pod:{m['pod']}"
        return directory

    def run_pass(self, *, dry_run: bool = False, only: set[str] | None = None) -> PassResult:
        """One pass over the policy's directories (or only the quota groups of `only` dirs)."""
        fds: dict[str, int] = {}
        try:
            for pattern in self.cfg.directories:
                for path, fd in safefs.open_dirs(pattern):
                    if path in fds:
                        os.close(fd)
                    else:
                        fds[path] = fd
            if only is not None:
                wanted = {self.group(d) for d in only}
                for path in [p for p in fds if self.group(p) not in wanted]:
                    os.close(fds.pop(path))
            snaps = [snapshot(p, fd, self.cfg.include, self.cfg.exclude) for p, fd in fds.items()]
            now = self.clock.time()
            self._note_first_seen(snaps, now)
            the_plan = plan(snaps, self.cfg, now, last_rotated=self.state.times,
                            undelivered=self.undelivered(),
                            group_of={p: self.group(p) for p in fds})
            for _path, reason in the_plan.skipped:
                self.metrics.refused.labels(self.cfg.name, reason).inc()
            if dry_run:
                return PassResult(the_plan, ())
            outcomes = tuple(self._execute(fds, the_plan, now))
            self._record(the_plan)
            self.state.save()
            return PassResult(the_plan, outcomes)
        finally:
            for fd in fds.values():
                os.close(fd)

    def run_until_stable(self, *, max_passes: int = 4) -> list[PassResult]:
        """Passes until nothing is left to do (compression frees space only once done)."""
        results = []
        for _ in range(max_passes):
            r = self.run_pass()
            results.append(r)
            if not any(o.status == "done" for o in r.outcomes):
                break
        return results

    def _note_first_seen(self, snaps: list[DirSnapshot], now: float) -> None:
        if not self.cfg.rotate_every:
            return
        from opsagent.rotation.naming import classify

        self.state.seen({
            os.path.join(s.path, e.name): now for s in snaps for e in s.entries
            if (r := classify(e.name, self.cfg.include, self.cfg.exclude)) and r.kind == "active"
        })

    def _execute(self, fds: Mapping[str, int], the_plan: Plan, now: float) -> list[Outcome]:
        # Compressions touch distinct files: they run together in a pool (zstd drops the GIL);
        # everything else runs in plan order.
        compressions = [a for a in the_plan.actions if a.kind == "compress"]
        done: dict[int, Outcome] = {}
        if len(compressions) > 1 and self.workers > 1:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="zstd") as pool:
                futures = {id(a): pool.submit(self.executor.execute, fds[a.directory], a)
                           for a in compressions}
                done = {k: f.result() for k, f in futures.items()}
        return [self._report(done.get(id(a)) or self.executor.execute(fds[a.directory], a), now)
                for a in the_plan.actions]

    def _report(self, out: Outcome, now: float) -> Outcome:
        m, name, action = self.metrics, self.cfg.name, out.action
        fields = {"component": "rotation", "policy": name, "action": action.kind,
                  "file": os.path.join(action.directory, action.name),
                  "reason": action.reason, "status": out.status}
        if out.status == "done":
            if action.kind == "rotate":
                m.rotations.labels(name, action.method).inc()
                self.state.rotated(os.path.join(action.directory, action.name), now)
            elif action.kind == "compress":
                m.compressions.labels(name).inc()
                m.compress_in.labels(name).inc(out.bytes_in)
                m.compress_out.labels(name).inc(out.bytes_out)
            elif action.kind == "delete":
                m.deletions.labels(name, _deletion_rule(action.reason)).inc()
            elif action.kind == "truncate":
                m.truncations.labels(name).inc()
            if action.undelivered_bytes:
                m.forced_undelivered.labels(name).inc(action.undelivered_bytes)
                log.error("hard quota forced action on undelivered data",
                          extra={**fields, "undelivered_bytes": action.undelivered_bytes})
            level = logging.WARNING if action.kind == "truncate" else logging.INFO
            log.log(level, "rotation action", extra=fields)
        elif out.status == "refused":
            m.refused.labels(name, out.detail).inc()
            log.warning("refused unsafe file", extra={**fields, "error": out.detail})
        elif out.status == "failed":
            m.errors.labels(name, action.kind).inc()
            log.error("rotation action failed", extra={**fields, "error": out.detail})
        return out

    def _record(self, the_plan: Plan) -> None:
        name = self.cfg.name
        for group, used in the_plan.usage.items():
            self.metrics.usage.labels(name, group).set(used)
        for b in the_plan.breaches:
            self.metrics.breaches.labels(name, b.limit).inc()
            log.error("quota still exceeded after the pass",
                      extra={"component": "rotation", "policy": name, "group": b.group,
                             "limit": b.limit, "usage_bytes": b.usage,
                             "limit_bytes": b.limit_bytes})

    # -- continuous mode --------------------------------------------------------------------

    def run(self, stop: threading.Event, *, events: queue.Queue[str] | None = None) -> None:
        """Passes on events (directory paths put on `events`) and every rescan interval."""
        events = events or queue.Queue()
        next_full = self.clock.monotonic()
        last_pass = -1e18
        while not stop.is_set():
            now = self.clock.monotonic()
            if now >= next_full:
                self._safe_pass(None)
                last_pass = next_full = self.clock.monotonic()
                next_full += self.cfg.rescan_interval_secs
                continue
            try:
                first = events.get(timeout=min(next_full - now, 1.0))
            except queue.Empty:
                continue
            dirty = {first}
            wait = self.cfg.min_interval_secs - (self.clock.monotonic() - last_pass)
            if wait > 0:
                stop.wait(wait)
            while True:
                try:
                    dirty.add(events.get_nowait())
                except queue.Empty:
                    break
            self._safe_pass(dirty)
            last_pass = self.clock.monotonic()

    def _safe_pass(self, only: set[str] | None) -> None:
        try:
            self.run_pass(only=only)
            self.metrics.passes.labels(self.cfg.name).inc()
        except OSError as e:
            self.metrics.errors.labels(self.cfg.name, "pass").inc()
            log.error("rotation pass failed", extra={"component": "rotation",
                                                     "policy": self.cfg.name, "error": str(e)})


def _deletion_rule(reason: str) -> str:
    """A bounded label for why an archive was deleted."""
    if reason.startswith("quota"):
        return "quota"
    if reason.startswith("older"):
        return "max_age"
    return "keep"
