"""Continuous mode (RotationService.run) on real directories: a pass that raises is counted and
the loop goes on; one failing quota group does not stop the others; stop abandons a compression
in progress; events from directories that are not ours trigger nothing. Time is a FakeClock;
the waits below are for the loop's thread, bounded, and assert no durations."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from opsagent.clock import FakeClock
from opsagent.rotation.executor import Executor, Outcome
from opsagent.rotation.naming import TEMP_PREFIX, stamp_of
from opsagent.rotation.policy import Action
from opsagent.rotation.service import RotationService

from .helpers import NOW, make_service, sample

ERRORS = "opsagent_rotate_errors_total"


def _wait_for(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class _Flaky(Executor):
    """Raises an error nobody foresaw on the actions `bad` picks, the first `times` times."""

    def __init__(self, bad: Callable[[Action], bool], times: int = 1 << 30) -> None:
        super().__init__(compress_level=1)
        self.bad, self.times = bad, times

    def execute(self, dir_fd: int, action: Action) -> Outcome:
        if self.bad(action) and self.times > 0:
            self.times -= 1
            raise RuntimeError("a bug")
        return super().execute(dir_fd, action)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    a = tmp_path / "tree" / "pod-a" / "logs"
    b = tmp_path / "tree" / "pod-b" / "logs"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    return a, b


@pytest.fixture
def running() -> Iterator[Callable[[RotationService], queue.Queue[str]]]:
    started: list[tuple[threading.Thread, threading.Event]] = []

    def start(svc: RotationService) -> queue.Queue[str]:
        q: queue.Queue[str] = queue.Queue()
        stop = threading.Event()
        t = threading.Thread(target=svc.run, args=(stop,), kwargs={"events": q}, daemon=True)
        t.start()
        started.append((t, stop))
        return q

    yield start
    for t, stop in started:
        stop.set()
        t.join(20)
        assert not t.is_alive(), "run() did not return after stop"


def test_a_pass_that_raises_is_counted_and_the_loop_goes_on(
        tmp_path: Path, dirs: tuple[Path, Path],
        running: Callable[[RotationService], queue.Queue[str]]) -> None:
    a, _ = dirs
    (a / "app.log").write_bytes(b"x\n")
    reg = CollectorRegistry()
    svc = make_service(tmp_path / "tree", tmp_path / "state", registry=reg, rotate_size_bytes=1,
                       compress=False, rescan_interval_secs=3600, min_interval_secs=0)
    svc.executor = _Flaky(lambda act: True, times=1)
    q = running(svc)
    _wait_for(lambda: sample(reg, ERRORS, action="group") == 1, "the error")
    # The next pass (the one over newly watched directories, or this event's) rotates it.
    q.put(str(a))
    _wait_for(lambda: (a / f"app.log.{stamp_of(NOW)}").exists(), "the second pass")
    _wait_for(lambda: sample(reg, "opsagent_rotate_passes_total") >= 2, "the pass count")


def test_a_pass_raising_outside_any_group_is_counted_and_the_loop_goes_on(
        tmp_path: Path, dirs: tuple[Path, Path],
        running: Callable[[RotationService], queue.Queue[str]]) -> None:
    a, _ = dirs
    calls = []

    def undelivered() -> dict[str, int]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the forwarder's bug")
        return {}

    reg = CollectorRegistry()
    svc = make_service(tmp_path / "tree", tmp_path / "state", registry=reg, rotate_size_bytes=1,
                       compress=False, rescan_interval_secs=3600, min_interval_secs=0)
    svc.undelivered = undelivered
    q = running(svc)
    _wait_for(lambda: sample(reg, ERRORS, action="pass") == 1, "the error")
    (a / "app.log").write_bytes(b"x\n")
    q.put(str(a))
    _wait_for(lambda: (a / f"app.log.{stamp_of(NOW)}").exists(), "the next pass")


def test_one_failing_group_does_not_stop_the_others(tmp_path: Path,
                                                    dirs: tuple[Path, Path]) -> None:
    a, b = dirs
    (a / "app.log").write_bytes(b"x\n")
    (b / "app.log").write_bytes(b"x\n")
    reg = CollectorRegistry()
    svc = make_service(tmp_path / "tree", tmp_path / "state", registry=reg, rotate_size_bytes=1,
                       compress=False)
    svc.executor = _Flaky(lambda act: act.directory == str(a))
    svc.run_pass()
    assert (a / "app.log").exists()
    assert (b / f"app.log.{stamp_of(NOW)}").exists()
    assert sample(reg, ERRORS, action="group") == 1


def test_stop_abandons_a_compression_in_progress(tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    a, _ = dirs
    archive = a / f"app.log.{stamp_of(NOW - 60)}"
    data = os.urandom(8 << 20)
    archive.write_bytes(data)
    svc = make_service(tmp_path / "tree", tmp_path / "state", compress=True)
    stop = threading.Event()
    chunks = []

    def fault(step: str) -> None:
        if step == "compress:chunk":
            chunks.append(step)
            if len(chunks) == 2:
                stop.set()          # SIGTERM arrives just before the second chunk

    svc.executor.fault = fault
    svc.run(stop)                   # returns: no thread needed
    assert len(chunks) == 2         # the second chunk saw the stop and gave up
    assert os.listdir(a) == [archive.name] and archive.read_bytes() == data
    assert not [n for n in os.listdir(a) if n.startswith(TEMP_PREFIX)]


def test_events_from_directories_not_ours_trigger_no_pass(tmp_path: Path) -> None:
    svc = make_service(tmp_path / "tree", tmp_path / "state")
    assert svc.watches(f"{tmp_path}/tree/pod-a/logs")
    assert not svc.watches(f"{tmp_path}/tree/pod-a/data")
    assert not svc.watches(f"{tmp_path}/tree/pod-a/logs/sub")
    assert not svc.watches(f"{tmp_path}/tree")


def test_a_new_pod_directory_is_discovered_and_watched(
        tmp_path: Path, dirs: tuple[Path, Path],
        running: Callable[[RotationService], queue.Queue[str]]) -> None:
    clock = FakeClock(wall=NOW)
    svc = make_service(tmp_path / "tree", tmp_path / "state", clock, rotate_size_bytes=10,
                       compress=False, rescan_interval_secs=3600, min_interval_secs=0)
    running(svc)
    _wait_for(lambda: svc.discovered[0] != [], "the first full pass")
    new = tmp_path / "tree" / "pod-c" / "logs"
    new.mkdir(parents=True)              # the watcher asks for a rediscovery...
    clock.advance(2)                     # ...which waits out REDISCOVER_SECS
    _wait_for(lambda: str(new) in svc.discovered[0], "the rediscovery")
    archive = new / f"app.log.{stamp_of(NOW + 2)}"

    def write_and_check() -> bool:
        # An event in the new directory leads to a pass (written again until the watch, added
        # just after the pass that discovered the directory, is in place).
        if not archive.exists():
            with open(new / "app.log", "ab") as f:
                f.write(b"x" * 100)
        return archive.exists()

    _wait_for(write_and_check, "the rotation")


def test_a_write_between_the_first_pass_and_the_watch_is_not_left_to_the_rescan(
        tmp_path: Path, dirs: tuple[Path, Path],
        running: Callable[[RotationService], queue.Queue[str]]) -> None:
    # The first full pass finds the directories; their inotify watches are added after it. A
    # log written in between makes no event: the loop passes over newly watched directories
    # once more instead of leaving that log to the next rescan (an hour away here).
    a, _ = dirs
    reg = CollectorRegistry()
    svc = make_service(tmp_path / "tree", tmp_path / "state", registry=reg, rotate_size_bytes=1,
                       compress=False, rescan_interval_secs=3600, min_interval_secs=0)
    real_pass = svc.run_pass
    passes: list[set[str] | None] = []

    def run_pass(only: set[str] | None = None) -> None:
        real_pass(only=only)
        if not passes:
            (a / "app.log").write_bytes(b"x\n")  # after the pass, before the watch
        passes.append(only)

    svc.run_pass = run_pass  # type: ignore[method-assign]
    running(svc)
    # The second pass is recorded once it returns: the archive exists a moment before that.
    _wait_for(lambda: len(passes) >= 2 and (a / f"app.log.{stamp_of(NOW)}").exists(),
              "the log rotated")
    assert passes[0] is None and passes[1] is not None and str(a) in passes[1]
