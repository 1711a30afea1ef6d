"""The one table that sorts kafka-python's errors for the Kafka sink."""

from __future__ import annotations

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
