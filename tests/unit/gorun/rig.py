"""A Runner wired to real processes, a fake monotonic clock and a recording log, for tests."""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from gorun.clock import FakeClock
from gorun.metrics import Metrics
from gorun.output import OutputWriter, Pump
from gorun.reaper import ChildReaper
from gorun.runner import Runner, RunnerConfig
from tests.unit.gorun.fakes import T0

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message"}


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, Any]] = []
        self.cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        item = {k: v for k, v in vars(record).items() if k not in _STD}
        item["msg"] = record.getMessage()
        item["level"] = record.levelname.lower()
        with self.cond:
            self.records.append(item)
            self.cond.notify_all()

    def wait_for(self, pred: Callable[[list[dict[str, Any]]], bool],
                 timeout: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.records):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"condition not met; records: {self.records[-20:]}")
                self.cond.wait(left)
            return list(self.records)

    def finished(self, job_id: str, run: int = 1) -> dict[str, Any]:
        def done(rs: list[dict[str, Any]]) -> bool:
            return any(r.get("job") == job_id and r.get("run") == run
                       and r["msg"] in ("job succeeded", "job failed") for r in rs)
        rs = self.wait_for(done)
        return next(r for r in rs if r.get("job") == job_id and r.get("run") == run
                    and r["msg"] in ("job succeeded", "job failed"))

    def lines(self, job_id: str, run: int = 1, stream: str = "stdout") -> list[str]:
        return [r["msg"] for r in self.records if r.get("job") == job_id
                and r.get("run") == run and r.get("stream") == stream]


class Rig:
    def __init__(self, **config: Any) -> None:
        self.clock = FakeClock(T0)
        self.recorder = Recorder()
        self.logger = logging.getLogger(f"test.gorun.{uuid.uuid4().hex}")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self.recorder)
        self.stdout = io.BytesIO()
        self.stderr = io.BytesIO()
        self.writer = OutputWriter(self.logger, stdout=self.stdout, stderr=self.stderr,
                                   max_pending_bytes=config.pop("max_pending_bytes", 4 << 20))
        self.pump = Pump()
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.finished_count = 0
        self.runner = Runner(RunnerConfig(**config), reaper=ChildReaper(), clock=self.clock,
                             writer=self.writer, pump=self.pump, metrics=self.metrics,
                             on_finished=self._on_finished, base_env={"BASE": "base",
                                                                      "PATH": "/usr/bin:/bin"})

    def _on_finished(self) -> None:
        self.finished_count += 1

    def finished(self, job_id: str, run: int = 1, timeout: float = 60.0) -> dict[str, Any]:
        """The end record of run `run` of `job_id`, once the runner is done with that run.

        The end record is queued to the writer thread before the runner updates its metrics
        and forgets the run, then calls on_finished: wait for every end record seen so far to
        have reached on_finished, so metrics and `running()` are settled."""
        end = self.recorder.finished(job_id, run)
        ends = sum(r["msg"] in ("job succeeded", "job failed") for r in list(self.recorder.records))
        deadline = time.monotonic() + timeout
        while self.finished_count < ends:
            assert time.monotonic() < deadline, f"{ends - self.finished_count} runs not settled"
            time.sleep(0.01)
        return end

    def metric(self, name: str, job: str) -> float:
        value = self.registry.get_sample_value(name, {"job": job})
        return 0.0 if value is None else value

    def close(self) -> None:
        import signal
        self.runner.signal_all(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.runner.running() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.pump.stop()
        self.writer.close()
