"""Sequence-number oracle over random histories: appends (also split mid-line), rename
rotations, deletion of rotated files, partial acks and restarts. Every line written must be
delivered (duplicates only after a restart, for what was not acked), in order per file."""

from __future__ import annotations

import os
import random

import pytest

from opsagent.sources.tail import Record, TailSource
from tests.unit.opsagent.sources.tail_helpers import Env


class Oracle:
    def __init__(self, env: Env, rng: random.Random, include: str) -> None:
        self.env = env
        self.include = include
        self.rng = rng
        self.seq = 0
        self.rotations = 0
        self.delivered: list[int] = []
        self.unacked: list[Record] = []
        self.last_seq: dict[object, int] = {}  # per key, for the current source instance
        self.src: TailSource | None = None
        self.rotated: list[tuple[str, int, int]] = []  # name, first and past-last seq
        self.current_first = 0
        self.acked: set[int] = set()

    def start(self) -> None:
        self.src = self.env.source(include=(self.include,), rescan_interval_secs=1.0,
                                   partial_line_timeout_secs=1000.0,
                                   rotated_file_idle_secs=3.0, read_chunk_bytes=64,
                                   max_read_ahead_bytes=256)
        self.last_seq = {}

    def stop(self) -> None:
        assert self.src is not None
        self.src.stop()
        self.src = None
        self.unacked = []  # not acked: will be delivered again after the restart

    def write(self, n: int, split: bool) -> None:
        data = b"".join(b"%08d\n" % (self.seq + i) for i in range(n))
        self.seq += n
        if split and len(data) > 4:
            cut = self.rng.randrange(1, len(data))
            self.env.write("app.log", data[:cut])
            self.poll()
            self.env.write("app.log", data[cut:])
        else:
            self.env.write("app.log", data)

    def rotate(self) -> None:
        if self.src is not None:
            # Rotations are further apart than discovery takes: the source knows the file.
            self.env.clock.advance(1.0)
            self.poll()
        self.rotations += 1
        name = f"app.log.{self.rotations}"
        os.rename(self.env.logs / "app.log", self.env.logs / name)
        self.rotated.append((name, self.current_first, self.seq))
        self.current_first = self.seq
        self.env.write("app.log", b"")

    def delete_rotated(self) -> None:
        """Delete the oldest rotated file once all of its lines were acked (it may still be
        open in the source: deleted-while-open). Deleting undelivered data is allowed to lose
        it, so the oracle does not do that."""
        if self.rotated:
            name, first, past = self.rotated[0]
            if all(n in self.acked for n in range(first, past)):
                os.unlink(self.env.logs / name)
                del self.rotated[0]

    def poll(self) -> None:
        assert self.src is not None
        for r in self.src.poll(max_records=self.rng.randrange(1, 40), timeout=0):
            n = int(r.data)
            assert r.end - r.start == 9 and not r.truncated
            assert n > self.last_seq.get(r.key, -1), "out of order within a file"
            self.last_seq[r.key] = n
            self.delivered.append(n)
            self.unacked.append(r)

    def ack_some(self) -> None:
        assert self.src is not None
        k = self.rng.randrange(0, len(self.unacked) + 1)
        for r in self.unacked[:k]:
            self.src.ack(r.key, r.end)
            self.acked.add(int(r.data))
        del self.unacked[:k]


@pytest.mark.parametrize("include", ["app.log", "app.log*"],
                         ids=["rotated-out-of-globs", "rotated-within-globs"])
@pytest.mark.parametrize("seed", range(10))
def test_no_line_lost_through_rotations_and_restarts(env: Env, seed: int, include: str) -> None:
    rng = random.Random(seed)
    o = Oracle(env, rng, include)
    env.write("app.log", b"")
    o.start()
    restarts = 0
    for _ in range(80):
        op = rng.random()
        if op < 0.35:
            o.write(rng.randrange(1, 30), split=rng.random() < 0.3)
        elif op < 0.45:
            o.rotate()
        elif op < 0.5:
            o.delete_rotated()
        elif op < 0.55 and restarts < 4:
            o.stop()
            restarts += 1
            # While the agent is down the app keeps writing and may rotate once.
            o.write(rng.randrange(0, 5), split=False)
            if rng.random() < 0.5:
                o.rotate()
            o.start()
        elif op < 0.8:
            o.poll()
        else:
            o.ack_some()
        env.clock.advance(rng.choice([0.0, 0.5, 1.0, 2.0]))
    # Drain: everything acked, rotated files finish.
    for _ in range(200):
        o.poll()
        o.ack_some()
        o.ack_some()
        env.clock.advance(1.0)
    assert o.src is not None
    for r in o.src.flush_partial():
        o.delivered.append(int(r.data))
    assert sorted(set(o.delivered)) == list(range(o.seq))
    assert env.metric("opsagent_tail_truncations_total") == 0
