"""Noticing crontab changes: watchdog on each crontab's directory, including Kubernetes'
ConfigMap update, which never writes the file itself.

A mounted ConfigMap looks like `crontab -> ..data/crontab`, `..data -> ..2024_01_01_00_00_00.1`;
an update writes a new timestamped directory, points a new `..data_tmp` symlink at it and renames
it over `..data` (kubernetes/pkg/volume/util/atomic_writer.go). So we watch the directory, not the
file, and treat any change to the crontab's name or to a `..`-prefixed entry as "maybe changed".
The watcher only calls `on_change()`; the daemon debounces, re-reads and compares contents.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable

from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

log = logging.getLogger("gorun.watch")

# Opened / closed-without-write are our own reads: reacting to them would loop.
_RELEVANT = {EVENT_TYPE_CLOSED, EVENT_TYPE_CREATED, EVENT_TYPE_DELETED, EVENT_TYPE_MODIFIED,
             EVENT_TYPE_MOVED}
# The same as inotify's mask (watchdog derives it from this filter): without it every open and
# read-only close of any entry of the directory, a subdirectory being listed included, would
# wake the watcher's threads of an otherwise idle process.
_FILTER = [FileCreatedEvent, DirCreatedEvent, FileDeletedEvent, DirDeletedEvent,
           FileModifiedEvent, FileMovedEvent, DirMovedEvent, FileClosedEvent]


def watched_dirs(paths: Iterable[str]) -> dict[str, set[str]]:
    """Directory -> the crontab names in it that matter."""
    out: dict[str, set[str]] = {}
    for path in paths:
        full = os.path.abspath(path)
        out.setdefault(os.path.dirname(full), set()).add(os.path.basename(full))
    return out


def is_relevant(event_type: str, src: str, dest: str, names: set[str]) -> bool:
    """Pure filter: could this directory event change one of the crontabs named `names`?"""
    if event_type not in _RELEVANT:
        return False
    for p in (src, dest):
        if not p:
            continue
        base = os.path.basename(p)
        if base in names or base.startswith(".."):
            return True
    return False


class _Handler(FileSystemEventHandler):
    def __init__(self, names: set[str], on_change: Callable[[], None]) -> None:
        self.names = names
        self.on_change = on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(getattr(event, "dest_path", "") or "")
        if is_relevant(event.event_type, src, dest, self.names):
            self.on_change()


class CrontabWatcher:
    """Calls `on_change()` (from watchdog's thread) when a crontab may have changed."""

    def __init__(self, paths: Iterable[str], on_change: Callable[[], None]) -> None:
        self._observer = Observer()
        self.dirs = watched_dirs(paths)
        for directory, names in self.dirs.items():
            if not os.path.isdir(directory):
                log.warning("crontab directory missing, relying on the periodic rescan",
                            extra={"component": "gorun", "file": directory})
                continue
            self._observer.schedule(_Handler(names, on_change), directory, recursive=False,
                                    event_filter=_FILTER)

    def start(self) -> None:
        self._observer.daemon = True
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(5.0)
