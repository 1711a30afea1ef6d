"""The rotation's own inotify watcher on real directories: events in matched directories become
their paths, a directory appearing above them asks for a full pass, nothing else is watched.
Waits are bounded and only for the kernel's events; no durations are asserted."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsagent.rotation.watch import FULL, DirWatcher

from .helpers import make_service


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[DirWatcher, queue.Queue[str], Path]]:
    (tmp_path / "tree" / "pod-a" / "logs").mkdir(parents=True)
    (tmp_path / "tree" / "pod-a" / "data").mkdir()
    q: queue.Queue[str] = queue.Queue()
    w = DirWatcher(q)
    halt = threading.Event()
    t = threading.Thread(target=w.pump, args=(halt,), daemon=True)
    t.start()
    try:
        yield w, q, tmp_path
    finally:
        halt.set()
        w.interrupt()
        t.join(5)
        assert not t.is_alive(), "interrupt() did not end the pump"
        w.close()


def _drain(q: queue.Queue[str], timeout: float = 1.0) -> set[str]:
    """The first event (waited for, bounded), then whatever follows until `timeout` of quiet:
    one write's events may come in more than one read of the pump thread."""
    got: set[str] = set()
    try:
        got.add(q.get(timeout=30))    # the first event: wait for the kernel and the pump
        while True:
            got.add(q.get(timeout=timeout))
    except queue.Empty:
        return got


def test_matched_directories_and_discovery(watched: tuple[DirWatcher, queue.Queue[str], Path]
                                           ) -> None:
    w, q, tmp_path = watched
    svc = make_service(tmp_path / "tree", tmp_path / "state")
    svc.run_pass()
    logs, data = tmp_path / "tree" / "pod-a" / "logs", tmp_path / "tree" / "pod-a" / "data"
    leaves, uppers = svc.discovered
    assert leaves == [str(logs)]
    assert uppers == [str(tmp_path / "tree"), str(tmp_path / "tree" / "pod-a")]
    w.sync(leaves, uppers)
    (data / "x.log").write_bytes(b"not watched\n")          # another volume: no event...
    (logs / "app.log").write_bytes(b"hello\n")               # ...ours: its directory
    assert _drain(q) == {str(logs)}
    (tmp_path / "tree" / "pod-a" / "notes.txt").write_bytes(b"a file above: no event\n")
    (tmp_path / "tree" / "pod-b").mkdir()                    # a new pod: rediscover
    assert _drain(q) == {FULL}


def test_a_swapped_directory_is_not_followed(tmp_path: Path,
                                             watched: tuple[DirWatcher, queue.Queue[str], Path]
                                             ) -> None:
    w, q, _ = watched
    outside = tmp_path / "outside"
    outside.mkdir()
    link = tmp_path / "tree" / "pod-a" / "link"
    link.symlink_to(outside)
    w.sync([str(link)], [])
    (outside / "x").write_bytes(b"x")
    (tmp_path / "tree" / "pod-a" / "logs" / "y").write_bytes(b"y")
    w.sync([str(tmp_path / "tree" / "pod-a" / "logs")], [])
    (tmp_path / "tree" / "pod-a" / "logs" / "z").write_bytes(b"z")
    assert _drain(q) == {str(tmp_path / "tree" / "pod-a" / "logs")}


def test_a_directory_renamed_away_and_recreated_is_watched_again(
        watched: tuple[DirWatcher, queue.Queue[str], Path]) -> None:
    w, q, tmp_path = watched
    logs = tmp_path / "tree" / "pod-a" / "logs"
    w.sync([str(logs)], [])
    logs.rename(tmp_path / "tree" / "pod-a" / "logs-old")
    logs.mkdir()
    assert FULL in _drain(q)                 # the full pass that follows re-syncs...
    w.sync([str(logs)], [])
    (logs / "app.log").write_bytes(b"x\n")   # ...and the new directory is watched
    assert _drain(q) == {str(logs)}


def test_unwatchable_directories_make_the_watch_incomplete(
        watched: tuple[DirWatcher, queue.Queue[str], Path]) -> None:
    """An owner sleeping until an event must know when some directory has no watch (gone,
    or watches exhausted): writes there make no event (issue 12, "Idle cost")."""
    w, _q, tmp = watched
    logs = str(tmp / "tree" / "pod-a" / "logs")
    w.sync([logs], [])
    assert w.complete
    w.sync([logs, str(tmp / "tree" / "missing")], [])
    assert not w.complete
    w.sync([logs], [])
    assert w.complete
