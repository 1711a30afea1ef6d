"""`opsagent status` (alias `top`): a live view of a running agent from its /metrics, like
`vector top`: per forward pipeline and file the lines/s and lag, the bytes held while Kafka is
down, dead letters; per profile pipeline lines/s; per rotation quota group the usage; per cron
job the last and next run; and rejected config reloads.

It only reads HTTP, so it works locally and inside a pod:
    opsagent status                                  # http://127.0.0.1:9101, redrawn every 2 s
    opsagent status --config /etc/opsagent/opsagent.toml   # the address from telemetry.http_listen
    kubectl exec -n opsagent ds/opsagent -- opsagent status --once
At a terminal the screen is redrawn until Ctrl-C; otherwise (a pipe, `kubectl exec` without -t,
or --once) it samples twice, `--interval` apart, prints one view and exits. Exit codes: 0, 1 the
agent could not be reached, 2 usage or configuration error.

Parsing and the view are pure (`parse`, `build_view`, `render`); only `fetch` and `run` do I/O.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TextIO

from prometheus_client.parser import text_string_to_metric_families

DEFAULT_URL = "http://127.0.0.1:9101"
CLEAR = "\x1b[H\x1b[2J"
BOLD, RED, OFF = "\x1b[1m", "\x1b[31m", "\x1b[0m"

Labels = tuple[tuple[str, str], ...]


def register(sub: Any) -> None:
    p = sub.add_parser("status", aliases=["top"],
                       help="live view of a running agent's jobs (from its /metrics)")
    p.add_argument("--url", help=f"the agent's HTTP address (default {DEFAULT_URL}, or the "
                                 "telemetry.http_listen of --config)")
    p.add_argument("--config", help="agent TOML config: take the address from it")
    p.add_argument("--interval", type=float, default=2.0,
                   help="seconds between samples (rates are over this window; default 2)")
    p.add_argument("--once", action="store_true", help="print one view and exit")
    p.set_defaults(func=run)


# ---- metrics: one scrape --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Sample:
    """One scrape: sample name -> {labels: value}, and when it was taken (monotonic)."""

    at: float
    values: Mapping[str, Mapping[Labels, float]]

    def get(self, name: str, **want: str) -> dict[Labels, float]:
        return {lbl: v for lbl, v in self.values.get(name, {}).items()
                if all(dict(lbl).get(k) == w for k, w in want.items())}

    def total(self, name: str, **want: str) -> float:
        return sum(self.get(name, **want).values())

    def label_values(self, name: str, label: str) -> list[str]:
        return sorted({dict(lbl)[label] for lbl in self.values.get(name, {})
                       if label in dict(lbl)})


def parse(text: str, at: float) -> Sample:
    """The Prometheus text exposition as a Sample (counters under their `_total` names)."""
    values: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            values.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return Sample(at, values)


def rate(prev: Sample | None, cur: Sample, name: str, **want: str) -> float | None:
    """Per-second increase of a counter between two samples; None without a previous one. A
    counter that went down (the agent restarted) counts from zero."""
    if prev is None or cur.at <= prev.at:
        return None
    now, before = cur.total(name, **want), prev.total(name, **want)
    return (now - before if now >= before else now) / (cur.at - prev.at)


# ---- the view (pure) -------------------------------------------------------------------------

@dataclasses.dataclass
class View:
    agent: list[str]
    problems: list[str]
    sections: list[tuple[str, list[str], list[list[str]]]]   # title, header, rows


def build_view(prev: Sample | None, cur: Sample, now: float) -> View:
    """What to show from the latest sample, rates against the previous one; `now` is the wall
    clock (Unix time) for last/next cron runs."""
    problems: list[str] = []
    cpu = rate(prev, cur, "opsagent_process_cpu_seconds_total")
    agent = [
        f"cpu {_num(None if cpu is None else cpu * 100)}%",
        f"rss {human_bytes(cur.total('opsagent_process_resident_memory_bytes'))}",
        f"open fds {cur.total('opsagent_process_open_fds'):.0f}",
        f"threads {cur.total('opsagent_process_threads'):.0f}",
        f"config reloads {cur.total('opsagent_config_reloads_total', result='applied'):.0f}",
    ]
    rejected = cur.total("opsagent_config_reloads_total", result="rejected")
    if rejected:
        problems.append(f"config rejected {rejected:.0f} time(s): the running config is kept "
                        "(the agent's log names the key)")
    sections = [_forward(prev, cur, problems), _profile(prev, cur),
                _rotation(cur, problems), _cron(cur, now, problems)]
    return View(agent, problems, [s for s in sections if s[2]])


def _forward(prev: Sample | None, cur: Sample,
             problems: list[str]) -> tuple[str, list[str], list[list[str]]]:
    rows: list[list[str]] = []
    names = sorted(set(cur.label_values("opsagent_forward_records_total", "pipeline"))
                   | set(cur.label_values("opsagent_forward_lag_bytes", "pipeline")))
    for p in names:
        lag = cur.get("opsagent_forward_lag_bytes", pipeline=p)
        held = cur.total("opsagent_kafka_inflight_bytes", pipeline=p)
        dead = cur.total("opsagent_kafka_dead_letter_total", pipeline=p)
        lost = cur.total("opsagent_tail_truncation_lost_bytes_total", pipeline=p)
        rows.append([p, _num(rate(prev, cur, "opsagent_tail_lines_total", pipeline=p)),
                     _num(rate(prev, cur, "opsagent_kafka_records_acked_total", pipeline=p)),
                     human_bytes(sum(lag.values())), "", human_bytes(held), f"{dead:.0f}",
                     human_bytes(lost)])
        if dead:
            problems.append(f"forward {p}: {dead:.0f} record(s) dead-lettered")
        if lost:
            problems.append(f"forward {p}: {human_bytes(lost)} lost to copytruncate")
        before = prev.get("opsagent_forward_lag_bytes", pipeline=p) if prev else {}
        for lbl, n in sorted(lag.items(), key=lambda kv: dict(kv[0])["file"]):
            change = "" if lbl not in before else _signed_bytes(n - before[lbl])
            rows.append([f"  {dict(lbl)['file']}", "", "", human_bytes(n), change, "", "", ""])
    return ("FORWARD", ["pipeline / file", "lines/s", "acked/s", "lag", "lag change", "held",
                        "dead letters", "lost"], rows)


def _profile(prev: Sample | None, cur: Sample) -> tuple[str, list[str], list[list[str]]]:
    rows = []
    for p in cur.label_values("opsagent_profile_lines_total", "pipeline"):
        sent = (cur.total("opsagent_statsd_metrics_total", pipeline=p)
                + cur.total("opsagent_graphite_lines_total", pipeline=p))
        rows.append([p, _num(rate(prev, cur, "opsagent_profile_lines_total", pipeline=p)),
                     f"{cur.total('opsagent_profile_unparsed_lines_total', pipeline=p):.0f}",
                     f"{cur.total('opsagent_profile_late_lines_total', pipeline=p):.0f}",
                     f"{sent:.0f}"])
    return ("PROFILE", ["pipeline", "lines/s", "unparsed", "late", "stats sent"], rows)


def _rotation(cur: Sample, problems: list[str]) -> tuple[str, list[str], list[list[str]]]:
    rows = []
    for lbl, usage in sorted(cur.get("opsagent_rotate_quota_usage_bytes").items()):
        d = dict(lbl)
        policy, group = d.get("policy", ""), d.get("group", "")
        soft = cur.total("opsagent_rotate_quota_breaches_total", policy=policy, group=group,
                         limit="soft")
        hard = cur.total("opsagent_rotate_quota_breaches_total", policy=policy, group=group,
                         limit="hard")
        if hard:
            problems.append(f"rotate {policy}: {group} reached its hard limit {hard:.0f} time(s)")
        rows.append([policy, group, human_bytes(usage), f"{soft:.0f}", f"{hard:.0f}"])
    for policy in cur.label_values("opsagent_rotate_passes_total", "policy"):
        rows.append([policy, "(all)", "", "", "",
                     f"{cur.total('opsagent_rotate_rotations_total', policy=policy):.0f}",
                     f"{cur.total('opsagent_rotate_compressions_total', policy=policy):.0f}",
                     f"{cur.total('opsagent_rotate_deletions_total', policy=policy):.0f}",
                     f"{cur.total('opsagent_rotate_truncations_total', policy=policy):.0f}"])
    for r in rows:
        r.extend([""] * (9 - len(r)))
    return ("ROTATION", ["policy", "quota group", "usage", "over soft", "over hard",
                         "rotated", "compressed", "deleted", "truncated"], rows)


def _cron(cur: Sample, now: float, problems: list[str]) -> tuple[str, list[str], list[list[str]]]:
    jobs = sorted(set(cur.label_values("opsagent_cron_next_run_timestamp_seconds", "job"))
                  | set(cur.label_values("opsagent_cron_runs_total", "job")), key=_job_order)
    rows = []
    for job in jobs:
        failed = cur.total("opsagent_cron_failures_total", job=job)
        if failed:
            problems.append(f"cron {job}: {failed:.0f} failed run(s)")
        last = cur.get("opsagent_cron_last_run_timestamp_seconds", job=job)
        nxt = cur.get("opsagent_cron_next_run_timestamp_seconds", job=job)
        rows.append([job, f"{cur.total('opsagent_cron_runs_total', job=job):.0f}",
                     f"{failed:.0f}", f"{cur.total('opsagent_cron_running_jobs', job=job):.0f}",
                     ago(now - max(last.values())) if last else "never",
                     until(min(nxt.values()) - now) if nxt else "-"])
    return ("CRON", ["job", "runs", "failed", "running", "last run", "next run"], rows)


def _job_order(job: str) -> tuple[str, int]:
    path, _, line = job.rpartition(":")
    return (path, int(line)) if line.isdigit() else (job, 0)


# ---- formatting (pure) -----------------------------------------------------------------------

def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _signed_bytes(n: float) -> str:
    return "steady" if n == 0 else ("+" if n > 0 else "-") + human_bytes(abs(n))


def _num(v: float | None) -> str:
    if v is None or math.isnan(v):
        return "-"
    return f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def _span(secs: float) -> str:
    secs = max(0.0, secs)
    if secs < 90:
        return f"{secs:.0f}s"
    if secs < 5400:
        return f"{secs / 60:.0f}m"
    if secs < 129600:
        return f"{secs / 3600:.1f}h"
    return f"{secs / 86400:.1f}d"


def ago(secs: float) -> str:
    return f"{_span(secs)} ago"


def until(secs: float) -> str:
    return "due" if secs <= 0 else f"in {_span(secs)}"


def table(header: list[str], rows: Iterable[list[str]], width: int) -> list[str]:
    """Columns sized to their content; the first (names, paths) is cut from the left to fit
    `width`, the others are right-aligned."""
    rows = [header, *rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    rest = sum(widths[1:]) + 2 * (len(widths) - 1)
    widths[0] = max(12, min(widths[0], width - rest))
    out = []
    for r in rows:
        first = r[0] if len(r[0]) <= widths[0] else "…" + r[0][-(widths[0] - 1):]
        cells = [first.ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:],
                                                                        strict=True)]
        out.append("  ".join(cells).rstrip())
    return out


def render(view: View, *, url: str, now: float, interval: float, width: int = 120,
           color: bool = False) -> list[str]:
    b, r, o = (BOLD, RED, OFF) if color else ("", "", "")
    stamp = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    lines = [f"{b}opsagent status{o}  {url}  {stamp}  (rates over {interval:g} s)",
             "agent  " + "  ".join(view.agent)]
    lines += [f"{r}! {p}{o}" for p in view.problems] or ["no problems"]
    for title, header, rows in view.sections:
        lines.append("")
        lines.append(f"{b}{title}{o}")
        lines += table(header, rows, width)
    return lines


# ---- I/O -------------------------------------------------------------------------------------

class Unreachable(Exception):
    pass


def fetch(url: str, timeout: float = 5.0) -> str:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=timeout) as resp:
            body: bytes = resp.read()
            return body.decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise Unreachable(f"cannot read {url.rstrip('/')}/metrics: {reason}") from None


def url_from_listen(listen: str) -> str | None:
    """http://HOST:PORT for a telemetry.http_listen value ("" disables the listener)."""
    if not listen:
        return None
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def target_url(args: argparse.Namespace, err: TextIO) -> str | None:
    if args.url:
        return str(args.url)
    if not args.config:
        return DEFAULT_URL
    from opsagent.config import schema

    cfg = schema.load_or_report(args.config)
    if cfg is None:
        return None
    url = url_from_listen(cfg.telemetry.http_listen)
    if url is None:
        print(f"{args.config}: telemetry.http_listen is empty: the agent serves no /metrics",
              file=err)
    return url


def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if not args.interval > 0:
        print("opsagent status: --interval must be > 0", file=err)
        return 2
    url = target_url(args, err)
    if url is None:
        return 2
    live = not args.once and out.isatty()
    prev: Sample | None = None
    try:
        while True:
            try:
                cur = parse(fetch(url), monotonic())
            except Unreachable as e:
                print(f"opsagent status: {e}", file=err)
                return 1
            except ValueError as e:
                print(f"opsagent status: {url}/metrics is not Prometheus text: {e}", file=err)
                return 1
            if prev is not None or live:
                now = wall()
                lines = render(build_view(prev, cur, now), url=url, now=now,
                               interval=args.interval, width=_width(out), color=live)
                if live:
                    out.write(CLEAR)
                out.write("\n".join(lines) + "\n")
                out.flush()
                if not live:
                    return 0
            prev = cur
            sleep(args.interval)
    except KeyboardInterrupt:
        return 0


def _width(out: TextIO) -> int:
    try:
        return shutil.get_terminal_size().columns if out.isatty() else 160
    except (OSError, ValueError):
        return 160
