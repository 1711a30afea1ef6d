"""Turning due runs into processes on time: prestart the jobs due within `lead_secs` behind a
gate (runner.prepare), release them at their second (runner.release), start the rest directly.

Only the decisions live here; the runner does the processes. A prestarted run that is not due
when its time comes (reload changed the job, the clock jumped) is killed at its gate, never run.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any, Protocol

from gorun.crontab import Job
from gorun.schedule import Due, Schedule


class Launcher(Protocol):
    def start(self, job: Job, *, scheduled: datetime.datetime | None = None,
              catch_up: bool = False) -> Any: ...

    def prepare(self, job: Job, at: datetime.datetime) -> Any: ...

    def release(self, at: datetime.datetime,
                items: list[tuple[Any, datetime.datetime, bool]]) -> list[Job]: ...

    def abort(self, run: Any) -> None: ...

    def running(self, job_id: str | None = None) -> int: ...

    def policy(self, job: Job) -> str: ...


def _same(a: Job, b: Job) -> bool:
    return a is b or a == b


class Prestarter:
    """`lead_secs` <= 0 disables prestarting (every run is started at its time)."""

    def __init__(self, runner: Launcher, *, lead_secs: float = 0.5, max_per_pass: int = 256,
                 started: Callable[[datetime.datetime, int], None] | None = None) -> None:
        """`started(at, n)` is called right after `n` runs due at `at` were started (for the
        start-delay metric)."""
        self.runner = runner
        self._started = started or (lambda _at, _n: None)
        self.lead = datetime.timedelta(seconds=max(0.0, lead_secs))
        self.max_per_pass = max_per_pass
        self._prepared: dict[str, tuple[datetime.datetime, Any]] = {}
        self.released = 0
        self.direct = 0

    def fire(self, due: list[Due], now: datetime.datetime) -> None:
        groups: dict[datetime.datetime, list[tuple[Any, datetime.datetime, bool]]] = {}
        direct: list[Due] = []
        for d in due:
            prepared = self._prepared.pop(d.job.id, None)
            if prepared is not None and prepared[0] == d.at and _same(prepared[1].job, d.job):
                groups.setdefault(d.at, []).append((prepared[1], d.scheduled, d.catch_up))
                continue
            if prepared is not None:
                self.runner.abort(prepared[1])
            direct.append(d)
        by_id = {d.job.id: d for d in due}
        for at, items in groups.items():
            self.released += len(items)
            dead = self.runner.release(at, items)
            self._started(at, len(items) - len(dead))
            for job in dead:
                direct.append(by_id[job.id])  # its prestarted process died: start it now
        for d in direct:
            self.direct += 1
            self.runner.start(d.job, scheduled=d.scheduled, catch_up=d.catch_up)
            self._started(d.at, 1)
        for jid, (at, run) in list(self._prepared.items()):
            if at <= now:  # its time came and it was not due: reload or clock jump
                del self._prepared[jid]
                self.runner.abort(run)

    def prestart(self, schedule: Schedule, now: datetime.datetime) -> datetime.datetime | None:
        """Prestart what is due by `now + lead`; return when to call again (None: no need)."""
        if not self.lead:
            return None
        items, beyond = schedule.upcoming(now + self.lead)
        n = 0
        for job, at in sorted(items, key=lambda item: item[1]):
            current = self._prepared.get(job.id)
            if current is not None:
                if current[0] == at and _same(current[1].job, job):
                    continue
                del self._prepared[job.id]
                self.runner.abort(current[1])
            if n >= self.max_per_pass:
                break
            if self.runner.running(job.id) and self.runner.policy(job) == "skip":
                continue  # would most likely be skipped: start it directly if it is free
            run = self.runner.prepare(job, at)
            n += 1
            if run is not None:
                self._prepared[job.id] = (at, run)
        return None if beyond is None else beyond - self.lead

    def abort_all(self) -> None:
        for _, run in self._prepared.values():
            self.runner.abort(run)
        self._prepared.clear()

    def __len__(self) -> int:
        return len(self._prepared)
