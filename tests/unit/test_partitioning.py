"""The collector partitions keyed records exactly as Kafka's default partitioner does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner
from kafka.partitioner.default import murmur2 as reference_murmur2

from chalicelib.sinks.kafka import murmur2, partition_for


@given(st.binary(max_size=200))
def test_murmur2_matches_kafka_python(data: bytes) -> None:
    assert murmur2(data) & 0x7FFFFFFF == reference_murmur2(data) & 0x7FFFFFFF


@given(st.text(min_size=1, max_size=64).map(str.encode), st.integers(min_value=1, max_value=64))
def test_partition_matches_the_default_partitioner(key: bytes, partitions: int) -> None:
    class Cluster:
        def topics(self) -> set[str]:
            return {"t"}

        def partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(partitions))

        available_partitions_for_topic = partitions_for_topic

    expected = DefaultPartitioner().partition("t", key, key, None, None, Cluster())
    assert partition_for(key, partitions) == expected
