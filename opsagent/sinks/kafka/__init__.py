"""The Kafka sink: records delivered with acks=all and idempotence, in-flight bytes bounded,
acknowledged file offsets reported back (docs/kafka.md).

    sink.py        KafkaSink: submit / poll_acked / close, fences, re-sends, isolation
    records.py     OutRecord, SinkFull / SinkClosed, the backoff rule, per-record bookkeeping
    config.py      KafkaSinkConfig (the `[forward.kafka]` table)
    errors.py      classify(): every client failure sorted into retriable / reject / fatal
    producer.py    the Producer seam
    factory.py     create_producer (the backend `client` names)
    kafka_python.py, kafka_python_partition.py   the kafka-python backend
    connect.py     producers created off the caller's thread (stop never waits for one)
    deadletter.py  records Kafka can never accept, metrics.py  its Prometheus metrics

Importing this package (or its config) loads no Kafka client; the names below are imported
from sink.py on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opsagent.sinks.kafka.config import KafkaSinkConfig
    from opsagent.sinks.kafka.records import OutRecord, SinkClosed, SinkFull, backoff_secs
    from opsagent.sinks.kafka.sink import KafkaSink

__all__ = ["KafkaSink", "KafkaSinkConfig", "OutRecord", "SinkClosed", "SinkFull", "backoff_secs"]

_HOME = {"KafkaSink": "sink", "KafkaSinkConfig": "config", "OutRecord": "records",
         "SinkClosed": "records", "SinkFull": "records", "backoff_secs": "records"}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
