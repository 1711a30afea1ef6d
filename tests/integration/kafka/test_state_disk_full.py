"""The state directory's filesystem (a 64 KiB tmpfs) fills up while lines are forwarded:
delivery goes on, the failed checkpoint saves are reported and leave the last good state file
intact; after a SIGKILL and a restart with space again, what was delivered since the last good
save is re-sent (duplicates) and nothing is lost."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsagent.state.checkpoints import decode
from tests.fixtures.kafka import KafkaBroker
from tests.fixtures.services import require_service
from tests.integration.kafka.forward_harness import (
    Agent,
    LineWriter,
    wait_delivered,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def tiny_state_dir(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "state"
    state.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(state)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        require_service("tmpfs mount", f"mount -t tmpfs failed: {r.stderr.strip()}")
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def fill(directory: Path) -> Path:
    """Write a filler file until the filesystem reports ENOSPC."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 4096)
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    break
                raise
    finally:
        os.close(fd)
    return filler


def test_state_disk_full_delivery_goes_on_and_restart_loses_nothing(
        kafka_broker: KafkaBroker, tmp_path: Path, tiny_state_dir: Path) -> None:
    topic = "fwd-state-disk-full"
    kafka_broker.create_topic(topic, partitions=2)
    logs = tmp_path / "logs"
    logs.mkdir()
    cfg = write_config(tmp_path / "agent.toml", state_dir=tiny_state_dir,
                       bootstrap=kafka_broker.bootstrap, topic=topic, include=[f"{logs}/*.log"])
    writers = [LineWriter(logs / f"d{i}.log", f"d{i}") for i in range(2)]
    agent = Agent(cfg, tmp_path / "agent.log")
    state_file = tiny_state_dir / "crit.json"
    agent.start()
    try:
        for w in writers:
            w.write(300)
        assert wait_delivered(kafka_broker, topic, {w.fid: w.seq for w in writers}, 90,
                              agent).lost == 0

        def saved_offsets() -> list[int]:
            try:
                return sorted(cp.offset for cp in decode(state_file.read_bytes()).values())
            except (OSError, ValueError):
                return []

        size = (logs / "d0.log").stat().st_size
        wait_for(lambda: saved_offsets() == [size, size], 60, "checkpoint at the files' end")
        filler = fill(tiny_state_dir)
        for w in writers:
            w.write(1000)
        verdict = wait_delivered(kafka_broker, topic, {w.fid: w.seq for w in writers}, 90, agent)
        assert verdict.lost == 0, "delivery must go on while the state disk is full"
        wait_for(lambda: "cannot save checkpoints" in [r.get("msg", "")
                                                       for r in agent.log_records()],
                 60, "a failed checkpoint save reported")
        assert saved_offsets() == [size, size]  # the last good state is intact
        agent.kill()

        filler.unlink()
        for w in writers:
            w.write(200)
        expected = {w.fid: w.seq for w in writers}
        agent.start()
        verdict = wait_delivered(kafka_broker, topic, expected, 90, agent)
        assert agent.terminate() == 0, agent.log_tail()
        assert saved_offsets() == [(logs / "d0.log").stat().st_size] * 2
    finally:
        agent.stop_quietly()
        for w in writers:
            w.close()
    print(verdict.summary())
    assert verdict.lost == 0, verdict.summary()
    assert verdict.order_violations == [], verdict.summary()
    # Exactly what was delivered while no checkpoint could be saved is sent again.
    assert verdict.duplicates == 2 * 1000, verdict.summary()
