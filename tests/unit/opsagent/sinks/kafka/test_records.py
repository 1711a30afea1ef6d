"""The Kafka sink's record types: OutRecord's in-flight size and value semantics, and the one
callback object per send (Completion) in each client's calling convention."""

from __future__ import annotations

import pytest
from kafka import errors as ke

from opsagent.sinks.kafka.records import (
    Completion,
    Entry,
    Inbox,
    LibrdkafkaError,
    OutRecord,
    record_size,
)

HEADERS = [("node", b"n1"), ("file", b"/var/log/app.log"), ("offset", b"1234")]


def test_record_size_counts_key_value_headers_and_overhead() -> None:
    assert record_size("1:2:ab", b"hello", HEADERS) == (
        6 + 5 + 16 + (4 + 2) + (4 + 16) + (6 + 4))


def test_out_record_computes_its_size_unless_the_builder_gives_it() -> None:
    computed = OutRecord("1:2:ab", b"hello", HEADERS, 10)
    assert computed.size == record_size("1:2:ab", b"hello", HEADERS)
    given = OutRecord("1:2:ab", b"hello", HEADERS, 10, size=7)
    assert given.size == 7


def test_out_records_are_equal_by_value_whatever_their_size_hint() -> None:
    a = OutRecord("k", b"v", [("offset", b"0")], 2)
    assert a == OutRecord(key="k", value=b"v", headers=[("offset", b"0")], end=2, size=99)
    assert a != OutRecord("k", b"v", [("offset", b"0")], 3)
    assert a != OutRecord("k", b"w", [("offset", b"0")], 2)
    assert a != ("k", b"v", [("offset", b"0")], 2)
    assert repr(a) == "OutRecord(key='k', value=b'v', headers=[('offset', b'0')], end=2)"
    with pytest.raises(TypeError):
        hash(a)


def test_a_new_entry_waits_to_be_sent_and_counts_its_record_size() -> None:
    e = Entry(OutRecord("k", b"v", [], 2, size=40))
    assert (e.gen, e.done, e.suspect, e.alone, e.size) == (-1, False, False, False, 40)


class _KafkaError:
    """The part of confluent_kafka.KafkaError that LibrdkafkaError.of reads."""

    def name(self) -> str:
        return "_MSG_TIMED_OUT"

    def str(self) -> str:
        return "Local: Message timed out"

    def retriable(self) -> bool:
        return True

    def fatal(self) -> bool:
        return False


@pytest.mark.parametrize(("args", "failed"), [
    pytest.param(("record-metadata",), False, id="kafka-python-success"),
    pytest.param((ke.KafkaTimeoutError("expired"),), True, id="kafka-python-failure"),
    pytest.param((None, "message"), False, id="librdkafka-success"),
    pytest.param((_KafkaError(), "message"), True, id="librdkafka-failure"),
])
def test_completion_queues_itself_and_reports_only_failures(args: tuple[object, ...],
                                                            failed: bool) -> None:
    failures: list[int] = []
    inbox = Inbox(failures.append)
    entry = Entry(OutRecord("k", b"v", [], 2))
    done = Completion(inbox, entry, 3)
    done(*args)
    assert list(inbox.done) == [done]
    assert (done.entry, done.gen) == (entry, 3)
    assert failures == ([3] if failed else [])
    assert (done.exc is not None) == failed
    if failed and len(args) == 2:
        assert isinstance(done.exc, LibrdkafkaError)
        assert (done.exc.name, done.exc.retriable) == ("_MSG_TIMED_OUT", True)


def test_completion_wakes_the_caller_only_while_it_waits() -> None:
    inbox = Inbox(lambda gen: None)
    entry = Entry(OutRecord("k", b"v", [], 2))
    Completion(inbox, entry, 1)(None, "message")
    assert not inbox.wake.is_set()  # nobody waits: no wake-up per record
    inbox.waiting = True
    Completion(inbox, entry, 1)(None, "message")
    assert inbox.wake.is_set()
    assert len(inbox.done) == 2
