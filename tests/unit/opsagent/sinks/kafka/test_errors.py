"""The one table that sorts kafka-python's errors for the Kafka sink."""

from __future__ import annotations

import subprocess
import sys

import pytest
from kafka import errors as ke

from opsagent.sinks.kafka.errors import Kind, classify

CASES = [
    # (exception, kind, reason)
    (ke.MessageSizeTooLargeError(), Kind.REJECT, "record_too_large"),
    (ke.RecordListTooLargeError(), Kind.REJECT, "record_too_large"),
    (ke.InvalidRecordError(), Kind.REJECT, "invalid_record"),
    (ke.InvalidTimestampError(), Kind.REJECT, "invalid_timestamp"),
    (ke.PolicyViolationError(), Kind.REJECT, "policy_violation"),
    (ke.TopicAuthorizationFailedError({"t"}), Kind.REJECT, "topic_authorization"),
    (ke.SaslAuthenticationFailedError(), Kind.FATAL, "authentication"),
    (ke.UnsupportedSaslMechanismError(), Kind.FATAL, "authentication"),
    (ke.ClusterAuthorizationFailedError(), Kind.FATAL, "cluster_authorization"),
    (ke.UnsupportedVersionError(), Kind.FATAL, "unsupported_broker"),
    (ke.IncompatibleBrokerVersion(), Kind.FATAL, "unsupported_broker"),
    (ke.KafkaConfigurationError(), Kind.FATAL, "configuration"),
    (ke.UnsupportedCompressionTypeError(), Kind.FATAL, "configuration"),
    (ke.InvalidTopicError(), Kind.FATAL, "invalid_topic"),
    (ke.KafkaTimeoutError("Expiring 3 record(s)"), Kind.RETRIABLE, "timeout"),
    (ke.KafkaConnectionError(), Kind.RETRIABLE, "connection"),
    (ke.NodeNotReadyError(), Kind.RETRIABLE, "connection"),
    (ke.NotEnoughReplicasError(), Kind.RETRIABLE, "broker_retriable"),
    (ke.NotLeaderForPartitionError(), Kind.RETRIABLE, "broker_retriable"),
    (ke.RequestTimedOutError(), Kind.RETRIABLE, "broker_retriable"),
    (ke.BrokerNotAvailableError(), Kind.RETRIABLE, "broker_unavailable"),
    (ke.KafkaStorageError(), Kind.RETRIABLE, "broker_storage"),
    (ke.OutOfOrderSequenceNumberError(), Kind.RETRIABLE, "producer_state"),
    (ke.UnknownProducerIdError(), Kind.RETRIABLE, "producer_state"),
    (ke.IllegalStateError("Producer is closed forcefully."), Kind.RETRIABLE, "producer_aborted"),
    (ke.UnknownError(), Kind.RETRIABLE, "other"),
    (ConnectionResetError(), Kind.RETRIABLE, "connection"),
    (TypeError("bug"), Kind.FATAL, "bug"),
]


@pytest.mark.parametrize(("exc", "kind", "reason"), CASES,
                         ids=[type(c[0]).__name__ for c in CASES])
def test_classify(exc: BaseException, kind: Kind, reason: str) -> None:
    verdict = classify(exc)
    assert (verdict.kind, verdict.reason) == (kind, reason)


def _rdk(code: int, retriable: bool) -> object:
    import confluent_kafka

    return confluent_kafka.KafkaError(code, retriable=retriable)


def _rdk_cases() -> list[tuple[str, Kind, str]]:
    return [
        ("MSG_SIZE_TOO_LARGE", Kind.REJECT, "record_too_large"),
        ("INVALID_RECORD", Kind.REJECT, "invalid_record"),
        ("TOPIC_AUTHORIZATION_FAILED", Kind.REJECT, "topic_authorization"),
        ("_AUTHENTICATION", Kind.FATAL, "authentication"),
        ("SASL_AUTHENTICATION_FAILED", Kind.FATAL, "authentication"),
        ("CLUSTER_AUTHORIZATION_FAILED", Kind.FATAL, "cluster_authorization"),
        ("_UNSUPPORTED_FEATURE", Kind.FATAL, "unsupported_broker"),
        ("_INVALID_ARG", Kind.FATAL, "configuration"),
        ("TOPIC_EXCEPTION", Kind.FATAL, "invalid_topic"),
        ("_FATAL", Kind.FATAL, "fatal"),
        ("_MSG_TIMED_OUT", Kind.RETRIABLE, "timeout"),
        ("REQUEST_TIMED_OUT", Kind.RETRIABLE, "timeout"),
        ("_TRANSPORT", Kind.RETRIABLE, "connection"),
        ("_ALL_BROKERS_DOWN", Kind.RETRIABLE, "connection"),
        ("_SSL", Kind.RETRIABLE, "connection"),
        ("BROKER_NOT_AVAILABLE", Kind.RETRIABLE, "broker_unavailable"),
        ("OUT_OF_ORDER_SEQUENCE_NUMBER", Kind.RETRIABLE, "producer_state"),
        ("_PURGE_QUEUE", Kind.RETRIABLE, "producer_aborted"),
        ("_PURGE_INFLIGHT", Kind.RETRIABLE, "producer_aborted"),
        ("_UNKNOWN_TOPIC", Kind.RETRIABLE, "unknown_topic"),
        ("NOT_ENOUGH_REPLICAS", Kind.RETRIABLE, "broker_retriable"),
        ("NOT_LEADER_FOR_PARTITION", Kind.RETRIABLE, "broker_retriable"),
    ]


@pytest.mark.parametrize(("name", "kind", "reason"), _rdk_cases(), ids=lambda v: str(v))
def test_librdkafka_errors_are_sorted_by_the_same_table(name: str, kind: Kind,
                                                        reason: str) -> None:
    import confluent_kafka

    from opsagent.sinks.kafka.records import LibrdkafkaError

    # librdkafka flags broker errors retriable (NOT_ENOUGH_REPLICAS ...): not in the table.
    err = LibrdkafkaError.of(_rdk(getattr(confluent_kafka.KafkaError, name),
                                  retriable=reason == "broker_retriable"))
    assert err.name == name
    assert (classify(err).kind, classify(err).reason) == (kind, reason)


def test_a_librdkafka_exception_carries_its_error_and_fatal_flag() -> None:
    import confluent_kafka

    from opsagent.sinks.kafka.records import LibrdkafkaError

    fatal = confluent_kafka.KafkaError(confluent_kafka.KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
                                       "gap", fatal=True)
    err = LibrdkafkaError.of(confluent_kafka.KafkaException(fatal))
    assert err.fatal and "gap" in str(err)
    # librdkafka's own verdict wins over the table only where the table says nothing.
    assert classify(err).reason == "producer_state"
    assert classify(LibrdkafkaError("SOMETHING_NEW", "x", fatal=True)).kind is Kind.FATAL
    assert classify(LibrdkafkaError("SOMETHING_NEW", "x")).kind is Kind.RETRIABLE
    assert classify(BufferError("Local: Queue full")).reason == "queue_full"


def test_the_librdkafka_path_never_imports_kafka_python() -> None:
    """Importing `kafka` loads the whole kafka-python client (about 20 MB): an agent on the
    default backend must not pay it (issue 12, idle RSS). Checked in a fresh interpreter."""
    code = ("import sys\n"
            "import opsagent.app, opsagent.components, opsagent.pipelines.forward\n"
            "import opsagent.sinks.kafka.sink, opsagent.sinks.kafka.librdkafka\n"
            "from opsagent.sinks.kafka.errors import classify\n"
            "from opsagent.sinks.kafka.records import LibrdkafkaError\n"
            "classify(LibrdkafkaError('_TRANSPORT', 'down')); classify(OSError('x'))\n"
            "print(sorted(m for m in sys.modules if m == 'kafka' or m.startswith('kafka.')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
