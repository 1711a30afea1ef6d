"""Starting a job's process: `SHELL -c COMMAND` in a new session, with the environment, user
and stdin the crontab gives it - either at once, or prestarted behind a gate.

Why gates: forking 100 processes from Python takes 40-90 ms on a busy 2-core machine, which would
make the 100th job start that late. A prestarted job is already a process (a small /bin/sh)
blocked reading its stdin; releasing it is closing a pipe. Jobs without stdin text due at the same
moment share one gate pipe, so one close() releases them all; a job with `%` stdin text has its own
gate pipe, and its text follows the release newline.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gorun.crontab import Job

GATE_SHELL = "/bin/sh"
# $0 is the job's shell, $1 its command. The first line of stdin is the release signal (EOF works
# too). With the gate shell as the job shell, `eval` saves an exec; `shift` inside the eval drops
# the command from the positional parameters, as for `sh -c COMMAND`.
GATE_EXEC = 'IFS= read -r _; exec "$0" -c "$1"'
GATE_EXEC_NULL = 'IFS= read -r _; exec "$0" -c "$1" </dev/null'
GATE_EVAL = 'IFS= read -r _; eval "shift; $1"'
GATE_EVAL_NULL = 'IFS= read -r _; exec </dev/null; eval "shift; $1"'
STDIN_INLINE_MAX = 4096  # a fresh pipe always takes this much without blocking


@dataclass
class Spawned:
    proc: subprocess.Popen[bytes]
    out_r: int
    err_r: int
    stdin_w: int | None  # own gate / stdin pipe, still to be written and closed


def argv(job: Job, *, gated: bool) -> list[str]:
    if not gated:
        return [job.shell, "-c", job.command]
    null = job.stdin is None
    if job.shell == GATE_SHELL:
        script = GATE_EVAL_NULL if null else GATE_EVAL
    else:
        script = GATE_EXEC_NULL if null else GATE_EXEC
    return [GATE_SHELL, "-c", script, job.shell, job.command]


def spawn(job: Job, base_env: Mapping[str, str], *, gate_r: int | None = None,
          gated: bool = False) -> Spawned:
    """Start the job's process. Not gated: stdin is the `%` text or /dev/null. Gated: stdin is
    `gate_r` (shared gate, job without stdin text) or a new pipe returned as `stdin_w`.
    Raises OSError (no shell, no fork), KeyError (unknown user), ValueError (not root)."""
    env = {**base_env, **job.env}
    kwargs: dict[str, Any] = {}
    if job.user is not None:
        kwargs = user_kwargs(job.user, env)
    own_r = own_w = None
    if job.stdin is not None:
        own_r, own_w = os.pipe2(os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    stdin: int = subprocess.DEVNULL
    if own_r is not None:
        stdin = own_r
    elif gated:
        if gate_r is None:
            raise ValueError("a gated job without stdin text needs the shared gate")
        stdin = gate_r
    try:
        proc = subprocess.Popen(argv(job, gated=gated), stdin=stdin, stdout=out_w,
                                stderr=err_w, env=env, start_new_session=True, **kwargs)
    except BaseException:
        for fd in (own_w, out_r, err_r):
            if fd is not None:
                os.close(fd)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
        if own_r is not None:
            os.close(own_r)
    return Spawned(proc, out_r, err_r, own_w)


def stdin_bytes(job: Job, *, gated: bool) -> bytes | None:
    """What to write to the job's own stdin pipe: the release line (gated) and its text."""
    if job.stdin is None:
        return None
    return (b"\n" if gated else b"") + job.stdin.encode()


def feed(fd: int, data: bytes) -> None:
    """Write `data` and close `fd`, never blocking the caller for long stdin texts."""
    def write() -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            pass  # the job closed its stdin early: fine, like cron
        finally:
            os.close(fd)
    if len(data) <= STDIN_INLINE_MAX:
        write()
    else:
        threading.Thread(target=write, name="gorun-stdin", daemon=True).start()


def user_kwargs(user: str, env: dict[str, str]) -> dict[str, Any]:
    """Popen arguments that run as `user` (system crontabs); sets HOME/LOGNAME/USER unless the
    crontab set them, and starts in the home directory, as cron does."""
    pw = pwd.getpwnam(user)  # KeyError: unknown user
    if os.geteuid() != 0:
        if pw.pw_uid == os.geteuid():
            return {}
        raise ValueError(f"cannot run as user {user!r}: gorun is not running as root")
    for key, value in (("HOME", pw.pw_dir), ("LOGNAME", pw.pw_name), ("USER", pw.pw_name)):
        env.setdefault(key, value)
    kwargs: dict[str, Any] = {"user": pw.pw_uid, "group": pw.pw_gid,
                              "extra_groups": os.getgrouplist(pw.pw_name, pw.pw_gid)}
    if os.path.isdir(pw.pw_dir):
        kwargs["cwd"] = pw.pw_dir
    return kwargs
