"""The schema registry's rules without Kafka: its state is what its log's records make, so a registry read back from
the same records answers the same (tests/integration/test_registry.py runs it on the broker, judged by third-party
clients)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from registry.errors import RegistryError
from registry.kafka_log import watermarks
from registry.service import SchemaRegistry

V1 = json.dumps({"type": "record", "name": "E", "fields": [{"name": "id", "type": "string"}]})
V2 = json.dumps(
    {
        "type": "record",
        "name": "E",
        "fields": [{"name": "id", "type": "string"}, {"name": "n", "type": "int", "default": 0}],
    }
)


class ListLog:
    """The log as a list: what Kafka's topic holds, in order (JSON in and out, as on the topic)."""

    def __init__(self) -> None:
        self.records: list[tuple[dict[str, Any], dict[str, Any] | None]] = []

    def read_all(self) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        return list(self.records)

    def append(self, key: dict[str, Any], value: dict[str, Any] | None) -> None:
        self.records.append((json.loads(json.dumps(key)), json.loads(json.dumps(value))))


def answers(registry: SchemaRegistry) -> dict[str, Any]:
    return {
        "subjects": registry.subjects(deleted=True),
        "versions": {
            s: [(v.version, v.id, v.deleted) for v in registry.state.all_versions(s)] for s in registry.subjects(True)
        },
        "levels": dict(registry.state.levels),
        "max_id": registry.state.max_id,
    }


def test_a_registry_read_back_from_its_log_answers_the_same() -> None:
    log = ListLog()
    registry = SchemaRegistry(log)
    first = registry.register("a-value", {"schema": V1})
    assert registry.register("b-value", {"schema": V1}) == first  # the same schema under another subject: its id
    registry.register("a-value", {"schema": V2})
    registry.register("j-value", {"schema": '{"type": "object"}', "schemaType": "JSON"})
    registry.set_level("a-value", {"compatibility": "full_transitive"})
    registry.delete_version("a-value", "1")
    assert answers(SchemaRegistry(log)) == answers(registry)


def test_an_id_is_never_given_again_even_once_its_records_are_compacted_away() -> None:
    log = ListLog()
    registry = SchemaRegistry(log)
    registry.register("a-value", {"schema": V1})
    last = registry.register("a-value", {"schema": V2})
    registry.delete_subject("a-value")
    registry.delete_subject("a-value", permanent=True)
    # Compaction keeps a key's last record and drops tombstones: the purged versions leave no record at all.
    latest = {json.dumps(k, sort_keys=True): (k, v) for k, v in log.records}
    compacted = ListLog()
    compacted.records = [(k, v) for k, v in latest.values() if v is not None]
    again = SchemaRegistry(compacted)
    other = json.dumps({"type": "record", "name": "F", "fields": []})
    assert again.subjects(deleted=True) == [] and again.register("c-value", {"schema": other}) > last


@pytest.mark.parametrize(
    ("steps", "code"),
    [
        ([("delete_subject", "a-value", True)], 40405),  # permanent before soft
        ([("delete_subject", "a-value", False), ("delete_subject", "a-value", False)], 40404),
        ([("delete_version", "a-value", "1", True)], 40407),
        ([("delete_version", "a-value", "1", False), ("delete_version", "a-value", "1", False)], 40406),
        ([("version", "a-value", "7")], 40402),
        ([("version", "a-value", "seven")], 42202),
        ([("version", "no-such-value", "1")], 40401),
        ([("schema", 999)], 40403),
        ([("register", "a-value", {"schema": V1, "schemaType": "XML"})], 42201),
        ([("register", "a-value", {"schema": "{"})], 42201),
        ([("register", "a" * 256, {"schema": V1})], 42208),
        ([("set_level", "a-value", {"compatibility": "SOMETIMES"})], 42203),
        ([("subject_level", "a-value", False)], 40408),
    ],
)
def test_refusals_carry_confluents_codes_and_store_nothing(steps: list[tuple[Any, ...]], code: int) -> None:
    log = ListLog()
    registry = SchemaRegistry(log)
    registry.register("a-value", {"schema": V1})
    *before, last = steps
    for name, *args in before:
        getattr(registry, name)(*args)
    stored = len(log.records)
    with pytest.raises(RegistryError) as refused:
        getattr(registry, last[0])(*last[1:])
    assert refused.value.code == code and 400 <= refused.value.status < 500
    assert len(log.records) == stored


class RefusingConsumer:
    """A consumer whose broker answers `refusals` first, then the partition's offsets."""

    def __init__(self, *refusals: int) -> None:
        self.refusals = list(refusals)

    def get_watermark_offsets(self, partition: Any, timeout: float) -> tuple[int, int]:
        if self.refusals:
            raise KafkaException(KafkaError(self.refusals.pop(0)))
        return (0, 3)


def test_the_log_waits_for_a_new_topics_leader_and_raises_what_is_not_a_wait() -> None:
    # On a fresh cluster the broker asked may not yet know the leader of _schemas, made a moment before.
    waiting = RefusingConsumer(KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.NOT_LEADER_FOR_PARTITION)
    assert watermarks(waiting, "_schemas", timeout_s=5) == (0, 3)  # type: ignore[arg-type]
    with pytest.raises(KafkaException):
        watermarks(RefusingConsumer(KafkaError.TOPIC_AUTHORIZATION_FAILED), "_schemas", timeout_s=5)  # type: ignore[arg-type]
