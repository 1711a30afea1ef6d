"""Reapers: exit statuses reach their owner, orphans are reaped, nobody else's child is taken.

The OrphanReaper reaps every child of its process, so it runs in a child Python process here
(inside pytest it would take other tests' children)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from gorun.reaper import ChildReaper

SCRIPT = r'''
import json, os, subprocess, threading, time
from gorun.reaper import OrphanReaper, become_subreaper
sub = become_subreaper()
codes = {}
done = threading.Event()
def on_exit(i, st):
    codes[i] = os.waitstatus_to_exitcode(st)
    if len(codes) == 20:
        done.set()
orphans = []
r = OrphanReaper(on_orphan=lambda pid, st: orphans.append(os.waitstatus_to_exitcode(st)))
for i in range(20):
    # the job exits 7 at once; the subshell it leaves behind is an orphan that exits 5 later
    r.spawn(lambda: subprocess.Popen(["/bin/sh", "-c", "(sleep 0.3; exit 5) & exit 7"]),
            lambda st, i=i: on_exit(i, st))
done.wait(30)
deadline = time.monotonic() + 30
while len(orphans) < 20 and time.monotonic() < deadline:
    time.sleep(0.05)
zombies = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and stat[0] == "Z":
            zombies.append(pid)
print(json.dumps({"subreaper": sub, "codes": sorted(set(codes.values())), "n": len(codes),
                  "orphans": orphans, "zombies": zombies}))
'''


def test_orphan_reaper_reports_job_status_and_reaps_orphans() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=120, check=True)
    res = json.loads(out.stdout)
    assert res["subreaper"] is True
    assert res["n"] == 20 and res["codes"] == [7]  # no job status was stolen
    assert res["orphans"] == [5] * 20
    assert res["zombies"] == []


def test_child_reaper_never_takes_someone_elses_child() -> None:
    other = subprocess.Popen(["/bin/sh", "-c", "sleep 0.2; exit 3"])
    got = threading.Event()
    codes: list[int] = []

    def on_exit(st: int) -> None:
        codes.append(os.waitstatus_to_exitcode(st))
        got.set()
    proc = ChildReaper().spawn(lambda: subprocess.Popen(["/bin/sh", "-c", "exit 4"]), on_exit)
    assert got.wait(20)
    assert codes == [4] and proc.returncode == 4
    assert other.wait(20) == 3
