"""The schema registry on the suite stack (started by `make up` like the other services, its log the broker's
`_schemas` topic), judged by third-party clients of Confluent's API: confluent-kafka's SchemaRegistryClient and
serializers, and python-schema-registry-client. Each test uses subjects of its own."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from pipeline.config import Config
from stack import registry
from tests.stacks import Stack

pytestmark = pytest.mark.slow

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def record(*fields: dict[str, Any]) -> str:
    return json.dumps({"type": "record", "name": "Click", "namespace": "acme", "fields": list(fields)})


V1 = record({"name": "id", "type": "string"})
#: V1 and an optional field with a default: BACKWARD (and FORWARD) compatible.
V2 = record({"name": "id", "type": "string"}, {"name": "page", "type": ["null", "string"], "default": None})
#: The id's type changed: compatible with nothing before it.
BROKEN = record({"name": "id", "type": "long"})


@pytest.fixture
def subject() -> str:
    return f"test-{uuid.uuid4().hex[:8]}-value"


@pytest.fixture(scope="module")
def client(config: Config) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": config.registry.url})


def test_register_evolve_refuse_and_delete_with_confluents_client(client: SchemaRegistryClient, subject: str) -> None:
    first = client.register_schema(subject, Schema(V1, "AVRO"))
    assert client.register_schema(subject, Schema(V1, "AVRO")) == first  # the same schema again: the same id
    second = client.register_schema(subject, Schema(V2, "AVRO"))
    assert second != first
    assert client.get_versions(subject) == [1, 2] and subject in client.get_subjects()
    latest = client.get_latest_version(subject)
    assert (latest.version, latest.schema_id) == (2, second)
    assert client.get_version(subject, 1).schema_id == first
    assert client.lookup_schema(subject, Schema(V1, "AVRO")).version == 1
    assert json.loads(client.get_schema(first).schema_str) == json.loads(V1)

    assert client.test_compatibility(subject, Schema(BROKEN, "AVRO")) is False
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, Schema(BROKEN, "AVRO"))
    assert (refused.value.http_status_code, refused.value.error_code) == (409, 409)
    assert "type_mismatch" in refused.value.error_message and "/fields/0" in refused.value.error_message
    assert client.get_versions(subject) == [1, 2]  # nothing stored

    assert client.set_compatibility(subject, "NONE") == {"compatibility": "NONE"}
    assert client.get_compatibility(subject) == "NONE"
    third = client.register_schema(subject, Schema(BROKEN, "AVRO"))
    assert client.get_version(subject, 3).schema_id == third

    assert client.delete_version(subject, 3) == 3  # soft: gone from the lists, kept in the log
    assert client.get_versions(subject) == [1, 2]
    assert client.delete_subject(subject) == [1, 2]
    assert subject not in client.get_subjects()
    with pytest.raises(SchemaRegistryError) as gone:
        client.get_versions(subject)
    assert gone.value.error_code == 40401
    assert sorted(client.delete_subject(subject, permanent=True)) == [1, 2, 3]
    assert json.loads(client.get_schema(first).schema_str) == json.loads(V1)  # an id keeps its schema


def test_transitive_levels_check_every_version(client: SchemaRegistryClient, subject: str) -> None:
    # v1 without the field, v2 with it (a default), then the field required: that reads v2's data, not v1's.
    # BACKWARD checks it against v2 only; the transitive forms against v1 too.
    with_default = record({"name": "id", "type": "string"}, {"name": "n", "type": "int", "default": 0})
    required = record({"name": "id", "type": "string"}, {"name": "n", "type": "int"})
    client.register_schema(subject, Schema(V1, "AVRO"))
    client.register_schema(subject, Schema(with_default, "AVRO"))
    assert client.test_compatibility(subject, Schema(required, "AVRO")) is True
    client.set_compatibility(subject, "BACKWARD_TRANSITIVE")
    assert client.test_compatibility(subject, Schema(required, "AVRO")) is False
    # Old readers ignore the field: forward, and full against the last version, hold; full against v1 does not.
    for level, compatible in (("FORWARD_TRANSITIVE", True), ("FULL", True), ("FULL_TRANSITIVE", False)):
        client.set_compatibility(subject, level)
        assert client.test_compatibility(subject, Schema(required, "AVRO")) is compatible, level


def test_serializers_write_the_wire_format_and_read_it_back(client: SchemaRegistryClient, subject: str) -> None:
    topic = subject.removesuffix("-value")
    context = SerializationContext(topic, MessageField.VALUE)
    avro_bytes = AvroSerializer(client, V2)({"id": "e-1", "page": "/home"}, context)
    schema_id = client.get_latest_version(subject).schema_id
    assert avro_bytes[0] == 0 and int.from_bytes(avro_bytes[1:5], "big") == schema_id
    assert AvroDeserializer(client)(avro_bytes, context) == {"id": "e-1", "page": "/home"}

    json_schema = json.dumps({"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]})
    json_context = SerializationContext(f"{topic}-json", MessageField.VALUE)
    json_bytes = JSONSerializer(json_schema, client)({"id": "e-2"}, json_context)
    assert json_bytes[0] == 0 and json.loads(json_bytes[5:]) == {"id": "e-2"}
    assert JSONDeserializer(None, schema_registry_client=client)(json_bytes, json_context) == {"id": "e-2"}
    assert client.get_latest_version(f"{topic}-json-value").schema.schema_type == "JSON"


def test_python_schema_registry_client_registers_checks_and_deletes(config: Config, subject: str) -> None:
    from schema_registry.client import SchemaRegistryClient as PythonClient
    from schema_registry.client import schema

    client = PythonClient(url=config.registry.url)
    first = client.register(subject, schema.AvroSchema(json.loads(V1)))
    assert client.register(subject, schema.AvroSchema(json.loads(V1))) == first
    assert client.check_version(subject, schema.AvroSchema(json.loads(V1))).schema_id == first
    assert client.test_compatibility(subject, schema.AvroSchema(json.loads(V2))) is True
    assert client.test_compatibility(subject, schema.AvroSchema(json.loads(BROKEN))) is False
    assert client.get_schema(subject).schema_id == first
    assert client.get_compatibility() == "BACKWARD"
    assert client.delete_subject(subject) == [1]
    assert client.get_schema(subject) is None


def test_bad_input_gets_a_4xx_in_confluents_shape_and_nothing_is_stored(config: Config, subject: str) -> None:
    url = config.registry.url
    register = f"{url}/subjects/{subject}/versions"
    cases = {
        "malformed JSON": (register, b'{"schema": '),
        "unparseable Avro": (register, json.dumps({"schema": '{"type": "no-such-type"}'}).encode()),
        "unknown type": (register, json.dumps({"schema": "{}", "schemaType": "XML"}).encode()),
        "no schema": (register, b"{}"),
        "subject too long": (f"{url}/subjects/{'s' * 300}/versions", json.dumps({"schema": V1}).encode()),
        "a level that is none": (f"{url}/config/{subject}", json.dumps({"compatibility": "SOMETIMES"}).encode()),
    }
    for name, (target, body) in cases.items():
        method = "PUT" if "/config/" in target else "POST"
        answer = requests.request(method, target, data=body, headers={"Content-Type": CONTENT_TYPE}, timeout=10)
        assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text)
        assert answer.headers["Content-Type"] == CONTENT_TYPE, name
        assert set(answer.json()) == {"error_code", "message"} and answer.json()["message"], name
    assert subject not in requests.get(f"{url}/subjects", timeout=10).json()
    assert requests.get(f"{url}/config/{subject}", timeout=10).json()["error_code"] == 40408
    assert requests.get(f"{url}/schemas/types", timeout=10).json() == ["JSON", "PROTOBUF", "AVRO"]


def test_a_restarted_registry_keeps_every_id(
    suite_stack: Stack, config: Config, client: SchemaRegistryClient, subject: str
) -> None:
    """Its state is the `_schemas` topic: stopped and started again, it answers the same ids, and a new schema gets
    an id no other schema had."""
    ids = [client.register_schema(subject, Schema(schema, "AVRO")) for schema in (V1, V2)]
    before = requests.get(f"{config.registry.url}/subjects", timeout=10).json()
    with suite_stack.held("registry"):
        registry.stop()
        assert registry.service().pid() is None
        registry.start(config)
    fresh = SchemaRegistryClient({"url": config.registry.url})  # no cached answers
    assert [fresh.get_version(subject, n).schema_id for n in (1, 2)] == ids
    assert requests.get(f"{config.registry.url}/subjects", timeout=10).json() == before
    other = record({"name": "id", "type": "string"}, {"name": "at", "type": "long", "default": 0})
    assert fresh.register_schema(subject, Schema(other, "AVRO")) > max(ids)
