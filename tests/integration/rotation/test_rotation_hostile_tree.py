"""Security: every name and byte under a watched directory is attacker-controlled. Run as root in
tmp dirs; nothing outside the tree may be opened for writing, truncated, renamed or deleted."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from opsagent.rotation.naming import stamp_of
from opsagent.rotation.service import RotationService

from .helpers import NOW, assert_untouched, make_service, outside_files

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the threat model is an agent as root")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    d = tmp_path / "tree" / "pod-a" / "logs"
    d.mkdir(parents=True)
    return d


def _svc(tmp_path: Path, **kw: Any) -> RotationService:
    base: dict[str, Any] = {"rotate_size_bytes": 1, "keep": 1, "compress": True,
                            "quota_soft_bytes": 1, "quota_hard_bytes": 2}
    base.update(kw)
    return make_service(tmp_path / "tree", tmp_path / "state", **base)


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_log_symlinked_outside(tmp_path: Path, tree: Path, relative: bool) -> None:
    before = outside_files(tmp_path)
    target = tmp_path / "outside" / "secret"
    (tree / "app.log").symlink_to(os.path.relpath(target, tree) if relative else target)
    (tree / f"app.log.{stamp_of(NOW - 10)}").symlink_to(tmp_path / "outside" / "victim.log")
    result = _svc(tmp_path).run_until_stable()
    assert_untouched(before)
    assert (tree / "app.log").is_symlink()
    reasons = {r for res in result for _, r in res.plan.skipped}
    assert reasons == {"a symlink"}


def test_symlink_precreated_at_archive_and_zst_targets(tmp_path: Path, tree: Path) -> None:
    before = outside_files(tmp_path)
    (tree / "app.log").write_bytes(b"data\n" * 10)
    archive = f"app.log.{stamp_of(NOW)}"
    (tree / archive).symlink_to(tmp_path / "outside" / "secret")
    (tree / f"app.log.{stamp_of(NOW - 5)}").write_bytes(b"old\n")
    (tree / f"app.log.{stamp_of(NOW - 5)}.zst").symlink_to(tmp_path / "outside" / "victim.log")
    _svc(tmp_path, quota_soft_bytes=0, quota_hard_bytes=0, keep=5).run_until_stable()
    assert_untouched(before)
    # The rotation stepped around the symlink: the data went to a fresh archive name.
    assert (tree / archive).is_symlink() and not (tree / "app.log").exists()
    assert (tree / f"{archive}.1.zst").is_file()
    # The older archive could not be compressed onto the symlinked .zst: kept, not lost.
    assert (tree / f"app.log.{stamp_of(NOW - 5)}").read_bytes() == b"old\n"


def test_hard_link_to_outside_file_is_refused(tmp_path: Path, tree: Path) -> None:
    before = outside_files(tmp_path)
    os.link(tmp_path / "outside" / "secret", tree / "app.log")
    os.link(tmp_path / "outside" / "victim.log", tree / f"app.log.{stamp_of(NOW - 9)}")
    _svc(tmp_path).run_until_stable()
    # Same inode as outside: any write, truncate, or rename would show up here.
    assert_untouched(before)
    assert (tree / "app.log").stat().st_nlink == 2


def test_special_files_named_like_logs_are_skipped(tmp_path: Path, tree: Path) -> None:
    os.mkfifo(tree / "fifo.log")
    os.mknod(tree / "dev.log", 0o600 | stat.S_IFCHR, os.makedev(1, 3))   # like /dev/null
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tree / "sock.log"))
    (tree / "dir.log").mkdir()
    (tree / f"dir.log.{stamp_of(NOW - 99)}").mkdir()
    (tree / "real.log").write_bytes(b"x\n")
    try:
        results = _svc(tmp_path, quota_soft_bytes=0, quota_hard_bytes=0).run_until_stable()
    finally:
        s.close()
    refused = {p.rsplit("/", 1)[1] for r in results for p, _ in r.plan.skipped}
    assert {"fifo.log", "dev.log", "sock.log", "dir.log"} <= refused
    assert stat.S_ISFIFO(os.stat(tree / "fifo.log").st_mode)
    assert (tree / "dir.log").is_dir() and (tree / f"dir.log.{stamp_of(NOW - 99)}").is_dir()
    assert (tree / f"real.log.{stamp_of(NOW)}.zst").exists()


def test_sparse_terabyte_file_is_neither_compressed_nor_counted_full(tmp_path: Path,
                                                                     tree: Path) -> None:
    with open(tree / "app.log", "wb") as f:
        f.truncate(1 << 40)
        f.write(b"hello\n")
    svc = _svc(tmp_path, quota_soft_bytes=1 << 30, quota_hard_bytes=2 << 30, keep=3)
    r = svc.run_until_stable()
    usage = r[0].plan.usage
    assert max(usage.values()) < 1 << 20
    # Rotated (cheap rename) but not compressed (hours of zeros), and not deleted for the quota.
    names = os.listdir(tree)
    assert names == [f"app.log.{stamp_of(NOW)}"]


@pytest.mark.parametrize(
    "name",
    [b"new\nline.log", b"$(reboot);`id`|&.log", b"*?[glob].log", b"bad-\xff\xfe-utf8.log",
     b"-rf --no-preserve-root.log", b"x" * 251 + b".log"],
    ids=["newline", "shell", "glob", "invalid-utf8", "dash", "255-bytes"],
)
def test_hostile_names(tmp_path: Path, tree: Path, name: bytes) -> None:
    before = outside_files(tmp_path)
    path = os.path.join(os.fsencode(tree), name)
    with open(path, "wb") as f:
        f.write(b"payload\n")
    _svc(tmp_path, quota_soft_bytes=0, quota_hard_bytes=0).run_until_stable()
    assert_untouched(before)
    after = os.listdir(os.fsencode(tree))
    if len(name) >= 251:
        assert after == [name]       # cannot carry an archive suffix: left alone, reported
    else:
        assert after == [name + b"." + stamp_of(NOW).encode() + b".zst"]


def test_directory_swapped_for_symlink_during_passes(tmp_path: Path) -> None:
    before = outside_files(tmp_path)
    outside_dir = tmp_path / "outside"
    pod = tmp_path / "tree" / "pod-a"
    real = pod / "logs-real"
    real.mkdir(parents=True)
    logs = pod / "logs"
    svc = _svc(tmp_path, keep=1)
    stop = threading.Event()

    def swapper() -> None:
        while not stop.is_set():
            makers: tuple[Callable[[], None], ...] = (
                lambda: logs.symlink_to(outside_dir), lambda: os.rename(real, logs))
            for make in makers:
                try:
                    make()
                except OSError:
                    pass
                try:
                    if logs.is_symlink():
                        logs.unlink()
                    elif logs.is_dir():
                        (logs / "app.log").write_bytes(b"x\n")
                        os.rename(logs, real)
                except OSError:
                    pass

    t = threading.Thread(target=swapper)
    t.start()
    try:
        for _ in range(300):
            svc.run_pass()
    finally:
        stop.set()
        t.join()
    assert_untouched(before)


def test_quota_filling_while_writing_our_archive(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.system(f"mount -t tmpfs -o size=512k tmpfs {mnt} 2>/dev/null") != 0:
        pytest.skip("cannot mount a tmpfs here (needs CAP_SYS_ADMIN)")
    try:
        d = mnt / "pod-a" / "logs"
        d.mkdir(parents=True)
        archive = d / f"app.log.{stamp_of(NOW - 60)}"
        data = os.urandom(200_000)          # incompressible
        archive.write_bytes(data)
        filler = d / "filler.bin"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while True:
                os.write(fd, b"\1" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        svc = make_service(mnt, tmp_path / "state", keep=5, compress=True)
        r = svc.run_pass()
        assert [o.status for o in r.outcomes] == ["failed"]
        assert "ENOSPC" in r.outcomes[0].detail
        assert sorted(os.listdir(d)) == sorted([archive.name, "filler.bin"])  # no temp left
        assert archive.read_bytes() == data
        filler.unlink()
        r = svc.run_pass()
        assert [o.status for o in r.outcomes] == ["done"]
        assert os.listdir(d) == [archive.name + ".zst"]
    finally:
        os.system(f"umount {mnt}")


def test_many_small_files(tmp_path: Path, tree: Path) -> None:
    # Scale: a directory of many files, most not ours, some archives to expire.
    for i in range(100_000):
        fd = os.open(tree / f"f{i}.dat", os.O_CREAT | os.O_WRONLY, 0o644)
        os.close(fd)
    for k in range(20):
        (tree / f"app.log.{stamp_of(NOW - 1000 + k)}.zst").write_bytes(b"z")
    r = _svc(tmp_path, keep=5, quota_soft_bytes=0, quota_hard_bytes=0).run_pass()
    assert sum(1 for a in r.plan.actions if a.kind == "delete") == 15
    assert len(os.listdir(tree)) == 100_000 + 5
    shutil.rmtree(tree)


_SWAPPER = """
import os, sys
tree, secret, victim, archive = sys.argv[1:5]
tmp = os.path.join(tree, "swap.tmp")
while not os.path.exists(os.path.join(tree, "..", "stop")):
    for target in (os.path.join(tree, "app.log"), archive):
        for kind in ("file", "hardlink", "symlink"):
            try:
                if kind == "file":
                    with open(tmp, "wb") as f:
                        f.write(b"real\\n" * 100)
                elif kind == "symlink":
                    os.symlink(secret, tmp)
                else:
                    os.link(victim, tmp)
                os.rename(tmp, target)
            except OSError:
                pass
            try:
                os.unlink(tmp)
            except OSError:
                pass
"""


@pytest.mark.integration   # the racing writer is another process
@pytest.mark.parametrize("method", ["rename", "copytruncate"])
def test_files_swapped_for_links_during_passes(tmp_path: Path, tree: Path, method: str) -> None:
    # Between snapshot and execution a writer (another process: real parallelism) keeps
    # replacing the log and an archive with a symlink, then a hard link, to files outside, then
    # a real file again. Rotation (rename or copy + truncate), compression, deletion and the
    # hard-limit truncation all race with it.
    before = outside_files(tmp_path)
    secret, victim = tmp_path / "outside" / "secret", tmp_path / "outside" / "victim.log"
    archive = tree / f"app.log.{stamp_of(NOW - 30)}"
    svc = _svc(tmp_path, method=method, keep=2, quota_soft_bytes=1, quota_hard_bytes=2)
    writer = subprocess.Popen([sys.executable, "-c", _SWAPPER, str(tree), str(secret),
                               str(victim), str(archive)])
    statuses: set[str] = set()
    try:
        # The passes race the writer only once it runs (its interpreter may take a while to
        # start on a busy machine): wait for its first file.
        deadline = time.monotonic() + 60
        while not os.listdir(tree):
            assert writer.poll() is None, f"the writer exited with {writer.returncode}"
            assert time.monotonic() < deadline, "the writer made no file in 60 s"
            time.sleep(0.01)
        # Until both a refusal and a completed action were seen (usually a few hundred passes;
        # the cap only bounds a run where the writer wins every race).
        for i in range(30_000):
            statuses |= {o.status for o in svc.run_pass().outcomes}
            if i >= 500 and "done" in statuses and statuses & {"refused", "skipped", "failed"}:
                break
    finally:
        (tree.parent / "stop").touch()
        writer.wait(30)
    assert_untouched(before)
    assert "done" in statuses and statuses & {"refused", "skipped", "failed"}, statuses  # raced
