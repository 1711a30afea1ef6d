"""Sorts every failure of either client (kafka-python, librdkafka) into what the Kafka sink does
about it, in one place.

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

librdkafka (records.LibrdkafkaError: the code's name, librdkafka's own retriable/fatal flags):

    REJECT     MSG_SIZE_TOO_LARGE, RECORD_LIST_TOO_LARGE, INVALID_RECORD, INVALID_TIMESTAMP,
               POLICY_VIOLATION, TOPIC_AUTHORIZATION_FAILED
    FATAL      SASL_AUTHENTICATION_FAILED, _AUTHENTICATION, ILLEGAL_SASL_STATE,
               UNSUPPORTED_SASL_MECHANISM, CLUSTER_AUTHORIZATION_FAILED,
               TRANSACTIONAL_ID_AUTHORIZATION_FAILED, UNSUPPORTED_VERSION, _UNSUPPORTED_FEATURE,
               _INVALID_ARG, _NOT_CONFIGURED, UNSUPPORTED_COMPRESSION_TYPE, INVALID_REQUIRED_ACKS,
               TOPIC_EXCEPTION, SECURITY_DISABLED, _FATAL, and every error librdkafka flags fatal()
               (an idempotent producer that cannot go on: "fatal")
    RETRIABLE  _MSG_TIMED_OUT, _TIMED_OUT, REQUEST_TIMED_OUT ("timeout"); _TRANSPORT,
               _ALL_BROKERS_DOWN, _RESOLVE, _SSL, NETWORK_EXCEPTION ("connection");
               BROKER_NOT_AVAILABLE, KAFKA_STORAGE_ERROR, the producer state errors as above,
               _PURGE_QUEUE, _PURGE_INFLIGHT, _DESTROY ("producer_aborted"), _QUEUE_FULL,
               _UNKNOWN_TOPIC, UNKNOWN_TOPIC_OR_PART ("unknown_topic"), INVALID_MSG
               ("corrupt_record"), and anything else not flagged fatal
"""

from __future__ import annotations

import dataclasses
import enum
import functools

from opsagent.sinks.kafka.records import LibrdkafkaError


class Kind(enum.Enum):
    RETRIABLE = "retriable"
    REJECT = "reject"
    FATAL = "fatal"


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    kind: Kind
    # A short bounded label for metrics and dead letters (e.g. "record_too_large").
    reason: str


class _KafkaPythonTables:
    """kafka-python's classes -> verdicts. Built on the first kafka-python error only: importing
    `kafka` loads the whole client (about 20 MB of an idle agent's memory), which an agent on
    the librdkafka backend never needs."""

    def __init__(self) -> None:
        from kafka import errors as ke

        self.ke = ke
        self.reject: dict[type[BaseException], str] = {
            ke.MessageSizeTooLargeError: "record_too_large",
            ke.RecordListTooLargeError: "record_too_large",
            ke.InvalidRecordError: "invalid_record",
            ke.InvalidTimestampError: "invalid_timestamp",
            ke.PolicyViolationError: "policy_violation",
            ke.TopicAuthorizationFailedError: "topic_authorization",
        }
        self.fatal: dict[type[BaseException], str] = {
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
        auth_failed = getattr(ke, "AuthenticationFailedError", None)
        if isinstance(auth_failed, type):
            self.fatal[auth_failed] = "authentication"
        self.retriable: dict[type[BaseException], str] = {
            ke.BrokerNotAvailableError: "broker_unavailable",
            ke.KafkaStorageError: "broker_storage",
            ke.OutOfOrderSequenceNumberError: "producer_state",
            ke.UnknownProducerIdError: "producer_state",
            ke.InvalidProducerEpochError: "producer_state",
            ke.ProducerFencedError: "producer_state",
            ke.IllegalStateError: "producer_aborted",
            ke.CorruptRecordError: "corrupt_record",
        }

    def verdict(self, exc: BaseException) -> Verdict | None:
        ke = self.ke
        if (reason := _lookup(self.reject, exc)) is not None:
            return Verdict(Kind.REJECT, reason)
        if (reason := _lookup(self.fatal, exc)) is not None:
            return Verdict(Kind.FATAL, reason)
        if (reason := _lookup(self.retriable, exc)) is not None:
            return Verdict(Kind.RETRIABLE, reason)
        if isinstance(exc, ke.KafkaTimeoutError):
            return Verdict(Kind.RETRIABLE, "timeout")
        if isinstance(exc, ke.KafkaConnectionError | ke.NodeNotReadyError):
            return Verdict(Kind.RETRIABLE, "connection")
        if isinstance(exc, ke.KafkaError):
            return Verdict(Kind.RETRIABLE, "broker_retriable" if exc.retriable else "other")
        return None


@functools.cache
def _kafka_python() -> _KafkaPythonTables:
    return _KafkaPythonTables()


def _from_kafka_python(exc: BaseException) -> bool:
    """Whether `exc` is (a subclass of) one of kafka-python's classes: only then can its tables
    know it, and only then is `kafka` already imported."""
    return any(c.__module__ == "kafka" or c.__module__.startswith("kafka.")
               for c in type(exc).__mro__)


_LIBRDKAFKA: dict[str, tuple[Kind, str]] = {
    **{n: (Kind.REJECT, "record_too_large") for n in (
        "MSG_SIZE_TOO_LARGE", "RECORD_LIST_TOO_LARGE")},
    "INVALID_RECORD": (Kind.REJECT, "invalid_record"),
    "INVALID_TIMESTAMP": (Kind.REJECT, "invalid_timestamp"),
    "POLICY_VIOLATION": (Kind.REJECT, "policy_violation"),
    "TOPIC_AUTHORIZATION_FAILED": (Kind.REJECT, "topic_authorization"),
    **{n: (Kind.FATAL, "authentication") for n in (
        "SASL_AUTHENTICATION_FAILED", "_AUTHENTICATION", "ILLEGAL_SASL_STATE",
        "UNSUPPORTED_SASL_MECHANISM")},
    "CLUSTER_AUTHORIZATION_FAILED": (Kind.FATAL, "cluster_authorization"),
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED": (Kind.FATAL, "cluster_authorization"),
    "UNSUPPORTED_VERSION": (Kind.FATAL, "unsupported_broker"),
    "_UNSUPPORTED_FEATURE": (Kind.FATAL, "unsupported_broker"),
    **{n: (Kind.FATAL, "configuration") for n in (
        "_INVALID_ARG", "_NOT_CONFIGURED", "UNSUPPORTED_COMPRESSION_TYPE",
        "INVALID_REQUIRED_ACKS", "SECURITY_DISABLED")},
    "TOPIC_EXCEPTION": (Kind.FATAL, "invalid_topic"),
    "_FATAL": (Kind.FATAL, "fatal"),  # the idempotent producer cannot go on
    **{n: (Kind.RETRIABLE, "timeout") for n in (
        "_MSG_TIMED_OUT", "_TIMED_OUT", "REQUEST_TIMED_OUT")},
    **{n: (Kind.RETRIABLE, "connection") for n in (
        "_TRANSPORT", "_ALL_BROKERS_DOWN", "_RESOLVE", "_SSL", "NETWORK_EXCEPTION")},
    "BROKER_NOT_AVAILABLE": (Kind.RETRIABLE, "broker_unavailable"),
    "KAFKA_STORAGE_ERROR": (Kind.RETRIABLE, "broker_storage"),
    **{n: (Kind.RETRIABLE, "producer_state") for n in (
        "OUT_OF_ORDER_SEQUENCE_NUMBER", "UNKNOWN_PRODUCER_ID", "INVALID_PRODUCER_EPOCH",
        "PRODUCER_FENCED", "_INCONSISTENT")},
    **{n: (Kind.RETRIABLE, "producer_aborted") for n in (
        "_PURGE_QUEUE", "_PURGE_INFLIGHT", "_DESTROY")},
    "_QUEUE_FULL": (Kind.RETRIABLE, "queue_full"),
    "_UNKNOWN_TOPIC": (Kind.RETRIABLE, "unknown_topic"),
    "UNKNOWN_TOPIC_OR_PART": (Kind.RETRIABLE, "unknown_topic"),
    "INVALID_MSG": (Kind.RETRIABLE, "corrupt_record"),  # CORRUPT_MESSAGE, as kafka-python
}


def _classify_librdkafka(exc: LibrdkafkaError) -> Verdict:
    known = _LIBRDKAFKA.get(exc.name)
    if known is not None:
        return Verdict(*known)
    if exc.fatal:
        return Verdict(Kind.FATAL, "fatal")
    return Verdict(Kind.RETRIABLE, "broker_retriable" if exc.retriable else "other")


def _lookup(table: dict[type[BaseException], str], exc: BaseException) -> str | None:
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return None


def classify(exc: BaseException) -> Verdict:
    """What the sink does about `exc` (see the module docstring for the table)."""
    if isinstance(exc, LibrdkafkaError):
        return _classify_librdkafka(exc)
    if isinstance(exc, BufferError):  # librdkafka's queue is full (the sink bounds it anyway)
        return Verdict(Kind.RETRIABLE, "queue_full")
    if _from_kafka_python(exc) and (v := _kafka_python().verdict(exc)) is not None:
        return v
    if isinstance(exc, OSError):
        return Verdict(Kind.RETRIABLE, "connection")
    return Verdict(Kind.FATAL, "bug")
