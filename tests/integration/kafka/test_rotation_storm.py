"""Rotation storm while two streams are written: rename rotation (app.log -> app.log.1 ->
app.log.2 -> deleted) every few hundred lines, short-lived files created and deleted, and, with
the agent stopped, every file replaced by a new one on the same inode whose first bytes are
identical (inode reuse the fingerprint alone cannot see). Nothing is lost, nothing is sent
twice, order per file holds."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.fixtures.kafka import KafkaBroker
from tests.integration.kafka.forward_harness import (
    Agent,
    LineWriter,
    has_open,
    wait_delivered,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration

HEADER = b"# " + b"=" * 300 + b" same first bytes in every generation\n"


class RotatingStream:
    """One logical log (e.g. app.log) rotated by rename; every generation is its own oracle
    file id (order is promised per file)."""

    def __init__(self, logs: Path, name: str) -> None:
        self.logs = logs
        self.name = name
        self.gen = 0
        self.done: dict[str, int] = {}
        self.w = self._open()

    def _open(self) -> LineWriter:
        w = LineWriter(self.logs / f"{self.name}.log", f"{self.name}-g{self.gen}")
        os.write(w.fd, HEADER)  # every generation has the same fingerprint
        return w

    def rotate(self, agent_pid: int) -> None:
        cur = self.logs / f"{self.name}.log"
        # Like logrotate: the agent has seen the file under its name before it is rotated.
        ino = cur.stat().st_ino
        wait_for(lambda: has_open(agent_pid, ino), 60, f"agent opened {cur}")
        old2, old1 = self.logs / f"{self.name}.log.2", self.logs / f"{self.name}.log.1"
        if old2.exists():
            old2.unlink()  # deleted right away: possibly not fully read yet
        if old1.exists():
            old1.rename(old2)
        cur.rename(old1)
        self.done[self.w.fid] = self.w.seq
        self.w.close()
        self.gen += 1
        self.w = self._open()

    def expected(self) -> dict[str, int]:
        return {**self.done, self.w.fid: self.w.seq}


def new_file_on_inode(path: Path, ino: int, attempts: int = 5000) -> None:
    """Create an empty file at `path` on the freed inode `ino`: create scratch files in the same
    directory (names outside the globs) until the filesystem hands that inode out again, then
    rename it into place."""
    scratch: list[Path] = []
    try:
        for i in range(attempts):
            p = path.parent / f"{path.name}.scratch-{i}"
            p.touch()
            if p.stat().st_ino == ino:
                p.rename(path)
                return
            scratch.append(p)
        path.touch()  # not reused: the assertion on `reused` reports it
    finally:
        for p in scratch:
            p.unlink()


def test_rotation_storm_then_inode_reuse_across_restart(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    topic = "fwd-rotation-storm"
    kafka_broker.create_topic(topic, partitions=3)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = write_config(tmp_path / "agent.toml", state_dir=tmp_path / "state",
                       bootstrap=kafka_broker.bootstrap, topic=topic, include=[f"{logs}/*.log"],
                       tail={"rotated_file_idle_secs": 1.0})
    agent = Agent(cfg, tmp_path / "agent.log")
    agent.start()
    streams = [RotatingStream(logs, "app"), RotatingStream(logs, "web")]
    expected: dict[str, int] = {}
    try:
        assert agent.proc is not None
        pid = agent.proc.pid
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < 8.0:
            for s in streams:
                s.w.write(50)
            n += 1
            if n % 4 == 0:
                streams[n // 4 % 2].rotate(pid)
            if n % 10 == 0:  # a short-lived file: created, seen by the agent, deleted
                tmp = LineWriter(logs / f"tmp-{n}.log", f"tmp-{n}")
                tmp.write(100)
                ino = os.fstat(tmp.fd).st_ino
                wait_for(lambda ino=ino: has_open(pid, ino), 60, "agent opened the tmp file")
                tmp.write(100)
                tmp.close()
                (logs / f"tmp-{n}.log").unlink()
                expected[tmp.fid] = tmp.seq
            time.sleep(0.05)
        for s in streams:
            # Lines after the header in the last generation too: a file holding only the
            # header is indistinguishable from the reused one's start, which the content check
            # then rightly treats as the same bytes (it resumes after them).
            s.w.write(50)
            expected.update(s.expected())
        verdict = wait_delivered(kafka_broker, topic, expected, timeout=120, agent=agent)
        assert verdict.lost == 0, verdict.summary()
        assert agent.terminate() == 0, agent.log_tail()

        # Inode reuse while the agent is stopped: same name, same inode, same first 256 bytes,
        # different content after the checkpointed offset.
        for s in streams:
            s.w.close()
        reused = 0
        for name in ("app", "web"):
            path = logs / f"{name}.log"
            old_ino = path.stat().st_ino
            path.unlink()
            new_file_on_inode(path, old_ino)
            w = LineWriter(path, f"{name}-reuse")
            os.write(w.fd, HEADER)
            w.write(400)
            w.close()
            reused += path.stat().st_ino == old_ino
            expected[w.fid] = w.seq
        agent.start()
        verdict = wait_delivered(kafka_broker, topic, expected, timeout=120, agent=agent)
        assert agent.terminate() == 0, agent.log_tail()
    finally:
        agent.stop_quietly()
    print(verdict.summary(), f"inodes reused: {reused}/2")
    assert verdict.lost == 0, verdict.summary()
    assert verdict.order_violations == [], verdict.summary()
    assert verdict.duplicates == 0, verdict.summary()
    generations = sum(s.gen + 1 for s in streams)
    by_key: dict[bytes, list[bytes]] = {}
    for r in kafka_broker.consume_all(topic):
        by_key.setdefault(r.key, []).append(r.value)
    header = HEADER.rstrip(b"\n")
    no_header = {k: vs[:2] for k, vs in by_key.items()
                 if vs[0] != header and not vs[0].startswith(b"tmp-")}
    assert no_header == {}, "files whose first line (the header) is missing"
    assert verdict.unparsable == generations + 2  # one header per file
