"""The racing attacker of issue 11, as its own process (no GIL shared with the agent): plants a
hard link to VICTIM at LINK and removes it again, in a loop, for SECS seconds, with WATCHES
inotify watches on the victim (each link and unlink then notifies them all, which widens the
window between the link count dropping and the entry being marked deleted). Prints the number
of rounds. Usage: hardlink_attacker.py VICTIM LINK SECS WATCHES"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import time

IN_ALL_EVENTS = 0xFFF


def main() -> int:
    victim, link, secs, watches = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fds = []
    for _ in range(watches):
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0 or libc.inotify_add_watch(fd, os.fsencode(victim), IN_ALL_EVENTS) < 0:
            break  # fewer watches than asked: still a race, just a narrower one
        fds.append(fd)
    rounds = 0
    end = time.monotonic() + secs
    while time.monotonic() < end:
        for _ in range(100):
            try:
                os.link(victim, link)
            except FileExistsError:
                pass
            try:
                os.unlink(link)
            except FileNotFoundError:
                pass
            rounds += 1
        for fd in fds:  # drain, so the queues never overflow into silence
            try:
                while os.read(fd, 65536):
                    pass
            except BlockingIOError:
                pass
    print(rounds, len(fds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
