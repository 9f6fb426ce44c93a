"""The latest topic: valid events of the raw topic, deduplicated by id within SPARK_DEDUPE_WINDOW and enriched, as JSON
to acme.clickstream.latest.events (key = id) every SPARK_TRIGGER. The real-time path does not wait for the lake's
commits; a batch replayed after a crash may be sent twice (Kafka's sink is at-least-once)."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

import enrichment
import records
from pipeline.config import Config
from pipeline.contract import PARTITION
from topics import kafka_options, read_topic


def deduplicated(rows: DataFrame, window: str) -> DataFrame:
    # The watermark runs on the Kafka time (when the collector produced), not the client's clock: rows behind
    # the watermark are dropped by the deduplication, and client clocks can be far off.
    return rows.withWatermark("kafka_timestamp", window).dropDuplicatesWithinWatermark(["id"])


def latest_rows(spark: SparkSession, config: Config, event_schema: dict[str, Any]) -> DataFrame:
    """The raw topic's valid events, once each within the window, enriched as the lake's rows are."""
    parsed = records.parse_raw_records(read_topic(spark, config, config.kafka.raw_topic), event_schema)
    rows = deduplicated(records.events_of(parsed), config.spark.dedupe_window)
    return enrichment.enriched(rows, config.lake.ip_mode) if config.lake.enrichment else rows


def start_latest_query(rows: DataFrame, config: Config) -> StreamingQuery:
    processed = rows.select(
        F.col("id").alias("key"),
        F.to_json(F.struct(*[c for c in rows.columns if c != PARTITION])).alias("value"),
    )
    # A query's jobs run in the pool of the thread that started it: its own, so its tasks do not queue behind a
    # MERGE's (the FAIR scheduler).
    context = rows.sparkSession.sparkContext
    context.setLocalProperty("spark.scheduler.pool", "latest")
    try:
        return (
            processed.writeStream.queryName("latest")
            .format("kafka")
            .options(**kafka_options(config.kafka))
            .option("topic", config.kafka.latest_topic)
            .option("checkpointLocation", f"{config.spark.checkpoint.rstrip('/')}/latest")
            .outputMode("append")
            .trigger(processingTime=config.spark.trigger)
            .start()
        )
    finally:
        context.setLocalProperty("spark.scheduler.pool", None)
