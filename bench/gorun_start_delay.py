"""Start delay of 100 jobs firing together: gorun vs supercronic (seconds field) vs Debian cron
(minute boundaries), in the same run.

Method: every job is `STAMP FILE TAG`, a tiny C program whose first action is reading
CLOCK_REALTIME, run through each scheduler's /bin/sh -c. Two delays per job, both relative to the
scheduled instant (the nearest multiple of the period, so an early start shows as negative):
`first_action_ms`, the stamp's clock read, which includes the shell's fork+exec and the jobs'
competition for the CPU; and `spawn_ms`, the moment the job's process was forked, estimated as the
clock read minus the CPU time and run-queue wait the process accrued since fork
(/proc/self/schedstat; exec keeps the pid). `calibration_ms` checks both against sequential
`/bin/sh -c STAMP` runs forked by Python. Firings in the first --warmup-s seconds after a scheduler
starts are not counted.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common
from bench._schedulers import ALL, Scheduler, Unavailable

DESCRIPTION = (
    "start delay (p50/p99/max) of 100 jobs firing together: gorun vs supercronic (*/5 seconds) "
    "and Debian cron (minute boundaries); ratios ours/peer"
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gorun_start_delay")
    p.add_argument("--jobs", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5, help="firings measured (seconds schedules)")
    p.add_argument("--period-s", type=int, default=5, help="seconds field step: */N")
    p.add_argument("--cron-rounds", type=int, default=2, help="minute firings for Debian cron")
    p.add_argument("--warmup-s", type=float, default=3.0)
    p.add_argument("--only", default="gorun,supercronic,cron", help="comma-separated schedulers")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, 1 cron round")
    a = p.parse_args(argv)
    if a.quick:
        a.rounds, a.cron_rounds = 2, 1
    if not 1 <= a.period_s <= 30 or 60 % a.period_s:
        p.error("--period-s must divide 60")
    return a


def measure(
    sched: Scheduler, jobs: int, rounds: int, period_s: int, warmup_s: float, stamp: str
) -> dict[str, Any]:
    if sched.seconds:
        schedule = f"*/{period_s} * * * * * *"
    else:
        schedule, period_s = "* * * * *", 60
    with tempfile.TemporaryDirectory(prefix=f"bench-{sched.name}-") as tmp:
        workdir = Path(tmp)
        stamps = workdir / "stamps"
        lines = [sched.line(schedule, f"{stamp} {stamps} {i}") for i in range(jobs)]
        started = time.time()
        running = sched.start(lines, workdir)
        sampler = common.ProcessSampler(running.proc.pid).start()
        first = math.ceil((started + warmup_s) / period_s) * period_s
        last = first + (rounds - 1) * period_s
        try:
            # the last firing's jobs have 2 s to start (a late scheduler shows up as missing jobs)
            deadline = last + 2.0
            while time.time() < deadline and running.proc.poll() is None:
                time.sleep(min(0.5, max(0.0, deadline - time.time())))
        finally:
            died_early = running.proc.poll() is not None
            sampler.stop()
            rc = sched.stop(running)
            log_tail = running.log.read_text(errors="replace")[-600:]
        got = common.read_stamps(stamps)
    window = (first - period_s / 2, last + period_s / 2)
    by_round = _rounds([s.first_action for s in got], period_s, window)
    spawn_rounds = _rounds([s.spawned for s in got if s.spawned is not None], period_s, window)
    delays_ms = [d * 1000 for ds in by_round.values() for d in ds]
    spawn_ms = [d * 1000 for ds in spawn_rounds.values() for d in ds]
    cpu = sampler.samples[-1].cpu - sampler.samples[0].cpu if sampler.samples else None
    out: dict[str, Any] = {
        "schedule": schedule,
        "period_s": period_s,
        "rounds_expected": rounds,
        "rounds_seen": len(by_round),
        "jobs_expected": jobs * rounds,
        "jobs_seen": len(delays_ms),
        "first_action_ms": common.summarize(delays_ms),
        "spawn_ms": common.summarize(spawn_ms),
        "per_round_ms": [
            {"p50": round(common.percentile(ds, 50) * 1000, 3), "max": round(max(ds) * 1000, 3),
             "n": len(ds)}
            for ds in by_round.values()
        ],
        "scheduler_cpu_s": round(cpu, 3) if cpu is not None else None,
        "exit_status": rc,
        "died_before_stop": died_early,
    }
    if died_early or not delays_ms:
        out["log_tail"] = log_tail
    return out


def _rounds(
    times: list[float], period_s: int, window: tuple[float, float]
) -> dict[float, list[float]]:
    rounds = common.start_delays(times, period_s, not_before=window[0])
    return {s: d for s, d in rounds.items() if s <= window[1]}


def run(argv: list[str]) -> dict[str, Any]:
    a = parse_args(argv)
    stamp = common.stamp_binary()
    result: dict[str, Any] = {
        "params": {"jobs": a.jobs, "rounds": a.rounds, "period_s": a.period_s,
                   "cron_rounds": a.cron_rounds, "warmup_s": a.warmup_s, "quick": a.quick},
        "loadavg_before": common.loadavg(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        cal_first, cal_spawn = common.calibrate_spawn(stamp, Path(tmp))
    result["calibration_ms"] = {
        "first_action": common.summarize([s * 1000 for s in cal_first]),
        "spawn": common.summarize([s * 1000 for s in cal_spawn]),
    }
    for name in a.only.split(","):
        sched = ALL[name]()
        try:
            sched.check()
            rounds = a.rounds if sched.seconds else a.cron_rounds
            result[name] = measure(sched, a.jobs, rounds, a.period_s, a.warmup_s, stamp)
        except Unavailable as e:
            result[name] = {"skipped": str(e)}
        result[name]["loadavg_after"] = common.loadavg()
    ratios: dict[str, Any] = {}
    for peer in ("supercronic", "cron"):
        for measure_ in ("spawn_ms", "first_action_ms"):
            ours = result.get("gorun", {}).get(measure_, {})
            theirs = result.get(peer, {}).get(measure_, {})
            ratios[f"gorun/{peer} {measure_}"] = {
                k: common.ratio(ours.get(k), theirs.get(k)) for k in ("p50", "p99", "max")
            }
    result["ratios"] = ratios
    target: dict[str, Any] = {"gorun_p99_ms_max": 20.0}
    for measure_ in ("spawn_ms", "first_action_ms"):
        p99 = result.get("gorun", {}).get(measure_, {}).get("p99")
        target[f"met_{measure_}"] = p99 is not None and p99 <= 20.0
    result["target"] = target
    result["method"] = (__doc__ or "").split("\n\n", 1)[1].strip().replace("\n", " ")
    print_summary(result)
    return result


def print_summary(r: dict[str, Any]) -> None:
    cal = r["calibration_ms"]
    print(f"start delay, ms (load {r['loadavg_before']}; calibration: sequential /bin/sh -c STAMP "
          f"from Python: first action p50 {cal['first_action'].get('p50')}, "
          f"spawn p50 {cal['spawn'].get('p50')})")
    for name in ALL:
        if name not in r:
            continue
        m = r[name]
        if "skipped" in m:
            print(f"  {name:12s} skipped: {m['skipped']}")
            continue
        s, d = m["spawn_ms"], m["first_action_ms"]
        print(f"  {name:12s} spawn p50 {s.get('p50')} p99 {s.get('p99')} max {s.get('max')} | "
              f"first action p50 {d.get('p50')} p99 {d.get('p99')} max {d.get('max')}  "
              f"({m['jobs_seen']}/{m['jobs_expected']} jobs, {m['schedule']})")
    for k, v in r["ratios"].items():
        print(f"  {k}: {v}")
