"""Watching crontabs: the event filter, and real watchdog events for a rewrite and for a
Kubernetes ConfigMap-style `..data` symlink swap."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from gorun.watch import CrontabWatcher, is_relevant, watched_dirs


@pytest.mark.parametrize("etype,src,dest,expected", [
    ("modified", "/etc/cron/crontab", "", True),
    ("created", "/etc/cron/crontab", "", True),
    ("moved", "/etc/cron/..data_tmp", "/etc/cron/..data", True),
    ("deleted", "/etc/cron/..2024_01_01", "", True),
    ("closed", "/etc/cron/crontab", "", True),
    ("opened", "/etc/cron/crontab", "", False),  # our own reads
    ("closed_no_write", "/etc/cron/crontab", "", False),
    ("modified", "/etc/cron/other", "", False),
    ("moved", "/etc/cron/tmp123", "/etc/cron/crontab", True),  # editor's atomic save
])
def test_is_relevant(etype: str, src: str, dest: str, expected: bool) -> None:
    assert is_relevant(etype, src, dest, {"crontab"}) is expected


def test_watched_dirs_groups_names() -> None:
    assert watched_dirs(["/a/x", "/a/y", "/b/z"]) == {"/a": {"x", "y"}, "/b": {"z"}}


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.event = threading.Event()

    def __call__(self) -> None:
        self.n += 1
        self.event.set()


def test_real_rewrite_is_noticed(tmp_path: Path) -> None:
    tab = tmp_path / "crontab"
    tab.write_text("* * * * * true\n")
    hits = Counter()
    w = CrontabWatcher([str(tab)], hits)
    w.start()
    try:
        (tmp_path / "unrelated").write_text("x")
        tab.read_text()  # reading must not count
        tab.write_text("* * * * * false\n")
        assert hits.event.wait(20)
    finally:
        w.stop()


def test_configmap_symlink_swap_is_noticed(tmp_path: Path) -> None:
    # The layout kubelet's atomic writer makes, then its update sequence.
    (tmp_path / "..v1").mkdir()
    (tmp_path / "..v1" / "crontab").write_text("* * * * * true\n")
    os.symlink("..v1", tmp_path / "..data")
    os.symlink("..data/crontab", tmp_path / "crontab")
    hits = Counter()
    w = CrontabWatcher([str(tmp_path / "crontab")], hits)
    w.start()
    try:
        (tmp_path / "..v2").mkdir()
        (tmp_path / "..v2" / "crontab").write_text("* * * * * false\n")
        os.symlink("..v2", tmp_path / "..data_tmp")
        os.rename(tmp_path / "..data_tmp", tmp_path / "..data")
        assert hits.event.wait(20)
        assert (tmp_path / "crontab").read_text() == "* * * * * false\n"
    finally:
        w.stop()
