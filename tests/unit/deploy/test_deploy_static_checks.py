"""Packaging checked offline, since no image can be built and no cluster run here: hadolint on the
Dockerfile, yamllint and kubernetes-validate (bundled schemas, strict) on the plain manifests and
on the Helm chart's rendered output, and the agent configs embedded in them load."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from opsagent import __version__
from tests.fixtures.services import CACHE, require_service

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        require_service(name, "not installed in the virtualenv (pip install -e '.[test]')")
    return str(found)


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, **kw)  # type: ignore[call-overload,no-any-return]


def test_dockerfile_passes_hadolint() -> None:
    r = _run([_tool("hadolint"), "Dockerfile"])
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_pins_the_package_version() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert f"opsagent=={__version__}" in text
    # The base is an ARG (tests build on a local base) whose default is the official image.
    assert re.search(r"^ARG BASE_IMAGE=python:3\.\d+\.\d+-slim-\w+$", text, re.M)
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(f == "${BASE_IMAGE}" for f in froms), froms
    assert 'ENTRYPOINT ["opsagent"]' in text
    with open(ROOT / "pyproject.toml", "rb") as f:
        assert tomllib.load(f)["project"]["version"] == __version__


def test_yamllint() -> None:
    r = _run([_tool("yamllint"), "--strict", "deploy"])
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_plain_manifests_validate(path: Path) -> None:
    r = _run([_tool("kubernetes-validate"), "--strict", str(path)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "passed" in r.stdout + r.stderr


def _helm() -> str:
    for cand in (CACHE / "bin" / "helm", shutil.which("helm")):
        if cand and Path(cand).exists():
            return str(cand)
    require_service("helm", "not provisioned (scripts/provision.d/helm.sh)")
    raise AssertionError("unreachable")


@pytest.mark.parametrize("values", [[], ["--set", "sidecarExample.enabled=true"]],
                         ids=["daemonset", "with-sidecar-example"])
def test_helm_chart_renders_valid_manifests(tmp_path: Path, values: list[str]) -> None:
    r = _run([_helm(), "template", "ops", "deploy/helm/opsagent", *values])
    assert r.returncode == 0, r.stderr
    out = tmp_path / "rendered.yaml"
    out.write_text(r.stdout)
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    kinds = sorted(d["kind"] for d in docs)
    expected = ["ConfigMap", "DaemonSet", "NetworkPolicy", "PriorityClass", "ServiceAccount"]
    if values:   # the sidecar example: its own ConfigMap and the Deployment
        expected = sorted([*expected, "ConfigMap", "Deployment"])
    assert kinds == expected
    v = _run([_tool("kubernetes-validate"), "--strict", str(out)])
    assert v.returncode == 0, v.stdout + v.stderr


def test_daemonset_grace_period_exceeds_drain_deadline() -> None:
    docs = [d for p in MANIFESTS for d in yaml.safe_load_all(p.read_text()) if d]
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] >= 30
    assert spec["automountServiceAccountToken"] is False
    c = spec["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sidecar = next(d for d in docs if d["kind"] == "Deployment")
    init = sidecar["spec"]["template"]["spec"]["initContainers"][0]
    assert init["restartPolicy"] == "Always"   # a native sidecar


def _render(*values: str) -> subprocess.CompletedProcess[str]:
    return _run([_helm(), "template", "ops", "deploy/helm/opsagent", *values])


def _port_of(container: dict, probe: str) -> int:
    """The number a probe really checks (a named port resolved through the container's ports)."""
    port = container[probe]["httpGet"]["port"]
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


def _agent_config(configmap: dict) -> tuple[str, object]:
    from opsagent.config.loader import from_dict
    from opsagent.config.schema import AgentConfig

    text = configmap["data"]["opsagent.toml"]
    return text, from_dict(AgentConfig, tomllib.loads(text))


def test_helm_non_default_values_agree_everywhere(tmp_path: Path) -> None:
    """`-n other --set httpPort=9200` with the sidecar example: every object in the release
    namespace; the agent listens where the probes look; each pod mounts a config that names
    only what it mounts; kubernetes-validate passes."""
    from opsagent.config.schema import parse_listen

    r = _render("-n", "other", "--set", "httpPort=9200", "--set", "sidecarExample.enabled=true")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "rendered.yaml"
    out.write_text(r.stdout)
    v = _run([_tool("kubernetes-validate"), "--strict", str(out)])
    assert v.returncode == 0, v.stdout + v.stderr
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    for d in docs:
        if d["kind"] != "PriorityClass":           # cluster-scoped
            assert d["metadata"]["namespace"] == "other", d["kind"]
    maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    pods = [(d["spec"]["template"]["spec"], "containers") for d in docs
            if d["kind"] == "DaemonSet"]
    pods += [(d["spec"]["template"]["spec"], "initContainers") for d in docs
             if d["kind"] == "Deployment"]
    assert len(pods) == 2
    for spec, field in pods:
        agent = next(c for c in spec[field] if c["name"] == "opsagent")
        assert [p["containerPort"] for p in agent["ports"]] == [9200]
        assert _port_of(agent, "livenessProbe") == _port_of(agent, "readinessProbe") == 9200
        volume = next(v for v in spec["volumes"] if v.get("configMap"))
        text, cfg = _agent_config(maps[volume["configMap"]["name"]])
        assert parse_listen(cfg.telemetry.http_listen)[1] == 9200, text  # type: ignore[attr-defined]
        mounts = [m["mountPath"] for m in agent["volumeMounts"]]
        for r_cfg in cfg.rotate:                   # type: ignore[attr-defined]
            for d in r_cfg.directories:
                assert any(d == m or d.startswith(m.rstrip("/") + "/") for m in mounts), \
                    f"{d} is not under a mount of this pod ({mounts})"
    sidecar_volume = next(v for v in pods[1][0]["volumes"] if v.get("configMap"))
    assert sidecar_volume["configMap"]["name"] == "shop-opsagent"   # not the DaemonSet's


def test_helm_refuses_a_config_that_listens_off_the_probe_port() -> None:
    r = _render("--set", "httpPort=9200", "--set-string",
                'config=state_dir = "/x"\n[telemetry]\nhttp_listen = "0.0.0.0:9101"\n')
    assert r.returncode != 0
    assert "config: [telemetry] http_listen must listen on httpPort 9200" in r.stderr


def test_helm_config_changes_roll_pods_only_when_asked() -> None:
    """Default: no checksum (the agent hot-reloads the ConfigMap); rollOnConfigChange=true: a
    checksum of the whole ConfigMap, extraConfigFiles (crontabs) included."""
    def checksum(*values: str) -> str | None:
        r = _render(*values)
        assert r.returncode == 0, r.stderr
        ds = next(d for d in yaml.safe_load_all(r.stdout) if d and d["kind"] == "DaemonSet")
        annotations = ds["spec"]["template"]["metadata"].get("annotations") or {}
        return annotations.get("checksum/config")  # type: ignore[no-any-return]

    assert checksum("--set-string", "extraConfigFiles.crontab=* * * * * true") is None
    roll = ["--set", "rollOnConfigChange=true"]
    a = checksum(*roll, "--set-string", "extraConfigFiles.crontab=* * * * * true")
    b = checksum(*roll, "--set-string", "extraConfigFiles.crontab=* * * * * false")
    assert a and b and a != b
