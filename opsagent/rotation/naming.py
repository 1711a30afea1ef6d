"""Which names in a log directory belong to a policy, and the names of archives we create.

Archives are date-stamped, never renumbered: `app.log` rotates to `app.log.20261126-071500`
(UTC), compressed to `app.log.20261126-071500.zst`; a second rotation within the same second
adds `.1`, `.2`. A stamp must be a real UTC time (so `app.log.99999999-999999` is not ours).
Temporary files are `.opsagent-tmp.<anything>`. Retention only ever touches
names of exactly these shapes whose active log matches the policy's include globs.
"""

from __future__ import annotations

import calendar
import dataclasses
import fnmatch
import re
import time
from collections.abc import Iterable
from typing import Literal

TEMP_PREFIX = ".opsagent-tmp."
ZST = ".zst"
_ARCHIVE = re.compile(
    r"^(?P<active>.+)\.(?P<stamp>\d{8}-\d{6})(?:\.(?P<seq>\d{1,4}))?(?P<zst>\.zst)?$", re.DOTALL
)

Kind = Literal["active", "archive", "compressed", "temp"]


@dataclasses.dataclass(frozen=True, slots=True)
class Name:
    kind: Kind
    active: str           # the active log this file belongs to ("" for temp files)
    stamp: str = ""       # archive stamp "YYYYmmdd-HHMMSS"
    seq: int = 0


def _matches(name: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    # fnmatchcase: a name's case is part of it; patterns never see path separators.
    return any(fnmatch.fnmatchcase(name, g) for g in include) and not any(
        fnmatch.fnmatchcase(name, g) for g in exclude
    )


def classify(name: str, include: tuple[str, ...], exclude: tuple[str, ...]) -> Name | None:
    """The role of `name` under a policy, or None if the policy does not own it."""
    if name.startswith(TEMP_PREFIX):
        return Name("temp", "")
    m = _ARCHIVE.match(name)
    if m and _valid_stamp(m["stamp"]) and _matches(m["active"], include, exclude):
        return Name("compressed" if m["zst"] else "archive", m["active"], m["stamp"],
                    int(m["seq"] or 0))
    if _matches(name, include, exclude):
        return Name("active", name)
    return None


def _valid_stamp(stamp: str) -> bool:
    # Only stamps we could have written: "99999999-999999" or a 30th of February is not ours
    # (and would make every later date computation raise).
    try:
        t = stamp_time(stamp)
    except (ValueError, OverflowError):
        return False
    return stamp_of(t) == stamp


def stamp_of(t: float) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(t))


def stamp_time(stamp: str) -> float:
    """Seconds since the epoch of an archive stamp (UTC)."""
    return float(calendar.timegm(time.strptime(stamp, "%Y%m%d-%H%M%S")))


def archive_name(active: str, now: float, taken: set[str]) -> str:
    """A fresh archive name for `active` at time `now` that is not in `taken`."""
    base = f"{active}.{stamp_of(now)}"
    candidate, seq = base, 0
    while candidate in taken or candidate + ZST in taken:
        seq += 1
        candidate = f"{base}.{seq}"
    return candidate


def sort_key(n: Name) -> tuple[str, int]:
    """Archives order by stamp, then sequence: larger is newer."""
    return (n.stamp, n.seq)
