"""Debian cron's rules for crontab files (issue 11): a crontab someone other than the user its
jobs run as could have written is refused whole, with its FILE named: wrong owner,
group/other-writable, hard-linked, or inside a tree others can write. In gorun standalone
(`gorun test`, the daemon's loader) and in the agent's [cron] (`check-config`, `run`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gorun.cli import main as gorun_main
from gorun.crontab import load_crontab
from opsagent.cli import main as opsagent_main

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: files of other uids")

JOB = "* * * * * root echo pwned\n"


def _crontab(d: Path, *, uid: int = 0, mode: int = 0o644, name: str = "crontab") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text("* * * * * echo pwned\n")
    os.chown(p, uid, uid)
    os.chmod(p, mode)
    return p


def _refusal(p: Path, **kw: bool) -> str:
    ct = load_crontab(str(p), **kw)
    assert ct.jobs == () and not ct.ok
    [problem] = ct.problems
    assert problem.file == str(p) and problem.line == 0
    return str(problem)


@pytest.mark.parametrize("uid,mode,expect", [
    (65534, 0o666, "owned by uid 65534"),          # the crontab
    (0, 0o666, "writable by group or others (mode 0666)"),
    (0, 0o664, "writable by group or others (mode 0664)"),
    (65534, 0o644, "owned by uid 65534"),
], ids=["nobody-0666", "root-0666", "root-0664", "nobody-0644"])
def test_crontab_others_could_write_is_refused(tmp_path: Path, uid: int, mode: int,
                                               expect: str) -> None:
    p = _crontab(tmp_path / "etc", uid=uid, mode=mode)
    msg = _refusal(p)
    assert msg.startswith(f"{p}:0: refusing crontab: ") and expect in msg


def test_root_owned_not_writable_by_others_is_loaded(tmp_path: Path) -> None:
    for mode in (0o644, 0o600, 0o400):
        p = _crontab(tmp_path / "etc", mode=mode)
        assert load_crontab(str(p)).ok and len(load_crontab(str(p)).jobs) == 1


def test_system_form_must_be_owned_by_root(tmp_path: Path) -> None:
    d = tmp_path / "etc"
    d.mkdir()
    p = d / "crontab"
    p.write_text(JOB)
    os.chown(p, 10001, 10001)
    assert "owned by uid 10001, not by root" in _refusal(p, system=True)
    os.chown(p, 0, 0)
    assert load_crontab(str(p), system=True).ok


def test_a_fifo_in_the_crontabs_place_is_refused_without_blocking(tmp_path: Path) -> None:
    d = tmp_path / "etc"
    d.mkdir()
    os.mkfifo(d / "crontab")
    assert "not a regular file" in _refusal(d / "crontab")


def test_hard_linked_crontab_is_refused(tmp_path: Path) -> None:
    p = _crontab(tmp_path / "etc")
    os.link(p, tmp_path / "other-name")
    assert "has 2 hard links" in _refusal(p)


@pytest.mark.parametrize("owner,mode,ok", [
    (10001, 0o755, False),    # a pod's log directory
    (0, 0o777, False),        # writable by everyone
    (0, 0o775, True),         # group root may write (as Debian's checks allow)
    (0, 0o1777, True),        # sticky, like /tmp: others cannot replace a root file
])
def test_crontab_in_a_tree_others_can_write_is_refused(tmp_path: Path, owner: int, mode: int,
                                                       ok: bool) -> None:
    tree = tmp_path / "pvc" / "pod"
    p = _crontab(tree / "etc")
    os.chown(tree, owner, owner)
    os.chmod(tree, mode)
    if ok:
        assert load_crontab(str(p)).ok
    else:
        msg = _refusal(p)
        assert f"directory {str(tree)!r}" in msg and "tree others can write" in msg


def test_a_symlink_into_a_tenant_tree_is_refused(tmp_path: Path) -> None:
    tenant = tmp_path / "pvc" / "pod"
    target = _crontab(tenant)
    os.chown(tenant, 10001, 10001)
    (tmp_path / "etc").mkdir()
    link = tmp_path / "etc" / "crontab"
    link.symlink_to(target)
    assert "tree others can write" in _refusal(link)


def test_gorun_test_reports_the_file_and_fails(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    p = _crontab(tmp_path / "etc", uid=65534, mode=0o666)
    assert gorun_main(["test", str(p)]) == 2
    err = capsys.readouterr().err
    assert f"{p}:0: refusing crontab: owned by uid 65534" in err


def _agent_config(tmp_path: Path, crontab: Path) -> Path:
    cfg = tmp_path / "opsagent.toml"
    cfg.write_text(f"""
state_dir = "{tmp_path}/state"

[cron]
crontabs = ["{crontab}"]

[[rotate]]
name = "pods"
directories = ["{tmp_path}/pvc/*/logs"]
""")
    return cfg


def test_agent_refuses_a_crontab_in_a_watched_tree(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # Root-owned, mode 0644, in root-owned directories: only its place is wrong. The pods
    # write the watched tree below /pvc; anything there is theirs to replace.
    p = _crontab(tmp_path / "pvc")
    cfg = _agent_config(tmp_path, p)
    assert opsagent_main(["check-config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: cron.crontabs[0]: crontab {str(p)!r} is inside a watched tree" in err
    assert opsagent_main(["run", "--config", str(cfg)]) == 2


def test_agent_reports_a_world_writable_crontab(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    p = _crontab(tmp_path / "etc", uid=65534, mode=0o666)
    cfg = _agent_config(tmp_path, p)
    assert opsagent_main(["check-config", str(cfg)]) == 2
    assert f"{p}:0: refusing crontab: owned by uid 65534" in capsys.readouterr().err


def test_the_scheduler_runs_no_job_of_a_refused_crontab(tmp_path: Path) -> None:
    import io
    import logging
    import threading

    from prometheus_client import CollectorRegistry

    from gorun.app import GorunApp, GorunOptions
    from tests.unit.gorun.rig import Recorder

    marker = tmp_path / "pwned"
    tab = tmp_path / "etc" / "crontab"
    tab.parent.mkdir()
    tab.write_text(f"@reboot touch {marker}\n")
    rec = Recorder()
    loggers = [logging.getLogger(n) for n in ("gorun.daemon", "gorun.job")]
    for lg in loggers:
        lg.addHandler(rec)
        lg.setLevel(logging.INFO)
    try:
        for owner, mode, runs in ((65534, 0o666, False), (0, 0o644, True)):
            os.chown(tab, owner, owner)
            os.chmod(tab, mode)
            rec.records.clear()
            app = GorunApp(GorunOptions(paths=(str(tab),), watch=False, reap_orphans=False),
                           registry=CollectorRegistry(), stdout=io.BytesIO(),
                           stderr=io.BytesIO())
            t = threading.Thread(target=app.run)
            t.start()
            if runs:   # the control: the same crontab, root's and 0644, does run
                rec.wait_for(lambda rs: any(r["msg"] == "job succeeded" for r in rs))
            else:
                rs = rec.wait_for(lambda rs: any(r["msg"] == "gorun started" for r in rs))
                assert any(r["msg"].startswith(f"{tab}:0: refusing crontab") for r in rs)
                assert next(r for r in rs if r["msg"] == "gorun started")["jobs"] == 0
            app.stop()
            t.join(30)
            assert marker.exists() == runs
    finally:
        for lg in loggers:
            lg.removeHandler(rec)
