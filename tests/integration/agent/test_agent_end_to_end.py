"""One real `opsagent run` process with all four jobs, against the real Kafka broker and
statsd_exporter: its own cron jobs write the workload (sequence-numbered critical lines, a
profile log of known latencies, an application log growing past a small quota); mid-run a SIGHUP
reload changes the profile interval, a ConfigMap-style `..data` swap changes a rotate key, and a
swap to a broken config is rejected; SIGTERM drains and exits 0. Then: every sequence number is
in Kafka once and in order per file, the exporter's counters equal the lines of the profile log,
the cron jobs ran (their output in the agent's log under FILE:LINE), the quota held, and the
checkpoints are in the state directory. A second agent on the same state directory refuses to
start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.kafka import KafkaBroker
from tests.fixtures.services import free_port, stop_process
from tests.fixtures.statsd_exporter import StatsdExporter, parse_exposition, wait_until

pytestmark = pytest.mark.integration

OPSAGENT = str(Path(sys.executable).with_name("opsagent"))
SOFT = 100_000
HARD = 200_000
ROTATE_SIZE = 30_000
APP_LINES_PER_RUN = 200
LINES_PER_RUN = 5       # critical lines per run of each critical job, profile lines per method
FILES = ("a", "b")
INTERFACE = "com.shop.OrderService"


def app_line(i: int) -> str:
    return f"2026-11-26T00:00:00 INFO app handled request with a payload to fill the quota {i}\n"


APP_BYTES_PER_RUN = sum(len(app_line(i)) for i in range(APP_LINES_PER_RUN))


def motan(method: str, ok: str, ms: int) -> str:
    return (f"server|shop|order|10.0.0.7|{INTERFACE}|{method}|long|10.0.0.9|web|web|{ok}|r|"
            f"120|800|{ms - 1}|{ms}")


def crontab_text(d: Path) -> str:
    """Every job stops writing (and says so with a done-* file) once $D/stop exists."""
    stop = "[ -e $D/stop ] && { touch $D/done-%s; exit 0; }"
    lines = [f"D={d}"]
    for f in FILES:
        lines.append(
            f"* * * * * * * {stop % f}; n=$(cat $D/seq-{f} 2>/dev/null || echo 0); "
            f"for i in 1 2 3 4 5; do n=$((n+1)); echo \"CRITICAL {f} seq=$n\" "
            f">> $D/critical/critical-{f}.log; done; echo $n > $D/seq-{f}")
    lines.append(
        f"* * * * * * * {stop % 'profile'}; for i in 1 2 3 4 5; do "
        f"echo '{motan('getOrder', 'true', 10)}'; echo '{motan('listOrders', 'false', 30)}'; "
        f"done >> $D/profile/access.log")
    lines.append(
        f"* * * * * * * {stop % 'app'}; awk 'BEGIN {{ for (i = 0; i < {APP_LINES_PER_RUN}; "
        f"i++) print \"{app_line(0)[:-2]}\" i }}' >> $D/pvc/pod-a/logs/app.log && "
        f"echo 1 >> $D/app-runs")
    lines.append("*/2 * * * * * * echo \"hello from cron\"")
    return "\n".join(lines) + "\n"


def hello_line(d: Path) -> int:
    """Line number (1-based) of the hello job in the crontab."""
    return crontab_text(d).splitlines().index('*/2 * * * * * * echo "hello from cron"') + 1


def config_text(d: Path, *, kafka: str, topic: str, statsd_port: int, http_port: int,
                interval: int, keep: int, extra: str = "") -> str:
    return f"""
state_dir = "{d / 'state'}"
drain_deadline_secs = 20.0
{extra}
[node]
name = "e2e-node"

[telemetry]
log_level = "info"
http_listen = "127.0.0.1:{http_port}"

[cron]
crontabs = ["{d / 'crontab'}"]
grace_secs = 5.0

[[rotate]]
name = "apps"
directories = ["{d}/pvc/*/logs"]
rotate_size_bytes = {ROTATE_SIZE}
keep = {keep}
compress = false
quota_soft_bytes = {SOFT}
quota_hard_bytes = {HARD}
min_interval_secs = 0.2
rescan_interval_secs = 1.0

[[profile]]
name = "shop"
preset = "motan"
interval_secs = {interval}
late_secs = 0.5
[profile.tail]
include = ["{d}/profile/*.log"]
start_at = "beginning"
[profile.statsd]
port = {statsd_port}

[[forward]]
name = "critical"
drain_timeout_secs = 15.0
[forward.tail]
include = ["{d}/critical/*.log"]
[forward.kafka]
bootstrap_servers = ["{kafka}"]
topic = "{topic}"
linger_ms = 5
"""


class ConfigMapDir:
    """The kubelet's layout: `..<timestamp>/` holds the files, `..data` points at it, and
    `opsagent.toml -> ..data/opsagent.toml`; an update is a new timestamped directory and an
    atomic rename of a new `..data_tmp` symlink over `..data`."""

    def __init__(self, root: Path, text: str) -> None:
        self.root = root
        self.generation = 0
        root.mkdir()
        self.current = self._write(text)
        os.symlink(self.current.name, root / "..data")
        os.symlink("..data/opsagent.toml", root / "opsagent.toml")

    @property
    def path(self) -> Path:
        return self.root / "opsagent.toml"

    def _write(self, text: str) -> Path:
        self.generation += 1
        d = self.root / f"..2026_11_26_08_00_0{self.generation}.000000001"
        d.mkdir()
        (d / "opsagent.toml").write_text(text)
        return d

    def swap(self, text: str) -> None:
        new = self._write(text)
        os.symlink(new.name, self.root / "..data_tmp")
        os.rename(self.root / "..data_tmp", self.root / "..data")
        self.current = new

    def edit_in_place(self, text: str) -> None:
        """Change the file without any event in the watched directory (only SIGHUP sees it)."""
        (self.current / "opsagent.toml").write_text(text)


def usage(directory: Path) -> int:
    """Allocated bytes of the files in `directory` (what the quota counts)."""
    return sum(e.stat(follow_symlinks=False).st_blocks * 512
               for e in os.scandir(directory) if e.is_file(follow_symlinks=False))


def app_runs(d: Path) -> int:
    try:
        return len((d / "app-runs").read_text().split())
    except FileNotFoundError:
        return 0


def read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except FileNotFoundError:
        return 0


class Agent:
    def __init__(self, config: Path, log: Path, http_port: int) -> None:
        self.log_path = log
        self.http_port = http_port
        with log.open("wb") as out:
            self.proc = subprocess.Popen([OPSAGENT, "run", "--config", str(config)],
                                         stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=config.parent)

    def get(self, path: str) -> tuple[int, str]:
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}",
                                        timeout=5) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Sum of the samples `name` whose labels include `labels`."""
        want = labels or {}
        return sum(s.value for s in parse_exposition(self.get("/metrics")[1])
                   if s.name == name and want.items() <= s.labels.items())

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def wait(self, cond: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        try:
            return wait_until(cond, timeout, what)
        except TimeoutError as e:
            raise AssertionError(f"{e}; agent log tail:\n{self.tail()}") from None


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    for sub in ("critical", "profile", "pvc/pod-a/logs", "state"):
        (tmp_path / sub).mkdir(parents=True)
    (tmp_path / "profile" / "access.log").touch()
    (tmp_path / "crontab").write_text(crontab_text(tmp_path))
    return tmp_path


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for a in started:
        stop_process(a.proc, 30)


def test_one_agent_runs_every_job_reloads_and_drains_losing_nothing(
        workdir: Path, kafka_broker: KafkaBroker, statsd_exporter: StatsdExporter,
        agents: list[Agent]) -> None:
    d = workdir
    topic = f"e2e-critical-{os.getpid()}-{int(time.time())}"
    kafka_broker.create_topic(topic, partitions=3)
    http_port = free_port()

    def cfg(**kw: Any) -> str:
        base: dict[str, Any] = {"interval": 2, "keep": 0}
        return config_text(d, kafka=kafka_broker.bootstrap, topic=topic,
                           statsd_port=statsd_exporter.udp_port, http_port=http_port,
                           **{**base, **kw})

    cm = ConfigMapDir(d / "config", cfg())
    agent = Agent(cm.path, d / "agent.log", http_port)
    agents.append(agent)
    agent.wait(lambda: agent.get("/readyz")[0] == 200, "readiness")
    assert agent.get("/healthz") == (200, "ok\n")

    # A second agent on the same state directory refuses to start, naming the lock.
    second = subprocess.run([OPSAGENT, "run", "--config", str(cm.path)], capture_output=True,
                            text=True, timeout=60)
    assert second.returncode == 1, second.stderr
    assert "agent.lock is held by pid" in second.stderr

    agent.wait(lambda: read_int(d / "seq-a") >= 20, "the critical-a job to write 20 lines")

    # SIGHUP: an in-place edit makes no event in the watched directory; only the signal
    # reloads it, and only the profile pipeline is restarted (its checkpoint carries on).
    cm.edit_in_place(cfg(interval=1))
    agent.proc.send_signal(signal.SIGHUP)
    agent.wait(lambda: agent.metric("opsagent_config_reloads_total", {"result": "applied"}) == 1,
               "the SIGHUP reload")
    agent.wait(lambda: read_int(d / "seq-a") >= 40, "the critical-a job to write 40 lines")

    # ConfigMap update: a rotate key changes; the watcher sees the `..data` swap.
    cm.swap(cfg(interval=1, keep=50))
    agent.wait(lambda: agent.metric("opsagent_config_reloads_total", {"result": "applied"}) == 2,
               "the ConfigMap-swap reload")
    # A broken update is rejected and the running config kept; the pod says so (not ready,
    # the reason in /readyz) until the ConfigMap is fixed.
    cm.swap(cfg(interval=1, keep=50, extra="no_such_key = 1"))
    agent.wait(lambda: agent.metric("opsagent_config_reloads_total",
                                    {"result": "rejected"}) == 1, "the rejected reload")
    code, why = agent.get("/readyz")
    assert code == 503 and "config rejected" in why and "no_such_key" in why, why
    cm.swap(cfg(interval=1, keep=50))
    agent.wait(lambda: agent.get("/readyz") == (200, "ok\n"), "ready after the fix")

    # The application log has outgrown the soft quota several times over.
    agent.wait(lambda: app_runs(d) * APP_BYTES_PER_RUN > 3 * SOFT,
               "the app log to outgrow the quota")

    # Stop the workload, then wait until the forwarder has read every line.
    (d / "stop").touch()
    for job in (*FILES, "profile", "app"):
        done = d / f"done-{job}"
        agent.wait(done.exists, f"the {job} job to stop")
    seqs = {f: read_int(d / f"seq-{f}") for f in FILES}
    total = sum(seqs.values())
    agent.wait(lambda: agent.metric("opsagent_tail_lines_total", {"pipeline": "critical"})
               >= total, f"the forwarder to read {total} lines")
    agent.wait(lambda: usage(d / "pvc" / "pod-a" / "logs") <= SOFT,
               "the rotation to bring the directory under the soft quota")
    assert agent.get("/healthz")[0] == 200

    agent.proc.send_signal(signal.SIGTERM)
    rc = agent.proc.wait(60)
    log_records = agent.records()
    assert rc == 0, agent.tail()

    # Kafka: every sequence number of each file, none twice, in order.
    seen: dict[str, list[int]] = {f: [] for f in FILES}
    for rec in kafka_broker.consume_all(topic):
        headers = {k: v.decode() for k, v in rec.headers}
        f = "a" if headers["file"].endswith("critical-a.log") else "b"
        assert headers.get("node") == "e2e-node"
        seen[f].append(int(rec.value.decode().rsplit("seq=", 1)[1]))
    for f in FILES:
        duplicates = len(seen[f]) - len(set(seen[f]))
        missing = sorted(set(range(1, seqs[f] + 1)) - set(seen[f]))
        assert not missing, f"critical-{f}.log: {len(missing)} missing, e.g. {missing[:10]}"
        assert duplicates == 0, f"critical-{f}.log: {duplicates} duplicates"
        assert seen[f] == list(range(1, seqs[f] + 1)), f"critical-{f}.log out of order"

    # statsd_exporter: the deltas of every interval add up to the profile log's lines.
    lines = (d / "profile" / "access.log").read_text().splitlines()
    gets = sum(1 for x in lines if "|getOrder|" in x)
    lists = sum(1 for x in lines if "|listOrders|" in x)
    assert gets == lists and gets > 0
    get_l = {"interface": INTERFACE, "method": "getOrder"}
    list_l = {"interface": INTERFACE, "method": "listOrders"}
    statsd_exporter.wait_for_value("profile_shop_requests", get_l, gets)
    statsd_exporter.wait_for_value("profile_shop_requests", list_l, lists)
    statsd_exporter.wait_for_value("profile_shop_latency_sum", get_l, 10 * gets)
    statsd_exporter.wait_for_value("profile_shop_latency_sum", list_l, 30 * lists)
    statsd_exporter.wait_for_value("profile_shop_errors", list_l, lists)
    assert (statsd_exporter.value("profile_shop_errors", get_l) or 0) == 0

    # Cron: the hello job's output is in the agent's log under its crontab FILE:LINE.
    job = f"{d / 'crontab'}:{hello_line(d)}"
    assert any(r.get("msg") == "hello from cron" and r.get("job") == job for r in log_records)
    # The reloads restarted only what changed (the fix after the rejected swap is the running
    # config again: applied, nothing restarted).
    changes = [r["changes"] for r in log_records if r.get("msg") == "config reloaded"]
    assert changes == [["stop profile:shop", "start profile:shop"],
                       ["stop rotate:apps", "start rotate:apps"], []], changes
    assert any(r.get("msg") == "config rejected; keeping the running config"
               and "no_such_key" in r.get("error", "") for r in log_records)

    # The quota held; rotation did rotate (archives exist next to the active log).
    logs = d / "pvc" / "pod-a" / "logs"
    assert usage(logs) <= SOFT
    assert len(os.listdir(logs)) > 1

    # Checkpoints: the forwarder's and the profile pipeline's, in the state directory.
    state = sorted(os.listdir(d / "state"))
    assert "critical.json" in state and "profile-shop.json" in state, state
    assert "agent.lock" in state


def test_second_agent_on_the_same_state_dir_refuses_to_start(workdir: Path,
                                                              agents: list[Agent]) -> None:
    """No services needed: a cron-only agent holds the lock; a second one (another config
    file, same state_dir) exits 1 at once; after the first stops, a new one starts."""
    port = free_port()
    text = f'state_dir = "{workdir / "state"}"\n[telemetry]\nhttp_listen = "127.0.0.1:{port}"\n'
    first_cfg = workdir / "first.toml"
    first_cfg.write_text(text + f'[cron]\ncrontabs = ["{workdir / "crontab"}"]\n')
    other_cfg = workdir / "other.toml"
    other_cfg.write_text(f'state_dir = "{workdir / "state"}"\n')
    first = Agent(first_cfg, workdir / "first.log", port)
    agents.append(first)
    first.wait(lambda: first.get("/readyz")[0] == 200, "the first agent to be ready")
    second = subprocess.run([OPSAGENT, "run", "--config", str(other_cfg)], capture_output=True,
                            text=True, timeout=60)
    assert second.returncode == 1
    assert f"{workdir / 'state' / 'agent.lock'} is held by pid {first.proc.pid}" in second.stderr
    assert first.proc.poll() is None
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(60) == 0
    third = Agent(other_cfg, workdir / "third.log", free_port())
    agents.append(third)
    third.wait(lambda: "agent started" in third.log_path.read_text(), "a new agent to start")

