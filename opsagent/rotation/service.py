"""One rotation policy at work: discover its directories, snapshot, plan, execute, record.

`run_pass` is one pass (the one-shot mode and the tests use it); `run` is the continuous mode
(loop.py): inotify events (watch.py) mark directories dirty and a pass follows within
`min_interval_secs`; a periodic rescan is the backstop for lost events and drives time-based
rotation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import logging
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry

from opsagent.clock import Clock
from opsagent.rotation import loop, safefs
from opsagent.rotation.config import RotateConfig
from opsagent.rotation.executor import GROWING, Executor, Outcome, snapshot
from opsagent.rotation.metrics import RotationMetrics, rotation_metrics
from opsagent.rotation.naming import classify
from opsagent.rotation.policy import Action, DirSnapshot, Plan, plan
from opsagent.rotation.state import RotationState, check_state_dir

log = logging.getLogger("opsagent.rotation")

# What the forwarder has not delivered yet: bytes by path, or by (st_dev, st_ino).
Undelivered = Mapping[str, int] | Mapping[tuple[int, int], int]


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
        undelivered: Callable[[], Undelivered] = dict,
    ) -> None:
        check_state_dir(state_dir, cfg.directories)
        self.cfg = cfg
        self.clock = clock
        self.metrics = metrics or rotation_metrics(registry or CollectorRegistry())
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
        self._groups_seen: set[str] = set()
        # Archives found still growing (an app writing into a renamed log it never reopens):
        # not compressed again before the next full rescan, or every event would re-compress
        # the whole file only to throw the result away.
        self._growing: set[str] = set()
        # Per quota group, bytes the forwarders had not delivered at the last pass: archives
        # holding them are neither compressed nor deleted below the hard limit.
        self._undelivered_by_group: dict[str, int] = {}
        # The directories the last full pass matched, and those above them: what to watch.
        self.discovered: tuple[list[str], list[str]] = ([], [])

    def group(self, directory: str) -> str:
        if self._pod is not None:
            m = self._pod.search(directory + "/")
            if m and m["pod"]:
                return f"pod:{m['pod']}"
        return directory

    def run_pass(self, *, dry_run: bool = False, only: set[str] | None = None) -> PassResult:
        """One pass over the policy's directories (or only the quota groups of `only` dirs).
        Each quota group is planned and executed on its own: a failure in one (an error we did
        not foresee included) is logged and counted, and the others go on."""
        fds: dict[str, int] = {}
        uppers: set[str] = set()
        try:
            for pattern in self.cfg.directories:
                for path, fd in safefs.open_dirs(pattern, on_error=self._dir_error,
                                                 visit=uppers.add):
                    if path in fds:
                        os.close(fd)
                    else:
                        fds[path] = fd
            if only is None:
                self.discovered = (sorted(fds), sorted(uppers))
            else:
                wanted = {self.group(d) for d in only}
                for path in [p for p in fds if self.group(p) not in wanted]:
                    os.close(fds.pop(path))
            snaps: dict[str, list[DirSnapshot]] = {}
            for p, fd in fds.items():
                try:
                    snaps.setdefault(self.group(p), []).append(
                        snapshot(p, fd, self.cfg.include, self.cfg.exclude))
                except OSError as e:
                    self._dir_error(p, e)
            now = self.clock.time()
            if only is None and not dry_run:
                self._growing.clear()
            self._note_active(snaps, now, everything=only is None and not dry_run)
            undelivered = self._undelivered(snaps)
            if not dry_run and only is None:
                # Owed by a crash or a failure: retried on full passes (not on every event,
                # which could run a failing hook several times a second).
                self._run_owed_hook()
            plans: dict[str, Plan] = {}
            for group, group_snaps in snaps.items():
                with self._guard(group):
                    plans[group] = plan(group_snaps, self.cfg, now, last_rotated=self.state.times,
                                        undelivered=undelivered, hold=self._growing,
                                        group_of={s.path: group for s in group_snaps})
            outcomes: list[Outcome] = []
            if not dry_run:
                outcomes = self._execute(fds, plans, now)
            the_plan = _merge(list(plans.values()))
            for _, reason in the_plan.skipped:
                self.metrics.refused.labels(self.cfg.name, reason).inc()
            if not dry_run:
                self._record(the_plan, full=only is None)
                self.state.save()
            return PassResult(the_plan, tuple(outcomes))
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

    def _dir_error(self, path: str, e: OSError) -> None:
        self.metrics.errors.labels(self.cfg.name, "directory").inc()
        log.error("cannot read a log directory", extra={"component": "rotation",
                  "policy": self.cfg.name, "file": path, "error": str(e)})

    def _note_active(self, snaps: Mapping[str, list[DirSnapshot]], now: float, *,
                     everything: bool) -> None:
        active: set[str] = set()
        archived: set[str] = set()
        for ss in snaps.values():
            for s in ss:
                for e in s.entries:
                    r = classify(e.name, self.cfg.include, self.cfg.exclude)
                    if r is not None and r.kind == "active":
                        active.add(os.path.join(s.path, e.name))
                    elif r is not None and r.kind in ("archive", "compressed"):
                        archived.add(os.path.join(s.path, r.active))
        if self.cfg.rotate_every:
            # A first-seen time only for logs without archives: for the others the planner
            # takes the newest archive's stamp (after a lost state, "first seen now" would put
            # off a daily rotation by up to two days).
            self.state.seen(dict.fromkeys(active - archived, now))
        self.state.prune([s.path for ss in snaps.values() for s in ss], active,
                         everything=everything)

    def _undelivered(self, snaps: Mapping[str, list[DirSnapshot]]) -> dict[str, int]:
        """The forwarder's undelivered bytes by path. It may report them by (st_dev, st_ino)
        (robust against renames between its scan and ours): translated through our snapshot."""
        raw = self.undelivered()
        out: dict[str, int] = {}
        by_inode = {k: v for k, v in raw.items() if isinstance(k, tuple)}
        out.update({k: v for k, v in raw.items() if isinstance(k, str)})
        held: dict[str, int] = {}
        for group, ss in snaps.items():
            for s in ss:
                for e in s.entries:
                    path = os.path.join(s.path, e.name)
                    n = by_inode.get((s.dev, e.ino), 0)
                    if n:
                        out[path] = n
                    held[group] = held.get(group, 0) + out.get(path, 0)
        self._undelivered_by_group = held  # named in the breach log: why the quota waits
        return out

    def _run_owed_hook(self) -> None:
        if self.state.hook_pending and self.executor.post_rotate_argv:
            self._hook()

    def _hook(self) -> None:
        rc = self.executor.post_rotate()
        if rc == 0:
            self.state.set_hook_pending(False)
        else:  # owed still: retried on the next pass
            self.metrics.errors.labels(self.cfg.name, "post_rotate").inc()
            log.error("post_rotate_argv failed; retried next pass",
                      extra={"component": "rotation", "policy": self.cfg.name, "status": rc})
        self.state.save()

    def _execute(self, fds: Mapping[str, int], plans: Mapping[str, Plan],
                 now: float) -> list[Outcome]:
        # Phases, each over every quota group: recover and rotate (plan order); the post-rotate
        # hook once per pass, before any compression reads a renamed log the app may still be
        # writing; deletions and truncations (free space for the compressions' temp files);
        # then compressions, together in a pool (zstd drops the GIL; distinct files). A group
        # failing in a phase is logged and counted; the other groups go on.
        first = {g: [a for a in p.actions if a.kind in _FIRST] for g, p in plans.items()}
        if self.executor.post_rotate_argv and any(
                a.kind == "rotate" and a.method == "rename" for acts in first.values()
                for a in acts):
            self.state.set_hook_pending(True)
            self.state.save()          # durable before the first rename
        out: list[Outcome] = []
        for group, acts in first.items():
            with self._guard(group):
                out += [self._do(fds, a, now) for a in acts]
        if self.state.hook_pending and self.executor.post_rotate_argv and not self._stopping():
            self._hook()
        for group, p in plans.items():
            with self._guard(group):
                out += [self._do(fds, a, now) for a in p.actions
                        if a.kind in ("delete", "truncate")]
        compressions = [(g, a) for g, p in plans.items() for a in p.actions
                        if a.kind == "compress"]

        def compress(ga: tuple[str, Action]) -> Outcome | None:
            try:
                return self._do(fds, ga[1], now)
            except Exception as e:  # as _guard: this group only
                self._group_failed(ga[0], e)
                return None

        if len(compressions) > 1 and self.workers > 1:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="zstd") as pool:
                done = list(pool.map(compress, compressions))
        else:
            done = [compress(ga) for ga in compressions]
        return out + [o for o in done if o is not None]

    @contextlib.contextmanager
    def _guard(self, group: str) -> Iterator[None]:
        try:
            yield
        except Exception as e:  # one group's surprise must not stop the others
            self._group_failed(group, e)

    def _group_failed(self, group: str, e: Exception) -> None:
        self.metrics.errors.labels(self.cfg.name, "group").inc()
        log.error("rotation of a quota group failed", exc_info=e,
                  extra={"component": "rotation", "policy": self.cfg.name, "group": group,
                         "error": repr(e)})

    def _stopping(self) -> bool:
        return self.executor.stop.is_set()

    def _do(self, fds: Mapping[str, int], a: Action, now: float) -> Outcome:
        if self._stopping():
            return Outcome(a, "skipped", "agent stopping")
        return self._report(self.executor.execute(fds[a.directory], a), now)

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
        elif out.status == "skipped" and out.detail == GROWING:
            self._growing.add(os.path.join(action.directory, action.name))
        elif out.status == "refused":
            m.refused.labels(name, out.detail).inc()
            log.warning("refused unsafe file", extra={**fields, "error": out.detail})
        elif out.status == "failed":
            m.errors.labels(name, action.kind).inc()
            log.error("rotation action failed", extra={**fields, "error": out.detail})
        return out

    def _record(self, the_plan: Plan, *, full: bool) -> None:
        name = self.cfg.name
        for group, used in the_plan.usage.items():
            self.metrics.usage.labels(name, group).set(used)
        if full:
            # Pods come and go: drop the series of groups that are gone (bounded labels).
            for group in self._groups_seen - set(the_plan.usage):
                for metric, extra in ((self.metrics.usage, ()),
                                      (self.metrics.breaches, ("soft",)),
                                      (self.metrics.breaches, ("hard",))):
                    try:
                        metric.remove(name, group, *extra)
                    except KeyError:
                        pass
            self._groups_seen = set(the_plan.usage)
        else:
            self._groups_seen |= set(the_plan.usage)
        for b in the_plan.breaches:
            self.metrics.breaches.labels(name, b.group, b.limit).inc()
            log.error("quota still exceeded after the pass",
                      extra={"component": "rotation", "policy": name, "group": b.group,
                             "limit": b.limit, "usage_bytes": b.usage,
                             "limit_bytes": b.limit_bytes,
                             "undelivered_bytes": self._undelivered_by_group.get(b.group, 0)})

    # -- continuous mode (opsagent/rotation/loop.py) ---------------------------------------

    def run(self, stop: threading.Event, *, events: queue.Queue[str] | None = None,
            watch: bool = True) -> None:
        """Passes on events (directory paths put on `events`; with `watch`, our own inotify
        watcher puts them there) and every rescan interval, until `stop` is set; setting it
        also abandons a compression in progress at its next chunk."""
        self.executor.stop = stop
        loop.run(self, stop, events or queue.Queue(), watch=watch)

    def watches(self, directory: str) -> bool:
        """Could `directory` be one of ours? (Events from elsewhere under the trusted prefix,
        other volumes of a pod say, must not trigger passes.)"""
        return any(_glob_match(directory, p) for p in self.cfg.directories)


_FIRST = ("remove_temp", "finish_compress", "finish_rename", "rotate")


def _merge(plans: list[Plan]) -> Plan:
    usage: dict[str, int] = {}
    for p in plans:
        usage.update(p.usage)
    return Plan(tuple(a for p in plans for a in p.actions), usage,
                tuple(b for p in plans for b in p.breaches),
                tuple(s for p in plans for s in p.skipped))


def _glob_match(path: str, pattern: str) -> bool:
    parts = [p for p in path.split("/") if p]
    globs = [p for p in pattern.split("/") if p]
    return len(parts) == len(globs) and all(
        fnmatch.fnmatchcase(a, g) for a, g in zip(parts, globs, strict=True))


def _deletion_rule(reason: str) -> str:
    """A bounded label for why an archive was deleted."""
    if reason.startswith("quota"):
        return "quota"
    if reason.startswith("older"):
        return "max_age"
    return "keep"
