"""CheckpointStore: round trip, atomic save with a kept previous generation, corrupt/truncated
/bad-checksum files detected and reported, crash leftovers, I/O failures."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import prometheus_client
import pytest

from opsagent.errors import RetriableError
from opsagent.state.checkpoints import Checkpoint, CheckpointStore, decode, encode


def cp(offset: int, ino: int = 7) -> Checkpoint:
    return Checkpoint(dev=1, ino=ino, fingerprint="abcd", path="/var/log/app.log",
                      offset=offset, head_hash="h", tail_hash="t", updated=1.5)


def entries(*cps: Checkpoint) -> dict[str, Checkpoint]:
    return {c.id: c for c in cps}


@pytest.fixture
def registry() -> prometheus_client.CollectorRegistry:
    return prometheus_client.CollectorRegistry()


def store(tmp_path: Path, registry: prometheus_client.CollectorRegistry) -> CheckpointStore:
    return CheckpointStore(str(tmp_path / "state"), "fwd", registry=registry)


def corrupt_count(registry: prometheus_client.CollectorRegistry) -> float:
    return registry.get_sample_value("opsagent_checkpoint_corrupt_total",
                                     {"pipeline": "fwd"}) or 0.0


def test_round_trip_and_generations(tmp_path: Path,
                                    registry: prometheus_client.CollectorRegistry) -> None:
    s = store(tmp_path, registry)
    assert s.load() == {}
    s.save(entries(cp(10)))
    s.save(entries(cp(20), cp(5, ino=8)))
    assert s.load() == entries(cp(20), cp(5, ino=8))
    prev = decode((tmp_path / "state" / "fwd.json.1").read_bytes())
    assert prev == entries(cp(10))
    assert registry.get_sample_value("opsagent_checkpoint_writes_total",
                                     {"pipeline": "fwd"}) == 2
    assert oct(os.stat(tmp_path / "state").st_mode & 0o777) == "0o700"
    assert cp(1).id == "1:7:abcd"


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _bad_checksum(p: Path) -> None:
    doc = json.loads(p.read_bytes())
    doc["entries"]["1:7:abcd"]["offset"] = 999_999
    p.write_text(json.dumps(doc))


def _garbage(p: Path) -> None:
    p.write_bytes(b"\xff\x00 not json")


def _wrong_version(p: Path) -> None:
    doc = json.loads(p.read_bytes())
    doc["version"] = 99
    p.write_text(json.dumps(doc))


def _inconsistent_key(p: Path) -> None:
    doc = json.loads(p.read_bytes())
    raw = {"9:9:zz": doc["entries"]["1:7:abcd"]}
    doc["entries"] = raw
    doc["sha256"] = hashlib.sha256(
        json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    p.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "damage",
    [_truncate, _empty, _bad_checksum, _garbage, _wrong_version, _inconsistent_key],
    ids=["truncated", "empty", "bad-checksum", "garbage", "wrong-version", "inconsistent-key"],
)
def test_corrupt_current_falls_back_to_previous(
    tmp_path: Path, registry: prometheus_client.CollectorRegistry,
    damage: Callable[[Path], None],
) -> None:
    s = store(tmp_path, registry)
    s.save(entries(cp(10)))
    s.save(entries(cp(20)))
    damage(tmp_path / "state" / "fwd.json")
    fresh = store(tmp_path, registry)
    assert fresh.load() == entries(cp(10))
    assert corrupt_count(registry) == 1


def test_both_generations_corrupt_gives_empty_and_reports_both(
    tmp_path: Path, registry: prometheus_client.CollectorRegistry,
) -> None:
    s = store(tmp_path, registry)
    s.save(entries(cp(10)))
    s.save(entries(cp(20)))
    _truncate(tmp_path / "state" / "fwd.json")
    _garbage(tmp_path / "state" / "fwd.json.1")
    s2 = store(tmp_path, registry)
    assert s2.load() == {}
    assert corrupt_count(registry) == 2
    assert s2.state_lost  # files existed: the caller must not treat its files as new


@pytest.mark.parametrize("layout", ["none", "current-good", "current-corrupt-previous-good",
                                    "only-previous-good", "current-corrupt-only",
                                    "current-unreadable"])
def test_state_lost_only_when_files_exist_and_none_is_usable(
    tmp_path: Path, registry: prometheus_client.CollectorRegistry, layout: str,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    good = encode(entries(cp(10)))
    current, previous = state / "fwd.json", state / "fwd.json.1"
    if layout == "current-good":
        current.write_bytes(good)
    elif layout == "current-corrupt-previous-good":
        current.write_bytes(good[:-9])
        previous.write_bytes(good)
    elif layout == "only-previous-good":
        previous.write_bytes(good)
    elif layout == "current-corrupt-only":
        current.write_bytes(b"")
    elif layout == "current-unreadable":
        current.mkdir()  # read() fails with EISDIR: as good as corrupt
    s = store(tmp_path, registry)
    loaded = s.load()
    lost = layout in ("current-corrupt-only", "current-unreadable")
    assert s.state_lost is lost
    assert loaded == ({} if lost or layout == "none" else entries(cp(10)))


def test_save_after_corrupt_load_keeps_the_good_previous_generation(
    tmp_path: Path, registry: prometheus_client.CollectorRegistry,
) -> None:
    s = store(tmp_path, registry)
    s.save(entries(cp(10)))
    s.save(entries(cp(20)))
    _garbage(tmp_path / "state" / "fwd.json")
    s2 = store(tmp_path, registry)
    assert s2.load() == entries(cp(10))
    s2.save(entries(cp(30)))
    # The corrupt file was not rotated over the good previous generation.
    assert decode((tmp_path / "state" / "fwd.json.1").read_bytes()) == entries(cp(10))
    assert s2.load() == entries(cp(30))


def test_crash_leftovers_are_ignored(tmp_path: Path,
                                     registry: prometheus_client.CollectorRegistry) -> None:
    s = store(tmp_path, registry)
    s.save(entries(cp(10)))
    # A crash after writing the temp file but before the rename: a half-written temp file.
    tmp = tmp_path / "state" / "fwd.json.tmp"
    tmp.write_bytes(encode(entries(cp(99)))[:15])
    assert store(tmp_path, registry).load() == entries(cp(10))
    s.save(entries(cp(11)))
    assert not tmp.exists()
    assert store(tmp_path, registry).load() == entries(cp(11))


def test_crash_between_the_two_renames_uses_previous(
    tmp_path: Path, registry: prometheus_client.CollectorRegistry,
) -> None:
    s = store(tmp_path, registry)
    s.save(entries(cp(10)))
    s.save(entries(cp(20)))
    # save() moves the current file to .1 then the temp file to current: a crash in between
    # leaves no current file.
    os.replace(tmp_path / "state" / "fwd.json", tmp_path / "state" / "fwd.json.1")
    assert store(tmp_path, registry).load() == entries(cp(20))
    assert corrupt_count(registry) == 0


def test_save_failure_is_retriable_and_leaves_state_intact(
    tmp_path: Path, registry: prometheus_client.CollectorRegistry,
) -> None:
    s = store(tmp_path, registry)
    s.save(entries(cp(10)))
    # The temp path is taken by a directory: the write fails like a full disk would.
    (tmp_path / "state" / "fwd.json.tmp").mkdir()
    with pytest.raises(RetriableError, match="cannot save checkpoints"):
        s.save(entries(cp(20)))
    assert store(tmp_path, registry).load() == entries(cp(10))
    assert registry.get_sample_value("opsagent_checkpoint_errors_total",
                                     {"pipeline": "fwd"}) == 1


def test_temp_file_symlink_is_not_followed(tmp_path: Path,
                                           registry: prometheus_client.CollectorRegistry) -> None:
    s = store(tmp_path, registry)
    s.save(entries(cp(1)))
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    os.symlink(victim, tmp_path / "state" / "fwd.json.tmp")
    with pytest.raises(RetriableError):
        s.save(entries(cp(2)))
    assert victim.read_bytes() == b"keep"


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "x" * 200])
def test_bad_names_rejected(tmp_path: Path, registry: prometheus_client.CollectorRegistry,
                            name: str) -> None:
    with pytest.raises(ValueError):
        CheckpointStore(str(tmp_path), name, registry=registry)


def test_two_pipelines_share_a_registry(tmp_path: Path,
                                        registry: prometheus_client.CollectorRegistry) -> None:
    a = CheckpointStore(str(tmp_path), "a", registry=registry)
    b = CheckpointStore(str(tmp_path), "b", registry=registry)
    a.save(entries(cp(1)))
    b.save(entries(dataclasses.replace(cp(2), path="/other")))
    assert a.load() == entries(cp(1))
    assert b.load()[cp(2).id].path == "/other"
