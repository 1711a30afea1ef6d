"""Reload: on file change, on a ConfigMap-style `..data` symlink swap, on SIGHUP; a file with
errors keeps its old schedule; running jobs survive a reload."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.gorun.harness import Gorun, Record

pytestmark = pytest.mark.integration
EVERY_SECOND = "* * * * * * *"


def said(word: str) -> Callable[[list[Record]], bool]:
    return lambda rs: any(r.get("stream") == "stdout" and r["msg"] == word for r in rs)


def rewrite(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_reload_on_file_change(tmp_path: Path, gorun: Callable[..., Gorun]) -> None:
    tab = tmp_path / "crontab"
    tab.write_text(f"{EVERY_SECOND} echo A\n")
    g = gorun("-json", str(tab))
    g.wait_for(said("A"), "A runs")
    tab.write_text(f"{EVERY_SECOND} echo B\n")  # in place, like an editor without rename
    g.wait_for(said("B"), "B runs after the reload")
    assert any(r["msg"] == "crontab reloaded" for r in g.records())
    assert g.stop() == 0


def test_bad_file_on_reload_keeps_the_old_schedule(tmp_path: Path,
                                                   gorun: Callable[..., Gorun]) -> None:
    tab = tmp_path / "crontab"
    tab.write_text(f"{EVERY_SECOND} echo A\n")
    g = gorun("-json", str(tab))
    g.wait_for(said("A"), "A runs")
    rewrite(tab, f"{EVERY_SECOND} echo B\n61 * * * * echo broken\n")
    g.wait_msg("crontab has errors, keeping its previous schedule")
    recs = g.records()
    assert any(r["msg"].startswith(f"{tab}:2: ") and r["level"] == "error" for r in recs)
    n = len(g.records())
    g.wait_for(lambda rs: said("A")(rs[n:]), "A still runs after the bad reload")
    assert not said("B")(g.records())
    rewrite(tab, f"{EVERY_SECOND} echo C\n")
    g.wait_for(said("C"), "a fixed file is applied")
    assert g.stop() == 0


def test_reload_on_configmap_symlink_swap(tmp_path: Path, gorun: Callable[..., Gorun]) -> None:
    mount = tmp_path / "config"
    mount.mkdir()
    (mount / "..2024_01_01_00_00_00.1").mkdir()
    (mount / "..2024_01_01_00_00_00.1" / "crontab").write_text(f"{EVERY_SECOND} echo OLD\n")
    os.symlink("..2024_01_01_00_00_00.1", mount / "..data")
    os.symlink("..data/crontab", mount / "crontab")
    g = gorun("-json", str(mount / "crontab"))
    g.wait_for(said("OLD"), "the mounted crontab runs")
    # kubelet's atomic writer: new dir, new ..data_tmp symlink renamed over ..data, old dir gone
    new = mount / "..2024_01_01_00_05_00.2"
    new.mkdir()
    (new / "crontab").write_text(f"{EVERY_SECOND} echo NEW\n")
    os.symlink(new.name, mount / "..data_tmp")
    os.rename(mount / "..data_tmp", mount / "..data")
    (mount / "..2024_01_01_00_00_00.1" / "crontab").unlink()
    (mount / "..2024_01_01_00_00_00.1").rmdir()
    g.wait_for(said("NEW"), "the swapped crontab runs")
    assert g.stop() == 0


def test_sighup_reloads_and_running_jobs_survive(tmp_path: Path,
                                                 gorun: Callable[..., Gorun]) -> None:
    tab = tmp_path / "crontab"
    tab.write_text("@reboot echo long-start; sleep 3; echo long-end\n"
                   f"{EVERY_SECOND} echo A\n")
    g = gorun("-json", "-no-watch", str(tab))
    g.wait_for(said("long-start"), "long job running")
    tab.write_text(f"{EVERY_SECOND} echo B\n")
    g.signal(signal.SIGHUP)
    g.wait_for(said("B"), "B runs after SIGHUP")
    g.wait_for(said("long-end"), "the running job was not killed by the reload")
    end = g.wait_msg("job succeeded", job=f"{tab}:1")
    assert end[0]["exit_code"] == 0
    assert g.stop() == 0
