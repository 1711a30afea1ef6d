"""Glob translation, scan roots, the symlink-free walk, and the safe open of found names."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

from opsagent.sources.tail.discovery import (
    Matcher,
    NotRegularFile,
    Waker,
    dir_globs,
    find_by_inode,
    glob_to_regex,
    open_beneath,
    static_root,
)


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/a/*.log", "/a/x.log", True),
        ("/a/*.log", "/a/b/x.log", False),
        ("/a/*.log", "/a/.hidden.log", True),
        ("/a/**/x.log", "/a/x.log", True),
        ("/a/**/x.log", "/a/b/c/x.log", True),
        ("/a/**/x.log", "/ab/x.log", False),
        ("/a/**", "/a/b/c", True),
        ("/a/?.log", "/a/1.log", True),
        ("/a/?.log", "/a/12.log", False),
        ("/a/[0-9].log", "/a/7.log", True),
        ("/a/[!0-9].log", "/a/7.log", False),
        ("/a/[!0-9].log", "/a/x.log", True),
        ("/a/app.log", "/a/app.log", True),
        ("/a/app.log", "/a/appXlog", False),
        ("/a/(x)+.log", "/a/(x)+.log", True),
        ("/pvc/*/*/*/app*.log", "/pvc/ns/pod/c/app-1.log", True),
    ],
)
def test_glob_to_regex(pattern: str, path: str, matches: bool) -> None:
    assert bool(re.fullmatch(glob_to_regex(pattern), path, re.S)) is matches


@pytest.mark.parametrize(
    ("pattern", "root", "depth"),
    [
        ("/var/log/*.log", "/var/log", 1),
        ("/var/log/app.log", "/var/log", 1),
        ("/pvc/*/*/x.log", "/pvc", 3),
        ("/pvc/**/x.log", "/pvc", None),
        ("/*.log", "/", 1),
    ],
)
def test_static_root(pattern: str, root: str, depth: int | None) -> None:
    assert static_root(pattern) == (root, depth)


def test_matcher_merges_roots_and_excludes() -> None:
    m = Matcher(["/a/*.log", "/a/*/*.log", "/b/**/y"], ["/a/skip*"])
    assert m.roots == {"/a": 2, "/b": None}
    assert m.matches("/a/x.log") and m.matches("/a/d/x.log")
    assert not m.matches("/a/skip.log")
    assert m.root_of("/b/c/y") == "/b" and m.root_of("/c/x") is None
    # Every include and exclude pattern matches whole paths, not only the last one.
    two = Matcher(["/a/*.log", "/b/*.log"], ["/a/x*.log", "*.tmp"])
    assert two.matches("/a/y.log") and two.matches("/b/y.log")
    assert not two.matches("/a/y.log.1.zst") and not two.matches("/b/y.log.1")
    assert two.matches("/a/xy.log.tmp") is False and not two.matches("/a/xy.log")
    assert Matcher(["/a/*.log"], ["/a/x*", "*.tmp"]).matches("/a/xy.log") is False
    by_name = Matcher(["/a/**"], ["*.gz", "tmp-?"])
    assert by_name.matches("/a/x.log")
    assert not by_name.matches("/a/b/x.log.gz") and not by_name.matches("/a/tmp-1")


def test_scan_does_not_follow_symlinked_dirs_and_respects_depth(tmp_path: Path) -> None:
    (tmp_path / "d" / "deep").mkdir(parents=True)
    (tmp_path / "a.log").write_text("")
    (tmp_path / "d" / "b.log").write_text("")
    (tmp_path / "d" / "deep" / "c.log").write_text("")
    outside = tmp_path.parent / (tmp_path.name + "-outside")
    outside.mkdir()
    (outside / "evil.log").write_text("")
    os.symlink(outside, tmp_path / "link")
    flat = Matcher([f"{tmp_path}/*/*.log"])
    assert [c.path for c in flat.scan()[0]] == [f"{tmp_path}/d/b.log"]
    deep = Matcher([f"{tmp_path}/**/*.log"])
    names = [os.path.relpath(c.path, tmp_path) for c in deep.scan()[0]]
    assert names == ["a.log", "d/b.log", "d/deep/c.log"]


def test_scan_reports_missing_root(tmp_path: Path) -> None:
    found, failed = Matcher([f"{tmp_path}/nope/*.log"]).scan()
    assert found == [] and failed == [f"{tmp_path}/nope"]


def test_open_beneath_regular_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.log").write_bytes(b"x")
    fd, st = open_beneath(str(tmp_path), str(tmp_path / "d" / "f.log"))
    try:
        assert os.read(fd, 10) == b"x" and st.st_size == 1
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind", ["fifo", "dir", "symlink", "symlinked-dir", "outside"])
def test_open_beneath_refuses(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "x.log"
    outside = tmp_path.parent / (tmp_path.name + "-o")
    outside.mkdir()
    (outside / "x.log").write_bytes(b"secret")
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "dir":
        target.mkdir()
    elif kind == "symlink":
        os.symlink(outside / "x.log", target)
    elif kind == "symlinked-dir":
        os.symlink(outside, tmp_path / "sub")
        target = tmp_path / "sub" / "x.log"
    else:
        target = outside / "x.log"
    with pytest.raises(OSError) as info:
        open_beneath(str(tmp_path), str(target))
    if kind in ("fifo", "dir"):
        assert isinstance(info.value, NotRegularFile)


def test_find_by_inode(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("")
    st = os.stat(tmp_path / "a")
    os.rename(tmp_path / "a", tmp_path / "b")
    assert find_by_inode(str(tmp_path), st.st_dev, st.st_ino) == str(tmp_path / "b")
    assert find_by_inode(str(tmp_path), st.st_dev + 1, st.st_ino) is None
    assert find_by_inode(str(tmp_path / "missing"), st.st_dev, st.st_ino) is None


@pytest.mark.parametrize(
    ("names_changed", "wake", "rescan"),
    [(True, True, True), (False, True, False)], ids=["created-renamed-deleted", "written"],
)
def test_waker_only_sets_flags(names_changed: bool, wake: bool, rescan: bool) -> None:
    w = Waker(Matcher(["/nonexistent/*.log"]))
    w.on_event("/nonexistent", names_changed)
    assert (w.wake.is_set(), w.rescan.is_set()) == (wake, rescan)


@pytest.mark.parametrize(
    ("pattern", "leaf", "uppers"),
    [
        ("/pvc/*/logs/critical*.log*", "/pvc/*/logs/", ["/pvc/", "/pvc/*/"]),
        ("/var/log/app*.log", "/var/log/", []),
        ("/var/log/app.log", "/var/log/", []),
        ("/a/**/x.log", "/a/**/", ["/a/"]),
        ("/a/**", "/a/**/", []),
    ],
    ids=["pvc-layout", "wildcard-in-name", "one-file", "double-star", "double-star-last"],
)
def test_dir_globs(pattern: str, leaf: str, uppers: list[str]) -> None:
    assert dir_globs(pattern) == (leaf, uppers)


def test_scan_walks_and_watches_only_directories_a_match_can_be_in_or_under(
        tmp_path: Path) -> None:
    # Issue 9: tenants' own directories under the glob's static prefix are not watched (a
    # recursive watch there lets them use up fs.inotify.max_user_watches).
    for d in ("p1/logs", "p1/data/deep", "p2/logs/archive", "p2/other"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "p1" / "logs" / "critical.log").write_text("")
    (tmp_path / "p1" / "data" / "critical.log").write_text("")
    m = Matcher([f"{tmp_path}/*/logs/critical*.log*"])
    assert [c.path for c in m.scan()[0]] == [f"{tmp_path}/p1/logs/critical.log"]
    leaves, uppers = m.watch_dirs
    assert leaves == [f"{tmp_path}/p1/logs", f"{tmp_path}/p2/logs"]
    assert uppers == [str(tmp_path), f"{tmp_path}/p1", f"{tmp_path}/p2"]


def _wait(flag: threading.Event) -> bool:
    return flag.wait(10)


def test_waker_watches_the_scanned_directories_with_inotify(tmp_path: Path) -> None:
    (tmp_path / "p1" / "logs").mkdir(parents=True)
    (tmp_path / "p1" / "data").mkdir()
    m = Matcher([f"{tmp_path}/*/logs/*.log"])
    m.scan()
    w = Waker(m)
    w.start()
    try:
        (tmp_path / "p1" / "data" / "x.log").write_text("tenant's own directory\n")
        (tmp_path / "p1" / "logs" / "app.log").write_text("a\n")
        assert _wait(w.rescan) and w.wake.is_set()
        w.rescan.clear()
        w.wake.clear()
        with open(tmp_path / "p1" / "logs" / "app.log", "a") as f:
            f.write("b\n")
        assert _wait(w.wake)
        (tmp_path / "p2" / "logs").mkdir(parents=True)  # a new pod: its directories too
        assert _wait(w.rescan)
    finally:
        w.stop()
