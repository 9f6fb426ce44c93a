"""Confluent's wire format at the collector, and what the stages ask of the registry (pipeline/schema_registry.py),
against our registry served in-process over HTTP on a log kept in a list (no Kafka). Confluent's own deserializer
reads what the collector writes (tests/spark and tests/integration carry it to the lake and the latest topic)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from chalicelib.collector import Collector, RequestInfo
from chalicelib.dependencies import registry_id
from chalicelib.sinks.memory import MemorySink
from generator.synthetic import synthetic_events
from pipeline.config import Config
from pipeline.schema_registry import (
    IncompatibleSchema,
    RegistryClient,
    RegistryUnreachable,
    framed,
    pipeline_schemas,
    refusals,
    register_all,
    unframed,
    value_subject,
)
from registry.http_api import server
from registry.service import SchemaRegistry
from stack.process import free_port
from tests.unit.test_registry import ListLog

CONFIG = Config.defaults()


@pytest.fixture
def registry_url() -> Iterator[str]:
    httpd = server(SchemaRegistry(ListLog()), "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def with_registry(url: str, **registry: Any) -> Config:
    return CONFIG.replace(registry={"url": url, **registry})


def collected(collector: Collector, events: list[dict[str, Any]]) -> MemorySink:
    outcome = collector.collect(json.dumps(events).encode(), RequestInfo("application/json", "127.0.0.1", "t"))
    assert outcome.status_code == 200, outcome.body
    assert isinstance(collector.sink, MemorySink)
    return collector.sink


def test_the_collector_frames_raw_records_and_confluents_deserializer_reads_them(registry_url: str) -> None:
    ids = register_all(RegistryClient(registry_url), pipeline_schemas(CONFIG.kafka))
    raw_id = ids[value_subject(CONFIG.kafka.raw_topic)]
    events = synthetic_events(40, seed=7, invalid_share=0.3)
    sink = collected(Collector(CONFIG, MemorySink(), registry_id=raw_id), events)
    raw = [r for r in sink.records if r.topic == CONFIG.kafka.raw_topic]
    invalid = [r for r in sink.records if r.topic == CONFIG.kafka.invalid_topic]
    assert raw and invalid
    deserializer = JSONDeserializer(None, schema_registry_client=SchemaRegistryClient({"url": registry_url}))
    context = SerializationContext(CONFIG.kafka.raw_topic, MessageField.VALUE)
    by_id = {e["id"]: e for e in events}
    for record in raw:
        assert unframed(record.value)[0] == raw_id
        value = deserializer(record.value, context)  # validates it against the registered JSON Schema too
        value.pop("collector")
        assert value == by_id[record.key.decode()]
    # The invalid topic stays plain JSON: its records are the collector's own bad rows, not the event's schema.
    assert all(unframed(r.value)[0] is None and orjson.loads(r.value)["reason"] for r in invalid)


def test_without_an_id_the_collector_writes_plain_json() -> None:
    sink = collected(Collector(CONFIG, MemorySink()), synthetic_events(3, seed=4))
    assert all(r.value.startswith(b"{") and unframed(r.value) == (None, r.value) for r in sink.records)


def test_the_id_comes_from_the_deploy_else_the_registry_else_none(registry_url: str) -> None:
    assert registry_id(with_registry(registry_url, raw_schema_id=41)) == 41
    assert registry_id(with_registry(registry_url)) is None  # the registry does not have the schema yet
    ids = register_all(RegistryClient(registry_url), pipeline_schemas(CONFIG.kafka))
    assert registry_id(with_registry(registry_url)) == ids[value_subject(CONFIG.kafka.raw_topic)]
    assert registry_id(with_registry(registry_url, wire_format=False)) is None
    # A registry that does not answer never fails the collector: its records are plain JSON.
    assert registry_id(with_registry(f"http://127.0.0.1:{free_port()}")) is None


def test_framed_and_unframed_are_each_others_inverse() -> None:
    assert framed(258, b"{}") == b"\x00\x00\x00\x01\x02{}"
    assert unframed(framed(2**31 - 1, b'{"a":1}')) == (2**31 - 1, b'{"a":1}')
    assert unframed(b"\x00\x00\x01") == (None, b"\x00\x00\x01")  # cut short: the lake files it as invalid


def test_an_incompatible_change_is_refused_with_the_registrys_reason_and_nothing_is_registered(
    registry_url: str,
) -> None:
    client = RegistryClient(registry_url)
    raw, latest = pipeline_schemas(CONFIG.kafka)
    older = json.loads(latest.schema)
    older["fields"] = [{**f, "type": ["null", "long"]} if f["name"] == "id" else f for f in older["fields"]]
    client.register(latest.subject, json.dumps(older), "AVRO")
    [refusal] = refusals(client, (raw, latest))
    assert refusal.startswith(f"{latest.subject}: missing_union_branch at /, /fields/0/")  # the id field
    with pytest.raises(IncompatibleSchema, match="refuses schemas/"):
        register_all(client, (raw, latest))
    assert client.lookup(raw.subject, raw.schema, raw.schema_type) is None


def test_a_registry_that_does_not_answer_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RegistryUnreachable, match=url):
        RegistryClient(url, timeout_s=1.0).subjects_of(1)
