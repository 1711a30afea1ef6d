"""Is the directory entry an O_PATH fd was opened through still linked?

Used by every open of a file under a directory an attacker can write (rotation's safefs, the
tail source). After fstat counted one link, that link may be an outside one: the name we opened
may have been a hard link to a file outside the tree (two links) and been unlinked right after
our open. The kernel marks the entry an fd was opened through once it is unlinked (or replaced
by a rename), for good, and /proc/self/fd shows it as "PATH (deleted)". So if the fd's path is
still exactly DIR/NAME, the entry was linked all along since the open, and when fstat counted
one link, that link was ours: the attacker, who cannot write outside the tree, cannot have
linked the file anywhere else since.
"""

from __future__ import annotations

import os


def still_linked(dir_fd: int, fd: int, name: str) -> bool:
    """True when `fd` (opened as `name` in `dir_fd`) still reads as exactly DIR/NAME in /proc:
    not unlinked, replaced or renamed since. Raises OSError without /proc."""
    target = os.readlink(f"/proc/self/fd/{fd}")
    here = os.readlink(f"/proc/self/fd/{dir_fd}")
    # A live name that itself ends in " (deleted)" passes; an unlinked one reads NAME (deleted).
    return target == os.path.join(here, name)
