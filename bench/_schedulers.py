"""The schedulers the gorun benchmarks run side by side: gorun, supercronic and Debian's cron, each
started in the foreground on a generated crontab and stopped (and cleaned up) after.

Debian cron reads only system places, so it gets a file in /etc/cron.d for the duration of the run;
it is skipped, with the reason recorded, when we are not root or a cron daemon is already running
(we never touch one we did not start).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench import common


class Unavailable(Exception):
    """This scheduler cannot be run here; the message says why (it goes into the results)."""


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    log: Path
    cleanup_paths: tuple[Path, ...] = ()


class Scheduler:
    name = ""
    #: whether the 7-field form `S M H DOM MON DOW YEAR` (seconds) is understood
    seconds = True

    def line(self, schedule: str, command: str) -> str:
        return f"{schedule} {command}"

    def check(self) -> None:
        """Raise Unavailable when this scheduler cannot be run here."""

    def jobs_loaded(self, log: str) -> int | None:
        """How many jobs the scheduler says it loaded, where its log tells (a sanity check)."""
        return None

    def start(self, lines: list[str], workdir: Path) -> Running:
        raise NotImplementedError

    def stop(self, running: Running) -> int | None:
        rc = common.stop(running.proc)
        for p in running.cleanup_paths:
            p.unlink(missing_ok=True)
        return rc


def _validate(argv: list[str], what: str) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()[:5]
        raise Unavailable(f"{what} rejected the crontab (exit {r.returncode}): {' | '.join(msg)}")


def _peer(name: str) -> str:
    """A peer's binary, running scripts/bench-peers once if it is missing."""
    exe = common.peer_path(name)
    if exe is None:
        try:
            common.ensure_peers()
        except subprocess.CalledProcessError as e:
            raise Unavailable(f"{name} not installed and scripts/bench-peers failed ({e})") from e
        exe = common.peer_path(name)
    if exe is None:
        raise Unavailable(f"{name} not installed and scripts/bench-peers did not install it")
    return exe


class Gorun(Scheduler):
    name = "gorun"

    def check(self) -> None:
        exe = common.which_gorun()
        if exe is None:
            raise Unavailable("gorun not installed (run scripts/setup)")
        r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            err = r.stderr.strip()[-300:]
            raise Unavailable(f"gorun --help failed (exit {r.returncode}): {err}")

    def jobs_loaded(self, log: str) -> int | None:
        found = re.findall(r"gorun started .*?jobs=(\d+)", log)
        return int(found[-1]) if found else None

    def start(self, lines: list[str], workdir: Path) -> Running:
        exe = common.which_gorun()
        assert exe is not None
        crontab = workdir / "gorun.crontab"
        crontab.write_text("\n".join(lines) + "\n")
        _validate([exe, "test", str(crontab)], "gorun test")
        log = workdir / "gorun.log"
        return Running(common.start_logged([exe, "run", str(crontab)], log), log)


class Supercronic(Scheduler):
    name = "supercronic"

    def exe(self) -> str:
        return _peer("supercronic")

    def check(self) -> None:
        self.exe()

    def start(self, lines: list[str], workdir: Path) -> Running:
        exe = self.exe()
        crontab = workdir / "supercronic.crontab"
        crontab.write_text("\n".join(lines) + "\n")
        _validate([exe, "-test", str(crontab)], "supercronic -test")
        log = workdir / "supercronic.log"
        return Running(common.start_logged([exe, str(crontab)], log), log)


PIDFILE = Path("/run/crond.pid")


class DebianCron(Scheduler):
    """`cron -f` with the jobs in /etc/cron.d/opsagent-bench-PID (system format, user `root`).
    Minute granularity only: no seconds field."""

    name = "cron"
    seconds = False

    def line(self, schedule: str, command: str) -> str:
        return f"{schedule} root {command}"

    def exe(self) -> str:
        return _peer("cron")

    def check(self) -> None:
        if os.geteuid() != 0:
            raise Unavailable("Debian cron reads only /etc/crontab, /etc/cron.d and the spool: "
                              "needs root to place a crontab and run the daemon")
        self.exe()
        others = [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "cron"]
        if others:
            raise Unavailable(f"a cron daemon is already running (pid {others}); not touching it")

    def start(self, lines: list[str], workdir: Path) -> Running:
        self.check()
        self._had_pidfile = PIDFILE.exists()
        path = Path(f"/etc/cron.d/opsagent-bench-{os.getpid()}")  # no dots: cron ignores those
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o644)
        log = workdir / "cron.log"
        proc = common.start_logged([self.exe(), "-f"], log)
        return Running(proc, log, (path,))

    def stop(self, running: Running) -> int | None:
        rc = super().stop(running)
        # cron leaves its pid file behind; remove it only if it is ours
        try:
            if not self._had_pidfile and PIDFILE.read_text().strip() == str(running.proc.pid):
                PIDFILE.unlink()
        except OSError:
            pass
        return rc


ALL: dict[str, type[Scheduler]] = {"gorun": Gorun, "supercronic": Supercronic, "cron": DebianCron}
