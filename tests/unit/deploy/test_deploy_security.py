"""Least privilege in deploy/ (issue 11): only the capabilities the configuration needs, a
hostPath that cannot wedge the pod on nodes without it, and a NetworkPolicy that admits only
the scraper to the agent's port - in the plain manifest and in the Helm chart."""

from __future__ import annotations

import subprocess
import tomllib
from typing import Any

import pytest
import yaml

from tests.unit.deploy.test_deploy_static_checks import MANIFESTS, ROOT, _helm

BASE_CAPS = ["DAC_OVERRIDE", "SETGID", "SETUID"]


def _plain() -> list[dict[str, Any]]:
    return [d for p in MANIFESTS for d in yaml.safe_load_all(p.read_text()) if d]


def _helm_docs(*values: str) -> list[dict[str, Any]]:
    r = subprocess.run([_helm(), "template", "ops", "deploy/helm/opsagent", *values],
                       capture_output=True, text=True, cwd=ROOT, check=False)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def _agent(docs: list[dict[str, Any]]) -> dict[str, Any]:
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    spec: dict[str, Any] = ds["spec"]["template"]["spec"]
    return spec


def _caps(spec: dict[str, Any]) -> list[str]:
    caps: list[str] = spec["containers"][0]["securityContext"]["capabilities"]["add"]
    return sorted(caps)


def _config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    return tomllib.loads(cm["data"]["opsagent.toml"])


def test_plain_daemonset_adds_only_what_its_config_needs() -> None:
    docs = _plain()
    spec = _agent(docs)
    # No CHOWN/FOWNER: archives are created as the log's owner; KILL only for system cron.
    assert not _config(docs).get("cron", {}).get("system", False)
    assert _caps(spec) == BASE_CAPS
    assert spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False


def test_helm_adds_kill_only_for_system_cron() -> None:
    assert _caps(_agent(_helm_docs())) == BASE_CAPS
    docs = _helm_docs("--set", "daemonset.cronSystem=true")
    assert _caps(_agent(docs)) == sorted([*BASE_CAPS, "KILL"])


def test_helm_refuses_system_cron_without_kill() -> None:
    config = ('state_dir = "/var/lib/opsagent"\n[cron]\ncrontabs = ["/etc/opsagent/crontab"]\n'
              'system = true\n')
    r = subprocess.run([_helm(), "template", "ops", "deploy/helm/opsagent",
                        "--set-string", f"config={config}"],
                       capture_output=True, text=True, cwd=ROOT, check=False)
    assert r.returncode != 0 and "daemonset.cronSystem=true" in r.stderr


@pytest.mark.parametrize("source", ["plain", "helm"])
def test_log_hostpath_cannot_wedge_the_pod(source: str) -> None:
    spec = _agent(_plain() if source == "plain" else _helm_docs())
    vols = {v["name"]: v for v in spec["volumes"]}
    # The DaemonSet tolerates every taint: on a node without the directory, `Directory`
    # would keep the pod in ContainerCreating for good.
    assert vols["pvc-logs"]["hostPath"]["type"] == "DirectoryOrCreate"
    assert vols["state"]["hostPath"]["type"] == "DirectoryOrCreate"


@pytest.mark.parametrize("source", ["plain", "helm"])
def test_networkpolicy_admits_only_the_scraper_to_the_http_port(source: str) -> None:
    docs = _plain() if source == "plain" else _helm_docs()
    [np] = [d for d in docs if d["kind"] == "NetworkPolicy"]
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    sel = np["spec"]["podSelector"]["matchLabels"]
    assert sel.items() <= pod_labels.items()          # it selects the agent's pods
    assert np["spec"]["policyTypes"] == ["Ingress"]
    [rule] = np["spec"]["ingress"]
    [peer] = rule["from"]
    assert peer["namespaceSelector"]["matchLabels"] and peer["podSelector"]["matchLabels"]
    ports = {p["name"] for p in ds["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert [p["port"] for p in rule["ports"]] == ["http"] and "http" in ports


def test_helm_networkpolicy_selectors_come_from_values() -> None:
    docs = _helm_docs("--set", "networkPolicy.scraper.namespaceSelector.matchLabels.team=obs",
                      "--set", "networkPolicy.scraper.podSelector.matchLabels.app=vm")
    [np] = [d for d in docs if d["kind"] == "NetworkPolicy"]
    peer = np["spec"]["ingress"][0]["from"][0]
    assert peer["namespaceSelector"]["matchLabels"]["team"] == "obs"
    assert peer["podSelector"]["matchLabels"]["app"] == "vm"
    assert not [d for d in _helm_docs("--set", "networkPolicy.enabled=false")
                if d["kind"] == "NetworkPolicy"]
