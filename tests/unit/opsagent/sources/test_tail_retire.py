"""Pure decisions: when a deleted / renamed-out file is done, and the deleted-files budget."""

from __future__ import annotations

import dataclasses

import pytest

from opsagent.sources.tail.config import TailConfig
from opsagent.sources.tail.retire import delivered, finished_reading, plan

CFG = TailConfig(include=("/x/*.log",), max_open_deleted_files=2, deleted_file_max_secs=100.0,
                 rotated_file_idle_secs=10.0)


@dataclasses.dataclass
class F:
    fd: int = 3
    pos: int = 10
    size: int = 10
    acked: int = 10
    emitted: int = 10
    ready_lines: int = 0
    at_eof: bool = True
    last_growth: float = 0.0
    deleted_at: float | None = None
    rotated_out: bool = False


@pytest.mark.parametrize(
    ("f", "now", "expected"),
    [
        (F(), 50.0, False),  # a normal file in the globs is never finished
        (F(deleted_at=1.0), 1.0, True),
        (F(deleted_at=1.0, at_eof=False), 1.0, False),
        (F(rotated_out=True), 9.9, False),
        (F(rotated_out=True), 10.0, True),
        (F(rotated_out=True, fd=-1), 50.0, False),
    ],
    ids=["in-globs", "deleted-at-eof", "deleted-unread", "renamed-idle-short",
         "renamed-idle-long", "closed"],
)
def test_finished_reading(f: F, now: float, expected: bool) -> None:
    assert finished_reading(f, now, CFG) is expected


def test_delivered() -> None:
    assert delivered(F())
    assert not delivered(F(acked=5))
    assert not delivered(F(ready_lines=1))


@pytest.mark.parametrize(
    ("files", "flushed", "now", "done", "abandon"),
    [
        ([F(deleted_at=1.0)], {0}, 2.0, [0], []),
        ([F(deleted_at=1.0, acked=5)], {0}, 2.0, [], []),
        ([F(deleted_at=1.0, acked=5), F(deleted_at=2.0, acked=5), F(deleted_at=3.0, acked=5)],
         set(), 4.0, [], [0]),
        ([F(deleted_at=1.0, acked=5), F(deleted_at=50.0, acked=5)], set(), 101.5, [], [0]),
        ([F(fd=-1, acked=5)], set(), 0.0, [], []),
        ([F(fd=-1)], set(), 0.0, [0], []),
        ([F(rotated_out=True)], {0}, 20.0, [0], []),
        ([F()], set(), 20.0, [], []),
    ],
    ids=["deleted-done", "deleted-unacked", "over-count-oldest", "over-age", "abandoned-unacked",
         "abandoned-delivered", "renamed-done", "normal-file"],
)
def test_plan(files: list[F], flushed: set[int], now: float, done: list[int],
              abandon: list[int]) -> None:
    flushed_ids = {id(files[i]) for i in flushed}
    got_done, got_abandon = plan(files, now, CFG, flushed_ids)
    assert [files.index(f) for f in got_done] == done
    assert [files.index(f) for f in got_abandon] == abandon
