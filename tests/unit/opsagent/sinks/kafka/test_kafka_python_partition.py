"""Partitions chosen once per key: the same choice as kafka-python's DefaultPartitioner, checked
again when the metadata changes, passed to send() by the producer adapter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner

from opsagent.sinks.kafka import kafka_python_partition as kafka_partition
from opsagent.sinks.kafka.kafka_python import KafkaPythonProducer
from opsagent.sinks.kafka.kafka_python_partition import KeyPartitions, default_partition
from tests.unit.opsagent.sinks.kafka.fakes import FakeFuture


class FakeCluster:
    """The part of kafka-python's ClusterMetadata the partitioner and the adapter use: like
    ClusterMetadata.update_metadata, `update` replaces the whole `_partitions` map."""

    def __init__(self, partitions: dict[str, set[int]]) -> None:
        self._partitions: dict[str, dict[int, object]] = {}
        for topic, ids in partitions.items():
            self.update(topic, ids)

    def topics(self) -> set[str]:
        return set(self._partitions)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        p = self._partitions.get(topic)
        return None if p is None else set(p)

    def available_partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions_for_topic(topic)

    def update(self, topic: str, partitions: set[int]) -> None:
        new = {t: dict(p) for t, p in self._partitions.items()}
        new[topic] = {i: object() for i in partitions}
        self._partitions = new


class FakeKafkaProducer:
    """Records send()'s partition argument; validates it like KafkaProducer._partition, against
    `valid` when set (the broker's view, ahead of the cluster map: a metadata race)."""

    def __init__(self, cluster: FakeCluster | None) -> None:
        if cluster is not None:
            self._metadata = cluster
        self.cluster = cluster
        self.valid: set[int] | None = None
        self.sent: list[tuple[bytes, int | None]] = []

    def send(self, topic: str, *, key: bytes, value: bytes, headers: list[tuple[str, bytes]],
             partition: int | None = None) -> object:
        if partition is not None and self.cluster is not None:
            valid = self.valid if self.valid is not None \
                else self.cluster.partitions_for_topic(topic) or set()
            if partition not in valid:
                raise ValueError(f"Unrecognized partition {partition} for topic {topic}")
        self.sent.append((key, partition))
        return FakeFuture()

    def close(self, timeout: float | None = None) -> None:
        pass


def ignore(result: object, msg: object = None, /) -> None:
    pass


def kafka_python_choice(key: bytes, partitions: set[int]) -> int:
    cluster = FakeCluster({"t": partitions})
    p: int = DefaultPartitioner().partition("t", key, key, b"v", b"v", cluster)
    return p


@given(key=st.binary(min_size=0, max_size=64),
       partitions=st.sets(st.integers(min_value=0, max_value=200), min_size=1, max_size=40))
def test_same_choice_as_kafka_pythons_default_partitioner(key: bytes,
                                                          partitions: set[int]) -> None:
    assert default_partition(key, sorted(partitions)) == kafka_python_choice(key, partitions)


@pytest.mark.parametrize("key,java_murmur2", [
    # Apache Kafka's UtilsTest.testMurmur2 (clients/src/test/java/.../utils/UtilsTest.java).
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
], ids=["2-bytes", "6-bytes", "24-bytes", "26-bytes", "48-bytes", "3-bytes"])
@pytest.mark.parametrize("count", [1, 3, 100])
def test_matches_the_java_clients_mapping(key: bytes, java_murmur2: int, count: int) -> None:
    # Java: Utils.toPositive(Utils.murmur2(key)) % numPartitions
    assert default_partition(key, range(count)) == (java_murmur2 & 0x7FFFFFFF) % count


def test_a_key_keeps_its_partition_until_the_partition_set_changes() -> None:
    kp = KeyPartitions()
    assert kp.get(b"k") is None  # nothing known yet: kafka-python decides
    kp.update({0, 1, 2}, source="m1")
    first = kp.get(b"65024:9981861:57ac04a040598085")
    assert first == default_partition(b"65024:9981861:57ac04a040598085", (0, 1, 2))
    kp.update({2, 1, 0}, source="m2")  # same set, newer metadata
    assert kp.get(b"65024:9981861:57ac04a040598085") == first
    assert kp.source == "m2"
    kp.update(range(7), source="m3")
    assert kp.partitions == tuple(range(7))
    assert kp.get(b"65024:9981861:57ac04a040598085") == \
        default_partition(b"65024:9981861:57ac04a040598085", tuple(range(7)))


def test_the_key_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_partition, "MAX_KEYS", 3)
    kp = KeyPartitions()
    kp.update(range(5), source="m")
    for i in range(10):
        key = f"file-{i}".encode()
        assert kp.get(key) == default_partition(key, tuple(range(5)))
        assert len(kp._by_key) <= 3


def test_producer_passes_the_cached_partition_to_send() -> None:
    cluster = FakeCluster({"logs": {0, 1, 2, 3}})
    inner = FakeKafkaProducer(cluster)
    producer = KafkaPythonProducer(inner)
    for key in (b"a", b"b", b"a", b"file-7"):
        producer.send("logs", key=key, value=b"line", headers=[], on_done=ignore)
    assert inner.sent == [(k, kafka_python_choice(k, {0, 1, 2, 3}))
                          for k in (b"a", b"b", b"a", b"file-7")]


def test_producer_follows_a_partition_count_change_seen_in_metadata() -> None:
    cluster = FakeCluster({"logs": {0}})
    inner = FakeKafkaProducer(cluster)
    producer = KafkaPythonProducer(inner)
    key = b"abc"
    producer.send("logs", key=key, value=b"1", headers=[], on_done=ignore)
    cluster.update("logs", set(range(100)))
    producer.send("logs", key=key, value=b"2", headers=[], on_done=ignore)
    assert inner.sent == [(key, 0), (key, 7)]  # see the Java mapping test


def test_producer_lets_kafka_python_choose_while_the_topic_is_unknown() -> None:
    cluster = FakeCluster({})
    inner = FakeKafkaProducer(cluster)
    producer = KafkaPythonProducer(inner)
    producer.send("new-topic", key=b"a", value=b"1", headers=[], on_done=ignore)
    cluster.update("new-topic", {0, 1})  # kafka-python's wait for metadata ends with an update
    producer.send("new-topic", key=b"a", value=b"2", headers=[], on_done=ignore)
    assert inner.sent == [(b"a", None), (b"a", kafka_python_choice(b"a", {0, 1}))]


def test_a_partition_gone_since_the_check_falls_back_to_kafka_pythons_choice() -> None:
    cluster = FakeCluster({"logs": set(range(100))})
    inner = FakeKafkaProducer(cluster)
    producer = KafkaPythonProducer(inner)
    producer.send("logs", key=b"abc", value=b"1", headers=[], on_done=ignore)  # partition 7, cached
    inner.valid = {0}  # topic re-created with one partition; the map is swapped after our check
    producer.send("logs", key=b"abc", value=b"2", headers=[], on_done=ignore)
    cluster.update("logs", {0})
    producer.send("logs", key=b"abc", value=b"3", headers=[], on_done=ignore)
    assert inner.sent == [(b"abc", 7), (b"abc", None), (b"abc", 0)]


def test_without_cluster_metadata_kafka_python_partitions_every_record() -> None:
    inner = FakeKafkaProducer(None)
    producer = KafkaPythonProducer(inner)
    producer.send("logs", key=b"a", value=b"1", headers=[], on_done=ignore)
    assert inner.sent == [(b"a", None)]


def test_real_cluster_metadata_has_the_map_the_adapter_reads() -> None:
    """Guards the one private attribute this relies on (kafka-python 3.0.x)."""
    from kafka.cluster import ClusterMetadata

    assert isinstance(ClusterMetadata()._partitions, dict)
