"""Metrics live in the registry passed in, with a bounded job label."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry

from gorun.metrics import OTHER, Metrics


def test_job_label_is_bounded() -> None:
    m = Metrics(CollectorRegistry(), max_jobs=3)
    labels = [m.job(f"/c:{i}") for i in range(5)]
    assert labels == ["/c:0", "/c:1", "/c:2", OTHER, OTHER]
    assert m.job("/c:1") == "/c:1"


def test_uses_only_the_given_registry() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.runs.labels(m.job("/c:1")).inc()
    assert reg.get_sample_value("opsagent_cron_runs_total", {"job": "/c:1"}) == 1
    assert REGISTRY.get_sample_value("opsagent_cron_runs_total", {"job": "/c:1"}) is None
    Metrics(CollectorRegistry())  # a second instance does not clash


def test_next_runs_replace_the_previous_set() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, max_jobs=2)
    m.set_next_runs({"/c:1": 100.0, "/c:2": 200.0, "/c:3": 300.0})   # /c:3 is past max_jobs
    assert reg.get_sample_value("opsagent_cron_next_run_timestamp_seconds", {"job": "/c:1"}) == 100
    assert reg.get_sample_value("opsagent_cron_next_run_timestamp_seconds", {"job": OTHER}) is None
    m.set_next_runs({"/c:2": 250.0, "/c:1": None})    # /c:1 never fires again
    assert reg.get_sample_value("opsagent_cron_next_run_timestamp_seconds", {"job": "/c:1"}) is None
    assert reg.get_sample_value("opsagent_cron_next_run_timestamp_seconds", {"job": "/c:2"}) == 250
