"""The lake writer on the real path: collector -> Kafka -> Spark (local) -> Parquet on LocalStack S3.

The lake is read back with pyarrow (lake/reader.py), not Spark, counting only committed files.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.collector import Collector, RequestInfo
from chalicelib.settings import Settings, setting
from chalicelib.sinks.kafka import KafkaSink
from generator.synthetic import synthetic_events
from lake.reader import INVALID_PREFIX, LAKE_PREFIX, read
from stack import localstack, spark
from stack.process import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lake_writer(kafka_settings: Settings, localstack_endpoint: str) -> Iterator[None]:
    localstack.ensure_bucket(setting("LAKE_BUCKET"))
    os.environ.update(SPARK_UI_PORT=str(free_port()), SPARK_TRIGGER="1 second")
    spark.start()
    try:
        yield
    finally:
        spark.stop()


@pytest.fixture(scope="module")
def collector(kafka_settings: Settings) -> Collector:
    return Collector(kafka_settings, KafkaSink(kafka_settings))


def post(collector: Collector, events: list[dict[str, Any]]) -> dict[str, Any]:
    outcome = collector.collect(json.dumps(events).encode(), RequestInfo("application/json", "127.0.0.1", "pytest"))
    assert outcome.status_code == 200, outcome.body
    return outcome.body


def lake_ids(prefix: str, wanted: set[str], timeout_s: float = 120) -> Counter[str]:
    """How often each wanted id is in the lake, once all are there (or the timeout passed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        table = read(prefix, columns=["id"])
        found = Counter(i for i in (table.column("id").to_pylist() if table.num_rows else []) if i in wanted)
        if set(found) >= wanted or time.monotonic() > deadline:
            return found
        time.sleep(1)


def test_valid_and_invalid_events_land_once_with_metadata(
    lake_writer: None, collector: Collector, kafka_settings: Settings
) -> None:
    events = synthetic_events(300, seed=41, invalid_share=0.1)
    body = post(collector, events)
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
    assert row["dt"] == sample["event"]["timestamp"][:10] and row["hour"] == sample["event"]["timestamp"][11:13]

    invalid = [r for r in read(INVALID_PREFIX).to_pylist() if r["id"] in rejected]
    reasons = {e["id"]: e["reason"] for e in body["errors"]}
    assert all(r["reason"] == reasons[r["id"]] and json.loads(r["payload"])["id"] == r["id"] for r in invalid)


def test_latest_topic_holds_the_processed_events(
    lake_writer: None, collector: Collector, kafka_settings: Settings
) -> None:
    from kafka import KafkaConsumer, TopicPartition

    events = synthetic_events(50, seed=42)
    post(collector, events)
    wanted = {e["id"] for e in events}
    consumer = KafkaConsumer(bootstrap_servers=kafka_settings.kafka_bootstrap_servers, group_id=None)
    partitions = [TopicPartition(kafka_settings.latest_topic, p) for p in range(kafka_settings.topic_partitions)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 120
    while set(found) < wanted and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            for record in records:
                if record.key.decode() in wanted:
                    found[record.key.decode()] = json.loads(record.value)
    consumer.close()
    assert set(found) == wanted
    assert all(value["id"] == key and value["event_timestamp"] for key, value in found.items())


def test_a_resent_batch_lands_once(lake_writer: None, collector: Collector) -> None:
    events = synthetic_events(200, seed=43)
    post(collector, events)
    post(collector, events)  # e.g. the client retried after a 503
    wanted = {e["id"] for e in events}
    assert lake_ids(LAKE_PREFIX, wanted) == Counter(dict.fromkeys(wanted, 1))


def test_restarts_mid_stream_lose_and_repeat_nothing(lake_writer: None, collector: Collector) -> None:
    sent: list[str] = []
    done = threading.Event()

    def traffic() -> None:
        for batch in range(40):
            events = synthetic_events(100, seed=1000 + batch)
            post(collector, events)
            sent.extend(e["id"] for e in events)
            time.sleep(0.25)
        done.set()

    sender = threading.Thread(target=traffic)
    sender.start()
    time.sleep(2)
    spark.stop()  # graceful, as `make down` does: the running micro-batch finishes
    spark.start()
    time.sleep(2)
    # A crash: the whole job killed at once, possibly between writing files and committing them.
    os.killpg(spark.service().pid(), signal.SIGKILL)
    spark.start()
    sender.join()
    assert done.is_set()
    wanted = set(sent)
    assert len(wanted) == 4000
    assert lake_ids(LAKE_PREFIX, wanted, timeout_s=180) == Counter(dict.fromkeys(wanted, 1))
