"""FileKey text form and the content checks used to resume from a checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from opsagent.sources.tail.identity import (
    FileKey,
    fingerprint,
    hash_bytes,
    head_hash,
    matches_checkpoint,
    tail_hash,
)


def test_file_key_text_round_trip() -> None:
    k = FileKey(64768, 1234, "00ff")
    assert str(k) == "64768:1234:00ff"
    assert FileKey.parse(str(k)) == k
    with pytest.raises(ValueError):
        FileKey.parse("nonsense")


def test_hashes(tmp_path: Path) -> None:
    data = bytes(range(256)) * 3
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        assert fingerprint(fd) == hash_bytes(data[:256])
        assert head_hash(fd, 10) == hash_bytes(data[:10])
        assert head_hash(fd, 700) == hash_bytes(data[:256])
        assert tail_hash(fd, 10) == hash_bytes(data[:10])
        assert tail_hash(fd, 700) == hash_bytes(data[444:700])
        h, t = head_hash(fd, 700), tail_hash(fd, 700)
        assert matches_checkpoint(fd, len(data), 700, h, t)
        assert not matches_checkpoint(fd, 699, 700, h, t)
        assert not matches_checkpoint(fd, len(data), 700, h, "x")
        assert not matches_checkpoint(fd, len(data), 700, "x", t)
        assert matches_checkpoint(fd, len(data), 0, hash_bytes(b""), hash_bytes(b""))
    finally:
        os.close(fd)
