"""deploy/grafana/opsagent.json and deploy/alerts/opsagent.rules.yaml against the real thing: a
real `opsagent run` (cron, rotate, profile, forward) and statsd_exporter, both scraped by a real
Prometheus. Every panel query and every alert expression runs through Prometheus' query API;
every metric they name must be exposed (series, or at least its HELP/TYPE metadata for counters
that appear only at their first increment), so a renamed metric fails here. The agent is driven
into the states the alerts are about: Kafka down while critical lines keep coming (lag grows), a
cron job that fails, a quota group over its hard limit (hard_action = "none"), a rejected config
reload; those alerts must fire. `promtool check rules` checks the rule file."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.prometheus import Prometheus, running_prometheus
from tests.fixtures.services import ROOT, free_port, require_service, stop_process
from tests.fixtures.statsd_exporter import StatsdExporter, running_statsd_exporter, wait_until

pytestmark = pytest.mark.integration

RULES = ROOT / "deploy" / "alerts" / "opsagent.rules.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "opsagent.json"
OPSAGENT = str(Path(sys.executable).with_name("opsagent"))
# Grafana's variables as a query sees them with "All" agents selected.
VARIABLES = {"$__rate_interval": "1m", "$instance": ".+"}
# Alerts the live agent is driven into; the others must evaluate (to nothing) without error.
PROVOKED = {"OpsagentForwardLagGrowing", "OpsagentCronJobFailing", "OpsagentQuotaAtHardLimit",
            "OpsagentConfigRejected"}
METRIC = re.compile(r"\b(opsagent_[a-z0-9_]+)")
PROFILE = re.compile(r'__name__=~"(profile_[^"]+)"')


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def panel_queries() -> list[tuple[str, str]]:
    out = []
    for p in panels():
        for t in p["targets"]:
            expr = t["expr"]
            for var, value in VARIABLES.items():
                expr = expr.replace(var, value)
            out.append((f"{p['title']} [{t['refId']}]", expr))
    return out


def test_promtool_checks_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        require_service("promtool", "not on PATH (Debian's prometheus package ships it)")
        raise AssertionError("unreachable")
    r = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(rules())} rules found" in r.stdout


def test_dashboard_is_well_formed() -> None:
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in panels():
        assert p["targets"], p["title"]
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        assert all(t["expr"].strip() for t in p["targets"]), p["title"]
    unknown = {v for _, e in panel_queries() for v in re.findall(r"\$\w+", e)}
    assert not unknown, f"variables the test does not substitute: {unknown}"


# ---- against a live agent, statsd_exporter and Prometheus -----------------------------------

@dataclass
class Live:
    prometheus: Prometheus
    exporter: StatsdExporter
    agent: subprocess.Popen[bytes]
    log: Path


MOTAN = "server|shop|order|10.0.0.7|com.shop.Order|get|long|10.0.0.9|web|web|true|r|120|800|9|10"
FILL = "head -c {n} /dev/zero | tr '\\0' {c} | fold -w 99 >> {path}"
CRONTAB = "\n".join([
    "* * * * * * * exit 3",
    f"* * * * * * * for i in 1 2 3 4 5 6 7 8 9 10; do echo '{MOTAN}'; done"
    " >> {d}/profile/access.log",
    "* * * * * * * " + FILL.format(n=300000, c="c", path="{d}/critical/critical.log"),
    "* * * * * * * " + FILL.format(n=20000, c="a", path="{d}/pvc/pod-a/logs/app.log"),
]) + "\n"


def config_text(d: Path, *, http_port: int, statsd_port: int, kafka_port: int,
                graphite_port: int) -> str:
    return f"""
state_dir = "{d / 'state'}"
drain_deadline_secs = 5.0
[telemetry]
http_listen = "127.0.0.1:{http_port}"
[cron]
crontabs = ["{d / 'crontab'}"]
[[rotate]]
name = "pvc"
directories = ["{d}/pvc/*/logs"]
rotate_size_bytes = 200000
compress = true
keep = 50
quota_soft_bytes = 40000
quota_hard_bytes = 60000
hard_action = "none"
min_interval_secs = 0.2
rescan_interval_secs = 1.0
[[profile]]
name = "shop"
preset = "motan"
interval_secs = 1
late_secs = 0.5
buckets = [5.0, 10.0, 25.0]
[profile.tail]
include = ["{d}/profile/*.log"]
[profile.statsd]
port = {statsd_port}
[profile.graphite]
host = "127.0.0.1"
port = {graphite_port}
[[forward]]
name = "critical"
drain_timeout_secs = 1.0
[forward.tail]
include = ["{d}/critical/*.log"]
[forward.kafka]
bootstrap_servers = ["127.0.0.1:{kafka_port}"]
topic = "critical"
connect_timeout_ms = 500
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    d = tmp_path_factory.mktemp("dashboards")
    for sub in ("critical", "profile", "pvc/pod-a/logs", "state"):
        (d / sub).mkdir(parents=True)
    (d / "profile" / "access.log").touch()
    (d / "crontab").write_text(CRONTAB.format(d=d))
    with running_statsd_exporter(d / "statsd_exporter") as exporter:
        http_port = free_port()
        cfg = d / "agent.toml"
        text = config_text(d, http_port=http_port, statsd_port=exporter.udp_port,
                           kafka_port=free_port(),   # nothing listens: Kafka is down
                           graphite_port=free_port(socket.SOCK_DGRAM))
        cfg.write_text(text)
        log = d / "agent.log"
        with log.open("wb") as out:
            agent = subprocess.Popen([OPSAGENT, "run", "--config", str(cfg)], stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            with running_prometheus(d / "prometheus",
                                    [f"127.0.0.1:{http_port}", exporter.address]) as prom:
                # A rejected reload, after Prometheus has seen the agent without one.
                prom.wait_for_value("count(opsagent_process_threads)", 1.0)
                cfg.write_text(text + "no_such_key = 1\n")
                agent.send_signal(signal.SIGHUP)
                yield Live(prom, exporter, agent, log)
        finally:
            stop_process(agent, 30)


def _exposed(prom: Prometheus, name: str) -> bool:
    if prom.query(f'count({{__name__="{name}"}})'):
        return True
    meta = prom._get("/api/v1/metadata", {"metric": name})
    return bool(meta.get(name))


def test_every_metric_the_dashboard_and_alerts_name_is_exposed(live: Live) -> None:
    texts = [e for _, e in panel_queries()] + [r["expr"] for r in rules()]
    names = sorted({m for t in texts for m in METRIC.findall(t)})
    assert len(names) > 20
    missing: list[str] = []

    def all_exposed() -> bool | None:
        missing[:] = [n for n in names if not _exposed(live.prometheus, n)]
        return True if not missing else None

    try:
        wait_until(all_exposed, 60, "every family in Prometheus")
    except TimeoutError:
        pytest.fail(f"named in deploy/ but not exposed by the agent: {missing}")
    for pattern in sorted({p for t in texts for p in PROFILE.findall(t)}):
        wait_until(lambda pattern=pattern: live.prometheus.query(  # type: ignore[misc]
            f'count({{__name__=~"{pattern}"}})') or None, 60, f"series matching {pattern}")


@pytest.mark.parametrize(("title", "expr"), panel_queries(), ids=[t for t, _ in panel_queries()])
def test_panel_query_returns_data(live: Live, title: str, expr: str) -> None:
    # Counters that exist only after an event the live agent is not driven into.
    quiet = ("opsagent_kafka_dead_letter_total", "opsagent_rotate_deletions_total",
             "opsagent_profile_unparsed_lines_total",
             "opsagent_rotate_truncations_total")
    if _only_quiet(expr, quiet):
        assert isinstance(live.prometheus.query(expr), list)   # valid, runs; no event, no data
    else:
        wait_until(lambda: live.prometheus.query(expr) or None, 90,
                   f"data for panel {title}: {expr}")


def _only_quiet(expr: str, quiet: tuple[str, ...]) -> bool:
    names = set(METRIC.findall(expr))
    return bool(names) and names <= set(quiet)


@pytest.mark.parametrize("rule", rules(), ids=[r["alert"] for r in rules()])
def test_alert_expression_runs_and_the_provoked_alerts_fire(live: Live,
                                                            rule: dict[str, Any]) -> None:
    expr = rule["expr"]
    if rule["alert"] in PROVOKED:
        result = wait_until(lambda: live.prometheus.query(expr) or None, 120,
                            f"{rule['alert']} to fire: {expr}")
        assert all(float(r["value"][1]) > 0 for r in result), result
        if rule["alert"] == "OpsagentCronJobFailing":
            assert {r["metric"].get("exported_job") for r in result} == {
                f"{Path(live.log).parent / 'crontab'}:1"}
    else:
        assert live.prometheus.query(expr) == []


SNAPSHOT_PANELS = ("Lines read / s", "Lag (undelivered bytes)", "Held while Kafka is away",
                   "Quota use per group", "Runs and failures", "Requests / s",
                   "Latency p99 (agent's sketch)", "Resident memory",
                   "Kafka errors and dead letters")


def test_snapshot_draws_the_panels_from_live_data(live: Live, tmp_path: Path) -> None:
    """The picture in docs/img/dashboard.svg: the chosen panels drawn from the live scenario's
    Prometheus (query_range), each with data. OPSAGENT_DASHBOARD_SNAPSHOT=PATH also writes it
    there (OPSAGENT_DASHBOARD_SNAPSHOT_WAIT=SECS first lets more history accumulate)."""
    from tests.integration.dashboards.snapshot import snapshot

    chosen = {p["title"]: p for p in panels()}
    wait = float(os.environ.get("OPSAGENT_DASHBOARD_SNAPSHOT_WAIT", "0"))
    if wait:
        signal.sigtimedwait([], wait)   # only when making the picture by hand
    svg = snapshot(live.prometheus, [chosen[t] for t in SNAPSHOT_PANELS], 30.0 + wait,
                   VARIABLES)
    (tmp_path / "dashboard.svg").write_text(svg)
    assert svg.count("<polyline") >= len(SNAPSHOT_PANELS)
    assert "no data" not in svg
    for title in SNAPSHOT_PANELS:
        assert html.escape(title) in svg
    if os.environ.get("OPSAGENT_DASHBOARD_SNAPSHOT"):
        Path(os.environ["OPSAGENT_DASHBOARD_SNAPSHOT"]).write_text(svg)
