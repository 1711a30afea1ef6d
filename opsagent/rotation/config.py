"""Configuration of one `[[rotate]]` policy: which directories, when to rotate, what to keep,
how to compress, and the disk quota. Every key is documented in config/rotate.example.toml."""

from __future__ import annotations

import dataclasses
import re
from typing import Literal


@dataclasses.dataclass(frozen=True)
class RotateConfig:
    name: str
    # Directory globs (absolute). Everything below a matched directory is attacker-controlled;
    # the part of the path above the glob's first wildcard is trusted (the admin's mount point).
    directories: tuple[str, ...]
    # File-name globs of the active logs inside each directory ("*.log").
    include: tuple[str, ...] = ("*.log",)
    exclude: tuple[str, ...] = ()
    rotate_size_bytes: int = 0            # 0: no size trigger
    rotate_every: Literal["", "hourly", "daily"] = ""   # "": no time trigger
    method: Literal["rename", "copytruncate"] = "rename"
    # After a rename rotation: argv of a command to run (no shell; file names are never passed).
    post_rotate_argv: tuple[str, ...] = ()
    post_rotate_timeout_secs: float = 30.0
    keep: int = 10                        # rotated files kept per active log; 0: unlimited
    max_age_secs: float = 0.0             # delete archives older than this (by stamp); 0: off
    compress: bool = True
    compress_level: int = 3               # zstd level 1..19
    compress_workers: int = 1             # archives compressed in parallel; 0: one per core
    delay_compress: bool = False          # leave the newest archive uncompressed one cycle
    quota_scope: Literal["directory", "pod"] = "directory"
    # With quota_scope = "pod": regex whose named group `pod` picks the pod out of a directory path.
    pod_pattern: str = ""
    quota_soft_bytes: int = 0             # 0: no quota; counted in allocated blocks
    quota_hard_bytes: int = 0             # 0: no hard limit
    # What to do with active files when deleting every archive still leaves usage above the hard
    # limit: "truncate" the largest active file, or "none" (report the breach only).
    hard_action: Literal["truncate", "none"] = "truncate"
    min_interval_secs: float = 0.2        # event-driven passes for one directory at most this often
    rescan_interval_secs: float = 60.0    # full pass: backstop for lost inotify events, time rules

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            # It names the state file and labels metrics: no path separators, nothing odd.
            raise ValueError(f"name must be letters, digits, '_', '.', '-', got {self.name!r}")
        if not self.directories:
            raise ValueError("directories must list at least one glob")
        for d in self.directories:
            if not d.startswith("/"):
                raise ValueError(f"directories: {d!r} must be an absolute path")
        if not self.include:
            raise ValueError("include must list at least one file-name glob")
        for g in (*self.include, *self.exclude):
            if "/" in g:
                raise ValueError(f"include/exclude: {g!r} is a file-name glob, not a path")
        for key in ("rotate_size_bytes", "keep", "quota_soft_bytes", "quota_hard_bytes"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0")
        if self.rescan_interval_secs <= 0 or self.min_interval_secs < 0:
            raise ValueError("rescan_interval_secs must be > 0 and min_interval_secs >= 0")
        if self.compress_workers < 0:
            raise ValueError("compress_workers must be >= 0")
        if not 1 <= self.compress_level <= 19:
            raise ValueError(f"compress_level must be 1..19, got {self.compress_level}")
        if self.quota_hard_bytes and self.quota_soft_bytes > self.quota_hard_bytes:
            raise ValueError("quota_soft_bytes must not exceed quota_hard_bytes")
        if self.quota_scope == "pod":
            try:
                rx = re.compile(self.pod_pattern)
            except re.error as e:
                raise ValueError(f"pod_pattern: invalid regex: {e}") from None
            if "pod" not in rx.groupindex:
                raise ValueError("pod_pattern must have a named group (?P<pod>...)")
        if self.method == "copytruncate" and self.post_rotate_argv:
            raise ValueError("post_rotate_argv only applies to method = \"rename\"")

    @property
    def soft_limit(self) -> int:
        """The limit at which archives start being compressed and deleted (0: none)."""
        return self.quota_soft_bytes or self.quota_hard_bytes

    @property
    def hard_limit(self) -> int:
        return self.quota_hard_bytes
