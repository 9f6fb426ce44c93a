"""The registry's log in Kafka, as Confluent's registry keeps its own: one compacted topic (`_schemas`), one
partition (one order for every record), read whole at start and written with acks=all before an answer. The client
is librdkafka's (confluent-kafka), the registry's own: the collector's kafka-python stays the collector's."""

from __future__ import annotations

import json
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

Record = tuple[dict[str, Any], dict[str, Any] | None]


#: What a broker or the client answers for a partition of a topic made a moment ago (on a cluster, also that the
#: broker asked does not lead it yet).
_NOT_KNOWN_YET = (
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
)


class KafkaSchemaLog:
    def __init__(self, servers: list[str], topic: str, timeout_s: float = 30.0) -> None:
        self.servers, self.topic, self.timeout_s = ",".join(servers), topic, timeout_s
        self._ensure_topic()
        # Idempotent, one partition: the log's order is the order the registry wrote in, retries included.
        # A record not acknowledged within the timeout fails for good (no later delivery behind a refusal).
        self._producer = Producer(
            {
                "bootstrap.servers": self.servers,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 0,
                "message.timeout.ms": int(timeout_s * 1000),
            }
        )

    def _ensure_topic(self) -> None:
        """`_schemas` made if missing: compacted, on every broker up to three, a write taken by two of them."""
        admin = AdminClient({"bootstrap.servers": self.servers})
        metadata = admin.list_topics(timeout=self.timeout_s)
        if self.topic in metadata.topics:
            return
        replicas = min(3, len(metadata.brokers))
        configs = {"cleanup.policy": "compact", "min.insync.replicas": str(2 if replicas >= 3 else 1)}
        created = admin.create_topics([NewTopic(self.topic, 1, replicas, config=configs)])[self.topic]
        try:
            created.result(timeout=self.timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another registry made it meanwhile
                raise

    def read_all(self) -> list[Record]:
        """Every record of the topic, oldest first (a tombstone's value None)."""
        consumer = Consumer(
            {"bootstrap.servers": self.servers, "group.id": "clickstream-registry", "enable.auto.commit": False}
        )
        try:
            low, high = watermarks(consumer, self.topic, self.timeout_s)
            records: list[Record] = []
            if high <= low:
                return records
            consumer.assign([TopicPartition(self.topic, 0, low)])
            deadline, position = time.monotonic() + self.timeout_s, low
            while position < high:
                if time.monotonic() > deadline:
                    raise OSError(f"{self.topic}: not read to offset {high} in {self.timeout_s:.0f}s")
                message = consumer.poll(0.5)
                if message is None:
                    # Compaction may have removed the last offsets below the high watermark: the position says.
                    position = max(position, consumer.position([TopicPartition(self.topic, 0)])[0].offset)
                    continue
                if message.error():
                    raise KafkaException(message.error())
                position = message.offset() + 1
                if message.key() is not None:
                    value = message.value()
                    records.append((json.loads(message.key()), None if value is None else json.loads(value)))
            return records
        finally:
            consumer.close()

    def append(self, key: dict[str, Any], value: dict[str, Any] | None) -> None:
        """The record written and acknowledged by the in-sync replicas; an OSError if Kafka did not take it."""
        failures: list[str] = []

        def delivered(error: KafkaError | None, _message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        payload = None if value is None else _dump(value)
        self._producer.produce(self.topic, key=_dump(key), value=payload, partition=0, on_delivery=delivered)
        if self._producer.flush(self.timeout_s + 5) or failures:
            raise OSError(f"{self.topic}: the record was not stored: {failures or 'no acknowledgement in time'}")

    def close(self) -> None:
        self._producer.flush(5)


def watermarks(consumer: Consumer, topic: str, timeout_s: float) -> tuple[int, int]:
    """The first and next offsets of the topic's partition 0, once the broker knows it (a topic made a moment ago may
    not be in the client's metadata yet, nor, on a cluster, have a leader the broker asked knows of)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() not in _NOT_KNOWN_YET or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
