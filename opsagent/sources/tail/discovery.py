"""Finds the files selected by glob patterns: a scandir walk that never follows symlinks (the
periodic rescan, a backstop for lost inotify events) plus inotify events on exactly the
directories the globs can match in or under (opsagent/dirwatch.py, shared with rotation; never a
recursive watch) that only wake the reader; and the safe open of a found name (every name under a
log dir is attacker-controlled)."""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from opsagent.dirwatch import DirWatcher
from opsagent.safeopen import UnsafeFile, open_regular

log = logging.getLogger("opsagent.tail")

_WILDCARD = re.compile(r"[*?\[]")


def glob_to_regex(pattern: str) -> str:
    """Translate a glob to a regex matching whole paths: `*` and `?` stay inside one path
    segment, `[...]`/`[!...]` are classes, `**` as a whole segment matches zero or more
    directories (or, last, anything). Unlike glob.glob, `*` also matches dot-files."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**", i) and (i == 0 or pattern[i - 1] == "/"):
            if i + 2 == n:
                out.append(".*")
                i += 2
                continue
            if pattern[i + 2] == "/":
                out.append("(?:[^/]+/)*")
                i += 3
                continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 2 if pattern.startswith("[!", i) else i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\").replace("/", "") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def dir_globs(pattern: str) -> tuple[str, list[str]]:
    """Globs, each ending in "/", of the directories a match of `pattern` can be in (the leaf
    glob) and of those it can be below, from the static root down (the upper globs)."""
    parts = pattern.split("/")
    idx = next((i for i, p in enumerate(parts) if _WILDCARD.search(p)), len(parts) - 1)
    leaf = "/".join(parts[:-1]) + ("/**/" if "**" in parts[-1] else "/")
    uppers = ["/".join(parts[:k]) + "/" for k in range(idx, len(parts) - 1)]
    return leaf, uppers


def static_root(pattern: str) -> tuple[str, int | None]:
    """The directory before the first wildcard segment, and how many levels below it a match
    can be (None: unbounded, because of `**`)."""
    parts = pattern.split("/")
    for idx, part in enumerate(parts):
        if _WILDCARD.search(part):
            root = "/".join(parts[:idx]) or "/"
            rest = parts[idx:]
            return root, None if "**" in rest else len(rest)
    # No wildcard: the pattern names one file.
    return os.path.dirname(pattern) or "/", 1


def _any_of(regexes: Iterable[str]) -> re.Pattern[str]:
    """One regex matching a whole path that any of `regexes` matches (each anchored at the
    end: "(?:a)|(?:b)\\Z" would let `a` match any longer path starting like it)."""
    return re.compile("(?:" + "|".join(f"(?:{r})" for r in regexes) + r")\Z", re.S)


@dataclass(frozen=True)
class Candidate:
    """A name found under a root that matches the globs (not opened yet)."""

    path: str
    root: str
    ino: int


class Matcher:
    """Include/exclude glob sets; `roots` are the directories to walk and watch."""

    def __init__(self, include: Iterable[str], exclude: Iterable[str] = ()) -> None:
        self.include = tuple(include)
        inc = [glob_to_regex(p) for p in self.include]
        # An exclude pattern without "/" applies to the file name ("*.gz"), others to the path.
        exc = [glob_to_regex(p if "/" in p else "/**/" + p) for p in exclude]
        self._inc = _any_of(inc)
        self._exc = _any_of(exc) if exc else None
        depths: dict[str, int | None] = {}
        for p in self.include:
            root, depth = static_root(p)
            if root in depths:
                old = depths[root]
                depths[root] = None if old is None or depth is None else max(old, depth)
            else:
                depths[root] = depth
        self.roots: dict[str, int | None] = depths
        leaves: list[str] = []
        uppers: list[str] = []
        for p in self.include:
            leaf, ups = dir_globs(p)
            leaves.append(glob_to_regex(leaf))
            uppers += [glob_to_regex(u) for u in ups]
        self._leaf_dir = _any_of(leaves)
        self._upper_dir = _any_of(uppers) if uppers else None
        # Set by scan(): (directories a match can be in, directories above them), to watch.
        self.watch_dirs: tuple[list[str], list[str]] = ([], [])

    def dir_role(self, path: str) -> tuple[bool, bool]:
        """(a match can be in directory `path`, a match can be below it)."""
        d = path if path.endswith("/") else path + "/"
        return (self._leaf_dir.match(d) is not None,
                self._upper_dir is not None and self._upper_dir.match(d) is not None)

    def matches(self, path: str) -> bool:
        if not self._inc.match(path):
            return False
        return self._exc is None or not self._exc.match(path)

    def root_of(self, path: str) -> str | None:
        """The deepest configured root containing `path`."""
        best = None
        for root in self.roots:
            prefix = root if root.endswith("/") else root + "/"
            if path.startswith(prefix) and (best is None or len(root) > len(best)):
                best = root
        return best

    def scan(self) -> tuple[list[Candidate], list[str]]:
        """Walk every root without following symlinks; returns the matching names (files of
        any type, and directories named like a match so they can be counted as skipped) and
        the roots that could not be read."""
        found: dict[str, Candidate] = {}
        failed: list[str] = []
        leaves: set[str] = set()
        uppers: set[str] = set()
        for root, depth in self.roots.items():
            stack: list[tuple[str, int]] = [(root, 0)]
            while stack:
                d, level = stack.pop()
                try:
                    entries = list(os.scandir(d))
                except OSError:
                    if d == root:
                        failed.append(root)
                    continue
                leaf, upper = self.dir_role(d)
                (leaves if leaf else uppers).add(d)
                for e in entries:
                    path = e.path
                    try:
                        is_dir = e.is_dir(follow_symlinks=False)
                    except OSError:
                        continue
                    if self.matches(path):
                        found.setdefault(path, Candidate(path, root, e.inode()))
                    # Only into directories a match can be in or below: tenants' other
                    # directories are neither walked nor watched.
                    if is_dir and (depth is None or level + 1 < depth) and any(
                            self.dir_role(path)):
                        stack.append((path, level + 1))
        self.watch_dirs = (sorted(leaves), sorted(uppers))
        return sorted(found.values(), key=lambda c: c.path), failed


def find_by_inode(directory: str, dev: int, ino: int) -> str | None:
    """The name in `directory` of the file (dev, ino), if any (where a renamed file went)."""
    try:
        with os.scandir(directory) as it:
            for e in it:
                if e.inode() == ino:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if st.st_dev == dev and stat.S_ISREG(st.st_mode):
                        return e.path
    except OSError:
        return None
    return None




_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_beneath(root: str, path: str) -> tuple[int, os.stat_result]:
    """Open `path` (under the trusted `root`) for reading as root would open a file an attacker
    may have planted, and return (fd, stat): no symlink is followed below the root (each
    directory is opened with O_NOFOLLOW), and the file itself goes through
    opsagent.safeopen.open_regular (O_PATH first, so a device node is never opened; one link,
    so a hard link to a file outside is not shipped; still linked; reopened via /proc).
    Raises NotRegularFile, HardLinked, OSError(ELOOP) for a symlink, FileNotFoundError for a
    name unlinked meanwhile, or another OSError."""
    rel = os.path.relpath(path, root)
    parts = rel.split("/")
    if rel.startswith("..") or any(p in ("", ".", "..") for p in parts):
        raise OSError(f"{path} is not below {root}")
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            nfd = os.open(part, _DIR_FLAGS, dir_fd=dfd)
            os.close(dfd)
            dfd = nfd
        return open_regular(dfd, parts[-1], os.O_RDONLY, None)
    except UnsafeFile as e:
        raise _as_oserror(e, path) from None
    finally:
        os.close(dfd)


def _as_oserror(e: UnsafeFile, path: str) -> OSError:
    if e.kind == "not_regular":
        return NotRegularFile(f"{path} is not a regular file")
    if e.kind == "hard_link":
        return HardLinked(f"{path} has more than one hard link")
    if e.kind == "symlink":
        return OSError(errno.ELOOP, e.reason, path)
    if e.kind == "unlinked":  # vanished meanwhile, as if never there
        return FileNotFoundError(errno.ENOENT, e.reason, path)
    return OSError(f"{path}: {e.reason}")  # no /proc: counted as reason "open"


class NotRegularFile(OSError):
    """The name is a FIFO, device, socket or directory."""


class HardLinked(OSError):
    """The file has more than one link (maybe to a file outside the tree): not tailed."""


class Waker:
    """inotify glue: one non-recursive watch per directory the globs can match in or under
    (the directories the last scan walked), through opsagent/dirwatch.py. Its callbacks only set
    flags; the reading happens in TailSource.poll(). Without inotify, the periodic rescan does
    all the work."""

    def __init__(self, matcher: Matcher) -> None:
        self._matcher = matcher
        self.wake = threading.Event()
        self.rescan = threading.Event()
        self._watcher: DirWatcher | None = None
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            watcher = DirWatcher(notify=self.on_event, component="tail")
        except OSError as e:
            log.warning("no inotify: new data is found by the periodic rescan",
                        extra={"component": "tail", "error": str(e)})
            return
        self._watcher = watcher
        self._halt = halt = threading.Event()

        def pump() -> None:
            try:
                watcher.pump(halt)
            finally:
                watcher.close()  # here, not in stop(): stop never waits for the poll to end

        self._thread = threading.Thread(target=pump, name="tail-inotify", daemon=True)
        self._thread.start()
        self.sync(*self._matcher.watch_dirs)

    def sync(self, leaves: Collection[str], uppers: Collection[str]) -> None:
        """Watch exactly these directories (after every scan). A directory watched only from
        now on may have got files between the scan and the watch: scan again soon."""
        w = self._watcher
        if w is not None and w.sync(leaves, uppers):
            self.rescan.set()
            self.wake.set()

    def on_event(self, directory: str, names_changed: bool) -> None:
        """From the watcher's thread: `directory` changed ("" = rescan everything)."""
        if names_changed:
            self.rescan.set()
        self.wake.set()

    @property
    def reliable(self) -> bool:
        """Whether every write to a tailed file makes an event: watching, and every matched
        directory watched. Only then may a reader sleep until an event or a deadline."""
        w = self._watcher
        return w is not None and w.complete

    def stop(self) -> None:
        """Stop watching; the watcher's thread ends (and closes its inotify fd) at once,
        without the caller (a drain on a deadline) waiting for it."""
        w = self._watcher
        self._watcher = self._thread = None
        self._halt.set()
        if w is not None:
            w.interrupt()
        self.wake.set()  # a poll sleeping until an event returns
