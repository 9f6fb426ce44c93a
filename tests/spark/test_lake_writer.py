"""The suite stack's lake writer on the real path: collector -> Kafka -> Spark (local) -> Delta tables on LocalStack
S3. A variant with a production's settings (SASL_SSL, a short window, sessions) is test_variant_writer.py's.

The lake is read back with delta-rs (lake/reader.py), not Spark: committed versions only.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest

from chalicelib.collector import Collector, RequestInfo
from chalicelib.dependencies import registry_id
from chalicelib.sinks.kafka import KafkaSink
from enrichment import scrub_ips
from generator.synthetic import synthetic_events
from lake.reader import INVALID_PREFIX, LAKE_PREFIX, read
from pipeline.config import Config
from pipeline.schema_registry import framed
from stack import spark
from tests.conftest import lake_ids

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def collector(config: Config) -> Collector:
    """The collector as `chalice local` runs it: raw records in Confluent's wire format, with the id the registry
    gives their schema."""
    schema_id = registry_id(config)
    assert schema_id is not None, "the registry does not have the raw records' schema"
    return Collector(config, KafkaSink(config.kafka), registry_id=schema_id)


def post(collector: Collector, events: list[dict[str, Any]]) -> dict[str, Any]:
    outcome = collector.collect(json.dumps(events).encode(), RequestInfo("application/json", "127.0.0.1", "pytest"))
    assert outcome.status_code == 200, outcome.body
    return outcome.body


def test_valid_and_invalid_events_land_once_with_metadata(
    lake_writer: None, collector: Collector, config: Config
) -> None:
    events = synthetic_events(300, seed=41, invalid_share=0.1)
    body = post(collector, events)
    post(collector, events)  # N valid and M invalid posted twice: N rows and M invalid rows
    rejected = {e["id"] for e in body["errors"]}
    accepted = {e["id"] for e in events} - rejected
    assert len(accepted) == body["valid_count"] and rejected

    assert lake_ids(LAKE_PREFIX, accepted) == Counter(dict.fromkeys(accepted, 1))
    assert lake_ids(INVALID_PREFIX, rejected) == Counter(dict.fromkeys(rejected, 1))

    rows = {r["id"]: r for r in read(LAKE_PREFIX).to_pylist() if r["id"] in accepted}
    sample = next(e for e in events if e["id"] in accepted and e["type"] == "purchase")
    row = rows[sample["id"]]
    assert (row["type"], row["customer_id"], row["product_id"], row["price"]) == (
        "purchase",
        sample["event"]["customer_id"],
        sample["event"]["product_id"],
        sample["event"]["price"],
    )
    assert row["correlation_id"] == body["correlation_id"] and row["schema_version"] == "1-0-0"
    assert row["kafka_offset"] >= 0 and row["kafka_timestamp"] and row["ingested_timestamp"]
    assert row["registry_schema_id"] == registry_id(config)
    assert row["dt"] == sample["event"]["timestamp"][:10]

    invalid = [r for r in read(INVALID_PREFIX).to_pylist() if r["id"] in rejected]
    problems = {e["id"]: (e["code"], e["path"], e["reason"]) for e in body["errors"]}
    assert all(
        (r["code"], r["path"], r["reason"]) == problems[r["id"]] and json.loads(r["payload"])["id"] == r["id"]
        for r in invalid
    )


def test_latest_topic_holds_the_processed_events_in_avro(
    lake_writer: None, collector: Collector, config: Config
) -> None:
    """Every record the latest topic holds (this run's, from its first offset) decodes with confluent-kafka's
    AvroDeserializer against our registry, and this test's events are among them, enriched."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext
    from kafka import KafkaConsumer, TopicPartition

    events = synthetic_events(50, seed=42)
    post(collector, events)
    wanted = {e["id"] for e in events}
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": config.registry.url}))
    context = SerializationContext(config.kafka.latest_topic, MessageField.VALUE)
    consumer = KafkaConsumer(bootstrap_servers=config.kafka.bootstrap_servers, group_id=None)
    partitions = [TopicPartition(config.kafka.latest_topic, p) for p in range(config.kafka.topic_partitions)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    found: dict[str, dict[str, Any]] = {}
    decoded = 0
    deadline = time.monotonic() + 120
    while set(found) < wanted and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            for record in records:
                value = deserializer(record.value, context)
                assert value["id"] == record.key.decode()
                decoded += 1
                if value["id"] in wanted:
                    found[value["id"]] = value
    consumer.close()
    assert set(found) == wanted and decoded >= len(wanted)
    assert all(v["event_timestamp"] and v["ua_browser_family"] and v["registry_schema_id"] for v in found.values())


def test_a_resent_batch_lands_once(lake_writer: None, collector: Collector) -> None:
    events = synthetic_events(200, seed=43)
    post(collector, events)
    post(collector, events)  # e.g. the client retried after a 503
    wanted = {e["id"] for e in events}
    assert lake_ids(LAKE_PREFIX, wanted) == Counter(dict.fromkeys(wanted, 1))


def test_compaction_keeps_every_row_in_fewer_files(lake_writer: None, collector: Collector) -> None:
    from lake.reader import table

    sent: set[str] = set()
    for n in range(3):  # three commits of one day at least: three small files (or more) to bin-pack
        events = synthetic_events(40, seed=500 + n)
        post(collector, events)
        sent |= {e["id"] for e in events}
        assert lake_ids(LAKE_PREFIX, sent) == Counter(dict.fromkeys(sent, 1))
    before = table(LAKE_PREFIX)
    assert before is not None
    files_before, rows_before = len(before.file_uris()), before.to_pyarrow_dataset().count_rows()

    spark.compact()  # asks the running lake writer, which compacts between two batches

    after = table(LAKE_PREFIX)
    assert after is not None and after.version() > before.version()
    assert "OPTIMIZE" in [entry["operation"] for entry in after.history(5)]
    assert len(after.file_uris()) < files_before
    assert after.to_pyarrow_dataset().count_rows() == rows_before
    assert lake_ids(LAKE_PREFIX, sent) == Counter(dict.fromkeys(sent, 1))


def test_duckdb_polars_and_pyarrow_read_the_same_rows(lake_writer: None, collector: Collector) -> None:
    """The README's readers, each on its own path to the table: all see every committed row, once."""
    import duckdb
    import polars as pl
    import pyarrow.compute as pc

    from lake.reader import dataset, storage_options, table_path

    events = synthetic_events(80, seed=49)
    post(collector, events)
    wanted = {e["id"] for e in events}
    assert lake_ids(LAKE_PREFIX, wanted) == Counter(dict.fromkeys(wanted, 1))
    days = sorted({e["event"]["timestamp"][:10] for e in events})
    uri = f"s3://{table_path(LAKE_PREFIX)}"

    scan = dataset(LAKE_PREFIX)
    assert scan is not None
    in_duckdb = duckdb.sql(f"SELECT id FROM scan WHERE dt IN ({', '.join(repr(d) for d in days)})").fetchall()
    in_polars = (
        pl.scan_delta(uri, storage_options=storage_options()).filter(pl.col("dt").is_in(days)).select("id").collect()
    )
    in_pyarrow = scan.to_table(columns=["id"], filter=pc.field("dt").isin(days))
    for ids in ([r[0] for r in in_duckdb], in_polars["id"].to_list(), in_pyarrow["id"].to_pylist()):
        assert set(ids) >= wanted and len(set(ids)) == len(ids)  # every row, none twice
    assert len(in_duckdb) == in_polars.height == in_pyarrow.num_rows


def test_records_of_any_producer_never_stop_the_lake(lake_writer: None, collector: Collector, config: Config) -> None:
    """Whatever bytes reach the topics, each record is filed (as a row, or as an invalid row with a reason and
    its Kafka position) and the queries go on: the events posted afterwards land."""
    from kafka import KafkaProducer

    tag = f"poison-{time.time_ns()}"
    (good,) = synthetic_events(1, seed=44)
    impossible_day = json.loads(json.dumps(good))
    impossible_day["event"]["timestamp"] = "2026-04-31T10:00:00Z"
    wrong_type = json.loads(json.dumps(good))
    wrong_type["event"]["product_id"] = "abc"
    raw_poison: dict[str, bytes | None] = {
        f"{tag}-not-json": b"not json \xff\xfe",
        f"{tag}-empty": b"",
        f"{tag}-tombstone": None,
        f"{tag}-array": b"[1, 2]",
        f"{tag}-shape": json.dumps({"id": f"{tag}-shape", "type": "click"}).encode(),
        f"{tag}-april-31": json.dumps({**impossible_day, "id": f"{tag}-april-31"}).encode(),
        f"{tag}-wrong-type": json.dumps({**wrong_type, "id": f"{tag}-wrong-type"}).encode(),
        f"{tag}-cut-short": b"\x00\x00\x01",
        f"{tag}-unknown-id": framed(2**31 - 7, json.dumps({**good, "id": f"{tag}-unknown-id"}).encode()),
    }
    # Plain JSON, as a producer without the registry (or an older collector) writes it: an event like any other.
    keyless = {**good, "id": f"{tag}-keyless-but-valid"}
    producer = KafkaProducer(bootstrap_servers=config.kafka.servers, acks="all")
    for key, value in raw_poison.items():
        producer.send(config.kafka.raw_topic, key=key.encode(), value=value)
    producer.send(config.kafka.raw_topic, key=None, value=json.dumps(keyless).encode())
    producer.send(config.kafka.invalid_topic, key=f"{tag}-invalid-garbage".encode(), value=b"\x00garbage")
    producer.flush()
    producer.close()

    after = synthetic_events(100, seed=45)
    post(collector, after)
    landed = {e["id"] for e in after} | {keyless["id"]}
    assert lake_ids(LAKE_PREFIX, landed) == Counter(dict.fromkeys(landed, 1))

    filed = set(raw_poison) | {f"{tag}-invalid-garbage"}
    assert lake_ids(INVALID_PREFIX, filed) == Counter(dict.fromkeys(filed, 1))
    rows = {r["id"]: r for r in read(INVALID_PREFIX).to_pylist() if r["id"] in filed}
    problems = {key: (rows[key]["code"], rows[key]["path"], rows[key]["reason"]) for key in filed}
    not_an_event = ("record.shape", "$", "record is not a JSON event with the schema's types")
    assert problems == {
        f"{tag}-not-json": not_an_event,
        f"{tag}-empty": ("record.empty", "$", "record has no value"),
        f"{tag}-tombstone": ("record.empty", "$", "record has no value"),
        f"{tag}-array": not_an_event,
        f"{tag}-shape": ("record.required", "$.package_id", "$.package_id: missing"),
        f"{tag}-april-31": ("lake.timestamp.instant", "$.event.timestamp", "$.event.timestamp: not a real instant"),
        f"{tag}-wrong-type": not_an_event,
        f"{tag}-invalid-garbage": ("record.shape", "$", "record is not an invalid-event record"),
        f"{tag}-cut-short": ("record.wire_format", "$", "record has the wire format's magic byte, no schema id"),
        f"{tag}-unknown-id": (
            "record.schema_id",
            "$",
            f"schema id {2**31 - 7} is not one the schema registry has for the raw topic",
        ),
    }
    for key in raw_poison:
        assert rows[key]["kafka_topic"] == config.kafka.raw_topic and rows[key]["kafka_offset"] >= 0
    # The value as sent, its addresses truncated as everywhere in the lake.
    assert rows[f"{tag}-april-31"]["body"] == scrub_ips(raw_poison[f"{tag}-april-31"].decode())
    assert rows[f"{tag}-april-31"]["body"] != raw_poison[f"{tag}-april-31"].decode()
    assert rows[f"{tag}-not-json"]["body"] == "not json \ufffd\ufffd"  # invalid UTF-8, made readable
    assert rows[f"{tag}-invalid-garbage"]["kafka_topic"] == config.kafka.invalid_topic
    assert spark.service().pid() is not None, "the lake writer stopped"
