"""KafkaSink with an injected fake producer and a fake clock: acks in file order, bounded
in-flight bytes, abort + backoff + in-order re-send, dead letters, fatal errors, close."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import prometheus_client
import pytest
from kafka import errors as ke

from opsagent.clock import FakeClock
from opsagent.errors import FatalError
from opsagent.sinks.kafka.connect import InlineConnector
from opsagent.sinks.kafka.records import LibrdkafkaError
from opsagent.sinks.kafka.sink import (
    STALL_SECS,
    KafkaSink,
    KafkaSinkConfig,
    OutRecord,
    SinkClosed,
    SinkFull,
)
from tests.unit.opsagent.sinks.kafka.fakes import FakeFactory, FakeProducer


def rec(key: str, n: int, size: int = 0) -> OutRecord:
    value = f"{key}-{n}".encode().ljust(size, b".")
    return OutRecord(key=key, value=value, headers=[("file", key.encode()), ("offset", b"0")],
                     end=n * 100)


class Harness:
    def __init__(self, tmp: Path, **cfg: object) -> None:
        self.clock = FakeClock()
        self.factory = FakeFactory()
        self.registry = prometheus_client.CollectorRegistry()
        self.dead_dir = tmp / "state"
        kw: dict[str, object] = {"retry_backoff_base_secs": 1.0, "retry_backoff_max_secs": 8.0}
        kw.update(cfg)
        self.cfg = KafkaSinkConfig(bootstrap_servers=("127.0.0.1:9092",), topic="logs",
                                   **kw)  # type: ignore[arg-type]
        self.sink = KafkaSink("crit", self.cfg, clock=self.clock, registry=self.registry,
                              rng=random.Random(7), producer_factory=self.factory,
                              connector=InlineConnector(self.factory),
                              dead_letter_dir=str(self.dead_dir))

    def metric(self, name: str, **labels: str) -> float:
        v = self.registry.get_sample_value(name, {"pipeline": "crit", **labels})
        return 0.0 if v is None else v


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    harness = Harness(tmp_path)
    harness.sink.start()
    return harness


def test_sends_key_value_headers_to_the_configured_topic(h: Harness) -> None:
    h.sink.submit([rec("dev:ino:abc", 1)])
    (sent,) = h.factory.current.sent
    assert (sent.topic, sent.key, sent.value) == ("logs", b"dev:ino:abc", b"dev:ino:abc-1")
    assert sent.headers == [("file", b"dev:ino:abc"), ("offset", b"0")]
    assert h.metric("opsagent_kafka_records_sent_total") == 1


def test_acks_are_contiguous_per_file_whatever_the_completion_order(h: Harness) -> None:
    h.sink.submit([rec("a", 1), rec("a", 2), rec("b", 1), rec("a", 3)])
    p = h.factory.current
    p.by_value(b"a-2").succeed()
    p.by_value(b"b-1").succeed()
    assert h.sink.poll_acked() == [("b", 100)]
    p.by_value(b"a-1").succeed()
    assert h.sink.poll_acked() == [("a", 200)]
    assert h.sink.poll_acked() == []
    p.by_value(b"a-3").succeed()
    assert h.sink.poll_acked() == [("a", 300)]
    assert h.sink.inflight_bytes == 0
    assert h.metric("opsagent_kafka_records_acked_total") == 4


def test_submit_blocks_beyond_max_inflight_bytes(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_inflight_bytes=100)
    h.sink.start()
    big = [rec("a", i, size=40) for i in range(1, 5)]  # ~57 bytes each with key and headers
    with pytest.raises(SinkFull) as exc:
        h.sink.submit(big, timeout=0)
    assert exc.value.accepted == 1
    assert h.metric("opsagent_kafka_inflight_bytes") == h.sink.inflight_bytes > 0
    h.factory.current.sent[0].future.succeed()
    with pytest.raises(SinkFull) as exc:
        h.sink.submit(big[1:], timeout=0)
    assert exc.value.accepted == 1
    assert h.sink.poll_acked() == [("a", 100)]
    assert len(h.factory.current.sent) == 2


def test_one_record_larger_than_the_window_is_still_taken_alone(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_inflight_bytes=10)
    h.sink.start()
    h.sink.submit([rec("a", 1, size=500)], timeout=0)
    assert h.sink.pending_records() == 1


def test_retriable_failure_aborts_then_resends_in_order_after_backoff(h: Harness) -> None:
    h.sink.submit([rec("a", 1), rec("a", 2), rec("b", 1)])
    p1 = h.factory.current
    p1.by_value(b"b-1").succeed()
    p1.by_value(b"a-1").fail(ke.KafkaTimeoutError("Expiring 1 record(s)"))
    # The failing callback aborted the producer: a-2 failed with it, nothing more is sent.
    assert p1.aborted
    h.sink.submit([rec("a", 3)])
    assert p1.values() == [b"a-1", b"a-2", b"b-1"]
    assert h.sink.poll_acked() == [("b", 100)]
    assert p1.closed is not None and len(h.factory.producers) == 1
    # Backoff: attempt 1 with base 1.0 is in [0.5, 1.0].
    h.clock.advance(0.49)
    assert h.sink.poll_acked() == [] and len(h.factory.producers) == 1
    h.clock.advance(0.52)
    h.sink.poll_acked()
    p2 = h.factory.current
    assert p2 is not p1
    assert p2.values() == [b"a-1", b"a-2", b"a-3"]
    assert h.metric("opsagent_kafka_retries_total") == 2
    assert h.metric("opsagent_kafka_producer_resets_total") == 1
    assert h.metric("opsagent_kafka_errors_total", kind="timeout") == 1
    for s in p2.sent:
        s.future.succeed()
    assert h.sink.poll_acked() == [("a", 300)]


def test_backoff_grows_until_the_cap_and_resets_after_success(h: Harness) -> None:
    h.sink.submit([rec("a", 1)])
    delays = []
    for _ in range(6):
        p = h.factory.current
        p.sent[-1].future.fail(ke.NotEnoughReplicasError())
        h.sink.poll_acked()
        start = h.clock.monotonic()
        while h.factory.current is p:
            h.clock.advance(0.01)
            h.sink.poll_acked()
        delays.append(h.clock.monotonic() - start)
    caps = [1, 2, 4, 8, 8, 8]
    for d, cap in zip(delays, caps, strict=True):
        assert cap / 2 - 0.02 <= d <= cap + 0.02, (delays, caps)
    h.factory.current.sent[-1].future.succeed()
    assert h.sink.poll_acked() == [("a", 100)]
    h.sink.submit([rec("a", 2)])
    h.factory.current.sent[-1].future.fail(ke.NotEnoughReplicasError())
    h.sink.poll_acked()
    start = h.clock.monotonic()
    p = h.factory.current
    while h.factory.current is p:
        h.clock.advance(0.01)
        h.sink.poll_acked()
    assert h.clock.monotonic() - start <= 1.02


def test_fence_waits_for_the_aborted_producers_futures_and_counts_late_successes(
        h: Harness) -> None:
    h.sink.submit([rec("a", 1), rec("b", 1)])
    p1 = h.factory.current
    p1.fail_on_abort = False  # b-1's request is in flight and may still succeed
    p1.by_value(b"a-1").fail(ke.RequestTimedOutError())
    assert p1.aborted
    h.clock.advance(10)
    assert h.sink.poll_acked() == [] and p1.closed is None  # still waiting for b-1
    p1.by_value(b"b-1").succeed()
    assert h.sink.poll_acked() == [("b", 100)]
    assert p1.closed is not None
    h.clock.advance(1.0)
    h.sink.poll_acked()
    assert h.factory.current.values() == [b"a-1"]  # b-1 is in Kafka: not re-sent


def test_fence_gives_up_waiting_after_request_timeout(h: Harness) -> None:
    h.sink.submit([rec("a", 1), rec("b", 1)])
    p1 = h.factory.current
    p1.fail_on_abort = False
    p1.by_value(b"a-1").fail(ke.RequestTimedOutError())
    h.clock.advance(29)
    h.sink.poll_acked()
    assert p1.closed is None
    h.clock.advance(2)
    h.sink.poll_acked()
    assert p1.closed is not None
    h.clock.advance(1.0)
    h.sink.poll_acked()
    p2 = h.factory.current
    assert p2.values() == [b"a-1", b"b-1"]
    p1.by_value(b"b-1").succeed()  # the old request did land after all: a duplicate, acked
    assert h.sink.poll_acked() == [("b", 100)]


def test_record_rejected_again_when_sent_alone_is_dead_lettered_and_the_file_goes_on(
        h: Harness) -> None:
    h.sink.submit([rec("a", 1), rec("a", 2), rec("a", 3)])
    p1 = h.factory.current
    p1.by_value(b"a-1").succeed()
    p1.by_value(b"a-2").fail(ke.MessageSizeTooLargeError("too big"))
    # kafka-python's producer is unusable after this; the error may be collateral: isolate.
    assert p1.aborted
    assert h.sink.poll_acked() == [("a", 100)]
    p2 = h.factory.current
    assert p2.values() == [b"a-2"]  # alone, at once (no backoff: nothing is unreachable)
    h.sink.submit([rec("a", 4)])
    assert p2.values() == [b"a-2"]  # held until the suspect is settled
    p2.by_value(b"a-2").fail(ke.MessageSizeTooLargeError("too big"))
    assert h.sink.poll_acked() == [("a", 200)]
    p3 = h.factory.current
    assert p3.values() == [b"a-3", b"a-4"]
    for x in p3.sent:
        x.future.succeed()
    assert h.sink.poll_acked() == [("a", 400)]
    lines = (h.dead_dir / "kafka-dead-letter-crit.jsonl").read_text().splitlines()
    (doc,) = [json.loads(line) for line in lines]
    assert doc["reason"] == "record_too_large" and doc["value"] == "a-2"
    assert doc["key"] == "a" and doc["end"] == 200 and doc["topic"] == "logs"
    assert doc["headers"] == {"file": "a", "offset": "0"}
    assert h.metric("opsagent_kafka_dead_letter_total", reason="record_too_large") == 1
    assert h.metric("opsagent_kafka_errors_total", kind="record_too_large") == 2


def test_innocent_record_failed_with_a_reject_error_is_delivered_not_dead_lettered(
        h: Harness) -> None:
    h.sink.submit([rec("a", 1), rec("b", 1)])
    p1 = h.factory.current
    p1.fail_on_abort = False
    p1.by_value(b"a-1").fail(ke.InvalidRecordError("collateral"))
    p1.by_value(b"b-1").fail(ke.InvalidRecordError("the bad one"))
    h.sink.poll_acked()
    p2 = h.factory.current
    assert p2.values() == [b"a-1"]
    p2.by_value(b"a-1").succeed()
    assert h.sink.poll_acked() == [("a", 100)]
    assert p2.values() == [b"a-1", b"b-1"]  # then the next suspect, alone
    p2.by_value(b"b-1").fail(ke.InvalidRecordError("the bad one"))
    assert h.sink.poll_acked() == [("b", 100)]
    docs = (h.dead_dir / "kafka-dead-letter-crit.jsonl").read_text().splitlines()
    assert [json.loads(d)["value"] for d in docs] == ["b-1"]


def test_send_raising_synchronously_is_classified_too(h: Harness) -> None:
    p1 = h.factory.current
    p1.raise_on_send[b"a-2"] = ke.MessageSizeTooLargeError("client max_request_size")
    p1.raise_on_send[b"b-1"] = ke.KafkaTimeoutError("Failed to update metadata")
    h.sink.submit([rec("a", 1), rec("a", 2), rec("b", 1), rec("b", 2)])
    assert p1.aborted  # metadata timeout is retriable: producer replaced
    assert p1.values() == [b"a-1"]
    h.sink.poll_acked()
    h.clock.advance(1.0)
    h.sink.poll_acked()
    p2 = h.factory.current
    assert p2.values() == [b"a-1", b"b-1", b"b-2"]  # a-2 was dead-lettered, not re-sent
    for s in p2.sent:
        s.future.succeed()
    assert sorted(h.sink.poll_acked()) == [("a", 200), ("b", 200)]
    assert h.metric("opsagent_kafka_dead_letter_total", reason="record_too_large") == 1


def test_topic_authorization_failure_is_dead_lettered(h: Harness) -> None:
    h.sink.submit([rec("a", 1)])
    h.factory.current.sent[0].future.fail(ke.TopicAuthorizationFailedError({"logs"}))
    assert h.sink.poll_acked() == []
    h.factory.current.sent[0].future.fail(ke.TopicAuthorizationFailedError({"logs"}))
    assert h.sink.poll_acked() == [("a", 100)]
    assert h.metric("opsagent_kafka_dead_letter_total", reason="topic_authorization") == 1


def test_fatal_error_stops_the_sink_loudly(h: Harness) -> None:
    h.sink.submit([rec("a", 1)])
    h.factory.current.sent[0].future.fail(ke.ClusterAuthorizationFailedError("IDEMPOTENT_WRITE"))
    assert h.factory.current.aborted
    with pytest.raises(FatalError, match="cluster_authorization"):
        h.sink.poll_acked()
    with pytest.raises(FatalError):
        h.sink.submit([rec("a", 2)])


def test_start_raises_fatal_but_only_schedules_a_retry_when_unreachable(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.factory.failures = [FatalError("kafka: cannot connect: authentication")]
    with pytest.raises(FatalError, match="authentication"):
        h.sink.start()
    h2 = Harness(tmp_path / "2")
    h2.factory.failures = [ke.KafkaTimeoutError("Unable to bootstrap"),
                           ke.KafkaTimeoutError("Unable to bootstrap")]
    h2.sink.start()
    h2.sink.submit([rec("a", 1)])
    assert h2.factory.producers == []
    h2.clock.advance(1.0)
    h2.sink.poll_acked()  # second attempt fails too
    assert h2.factory.producers == []
    h2.clock.advance(2.0)
    h2.sink.poll_acked()
    assert h2.factory.current.values() == [b"a-1"]
    assert h2.metric("opsagent_kafka_errors_total", kind="timeout") == 2


def test_close_waits_for_acks_then_releases_the_producer(h: Harness) -> None:
    h.sink.submit([rec("a", 1)])
    p = h.factory.current
    p.sent[0].future.succeed()
    h.sink.close(5)
    assert p.closed is not None and not p.aborted
    assert h.sink.poll_acked() == [("a", 100)]
    with pytest.raises(SinkClosed):
        h.sink.submit([rec("a", 2)])


def test_close_past_its_deadline_aborts_and_leaves_records_unacked(h: Harness) -> None:
    h.sink.submit([rec("a", 1)])
    p = h.factory.current
    h.sink.close(0)
    assert p.aborted and p.closed is not None
    assert h.sink.poll_acked() == []
    h.clock.advance(100)
    assert h.sink.poll_acked() == [] and len(h.factory.producers) == 1  # no reconnect


def test_dead_letters_of_non_utf8_values_are_base64(h: Harness) -> None:
    bad = OutRecord(key="a", value=b"\xff\xfe", headers=[("pod", b"\xff")], end=2)
    h.factory.current.raise_on_send[bad.value] = ke.InvalidRecordError("x")
    h.sink.submit([bad])
    assert h.sink.poll_acked() == [("a", 2)]
    doc = json.loads((h.dead_dir / "kafka-dead-letter-crit.jsonl").read_text())
    assert doc["value_b64"] == "//4=" and doc["headers"] == {"pod": {"b64": "/w=="}}


def test_blocked_submit_gives_up_when_stop_is_set(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_inflight_bytes=50)
    h.sink.start()
    stop = threading.Event()
    stop.set()
    with pytest.raises(SinkClosed) as exc:
        h.sink.submit([rec("a", 1, size=40), rec("a", 2, size=40)], stop=stop)
    assert exc.value.accepted == 1
    assert h.factory.current.values() == [rec("a", 1, size=40).value]


def test_close_returns_even_when_the_injected_clock_stands_still(h: Harness) -> None:
    h.sink.submit([rec("a", 1)])
    h.sink.close(0.05)  # FakeClock never advances: bounded by the number of waits
    assert h.factory.current.aborted


# ---- issue 10, defect 5: stop interrupts connection attempts --------------------------------

class BlockingFactory(FakeFactory):
    """Each producer creation blocks until `gate` is set, like kafka-python's bootstrap with
    the cluster unreachable (which lasts connect_timeout_ms and cannot be interrupted)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self, cfg: KafkaSinkConfig) -> FakeProducer:
        self.entered.set()
        self.gate.wait(60)
        return super().__call__(cfg)


def in_thread(fn: Callable[[], object]) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def test_start_submit_and_close_never_wait_for_a_blocked_connection_attempt(
        tmp_path: Path) -> None:
    factory = BlockingFactory()
    sink = KafkaSink("crit", KafkaSinkConfig(bootstrap_servers=("127.0.0.1:9092",), topic="t"),
                     clock=FakeClock(), registry=prometheus_client.CollectorRegistry(),
                     producer_factory=factory, dead_letter_dir=str(tmp_path))
    try:
        steps = in_thread(lambda: (sink.start(), sink.submit([rec("a", 1)], timeout=0),
                                   sink.poll_acked()))
        steps.join(10)  # generous: it must not wait for the attempt, which blocks for 60 s
        assert not steps.is_alive(), "start/submit/poll_acked waited for the connection attempt"
        assert factory.entered.wait(10)
        closing = in_thread(lambda: sink.close(0.2))
        closing.join(10)
        assert not closing.is_alive(), "close() waited for the connection attempt"
        assert sink.poll_acked() == [] and sink.pending_records() == 1
    finally:
        factory.gate.set()
    # The producer the abandoned attempt gets after all is closed, and never used.
    deadline = time.monotonic() + 10
    while not factory.producers or factory.current.closed is None:
        assert time.monotonic() < deadline, "the late producer was not closed"
        time.sleep(0.01)
    assert factory.current.sent == []


def test_a_connection_attempt_finishing_wakes_a_blocked_submit(tmp_path: Path) -> None:
    factory = BlockingFactory()
    sink = KafkaSink("crit", KafkaSinkConfig(bootstrap_servers=("127.0.0.1:9092",), topic="t",
                                             max_inflight_bytes=10),
                     clock=FakeClock(), registry=prometheus_client.CollectorRegistry(),
                     producer_factory=factory, dead_letter_dir=str(tmp_path))
    sink.start()
    factory.gate.set()
    sink.submit([rec("a", 1, size=40)])
    deadline = time.monotonic() + 10
    while not factory.producers or not factory.current.sent:
        assert time.monotonic() < deadline, "the held record was not sent once connected"
        sink.poll_acked()
        time.sleep(0.01)
    factory.current.sent[0].future.succeed()
    assert sink.poll_acked() == [("a", 100)]
    sink.close(1)


# ---- issue 10, defect 6: an outage is logged once, and delivery resumes promptly ------------

def outage_logs(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str, str]]:
    return [(r.levelno, r.getMessage(), getattr(r, "pipeline", ""))
            for r in caplog.records if r.name == "opsagent.kafka" and r.levelno >= logging.INFO]


def test_unreachable_at_start_is_logged_once_with_the_pipeline_and_its_end(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(tmp_path)
    h.factory.failures = [ke.KafkaTimeoutError("Unable to bootstrap")] * 6
    with caplog.at_level(logging.DEBUG, logger="opsagent.kafka"):
        h.sink.start()
        h.sink.submit([rec("a", 1)])
        for _ in range(5):
            h.clock.advance(1.0)
            h.sink.poll_acked()
        assert h.metric("opsagent_kafka_unreachable") == 1 and h.factory.producers == []
        h.clock.advance(1.0)
        h.sink.poll_acked()
        h.factory.current.sent[0].future.succeed()
        assert h.sink.poll_acked() == [("a", 100)]
    logs = outage_logs(caplog)
    assert [(lvl, msg.split(";")[0], p) for lvl, msg, p in logs] == [
        (logging.WARNING, "kafka unreachable", "crit"),
        (logging.WARNING, "kafka reachable again", "crit")], logs
    assert h.metric("opsagent_kafka_outages_total") == 1
    assert h.metric("opsagent_kafka_unreachable") == 0


def test_connection_attempts_while_unreachable_are_at_most_reconnect_backoff_max_apart(
        tmp_path: Path) -> None:
    # The re-send backoff would grow to 8 s here; waiting that long after a failed attempt
    # delays delivery after the cluster is back (issue 10: 6-20 s).
    h = Harness(tmp_path, retry_backoff_base_secs=1.0, retry_backoff_max_secs=8.0,
                reconnect_backoff_max_ms=1000)
    h.factory.failures = [ke.KafkaConnectionError("refused")] * 8
    h.sink.start()
    for i in range(8):
        assert len(h.factory.configs) == i + 1
        h.clock.advance(1.0)
        h.sink.poll_acked()
    assert len(h.factory.producers) == 1


def test_delivery_timeout_during_an_outage_replaces_the_producer_within_a_second(
        h: Harness) -> None:
    h.sink.submit([rec("a", 1)])
    for _ in range(5):  # repeated delivery timeouts: the backoff stays at most 1 s
        p = h.factory.current
        p.sent[-1].future.fail(ke.KafkaTimeoutError("Expiring 1 record(s)"))
        h.sink.poll_acked()
        h.clock.advance(1.0)
        h.sink.poll_acked()
        assert h.factory.current is not p
    assert h.metric("opsagent_kafka_outages_total") == 1


def test_records_without_acknowledgement_for_a_while_start_an_outage(
        h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="opsagent.kafka"):
        h.sink.submit([rec("a", 1), rec("a", 2)])
        h.clock.advance(STALL_SECS - 0.5)
        h.sink.poll_acked()
        assert h.metric("opsagent_kafka_unreachable") == 0
        for _ in range(10):
            h.clock.advance(1.0)
            h.sink.poll_acked()
        assert h.metric("opsagent_kafka_unreachable") == 1
        h.factory.current.sent[0].future.succeed()
        assert h.sink.poll_acked() == [("a", 100)]
    msgs = [m.split(";")[0] for _, m, _ in outage_logs(caplog)]
    assert msgs == ["kafka unreachable", "kafka reachable again"]


def test_a_fatal_error_the_client_reports_about_no_record_stops_the_sink(h: Harness) -> None:
    # librdkafka's error callback (e.g. the broker cannot do idempotent produce).
    h.sink.submit([rec("a", 1)])
    h.factory.current.error = LibrdkafkaError("CLUSTER_AUTHORIZATION_FAILED",
                                              "IDEMPOTENT_WRITE", fatal=True)
    with pytest.raises(FatalError, match="cluster_authorization"):
        h.sink.poll_acked()
    assert h.factory.current.aborted
    h2 = Harness(h.dead_dir.parent / "2")
    h2.sink.start()
    h2.sink.submit([rec("a", 1)])
    h2.factory.current.error = LibrdkafkaError("_ALL_BROKERS_DOWN", "1/1 brokers are down")
    assert h2.sink.poll_acked() == []  # not fatal: the records' own outcomes decide
    assert not h2.factory.current.aborted


def test_records_waiting_for_a_long_connection_attempt_start_an_outage(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # kafka-python's bootstrap (or librdkafka's metadata wait) lasts connect_timeout_ms: the
    # outage is said after STALL_SECS, not only when the attempt finally fails.
    factory = BlockingFactory()
    clock = FakeClock()
    registry = prometheus_client.CollectorRegistry()
    sink = KafkaSink("crit", KafkaSinkConfig(bootstrap_servers=("127.0.0.1:9092",), topic="t"),
                     clock=clock, registry=registry, producer_factory=factory,
                     dead_letter_dir=str(tmp_path))
    try:
        with caplog.at_level(logging.INFO, logger="opsagent.kafka"):
            sink.start()
            sink.submit([rec("a", 1)], timeout=0)
            assert factory.entered.wait(10)
            clock.advance(STALL_SECS - 0.5)
            sink.poll_acked()
            assert registry.get_sample_value("opsagent_kafka_unreachable",
                                             {"pipeline": "crit"}) == 0
            for _ in range(3):
                clock.advance(1.0)
                sink.poll_acked()
        assert registry.get_sample_value("opsagent_kafka_unreachable", {"pipeline": "crit"}) == 1
        (line,) = [r for r in caplog.records if r.getMessage().startswith("kafka unreachable")]
        assert getattr(line, "pipeline", None) == "crit"
        assert "no connection" in str(getattr(line, "error", ""))
    finally:
        factory.gate.set()
        sink.close(0)


def test_first_completion_after_poll_acked_notifies_once_while_records_are_held(
        h: Harness) -> None:
    """The forward pipeline waits in its source's poll, which stops reading at the read-ahead
    bound until acknowledgements come back: without this notification it slept out its whole
    poll timeout (0.2 s) each time, a third of the throughput."""
    calls: list[int] = []
    h.sink.set_notify(lambda: calls.append(1))
    assert h.sink.poll_acked() == []
    h.sink.submit([rec("a", 1), rec("a", 2), rec("b", 1)])
    p = h.factory.current
    p.by_value(b"a-1").succeed()
    assert calls == []  # not armed: nothing was held at the last poll_acked
    assert h.sink.poll_acked() == [("a", 100)]
    p.by_value(b"a-2").succeed()
    p.by_value(b"b-1").succeed()
    assert calls == [1]  # once, however many completions follow
    assert sorted(h.sink.poll_acked()) == [("a", 200), ("b", 100)]
    h.sink.submit([rec("a", 3)])
    p.by_value(b"a-3").fail(ke.KafkaTimeoutError("expired"))  # not armed: no poll_acked since
    assert calls == [1]


def test_with_many_records_in_flight_the_notification_waits_for_an_eighth_of_them(
        h: Harness) -> None:
    # One wake-up per completion would cost the caller an empty loop each.
    calls: list[int] = []
    h.sink.set_notify(lambda: calls.append(1))
    h.sink.submit([rec("a", i) for i in range(1, 17)])
    assert h.sink.poll_acked() == []
    p = h.factory.current
    p.by_value(b"a-1").succeed()
    assert calls == []
    p.by_value(b"a-2").succeed()
    assert calls == [1]
