"""The image built from the Dockerfile, run by podman the way the manifests in deploy/ run it.

- As the DaemonSet: root with exactly the manifest's capabilities, read-only root file system,
  the state dir and a log tree bind-mounted like its hostPath volumes, a tmpfs /tmp. All four jobs
  work from inside: a cron job runs, a log is rotated and compressed, profile statistics reach a
  UDP listener on the host, critical lines reach the test broker; /healthz and /readyz answer;
  an orphaned grandchild of a cron job is reaped by the agent as PID 1; `podman stop` drains
  and the container exits 0 (not SIGKILLed after the stop timeout).
- As the sidecar: uid 10001, no capabilities, only its own volume; copytruncate rotation there.
- With the image's own default command and config: starts cleanly, as uid 10001.
Also: the final stage carries no build tools, sources or wheels.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.kafka import KafkaBroker
from tests.fixtures.services import ROOT, free_port
from tests.integration.image.containers import (
    UID,
    Container,
    Image,
    podman,
    run_options,
    zombie_children,
)

pytestmark = pytest.mark.integration

DAEMONSET = ROOT / "deploy" / "kubernetes" / "daemonset.yaml"
SIDECAR = ROOT / "deploy" / "kubernetes" / "sidecar-example.yaml"
# Above the agent's drain deadline (20 s below): exit code 0 means the agent drained and exited
# by itself; podman's SIGKILL after this timeout would show as 137.
STOP_TIMEOUT_SECS = 30
INTERFACE = "com.shop.OrderService"
CRITICAL_LINES = 20


def manifest_container(path: Path, kind: str, init: bool = False) -> dict[str, Any]:
    """The opsagent container spec of the first `kind` object in a manifest file."""
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == kind:
            spec = doc["spec"]["template"]["spec"]
            for c in spec["initContainers" if init else "containers"]:
                if c["name"] == "opsagent":
                    return dict(c)
    raise AssertionError(f"{path}: no {kind} with an opsagent container")


def manifest_config(path: Path) -> str:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "ConfigMap":
            return str(doc["data"]["opsagent.toml"])
    raise AssertionError(f"{path}: no ConfigMap")


def security_options(container: dict[str, Any]) -> list[str]:
    """podman options for a container's securityContext (the parts these manifests use)."""
    sc = container.get("securityContext", {})
    opts = ["--cap-drop", "all"]
    for cap in sc.get("capabilities", {}).get("add", []):
        opts += ["--cap-add", cap]
    if sc.get("readOnlyRootFilesystem"):
        opts.append("--read-only")
    if sc.get("allowPrivilegeEscalation") is False:
        opts += ["--security-opt", "no-new-privileges"]
    return opts


def motan(method: str, ok: str, ms: int) -> str:
    return (f"server|shop|order|10.0.0.7|{INTERFACE}|{method}|long|10.0.0.9|web|web|{ok}|r|"
            f"120|800|{ms - 1}|{ms}\n")


# The orphan: a background subshell that outlives its job, records its parent once the job's
# shell is gone (PID 1 inherits it), then exits: only PID 1 can reap it.
ORPHAN_JOB = ("@reboot (sleep 1; read -r pid comm state ppid rest < /proc/self/stat; "
              "echo \"$pid $ppid\" > /pvc/orphan.tmp; mv /pvc/orphan.tmp /pvc/orphan) "
              ">/dev/null 2>&1 &\n")


def daemonset_config(*, http_port: int, statsd_port: int, kafka: str, topic: str) -> str:
    return f"""
state_dir = "/var/lib/opsagent"
drain_deadline_secs = 20.0

[node]
name = "image-node"

[telemetry]
http_listen = "127.0.0.1:{http_port}"

[cron]
crontabs = ["/etc/opsagent/crontab"]
grace_secs = 5.0

[[rotate]]
name = "pvc-logs"
directories = ["/pvc/*/logs"]
rotate_size_bytes = 4096
keep = 5
compress = true
quota_soft_bytes = 1048576
quota_hard_bytes = 2097152
min_interval_secs = 0.2
rescan_interval_secs = 1.0

[[profile]]
name = "shop"
preset = "motan"
interval_secs = 1
late_secs = 0.5
[profile.tail]
include = ["/pvc/*/profile/*.log"]
start_at = "beginning"
[profile.statsd]
host = "127.0.0.1"
port = {statsd_port}

[[forward]]
name = "critical"
[forward.tail]
include = ["/pvc/*/critical/*.log"]
start_at = "beginning"
[forward.kafka]
bootstrap_servers = ["{kafka}"]
topic = "{topic}"
linger_ms = 5
"""


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for c in started:
        c.remove()


@pytest.fixture
def udp_listener() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(1.0)
    yield s
    s.close()


def archives(logs: Path) -> list[str]:
    return sorted(n for n in os.listdir(logs) if n.startswith("app.log.") and n.endswith(".zst"))


def test_as_the_daemonset_every_job_works_and_stop_drains(
        opsagent_image: Image, kafka_broker: KafkaBroker, udp_listener: socket.socket,
        containers: list[Container], tmp_path: Path) -> None:
    spec = manifest_container(DAEMONSET, "DaemonSet")
    assert spec["securityContext"]["runAsUser"] == 0
    mounts = {m["name"]: m["mountPath"] for m in spec["volumeMounts"]}

    topic = f"image-critical-{os.getpid()}-{int(time.time())}"
    kafka_broker.create_topic(topic)
    http_port = free_port()
    config, state, pvc = tmp_path / "config", tmp_path / "state", tmp_path / "pvc"
    for d in (config, state, pvc / "pod-a" / "logs", pvc / "pod-a" / "profile",
              pvc / "pod-a" / "critical"):
        d.mkdir(parents=True)
    (config / "opsagent.toml").write_text(daemonset_config(
        http_port=http_port, statsd_port=udp_listener.getsockname()[1],
        kafka=kafka_broker.bootstrap, topic=topic))
    (config / "crontab").write_text(
        "* * * * * * * echo ran >> /pvc/cron-ran\n" + ORPHAN_JOB)
    (pvc / "pod-a" / "profile" / "access.log").write_text(
        "".join(motan("getOrder", "true", 10) for _ in range(5)))
    (pvc / "pod-a" / "critical" / "critical.log").write_text(
        "".join(f"CRITICAL seq={i}\n" for i in range(1, CRITICAL_LINES + 1)))

    options = [
        "--user", "0:0", *security_options(spec),
        "--env", "NODE_NAME=image-node", "--env", "POD_NAME=opsagent-test",
        "--env", "POD_NAMESPACE=opsagent",
        "--volume", f"{config}:{mounts['config']}:ro",
        "--volume", f"{state}:{mounts['state']}",
        "--volume", f"{pvc}:{mounts['pvc-logs']}",
        "--tmpfs", mounts["tmp"],
    ]
    t0 = time.monotonic()
    c = Container.run(opsagent_image, "opsagent-test-daemonset", options, spec["args"],
                      http_port=http_port)
    containers.append(c)
    c.wait(lambda: c.answers("/readyz"), "/readyz")
    print(f"\nstart-up (podman run to /readyz 200): {time.monotonic() - t0:.2f} s")
    assert c.get("/healthz") == (200, "ok\n")

    # Cron: the every-second job ran, as root, in the container.
    c.wait(lambda: len((pvc / "cron-ran").read_text().split()) >= 2
           if (pvc / "cron-ran").exists() else False, "the cron job to run twice")
    assert (pvc / "cron-ran").stat().st_uid == 0

    # Rotation: the log past rotate_size_bytes is rotated and its archive compressed.
    logs = pvc / "pod-a" / "logs"
    (logs / "app.log").write_text("app line\n" * 1000)
    c.wait(lambda: archives(logs), "a compressed archive of app.log")

    # Profile: statistics of the access log arrive over UDP on the host.
    got: list[bytes] = []

    def datagram_with_stats() -> bool:
        try:
            data = udp_listener.recv(65535)
        except TimeoutError:
            return False
        got.append(data)
        return b"profile_shop_requests" in data and b"getOrder" in data

    c.wait(datagram_with_stats, "profile statistics on the UDP listener")

    # Forward: every critical line is in Kafka, in order, with the node's identity.
    c.wait(lambda: c.metric("opsagent_tail_lines_total", {"pipeline": "critical"})
           >= CRITICAL_LINES, "the forwarder to read every line")

    def all_in_kafka() -> list[Any] | None:
        recs = kafka_broker.consume_all(topic)
        return recs if len(recs) >= CRITICAL_LINES else None

    records = c.wait(all_in_kafka, f"{CRITICAL_LINES} records in {topic}")
    assert [r.value.decode() for r in records] == [
        f"CRITICAL seq={i}" for i in range(1, CRITICAL_LINES + 1)]
    assert {k: v.decode() for k, v in records[0].headers}.get("node") == "image-node"

    # PID 1 reaps the orphan: it was re-parented to the agent (pid 1 in the container), exited,
    # and is gone from the process table, not left a zombie.
    orphan = pvc / "orphan"
    c.wait(orphan.exists, "the orphaned grandchild to report its parent")
    orphan_pid, orphan_ppid = (int(x) for x in orphan.read_text().split())
    assert orphan_ppid == 1
    agent_pid = c.host_pid()
    c.wait(lambda: all(ns != orphan_pid for _, ns in zombie_children(agent_pid))
           and not _child_alive(agent_pid, orphan_pid), "the orphan to be reaped")
    assert c.get("/healthz")[0] == 200

    # The live view from inside, as `kubectl exec ds/opsagent -- opsagent status --once ...`.
    view = podman("exec", c.name, "opsagent", "status", "--once", "--interval", "0.5",
                  "--config", "/etc/opsagent/opsagent.toml").stdout
    assert "/pvc/pod-a/critical/critical.log" in view, view
    assert "/pvc/pod-a/logs" in view and "/etc/opsagent/crontab:1" in view, view

    # SIGTERM via podman stop: the agent drains and exits 0 well before the SIGKILL.
    assert c.stop(STOP_TIMEOUT_SECS) == 0, c.tail()
    recs = c.records()
    stopped = [r for r in recs if r.get("msg") == "stopped" and r.get("component") == "agent"]
    assert stopped and stopped[-1].get("late") == [], c.tail()
    assert not [r for r in recs if r.get("level") == "error"], c.tail()
    assert "critical.json" in os.listdir(state)


def _child_alive(host_pid: int, ns_pid: int) -> bool:
    """Whether a child of `host_pid` with pid `ns_pid` in the container still exists."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        f = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if f.get("PPid", "").strip() == str(host_pid) and \
                f.get("NSpid", "").split()[-1:] == [str(ns_pid)]:
            return True
    return False


def test_as_the_sidecar_non_root_on_its_own_volume(
        opsagent_image: Image, containers: list[Container], tmp_path: Path) -> None:
    spec = manifest_container(SIDECAR, "Deployment", init=True)
    assert "add" not in spec["securityContext"].get("capabilities", {})
    mounts = {m["name"]: m["mountPath"] for m in spec["volumeMounts"]}
    http_port = free_port()
    # The manifest's own config, with a test port and a small rotation size.
    text = manifest_config(SIDECAR).replace("0.0.0.0:9101", f"127.0.0.1:{http_port}")
    text, n = re.subn(r"rotate_size_bytes = \d+", "rotate_size_bytes = 4096", text)
    assert n == 1
    text += "min_interval_secs = 0.2\nrescan_interval_secs = 1.0\n"
    config, logs, state = tmp_path / "config", tmp_path / "logs", tmp_path / "state"
    for d in (config, logs, state):
        d.mkdir()
    (config / "opsagent.toml").write_text(text)
    for d in (logs, state):
        os.chown(d, UID, UID)
    app_log = logs / "app.log"
    app_log.write_text("app line\n" * 1000)
    os.chown(app_log, UID, UID)

    options = [
        "--user", f"{UID}:{UID}", *security_options(spec),
        "--volume", f"{config}:{mounts['opsagent-config']}:ro",
        "--volume", f"{logs}:{mounts['logs']}",
        "--volume", f"{state}:{mounts['opsagent-state']}",
    ]
    c = Container.run(opsagent_image, "opsagent-test-sidecar", options, spec["args"],
                      http_port=http_port)
    containers.append(c)
    c.wait(lambda: c.answers("/readyz"), "/readyz")
    assert c.get("/healthz") == (200, "ok\n")

    # copytruncate: the active log stays (truncated), its archive is compressed, all as 10001.
    c.wait(lambda: archives(logs), "a compressed archive of app.log")
    c.wait(lambda: app_log.stat().st_size < 9000, "app.log to be truncated")
    for name in os.listdir(logs):
        assert (logs / name).stat().st_uid == UID, name
    assert {p.stat().st_uid for p in state.iterdir()} == {UID}
    assert c.stop(STOP_TIMEOUT_SECS) == 0, c.tail()
    assert not [r for r in c.records() if r.get("level") == "error"], c.tail()


def test_default_command_and_config_start_cleanly(
        opsagent_image: Image, containers: list[Container]) -> None:
    # Its own network namespace: the default config listens on 0.0.0.0:9101, which the host may
    # be using; the probes run inside with the image's python.
    c = Container.run(opsagent_image, "opsagent-test-default", [], network="none")
    containers.append(c)

    def probe(path: str) -> bool:
        r = podman("exec", c.name, "python3", "-c",
                   "import sys, urllib.request as u; "
                   f"sys.exit(0 if u.urlopen('http://127.0.0.1:9101{path}').status == 200 "
                   "else 1)", check=False)
        return r.returncode == 0

    c.wait(lambda: probe("/readyz"), "/readyz inside the container")
    assert probe("/healthz")
    assert c.running()
    started = [r for r in c.records() if r.get("msg") == "agent started"]
    assert started, c.tail()
    assert not [r for r in c.records() if r.get("level") == "error"], c.tail()
    assert podman("exec", c.name, "id", "-u").stdout.strip() == str(UID)
    assert c.stop(STOP_TIMEOUT_SECS) == 0, c.tail()


def test_final_stage_has_no_build_tools_or_sources(opsagent_image: Image) -> None:
    r = podman("run", "--rm", *run_options(network="none"), "--entrypoint", "/bin/sh",
               opsagent_image.tag, "-c",
               "for t in gcc cc make /opt/opsagent/bin/pip; do command -v $t; done; "
               "ls -d /src /wheels /root/.cache/pip 2>/dev/null; true")
    assert r.stdout.strip() == "", r.stdout
