"""Archives keep the owner, group, permission bits and mtime of the log they archive, like
logrotate (its test 0108 for the mtime), so the pod that wrote a log can read its archives.
Taken from the descriptor of the log (never by following a name); run as root."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from opsagent.rotation import safefs
from opsagent.rotation.executor import Executor
from opsagent.rotation.policy import Action

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: files of other uids")]

UID, GID = 10001, 10002
MTIME_NS = 1_700_000_000_123_456_789
ARCHIVE = "app.log.20260101-000000"


def _meta(p: Path) -> tuple[int, int, int, int]:
    st = os.stat(p, follow_symlinks=False)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_mtime_ns


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    d = tmp_path / "pod" / "logs"
    d.mkdir(parents=True)
    os.chown(d, UID, UID)
    return d


def _log(logs: Path, name: str, mode: int) -> Path:
    p = logs / name
    p.write_bytes(b"line\n" * 1000)
    os.chown(p, UID, GID)
    os.chmod(p, mode)
    os.utime(p, ns=(MTIME_NS, MTIME_NS))
    return p


def _run(logs: Path, action: Action) -> None:
    fd = os.open(logs, safefs.O_DIR)
    try:
        out = Executor(compress_level=1).execute(fd, action)
    finally:
        os.close(fd)
    assert out.status == "done", out


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o4640], ids=["0640", "0604", "setuid"])
def test_copytruncate_archive_keeps_owner_group_mode_mtime(logs: Path, mode: int) -> None:
    _log(logs, "app.log", mode)
    _run(logs, Action("rotate", "", "app.log", "size", target=ARCHIVE, method="copytruncate"))
    # setuid/setgid/sticky bits are not carried over to an archive
    assert _meta(logs / ARCHIVE) == (UID, GID, mode & 0o777, MTIME_NS)
    assert (logs / ARCHIVE).read_bytes() == b"line\n" * 1000


def test_compressed_archive_keeps_owner_group_mode_mtime(logs: Path) -> None:
    _log(logs, ARCHIVE, 0o604)
    _run(logs, Action("compress", "", ARCHIVE, "compress", target=ARCHIVE + ".zst"))
    assert not (logs / ARCHIVE).exists()
    assert _meta(logs / (ARCHIVE + ".zst")) == (UID, GID, 0o604, MTIME_NS)


def test_in_a_set_group_id_directory_the_archive_still_gets_the_logs_group(logs: Path) -> None:
    os.chown(logs, UID, 20000)
    os.chmod(logs, 0o2775)
    _log(logs, ARCHIVE, 0o640)
    _run(logs, Action("compress", "", ARCHIVE, "compress", target=ARCHIVE + ".zst"))
    assert _meta(logs / (ARCHIVE + ".zst")) == (UID, GID, 0o640, MTIME_NS)


def test_rename_rotation_keeps_everything(logs: Path) -> None:
    _log(logs, "app.log", 0o640)
    _run(logs, Action("rotate", "", "app.log", "size", target=ARCHIVE, method="rename"))
    assert _meta(logs / ARCHIVE) == (UID, GID, 0o640, MTIME_NS)
