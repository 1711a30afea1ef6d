"""The floor under any scheduler's start delay on this machine, measured in the same run.

N processes are forked ahead of time and blocked on one gate pipe, using gorun's own gate script
(gorun.spawn), and released by closing the pipe at a whole second; each then runs the stamp
command through /bin/sh exactly as a gorun job does. There is no scheduler at all: what is left
is waking N processes and exec'ing N commands on this machine's cores. gorun's start delay minus
this floor is what gorun itself adds.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from pathlib import Path

from bench import common
from gorun.spawn import GATE_EVAL_NULL, GATE_SHELL

SETTLE_SECS = 0.5  # between the last fork and the release: the forks' own CPU work is over


def measure(stamp: str, workdir: Path, jobs: int, rounds: int) -> list[float]:
    """Start delays in seconds (stamp clock read minus the release second), jobs * rounds."""
    delays: list[float] = []
    for r in range(rounds):
        stamps = workdir / f"floor-{r}"
        gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for i in range(jobs):
                procs.append(subprocess.Popen(
                    [GATE_SHELL, "-c", GATE_EVAL_NULL, "/bin/sh", f"{stamp} {stamps} {i}"],
                    stdin=gate_r, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True))
            os.close(gate_r)
            gate_r = -1
            release = math.ceil(time.time() + SETTLE_SECS)
            time.sleep(max(0.0, release - time.time()))
            os.close(gate_w)  # every gated process goes now
            gate_w = -1
        finally:
            for fd in (gate_r, gate_w):
                if fd >= 0:
                    os.close(fd)
            for p in procs:
                p.wait()
        delays += [s.first_action - release for s in common.read_stamps(stamps)]
    return delays
