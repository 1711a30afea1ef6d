"""The whole agent (`opsagent run`) with all four jobs configured: its idle footprint, then the
throughput of its forward and profile pipelines running at the same time.

Method: a local Kafka broker (scripts/kafka) and a UDP socket on 127.0.0.1 that counts the
statsd datagrams it receives. One agent is started with [cron] (ten jobs, none due during the
run), [[rotate]] (an empty directory, rescanned every 60 s), [[profile]] (statsd to the UDP
socket) and [[forward]] (to the broker), all on empty files.
Idle: once /readyz answers and the agent has settled (--settle-s), its CPU time is taken over
--duration-s of wall time from /proc/PID/task/*/schedstat (nanoseconds, summed over its live
threads), RSS sampled every 0.5 s; peak RSS is VmHWM (start-up included).
Throughput: two prepared files (--forward-lines lines of ~200 bytes; --profile-lines Motan lines)
are renamed into the watched directories at the same instant; the forward rate is lines over the
time until the topic's end offset reaches the line count (every record acknowledged by Kafka),
the profile rate lines over the time until the agent's opsagent_profile_lines_total reaches the
line count (every line parsed and aggregated).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench import common
from bench.kafka_forward import Topics, start_broker, stop_broker

DESCRIPTION = (
    "opsagent run with cron + rotate + profile + forward: idle RSS and CPU % of a core over a "
    "minute (targets <= 45 MB, < 0.1 %: issue 12), then forward and profile lines/s running "
    "together"
)

LINE_BYTES = 200
RSS_TARGET_MB = 45          # idle, all four jobs (issue 12, "Idle cost")
CPU_TARGET_PERCENT = 0.1    # of one core


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="agent")
    p.add_argument("--duration-s", type=float, default=60.0)
    p.add_argument("--settle-s", type=float, default=5.0)
    p.add_argument("--forward-lines", type=int, default=200_000)
    p.add_argument("--profile-lines", type=int, default=2_000_000)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 10 s idle, 50,000 forward and 500,000 profile lines")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    a = p.parse_args(argv)
    if a.quick:
        a.duration_s, a.forward_lines, a.profile_lines = 10.0, 50_000, 500_000
    return a


class UdpCounter:
    """Receives statsd datagrams on 127.0.0.1 and counts them (and their bytes)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port: int = self.sock.getsockname()[1]
        self.datagrams = 0
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.datagrams += 1
            self.bytes += len(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def config_text(work: Path, bootstrap: str, topic: str, statsd_port: int, http_port: int) -> str:
    return f"""
state_dir = "{work / 'state'}"
drain_deadline_secs = 20.0

[telemetry]
log_level = "warning"
http_listen = "127.0.0.1:{http_port}"

[cron]
crontabs = ["{work / 'crontab'}"]

[[rotate]]
name = "apps"
directories = ["{work}/pvc/*/logs"]
rotate_size_bytes = 104857600
quota_soft_bytes = 1073741824

[[profile]]
name = "shop"
preset = "motan"
interval_secs = 10
[profile.tail]
include = ["{work}/profile/*.log"]
start_at = "beginning"
[profile.statsd]
port = {statsd_port}

[[forward]]
name = "critical"
[forward.tail]
include = ["{work}/critical/*.log"]
[forward.kafka]
bootstrap_servers = ["{bootstrap}"]
topic = "{topic}"
"""


def crontab_text(now: time.struct_time) -> str:
    """Ten jobs in a month about half a year away: loaded and scheduled, none due."""
    month = (now.tm_mon + 5) % 12 + 1
    return "".join(f"{i} 3 1 {month} * echo job {i}\n" for i in range(10))


def make_forward_file(path: Path, n: int) -> None:
    with open(path, "wb") as f:
        for start in range(0, n, 10_000):
            f.write(b"".join(f"{i:010d} CRITICAL payment gateway timeout".ljust(LINE_BYTES - 1)
                             .encode() + b"\n" for i in range(start, min(n, start + 10_000))))


def make_profile_file(path: Path, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    methods = ("getOrder", "listOrders", "createOrder", "cancelOrder")
    with open(path, "w") as f:
        for start in range(0, n, 10_000):
            f.write("".join(
                f"server|shop|order|10.0.0.7|com.shop.OrderService|{rng.choice(methods)}|long|"
                f"10.0.0.9|web|web|{'true' if rng.random() < 0.98 else 'false'}|req{i}|120|800|"
                f"{(ms := int(rng.expovariate(1 / 20)) + 1) - 1}|{ms}\n"
                for i in range(start, min(n, start + 10_000))))


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


def metric(port: int, name: str) -> float:
    total = 0.0
    for line in http_get(port, "/metrics")[1].splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def poll(cond: Any, timeout: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def thread_wakeups(pid: int) -> dict[str, tuple[str, int]]:
    """Thread id -> (name, voluntary context switches so far): each is one sleep, so one
    wake-up."""
    out: dict[str, tuple[str, int]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = f.read()
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        n = int(status.split("voluntary_ctxt_switches:")[1].split()[0])
        out[tid] = (name, n)
    return out


def measure_idle(proc: subprocess.Popen[bytes], a: argparse.Namespace) -> dict[str, Any]:
    sampler = common.ProcessSampler(proc.pid).start()
    time.sleep(a.settle_s)
    cpu0 = common.threads_cpu_seconds(proc.pid)
    wakes0 = thread_wakeups(proc.pid)
    t0 = time.monotonic()
    time.sleep(a.duration_s)
    cpu1 = common.threads_cpu_seconds(proc.pid)
    wakes1 = thread_wakeups(proc.pid)
    wall = time.monotonic() - t0
    sampler.stop()
    rss = [s.rss for s in sampler.samples]
    out: dict[str, Any] = {
        "duration_s": round(wall, 1),
        "rss_mib_end": common.mib(rss[-1]) if rss else None,
        "rss_mib_peak": common.mib(sampler.peak_rss()),
        "rss_mb_end": round(rss[-1] / 1e6, 1) if rss else None,
    }
    if cpu0 is not None and cpu1 is not None:
        out["cpu_percent_of_core"] = round(common.cpu_percent(cpu1 - cpu0, wall), 3)
    # Where idle time goes: wake-ups per second by thread name (librdkafka names its threads
    # rdk:*; Python threads all show the process name).
    by_name: dict[str, float] = {}
    for tid, (name, n) in wakes1.items():
        if tid in wakes0:
            by_name[name] = by_name.get(name, 0.0) + (n - wakes0[tid][1]) / wall
    out["wakeups_per_sec"] = {k: round(v, 2) for k, v in sorted(by_name.items())}
    out["meets_rss_target"] = out["rss_mb_end"] is not None and out["rss_mb_end"] <= RSS_TARGET_MB
    out["meets_cpu_target"] = out.get("cpu_percent_of_core", 100.0) < CPU_TARGET_PERCENT
    return out


def measure_throughput(proc: subprocess.Popen[bytes], work: Path, http_port: int,
                       topics: Topics, topic: str, a: argparse.Namespace) -> dict[str, Any]:
    staging = work / "staging"
    staging.mkdir()
    fwd, prof = staging / "forward.log", staging / "access.log"
    make_forward_file(fwd, a.forward_lines)
    make_profile_file(prof, a.profile_lines)
    fwd_bytes, prof_bytes = fwd.stat().st_size, prof.stat().st_size
    cpu0 = common.threads_cpu_seconds(proc.pid)
    t0 = time.monotonic()
    os.rename(fwd, work / "critical" / "bench.log")
    os.rename(prof, work / "profile" / "bench.log")
    done: dict[str, float] = {}
    deadline = t0 + 600
    while len(done) < 2:
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"throughput run incomplete after 600 s: {done}")
        now = time.monotonic()
        if "forward" not in done and topics.count(topic) >= a.forward_lines:
            done["forward"] = now - t0
        if "profile" not in done and metric(http_port, "opsagent_profile_lines_total") >= \
                a.profile_lines:
            done["profile"] = now - t0
        time.sleep(0.05)
    cpu1 = common.threads_cpu_seconds(proc.pid)
    wall = max(done.values())
    out: dict[str, Any] = {
        "forward": {"lines": a.forward_lines, "mb": round(fwd_bytes / 1e6, 1),
                    "seconds": round(done["forward"], 2),
                    "lines_per_sec": round(a.forward_lines / done["forward"])},
        "profile": {"lines": a.profile_lines, "mb": round(prof_bytes / 1e6, 1),
                    "seconds": round(done["profile"], 2),
                    "lines_per_sec": round(a.profile_lines / done["profile"])},
        "peak_rss_mib": common.mib(common.ProcessSampler(proc.pid).peak_rss()),
    }
    if cpu0 is not None and cpu1 is not None:
        out["cpu_percent_of_core"] = round(common.cpu_percent(cpu1 - cpu0, wall), 1)
    return out


def run(args: list[str]) -> dict[str, Any]:
    a = parse_args(args)
    work = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    for sub in ("critical", "profile", "pvc/pod-a/logs", "state"):
        (work / sub).mkdir(parents=True)
    (work / "critical" / "critical.log").touch()
    (work / "profile" / "access.log").touch()
    (work / "pvc" / "pod-a" / "logs" / "app.log").touch()
    (work / "crontab").write_text(crontab_text(time.gmtime()))
    out: dict[str, Any] = {"loadavg_at_start": common.loadavg()}
    broker_dir = work / "kafka"
    bootstrap = start_broker(broker_dir)
    topics = Topics(bootstrap)
    udp = UdpCounter()
    proc: subprocess.Popen[bytes] | None = None
    try:
        topic = "bench-agent"
        topics.create(topic)
        http_port = free_port()
        cfg = work / "opsagent.toml"
        cfg.write_text(config_text(work, bootstrap, topic, udp.port, http_port))
        opsagent = str(Path(sys.executable).with_name("opsagent"))
        proc = common.start_logged([opsagent, "run", "--config", str(cfg)], work / "agent.log")
        poll(lambda: _ready(http_port), 60, "readiness", proc)
        out["idle"] = measure_idle(proc, a)
        out["throughput"] = measure_throughput(proc, work, http_port, topics, topic, a)
        out["exit_code"] = common.stop(proc, 60)   # SIGTERM flushes the open interval
        time.sleep(0.5)                               # datagrams in flight to our socket
        out["statsd_datagrams"] = udp.datagrams
    finally:
        if proc is not None:
            common.stop(proc, 60)
        udp.close()
        topics.close()
        stop_broker(broker_dir)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    out["targets"] = {"idle_rss_mb": RSS_TARGET_MB, "idle_cpu_percent_of_core": CPU_TARGET_PERCENT}
    out["notes"] = ("One agent process; forward and profile files renamed into place at the "
                    "same instant; forward done = Kafka end offset reached, profile done = "
                    "every line aggregated. Shared 2-core machine: see loadavg_at_start.")
    return out


def _ready(port: int) -> bool:
    try:
        return http_get(port, "/readyz")[0] == 200
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
