from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import prometheus_client

from opsagent.clock import FakeClock
from opsagent.config.loader import from_dict
from opsagent.pipelines.profile import ProfilePipeline
from opsagent.pipelines.profile_config import ProfileConfig
from opsagent.samples import Interval
from opsagent.sources.tail import Batch, FileKey, Record
from opsagent.state.checkpoints import decode

KEY = FileKey(1, 2, "f")


class FakeSource:
    def __init__(self) -> None:
        self.pending: list[Batch] = []
        self.partial: list[Record] = []
        self.started = self.stopped = False
        self.idle_max: list[float] = []   # per poll: how long the pipeline let it sleep
        self.woken = 0

    def start(self) -> None:
        self.started = True

    def poll_batches(self, max_lines: int = 10_000, timeout: float = 0.5, *,
                     idle_max: float = 0.0) -> list[Batch]:
        self.idle_max.append(idle_max)
        out, self.pending = self.pending, []
        return out

    def wake(self) -> None:
        self.woken += 1

    def flush_partial(self) -> list[Record]:
        out, self.partial = self.partial, []
        return out

    def stop(self) -> None:
        self.stopped = True

    def feed(self, *lines: bytes, cut: tuple[int, ...] = ()) -> None:
        self.pending.append(Batch(KEY, "/l/a.log", 0, 0, list(lines), cut, {"pod": "p"}))


class FakeSink:
    def __init__(self) -> None:
        self.sent: list[Interval] = []
        self.ticks = 0
        self.started = self.closed = False
        self.backlog = False

    def start(self) -> None:
        self.started = True

    def send(self, interval: Interval) -> None:
        self.sent.append(interval)

    def tick(self) -> None:
        self.ticks += 1

    def busy(self) -> bool:
        return self.backlog

    def close(self) -> None:
        self.closed = True


def cfg(**extra: object) -> ProfileConfig:
    return from_dict(ProfileConfig, {
        "name": "t", "format": "delimited", "fields": ["iface", "ms"], "latency_field": "ms",
        "labels": ["iface", "pod"], "interval_secs": 10, "late_secs": 2,
        "tail": {"include": ["/l/*.log"], "max_line_bytes": 64}, **extra})


def requests(iv: Interval) -> dict[tuple[tuple[str, str], ...], int | float]:
    return {s.labels: s.value for s in iv.samples if s.name == "requests"}


def test_intervals_are_sent_after_late_secs_on_the_injected_clock() -> None:
    clock = FakeClock(wall=1000.0)
    src, sink = FakeSource(), FakeSink()
    p = ProfilePipeline(cfg(), clock=clock, registry=prometheus_client.CollectorRegistry(),
                        source=src, sinks=[sink])
    p.start(thread=False)
    assert src.started and sink.started
    src.feed(b"a|1", b"a|2", b"b|3")
    p.run_once()
    clock.advance(10.0)  # 1010: [1000, 1010) ended, but late_secs=2 not yet passed
    src.feed(b"a|4")
    p.run_once()
    assert sink.sent == []
    clock.advance(2.0)
    p.run_once()
    [iv] = sink.sent
    assert iv.start == 1000
    assert requests(iv) == {(("iface", "a"), ("pod", "p")): 2, (("iface", "b"), ("pod", "p")): 1}
    assert sink.ticks == 3


def test_an_idle_poll_sleeps_until_the_next_interval_is_due() -> None:
    """Idle cost (issue 12): with nothing open the poll may sleep without limit; with an open
    interval until late_secs after its end; with a sink backlog only poll_timeout."""
    clock = FakeClock(wall=1000.0)
    src, sink = FakeSource(), FakeSink()
    p = ProfilePipeline(cfg(), clock=clock, registry=prometheus_client.CollectorRegistry(),
                        source=src, sinks=[sink])
    p.start(thread=False)
    p.run_once()                       # nothing read yet
    src.feed(b"a|1")
    p.run_once()                       # opens [1000, 1010)
    clock.advance(3.0)
    p.run_once()                       # due at 1010 + late_secs 2 = 1012: 9 s from 1003
    sink.backlog = True
    p.run_once()
    sink.backlog = False
    clock.advance(20.0)
    p.run_once()                       # 1023: overdue, then sent
    p.run_once()
    assert src.idle_max == [math.inf, math.inf, 9.0, 0.0, 0.0, math.inf]
    assert len(sink.sent) == 1
    p.stop()
    assert src.woken == 1              # stop ends a sleeping poll


def test_only_the_cut_lines_are_dropped_not_whole_lines_of_exactly_the_limit() -> None:
    clock = FakeClock(wall=1000.0)
    src, sink = FakeSource(), FakeSink()
    p = ProfilePipeline(cfg(), clock=clock, registry=prometheus_client.CollectorRegistry(),
                        source=src, sinks=[sink])
    p.start(thread=False)
    exact = b"e" * 62 + b"|1"  # 64 bytes = max_line_bytes: whole, parses
    src.feed(exact, b"f" * 62 + b"|9", b"a|1", cut=(1,))  # the second one was cut there
    p.run_once()
    p.stop()
    [iv] = sink.sent
    assert requests(iv) == {(("iface", "e" * 62), ("pod", "p")): 1,
                            (("iface", "a"), ("pod", "p")): 1}
    unparsed = {s.labels: s.value for s in iv.samples if s.name == "unparsed"}
    assert unparsed == {(("reason", "truncated"),): 1}


def test_stop_flushes_open_intervals_partial_lines_and_closes() -> None:
    clock = FakeClock(wall=1000.0)
    src, sink = FakeSource(), FakeSink()
    p = ProfilePipeline(cfg(), clock=clock, registry=prometheus_client.CollectorRegistry(),
                        source=src, sinks=[sink])
    p.start(thread=False)
    src.feed(b"a|1", b"x" * 64, cut=(1,))
    p.run_once()
    src.partial = [Record(KEY, "/l/a.log", 0, 3, b"c|9", False, {"pod": "p"})]
    p.stop()
    assert src.stopped and sink.closed
    [iv] = sink.sent
    assert requests(iv) == {(("iface", "a"), ("pod", "p")): 1, (("iface", "c"), ("pod", "p")): 1}
    unparsed = {s.labels: s.value for s in iv.samples if s.name == "unparsed"}
    assert unparsed == {(("reason", "truncated"),): 1}


def test_threaded_start_stop() -> None:
    clock = FakeClock(wall=1000.0)
    src, sink = FakeSource(), FakeSink()
    src.feed(b"a|1")
    p = ProfilePipeline(cfg(), clock=clock, registry=prometheus_client.CollectorRegistry(),
                        source=src, sinks=[sink], poll_timeout_secs=0.01)
    p.start()
    p.stop()
    assert [requests(iv) for iv in sink.sent] == [{(("iface", "a"), ("pod", "p")): 1}]


def test_profile_run_tails_sends_and_flushes_on_sigterm(tmp_path: Path) -> None:
    recv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    recv.bind(("127.0.0.1", 0))
    recv.settimeout(30)
    # `profile run` is the agent, which refuses a state_dir inside a tailed tree.
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "access.log"
    log.write_bytes(b"a|5\na|7\n")
    conf = tmp_path / "c.toml"
    conf.write_text(f"""
state_dir = "{tmp_path}/state"
[[profile]]
name = "t"
format = "delimited"
fields = ["iface", "ms"]
latency_field = "ms"
labels = ["iface"]
interval_secs = 3600
[profile.tail]
include = ["{tmp_path}/logs/*.log"]
checkpoint_interval_secs = 0.05
[profile.statsd]
port = {recv.getsockname()[1]}
""")
    state_file = tmp_path / "state" / "profile-t.json"

    def read_to_end() -> bool:  # the saved read position reached the end of the log
        try:
            return [cp.offset for cp in decode(state_file.read_bytes()).values()] == [8]
        except (OSError, ValueError):
            return False

    proc = subprocess.Popen([sys.executable, "-m", "opsagent.cli", "profile", "run",
                             "--config", str(conf)], stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stderr is not None
        # Wait until the pipeline runs (it logs once started), then ask it to stop.
        deadline = time.monotonic() + 60  # a fresh interpreter, maybe on a busy machine
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if b"agent started" in line or not line:
                break
        while time.monotonic() < deadline and not read_to_end():
            time.sleep(0.02)
        assert read_to_end(), "the pipeline did not read the log"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        data = recv.recv(65535).decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        recv.close()
    assert "profile_t_requests#iface=a:2|c" in data.split("\n")


def test_a_failing_iteration_does_not_kill_the_pipeline_thread() -> None:
    clock = FakeClock(wall=1000.0)

    class Flaky(FakeSource):
        calls = 0

        def poll_batches(self, max_lines: int = 10_000, timeout: float = 0.5, *,
                         idle_max: float = 0.0) -> list[Batch]:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise OSError("disk on fire")
            return super().poll_batches(max_lines, timeout)

    src, sink = Flaky(), FakeSink()
    src.feed(b"a|1")
    p = ProfilePipeline(cfg(), clock=clock, registry=prometheus_client.CollectorRegistry(),
                        source=src, sinks=[sink], poll_timeout_secs=0.01,
                        error_backoff_secs=0.0)
    p.start()
    deadline = time.monotonic() + 60
    while Flaky.calls < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
    p.stop()
    assert Flaky.calls >= 3
    assert [requests(iv) for iv in sink.sent] == [{(("iface", "a"), ("pod", "p")): 1}]


def real_pipeline(tmp_path: Path, clock: FakeClock, sink: FakeSink) -> ProfilePipeline:
    from opsagent.state.checkpoints import CheckpointStore

    reg = prometheus_client.CollectorRegistry()
    c = cfg(tail={"include": [f"{tmp_path}/*.log"], "max_line_bytes": 64})
    return ProfilePipeline(c, clock=clock, registry=reg, sinks=[sink], poll_timeout_secs=0,
                           checkpoints=CheckpointStore(str(tmp_path / "state"), "profile-t",
                                                       registry=reg))


def samples(sink: FakeSink, name: str) -> dict[tuple[tuple[str, str], ...], int | float]:
    out: dict[tuple[tuple[str, str], ...], int | float] = {}
    for iv in sink.sent:
        for s in iv.samples:
            if s.name == name:
                out[s.labels] = out.get(s.labels, 0) + s.value
    return out


def test_a_line_written_in_two_pieces_long_apart_counts_once(tmp_path: Path) -> None:
    # Issue 10, defect 3: "b|4" then, 6 s later (past partial_line_timeout_secs), "2\n".
    log = tmp_path / "a.log"
    log.write_bytes(b"a|1\nb|4")
    clock = FakeClock(wall=1000.0)
    sink = FakeSink()
    p = real_pipeline(tmp_path, clock, sink)
    p.start(thread=False)
    p.run_once()
    for _ in range(3):
        clock.advance(3.0)
        p.run_once()
    with open(log, "ab") as f:
        f.write(b"2\n")
    p.run_once()
    p.stop()
    assert samples(sink, "requests") == {(("iface", "a"), ("pod", "")): 1,
                                         (("iface", "b"), ("pod", "")): 1}
    assert samples(sink, "latency_sum")[(("iface", "b"), ("pod", ""))] == 42
    assert samples(sink, "unparsed") == {}


def test_a_line_cut_by_a_shutdown_counts_once_in_the_next_run(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"a|1\nb|4")
    clock = FakeClock(wall=1000.0)
    sink = FakeSink()
    p = real_pipeline(tmp_path, clock, sink)
    p.start(thread=False)
    p.run_once()
    p.stop()  # SIGTERM while "b|4" waits for its newline
    assert samples(sink, "requests") == {(("iface", "a"), ("pod", "")): 1}
    with open(log, "ab") as f:
        f.write(b"2\n")
    sink2 = FakeSink()
    p2 = real_pipeline(tmp_path, clock, sink2)
    p2.start(thread=False)
    p2.run_once()
    p2.stop()
    assert samples(sink2, "requests") == {(("iface", "b"), ("pod", "")): 1}
    assert samples(sink2, "latency_sum")[(("iface", "b"), ("pod", ""))] == 42
    assert samples(sink2, "unparsed") == {}


class StuckSource(FakeSource):
    """A read that does not return until released (a hung filesystem)."""

    def __init__(self) -> None:
        super().__init__()
        import threading

        self.release = threading.Event()
        self.entered = threading.Event()

    def poll_batches(self, max_lines: int = 10_000, timeout: float = 0.5, *,
                     idle_max: float = 0.0) -> list[Batch]:
        self.entered.set()
        self.release.wait(30.0)
        return super().poll_batches(max_lines, timeout)


def test_stop_honours_its_timeout_and_flushes_once_the_thread_ends() -> None:
    clock = FakeClock(wall=1000.0)
    src, sink = StuckSource(), FakeSink()
    p = ProfilePipeline(cfg(), clock=clock, registry=prometheus_client.CollectorRegistry(),
                        source=src, sinks=[sink])
    assert not p.alive()
    p.start(thread=True)
    assert p.alive()
    assert src.entered.wait(10.0)
    src.feed(b"a|1")
    assert p.stop(0.05) is False          # the read is stuck: gives up instead of hanging
    assert p.alive() and not sink.closed and not src.stopped
    src.release.set()
    assert p.stop(10.0) is True           # the thread ended: everything flushed and closed
    assert not p.alive() and sink.closed and src.stopped
    assert [requests(iv) for iv in sink.sent] == [{(("iface", "a"), ("pod", "p")): 1}]
    assert p.stop(1.0) is True            # again: nothing is sent twice
    assert len(sink.sent) == 1
