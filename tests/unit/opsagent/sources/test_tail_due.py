"""When a quiet tail source must look again by itself (due.py), and how long TailSource lets an
idle poll sleep (issue 12, "Idle cost"): the table of time-based rules, then real sources on a
FakeClock, and one real wait that an inotify event ends."""

from __future__ import annotations

import dataclasses
import math
import threading

import pytest

from opsagent.sources.tail import MultilineConfig, TailConfig
from opsagent.sources.tail.discovery import Waker
from opsagent.sources.tail.due import next_due
from tests.unit.opsagent.sources.tail_helpers import Env, drain, lines

CFG = TailConfig(include=("/l/*.log",), partial_line_timeout_secs=5.0,
                 rotated_file_idle_secs=60.0, deleted_file_max_secs=3600.0)


@dataclasses.dataclass
class Joiner:
    held: bool
    at: float | None

    def due_at(self) -> float | None:
        return self.at


@dataclasses.dataclass
class F:
    fd: int = 3
    at_eof: bool = True
    ready_lines: int = 0
    last_growth: float = 100.0
    deleted_at: float | None = None
    rotated_out: bool = False
    buf: bytes = b""
    skipping: bool = False
    joiner: Joiner | None = None


@pytest.mark.parametrize(("files", "hold", "due"), [
    ([], False, None),
    ([F()], False, None),                                       # quiet live file: no rule
    ([F(fd=-1, ready_lines=0)], False, None),                   # closed, waiting for acks
    ([F(ready_lines=3)], False, 120.0),                         # lines ready: now
    ([F(at_eof=False)], False, None),                           # unread or capped: events
    ([F(buf=b"par")], False, 105.0),                            # partial line timeout
    ([F(buf=b"par")], True, None),                              # holding source waits
    ([F(skipping=True)], False, 105.0),                         # over-long line at EOF
    ([F(rotated_out=True)], False, 120.0),                      # rotated out: polled
    ([F(deleted_at=110.0)], False, 3710.0),                     # deleted file abandoned
    ([F(joiner=Joiner(True, 102.0))], False, 102.0),            # multiline group flush
    ([F(joiner=Joiner(False, None))], False, None),
    ([F(deleted_at=110.0), F(buf=b"x", last_growth=90.0)], False, 95.0),   # the earliest
], ids=["none", "quiet", "closed", "ready", "unread", "partial", "partial-held", "skipping",
        "rotated", "deleted", "multiline", "multiline-empty", "earliest"])
def test_next_due(files: list[F], hold: bool, due: float | None) -> None:
    assert next_due(files, 120.0, CFG, hold_partial=hold) == due


@pytest.fixture
def as_if_watched(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sources without an inotify thread (deterministic on the FakeClock) that count as fully
    watched, as a source whose every directory has a watch does."""
    monkeypatch.setattr(Waker, "reliable", property(lambda self: True))


@pytest.mark.usefixtures("as_if_watched")
def test_a_quiet_source_sleeps_until_its_next_rescan(env: Env) -> None:
    env.write("app.log", b"a\n")
    src = env.source(rescan_interval_secs=10.0)
    assert lines(drain(src)) == [b"a"]
    env.clock.advance(3.0)
    drain(src)
    assert src._idle_wait(0.2) == pytest.approx(7.0)        # the rescan, 10 s after start


@pytest.mark.usefixtures("as_if_watched")
def test_a_partial_line_or_unsaved_ack_brings_the_wake_up_forward(env: Env) -> None:
    env.write("app.log", b"")
    src = env.source(rescan_interval_secs=10.0, checkpoint_interval_secs=1.0)
    env.write("app.log", b"a\npart")
    env.clock.advance(0.3)
    got = drain(src, ack=False)
    assert lines(got) == [b"a"]
    # the partial line is due 5 s after it was read
    assert src._idle_wait(0.2) == pytest.approx(5.0)
    src.ack(got[0].key, got[0].end)
    # an acknowledged offset not saved yet: the next checkpoint save (1 s after start)
    assert src._idle_wait(0.2) == pytest.approx(0.7)


@pytest.mark.usefixtures("as_if_watched")
def test_the_wait_is_never_shorter_than_the_callers_timeout(env: Env) -> None:
    src = env.source()
    env.write("app.log", b"part")
    drain(src)
    env.clock.advance(60.0)           # every deadline passed without effect
    assert src._idle_wait(0.2) == 0.2


def test_without_a_complete_watch_a_poll_never_sleeps_beyond_its_timeout(env: Env) -> None:
    src = env.source(use_inotify=False)
    assert src._idle_wait(0.2) == 0.2
    multi = env.source(use_inotify=True, name="m",
                       multiline=MultilineConfig(pattern="^\\s", mode="continuation"))
    assert multi._idle_wait(0.2) > 0.2


def test_a_poll_sleeping_until_due_returns_the_line_a_write_brings(env: Env) -> None:
    """The real wait: nothing is due for hours (FakeClock), only the inotify event of the
    write can end it."""
    src = env.source(use_inotify=True, rescan_interval_secs=3600.0)
    env.write("app.log", b"")
    env.clock.advance(3600.0)
    drain(src)
    out: list[bytes] = []

    def poll() -> None:
        while not out:   # an earlier event may end a wait early; nothing else can
            out.extend(lines(src.poll(timeout=0.01, idle_max=math.inf)))

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    env.write("app.log", b"hello\n")
    t.join(30)
    assert out == [b"hello"]


def test_wake_ends_a_sleeping_poll(env: Env) -> None:
    src = env.source(use_inotify=True, rescan_interval_secs=3600.0)
    out: list[int] = []
    t = threading.Thread(target=lambda: out.append(len(src.poll(timeout=0.01,
                                                                idle_max=math.inf))),
                         daemon=True)
    t.start()
    src.wake()
    t.join(30)
    assert out == [0]
