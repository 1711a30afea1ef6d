"""Coordination with the Kafka forwarder, and bookkeeping that must stay bounded: undelivered
bytes reported by (st_dev, st_ino) hold compression and deletion until the hard limit forces
them (counted); the per-group metric series and the rotation state forget what is gone."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry

from opsagent.clock import FakeClock
from opsagent.rotation.naming import stamp_of

from .helpers import NOW, make_service, sample


def _tree(tmp_path: Path, pod: str = "pod-a") -> Path:
    d = tmp_path / "tree" / pod / "logs"
    d.mkdir(parents=True)
    return d


def test_undelivered_by_inode_holds_compression_and_deletion_until_the_hard_limit(
        tmp_path: Path) -> None:
    d = _tree(tmp_path)
    old = d / f"app.log.{stamp_of(NOW - 100)}"
    old.write_bytes(os.urandom(64 << 10))
    st = old.stat()
    pending = {(st.st_dev, st.st_ino): 1234}
    svc = make_service(tmp_path / "tree", tmp_path / "state", compress=True,
                       quota_soft_bytes=16 << 10, keep=0)
    svc.undelivered = lambda: pending
    r = svc.run_pass()
    assert r.plan.actions == () and os.listdir(d) == [old.name]     # held, breach reported
    assert [b.limit for b in r.plan.breaches] == ["soft"]
    reg = CollectorRegistry()
    svc = make_service(tmp_path / "tree", tmp_path / "state", registry=reg, compress=True,
                       quota_soft_bytes=16 << 10, quota_hard_bytes=32 << 10, keep=0)
    svc.undelivered = lambda: pending
    r = svc.run_pass()
    assert [(a.kind, a.undelivered_bytes) for a in r.plan.actions] == [("delete", 1234)]
    assert os.listdir(d) == []
    assert sample(reg, "opsagent_rotate_forced_undelivered_bytes_total") == 1234


def test_metrics_of_vanished_groups_are_removed(tmp_path: Path) -> None:
    a, b = _tree(tmp_path, "pod-a"), _tree(tmp_path, "pod-b")
    for d in (a, b):
        (d / "app.log").write_bytes(os.urandom(8192))
    reg = CollectorRegistry()
    svc = make_service(tmp_path / "tree", tmp_path / "state", registry=reg,
                       quota_soft_bytes=1024, hard_action="none")
    svc.run_pass()
    usage = "opsagent_rotate_quota_usage_bytes"
    assert sample(reg, usage, group=str(b)) > 0
    assert sample(reg, "opsagent_rotate_quota_breaches_total", group=str(b), limit="soft") == 1
    (b / "app.log").unlink()
    b.rmdir()
    svc.run_pass()
    assert reg.get_sample_value(usage, {"policy": "t", "group": str(b)}) is None
    assert reg.get_sample_value("opsagent_rotate_quota_breaches_total",
                                {"policy": "t", "group": str(b), "limit": "soft"}) is None
    assert sample(reg, usage, group=str(a)) > 0


def test_state_forgets_logs_that_are_gone(tmp_path: Path) -> None:
    a, b = _tree(tmp_path, "pod-a"), _tree(tmp_path, "pod-b")
    clock = FakeClock(wall=NOW)
    for d in (a, b):
        (d / "app.log").write_bytes(b"x\n")
    svc = make_service(tmp_path / "tree", tmp_path / "state", clock, rotate_every="daily")
    svc.run_pass()
    assert sorted(svc.state.times) == [str(a / "app.log"), str(b / "app.log")]
    (a / "app.log").unlink()
    (b / "app.log").unlink()
    b.rmdir()
    svc.run_pass(only={str(a)})                  # an event pass forgets only in its directory
    assert sorted(svc.state.times) == [str(b / "app.log")]
    svc.run_pass()                               # a full pass forgets vanished directories
    assert svc.state.times == {}


def test_daily_rotation_after_a_lost_state_follows_the_archive_stamps(tmp_path: Path) -> None:
    d = _tree(tmp_path)
    (d / "app.log").write_bytes(b"x\n")
    (d / f"app.log.{stamp_of(NOW - 86400 - 60)}.zst").write_bytes(b"z")
    clock = FakeClock(wall=NOW)
    svc = make_service(tmp_path / "tree", tmp_path / "state", clock, rotate_every="daily")
    r = svc.run_pass()         # no state: yesterday's archive says the period has changed
    assert [a.kind for a in r.plan.actions] == ["rotate", "compress"]
    assert (d / f"app.log.{stamp_of(NOW)}.zst").exists()


def test_an_archive_still_growing_is_not_recompressed_before_the_next_rescan(
        tmp_path: Path) -> None:
    # An app writing into its renamed log (rename without a working hook): compressing it
    # again on every write event would burn a core for nothing.
    d = _tree(tmp_path)
    archive = d / f"app.log.{stamp_of(NOW - 60)}"
    archive.write_bytes(b"line\n" * 1000)
    svc = make_service(tmp_path / "tree", tmp_path / "state", compress=True)
    attempts = []

    def app_writes(step: str) -> None:
        if step == "compress:written":
            attempts.append(step)
            with open(archive, "ab") as f:
                f.write(b"more\n")

    svc.executor.fault = app_writes
    assert [o.detail for o in svc.run_pass().outcomes] == ["archive still growing"]
    r = svc.run_pass(only={str(d)})             # an event pass: held
    assert r.plan.actions == () and len(attempts) == 1
    svc.executor.fault = lambda step: None
    r = svc.run_pass()                          # the rescan tries again
    assert [o.status for o in r.outcomes] == ["done"]
    assert os.listdir(d) == [archive.name + ".zst"]
