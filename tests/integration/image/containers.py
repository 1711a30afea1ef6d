"""The opsagent image built from the Dockerfile and run with podman, as Kubernetes would run it.

No container registry is reachable where the tests run, so the image is built on a local base
(localhost/opsagent-base:bookworm, made by scripts/provision.d/podman.sh with mmdebstrap) passed
as the Dockerfile's BASE_IMAGE. What this host needs (docs/deploy.md, "The image"): the build
with `--isolation chroot --network host`; containers with `--runtime runc --cgroup-manager
cgroupfs` (crun fails on its hybrid cgroups) and explicit ulimits not above the current ones
(raising rlimits is not permitted). Containers use the host network, so the agent
reaches the test broker and UDP listeners on 127.0.0.1 and its HTTP port is the host's.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fixtures.services import ROOT, require_service
from tests.fixtures.statsd_exporter import parse_exposition, wait_until

BASE_IMAGE = "localhost/opsagent-base:bookworm"
BUILD_TIMEOUT = 900.0
UID = 10001   # the image's user, and the sidecar's


def podman_binary() -> str:
    binary = shutil.which("podman")
    if binary is None:
        require_service("podman", "no podman binary on PATH")
        raise AssertionError("unreachable")
    return binary


def podman(*args: str, check: bool = True, timeout: float = 120.0,
           ) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([podman_binary(), *args], capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {r.returncode}:\n"
                             f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def _limit(which: int, cap: int) -> int:
    """The current soft limit (capped): a container may not raise rlimits here."""
    soft, _hard = resource.getrlimit(which)
    return cap if soft == resource.RLIM_INFINITY else min(soft, cap)


def run_options(network: str = "host") -> list[str]:
    nofile = _limit(resource.RLIMIT_NOFILE, 65536)
    # podman runs conmon (and so runc) with RLIMIT_NPROC 32768 whatever ours is: a container
    # asking for more fails with "error setting rlimit type 6: operation not permitted".
    nproc = _limit(resource.RLIMIT_NPROC, 32768)
    return ["--runtime", "runc", "--cgroup-manager", "cgroupfs", "--network", network,
            "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


@dataclass(frozen=True)
class Image:
    tag: str
    size_bytes: int
    build_secs: float


def build_image(tag: str) -> Image:
    """podman build of the repository's Dockerfile on the local base image."""
    podman_binary()
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        require_service("podman base image", f"{BASE_IMAGE} is not in podman's storage")
    t0 = time.monotonic()
    podman("build", "--isolation", "chroot", "--network", "host",
           "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--tag", tag, "--file",
           str(ROOT / "Dockerfile"), str(ROOT), timeout=BUILD_TIMEOUT)
    build_secs = time.monotonic() - t0
    size = int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())
    return Image(tag, size, build_secs)


@dataclass
class Container:
    """One `podman run -d` container, removed by `remove()`."""

    name: str
    http_port: int | None = None
    started_at: float = field(default_factory=time.monotonic)

    @classmethod
    def run(cls, image: Image, name: str, options: Sequence[str], args: Sequence[str] = (),
            http_port: int | None = None, network: str = "host") -> Container:
        podman("rm", "--force", "--ignore", name, check=False)
        c = cls(name, http_port)
        podman("run", "--detach", "--name", name, *run_options(network), *options, image.tag, *args)
        return c

    def logs(self) -> str:
        r = podman("logs", self.name, check=False)
        return r.stdout + r.stderr

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def state(self) -> dict[str, Any]:
        out: list[dict[str, Any]] = json.loads(podman("inspect", self.name).stdout)
        state: dict[str, Any] = out[0]["State"]
        return state

    def running(self) -> bool:
        return bool(self.state()["Running"])

    def host_pid(self) -> int:
        return int(self.state()["Pid"])

    def get(self, path: str) -> tuple[int, str]:
        if not self.running():
            raise AssertionError(f"container {self.name} exited:\n{self.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}",
                                        timeout=5) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def answers(self, path: str) -> bool:
        try:
            return self.get(path)[0] == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        want = labels or {}
        return sum(s.value for s in parse_exposition(self.get("/metrics")[1])
                   if s.name == name and want.items() <= s.labels.items())

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.logs().splitlines()[-n:])

    def wait(self, cond: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        try:
            return wait_until(cond, timeout, what)
        except TimeoutError as e:
            raise AssertionError(f"{e}; container log tail:\n{self.tail()}") from None

    def stop(self, timeout_secs: int) -> int:
        """`podman stop` (SIGTERM, SIGKILL after timeout_secs); the container's exit code."""
        podman("stop", "--time", str(timeout_secs), self.name, timeout=timeout_secs + 60)
        return int(self.state()["ExitCode"])

    def remove(self) -> None:
        podman("rm", "--force", "--ignore", self.name, check=False)


def zombie_children(host_pid: int) -> list[tuple[int, int]]:
    """(host pid, pid in the container's namespace) of the zombie children of `host_pid`."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if (fields.get("PPid", "").strip() == str(host_pid)
                and fields.get("State", "").startswith("Z")):
            out.append((int(entry), int(fields.get("NSpid", entry).split()[-1])))
    return out
