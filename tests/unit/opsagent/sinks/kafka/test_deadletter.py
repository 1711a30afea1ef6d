"""The dead-letter file: JSON lines, values cut to fit, two bounded generations."""

from __future__ import annotations

import json
from pathlib import Path

from opsagent.sinks.kafka.deadletter import DeadLetterFile, dead_letter_line


def line(value: bytes, max_value: int = 1000) -> bytes:
    return dead_letter_line(ts=1_700_000_000.5, pipeline="p", topic="t", key="k", end=9,
                            reason="record_too_large", error="MessageSizeTooLargeError",
                            headers=[("node", b"n1")], value=value, max_value_bytes=max_value)


def test_line_fields() -> None:
    doc = json.loads(line(b"hello"))
    assert doc == {"ts": "2023-11-14T22:13:20.500Z", "pipeline": "p", "topic": "t", "key": "k",
                   "end": 9, "reason": "record_too_large", "error": "MessageSizeTooLargeError",
                   "headers": {"node": "n1"}, "value": "hello"}


def test_value_cut_to_fit_is_marked() -> None:
    doc = json.loads(line(b"x" * 50, max_value=10))
    assert doc["value"] == "x" * 10 and doc["value_truncated"] is True
    assert doc["value_bytes"] == 50


def test_two_generations_bound_the_size(tmp_path: Path) -> None:
    dl = DeadLetterFile(str(tmp_path / "state"), "dl", max_bytes=1000)
    one = line(b"y" * 100)
    for _ in range(20):
        dl.append(one)
    cur, prev = Path(dl.path), Path(dl.path + ".1")
    assert cur.stat().st_size <= 500 and prev.stat().st_size <= 500
    assert dl.discarded_generations >= 1
    assert all(json.loads(x)["end"] == 9 for x in cur.read_text().splitlines())
    assert oct(cur.stat().st_mode & 0o777) == "0o600"


def test_unwritable_dead_letter_is_counted_and_does_not_raise(tmp_path: Path) -> None:
    import prometheus_client

    from opsagent.clock import FakeClock
    from opsagent.sinks.kafka.deadletter import DeadLetters
    from opsagent.sinks.kafka.records import OutRecord

    registry = prometheus_client.CollectorRegistry()
    counter = prometheus_client.Counter("dl", "", ["pipeline", "reason"], registry=registry)
    blocker = tmp_path / "state"
    blocker.write_text("a file where the directory should be")
    dl = DeadLetters(DeadLetterFile(str(blocker), "dl", 1000), pipeline="p", topic="t",
                     clock=FakeClock(), counter=counter)
    dl.write(OutRecord(key="k", value=b"v", headers=[], end=1), "record_too_large",
             RuntimeError("x"))
    assert registry.get_sample_value("dl_total", {"pipeline": "p", "reason": "write_failed"}) == 1
    assert registry.get_sample_value(
        "dl_total", {"pipeline": "p", "reason": "record_too_large"}) == 1
