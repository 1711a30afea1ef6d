"""The librdkafka backend of the Kafka sink (`client = "librdkafka"`): confluent-kafka's Producer
(which bundles librdkafka, the C client rsyslog, Fluent Bit and Vector use) behind the `Producer`
interface (opsagent/sinks/kafka/producer.py).

librdkafka facts this relies on (confluent-kafka 2.x):
- the constructor does not connect; `create_librdkafka_producer` waits for the cluster's metadata
  (list_topics, bounded by connect_timeout_ms) so an unreachable cluster is a failed connection
  attempt, as with kafka-python, and authentication failures (error callback) are fatal;
- delivery reports and the error callback are served only by poll(): one poller thread per
  producer calls it, so outcomes arrive on that thread, as kafka-python's sender thread does;
- with enable.idempotence, ordering per partition holds with up to 5 requests in flight (the
  broker checks sequence numbers), and an error that breaks the idempotence guarantee is
  raised as a fatal error (error callback with fatal()), reported here by poll_error();
- purge(in_queue, in_flight) fails every queued and in-flight record (_PURGE_QUEUE /
  _PURGE_INFLIGHT) at the next poll: that is `abort`;
- `partitioner=murmur2_random` picks the partition of a keyed record exactly as the Java client
  and kafka-python do (librdkafka's default, consistent_random, uses CRC32), so one file keeps
  its partition when the backend changes.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from opsagent.errors import FatalError
from opsagent.sinks.kafka.config import KafkaSinkConfig
from opsagent.sinks.kafka.errors import Kind, classify
from opsagent.sinks.kafka.producer import OnDone, Producer, read_password
from opsagent.sinks.kafka.records import LibrdkafkaError

log = logging.getLogger("opsagent.kafka")

_POLL_SECS = 0.2  # the poller's longest wait (it returns as soon as an event arrives)
# With nothing queued or in flight the poller sleeps on a Python event instead (send() and
# close() set it): confluent-kafka's poll() wakes every 0.2 s inside however long its timeout,
# which alone would cost an idle agent about 0.03 % of a core. It still serves the error and
# log callbacks this often.
_IDLE_POLL_SECS = 10.0


def producer_configs(cfg: KafkaSinkConfig, password: str) -> dict[str, Any]:
    """confluent_kafka.Producer settings for `cfg` (pure; no callbacks)."""
    out: dict[str, Any] = {
        "bootstrap.servers": ",".join(cfg.bootstrap_servers),
        "client.id": cfg.client_id,
        "acks": "all",
        "enable.idempotence": True,
        "max.in.flight.requests.per.connection": 5,
        "compression.type": cfg.compression,
        "linger.ms": cfg.linger_ms,
        "batch.size": cfg.batch_size,
        "message.max.bytes": cfg.max_request_size,
        "message.timeout.ms": cfg.delivery_timeout_ms,
        "request.timeout.ms": cfg.request_timeout_ms,
        "socket.connection.setup.timeout.ms": max(1000, cfg.connect_timeout_ms),  # its minimum
        "reconnect.backoff.ms": cfg.reconnect_backoff_ms,
        "reconnect.backoff.max.ms": cfg.reconnect_backoff_max_ms,
        # A topic that does not exist (yet): its records fail after this long and are re-sent
        # by the sink, as kafka-python's send() gives up after max_block_ms.
        "topic.metadata.propagation.max.ms": cfg.connect_timeout_ms,
        "partitioner": "murmur2_random",
        # The sink bounds what is held (max_inflight_bytes); librdkafka's own queue must never
        # be the tighter limit (it would refuse records with BufferError).
        "queue.buffering.max.messages": 2_147_483_647,
        "queue.buffering.max.kbytes": 2_147_483_647,
        "security.protocol": cfg.security_protocol,
    }
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        out["ssl.endpoint.identification.algorithm"] = "https" if cfg.ssl_check_hostname \
            else "none"
        if cfg.ssl_cafile:
            out["ssl.ca.location"] = cfg.ssl_cafile
        if cfg.ssl_certfile:
            out["ssl.certificate.location"] = cfg.ssl_certfile
            out["ssl.key.location"] = cfg.ssl_keyfile
    if cfg.security_protocol.startswith("SASL_"):
        out["sasl.mechanism"] = cfg.sasl_mechanism
        out["sasl.username"] = cfg.sasl_username
        out["sasl.password"] = password
    return out


class LibrdkafkaProducer:
    """`Producer` over confluent_kafka.Producer, with the poller thread that serves its
    delivery reports and error callback."""

    def __init__(self, make: Any, configs: dict[str, Any], name: str) -> None:
        self._lock = threading.Lock()
        self._errors: list[LibrdkafkaError] = []  # from the error callback, not yet taken
        self._stop = threading.Event()
        self._work = threading.Event()  # set by send/close: records to serve, or stop
        self.sleeping = False  # the poller waits for `_work` (nothing to serve): for tests
        # Until the cluster's metadata came, the error callback says why not (TLS, SASL): the
        # poller serves it every _POLL_SECS and does not sleep (create_librdkafka_producer).
        self.connected = False
        # librdkafka's log lines go to Python logging (served by poll()), under "kafka" like
        # kafka-python's, so the agent's level and rate limit apply to both.
        self._p = make({**configs, "error_cb": self._on_error,
                        "logger": logging.getLogger("kafka.librdkafka")})
        self._poller = threading.Thread(target=self._poll_loop, name=f"librdkafka-{name}",
                                        daemon=True)
        self._poller.start()

    def _on_error(self, err: Any) -> None:
        e = LibrdkafkaError.of(err)
        with self._lock:
            if len(self._errors) < 64 or e.fatal:  # bounded; taken at every pump
                self._errors.append(e)

    def _poll_loop(self) -> None:
        p, work, stop = self._p, self._work, self._stop
        poll = p.poll
        while not stop.is_set():
            poll(_POLL_SECS)
            if self.connected and len(p) == 0:   # nothing queued, in flight, or to report
                work.clear()
                # send() produces before it sets `work`: a record produced after the clear
                # shows here, or sets `work` after this check and ends the wait.
                if len(p) == 0 and not stop.is_set():
                    self.sleeping = True
                    work.wait(_IDLE_POLL_SECS)
                    self.sleeping = False

    def errors(self) -> list[LibrdkafkaError]:
        """Errors the error callback reported (taken: each is returned once)."""
        with self._lock:
            out, self._errors = self._errors, []
            return out

    def send(self, topic: str, *, key: bytes, value: bytes,
             headers: list[tuple[str, bytes]], on_done: OnDone) -> None:
        try:
            self._p.produce(topic, value, key, on_delivery=on_done, headers=headers)
        except BufferError:
            raise
        except Exception as e:  # KafkaException: about this record (size) or the producer
            raise LibrdkafkaError.of(e) from e
        if not self._work.is_set():
            self._work.set()

    def poll_error(self) -> BaseException | None:
        """A fatal error (idempotence can no longer be guaranteed, authentication), once."""
        for e in self.errors():
            if e.fatal or classify(e).kind is Kind.FATAL:
                return e
        return None

    def abort(self) -> None:
        """Fail every queued and in-flight record (reported at the next poll). Non-blocking:
        this runs inside a delivery report, on the poller thread."""
        try:
            self._p.purge(True, True, False)
        except Exception as e:  # a producer in a fatal state may refuse; close() still stops it
            log.debug("librdkafka purge failed", extra={"component": "kafka", "error": str(e)})
        self._work.set()  # the purged records' reports are served by the next poll

    def close(self, timeout: float) -> None:
        """Wait up to `timeout` for what is in flight, then purge the rest and stop polling.
        Never raises."""
        try:
            left = self._p.flush(max(0.0, timeout))
            if left:
                self._p.purge(True, True, False)
                self._p.flush(min(1.0, max(0.0, timeout)))
        except Exception as e:  # a failing client must not stop the sink's retry
            log.debug("librdkafka close failed", extra={"component": "kafka", "error": str(e)})
        finally:
            self._stop.set()
            self._work.set()
            if threading.current_thread() is not self._poller:
                self._poller.join(_POLL_SECS * 5)


def create_librdkafka_producer(cfg: KafkaSinkConfig, producer_class: Any = None) -> Producer:
    """The librdkafka ProducerFactory: creates the producer and waits (connect_timeout_ms at
    most) until it has the cluster's metadata. Raises FatalError for what retrying cannot fix
    (authentication, bad settings) and LibrdkafkaError (retriable) when the cluster cannot be
    reached. `producer_class` (default confluent_kafka.Producer) is for tests."""
    if producer_class is None:
        import confluent_kafka

        producer_class = confluent_kafka.Producer
    configs = producer_configs(cfg, read_password(cfg))
    try:
        producer = LibrdkafkaProducer(producer_class, configs, cfg.client_id)
    except Exception as e:  # KafkaException(_INVALID_ARG) for a setting librdkafka refuses
        raise FatalError(f"kafka: cannot create the librdkafka producer: "
                         f"{LibrdkafkaError.of(e)}") from e
    try:
        producer._p.list_topics(timeout=cfg.connect_timeout_ms / 1000)
    except Exception as e:  # no metadata within connect_timeout_ms
        err = LibrdkafkaError.of(e)
        producer.close(0)
        try:
            producer._p.poll(0)   # errors reported meanwhile, not yet served by the poller
        except Exception:  # a failing client: the timeout alone is reported
            pass
        causes = producer.errors()
        for c in causes:
            verdict = classify(c)
            if verdict.kind is Kind.FATAL:
                raise FatalError(f"kafka: cannot connect to {','.join(cfg.bootstrap_servers)}: "
                                 f"{verdict.reason}: {c}") from e
        if causes:  # say why (refused, TLS verification, ...); still retriable
            raise LibrdkafkaError(err.name, f"{err}; last error: {causes[-1]}",
                                  retriable=True) from e
        raise err from e
    producer.connected = True
    return producer
