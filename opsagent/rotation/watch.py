"""watchdog glue for rotation: file events under the policies' trusted prefixes become directory
paths on a queue. Callbacks only enqueue; the rotation loop does the work."""

from __future__ import annotations

import os
import queue
from collections.abc import Iterable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from opsagent.rotation.safefs import split_trusted


class _Enqueue(FileSystemEventHandler):
    def __init__(self, q: queue.Queue[str]) -> None:
        self.q = q

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path]
        if getattr(event, "dest_path", ""):   # moved: the directory it arrived in matters too
            paths.append(event.dest_path)
        for p in paths:
            path = os.fsdecode(p)
            self.q.put(path if event.is_directory else os.path.dirname(path))


def watch(patterns: Iterable[str], q: queue.Queue[str]) -> BaseObserver:
    """Start an observer over the trusted prefix of each directory glob (recursively, so new
    pod directories are seen). The caller stops and joins it."""
    observer = Observer()
    handler = _Enqueue(q)
    for prefix in sorted({split_trusted(p)[0] for p in patterns}):
        if os.path.isdir(prefix):
            observer.schedule(handler, prefix, recursive=True)
    observer.start()
    return observer
