"""Each record key's partition, chosen once per key and partition set rather than by kafka-python's
partitioner for every record (a metadata look-up, a sort and a pure-Python murmur2 each time:
about a third of the producer's CPU per line, docs/benchmarks.md "Kafka forwarding").

The choice is exactly kafka-python's DefaultPartitioner's (and the Java client's) for a keyed
record, so the key -> partition mapping stays what consumers and other producers expect: one key
(one file) always lands on one partition while the topic's partition count stays the same. When
the count changes the mapping changes too, as it would with the default partitioner.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kafka.partitioner.default import murmur2

MAX_KEYS = 4096  # cached keys per topic; cleared when full (keys are files with records to send)


def default_partition(key: bytes, partitions: Sequence[int]) -> int:
    """The partition kafka-python's DefaultPartitioner picks for `key` among `partitions`
    (sorted ids): the positive murmur2 hash of the key modulo the partition count."""
    h: int = murmur2(key)
    return partitions[(h & 0x7FFFFFFF) % len(partitions)]


class KeyPartitions:
    """key -> partition for one topic, valid for the partition set it was computed from.
    `source` is the metadata object that set came from (see KafkaPythonProducer): a caller
    compares it by identity to know when to update."""

    __slots__ = ("_by_key", "_partitions", "source")

    def __init__(self) -> None:
        self._partitions: tuple[int, ...] = ()
        self._by_key: dict[bytes, int] = {}
        self.source: object = None

    @property
    def partitions(self) -> tuple[int, ...]:
        return self._partitions

    def update(self, partitions: Iterable[int], source: object) -> None:
        """Take the topic's current partition ids; a different set forgets every choice."""
        parts = tuple(sorted(partitions))
        if parts != self._partitions:
            self._partitions = parts
            self._by_key.clear()
        self.source = source

    def get(self, key: bytes) -> int | None:
        """The partition for `key`, or None while no partition is known (the producer then
        waits for metadata and partitions itself)."""
        p = self._by_key.get(key)
        if p is None:
            if not self._partitions:
                return None
            if len(self._by_key) >= MAX_KEYS:
                self._by_key.clear()
            p = self._by_key[key] = default_partition(key, self._partitions)
        return p
