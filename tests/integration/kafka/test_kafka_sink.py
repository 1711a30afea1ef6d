"""KafkaSink against a real broker on 127.0.0.1: acks=all + idempotence + zstd on the wire,
headers, SASL/PLAIN (and a wrong password failing clearly), dead letters for records Kafka can
never accept, a topic that does not exist yet, and an outage longer than the delivery timeout."""

from __future__ import annotations

import json
import logging
import random
import struct
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import prometheus_client
import pytest

from opsagent.clock import SystemClock
from opsagent.errors import FatalError
from opsagent.sinks.kafka import KafkaSink, KafkaSinkConfig, OutRecord
from tests.fixtures.kafka import SASL_USERS, KafkaBroker
from tests.integration.kafka import forward_harness

pytestmark = pytest.mark.integration

ZSTD = 4  # record batch attributes & 0x07


def make_sink(tmp: Path, bootstrap: str, topic: str, **kw: Any) -> tuple[KafkaSink, Any]:
    registry = prometheus_client.CollectorRegistry()
    kw.setdefault("client", forward_harness.client)  # conftest.py: once per backend
    cfg = KafkaSinkConfig(bootstrap_servers=(bootstrap,), topic=topic, **kw)
    sink = KafkaSink("it", cfg, clock=SystemClock(), registry=registry,
                     rng=random.Random(1), dead_letter_dir=str(tmp / "state"))
    return sink, registry


def records(files: int, per_file: int, size: int = 120) -> list[OutRecord]:
    out = []
    for n in range(per_file):
        for f in range(files):
            value = f"file{f} seq={n:06d} ".encode().ljust(size, b"x")
            out.append(OutRecord(key=f"1:{100 + f}:abcd", value=value,
                                 headers=[("node", b"n1"), ("file", f"/logs/{f}.log".encode()),
                                          ("offset", str(n * size).encode())],
                                 end=(n + 1) * size))
    return out


def drive(sink: KafkaSink, batches: Sequence[Sequence[OutRecord]],
          until: Callable[[dict[str, int]], bool], timeout: float = 60.0) -> dict[str, int]:
    """Submit the batches, then poll acks until `until(acked)` or the timeout."""
    acked: dict[str, int] = {}
    for b in batches:
        sink.submit(b)
        acked.update(sink.poll_acked())
    deadline = time.monotonic() + timeout
    while not until(acked):
        assert time.monotonic() < deadline, f"not acknowledged in {timeout}s: {acked}"
        time.sleep(0.02)
        acked.update(sink.poll_acked())
    return acked


def all_acked(expected: list[OutRecord]) -> Callable[[dict[str, int]], bool]:
    last: dict[str, int] = {}
    for r in expected:
        last[r.key] = r.end
    return lambda acked: all(acked.get(k, -1) >= e for k, e in last.items())


def by_key(consumed: list[Any]) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = defaultdict(list)
    for r in consumed:
        out[r.key].append(r.value)
    return out


def first_batch_header(broker: KafkaBroker, topic: str) -> tuple[int, int]:
    """(compression codec, producer id) of the first record batch in the topic's log on disk."""
    seg = broker.workdir / "data" / f"{topic}-0" / "00000000000000000000.log"
    head = seg.read_bytes()[:61]
    attributes = struct.unpack_from(">h", head, 21)[0]
    producer_id = struct.unpack_from(">q", head, 43)[0]
    return attributes & 0x07, producer_id


def test_delivers_in_file_order_with_headers_zstd_and_idempotence(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    kafka_broker.create_topic("sink-basic", partitions=3)
    sink, registry = make_sink(tmp_path, kafka_broker.bootstrap, "sink-basic",
                               max_inflight_bytes=64 * 1024)
    sink.start()
    recs = records(files=4, per_file=500)
    drive(sink, [recs[i:i + 300] for i in range(0, len(recs), 300)], all_acked(recs))
    sink.close(10)
    consumed = kafka_broker.consume_all("sink-basic")
    assert len(consumed) == len(recs)
    expected = by_key([_as_consumed(r) for r in recs])
    assert by_key(consumed) == expected  # every record, each file in order
    # One file -> one partition.
    parts: dict[bytes, set[int]] = defaultdict(set)
    for r in consumed:
        parts[r.key].add(r.partition)
    assert all(len(p) == 1 for p in parts.values())
    assert consumed[0].headers[0] == ("node", b"n1")
    assert [h[0] for h in consumed[0].headers] == ["node", "file", "offset"]
    codec, producer_id = first_batch_header(kafka_broker, "sink-basic")
    assert codec == ZSTD and producer_id >= 0  # idempotent producers have an id
    assert registry.get_sample_value("opsagent_kafka_records_acked_total",
                                     {"pipeline": "it"}) == len(recs)


class _as_consumed:  # a record shaped like a consumed one, for by_key
    def __init__(self, r: OutRecord) -> None:
        self.key, self.value = r.key.encode(), r.value


def test_sasl_plain_delivers(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    sink, _ = make_sink(tmp_path, kafka_broker.sasl_bootstrap, "sink-sasl",
                        security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                        sasl_username="opsagent", sasl_password=SASL_USERS["opsagent"])
    sink.start()
    recs = records(files=1, per_file=10)
    drive(sink, [recs], all_acked(recs))
    sink.close(10)
    assert [r.value for r in kafka_broker.consume_all("sink-sasl")] == [r.value for r in recs]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_scram_delivers(kafka_broker: KafkaBroker, tmp_path: Path, mechanism: str) -> None:
    topic = f"sink-{mechanism.lower()}"
    sink, _ = make_sink(tmp_path, kafka_broker.sasl_bootstrap, topic,
                        security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
                        sasl_username="opsagent", sasl_password=SASL_USERS["opsagent"])
    sink.start()
    recs = records(files=1, per_file=5)
    drive(sink, [recs], all_acked(recs))
    sink.close(10)
    assert [r.value for r in kafka_broker.consume_all(topic)] == [r.value for r in recs]


def test_tls_delivers_with_hostname_check(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    sink, _ = make_sink(tmp_path, kafka_broker.ssl_bootstrap, "sink-tls", security_protocol="SSL",
                        ssl_cafile=str(kafka_broker.ssl_cafile), ssl_check_hostname=True)
    sink.start()
    recs = records(files=1, per_file=5)
    drive(sink, [recs], all_acked(recs))
    sink.close(10)
    assert [r.value for r in kafka_broker.consume_all("sink-tls")] == [r.value for r in recs]


def test_untrusted_tls_certificate_is_retried_and_says_why(
        kafka_broker: KafkaBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=other", "-keyout", str(tmp_path / "k"), "-out", str(other_ca)],
                   check=True, capture_output=True)
    sink, registry = make_sink(tmp_path, kafka_broker.ssl_bootstrap, "sink-tls-bad",
                               security_protocol="SSL", ssl_cafile=str(other_ca),
                               connect_timeout_ms=2000)
    with caplog.at_level(logging.WARNING, logger="opsagent.kafka"):
        sink.start()  # not fatal: a certificate can be fixed while the agent runs
        # kafka-python: "Unable to bootstrap" (timeout); librdkafka: transport failure.
        kind = "timeout" if forward_harness.client == "kafka-python" else "connection"
        deadline = time.monotonic() + 60
        while not registry.get_sample_value("opsagent_kafka_errors_total",
                                            {"pipeline": "it", "kind": kind}):
            assert time.monotonic() < deadline, "no failed connection attempt"
            sink.poll_acked()
            time.sleep(0.05)
    sink.close(0)
    assert any("certificate verify failed" in str(getattr(r, "error", "")).lower()
               for r in caplog.records), [vars(r) for r in caplog.records]


def test_wrong_sasl_password_fails_clearly(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    pw = tmp_path / "password"
    pw.write_text("not-the-password\n")
    sink, _ = make_sink(tmp_path, kafka_broker.sasl_bootstrap, "sink-sasl-bad",
                        security_protocol="SASL_PLAINTEXT", sasl_username="opsagent",
                        sasl_password_file=str(pw), connect_timeout_ms=3000,
                        retry_backoff_base_secs=0.1, retry_backoff_max_secs=0.5)
    # kafka-python sometimes sees the broker close the connection before it reads the
    # authentication error; the sink then retries, and the next attempts report it.
    deadline = time.monotonic() + 60
    with pytest.raises(FatalError, match=r"authentication.*Invalid username or password"):
        sink.start()
        while time.monotonic() < deadline:
            sink.poll_acked()
            time.sleep(0.05)
    sink.close(0)


def test_records_kafka_never_accepts_are_dead_lettered_and_the_file_goes_on(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    kafka_broker.create_topic("sink-small", config={"max.message.bytes": "4000"})
    sink, registry = make_sink(tmp_path, kafka_broker.bootstrap, "sink-small",
                               max_request_size=50_000)
    sink.start()
    rng = random.Random(3)
    key = "1:7:big"
    recs = [
        OutRecord(key=key, value=b"first", headers=[], end=5),
        # incompressible, over the topic's limit: the broker rejects it
        OutRecord(key=key, value=rng.randbytes(10_000), headers=[("file", b"/x")], end=10_005),
        OutRecord(key=key, value=b"second", headers=[], end=10_011),
        # over the client's max_request_size: refused before sending
        OutRecord(key=key, value=rng.randbytes(60_000), headers=[], end=70_011),
        OutRecord(key=key, value=b"third", headers=[], end=70_016),
    ]
    drive(sink, [recs[:1], recs[1:2], recs[2:]], all_acked(recs))
    sink.close(10)
    assert [r.value for r in kafka_broker.consume_all("sink-small")] == [
        b"first", b"second", b"third"]
    lines = (tmp_path / "state" / "kafka-dead-letter-it.jsonl").read_text().splitlines()
    docs = [json.loads(x) for x in lines]
    assert sorted((d["end"], d["reason"]) for d in docs) == [
        (10_005, "record_too_large"), (70_011, "record_too_large")]
    broker_side = next(d for d in docs if d["end"] == 10_005)
    assert "value_b64" in broker_side and broker_side["headers"] == {"file": "/x"}
    assert registry.get_sample_value("opsagent_kafka_dead_letter_total",
                                     {"pipeline": "it", "reason": "record_too_large"}) == 2


def test_topic_authorization_failure_is_dead_lettered(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    kafka_broker.create_topic("sink-forbidden")
    kafka_broker.deny("opsagent", "sink-forbidden")
    sink, registry = make_sink(tmp_path, kafka_broker.sasl_bootstrap, "sink-forbidden",
                               security_protocol="SASL_PLAINTEXT", sasl_username="opsagent",
                               sasl_password=SASL_USERS["opsagent"])
    sink.start()
    recs = records(files=1, per_file=3)
    drive(sink, [recs], all_acked(recs))
    sink.close(5)
    assert kafka_broker.consume_all("sink-forbidden") == []
    docs = [json.loads(x) for x in
            (tmp_path / "state" / "kafka-dead-letter-it.jsonl").read_text().splitlines()]
    assert [d["reason"] for d in docs] == ["topic_authorization"] * 3
    assert registry.get_sample_value("opsagent_kafka_dead_letter_total", {
        "pipeline": "it", "reason": "topic_authorization"}) == 3


def test_missing_topic_is_retried_until_it_exists(
        kafka_broker_factory: Callable[..., KafkaBroker], tmp_path: Path) -> None:
    broker = kafka_broker_factory(sasl_plain=False, auto_create=False)
    sink, registry = make_sink(tmp_path, broker.bootstrap, "sink-late", connect_timeout_ms=1000,
                               retry_backoff_base_secs=0.2, retry_backoff_max_secs=0.5)
    sink.start()
    recs = records(files=2, per_file=20)
    sink.submit(recs)
    # kafka-python: send() times out waiting for metadata; librdkafka: unknown topic.
    kind = "timeout" if forward_harness.client == "kafka-python" else "unknown_topic"
    deadline = time.monotonic() + 30
    while (registry.get_sample_value("opsagent_kafka_errors_total",
                                     {"pipeline": "it", "kind": kind}) or 0) < 2:
        assert time.monotonic() < deadline
        assert sink.poll_acked() == []
        time.sleep(0.05)
    broker.create_topic("sink-late")
    drive(sink, [], all_acked(recs))
    sink.close(10)
    assert by_key(broker.consume_all("sink-late")) == by_key([_as_consumed(r) for r in recs])


def test_outage_longer_than_delivery_timeout_loses_nothing_and_keeps_file_order(
        kafka_broker_factory: Callable[..., KafkaBroker], tmp_path: Path) -> None:
    broker = kafka_broker_factory(sasl_plain=False)
    broker.create_topic("sink-outage", partitions=2)
    sink, registry = make_sink(tmp_path, broker.bootstrap, "sink-outage",
                               delivery_timeout_ms=3000, request_timeout_ms=1000,
                               connect_timeout_ms=1000, retry_backoff_base_secs=0.2,
                               retry_backoff_max_secs=1.0, max_inflight_bytes=256 * 1024)
    sink.start()
    recs = records(files=3, per_file=600)
    first, during, after = recs[:600], recs[600:1200], recs[1200:]
    drive(sink, [first], all_acked(first))
    broker.kill()
    sink.submit(during)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5:  # longer than delivery_timeout_ms
        sink.poll_acked()
        time.sleep(0.05)
    broker.start()
    drive(sink, [after], all_acked(recs), timeout=90)
    sink.close(10)
    got = by_key(broker.consume_all("sink-outage"))
    want = by_key([_as_consumed(r) for r in recs])
    for key, values in want.items():
        seen = got[key]
        assert set(seen) == set(values), "a record is missing"
        # Per file, the first occurrences are in file order (duplicates only re-send a window).
        firsts = list(dict.fromkeys(seen))
        assert firsts == values
    resets = registry.get_sample_value("opsagent_kafka_producer_resets_total", {"pipeline": "it"})
    assert resets is not None and resets >= 1


def test_close_with_the_broker_down_returns_near_its_deadline_and_reports_nothing_unacked(
        kafka_broker_factory: Callable[..., KafkaBroker], tmp_path: Path) -> None:
    broker = kafka_broker_factory(sasl_plain=False)
    broker.create_topic("sink-close")
    sink, _ = make_sink(tmp_path, broker.bootstrap, "sink-close", connect_timeout_ms=1000,
                        request_timeout_ms=1000, delivery_timeout_ms=60_000)
    sink.start()
    first = records(files=1, per_file=5)
    drive(sink, [first], all_acked(first))
    broker.kill()
    later = [OutRecord(key=r.key, value=r.value, headers=r.headers, end=r.end + 10_000)
             for r in first]
    sink.submit(later)
    t0 = time.monotonic()
    sink.close(2.0)
    # close() keeps to its own deadline, not the 60 s delivery timeout: the bound only tells
    # the two apart (it is no performance check).
    assert time.monotonic() - t0 < 40.0
    assert sink.poll_acked() == []  # nothing of `later` is reported: it is sent again later
    assert sink.pending_records() == len(later)
