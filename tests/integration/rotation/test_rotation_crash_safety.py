"""Rotation, compression and retention on real files, and recovery from a crash at each step."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import zstandard

from opsagent.clock import FakeClock
from opsagent.rotation.naming import TEMP_PREFIX, stamp_of
from opsagent.rotation.service import RotationService

from .helpers import NOW, make_service


def _unzstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


def _tree(tmp_path: Path) -> Path:
    d = tmp_path / "tree" / "pod-a" / "logs"
    d.mkdir(parents=True)
    return d


def test_rotate_compress_and_keep(tmp_path: Path) -> None:
    d = _tree(tmp_path)
    clock = FakeClock(wall=NOW)
    svc = make_service(tmp_path / "tree", tmp_path / "state", clock, rotate_size_bytes=1000,
                       keep=2)
    payloads = []
    for i in range(4):
        data = f"round {i}\n".encode() * 200
        payloads.append(data)
        (d / "app.log").write_bytes(data)
        svc.run_pass()
        clock.advance(61)
    names = sorted(os.listdir(d))
    assert names == [f"app.log.{stamp_of(NOW + 61 * k)}.zst" for k in (2, 3)]
    restored = [_unzstd((d / n).read_bytes()) for n in names]
    assert restored == payloads[2:]


def test_interrupted_compression_is_completed(tmp_path: Path) -> None:
    d = _tree(tmp_path)
    svc = make_service(tmp_path / "tree", tmp_path / "state", compress=True)
    archive = d / f"app.log.{stamp_of(NOW - 100)}"
    archive.write_bytes(b"line\n" * 1000)
    # Crash after the .zst was renamed into place but before the original was removed:
    (d / (archive.name + ".zst")).write_bytes(
        zstandard.ZstdCompressor(write_checksum=True).compress(archive.read_bytes()))
    # ...and a temp file from a crash in the middle of another compression.
    (d / ".opsagent-tmp.deadbeef").write_bytes(b"partial")
    svc.run_pass()
    assert sorted(os.listdir(d)) == [archive.name + ".zst"]


def test_truncated_compressed_copy_is_redone_not_trusted(tmp_path: Path) -> None:
    d = _tree(tmp_path)
    svc = make_service(tmp_path / "tree", tmp_path / "state", compress=True)
    archive = d / f"app.log.{stamp_of(NOW - 100)}"
    data = os.urandom(50_000)
    archive.write_bytes(data)
    full = zstandard.ZstdCompressor(write_checksum=True).compress(data)
    (d / (archive.name + ".zst")).write_bytes(full[: len(full) // 2])
    svc.run_until_stable()
    assert os.listdir(d) == [archive.name + ".zst"]
    assert _unzstd((d / (archive.name + ".zst")).read_bytes()) == data


def test_copytruncate_keeps_the_inode_and_every_byte(tmp_path: Path) -> None:
    d = _tree(tmp_path)
    svc = make_service(tmp_path / "tree", tmp_path / "state", rotate_size_bytes=10,
                       method="copytruncate", compress=False)
    log = d / "app.log"
    log.write_bytes(b"a\n" * 100)
    ino = log.stat().st_ino
    with open(log, "ab") as writer:  # an app that never reopens
        svc.run_pass()
        writer.write(b"after\n")
    assert log.stat().st_ino == ino
    assert log.read_bytes() == b"after\n"
    assert (d / f"app.log.{stamp_of(NOW)}").read_bytes() == b"a\n" * 100


def test_post_rotate_hook_gets_no_file_names(tmp_path: Path) -> None:
    d = _tree(tmp_path)
    marker = tmp_path / "hook-ran"
    svc = make_service(tmp_path / "tree", tmp_path / "state", rotate_size_bytes=1,
                       compress=False, post_rotate_argv=("/usr/bin/touch", str(marker)))
    (d / "app.log").write_bytes(b"x\n")
    svc.run_pass()
    assert marker.exists()


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    d = _tree(tmp_path)
    svc = make_service(tmp_path / "tree", tmp_path / "state", rotate_size_bytes=1, keep=1)
    (d / "app.log").write_bytes(b"x\n")
    (d / f"app.log.{stamp_of(NOW - 100)}").write_bytes(b"old\n")
    before = sorted(os.listdir(d))
    result = svc.run_pass(dry_run=True)
    assert [a.kind for a in result.plan.actions] == ["rotate", "delete", "compress"]
    assert sorted(os.listdir(d)) == before


def test_parallel_compression_of_many_archives(tmp_path: Path) -> None:
    d = _tree(tmp_path)
    svc = make_service(tmp_path / "tree", tmp_path / "state", compress=True, compress_workers=2,
                       keep=0)
    originals = {}
    for k in range(8):
        name = f"app.log.{stamp_of(NOW - 100 + k)}"
        originals[name] = os.urandom(1000) * 50
        (d / name).write_bytes(originals[name])
    r = svc.run_pass()
    assert [o.status for o in r.outcomes] == ["done"] * 8
    assert sorted(os.listdir(d)) == sorted(n + ".zst" for n in originals)
    for n, data in originals.items():
        assert _unzstd((d / (n + ".zst")).read_bytes()) == data


# -- a crash at each step: the pass runs in a forked child that dies (os._exit: no cleanup, no
# finally) at the named step; the parent inspects what the crash left and runs the next pass.

def _crash_at(svc: RotationService, step: str) -> None:
    pid = os.fork()
    if pid == 0:  # child
        try:
            def fault(at: str) -> None:
                if at == step:
                    os._exit(77)
            svc.executor.fault = fault
            svc.run_pass()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 77, f"the pass never reached {step}"


def _own_names(d: Path) -> list[str]:
    return sorted(n for n in os.listdir(d) if not n.startswith(TEMP_PREFIX))


@pytest.mark.parametrize("step", ["compress:chunk", "compress:written", "compress:renamed"])
def test_crash_while_compressing(tmp_path: Path, step: str) -> None:
    d = _tree(tmp_path)
    archive = d / f"app.log.{stamp_of(NOW - 100)}"
    data = os.urandom(3 << 20)
    archive.write_bytes(data)
    svc = make_service(tmp_path / "tree", tmp_path / "state", compress=True)
    _crash_at(svc, step)
    # Never a half-written archive under an archive name; the original is still there.
    assert archive.read_bytes() == data
    if step == "compress:renamed":
        assert _unzstd((d / (archive.name + ".zst")).read_bytes()) == data
    else:
        assert _own_names(d) == [archive.name]
    make_service(tmp_path / "tree", tmp_path / "state", compress=True).run_until_stable()
    assert os.listdir(d) == [archive.name + ".zst"]
    assert _unzstd((d / (archive.name + ".zst")).read_bytes()) == data


def test_crash_while_copytruncate_copies(tmp_path: Path) -> None:
    d = _tree(tmp_path)
    data = b"".join(b"%08d\n" % i for i in range(50_000))
    (d / "app.log").write_bytes(data)
    kw: dict[str, Any] = {"rotate_size_bytes": 10, "method": "copytruncate", "compress": False}
    _crash_at(make_service(tmp_path / "tree", tmp_path / "state", **kw), "copytruncate:copied")
    # The copy was being made under a temp name: no half-written archive is in place.
    assert _own_names(d) == ["app.log"] and (d / "app.log").read_bytes() == data
    make_service(tmp_path / "tree", tmp_path / "state", **kw).run_pass()
    assert (d / f"app.log.{stamp_of(NOW)}").read_bytes() == data
    assert (d / "app.log").read_bytes() == b""
    assert not [n for n in os.listdir(d) if n.startswith(TEMP_PREFIX)]


def test_crash_between_copytruncate_copy_and_truncate_duplicates_never_loses(
        tmp_path: Path) -> None:
    # The archive is complete and in place, the source not yet truncated. The next pass cannot
    # tell a truncation that did not happen from one that did and was written over, so it
    # archives the source again: the lines appear twice, none is lost (docs/rotation.md).
    d = _tree(tmp_path)
    data = b"".join(b"%08d\n" % i for i in range(50_000))
    (d / "app.log").write_bytes(data)
    clock = FakeClock(wall=NOW)
    kw: dict[str, Any] = {"rotate_size_bytes": 10, "method": "copytruncate", "compress": False}
    _crash_at(make_service(tmp_path / "tree", tmp_path / "state", clock, **kw),
              "copytruncate:renamed")
    assert (d / f"app.log.{stamp_of(NOW)}").read_bytes() == data
    with open(d / "app.log", "ab") as f:
        f.write(b"after the crash\n")
    clock.advance(1)
    make_service(tmp_path / "tree", tmp_path / "state", clock, **kw).run_pass()
    assert (d / f"app.log.{stamp_of(NOW + 1)}").read_bytes() == data + b"after the crash\n"
    assert (d / "app.log").read_bytes() == b""


def test_crash_between_rename_and_post_rotate_hook_runs_the_hook_next_pass(
        tmp_path: Path) -> None:
    d = _tree(tmp_path)
    marker = tmp_path / "hook-ran"
    kw: dict[str, Any] = {"rotate_size_bytes": 1, "compress": False,
          "post_rotate_argv": ("/usr/bin/touch", str(marker))}
    (d / "app.log").write_bytes(b"x\n")
    _crash_at(make_service(tmp_path / "tree", tmp_path / "state", **kw), "rotate:renamed")
    assert not marker.exists() and not (d / "app.log").exists()   # renamed, app not told
    # The app never recreates app.log until told to reopen: nothing to rotate, hook still owed.
    svc = make_service(tmp_path / "tree", tmp_path / "state", **kw)
    r = svc.run_pass()
    assert marker.exists()
    assert [a.kind for a in r.plan.actions] == []
    marker.unlink()
    make_service(tmp_path / "tree", tmp_path / "state", **kw).run_pass()
    assert not marker.exists()                                     # owed once, run once


def test_post_rotate_hook_runs_once_per_pass_and_before_compression(tmp_path: Path) -> None:
    d = _tree(tmp_path)
    calls: list[list[str]] = []

    def hook(argv: object, timeout: float) -> int:
        calls.append(sorted(os.listdir(d)))
        return 0

    other = tmp_path / "tree" / "pod-b" / "logs"     # another quota group
    other.mkdir(parents=True)
    (other / "z.log").write_bytes(b"x\n")
    svc = make_service(tmp_path / "tree", tmp_path / "state", rotate_size_bytes=1,
                       compress=True, post_rotate_argv=("/bin/true",))
    svc.executor.run_hook = hook
    for n in ("a.log", "b.log", "c.log"):
        (d / n).write_bytes(b"x\n")
    svc.run_pass()
    stamp = stamp_of(NOW)
    assert calls == [sorted(f"{n}.log.{stamp}" for n in "abc")]   # once, nothing compressed yet
    assert sorted(os.listdir(d)) == sorted(f"{n}.log.{stamp}.zst" for n in "abc")
    assert os.listdir(other) == [f"z.log.{stamp}.zst"]


def test_failed_post_rotate_hook_is_retried(tmp_path: Path) -> None:
    d = _tree(tmp_path)
    rcs = [1, 0]
    svc = make_service(tmp_path / "tree", tmp_path / "state", rotate_size_bytes=1,
                       compress=False, post_rotate_argv=("/bin/true",))
    svc.executor.run_hook = lambda argv, timeout: rcs.pop(0)
    (d / "app.log").write_bytes(b"x\n")
    svc.run_pass()
    assert svc.state.hook_pending
    svc.run_pass()
    assert rcs == []
    assert svc.state.hook_pending is False


def test_interrupted_link_unlink_rotation_is_finished(tmp_path: Path) -> None:
    # On filesystems without RENAME_NOREPLACE a rename is link + unlink; a crash in between
    # leaves the active log and its archive as two links of one inode.
    d = _tree(tmp_path)
    (d / "app.log").write_bytes(b"data\n" * 100)
    archive = d / f"app.log.{stamp_of(NOW - 1)}"
    os.link(d / "app.log", archive)
    make_service(tmp_path / "tree", tmp_path / "state", compress=True).run_until_stable()
    assert os.listdir(d) == [archive.name + ".zst"]
    assert _unzstd((d / (archive.name + ".zst")).read_bytes()) == b"data\n" * 100


def test_interrupted_link_unlink_compression_is_finished(tmp_path: Path) -> None:
    d = _tree(tmp_path)
    archive = d / f"app.log.{stamp_of(NOW - 100)}"
    data = b"line\n" * 1000
    archive.write_bytes(data)
    zst = d / (archive.name + ".zst")
    zst.write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(data))
    os.link(zst, d / (TEMP_PREFIX + "deadbeef"))
    make_service(tmp_path / "tree", tmp_path / "state", compress=True).run_until_stable()
    assert os.listdir(d) == [zst.name]
    assert _unzstd(zst.read_bytes()) == data


@pytest.mark.parametrize("torn", ["tmp-only", "main-torn"])
def test_crash_while_writing_the_state_file(tmp_path: Path, torn: str) -> None:
    d = _tree(tmp_path)
    state = tmp_path / "state"
    clock = FakeClock(wall=NOW)
    kw: dict[str, Any] = {"rotate_every": "hourly", "compress": False,
          "post_rotate_argv": ("/usr/bin/touch", str(tmp_path / "hook-ran"))}
    (d / "app.log").write_bytes(b"x\n")
    make_service(tmp_path / "tree", state, clock, **kw).run_pass()
    path = state / "rotation-t.json"
    good = path.read_text()
    if torn == "tmp-only":      # crash while writing the temp copy: the real file is intact
        (state / "rotation-t.json.tmp").write_text(good[: len(good) // 2])
    else:                       # a torn file (say, a filesystem without ordered data)
        path.write_text(good[: len(good) // 2])
    svc = make_service(tmp_path / "tree", state, clock, **kw)
    assert bool(svc.state.times) == (torn == "tmp-only")
    # Torn: start afresh, and run the hook in case one was owed (twice is harmless).
    assert svc.state.hook_pending == (torn == "main-torn")
    clock.advance(3600)
    svc.run_pass()
    assert json.loads(path.read_text())["hook_pending"] is False
    assert not (state / "rotation-t.json.tmp").exists()
