"""Profile-log statistics throughput: `opsagent profile replay` vs mtail on one generated log.

One Motan-style access log (pipe-delimited, the `motan` preset's 16 fields) of a few million
lines is generated once into $OPSAGENT_CACHE/bench (lognormal latencies per interface/method,
Zipf-like traffic over a few dozen label sets, ~1 % errors), together with the exact statistics
of what was written. In the same run, on the same file, each single process reads the whole file
once and computes count, errors and a latency distribution per (interface, method):

  ours:  opsagent profile replay --config motan.toml LOG   (read + parse + aggregate + emit the
         statsd wire lines; DDSketch percentiles)
  mtail: mtail --one_shot --logs LOG --progs DIR           (read + regex + counters + histogram)

Both are timed by the CPU time (user + sys, from wait4) of the child process, so the result is
lines per second per core whatever the other load on the machine; an empty-log run of each is
subtracted to report steady-state throughput without start-up. RSS is ru_maxrss. Our percentile
answers are compared with exact values (same rank definition: nearest rank) and mtail's
histogram quantiles (linear interpolation in the bucket, as Prometheus' histogram_quantile) too.

With --time-column every line starts with a millisecond time (logback
`%d{yyyy-MM-dd HH:mm:ss.SSS} %m%n`, the `motan_timed` preset), --rate lines per second: ours
takes each line's interval from it, mtail parses it with strptime (its way of using log time).

    python -m bench.run profile_throughput                  # 3M lines
    python -m bench.run profile_throughput -- --lines 200000 --skip-mtail
    python -m bench.run profile_throughput -- --time-column --lines 1000000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

DESCRIPTION = ("profile statistics: lines/s/core and RSS of `opsagent profile replay` vs mtail "
               "--one_shot on one generated Motan-style log, and sketch percentile error")

CACHE = Path(os.environ.get("OPSAGENT_CACHE", Path.home() / ".cache" / "opsagent")) / "bench"
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
MTAIL_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
GEN_VERSION = 2  # bump when the generated content changes, so cached logs are regenerated
# --time-column: the log's first line is at this UTC time (an hour boundary) and the pipeline's
# interval is an hour, so the whole file is one interval (percentiles compare with the exact
# values of the file); the wall clock is pinned inside that hour.
TIMED_START = 1_699_999_200
TIMED_INTERVAL_SECS = 3600



def mtail_regex(timed: bool = False) -> str:
    """The Motan line as an mtail regex: the fields our preset uses are named groups (same
    positions as opsagent.processors.profile.presets.MOTAN_FIELDS), the rest skipped; timed:
    the millisecond time prefix too."""
    from opsagent.processors.profile.presets import MOTAN_FIELDS

    wanted = {"interface": "[^|]*", "method": "[^|]*", "success": "[^|]*",
              "whole_time": r"\d+"}
    parts = [f"(?P<{f}>{wanted[f]})" if f in wanted else "[^|]*" for f in MOTAN_FIELDS]
    prefix = r"(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) " if timed else ""
    return "^" + prefix + r"\|".join(parts) + "$"


def mtail_program(timed: bool = False) -> str:
    """count, errors and a latency histogram per (interface, method): what our motan preset
    computes, less the sketch; timed: each line's time parsed (strptime) as its timestamp."""
    stamp = '\n  strptime($time, "2006-01-02 15:04:05.000")' if timed else ""
    return f"""\
counter profile_requests_total by interface, method
counter profile_errors_total by interface, method
histogram profile_latency_ms by interface, method buckets {", ".join(map(str, MTAIL_BUCKETS))}

/{mtail_regex(timed)}/ {{{stamp}
  profile_requests_total[$interface][$method]++
  $success == "false" {{
    profile_errors_total[$interface][$method]++
  }}
  profile_latency_ms[$interface][$method] = $whole_time
}}
"""


# --- the generated log ---------------------------------------------------------------------------


def series_table(n_series: int, rng: random.Random) -> list[tuple[str, str, float, float, float]]:
    """(interface, method, weight, mu, sigma) per label set: Zipf-like weights, medians from
    ~2 ms to ~150 ms, some tails heavier than others."""
    services = ["User", "Order", "Payment", "Feed", "Search", "Comment", "Message", "Relation",
                "Media", "Account", "Ads", "Geo", "Config", "Audit"]
    methods = ["get", "list", "create", "update", "delete", "batchGet", "count"]
    out = []
    for i in range(n_series):
        svc = services[i % len(services)]
        method = methods[(i // len(services) + i) % len(methods)]
        iface = f"com.example.{svc.lower()}.api.{svc}Service"
        weight = 1.0 / (i + 1) ** 0.8
        mu = rng.uniform(math.log(2), math.log(150))
        sigma = rng.uniform(0.4, 1.2)
        out.append((iface, method, weight, mu, sigma))
    return out


def nearest_rank(p: float, n: int) -> int:
    """0-based rank of the nearest-rank p-th percentile of n values (docs/profile.md), the
    rank our sketch estimates."""
    return max(0, math.ceil(p / 100 * n - 1e-9) - 1)


def time_prefix(n: int, rate: int) -> str:
    """The logback time of line n at `rate` lines per second from TIMED_START (UTC)."""
    ms = TIMED_START * 1000 + n * 1000 // rate
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d} "


def generate(path: Path, lines: int, n_series: int, error_rate: float, seed: int,
             rate: int = 0) -> dict[str, Any]:
    """Write the log to `path` and return the exact statistics of what was written; rate > 0:
    each line starts with a millisecond time, `rate` lines per second."""
    rng = random.Random(seed)
    table = series_table(n_series, rng)
    cum: list[float] = []
    total = 0.0
    for _i, _m, w, _mu, _s in table:
        total += w
        cum.append(total)
    lat: list[array[int]] = [array("q") for _ in table]
    errors = [0] * len(table)
    sums = [0] * len(table)
    choose = rng.choices
    idx_all = range(len(table))
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", buffering=1 << 20) as f:
        done = 0
        while done < lines:
            chunk = min(100_000, lines - done)
            picks = choose(idx_all, cum_weights=cum, k=chunk)
            out = []
            for j, k in enumerate(picks):
                iface, method, _w, mu, sigma = table[k]
                whole = max(1, int(rng.lognormvariate(mu, sigma)))
                ok = rng.random() >= error_rate
                if not ok:
                    errors[k] += 1
                lat[k].append(whole)
                sums[k] += whole
                seg = max(0, whole - 1 - (whole >> 3))
                n = done + j
                out.append(
                    (time_prefix(n, rate) if rate else "") +
                    f"server|feed-api|feed|10.12.{(k >> 8) & 255}.{k & 255}|{iface}|{method}|"
                    f"java.lang.Long,java.lang.String|10.40.{n % 200}.{n % 251}|feed-web|web|"
                    f"{'true' if ok else 'false'}|{1_700_000_000_000 + n}|{120 + n % 900}|"
                    f"{300 + n % 4000}|{seg}|{whole}\n")
            f.write("".join(out))
            done += chunk
    tmp.replace(path)
    series = {}
    for k, (iface, method, *_rest) in enumerate(table):
        xs = sorted(lat[k])
        if not xs:
            continue
        n = len(xs)
        series[f"{iface}|{method}"] = {
            "interface": iface, "method": method, "count": n, "errors": errors[k],
            "sum": sums[k], "min": xs[0], "max": xs[-1],
            "percentiles": {str(p): xs[nearest_rank(p, n)] for p in PERCENTILES},
        }
    return {"lines": lines, "errors": sum(errors), "series": series}


def ensure_log(lines: int, n_series: int, error_rate: float,
               seed: int, rate: int = 0) -> tuple[Path, dict[str, Any]]:
    CACHE.mkdir(parents=True, exist_ok=True)
    stem = f"profile-motan-v{GEN_VERSION}-{lines}-{n_series}-{error_rate}-{seed}"
    if rate:
        if lines / rate >= TIMED_INTERVAL_SECS:
            raise ValueError("--time-column: lines / rate must stay within one hour")
        stem += f"-timed{rate}"
    log, exact_path = CACHE / f"{stem}.log", CACHE / f"{stem}.exact.json"
    if log.exists() and exact_path.exists():
        return log, json.loads(exact_path.read_text())
    started = time.monotonic()
    exact = generate(log, lines, n_series, error_rate, seed, rate)
    exact["generate_secs"] = round(time.monotonic() - started, 1)
    exact_path.write_text(json.dumps(exact, indent=1))
    return log, exact


# --- measuring a child process -------------------------------------------------------------------


def vm_hwm_kib(pid: int | str) -> int | None:
    """Peak RSS (VmHWM) of a live process, from /proc; None once it has exited. A copy of
    bench.common.vm_hwm_kib on purpose: the measured child runs this module and must not pay
    for bench.common's imports (psutil) in the RSS it reports."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def measure(argv: list[str], stdout_path: Path, cwd: Path) -> dict[str, Any]:
    """Run argv to completion; CPU seconds (user + sys, from wait4), wall seconds, peak RSS.

    Peak RSS is VmHWM sampled every 10 ms, not wait4's ru_maxrss: Linux carries a process's
    maxrss across fork+exec, so ru_maxrss would report this (bigger) parent's RSS. A child may
    add its own exact VmHWM at exit as a line `vmhwm_kib=N` on stderr."""
    import threading

    started = time.monotonic()
    peak = [0]
    done = threading.Event()
    err_path = stdout_path.with_name(stdout_path.name + ".err")  # beside stdout, never in cwd
    with stdout_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd)

        def sample() -> None:
            while not done.is_set():
                v = vm_hwm_kib(proc.pid)
                if v is not None:
                    peak[0] = max(peak[0], v)
                done.wait(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _pid, status, ru = os.wait4(proc.pid, 0)
        done.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    for line in err_path.read_text(errors="replace").splitlines():
        if line.startswith("vmhwm_kib="):
            peak[0] = max(peak[0], int(line.split("=", 1)[1]))
    return {
        "rc": proc.returncode,
        "cpu_secs": ru.ru_utime + ru.ru_stime,
        "user_secs": ru.ru_utime,
        "sys_secs": ru.ru_stime,
        "wall_secs": time.monotonic() - started,
        "max_rss_mib": round(peak[0] / 1024, 1),
    }


def throughput(lines: int, run: dict[str, Any], empty: dict[str, Any]) -> dict[str, Any]:
    net = max(run["cpu_secs"] - empty["cpu_secs"], 1e-9)
    return {
        "cpu_secs": round(run["cpu_secs"], 3),
        "startup_cpu_secs": round(empty["cpu_secs"], 3),
        "wall_secs": round(run["wall_secs"], 3),
        "lines_per_cpu_sec": round(lines / max(run["cpu_secs"], 1e-9)),
        "lines_per_cpu_sec_without_startup": round(lines / net),
        "max_rss_mib": run["max_rss_mib"],
    }


# --- mtail ---------------------------------------------------------------------------------------


def histogram_quantile(q: float, buckets: dict[float, int], count: int) -> float:
    """Prometheus' histogram_quantile on cumulative `le` buckets (linear within the bucket)."""
    rank = q * count
    prev_le, prev_cum = 0.0, 0
    for le in sorted(buckets):
        cum = buckets[le]
        if cum >= rank:
            if math.isinf(le):
                return prev_le  # as Prometheus: the highest finite bound
            if cum == prev_cum:
                return le
            return prev_le + (le - prev_le) * (rank - prev_cum) / (cum - prev_cum)
        prev_le, prev_cum = le, cum
    return prev_le


def parse_mtail(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """mtail's one_shot JSON -> {"iface|method": {count, errors, buckets (cumulative)}}."""
    series: dict[str, dict[str, Any]] = {}

    def entry(labels: list[str]) -> dict[str, Any]:
        return series.setdefault("|".join(labels), {"count": 0, "errors": 0, "buckets": {}})

    for m in out.get("profile_requests_total", []):
        for lv in m.get("LabelValues", []):
            entry(lv["Labels"])["count"] = int(lv["Value"]["Value"])
    for m in out.get("profile_errors_total", []):
        for lv in m.get("LabelValues", []):
            entry(lv["Labels"])["errors"] = int(lv["Value"]["Value"])
    for m in out.get("profile_latency_ms", []):
        for lv in m.get("LabelValues", []):
            e = entry(lv["Labels"])
            e["hist_count"] = int(lv["Value"]["Count"])
            # mtail's JSON holds per-bucket (not cumulative) counts keyed by upper bound.
            per = {float(le): int(n) for le, n in lv["Value"]["Buckets"].items()}
            cum, acc = {}, 0
            for le in sorted(per):
                acc += per[le]
                cum[le] = acc
            e["buckets"] = cum
    return series


def run_mtail(log: Path, empty_log: Path, work: Path, http_port: int,
              timed: bool = False) -> dict[str, Any]:
    mtail = shutil.which("mtail")
    if mtail is None:  # install the peer (Debian package) the way a user would
        script = Path(__file__).resolve().parent.parent / "scripts" / "bench-peers-profile"
        subprocess.run(["bash", str(script)], check=False)
        mtail = shutil.which("mtail")
    if mtail is None:
        return {"skipped": "mtail not installed and scripts/bench-peers-profile failed"}
    progs = work / "mtail-progs"
    progs.mkdir(exist_ok=True)
    (progs / "profile.mtail").write_text(mtail_program(timed))

    def argv(path: Path) -> list[str]:
        # one_shot still opens its HTTP listener: keep it on 127.0.0.1 and a free port.
        return [mtail, "--one_shot", "--one_shot_format=json", "--progs", str(progs),
                "--logs", str(path), "--address=127.0.0.1", f"--port={http_port}",
                "--emit_prog_label=false", "--logtostderr"]

    empty = measure(argv(empty_log), work / "mtail-empty.json", work)
    run = measure(argv(log), work / "mtail.json", work)
    if run["rc"] != 0:
        err = (work / "mtail.json.err").read_text(errors="replace")[-2000:]
        return {"failed": f"mtail exited {run['rc']}: {err}"}
    parsed = parse_mtail(json.loads((work / "mtail.json").read_text()))
    return {"run": run, "empty": empty, "series": parsed,
            "version": subprocess.run([mtail, "--version"], capture_output=True, text=True,
                                      check=False).stdout.splitlines()[0]}


# --- ours ----------------------------------------------------------------------------------------

PIPELINE = "bench"
BENCH_WALL_TIME = 1_700_000_000.0  # every line lands in one interval: compare with exact values


def config_toml(log: Path, timed: bool = False, interval_secs: int | None = None) -> str:
    # One interval for the whole file (the wall clock is pinned, see _child_pipeline; timed:
    # an hour holding every line's time), so the percentiles sent are those of all lines of a
    # series and compare with the exact ones.
    interval = interval_secs or (TIMED_INTERVAL_SECS if timed else 10)
    return f"""\
[[profile]]
name = "{PIPELINE}"
preset = "{'motan_timed' if timed else 'motan'}"
interval_secs = {interval}
percentiles = [{", ".join(str(p) for p in PERCENTILES)}]
relative_accuracy = 0.01

[profile.tail]
include = ["{log}"]
start_at = "beginning"

[profile.statsd]
host = "127.0.0.1"
port = 9
"""


def _child_pipeline(config: str, lines: int, out: str, wall_time: float) -> int:
    """The measured child for `ours`: the agent's ProfilePipeline (TailSource -> parse ->
    aggregate -> statsd sink over UDP) on the log, until `lines` lines went through, then stop()
    (sends the interval). The statsd datagrams go to a socket of this process and are saved."""
    import dataclasses
    import socket

    import prometheus_client

    from opsagent.config import schema
    from opsagent.pipelines.profile import ProfilePipeline

    class PinnedWallClock:
        def time(self) -> float:
            return wall_time

        def monotonic(self) -> float:
            return time.monotonic()

    recv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    recv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    recv.bind(("127.0.0.1", 0))
    cfg = schema.load(config).profile[0]
    assert cfg.statsd is not None
    cfg = dataclasses.replace(cfg, statsd=dataclasses.replace(
        cfg.statsd, port=recv.getsockname()[1]))
    pipeline = ProfilePipeline(cfg, clock=PinnedWallClock(),
                               registry=prometheus_client.CollectorRegistry())
    pipeline.start(thread=False)
    done, deadline = 0, time.monotonic() + 1800
    while done < lines:
        done += pipeline.run_once()
        if time.monotonic() > deadline:
            print(f"only {done} of {lines} lines after 1800 s", file=sys.stderr)
            return 1
    pipeline.stop()
    print(f"vmhwm_kib={vm_hwm_kib('self')}", file=sys.stderr)
    recv.setblocking(False)
    with open(out, "w") as f:
        while True:
            try:
                f.write(recv.recv(65536).decode() + "\n")
            except BlockingIOError:
                break
    return 0


def parse_statsd(text: str) -> dict[str, dict[str, float]]:
    """statsd wire lines `profile_bench_<stat>#interface=I,method=M:V|t` ->
    {"I|M": {stat: value}} (counters summed)."""
    base = f"profile_{PIPELINE}_"
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line.startswith(base) or "#" not in line:
            continue
        name, rest = line[len(base):].split("#", 1)
        tags, _, value = rest.rpartition(":")
        v = float(value.split("|", 1)[0])
        labels = dict(t.split("=", 1) for t in tags.split(","))
        if "interface" not in labels:
            continue
        stats = out.setdefault(f"{labels['interface']}|{labels['method']}", {})
        stats[name] = stats.get(name, 0.0) + v if value.endswith("|c") else v
    return out


def ours_argv_pipeline(config: Path, lines: int, out: Path,
                       wall_time: float = BENCH_WALL_TIME) -> list[str]:
    return [sys.executable, "-m", "bench.profile_throughput", "--child-pipeline", str(config),
            str(lines), str(out), str(wall_time)]


def opsagent_script() -> str:
    script = Path(sys.executable).with_name("opsagent")
    return str(script) if script.exists() else (shutil.which("opsagent") or "opsagent")


# --- comparing with the exact values -------------------------------------------------------------


def rel_err(est: float, exact: float) -> float:
    return abs(est - exact) / exact if exact else abs(est)


def percentile_errors(exact: dict[str, Any], estimates: dict[str, dict[float, float]]
                      ) -> dict[str, dict[str, float]]:
    """Per percentile: max and mean relative error over the series, vs the exact values."""
    out = {}
    for p in PERCENTILES:
        errs = [rel_err(estimates[k][p], s["percentiles"][str(p)])
                for k, s in exact["series"].items() if k in estimates]
        if errs:
            out[f"p{p:g}".replace(".", "")] = {
                "max_rel_err": round(max(errs), 5), "mean_rel_err": round(sum(errs) / len(errs), 5),
                "series": len(errs)}
    return out


def ours_estimates(parsed: dict[str, dict[str, float]]) -> dict[str, dict[float, float]]:
    names = {50.0: "latency_p50", 90.0: "latency_p90", 99.0: "latency_p99", 99.9: "latency_p999"}
    return {k: {p: v[n] for p, n in names.items() if n in v} for k, v in parsed.items()}


def counts_match(exact: dict[str, Any],
                 counts: dict[str, tuple[float | None, float | None]]) -> bool:
    return all(counts.get(k) == (s["count"], s["errors"]) for k, s in exact["series"].items())


# --- the benchmark -------------------------------------------------------------------------------


def run(args: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="bench profile_throughput")
    p.add_argument("--lines", type=int, default=3_000_000)
    p.add_argument("--series", type=int, default=40, help="(interface, method) label sets")
    p.add_argument("--error-rate", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--skip-mtail", action="store_true")
    p.add_argument("--skip-replay", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the work dir (outputs, configs)")
    p.add_argument("--time-column", action="store_true",
                   help="lines start with a millisecond time (preset motan_timed)")
    p.add_argument("--rate", type=int, default=20_000,
                   help="--time-column: lines per second of log time")
    a = p.parse_args(args)
    timed = a.time_column
    rate = a.rate if timed else 0
    wall = TIMED_START + TIMED_INTERVAL_SECS / 2 if timed else BENCH_WALL_TIME

    load_before = os.getloadavg()
    log, exact = ensure_log(a.lines, a.series, a.error_rate, a.seed, rate)
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="profile-bench-", dir=CACHE))
    empty = work / "empty.log"
    empty.write_text("")
    result: dict[str, Any] = {
        "lines": a.lines, "series": len(exact["series"]), "error_rate": a.error_rate,
        "log": str(log), "log_mib": round(log.stat().st_size / 2**20, 1),
        "exact_errors": exact["errors"], "loadavg_before": [round(x, 2) for x in load_before],
        "time_column": timed, "rate": rate or None, "cpus": os.cpu_count(),
    }
    root = Path(__file__).resolve().parent.parent
    try:
        # ours: the agent pipeline (tail + parse + aggregate + statsd emit) in its own process
        cfg = work / "motan.toml"
        cfg.write_text(config_toml(log, timed))
        cfg_empty = work / "motan-empty.toml"
        cfg_empty.write_text(config_toml(empty, timed))
        e = measure(ours_argv_pipeline(cfg_empty, 0, work / "pipeline-empty.out", wall),
                    work / "pipeline-empty.stdout", root)
        r = measure(ours_argv_pipeline(cfg, a.lines, work / "pipeline.out", wall),
                    work / "pipeline.stdout", root)
        if r["rc"] != 0:
            raise RuntimeError("pipeline child failed: "
                               + (work / "pipeline.stdout.err").read_text()[-2000:])
        parsed = parse_statsd((work / "pipeline.out").read_text())
        result["ours_pipeline"] = throughput(a.lines, r, e)
        result["ours_pipeline"]["counts_match_exact"] = counts_match(
            exact, {k: (v.get("requests"), v.get("errors")) for k, v in parsed.items()})
        result["ours_percentile_error"] = percentile_errors(exact, ours_estimates(parsed))

        if not a.skip_replay:  # `opsagent profile replay`: whole files in memory, no tailing
            # timed: the real 10 s intervals (counts are summed over them by parse_statsd)
            rcfg = work / "motan-replay.toml"
            rcfg.write_text(config_toml(log, timed, 10))
            argv = [opsagent_script(), "profile", "replay", "--config", str(rcfg), "--sink",
                    "statsd", "--start-time", str(int(wall))]
            e = measure([*argv, str(empty)], work / "replay-empty.out", root)
            r = measure([*argv, str(log)], work / "replay.out", root)
            if r["rc"] != 0:
                raise RuntimeError("replay failed: "
                                   + (work / "replay.out.err").read_text()[-2000:])
            parsed_r = parse_statsd((work / "replay.out").read_text())
            result["ours_replay"] = throughput(a.lines, r, e)
            result["ours_replay"]["counts_match_exact"] = counts_match(
                exact, {k: (v.get("requests"), v.get("errors")) for k, v in parsed_r.items()})

        if not a.skip_mtail:
            from tests.fixtures.services import free_port  # 127.0.0.1 only

            m = run_mtail(log, empty, work, free_port(), timed)
            if "run" in m:
                result["mtail"] = throughput(a.lines, m["run"], m["empty"])
                result["mtail"]["version"] = m["version"]
                ms = m["series"]
                result["mtail"]["counts_match_exact"] = counts_match(
                    exact, {k: (v["count"], v["errors"]) for k, v in ms.items()})
                result["mtail_histogram_percentile_error"] = percentile_errors(exact, {
                    k: {p: histogram_quantile(p / 100, v["buckets"], v["count"])
                        for p in PERCENTILES} for k, v in ms.items()})
                ours, theirs = result["ours_pipeline"], result["mtail"]
                result["ratio_vs_mtail"] = {
                    "lines_per_cpu_sec": round(ours["lines_per_cpu_sec"]
                                               / theirs["lines_per_cpu_sec"], 2),
                    "lines_per_cpu_sec_without_startup": round(
                        ours["lines_per_cpu_sec_without_startup"]
                        / theirs["lines_per_cpu_sec_without_startup"], 2),
                    "max_rss": round(ours["max_rss_mib"] / theirs["max_rss_mib"], 2),
                }
            else:
                result["mtail"] = m
        ours = result["ours_pipeline"]
        result["targets"] = {
            ">=1M lines/s/core (pipeline, without start-up)":
                ours["lines_per_cpu_sec_without_startup"] >= 1_000_000,
            ">=5x mtail (lines/s/core, without start-up)":
                (result.get("ratio_vs_mtail") or {}).get(
                    "lines_per_cpu_sec_without_startup", 0) >= 5,
            "percentiles within 1 %": all(
                v["max_rel_err"] <= 0.01 for v in result["ours_percentile_error"].values()),
        }
    finally:
        result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        if a.keep:
            result["work_dir"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child-pipeline":
        sys.exit(_child_pipeline(sys.argv[2], int(sys.argv[3]), sys.argv[4],
                                 float(sys.argv[5])))
    print("run through the runner: python -m bench.run profile_throughput [-- ARGS]",
          file=sys.stderr)
    sys.exit(2)
