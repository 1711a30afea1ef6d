"""`opsagent status`: the view computed from two /metrics samples (pure), its rendering, where
it connects, and the command against a real HTTP server (once, unreachable, bad usage)."""

from __future__ import annotations

import argparse
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsagent.cli import build_parser
from opsagent.commands.status import (
    build_view,
    human_bytes,
    parse,
    rate,
    render,
    run,
    table,
    url_from_listen,
)

NOW = 1_800_000_000.0


def exposition(*, lines: int, acked: int, lag_a: int, profile: int, cpu: float,
               rejected: int = 0, dead: int = 0, lost: int = 0, hard: int = 0,
               failures: int = 0) -> str:
    return f"""# TYPE opsagent_process_cpu_seconds_total counter
opsagent_process_cpu_seconds_total{{mode="user"}} {cpu}
# TYPE opsagent_process_resident_memory_bytes gauge
opsagent_process_resident_memory_bytes 47185920
# TYPE opsagent_process_open_fds gauge
opsagent_process_open_fds 60
# TYPE opsagent_process_threads gauge
opsagent_process_threads 25
# TYPE opsagent_config_reloads_total counter
opsagent_config_reloads_total{{result="applied"}} 2
opsagent_config_reloads_total{{result="rejected"}} {rejected}
# TYPE opsagent_tail_lines_total counter
opsagent_tail_lines_total{{pipeline="critical"}} {lines}
opsagent_tail_lines_total{{pipeline="profile-shop"}} {profile}
# TYPE opsagent_tail_truncation_lost_bytes_total counter
opsagent_tail_truncation_lost_bytes_total{{pipeline="critical"}} {lost}
# TYPE opsagent_forward_records_total counter
opsagent_forward_records_total{{pipeline="critical"}} {lines}
# TYPE opsagent_kafka_records_acked_total counter
opsagent_kafka_records_acked_total{{pipeline="critical"}} {acked}
# TYPE opsagent_kafka_inflight_bytes gauge
opsagent_kafka_inflight_bytes{{pipeline="critical"}} 2048
# TYPE opsagent_kafka_dead_letter_total counter
opsagent_kafka_dead_letter_total{{pipeline="critical",reason="too_large"}} {dead}
# TYPE opsagent_forward_lag_bytes gauge
opsagent_forward_lag_bytes{{file="/pvc/a/critical.log",pipeline="critical"}} {lag_a}
opsagent_forward_lag_bytes{{file="/pvc/b/critical.log",pipeline="critical"}} 0
# TYPE opsagent_profile_lines_total counter
opsagent_profile_lines_total{{pipeline="shop"}} {profile}
# TYPE opsagent_statsd_metrics_total counter
opsagent_statsd_metrics_total{{pipeline="shop"}} 40
# TYPE opsagent_rotate_quota_usage_bytes gauge
opsagent_rotate_quota_usage_bytes{{group="/pvc/a/logs",policy="pvc"}} 1572864
# TYPE opsagent_rotate_quota_breaches_total counter
opsagent_rotate_quota_breaches_total{{group="/pvc/a/logs",limit="hard",policy="pvc"}} {hard}
# TYPE opsagent_rotate_passes_total counter
opsagent_rotate_passes_total{{policy="pvc"}} 10
# TYPE opsagent_rotate_rotations_total counter
opsagent_rotate_rotations_total{{method="rename",policy="pvc"}} 3
# TYPE opsagent_cron_runs_total counter
opsagent_cron_runs_total{{job="/etc/opsagent/crontab:10"}} 4
opsagent_cron_runs_total{{job="/etc/opsagent/crontab:2"}} 1
# TYPE opsagent_cron_failures_total counter
opsagent_cron_failures_total{{job="/etc/opsagent/crontab:10"}} {failures}
# TYPE opsagent_cron_last_run_timestamp_seconds gauge
opsagent_cron_last_run_timestamp_seconds{{job="/etc/opsagent/crontab:10"}} {NOW - 30}
opsagent_cron_last_run_timestamp_seconds{{job="/etc/opsagent/crontab:2"}} {NOW - 7200}
# TYPE opsagent_cron_next_run_timestamp_seconds gauge
opsagent_cron_next_run_timestamp_seconds{{job="/etc/opsagent/crontab:10"}} {NOW + 30}
"""


PREV = parse(exposition(lines=100, acked=90, lag_a=500, profile=1000, cpu=1.0), at=10.0)
CUR = parse(exposition(lines=120, acked=100, lag_a=800, profile=1400, cpu=1.1), at=12.0)


def rows(title: str, prev: object = PREV, cur: object = CUR) -> list[list[str]]:
    view = build_view(prev, cur, NOW)  # type: ignore[arg-type]
    return next(r for t, _, r in view.sections if t == title)


def test_rates_are_per_second_between_samples_and_survive_a_restart() -> None:
    assert rate(PREV, CUR, "opsagent_tail_lines_total", pipeline="critical") == 10.0
    assert rate(None, CUR, "opsagent_tail_lines_total") is None
    restarted = parse(exposition(lines=6, acked=0, lag_a=0, profile=0, cpu=0), at=14.0)
    assert rate(CUR, restarted, "opsagent_tail_lines_total", pipeline="critical") == 3.0


def test_forward_rows_lines_per_second_lag_per_file_and_held_bytes() -> None:
    r = rows("FORWARD")
    assert r[0] == ["critical", "10.0", "5.0", "800 B", "", "2.0 KiB", "0", "0 B"]
    assert r[1][0] == "  /pvc/a/critical.log" and r[1][3:5] == ["800 B", "+300 B"]
    assert r[2][0] == "  /pvc/b/critical.log" and r[2][3:5] == ["0 B", "steady"]
    # Without a previous sample there are no rates or changes yet (the first screen).
    first = rows("FORWARD", prev=None)
    assert first[0][1:3] == ["-", "-"] and first[1][4] == ""


def test_profile_rotation_and_cron_rows() -> None:
    assert rows("PROFILE") == [["shop", "200.0", "0", "0", "40"]]
    rot = rows("ROTATION")
    assert rot[0][:5] == ["pvc", "/pvc/a/logs", "1.5 MiB", "0", "0"]
    assert rot[1][:2] == ["pvc", "(all)"] and rot[1][5] == "3"
    cron = rows("CRON")
    # ordered by file, then line number (2 before 10)
    assert [c[0] for c in cron] == ["/etc/opsagent/crontab:2", "/etc/opsagent/crontab:10"]
    assert cron[0][4:] == ["2.0h ago", "-"]          # ran, no next run (@reboot)
    assert cron[1][1:] == ["4", "0", "0", "30s ago", "in 30s"]


def test_problems_are_listed_first() -> None:
    bad = parse(exposition(lines=120, acked=100, lag_a=800, profile=1400, cpu=1.1, rejected=1,
                           dead=3, lost=4096, hard=2, failures=5), at=12.0)
    problems = build_view(PREV, bad, NOW).problems
    assert problems == [
        "config rejected 1 time(s): the running config is kept (the agent's log names the key)",
        "forward critical: 3 record(s) dead-lettered",
        "forward critical: 4.0 KiB lost to copytruncate",
        "rotate pvc: /pvc/a/logs reached its hard limit 2 time(s)",
        "cron /etc/opsagent/crontab:10: 5 failed run(s)",
    ]
    text = render(build_view(PREV, bad, NOW), url="http://x:1", now=NOW, interval=2)
    assert text[2] == "! " + problems[0]
    assert "no problems" in render(build_view(PREV, CUR, NOW), url="u", now=NOW, interval=2)


def test_sections_without_series_are_left_out() -> None:
    only_agent = parse("opsagent_process_threads 3\n", at=1.0)
    assert build_view(None, only_agent, NOW).sections == []


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                                         (1572864, "1.5 MiB"), (5 * 2**40, "5.0 TiB")])
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


def test_table_cuts_long_names_from_the_left() -> None:
    out = table(["file", "lag"], [["/very/long/path/to/some/critical.log", "1 B"]], width=24)
    assert out[1] == "…/some/critical.log  1 B"
    assert all(len(line) <= 24 for line in out)


@pytest.mark.parametrize(("listen", "url"), [
    ("0.0.0.0:9101", "http://127.0.0.1:9101"),
    ("127.0.0.1:9200", "http://127.0.0.1:9200"),
    (":9101", "http://127.0.0.1:9101"),
    ("[::]:9101", "http://[::1]:9101"),
    ("node.local:80", "http://node.local:80"),
    ("", None),
])
def test_url_from_listen(listen: str, url: str | None) -> None:
    assert url_from_listen(listen) == url


# ---- the command ---------------------------------------------------------------------------

@pytest.fixture
def metrics_server() -> Iterator[str]:
    bodies = iter([exposition(lines=100, acked=90, lag_a=500, profile=1000, cpu=1.0),
                   exposition(lines=120, acked=100, lag_a=800, profile=1400, cpu=1.1)])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = next(bodies, "").encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["status", *argv])


def test_once_samples_twice_and_prints_one_view(metrics_server: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    slept: list[float] = []
    clock = iter([10.0, 12.0])
    rc = run(args("--url", metrics_server, "--once", "--interval", "2"), out=out, err=err,
             sleep=slept.append, monotonic=lambda: next(clock), wall=lambda: NOW)
    assert rc == 0, err.getvalue()
    assert slept == [2.0]
    text = out.getvalue()
    assert text.startswith(f"opsagent status  {metrics_server}  2027-01-15 08:00:00Z")
    assert "\x1b" not in text                       # not a terminal: no colour, no redraw
    assert "critical" in text and "/pvc/a/critical.log" in text and "+300 B" in text


def test_top_is_the_same_command() -> None:
    assert args().func is build_parser().parse_args(["top"]).func


def test_unreachable_agent_is_exit_1_naming_the_url() -> None:
    err = io.StringIO()
    rc = run(args("--url", "http://127.0.0.1:9", "--once"), out=io.StringIO(), err=err,
             sleep=lambda _s: None)
    assert rc == 1
    assert err.getvalue().startswith("opsagent status: cannot read http://127.0.0.1:9/metrics")


def test_bad_interval_is_exit_2() -> None:
    err = io.StringIO()
    assert run(args("--interval", "0"), out=io.StringIO(), err=err) == 2
    assert "--interval must be > 0" in err.getvalue()


def test_address_from_config_and_config_errors(tmp_path: Path,
                                               metrics_server: str) -> None:
    port = metrics_server.rsplit(":", 1)[1]
    good = tmp_path / "good.toml"
    good.write_text(f'[telemetry]\nhttp_listen = "0.0.0.0:{port}"\n')
    clock = iter([1.0, 3.0])
    out = io.StringIO()
    assert run(args("--config", str(good), "--once"), out=out, err=io.StringIO(),
               sleep=lambda _s: None, monotonic=lambda: next(clock), wall=lambda: NOW) == 0
    assert f"http://127.0.0.1:{port}" in out.getvalue()
    off = tmp_path / "off.toml"
    off.write_text('[telemetry]\nhttp_listen = ""\n')
    err = io.StringIO()
    assert run(args("--config", str(off)), out=io.StringIO(), err=err) == 2
    assert "telemetry.http_listen is empty" in err.getvalue()
