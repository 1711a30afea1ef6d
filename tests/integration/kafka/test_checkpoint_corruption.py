"""Corrupt, truncated, empty and bad-checksum checkpoint files while the agent is stopped: the
damage is reported, the previous generation is used (or, with none valid, the files are read
from the start), and nothing written before or while the agent was down is lost."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.kafka import KafkaBroker
from tests.integration.kafka.forward_harness import (
    Agent,
    LineWriter,
    saved_offsets,
    wait_delivered,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration


def _garbage(p: Path) -> None:
    p.write_bytes(b"\x00\xffnot json {{{")


def _truncated(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _bad_checksum(p: Path) -> None:
    doc = json.loads(p.read_bytes())
    for entry in doc["entries"].values():
        entry["offset"] += 1000  # valid JSON, plausible, but not what was written
    p.write_text(json.dumps(doc))


CASES: dict[str, tuple[Callable[[Path], None], bool]] = {
    # name: (damage done to crit.json, also damage crit.json.1)
    "garbage": (_garbage, False),
    "truncated": (_truncated, False),
    "empty": (_empty, False),
    "bad-checksum": (_bad_checksum, False),
    "both-generations": (_garbage, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_checkpoint_is_reported_and_nothing_is_lost(
        case: str, kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    damage, both = CASES[case]
    topic = f"fwd-checkpoint-{case}"
    kafka_broker.create_topic(topic, partitions=2)
    logs, state = tmp_path / "logs", tmp_path / "state"
    logs.mkdir()
    cfg = write_config(tmp_path / "agent.toml", state_dir=state,
                       bootstrap=kafka_broker.bootstrap, topic=topic, include=[f"{logs}/*.log"])
    writers = [LineWriter(logs / f"c{i}.log", f"c{i}") for i in range(2)]
    agent = Agent(cfg, tmp_path / "agent.log")

    def saved_at_end() -> bool:
        return saved_offsets(state / "crit.json") == sorted(w.path.stat().st_size
                                                             for w in writers)
    agent.start()
    try:
        for _ in range(2):  # two saves at least: a current and a previous generation
            for w in writers:
                w.write(300)
            expected = {w.fid: w.seq for w in writers}
            assert wait_delivered(kafka_broker, topic, expected, 90, agent).lost == 0
            # Delivered is not yet saved: wait for the checkpoint of this round, so that the
            # two rounds are two saves (a save happens only when the offsets changed).
            wait_for(saved_at_end, 60, "the checkpoint at the files' end")
        assert agent.terminate() == 0, agent.log_tail()
        assert (state / "crit.json").exists() and (state / "crit.json.1").exists()

        damage(state / "crit.json")
        if both:
            damage(state / "crit.json.1")
        for w in writers:  # written while the agent is down
            w.write(200)
        expected = {w.fid: w.seq for w in writers}
        agent.start()
        verdict = wait_delivered(kafka_broker, topic, expected, 90, agent)
        assert agent.terminate() == 0, agent.log_tail()
    finally:
        agent.stop_quietly()
        for w in writers:
            w.close()
    print(case, verdict.summary())
    assert verdict.lost == 0, verdict.summary()
    assert verdict.order_violations == [], verdict.summary()
    # Re-sent: what the previous generation had not recorded; with none valid, everything.
    assert verdict.duplicates <= 2 * 600, verdict.summary()
    if both:
        assert verdict.duplicates == 2 * 600, verdict.summary()
    msgs = [r.get("msg", "") for r in agent.log_records()]
    assert any("corrupt checkpoint" in m for m in msgs), msgs
