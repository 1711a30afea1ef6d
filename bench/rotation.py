"""Rotation: one full pass of rotate + compress, ours vs logrotate (gzip, and zstd as its
compresscmd) on identical copies of one generated tree; quota-breach enforcement latency; idle
cost with 10,000 watched files.

    scripts/bench-peers-rotation            # installs logrotate, zstd (once)
    python -m bench.run rotation            # full: 300 files, ~2 GiB
    python -m bench.run rotation -- --quick # smoke: 30 files, ~60 MiB
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ProcessSampler, cache_dir, loadavg, mib, ratio, summarize

DESCRIPTION = "rotate+compress pass vs logrotate (gzip, zstd); quota enforcement latency; idle"

_WORDS = (
    'GET', 'POST', 'PUT', 'DELETE', '/api/v1/orders', '/api/v1/users', '/healthz',
    '/api/v2/cart', '/login', 'timeout', 'refused', 'accepted', 'committed', 'rollback',
    'cache-miss', 'cache-hit', 'retry', 'upstream', 'payment', 'inventory', 'session', 'token',
    'expired', 'validated',
)
_LEVELS = ("INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR")


def _gen_file(path: Path, size: int, rng: random.Random) -> None:
    t = 1_790_000_000.0
    out: list[str] = []
    written = 0
    with open(path, "w") as f:
        while written < size:
            for _ in range(2000):
                t += rng.random() * 0.01
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
                line = (f"{stamp}.{int(t * 1000) % 1000:03d}Z {rng.choice(_LEVELS)} "
                        f"[{rng.choice(_WORDS)}] req={rng.getrandbits(48):012x} "
                        f"user={rng.randrange(100000)} {rng.choice(_WORDS)} {rng.choice(_WORDS)} "
                        f"took={rng.randrange(1, 5000)}ms bytes={rng.randrange(100, 1 << 20)}\n")
                out.append(line)
            chunk = "".join(out)
            out.clear()
            f.write(chunk)
            written += len(chunk)


def corpus(files: int, size: int) -> Path:
    root = cache_dir() / "bench" / f"rotation-corpus-{files}x{size}"
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(42)
    for i in range(files):
        d = root / f"pod-{i // 10:03d}" / "logs"
        d.mkdir(parents=True, exist_ok=True)
        _gen_file(d / f"app{i % 10}.log", size, rng)
    (root / ".complete").touch()
    return root


def _tree_bytes(root: Path, suffix: str = "") -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name.endswith(suffix)
               and not p.name.startswith("."))


def _timed(argv: list[str]) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}


def _ours(work: Path, tree: Path, level: int, workers: int) -> dict[str, Any]:
    cfg = work / "ours.toml"
    cfg.write_text(f'state_dir = "{work / "state"}"\n[telemetry]\nlog_level = "warning"\n'
                   f'[[rotate]]\nname = "bench"\ndirectories = ["{tree}/*/logs"]\n'
                   f"rotate_size_bytes = 1\ncompress_level = {level}\n"
                   f"compress_workers = {workers}\n")
    return _timed([sys.executable, "-m", "opsagent.cli", "rotate", "--config", str(cfg), "--once"])


def _logrotate(work: Path, tree: Path, zstd: bool) -> dict[str, Any]:
    conf = work / f"logrotate-{'zstd' if zstd else 'gzip'}.conf"
    extra = ("compresscmd /usr/bin/zstd\nuncompresscmd /usr/bin/unzstd\ncompressext .zst\n"
             "compressoptions -3 -q\n") if zstd else ""
    conf.write_text(f"{tree}/*/logs/*.log {{\nsize 1\nrotate 10\ncompress\nnodelaycompress\n"
                    f"missingok\nnocreate\n{extra}}}\n")
    return _timed(["logrotate", "-s", str(work / f"{conf.stem}.state"), str(conf)])


def full_pass(work: Path, files: int, size: int) -> dict[str, Any]:
    src = corpus(files, size)
    input_bytes = _tree_bytes(src, ".log")
    runs: dict[str, Any] = {}
    ours_runs = {"ours_zstd3": (3, 1), "ours_zstd7": (7, 1), "ours_zstd3_2workers": (3, 2),
                 "ours_zstd7_2workers": (7, 2)}
    for name in (*ours_runs, "logrotate_gzip", "logrotate_zstd3"):
        tree = work / name
        shutil.rmtree(tree, ignore_errors=True)
        subprocess.run(["cp", "-a", str(src), str(tree)], check=True)
        subprocess.run(["sync"], check=True)
        if name in ours_runs:
            r = _ours(work, tree, *ours_runs[name])
            out = _tree_bytes(tree, ".zst")
        elif shutil.which("logrotate") is None:
            runs[name] = {"skipped": "logrotate not installed: run scripts/bench-peers-rotation"}
            continue
        else:
            r = _logrotate(work, tree, zstd=name.endswith("zstd3"))
            out = _tree_bytes(tree, ".zst" if name.endswith("zstd3") else ".gz")
        r["mb_per_s"] = round(input_bytes / 1e6 / r["wall_s"], 1)
        r["compression_ratio"] = round(out / input_bytes, 4)
        runs[name] = r
        shutil.rmtree(tree)
    gz, zs = runs["logrotate_gzip"].get("mb_per_s"), runs["logrotate_zstd3"].get("mb_per_s")
    return {
        "input": {"files": files, "mib": mib(input_bytes)},
        "runs": runs,
        "speed_vs_logrotate_gzip": {k: ratio(runs[k]["mb_per_s"], gz) for k in ours_runs},
        "speed_vs_logrotate_zstd3": {k: ratio(runs[k]["mb_per_s"], zs) for k in ours_runs},
    }


def _usage(d: Path) -> int:
    total = 0
    for name in os.listdir(d):
        try:
            total += os.stat(d / name).st_blocks * 512
        except FileNotFoundError:
            pass
    return total


def _agent(work: Path, policy: str) -> subprocess.Popen[bytes]:
    cfg = work / "agent.toml"
    cfg.write_text(f'state_dir = "{work / "state-live"}"\n[telemetry]\nlog_level = "warning"\n'
                   f'[[rotate]]\nname = "live"\ndirectories = ["{work / "live"}/*/logs"]\n'
                   f"{policy}\n")
    return subprocess.Popen([sys.executable, "-m", "opsagent.cli", "rotate", "--config", str(cfg)],
                            stderr=subprocess.DEVNULL)


def breach_latency(work: Path, breaches: int) -> dict[str, Any]:
    d = work / "live" / "pod-0" / "logs"
    shutil.rmtree(work / "live", ignore_errors=True)
    d.mkdir(parents=True)
    soft = 20 << 20
    agent = _agent(work, f"rotate_size_bytes = {1 << 20}\nkeep = 0\ncompress = false\n"
                         f"quota_soft_bytes = {soft}\nmin_interval_secs = 0.05")
    latencies: list[float] = []
    chunk = os.urandom(1 << 19).hex().encode()[: 1 << 20]
    try:
        time.sleep(1.0)
        deadline = time.monotonic() + 300
        while len(latencies) < breaches and time.monotonic() < deadline:
            with open(d / "app.log", "ab") as f:
                f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            if _usage(d) <= soft:
                time.sleep(0.02)
                continue
            t0 = time.perf_counter()
            while _usage(d) > soft and time.perf_counter() - t0 < 30:
                time.sleep(0.002)
            latencies.append(time.perf_counter() - t0)
    finally:
        agent.terminate()
        agent.wait(30)
    return {"breaches": len(latencies), "latency_s": summarize(latencies, 4)}


def idle(work: Path, files: int, secs: float) -> dict[str, Any]:
    root = work / "live"
    shutil.rmtree(root, ignore_errors=True)
    for i in range(files):
        d = root / f"pod-{i // 100:03d}" / "logs"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"app{i % 100}.log").write_bytes(b"small\n")
    agent = _agent(work, f"rotate_size_bytes = {100 << 20}\nquota_soft_bytes = {1 << 30}")
    try:
        time.sleep(3.0)  # startup and the first full pass are not idle
        sampler = ProcessSampler(agent.pid, interval_s=1.0).start()
        time.sleep(secs)
        sampler.stop()
        first, last = sampler.samples[0], sampler.samples[-1]
        cpu = 100.0 * (last.cpu - first.cpu) / (last.wall - first.wall)
        return {"files": files, "secs": secs, "cpu_percent_of_core": round(cpu, 3),
                "rss_mib": mib(last.rss), "peak_rss_mib": mib(sampler.peak_rss())}
    finally:
        agent.terminate()
        agent.wait(30)
        shutil.rmtree(root, ignore_errors=True)


_WRITER = """
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
i = 0
while not os.path.exists(sys.argv[2]):
    os.write(fd, b"%010d %s\\n" % (i, b"x" * 89))
    i += 1
os.write(fd, b"END %d\\n" % i)
"""


def copytruncate_loss(work: Path, rotations: int) -> dict[str, Any]:
    """A writer appends numbered 100-byte lines as fast as it can (O_APPEND) while copytruncate
    rotations run back to back; afterwards every archive + the active file are read and the
    missing sequence numbers counted: the loss window made visible."""
    root = work / "live"
    shutil.rmtree(root, ignore_errors=True)
    d = root / "pod-0" / "logs"
    d.mkdir(parents=True)
    stop_flag = work / "writer.stop"
    stop_flag.unlink(missing_ok=True)
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(d / "app.log"), str(stop_flag)])
    cfg = work / "ct.toml"
    cfg.write_text(f'state_dir = "{work / "state-ct"}"\n[telemetry]\nlog_level = "warning"\n'
                   f'[[rotate]]\nname = "ct"\ndirectories = ["{root}/*/logs"]\n'
                   'rotate_size_bytes = 1\nmethod = "copytruncate"\ncompress = false\nkeep = 0\n')
    try:
        time.sleep(0.2)
        for _ in range(rotations):
            subprocess.run([sys.executable, "-m", "opsagent.cli", "rotate", "--config", str(cfg),
                            "--once"], check=True)
            time.sleep(1.05)   # archive names are stamped to the second
    finally:
        stop_flag.touch()
        writer.wait(30)
    seen: set[int] = set()
    total = 0
    for p in d.iterdir():
        for line in p.read_bytes().splitlines():
            if line.startswith(b"END "):
                total = int(line.split()[1])
            elif line:
                seen.add(int(line.split()[0]))
    shutil.rmtree(root, ignore_errors=True)
    lost = total - len(seen)
    return {"rotations": rotations, "lines_written": total, "lines_lost": lost,
            "lost_per_rotation": round(lost / rotations, 2)}


def run(args: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="bench rotation")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--work", default=str(cache_dir() / "bench" / "rotation-work"))
    a = p.parse_args(args)
    files, size = (30, 2 << 20) if a.quick else (300, 7 << 20)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"loadavg_before": loadavg()}
    result["full_pass"] = full_pass(work, files, size)
    result["quota_breach"] = breach_latency(work, 20 if a.quick else 100)
    result["copytruncate_loss"] = copytruncate_loss(work, 5 if a.quick else 20)
    result["idle"] = idle(work, 10_000, 10.0 if a.quick else 60.0)
    result["loadavg_after"] = loadavg()
    return result
