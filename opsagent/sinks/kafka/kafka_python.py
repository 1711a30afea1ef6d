"""The kafka-python backend of the Kafka sink (`client = "kafka-python"`): builds a KafkaProducer
behind the `Producer` interface (opsagent/sinks/kafka/producer.py). Everything here exists only
for kafka-python: the bootstrap-error log listener, the partition cache, reads of private state.

kafka-python facts this relies on (3.0.x):
- the constructor bootstraps synchronously and turns every bootstrap failure, including a wrong
  SASL password, into KafkaTimeoutError("Unable to bootstrap"); the real cause is only logged,
  so `_BootstrapErrors` listens to those log records to report it (FatalError, not a timeout);
- with enable_idempotence it keeps one batch in flight per partition (guarantee_message_order),
  retries internally until delivery_timeout_ms, then fails the batch's futures;
- close(timeout) flushes first and raises KafkaTimeoutError if the flush does not finish, so a
  producer whose broker is gone is stopped with the sender's force_close() (`abort`), which also
  fails every incomplete future at once;
- its cluster metadata (`_metadata`) replaces its `_partitions` map (topic -> partition ->
  metadata) with a new one at every metadata update: KafkaPythonProducer, which caches each
  key's partition, reads it to know the partition set and when it may have changed. These two
  are the only private attributes used here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from opsagent.errors import FatalError
from opsagent.sinks.kafka.config import KafkaSinkConfig
from opsagent.sinks.kafka.errors import Kind, classify
from opsagent.sinks.kafka.kafka_python_partition import KeyPartitions
from opsagent.sinks.kafka.producer import OnDone, Producer, read_password

_BOOTSTRAP_LOGGERS = ("kafka.net.manager", "kafka.net.connection")


class _BootstrapErrors(logging.Filter):
    """Collects exceptions passed as log arguments by kafka-python's connection code. Attached
    for the duration of one producer construction; lowers the loggers to WARNING if needed so
    it sees those records, but lets through only what the configured level would have."""

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self.errors: list[BaseException] = []
        self._loggers = [logging.getLogger(n) for n in names]
        self._saved: list[tuple[logging.Logger, int, int]] = []

    def __enter__(self) -> _BootstrapErrors:
        for lg in self._loggers:
            self._saved.append((lg, lg.level, lg.getEffectiveLevel()))
            if lg.getEffectiveLevel() > logging.WARNING:
                lg.setLevel(logging.WARNING)
            lg.addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for lg, level, _ in self._saved:
            lg.removeFilter(self)
            lg.setLevel(level)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        self.errors.extend(a for a in args if isinstance(a, BaseException))
        effective = {lg.name: eff for lg, _, eff in self._saved}.get(record.name, 0)
        return record.levelno >= effective


def producer_configs(cfg: KafkaSinkConfig, password: str) -> dict[str, Any]:
    """KafkaProducer keyword arguments for `cfg` (pure)."""
    out: dict[str, Any] = {
        "bootstrap_servers": list(cfg.bootstrap_servers),
        "client_id": cfg.client_id,
        "acks": "all",
        "enable_idempotence": True,
        # <= 5 is what idempotence allows; kafka-python then sends one batch per partition at
        # a time, so one file's records (one key, one partition) stay in order.
        "max_in_flight_requests_per_connection": 5,
        "compression_type": None if cfg.compression == "none" else cfg.compression,
        "linger_ms": cfg.linger_ms,
        "batch_size": cfg.batch_size,
        "max_request_size": cfg.max_request_size,
        "delivery_timeout_ms": cfg.delivery_timeout_ms,
        "request_timeout_ms": cfg.request_timeout_ms,
        "max_block_ms": cfg.connect_timeout_ms,
        "bootstrap_timeout_ms": cfg.connect_timeout_ms,
        # kafka-python's default max is 30 s: after an outage delivery resumed 6-20 s after the
        # broker came back (issue 10). The Java client's defaults are 50 ms / 1 s.
        "reconnect_backoff_ms": cfg.reconnect_backoff_ms,
        "reconnect_backoff_max_ms": cfg.reconnect_backoff_max_ms,
        "security_protocol": cfg.security_protocol,
    }
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        out["ssl_check_hostname"] = cfg.ssl_check_hostname
        out["ssl_cafile"] = cfg.ssl_cafile or None
        out["ssl_certfile"] = cfg.ssl_certfile or None
        out["ssl_keyfile"] = cfg.ssl_keyfile or None
    if cfg.security_protocol.startswith("SASL_"):
        out["sasl_mechanism"] = cfg.sasl_mechanism
        out["sasl_plain_username"] = cfg.sasl_username
        out["sasl_plain_password"] = password
    return out


class KafkaPythonProducer:
    """`Producer` over kafka-python's KafkaProducer. Passes each record's partition, chosen
    once per key (kafka_python_partition.py: the default partitioner's choice) and checked
    again after every metadata update."""

    def __init__(self, producer: Any) -> None:
        self._p = producer
        self._topics: dict[str, KeyPartitions] = {}
        cluster = getattr(producer, "_metadata", None)
        self._cluster = cluster if isinstance(getattr(cluster, "_partitions", None), dict) \
            else None

    def _partition(self, topic: str, key: bytes) -> int | None:
        """The cached partition for `key`, or None to let kafka-python choose (another client
        version, or the topic's metadata is not known yet: send() then waits for it)."""
        if self._cluster is None:
            return None
        # Every metadata update replaces this map (topic -> partition -> metadata) with a new
        # one, so its identity says whether the partition set may have changed. Reading it is
        # one reference read: no lock, nothing registered with kafka-python's network thread.
        current = self._cluster._partitions.get(topic)
        if current is None:
            return None
        kp = self._topics.get(topic)
        if kp is None:
            kp = self._topics[topic] = KeyPartitions()
        if kp.source is not current:
            kp.update(current.keys(), current)
        return kp.get(key)

    def send(self, topic: str, *, key: bytes, value: bytes,
             headers: list[tuple[str, bytes]], on_done: OnDone) -> None:
        partition = self._partition(topic, key)
        try:
            fut = self._p.send(topic, key=key, value=value, headers=headers,
                               partition=partition)
        except ValueError:
            if partition is None:
                raise
            # "Unrecognized partition": the topic lost partitions (deleted and re-created)
            # since the check. Forget the choices; kafka-python partitions this one itself.
            self._topics.pop(topic, None)
            fut = self._p.send(topic, key=key, value=value, headers=headers)
        fut.add_callback(on_done)
        fut.add_errback(on_done)

    def poll_error(self) -> BaseException | None:
        return None  # kafka-python reports every failure through a record's future

    def abort(self) -> None:
        sender = getattr(self._p, "_sender", None)
        if sender is not None:
            sender.force_close()

    def close(self, timeout: float) -> None:
        """Never raises a kafka error: a producer whose flush cannot finish is force-closed."""
        from kafka.errors import KafkaError

        try:
            self._p.close(timeout=timeout)
            return
        except KafkaError:
            pass  # close() flushes first and raises when the flush does not finish in time
        self.abort()
        sender = getattr(self._p, "_sender", None)
        if sender is not None:
            # It fails every incomplete future on its way out; bounded by the caller's
            # deadline (a drain must not overrun it, issue 10).
            sender.join(max(0.0, min(5.0, timeout)))
        try:
            self._p.close(timeout=0)
        except KafkaError:
            pass  # the sender is stopped; nothing is left to release


def create_kafka_python_producer(cfg: KafkaSinkConfig,
                                 producer_class: Callable[..., Any] | None = None) -> Producer:
    """The default ProducerFactory: connects (bounded by connect_timeout_ms) and checks that
    the producer really is idempotent. Raises FatalError for what retrying cannot fix and the
    underlying kafka error otherwise. `producer_class` (default kafka.KafkaProducer) is for
    tests."""
    from kafka.errors import KafkaTimeoutError

    if producer_class is None:
        from kafka import KafkaProducer

        producer_class = KafkaProducer
    kwargs = producer_configs(cfg, read_password(cfg))
    listener = _BootstrapErrors(_BOOTSTRAP_LOGGERS)
    try:
        with listener:
            producer = producer_class(**kwargs)
    except KafkaTimeoutError as e:
        for err in reversed(listener.errors):
            verdict = classify(err)
            if verdict.kind is Kind.FATAL:
                raise FatalError(f"kafka: cannot connect to {','.join(cfg.bootstrap_servers)}: "
                                 f"{verdict.reason}: {err}") from err
        causes = [x for x in listener.errors if not isinstance(x, KafkaTimeoutError)]
        if causes:  # say why (refused, TLS verification, ...); still retriable
            raise KafkaTimeoutError(f"{e}; last error: {causes[-1]}") from e
        raise
    except Exception as e:
        if classify(e).kind is Kind.FATAL:
            raise FatalError(f"kafka: cannot create the producer: {e}") from e
        raise
    if not producer.config.get("enable_idempotence"):
        producer.close(timeout=0)
        raise FatalError("kafka: the producer is not idempotent (the broker does not support "
                         "idempotent produce); refusing to send without it")
    return KafkaPythonProducer(producer)
