"""Rotation, compression and retention on real files, and recovery from a crash at each step."""

from __future__ import annotations

import os
from pathlib import Path

import zstandard

from opsagent.clock import FakeClock
from opsagent.rotation.naming import stamp_of

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
