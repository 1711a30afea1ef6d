"""The race the one-link check alone loses: the log is a hard link to a file outside the tree
(two links), and the attacker removes the in-tree link right after our O_PATH open, so fstat
counts one link - the outside one. safefs.open_regular must refuse: the entry it opened through
was unlinked. The attacker's steps are injected at the exact moment (between open and fstat)
instead of raced, so each case runs once, deterministically. Runs as root on real files."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from opsagent import safeopen
from opsagent.rotation import safefs

pytestmark = pytest.mark.integration


class _AttackBeforeFstat:
    """Stands in for the os module inside opsagent.safeopen (safefs.open_regular is its
    open_regular): runs `attack` once, just before the first fstat (that is, after the O_PATH
    open), then behaves like os."""

    def __init__(self, attack: Callable[[], None]) -> None:
        self._attack: Callable[[], None] | None = attack

    def fstat(self, fd: int) -> os.stat_result:
        if self._attack is not None:
            attack, self._attack = self._attack, None
            attack()
        return os.fstat(fd)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, Path, int]]:
    logs = tmp_path / "tree" / "logs"
    logs.mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    victim = tmp_path / "outside" / "victim.log"
    victim.write_bytes(b"do not touch\n" * 100)
    fd = os.open(logs, safefs.O_DIR)
    try:
        yield logs, victim, fd
    finally:
        os.close(fd)


def _open(dir_fd: int, name: str) -> int:
    fd, _ = safefs.open_regular(dir_fd, name, os.O_RDWR, os.fstat(dir_fd).st_dev)
    return fd


def test_hard_link_removed_between_open_and_fstat_is_refused(
        tree: tuple[Path, Path, int], monkeypatch: pytest.MonkeyPatch) -> None:
    logs, victim, dir_fd = tree
    os.link(victim, logs / "app.log")
    monkeypatch.setattr(safeopen, "os", _AttackBeforeFstat(lambda: os.unlink(logs / "app.log")))
    with pytest.raises(safefs.UnsafeFile, match="unlinked"):
        _open(dir_fd, "app.log")
    assert victim.read_bytes() == b"do not touch\n" * 100 and victim.stat().st_nlink == 1


def test_hard_link_swapped_out_and_back_in_is_refused(
        tree: tuple[Path, Path, int], monkeypatch: pytest.MonkeyPatch) -> None:
    # Removed before fstat (one link counted), linked again at the same name right after: the
    # name exists again, but the entry we opened through stays unlinked for good.
    logs, victim, dir_fd = tree
    os.link(victim, logs / "app.log")

    class Toggle(_AttackBeforeFstat):
        def fstat(self, fd: int) -> os.stat_result:
            first = self._attack is not None
            st = super().fstat(fd)
            if first:
                os.link(victim, logs / "app.log")
            return st

    monkeypatch.setattr(safeopen, "os", Toggle(lambda: os.unlink(logs / "app.log")))
    with pytest.raises(safefs.UnsafeFile):
        _open(dir_fd, "app.log")
    assert victim.read_bytes() == b"do not touch\n" * 100


def test_replaced_by_a_rename_while_being_opened_is_refused(
        tree: tuple[Path, Path, int], monkeypatch: pytest.MonkeyPatch) -> None:
    logs, victim, dir_fd = tree
    os.link(victim, logs / "app.log")
    (logs / "swap.tmp").write_bytes(b"real\n")
    monkeypatch.setattr(safeopen, "os", _AttackBeforeFstat(
        lambda: os.rename(logs / "swap.tmp", logs / "app.log")))
    with pytest.raises(safefs.UnsafeFile):
        _open(dir_fd, "app.log")
    assert victim.read_bytes() == b"do not touch\n" * 100


def test_plain_files_still_open_including_a_name_ending_like_the_marker(
        tree: tuple[Path, Path, int]) -> None:
    logs, _, dir_fd = tree
    for name in ("app.log", "app.log (deleted)"):
        (logs / name).write_bytes(b"mine\n")
        fd = _open(dir_fd, name)
        try:
            assert os.pread(fd, 5, 0) == b"mine\n"
        finally:
            os.close(fd)
