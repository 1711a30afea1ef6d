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
    assert re.search(r"^FROM python:3\.\d+\.\d+-slim-\w+", text, re.M)
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
    if values:
        expected = sorted([*expected, "Deployment"])
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
