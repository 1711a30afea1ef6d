"""File identity that survives rename and detects inode reuse: device + inode + a fingerprint
of the file's first bytes, plus the content checks used when resuming from a checkpoint."""

from __future__ import annotations

import dataclasses
import hashlib
import os

# How many leading bytes the fingerprint and the head hash cover, and how many bytes before a
# saved offset the tail hash covers.
HEAD_BYTES = 256
TAIL_BYTES = 256


@dataclasses.dataclass(frozen=True, slots=True)
class FileKey:
    """Identity of one tailed file. `str(key)` ("dev:ino:fingerprint") is stable across renames
    and restarts; it is the Kafka record key and the checkpoint key."""

    dev: int
    ino: int
    fingerprint: str  # hex hash of the first bytes seen when the file was first opened

    def __str__(self) -> str:
        return f"{self.dev}:{self.ino}:{self.fingerprint}"

    @classmethod
    def parse(cls, text: str) -> FileKey:
        """Inverse of str(); raises ValueError on a malformed key."""
        dev, ino, fp = text.split(":", 2)
        return cls(int(dev), int(ino), fp)


def hash_bytes(data: bytes) -> str:
    """The content hash used for fingerprints, head and tail hashes (16 hex chars)."""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def pread_exact(fd: int, length: int, offset: int) -> bytes:
    """Read up to `length` bytes at `offset` (short only at EOF)."""
    parts: list[bytes] = []
    while length > 0:
        data = os.pread(fd, length, offset)
        if not data:
            break
        parts.append(data)
        length -= len(data)
        offset += len(data)
    return b"".join(parts)


def fingerprint(fd: int) -> str:
    """Fingerprint of an open file: hash of its first HEAD_BYTES (fewer if shorter)."""
    return hash_bytes(pread_exact(fd, HEAD_BYTES, 0))


def head_hash(fd: int, offset: int) -> str:
    """Hash of the first min(offset, HEAD_BYTES) bytes (what a checkpoint at `offset` saw)."""
    return hash_bytes(pread_exact(fd, min(offset, HEAD_BYTES), 0))


def tail_hash(fd: int, offset: int) -> str:
    """Hash of the bytes just before `offset` (at most TAIL_BYTES)."""
    start = max(0, offset - TAIL_BYTES)
    return hash_bytes(pread_exact(fd, offset - start, start))


def starts_as_fingerprinted(fd: int, fp: str) -> bool:
    """Whether the file still begins with the bytes its fingerprint was taken of. The
    fingerprint covered the first HEAD_BYTES, or fewer if the file was shorter then, and the
    length was not kept: any prefix length may be it (at most HEAD_BYTES + 1 hashes of at
    most HEAD_BYTES bytes). A file that reused the inode almost never passes; a checkpoint at
    offset 0 is otherwise no content check at all (chaos seed 636241)."""
    head = pread_exact(fd, HEAD_BYTES, 0)
    return any(hash_bytes(head[:n]) == fp for n in range(len(head), -1, -1))


def matches_checkpoint(fd: int, size: int, offset: int, head: str, tail: str) -> bool:
    """Whether an open file is the one a checkpoint at `offset` was taken of: long enough, and
    the same first bytes and bytes just before the offset (else: inode reuse or rewrite)."""
    return size >= offset and head_hash(fd, offset) == head and tail_hash(fd, offset) == tail
