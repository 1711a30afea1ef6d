"""Security: the tree changes between the snapshot the plan was made from and the execution of an
action (TOCTOU). Each test builds the plan's action, then swaps the file the way a racing writer
would, then executes it: nothing outside may be opened, written, truncated, allocated or removed.
Run as root in tmp dirs."""

from __future__ import annotations

import ctypes
import os
import select
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from opsagent.rotation import executor as executor_mod
from opsagent.rotation import safefs
from opsagent.rotation.executor import Executor
from opsagent.rotation.naming import stamp_of
from opsagent.rotation.policy import Action

from .helpers import NOW, make_service

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the threat model is an agent as root")

ARCHIVE = f"app.log.{stamp_of(NOW - 60)}"
ACTIONS = {
    "truncate": Action("truncate", "", "app.log", "hard quota"),
    "rotate-rename": Action("rotate", "", "app.log", "size", target=f"app.log.{stamp_of(NOW)}",
                            method="rename"),
    "rotate-copytruncate": Action("rotate", "", "app.log", "size",
                                  target=f"app.log.{stamp_of(NOW)}", method="copytruncate"),
    "compress": Action("compress", "", ARCHIVE, "compress", target=ARCHIVE + ".zst"),
    "finish_compress": Action("finish_compress", "", ARCHIVE, "crash", target=ARCHIVE + ".zst"),
}


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    d = tmp_path / "tree" / "pod-a" / "logs"
    d.mkdir(parents=True)
    fd = os.open(d, safefs.O_DIR)
    try:
        yield d, fd
    finally:
        os.close(fd)


class _Inotify:
    """IN_OPEN events on one path: did anybody open it (the device driver's open ran)?"""

    IN_OPEN = 0x20

    def __init__(self, path: Path) -> None:
        self.libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0
        assert self.libc.inotify_add_watch(self.fd, os.fsencode(path), self.IN_OPEN) >= 0

    def opened(self) -> bool:
        try:
            return bool(os.read(self.fd, 4096))
        except BlockingIOError:
            return False

    def close(self) -> None:
        os.close(self.fd)


def _o_path_is_silent(tmp_path: Path) -> bool:
    """Kernels before 6.5 report O_PATH opens to inotify too; then IN_OPEN proves nothing."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    ino = _Inotify(probe)
    try:
        os.close(os.open(probe, os.O_PATH))
        return not ino.opened()
    finally:
        ino.close()
        probe.unlink()


@pytest.mark.parametrize("which", list(ACTIONS))
def test_device_node_swapped_in_is_never_opened(tmp_path: Path, tree: tuple[Path, int],
                                                which: str) -> None:
    # A container with CAP_MKNOD (Docker's default) can put a device node where the plan saw a
    # regular file. Opening a device runs its driver's open (a watchdog device reboots the node
    # when closed without its magic byte). We must look at it without opening it.
    if not _o_path_is_silent(tmp_path):
        pytest.skip("this kernel reports O_PATH opens to inotify; cannot observe a device open")
    d, dfd = tree
    a = ACTIONS[which]
    if which == "finish_compress":
        (d / a.name).write_bytes(b"x\n")
        victim = d / a.target
    else:
        victim = d / a.name
    os.mknod(victim, 0o600 | stat.S_IFCHR, os.makedev(1, 3))   # a clone of /dev/null
    watch = _Inotify(victim)
    try:
        out = Executor(compress_level=1).execute(dfd, a)
        assert not watch.opened(), f"{which} opened the device node"
    finally:
        watch.close()
    assert out.status == "refused" and "not a regular file" in out.detail
    assert stat.S_ISCHR(os.stat(victim, follow_symlinks=False).st_mode)


@pytest.mark.parametrize("which", ["truncate", "rotate-copytruncate"])
def test_fifo_swapped_in_is_never_opened_for_writing(tree: tuple[Path, int], which: str) -> None:
    d, dfd = tree
    os.mkfifo(d / "app.log")
    reader = os.open(d / "app.log", os.O_RDONLY | os.O_NONBLOCK)
    try:
        out = Executor(compress_level=1).execute(dfd, ACTIONS[which])
        # A FIFO reader sees POLLHUP once a writer has opened and closed the other end.
        p = select.poll()
        p.register(reader, select.POLLIN)
        assert p.poll(0) == [], "the agent opened the FIFO for writing"
    finally:
        os.close(reader)
    assert out.status == "refused"


def test_sparse_active_log_is_not_copied_dense(tmp_path: Path, tree: tuple[Path, int]) -> None:
    # copytruncate of a 1 TB sparse log would write a terabyte of zeros into the node's disk.
    d, _ = tree
    with open(d / "app.log", "wb") as f:
        f.truncate(1 << 40)
        f.write(b"hello\n")
    svc = make_service(tmp_path / "tree", tmp_path / "state", rotate_size_bytes=1,
                       method="copytruncate", compress=False)
    svc.run_until_stable()
    allocated = sum(os.stat(d / n).st_blocks * 512 for n in os.listdir(d))
    assert allocated < 64 << 20
    assert (d / "app.log").stat().st_size == 1 << 40          # not truncated: nothing copied


def test_log_made_sparse_after_the_snapshot_is_not_copied_dense(tree: tuple[Path, int]) -> None:
    d, dfd = tree
    (d / "app.log").write_bytes(b"dense line\n" * 100)       # what the snapshot saw
    with open(d / "app.log", "r+b") as f:                    # the writer's move after it
        f.truncate(1 << 40)
    out = Executor(compress_level=1).execute(dfd, ACTIONS["rotate-copytruncate"])
    allocated = sum(os.stat(d / n).st_blocks * 512 for n in os.listdir(d))
    assert allocated < 64 << 20, out
    assert out.status in ("refused", "skipped", "done")
    assert (d / "app.log").stat().st_size in (0, 1 << 40)


def test_archive_made_sparse_after_the_snapshot_is_not_compressed(tree: tuple[Path, int]) -> None:
    d, dfd = tree
    with open(d / ARCHIVE, "wb") as f:
        f.write(b"line\n" * 100)
        f.truncate(1 << 40)
    out = Executor(compress_level=1).execute(dfd, ACTIONS["compress"])
    assert out.status == "refused" and "sparse" in out.detail
    assert os.listdir(d) == [ARCHIVE]


def test_zstd_bomb_beside_an_archive_is_not_inflated(tree: tuple[Path, int]) -> None:
    # An attacker's `<archive>.zst` that inflates to far more than the archive: verification
    # stops as soon as it is longer than the original instead of inflating all of it.
    d, dfd = tree
    (d / ARCHIVE).write_bytes(b"real data\n" * 100)
    cctx = zstandard.ZstdCompressor(level=1)
    with open(d / (ARCHIVE + ".zst"), "wb") as f, cctx.stream_writer(f) as w:
        zeros = bytes(1 << 20)
        for _ in range(256):
            w.write(zeros)
    zfd = os.open(d / (ARCHIVE + ".zst"), os.O_RDONLY)
    try:
        assert executor_mod._verify_zst(zfd, limit=1000) == -1
    finally:
        os.close(zfd)
    out = Executor(compress_level=1).execute(dfd, ACTIONS["finish_compress"])
    assert out.status == "done" and "incomplete" in out.detail
    assert os.listdir(d) == [ARCHIVE]
    assert (d / ARCHIVE).read_bytes() == b"real data\n" * 100


@pytest.mark.parametrize("inside", ["tree/pod-a/state", "tree/state", "tree"])
def test_state_dir_inside_a_watched_tree_is_refused(tmp_path: Path, inside: str) -> None:
    (tmp_path / "tree" / "pod-a" / "logs").mkdir(parents=True)
    with pytest.raises(ValueError, match="state_dir"):
        make_service(tmp_path / "tree", tmp_path / inside)


def test_state_dir_reached_through_a_symlink_into_the_tree_is_refused(tmp_path: Path) -> None:
    (tmp_path / "tree" / "pod-a" / "logs").mkdir(parents=True)
    (tmp_path / "state-link").symlink_to(tmp_path / "tree" / "pod-a")
    with pytest.raises(ValueError, match="state_dir"):
        make_service(tmp_path / "tree", tmp_path / "state-link")
