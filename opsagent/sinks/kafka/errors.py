"""Sorts every failure of kafka-python into what the Kafka sink does about it, in one place.

    classify(exc) -> Verdict(kind, reason)

    kind        meaning                                       the sink
    ----------  --------------------------------------------  ------------------------------------
    RETRIABLE   may succeed later (broker down, leader        re-sends from the first unacknowledged
                moving, delivery timeout, producer state)     record of the file, with backoff
    REJECT      this record can never be accepted             writes it to the dead-letter file,
                                                              counts it as handled, goes on
    FATAL       nothing will succeed until a human acts       raises opsagent.errors.FatalError
                (credentials, broker can't do idempotence)

The table (kafka.errors class -> kind). Anything not listed is RETRIABLE when it is a KafkaError
(losing nothing beats moving on; the error is counted and logged), FATAL when it is not a
KafkaError at all (a bug).

    REJECT     MessageSizeTooLargeError (broker or client limit), RecordListTooLargeError,
               InvalidRecordError, InvalidTimestampError, PolicyViolationError,
               TopicAuthorizationFailedError
    FATAL      SaslAuthenticationFailedError, AuthenticationFailedError, IllegalSaslStateError,
               UnsupportedSaslMechanismError, ClusterAuthorizationFailedError (IDEMPOTENT_WRITE
               denied), TransactionalIdAuthorizationFailedError, UnsupportedVersionError and
               IncompatibleBrokerVersion (broker too old for idempotence), KafkaConfigurationError,
               UnsupportedCodecError, UnsupportedCompressionTypeError, InvalidRequiredAcksError,
               InvalidTopicError, SecurityDisabledError
    RETRIABLE  every kafka.errors.RetriableError (KafkaTimeoutError incl. expired batches,
               NotEnoughReplicas*, NotLeaderForPartition, KafkaConnectionError, ...) and
               BrokerNotAvailableError, KafkaStorageError, OutOfOrderSequenceNumberError,
               UnknownProducerIdError, InvalidProducerEpochError, ProducerFencedError,
               IllegalStateError (a producer the sink aborted), CorruptRecordError, and OSError
"""

from __future__ import annotations

import dataclasses
import enum

from kafka import errors as ke


class Kind(enum.Enum):
    RETRIABLE = "retriable"
    REJECT = "reject"
    FATAL = "fatal"


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    kind: Kind
    # A short bounded label for metrics and dead letters (e.g. "record_too_large").
    reason: str


_REJECT: dict[type[BaseException], str] = {
    ke.MessageSizeTooLargeError: "record_too_large",
    ke.RecordListTooLargeError: "record_too_large",
    ke.InvalidRecordError: "invalid_record",
    ke.InvalidTimestampError: "invalid_timestamp",
    ke.PolicyViolationError: "policy_violation",
    ke.TopicAuthorizationFailedError: "topic_authorization",
}

_FATAL: dict[type[BaseException], str] = {
    ke.SaslAuthenticationFailedError: "authentication",
    ke.IllegalSaslStateError: "authentication",
    ke.UnsupportedSaslMechanismError: "authentication",
    ke.ClusterAuthorizationFailedError: "cluster_authorization",
    ke.TransactionalIdAuthorizationFailedError: "cluster_authorization",
    ke.UnsupportedVersionError: "unsupported_broker",
    ke.KafkaConfigurationError: "configuration",
    ke.UnsupportedCodecError: "configuration",
    ke.UnsupportedCompressionTypeError: "configuration",
    ke.InvalidRequiredAcksError: "configuration",
    ke.InvalidTopicError: "invalid_topic",
    ke.SecurityDisabledError: "configuration",
}
_auth_failed = getattr(ke, "AuthenticationFailedError", None)
if isinstance(_auth_failed, type):
    _FATAL[_auth_failed] = "authentication"

_RETRIABLE_EXTRA: dict[type[BaseException], str] = {
    ke.BrokerNotAvailableError: "broker_unavailable",
    ke.KafkaStorageError: "broker_storage",
    ke.OutOfOrderSequenceNumberError: "producer_state",
    ke.UnknownProducerIdError: "producer_state",
    ke.InvalidProducerEpochError: "producer_state",
    ke.ProducerFencedError: "producer_state",
    ke.IllegalStateError: "producer_aborted",
    ke.CorruptRecordError: "corrupt_record",
}


def _lookup(table: dict[type[BaseException], str], exc: BaseException) -> str | None:
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return None


def classify(exc: BaseException) -> Verdict:
    """What the sink does about `exc` (see the module docstring for the table)."""
    if (reason := _lookup(_REJECT, exc)) is not None:
        return Verdict(Kind.REJECT, reason)
    if (reason := _lookup(_FATAL, exc)) is not None:
        return Verdict(Kind.FATAL, reason)
    if (reason := _lookup(_RETRIABLE_EXTRA, exc)) is not None:
        return Verdict(Kind.RETRIABLE, reason)
    if isinstance(exc, ke.KafkaTimeoutError):
        return Verdict(Kind.RETRIABLE, "timeout")
    if isinstance(exc, ke.KafkaConnectionError | ke.NodeNotReadyError):
        return Verdict(Kind.RETRIABLE, "connection")
    if isinstance(exc, ke.KafkaError):
        return Verdict(Kind.RETRIABLE, "broker_retriable" if exc.retriable else "other")
    if isinstance(exc, OSError):
        return Verdict(Kind.RETRIABLE, "connection")
    return Verdict(Kind.FATAL, "bug")
