"""Shared helpers for benchmarks: percentiles, process CPU/RSS sampling, peers, a clock stamp.

Pure helpers (percentile, summarize, ratio, cpu_percent, start_delays) are unit-tested in
tests/unit/bench/test_common.py; the rest does I/O and is only exercised by running benchmarks.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


# --- pure helpers --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's
    default, "type 7"). Raises ValueError on an empty sequence or q outside 0..100."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q={q} outside 0..100")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(values: Sequence[float], ndigits: int = 3) -> dict[str, float | int]:
    """n, min, p50, p90, p99, max and mean of values, rounded to ndigits; {"n": 0} when empty."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": round(min(values), ndigits),
        "p50": round(percentile(values, 50), ndigits),
        "p90": round(percentile(values, 90), ndigits),
        "p99": round(percentile(values, 99), ndigits),
        "max": round(max(values), ndigits),
        "mean": round(sum(values) / len(values), ndigits),
    }


def ratio(ours: float | None, theirs: float | None, ndigits: int = 3) -> float | None:
    """ours / theirs rounded, or None when either is missing or theirs is zero (a ratio to zero
    means nothing)."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return round(ours / theirs, ndigits)


def cpu_percent(cpu_seconds: float, wall_seconds: float) -> float:
    """CPU time over wall time as a percentage of one core."""
    if wall_seconds <= 0:
        raise ValueError("wall time must be positive")
    return 100.0 * cpu_seconds / wall_seconds


def start_delays(
    stamps: Iterable[float], period_s: float, not_before: float = float("-inf"),
    offset_s: float = 0.0,
) -> dict[float, list[float]]:
    """Group job start timestamps (epoch seconds) by the scheduled instant they belong to and
    return {scheduled_instant: [delay_seconds, ...]}.

    Scheduled instants are offset_s + k * period_s (epoch seconds); a stamp belongs to the nearest
    one, so a job started a little *before* its second shows a negative delay instead of a delay of
    almost one period. Stamps whose scheduled instant is before not_before (warm-up) are dropped."""
    if period_s <= 0:
        raise ValueError("period must be positive")
    rounds: dict[float, list[float]] = {}
    for t in stamps:
        sched = round((t - offset_s) / period_s) * period_s + offset_s
        if sched < not_before:
            continue
        rounds.setdefault(sched, []).append(t - sched)
    return dict(sorted(rounds.items()))


# --- machine state -------------------------------------------------------------------------------


def loadavg() -> list[float]:
    """1, 5 and 15 minute load averages, rounded: the benchmarks record them because the machine is
    shared and numbers taken under load are noisy."""
    return [round(x, 2) for x in os.getloadavg()]


def wait_until(deadline: float) -> None:
    """Sleep until the wall clock reaches deadline (epoch seconds)."""
    while (left := deadline - time.time()) > 0:
        time.sleep(min(left, 0.5))


# --- peers ---------------------------------------------------------------------------------------


def cache_dir() -> Path:
    return Path(os.environ.get("OPSAGENT_CACHE") or Path.home() / ".cache" / "opsagent")


def ensure_peers() -> None:
    """Run scripts/bench-peers (idempotent: installs supercronic and Debian cron if missing)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "bench-peers")], check=True)


def peer_path(name: str) -> str | None:
    """Path of a peer binary: $OPSAGENT_CACHE/bin/NAME first, then PATH (and /usr/sbin for cron)."""
    cached = cache_dir() / "bin" / name
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


STAMP_C = r"""
/* stamp FILE TAG: append "TAG SECONDS.NANOSECONDS RUN_NS WAIT_NS\n" to FILE: CLOCK_REALTIME read
 * first, then this process's CPU time and run-queue wait since fork from /proc/self/schedstat
 * (exec keeps the pid, so they cover the shell that exec'd us too; -1 -1 when unavailable). */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long run = -1, wait = -1;
    FILE *f = fopen("/proc/self/schedstat", "r");
    if (f) {
        if (fscanf(f, "%lld %lld", &run, &wait) != 2) run = wait = -1;
        fclose(f);
    }
    if (argc < 3) return 2;
    char buf[160];
    int n = snprintf(buf, sizeof buf, "%s %lld.%09ld %lld %lld\n", argv[2], (long long)ts.tv_sec,
                     ts.tv_nsec, run, wait);
    int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) return 1;
    return write(fd, buf, (size_t)n) == n ? 0 : 1;
}
"""


def stamp_binary() -> str:
    """Path of a tiny C program whose first action is reading CLOCK_REALTIME; compiled once into
    $OPSAGENT_CACHE/bin with cc. A job `stamp FILE TAG` thus records its start with ~no overhead
    beyond the shell's fork+exec, which calibrate_spawn() measures separately."""
    digest = hashlib.sha256(STAMP_C.encode()).hexdigest()[:8]
    out = cache_dir() / "bin" / f"opsagent-stamp-{digest}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        src = out.with_suffix(".c")
        src.write_text(STAMP_C)
        subprocess.run(["cc", "-O2", "-o", str(out), str(src)], check=True)
    return str(out)


@dataclass(frozen=True)
class Stamp:
    tag: str
    first_action: float  # epoch seconds of the job's first clock read
    spawned: float | None  # estimated fork moment, see parse_stamp


def parse_stamp(line: str) -> Stamp:
    """One line of the stamp program. The fork moment is estimated as the clock read minus the CPU
    time and the run-queue wait the process accrued since fork (/proc/self/schedstat): what is
    left out is time spent blocked (page-cache misses), which is ~0 for cached binaries."""
    parts = line.split()
    t = float(parts[1])
    spawned = None
    if len(parts) >= 4 and int(parts[2]) >= 0 and int(parts[3]) >= 0:
        spawned = t - (int(parts[2]) + int(parts[3])) / 1e9
    return Stamp(parts[0], t, spawned)


def read_stamps(path: Path) -> list[Stamp]:
    """The stamps written to path (none if it does not exist)."""
    if not path.exists():
        return []
    return [parse_stamp(line) for line in path.read_text().splitlines() if line.strip()]


def calibrate_spawn(
    stamp: str, workdir: Path, shell: str = "/bin/sh", n: int = 50
) -> tuple[list[float], list[float]]:
    """For n sequential runs of `SHELL -c 'stamp FILE TAG'` from Python: seconds from just before
    the fork to the stamp's clock read (the part of every first-action delay that is the shell,
    not the scheduler), and to the estimated fork moment (checks that estimate: it should be a
    small positive number, the parent's own fork cost)."""
    f = workdir / "calibrate.stamps"
    before: list[float] = []
    for i in range(n):
        before.append(time.time())
        subprocess.run([shell, "-c", f"{stamp} {f} {i}"], check=True)
    got = {int(s.tag): s for s in read_stamps(f)}
    first = [got[i].first_action - before[i] for i in range(n) if i in got]
    spawn = [
        sp - before[i] for i in range(n) if i in got and (sp := got[i].spawned) is not None
    ]
    return first, spawn


# --- process sampling ----------------------------------------------------------------------------


@dataclass
class Sample:
    wall: float
    cpu: float  # user + system seconds of the process (all threads) and of its reaped children
    rss: int  # bytes
    # CPU seconds of the live threads at nanosecond resolution (/proc/PID/task/*/schedstat), or
    # None; the tick-based `cpu` rounds to 10 ms, too coarse for an idle minute
    cpu_threads: float | None = None


def threads_cpu_seconds(pid: int) -> float | None:
    """Sum of the run time of pid's live threads from /proc/PID/task/*/schedstat (ns resolution);
    None when schedstat is unavailable. Threads that exited are not counted."""
    total = 0
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            try:
                with open(f"{task.path}/schedstat") as f:
                    total += int(f.read().split()[0])
            except FileNotFoundError:
                continue  # thread exited meanwhile
    except OSError:
        return None
    return total / 1e9


@dataclass
class ProcessSampler:
    """Samples one process's CPU time and RSS every interval_s on a background thread."""

    pid: int
    interval_s: float = 0.5
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> Sample | None:
        try:
            p = psutil.Process(self.pid)
            with p.oneshot():
                ct = p.cpu_times()
                cpu = ct.user + ct.system + ct.children_user + ct.children_system
                s = Sample(time.time(), cpu, p.memory_info().rss, threads_cpu_seconds(self.pid))
        except psutil.Error:
            return None
        self.samples.append(s)
        return s

    def start(self) -> ProcessSampler:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                self.sample()

        self.sample()
        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def peak_rss(self) -> int:
        """Highest resident size the kernel saw (VmHWM), falling back to the sampled maximum."""
        kib = vm_hwm_kib(self.pid)
        if kib is not None:
            return kib * 1024
        return max((s.rss for s in self.samples), default=0)


def vm_hwm_kib(pid: int | str) -> int | None:
    """Peak RSS (VmHWM) of a live process in KiB, from /proc; None once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def mib(n: float) -> float:
    return round(n / 2**20, 2)


def start_logged(argv: Sequence[str], log: Path, **kw: object) -> subprocess.Popen[bytes]:
    """Start a scheduler with stdout+stderr to a file (a pipe nobody reads would block it)."""
    fh = open(log, "wb")  # noqa: SIM115 - handed to the child, closed below
    try:
        return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
            list(argv), stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw
        )
    finally:
        fh.close()


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int | None:
    """SIGTERM, wait, SIGKILL if needed; returns the exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


def which_gorun() -> str | None:
    """The gorun console script of this checkout's virtualenv, else gorun on PATH."""
    venv = ROOT / ".venv" / "bin" / "gorun"
    return str(venv) if venv.exists() else shutil.which("gorun")
