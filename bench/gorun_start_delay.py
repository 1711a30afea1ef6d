"""Start delay of 100 jobs firing together: gorun vs supercronic (seconds field) vs Debian cron
(minute boundaries), in the same run.

Method: every job is `STAMP FILE TAG`, a tiny C program whose first action is reading
CLOCK_REALTIME, run through each scheduler's /bin/sh -c. gorun and supercronic run at the same
time, interleaved: with --period-s 10 gorun's jobs fire at seconds 0, 10, 20... and supercronic's at
5, 15, 25..., so both see the same background load but never start jobs at the same moment. Debian
cron (minute granularity) runs after them, alone. Two delays per job, relative to the scheduled
instant (the nearest one, so an early start shows as negative): `first_action_ms`, the stamp's
clock read - what a job sees, and the headline number; and `spawn_ms`, the clock read minus the
CPU time and run-queue wait the process accrued since fork (/proc/self/schedstat; exec keeps the
pid): the fork moment for a scheduler that forks at the second, but not for gorun, which forks its
jobs ahead of time behind a gate (time blocked at the gate is not subtracted). `calibration_ms`
measures sequential `/bin/sh -c STAMP` runs forked by Python. `floor` (bench/_gate_floor.py, first,
alone) is the same 100 jobs with no scheduler: prestarted behind gorun's gate script by this
script and released at a whole second - what waking and exec'ing 100 jobs costs on this machine.
Firings in the first --warmup-s seconds after the schedulers start are not counted.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import _gate_floor, common
from bench._schedulers import ALL, Running, Scheduler, Unavailable

DESCRIPTION = (
    "start delay (p50/p99/max) of 100 jobs firing together: gorun vs supercronic (seconds field, "
    "interleaved) and Debian cron (minute boundaries); ratios ours/peer"
)
MEASURES = ("first_action_ms", "spawn_ms")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gorun_start_delay")
    p.add_argument("--jobs", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5, help="firings measured (seconds schedules)")
    p.add_argument("--period-s", type=int, default=10, help="seconds between firings")
    p.add_argument("--cron-rounds", type=int, default=2, help="minute firings for Debian cron")
    p.add_argument("--warmup-s", type=float, default=3.0)
    p.add_argument("--only", default="gorun,supercronic,cron", help="comma-separated schedulers")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, 1 cron round")
    a = p.parse_args(argv)
    if a.quick:
        a.rounds, a.cron_rounds = 2, 1
    if not 2 <= a.period_s <= 30 or 60 % a.period_s:
        p.error("--period-s must divide 60 and be at least 2")
    return a


@dataclass
class Subject:
    sched: Scheduler
    period_s: int
    offset_s: int
    schedule: str
    workdir: Path
    running: Running | None = None
    sampler: common.ProcessSampler | None = None
    died_early: bool = False
    exit_status: int | None = None
    error: str | None = None


def measure(scheds: list[Scheduler], jobs: int, rounds: int, period_s: int, warmup_s: float,
            stamp: str, tmp: Path) -> dict[str, dict[str, Any]]:
    """Run scheds at the same time, each firing `jobs` jobs every period (offset from each other)
    or every minute (cron); return the per-scheduler results."""
    subjects = []
    for i, sched in enumerate(scheds):
        if sched.seconds:
            offset = i * period_s // len(scheds)
            subjects.append(Subject(sched, period_s, offset,
                                    f"{offset}-59/{period_s} * * * * * *", tmp / sched.name))
        else:
            subjects.append(Subject(sched, 60, 0, "* * * * *", tmp / sched.name))
    started = time.time()
    try:
        for s in subjects:
            s.workdir.mkdir()
            stamps = s.workdir / "stamps"
            lines = [s.sched.line(s.schedule, f"{stamp} {stamps} {i}") for i in range(jobs)]
            try:
                s.running = s.sched.start(lines, s.workdir)
            except Unavailable as e:
                s.error = str(e)
                continue
            s.sampler = common.ProcessSampler(s.running.proc.pid).start()
        windows = {id(s): _window(s, started + warmup_s, rounds) for s in subjects}
        # the last firing's jobs have 2 s to start (a late scheduler shows up as missing jobs)
        deadline = max(w[1] for w in windows.values()) + 2.0
        live = [s.running for s in subjects if s.running is not None]
        while live and time.time() < deadline and all(r.proc.poll() is None for r in live):
            time.sleep(min(0.5, max(0.0, deadline - time.time())))
    finally:
        for s in subjects:
            if s.running is not None:
                s.died_early = s.running.proc.poll() is not None
                if s.sampler is not None:
                    s.sampler.stop()
                s.exit_status = s.sched.stop(s.running)
    return {s.sched.name: _result(s, windows[id(s)], jobs, rounds) for s in subjects}


def _window(s: Subject, not_before: float, rounds: int) -> tuple[float, float]:
    """First and last scheduled instant measured for s."""
    first = math.ceil((not_before - s.offset_s) / s.period_s) * s.period_s + s.offset_s
    return first, first + (rounds - 1) * s.period_s


def _result(s: Subject, window: tuple[float, float], jobs: int, rounds: int) -> dict[str, Any]:
    if s.error is not None:
        return {"skipped": s.error}
    got = common.read_stamps(s.workdir / "stamps")
    half = s.period_s / 2
    delays: dict[str, dict[float, list[float]]] = {}
    for m, times in (("first_action_ms", [x.first_action for x in got]),
                     ("spawn_ms", [x.spawned for x in got if x.spawned is not None])):
        rounds_ = common.start_delays(times, s.period_s, window[0] - half, offset_s=s.offset_s)
        delays[m] = {k: v for k, v in rounds_.items() if k <= window[1] + half}
    first_ms = [d * 1000 for ds in delays["first_action_ms"].values() for d in ds]
    smp = s.sampler.samples if s.sampler is not None else []
    out: dict[str, Any] = {
        "schedule": s.schedule,
        "rounds_expected": rounds,
        "rounds_seen": len(delays["first_action_ms"]),
        "jobs_expected": jobs * rounds,
        "jobs_seen": len(first_ms),
    }
    for m, by_round in delays.items():
        out[m] = common.summarize([d * 1000 for ds in by_round.values() for d in ds])
    out["per_round_first_action_ms"] = [
        {"p50": round(common.percentile(ds, 50) * 1000, 3), "max": round(max(ds) * 1000, 3),
         "n": len(ds)}
        for ds in delays["first_action_ms"].values()
    ]
    out["scheduler_cpu_s"] = round(smp[-1].cpu - smp[0].cpu, 3) if smp else None
    out["exit_status"] = s.exit_status
    out["died_before_stop"] = s.died_early
    if (s.died_early or not first_ms) and s.running is not None:
        out["log_tail"] = s.running.log.read_text(errors="replace")[-600:]
    return out


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
    if "gorun" in a.only.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-gate-floor-") as tmp:
            floor = _gate_floor.measure(stamp, Path(tmp), a.jobs, a.rounds)
        result["floor"] = {"first_action_ms": common.summarize([d * 1000 for d in floor]),
                           "jobs_seen": len(floor), "jobs_expected": a.jobs * a.rounds,
                           "loadavg_after": common.loadavg()}
    usable: list[Scheduler] = []
    for name in a.only.split(","):
        sched = ALL[name]()
        try:
            sched.check()
            usable.append(sched)
        except Unavailable as e:
            result[name] = {"skipped": str(e)}
    # the seconds-capable schedulers together (interleaved), then each minute-only one alone
    groups = [[s for s in usable if s.seconds]] + [[s] for s in usable if not s.seconds]
    for group in groups:
        if not group:
            continue
        rounds = a.rounds if group[0].seconds else a.cron_rounds
        with tempfile.TemporaryDirectory(prefix="bench-start-delay-") as tmp:
            got = measure(group, a.jobs, rounds, a.period_s, a.warmup_s, stamp, Path(tmp))
        for name, r in got.items():
            result[name] = {**r, "loadavg_after": common.loadavg()}
    ratios: dict[str, Any] = {}
    for peer in ("supercronic", "cron"):
        for m in MEASURES:
            ours = result.get("gorun", {}).get(m, {})
            theirs = result.get(peer, {}).get(m, {})
            ratios[f"gorun/{peer} {m}"] = {
                k: common.ratio(ours.get(k), theirs.get(k)) for k in ("p50", "p99", "max")
            }
    floor_ms = result.get("floor", {}).get("first_action_ms", {})
    ours_ms = result.get("gorun", {}).get("first_action_ms", {})
    ratios["gorun/floor first_action_ms"] = {
        k: common.ratio(ours_ms.get(k), floor_ms.get(k)) for k in ("p50", "p99", "max")}
    result["ratios"] = ratios
    p99 = result.get("gorun", {}).get("first_action_ms", {}).get("p99")
    result["target"] = {"gorun_first_action_p99_ms_max": 20.0,
                        "met": p99 is not None and p99 <= 20.0}
    result["method"] = (__doc__ or "").split("\n\n", 1)[1].strip().replace("\n", " ")
    print_summary(result)
    return result


def print_summary(r: dict[str, Any]) -> None:
    cal = r["calibration_ms"]
    print(f"start delay, ms (load {r['loadavg_before']}; calibration: sequential /bin/sh -c STAMP "
          f"from Python: first action p50 {cal['first_action'].get('p50')})")
    if "floor" in r:
        f = r["floor"]["first_action_ms"]
        print(f"  {'floor':12s} first action p50 {f.get('p50')} p99 {f.get('p99')} "
              f"max {f.get('max')} (no scheduler: gated shells released by hand)")
    for name in ALL:
        if name not in r:
            continue
        m = r[name]
        if "skipped" in m:
            print(f"  {name:12s} skipped: {m['skipped']}")
            continue
        d, s = m["first_action_ms"], m["spawn_ms"]
        print(f"  {name:12s} first action p50 {d.get('p50')} p99 {d.get('p99')} max {d.get('max')}"
              f" | spawn p50 {s.get('p50')} p99 {s.get('p99')}  "
              f"({m['jobs_seen']}/{m['jobs_expected']} jobs, {m['schedule']})")
    for k, v in r["ratios"].items():
        print(f"  {k}: {v}")
