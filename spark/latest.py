"""The latest topic: valid events of the raw topic, deduplicated by id within SPARK_DEDUPE_WINDOW and enriched, to
acme.clickstream.latest.events (key = id) every SPARK_TRIGGER, as Avro in Confluent's wire format: the schema in
schemas/ (contract.LATEST_VALUE_SCHEMA_FILE), registered under the topic's subject when the job starts, as Confluent's
serializers do. The real-time path does not wait for the lake's commits; a batch replayed after a crash may be sent
twice (Kafka's sink is at-least-once)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.avro.functions import to_avro
from pyspark.sql.streaming import StreamingQuery

import enrichment
import forgetting
import records
import wire_format
from checkpoints import clear_unfinished_writes
from pipeline.config import Config
from pipeline.schema_registry import RegistryClient, framed, pipeline_schemas
from topics import kafka_options, read_topic


def deduplicated(rows: DataFrame, window: str) -> DataFrame:
    # The watermark runs on the Kafka time (when the collector produced), not the client's clock: rows behind
    # the watermark are dropped by the deduplication, and client clocks can be far off.
    return rows.withWatermark("kafka_timestamp", window).dropDuplicatesWithinWatermark(["id"])


def latest_rows(
    spark: SparkSession, config: Config, event_schema: dict[str, Any], forgotten: frozenset[str] = frozenset()
) -> DataFrame:
    """The raw topic's valid events but the forgotten customers' (their hashes), once each within the window,
    enriched as the lake's rows are."""
    # One task per core rather than per Kafka partition: each task's Python round trip (the registry's check) is
    # a fixed cost of every batch.
    raw = read_topic(spark, config, config.kafka.raw_topic).coalesce(config.spark.shuffle_partitions)
    parsed = records.parse_raw_records(raw, event_schema, wire_format.registry_check(config))
    events = records.events_of(parsed)
    if forgotten:
        events = events.where(~forgetting.forgotten_rows(events.columns, forgotten))
    rows = deduplicated(events, config.spark.dedupe_window)
    return enrichment.enriched(rows, config.lake.ip_mode) if config.lake.enrichment else rows


def registered_schema(config: Config) -> tuple[int, str]:
    """The latest topic's Avro schema and its id in the registry, registered unless it is there (a schema the
    subject's compatibility level refuses raises, with the registry's reason)."""
    _, latest = pipeline_schemas(config.kafka)
    client = RegistryClient(config.registry.url, user_info=config.registry.user_info)
    schema_id = wire_format.patiently(lambda: client.register(latest.subject, latest.schema, latest.schema_type))
    return schema_id, latest.schema


def avro_values(rows: DataFrame, schema_id: int, schema: str) -> Column:
    """Each row as the schema's record in Confluent's wire format; a field the rows lack (the enrichment's, when it
    is off) is null."""
    fields = json.loads(schema)["fields"]
    present = set(rows.columns)
    record = F.struct(*[F.col(f["name"]) if f["name"] in present else _null(f).alias(f["name"]) for f in fields])
    return F.concat(F.lit(framed(schema_id, b"")), to_avro(record, schema))


#: The Spark type of a nullable Avro field's other branch (a timestamp's is a long with a logical type).
_SPARK_TYPES = {"string": "string", "boolean": "boolean", "int": "int", "long": "bigint", "double": "double"}


def _null(field: dict[str, Any]) -> Column:
    """A null of the field's type: an untyped null is a type Avro has no conversion for."""
    _, branch = field["type"]
    return F.lit(None).cast("timestamp" if isinstance(branch, dict) else _SPARK_TYPES[branch])


def start_latest_query(rows: DataFrame, config: Config, schema_id: int, schema: str) -> StreamingQuery:
    processed = rows.select(F.col("id").alias("key"), avro_values(rows, schema_id, schema).alias("value"))
    # A query's jobs run in the pool of the thread that started it: its own, so its tasks do not queue behind a
    # MERGE's (the FAIR scheduler).
    context = rows.sparkSession.sparkContext
    checkpoint = config.spark.latest_checkpoint or f"{config.spark.checkpoint.rstrip('/')}/latest"
    clear_unfinished_writes(rows.sparkSession, checkpoint)
    context.setLocalProperty("spark.scheduler.pool", "latest")
    try:
        return (
            processed.writeStream.queryName("latest")
            .format("kafka")
            .options(**kafka_options(config.kafka))
            .option("topic", config.kafka.latest_topic)
            .option("checkpointLocation", checkpoint)
            .outputMode("append")
            .trigger(processingTime=config.spark.trigger)
            .start()
        )
    finally:
        context.setLocalProperty("spark.scheduler.pool", None)


def stop_query(query: StreamingQuery, wait_s: float = 120) -> None:
    """Stop a query once its micro-batch under way has finished (within `wait_s`), so a batch is not cut."""
    deadline = time.monotonic() + wait_s
    while query.isActive and query.status["isTriggerActive"] and time.monotonic() < deadline:
        time.sleep(0.05)
    query.stop()


class LatestTopic:
    """The latest topic's query. Its plan holds the list of the forgotten it started with, so `make forget` starts
    it again (from its checkpoint) before any table answers."""

    def __init__(self, start: Callable[[], StreamingQuery]) -> None:
        self._start, self._lock = start, threading.Lock()
        self.query = start()

    def restart(self) -> None:
        with self._lock:
            stop_query(self.query)
            self.query = self._start()

    def active(self) -> bool:
        with self._lock:
            return self.query.isActive

    def stop(self) -> None:
        with self._lock:
            stop_query(self.query)
