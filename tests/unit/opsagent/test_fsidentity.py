"""opsagent.fsidentity: calls run with the identity asked for, in one thread only, without
supplementary groups or file-system capabilities, also for uid 0; fails closed when the
identity cannot be taken. Run as root (the identity switch needs CAP_SETUID/CAP_SETGID)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from opsagent import fsidentity, safeopen
from opsagent.fsidentity import Identity

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching identity needs root")


def _thread_status() -> dict[str, str]:
    with open("/proc/thread-self/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_the_call_runs_with_the_identity_and_the_caller_keeps_its_own() -> None:
    seen = fsidentity.run_as(Identity(10001, 10002), _thread_status)
    assert seen["Uid"].split()[3] == "10001" and seen["Gid"].split()[3] == "10002"
    assert seen["Groups"].strip() == ""
    assert int(seen["CapEff"], 16) & 0b11111 == 0          # CHOWN..FSETID cleared
    mine = _thread_status()
    assert mine["Uid"].split()[3] == "0" and int(mine["CapEff"], 16) & 0b11111 == 0b11111


def test_uid_0_without_dac_override_cannot_open_another_users_private_file(
        tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.write_bytes(b"x")
    os.chown(private, 65534, 65534)
    os.chmod(private, 0o600)
    with pytest.raises(PermissionError):
        fsidentity.run_as(Identity(0, 0), os.open, str(private), os.O_RDONLY)
    fd = os.open(private, os.O_RDONLY)   # the caller's thread still has CAP_DAC_OVERRIDE
    os.close(fd)


def test_exceptions_and_results_reach_the_caller_from_many_threads() -> None:
    results: list[str] = []

    def call(uid: int) -> None:
        results.append(fsidentity.run_as(Identity(uid, uid), _thread_status)["Uid"].split()[3])

    threads = [threading.Thread(target=call, args=(10000 + i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [str(10000 + i) for i in range(8)]
    with pytest.raises(ZeroDivisionError):
        fsidentity.run_as(Identity(1, 1), lambda: 1 // 0)


def test_a_forked_child_gets_its_own_worker() -> None:
    fsidentity.run_as(Identity(1, 1), int)   # the parent's worker exists
    pid = os.fork()
    if pid == 0:
        try:
            ok = fsidentity.run_as(Identity(10001, 10001), _thread_status)["Uid"].split()[3]
            os._exit(0 if ok == "10001" else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_without_cap_setuid_opens_fail_closed(tmp_path: Path) -> None:
    # A root process whose capabilities lack CAP_SETUID/CAP_SETGID (a DaemonSet without them):
    # the open is refused (no_identity), never made as root.
    logs = tmp_path / "logs"
    logs.mkdir()
    os.chown(logs, 10001, 10001)
    (logs / "app.log").write_bytes(b"x")
    os.chown(logs / "app.log", 10001, 10001)
    code = textwrap.dedent(f"""
        import ctypes, os, sys
        from opsagent import fsidentity, safeopen
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_CAPBSET_DROP = 24
        for cap in (6, 7):   # CAP_SETGID, CAP_SETUID
            assert libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0
        class H(ctypes.Structure):
            _fields_ = [("v", ctypes.c_uint32), ("pid", ctypes.c_int)]
        class D(ctypes.Structure):
            _fields_ = [("e", ctypes.c_uint32), ("p", ctypes.c_uint32), ("i", ctypes.c_uint32)]
        import platform
        _, capget, capset = fsidentity._SYSCALLS[platform.machine()]
        h = H(0x20080522, 0); d = (D * 2)()
        libc.syscall(capget, ctypes.byref(h), d)
        d[0].e &= ~0xC0; d[0].p &= ~0xC0
        assert libc.syscall(capset, ctypes.byref(h), d) == 0
        fd = os.open({str(logs)!r}, os.O_RDONLY | os.O_DIRECTORY)
        try:
            safeopen.open_regular(fd, "app.log", os.O_RDONLY, None)
        except safeopen.UnsafeFile as e:
            print(e.kind)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, timeout=60)
    assert out.stdout.strip() == "no_identity", out.stderr


def test_open_regular_refuses_what_the_owner_may_not_open(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    os.chown(logs, 10001, 10001)
    log = logs / "app.log"
    log.write_bytes(b"x")
    os.chown(log, 10001, 10001)
    os.chmod(log, 0o400)   # its owner may read it, not write it
    fd = os.open(logs, os.O_RDONLY | os.O_DIRECTORY)
    try:
        rfd, st = safeopen.open_regular(fd, "app.log", os.O_RDONLY, None)
        os.close(rfd)
        assert st.st_uid == 10001
        with pytest.raises(safeopen.UnsafeFile) as e:
            safeopen.open_regular(fd, "app.log", os.O_RDWR, None)
        assert e.value.kind == "denied"
    finally:
        os.close(fd)


def test_an_agent_that_is_not_root_opens_as_itself(tmp_path: Path) -> None:
    """The sidecar runs as an ordinary user over an fsGroup emptyDir (root-owned, mode 2777):
    no identity switch, no owner rule (it has no one else's rights to lend); the kernel checks
    its opens as itself."""
    logs = tmp_path / "logs"
    logs.mkdir()
    os.chmod(logs, 0o2777)
    mine = logs / "app.log"
    mine.write_bytes(b"x")
    os.chown(mine, 10001, 10001)
    theirs = logs / "private.log"
    theirs.write_bytes(b"y")
    os.chown(theirs, 10002, 10002)
    os.chmod(theirs, 0o600)
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            fd = os.open(logs, os.O_RDONLY | os.O_DIRECTORY)  # (tmp_path's parents: 0700)
            os.setgroups([])
            os.setgid(10001)
            os.setuid(10001)
            rfd, _ = safeopen.open_regular(fd, "app.log", os.O_RDWR, None)
            os.close(rfd)
            try:
                safeopen.open_regular(fd, "private.log", os.O_RDONLY, None)
                code = 1
            except safeopen.UnsafeFile as e:
                code = 0 if e.kind == "denied" else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
