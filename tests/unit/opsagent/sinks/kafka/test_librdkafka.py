"""The librdkafka backend with an injected fake confluent_kafka.Producer: the settings it maps
(acks=all, idempotence, murmur2 partitioning, reconnect backoff, TLS and SASL), how a failed
connection attempt is reported (fatal authentication vs retriable, saying why), delivery
reports turned into the sink's completions, fatal producer errors, abort and close."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest

from opsagent.config.loader import from_dict
from opsagent.errors import ConfigErrors, FatalError
from opsagent.sinks.kafka.config import KafkaSinkConfig
from opsagent.sinks.kafka.errors import Kind, classify
from opsagent.sinks.kafka.librdkafka import (
    LibrdkafkaProducer,
    create_librdkafka_producer,
    producer_configs,
)
from opsagent.sinks.kafka.records import LibrdkafkaError

KE = confluent_kafka.KafkaError
CFG = KafkaSinkConfig(bootstrap_servers=("127.0.0.1:9092", "[::1]:9093"), topic="logs",
                      client="librdkafka", connect_timeout_ms=500)


class FakeRdProducer:
    """Stands in for confluent_kafka.Producer: produce() queues; poll() serves the delivery
    reports the test completed and the errors it raised, on the poller thread."""

    def __init__(self, conf: dict[str, Any], *, connect_error: Any = None,
                 cb_errors: tuple[Any, ...] = ()) -> None:
        self.conf = conf
        self.connect_error = connect_error
        self.cb_errors = list(cb_errors)
        self.produced: list[tuple[str, bytes, bytes, list[tuple[str, bytes]], Any]] = []
        self.events: list[Callable[[], None]] = []
        self.purged: list[tuple[bool, bool, bool]] = []
        self.flushed: list[float] = []
        self.lock = threading.Lock()
        self.polls = 0
        self.served = 0

    def list_topics(self, timeout: float) -> object:
        for e in self.cb_errors:
            self.conf["error_cb"](e)
        if self.connect_error is not None:
            raise confluent_kafka.KafkaException(self.connect_error)
        return object()

    def produce(self, topic: str, value: bytes, key: bytes, *, on_delivery: Any,
                headers: list[tuple[str, bytes]]) -> None:
        if len(value) > self.conf["message.max.bytes"]:
            raise confluent_kafka.KafkaException(KE(KE.MSG_SIZE_TOO_LARGE))
        self.produced.append((topic, key, value, headers, on_delivery))

    def deliver(self, i: int, err: Any = None) -> None:
        cb = self.produced[i][4]
        with self.lock:
            self.events.append(lambda: cb(err, object()))

    def __len__(self) -> int:   # librdkafka's outq_len: not yet reported
        with self.lock:
            return max(0, len(self.produced) - self.served) + len(self.events)

    def poll(self, timeout: float) -> int:
        with self.lock:
            events, self.events = self.events, []
            self.polls += 1
        for ev in events:
            ev()
        with self.lock:
            self.served += len(events)
        if not events:
            threading.Event().wait(min(timeout, 0.01))
        return len(events)

    def purge(self, in_queue: bool, in_flight: bool, blocking: bool) -> None:
        self.purged.append((in_queue, in_flight, blocking))
        for i in range(len(self.produced)):
            self.deliver(i, KE(KE._PURGE_QUEUE))

    def flush(self, timeout: float) -> int:
        self.flushed.append(timeout)
        return 0


def factory(**kw: Any) -> tuple[Callable[[dict[str, Any]], FakeRdProducer], list[FakeRdProducer]]:
    made: list[FakeRdProducer] = []

    def make(conf: dict[str, Any]) -> FakeRdProducer:
        made.append(FakeRdProducer(conf, **kw))
        return made[-1]
    return make, made


def test_settings_keep_the_sinks_guarantees() -> None:
    out = producer_configs(CFG, "")
    assert out["acks"] == "all" and out["enable.idempotence"] is True
    assert out["max.in.flight.requests.per.connection"] <= 5
    assert out["bootstrap.servers"] == "127.0.0.1:9092,[::1]:9093"
    # keyed records land where kafka-python and the Java client put them
    assert out["partitioner"] == "murmur2_random"
    assert (out["reconnect.backoff.ms"], out["reconnect.backoff.max.ms"]) == (50, 1000)
    assert out["message.timeout.ms"] == CFG.delivery_timeout_ms
    assert out["compression.type"] == "zstd" and out["linger.ms"] == 5
    assert "sasl.mechanism" not in out and "ssl.ca.location" not in out


def test_settings_for_sasl_ssl_map_every_key(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    cfg = KafkaSinkConfig(bootstrap_servers=("h:1",), topic="t", client="librdkafka",
                          security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                          sasl_username="agent", sasl_password_file=str(pw),
                          ssl_cafile="/ca.pem", ssl_certfile="/c.pem", ssl_keyfile="/k.pem",
                          ssl_check_hostname=False)
    from opsagent.sinks.kafka.producer import read_password

    out = producer_configs(cfg, read_password(cfg))
    assert out["security.protocol"] == "SASL_SSL"
    assert (out["sasl.mechanism"], out["sasl.username"], out["sasl.password"]) == (
        "SCRAM-SHA-512", "agent", "s3cret")
    assert (out["ssl.ca.location"], out["ssl.certificate.location"],
            out["ssl.key.location"]) == ("/ca.pem", "/c.pem", "/k.pem")
    assert out["ssl.endpoint.identification.algorithm"] == "none"


def test_real_librdkafka_accepts_the_settings() -> None:
    # The real client validates every name and value at construction (no connection made).
    for cfg in (CFG, KafkaSinkConfig(bootstrap_servers=("h:1",), topic="t", client="librdkafka",
                                      compression="none")):
        confluent_kafka.Producer(producer_configs(cfg, "")).purge(True, True, False)
    # ... and refuses what it cannot take, so the check above has teeth.
    with pytest.raises(confluent_kafka.KafkaException, match="outside allowed range"):
        confluent_kafka.Producer({**producer_configs(CFG, ""), "linger.ms": 10**7})


def test_client_key_is_validated_with_its_path() -> None:
    @dataclasses.dataclass(frozen=True)
    class Root:
        kafka: KafkaSinkConfig

    with pytest.raises(ConfigErrors, match=r"kafka.client: must be one of"):
        from_dict(Root, {"kafka": {"bootstrap_servers": ["h:1"], "topic": "t",
                                   "client": "librdkafka2"}})


def test_unreachable_cluster_is_retriable_and_says_why() -> None:
    make, made = factory(connect_error=KE(KE._TRANSPORT),
                         cb_errors=(KE(KE._TRANSPORT, "SSL handshake failed: certificate "
                                                      "verify failed"),))
    with pytest.raises(LibrdkafkaError) as exc:
        create_librdkafka_producer(CFG, make)
    assert classify(exc.value).kind is Kind.RETRIABLE
    assert "certificate verify failed" in str(exc.value)
    assert made[0].flushed  # the failed producer was released


def test_authentication_failure_is_fatal() -> None:
    make, _ = factory(connect_error=KE(KE._TRANSPORT),
                      cb_errors=(KE(KE._AUTHENTICATION, "Invalid username or password"),))
    with pytest.raises(FatalError, match="authentication.*Invalid username or password"):
        create_librdkafka_producer(CFG, make)


def test_delivery_reports_become_completions_on_the_poller_thread() -> None:
    make, made = factory()
    producer = create_librdkafka_producer(CFG, make)
    assert isinstance(producer, LibrdkafkaProducer)
    got: list[tuple[object, str]] = []
    done = threading.Event()

    def on_done(result: object, msg: object = None, /) -> None:
        got.append((result, threading.current_thread().name))
        if len(got) == 2:
            done.set()

    producer.send("logs", key=b"k", value=b"v1", headers=[("file", b"/x")], on_done=on_done)
    producer.send("logs", key=b"k", value=b"v2", headers=[], on_done=on_done)
    fake = made[0]
    assert [(t, k, v, h) for t, k, v, h, _ in fake.produced] == [
        ("logs", b"k", b"v1", [("file", b"/x")]), ("logs", b"k", b"v2", [])]
    fake.deliver(0)
    fake.deliver(1, KE(KE._MSG_TIMED_OUT))
    assert done.wait(10)
    assert got[0][0] is None and got[0][1].startswith("librdkafka-")
    producer.close(1)


def test_a_record_the_client_refuses_raises_a_classified_error() -> None:
    make, _ = factory()
    producer = create_librdkafka_producer(CFG, make)
    with pytest.raises(LibrdkafkaError) as exc:
        producer.send("logs", key=b"k", value=b"x" * (CFG.max_request_size + 1), headers=[],
                      on_done=lambda *a: None)
    assert classify(exc.value) == classify(LibrdkafkaError("MSG_SIZE_TOO_LARGE", ""))
    assert classify(exc.value).kind is Kind.REJECT
    producer.close(0)


def test_fatal_error_from_the_error_callback_is_reported_once() -> None:
    make, made = factory()
    producer = create_librdkafka_producer(CFG, make)
    assert producer.poll_error() is None
    made[0].conf["error_cb"](KE(KE._ALL_BROKERS_DOWN))
    assert producer.poll_error() is None  # not fatal: shows in the records' own outcomes
    made[0].conf["error_cb"](KE(KE.CLUSTER_AUTHORIZATION_FAILED, "IDEMPOTENT_WRITE",
                                fatal=True))
    err = producer.poll_error()
    assert err is not None and classify(err).kind is Kind.FATAL
    assert producer.poll_error() is None
    producer.close(0)


def test_abort_purges_without_blocking_and_fails_what_is_queued() -> None:
    make, made = factory()
    producer = create_librdkafka_producer(CFG, make)
    failed = threading.Event()
    errors: list[BaseException] = []

    def on_done(result: object, msg: object = None, /) -> None:
        if result is not None:
            errors.append(LibrdkafkaError.of(result))
            failed.set()

    producer.send("logs", key=b"k", value=b"v", headers=[], on_done=on_done)
    producer.abort()
    assert made[0].purged == [(True, True, False)]
    assert failed.wait(10)
    assert classify(errors[0]).reason == "producer_aborted"
    producer.close(0)


def _wait_for(cond: Callable[[], bool], secs: float = 10.0) -> bool:
    end = threading.Event()
    for _ in range(int(secs / 0.005)):
        if cond():
            return True
        end.wait(0.005)
    return cond()


def test_an_idle_poller_sleeps_until_a_record_is_sent_and_stops_at_once() -> None:
    """Idle cost (issue 12): with nothing queued the poller does not call poll() (whose 0.2 s
    internal wake-ups would cost an idle agent); a send wakes it, close() ends it."""
    make, made = factory()
    producer = create_librdkafka_producer(CFG, make)
    assert isinstance(producer, LibrdkafkaProducer)
    fake = made[0]
    assert _wait_for(lambda: producer.sleeping)
    polls = fake.polls
    got = threading.Event()
    producer.send("logs", key=b"k", value=b"v", headers=[],
                  on_done=lambda *a: got.set())
    fake.deliver(0)
    assert got.wait(10)                      # served by the woken poller
    assert fake.polls > polls
    assert _wait_for(lambda: producer.sleeping)   # asleep again once all is reported
    producer.close(0)
    assert _wait_for(lambda: not producer._poller.is_alive(), 2.0)


def test_the_poller_serves_errors_while_connecting() -> None:
    """Until the metadata came, the error callback says why a connection fails (TLS, SASL):
    the poller keeps polling (it sleeps only once connected and idle)."""
    release = threading.Event()

    class Slow(FakeRdProducer):
        def list_topics(self, timeout: float) -> object:
            release.wait(30)
            return super().list_topics(timeout)

    made: list[FakeRdProducer] = []

    def make(conf: dict[str, Any]) -> FakeRdProducer:
        made.append(Slow(conf))
        return made[-1]

    out: list[LibrdkafkaProducer] = []
    t = threading.Thread(target=lambda: out.append(
        create_librdkafka_producer(CFG, make)), daemon=True)
    t.start()
    assert _wait_for(lambda: bool(made) and made[0].polls >= 3)
    assert not any(isinstance(p, LibrdkafkaProducer) and p.sleeping for p in out)
    release.set()
    t.join(10)
    assert out and out[0].connected
    assert _wait_for(lambda: out[0].sleeping)
    out[0].close(0)
