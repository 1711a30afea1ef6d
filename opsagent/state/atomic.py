"""Durable file writes for the agent's state directory: write a temp file completely and fsync
it, rename it over the target, fsync the directory (so the rename survives a crash)."""

from __future__ import annotations

import os


def write_synced(path: str, data: bytes) -> None:
    """Write `data` to a new `path` (truncating), every byte, then fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def replace_file(path: str, data: bytes) -> None:
    """Atomically make `path` hold `data` (via `path.tmp`); a crash leaves old or new."""
    tmp = f"{path}.tmp"
    write_synced(tmp, data)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")
