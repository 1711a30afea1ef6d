"""Raising the soft open-files limit to the hard one, once at startup.

Every long-running command needs more than the usual soft limit of 1024 descriptors on a busy
node: gorun holds two or three pipes per running or prestarted job, rotation holds one descriptor
per watched directory during a pass, the tail source keeps one per followed file (and deleted
files within their budget). Running out is never silent (each failed open is logged and counted),
but it should not happen at 1024 when the hard limit allows far more. Used by both `gorun` and
`opsagent` (which depends on gorun, never the reverse).
"""

from __future__ import annotations

import resource

_UNLIMITED_TARGET = 1 << 20  # what "unlimited" hard limits are lifted to (the kernel's nr_open)


def raise_nofile_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit when allowed; return the soft limit in
    effect afterwards (unchanged when the kernel refuses)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else _UNLIMITED_TARGET
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft
