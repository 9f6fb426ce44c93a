"""The lake writer: Kafka -> the lake's Delta Lake tables on S3 (exactly once per event id) and the latest topic.

Three streaming queries, each with its own checkpoint under --checkpoint:
  lake     acme.clickstream.raw.events, parsed (once per batch) with a schema derived from schemas/; its events,
           enriched (enrichment.py: user agent, bots, privacy-safe IPs and country, referrer and campaign), are
           upserted every --commit-interval into the Delta table s3a://<bucket>/clickstream-data (partitioned by
           the event's day): MERGE on (dt, id) inserts only ids the table lacks, so a resend of any age lands once
           (lake_tables.py). Its records no event can be made of go to the invalid table, with a reason.
  latest   the same topic, deduplicated by id within --dedupe-window, enriched, as JSON to
           acme.clickstream.latest.events (key = id) every --trigger: the real-time path does not wait for the
           lake's commits. A batch replayed after a crash may be sent twice (Kafka's sink is at-least-once).
  invalid  acme.clickstream.invalid.events with their reasons, upserted the same way into the Delta table
           s3a://<bucket>/clickstream-invalid (partitioned by the day received).
A thread recomputes, every --sessions-every-s, the visits of the customers with new events from the events table
into s3a://<bucket>/clickstream-sessions (sessions.py). The tables are compacted and vacuumed by the job itself
(lake_tables.Maintenance).

Spark and s3a settings (master, endpoint, credentials, jars) come from spark-submit or PYSPARK_SUBMIT_ARGS,
never from this file, so it runs unchanged on local[*] and on a cluster (`spark-submit --master spark://...`).
Pipeline settings are options, each defaulting to an environment variable (see --help).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

import enrichment
import lake_tables
import sessions
from chalicelib.contract import METADATA_FIELDS, is_int32
from chalicelib.settings import lake_url, setting

HERE = Path(__file__).resolve().parent
EVENT_SCHEMA_FILE = HERE.parent / "schemas" / "acme.clickstream.raw.events.json"


# --- schema ---------------------------------------------------------------------------------------------


def spark_type(prop: dict[str, Any]) -> T.DataType:
    """The Spark type of a JSON Schema property (the schema's own forms: object, string, integer, number)."""
    kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
    (kind,) = [k for k in kinds if k != "null"]
    if kind == "object":
        return T.StructType([T.StructField(name, spark_type(p)) for name, p in prop["properties"].items()])
    if kind == "integer":
        return T.IntegerType() if is_int32(prop) else T.LongType()
    return {"string": T.StringType(), "number": T.DoubleType(), "boolean": T.BooleanType()}[kind]


CORRUPT_RECORD = "_corrupt_record"


def raw_record_schema(event_schema: dict[str, Any]) -> T.StructType:
    """A raw-topic record: the event as schemas/ defines it, plus the collector's metadata object.

    A value whose text does not fit these types (not JSON, a string where a number goes, an integer out of
    the column's range) is kept whole in CORRUPT_RECORD instead of failing the batch.
    """
    event = spark_type(event_schema)
    collector = T.StructType([T.StructField(name, T.StringType()) for name in METADATA_FIELDS])
    return T.StructType(
        [*event.fields, T.StructField("collector", collector), T.StructField(CORRUPT_RECORD, T.StringType())]
    )


INVALID_RECORD_SCHEMA = T.StructType(
    [
        T.StructField("index", T.LongType()),
        # The problem's code (machine-readable: schema.required, lake.timestamp.instant, body.size...) and the
        # JSON path it is at; records of an older collector have neither.
        T.StructField("code", T.StringType()),
        T.StructField("path", T.StringType()),
        T.StructField("reason", T.StringType()),
        # Whatever the client sent, kept as JSON text (it did not match the schema, so it has no fixed type).
        T.StructField("payload", T.StringType()),
        # Set instead of index/payload when the whole request was refused (malformed, too large...), or when
        # a record of the raw topic could not be filed as an event: its value as text.
        T.StructField("status_code", T.IntegerType()),
        T.StructField("body", T.StringType()),
        T.StructField("body_bytes", T.LongType()),
        T.StructField("collector", T.StructType([T.StructField(n, T.StringType()) for n in METADATA_FIELDS])),
        T.StructField(CORRUPT_RECORD, T.StringType()),
    ]
)
#: How much of an unfileable record's value the invalid table keeps (as the collector keeps of a refused body).
KEPT_VALUE_CHARS = 8192


# --- options --------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    bucket = setting("LAKE_BUCKET")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap-servers", default=setting("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--raw-topic", default=setting("KAFKA_RAW_TOPIC"))
    parser.add_argument("--invalid-topic", default=setting("KAFKA_INVALID_TOPIC"))
    parser.add_argument("--latest-topic", default=setting("KAFKA_LATEST_TOPIC"))
    parser.add_argument("--lake-path", default=lake_url("clickstream-data"))
    parser.add_argument("--invalid-path", default=lake_url("clickstream-invalid"))
    parser.add_argument("--sessions-path", default=lake_url("clickstream-sessions"))
    parser.add_argument(
        "--checkpoint", default=os.environ.get("SPARK_CHECKPOINT") or f"s3a://{bucket}/_checkpoints/lake-writer"
    )
    parser.add_argument(
        "--trigger", default=os.environ.get("SPARK_TRIGGER") or "2 seconds", help="the latest topic's interval"
    )
    parser.add_argument(
        "--commit-interval",
        default=os.environ.get("LAKE_COMMIT_INTERVAL") or "30 seconds",
        help="how often the lake's tables commit: fresher rows against fewer, larger files",
    )
    parser.add_argument(
        "--compact-every-s",
        type=float,
        default=float(os.environ.get("LAKE_COMPACT_INTERVAL_S") or 600),
        help="how often each table compacts the days it wrote into",
    )
    parser.add_argument(
        "--vacuum-every-s", type=float, default=float(os.environ.get("LAKE_VACUUM_INTERVAL_S") or 86400)
    )
    parser.add_argument(
        "--maintenance-request",
        default=os.environ.get("LAKE_MAINTENANCE_REQUEST"),
        help="a file `make compact` writes to ask for a compaction and vacuum of every table now",
    )
    parser.add_argument(
        "--event-schema", default=os.environ.get("LAKE_EVENT_SCHEMA") or str(EVENT_SCHEMA_FILE), help="JSON Schema"
    )
    parser.add_argument(
        "--ip-mode",
        default=os.environ.get("IP_MODE") or "truncate",
        choices=enrichment.IP_MODES,
        help="how the lake keeps client IPs: truncate (IPv4 /24, IPv6 /48), full, or drop",
    )
    parser.add_argument(
        "--enrichment",
        default=os.environ.get("LAKE_ENRICHMENT") or "on",
        choices=("on", "off"),
        help="off: rows as collected, without the enrichment's columns and with IPs as sent (to measure its cost)",
    )
    parser.add_argument(
        "--sessions",
        default=os.environ.get("LAKE_SESSIONS") or "on",
        choices=("on", "off"),
        help="off: the sessions table is not kept up (it needs the enrichment's columns: off with it too)",
    )
    parser.add_argument(
        "--session-gap-minutes",
        type=float,
        default=float(os.environ.get("SESSION_GAP_MINUTES") or sessions.DEFAULT_GAP_MINUTES),
        help="a customer's next event after this much silence starts a new session",
    )
    parser.add_argument(
        "--sessions-every-s",
        type=float,
        default=float(os.environ.get("SESSIONS_INTERVAL_S") or 30),
        help="the pause after each round of recomputing the sessions of customers with new events (as the commits)",
    )
    parser.add_argument(
        "--dedupe-window",
        default=os.environ.get("SPARK_DEDUPE_WINDOW") or "1 hour",
        help="how long the latest topic remembers an event id, on the Kafka record's time (the lake: forever)",
    )
    parser.add_argument(
        "--starting-offsets",
        default=os.environ.get("SPARK_STARTING_OFFSETS") or "earliest",
        help="where a new checkpoint starts reading; earliest keeps what was accepted before the job started",
    )
    parser.add_argument(
        "--fail-on-data-loss",
        default=os.environ.get("SPARK_FAIL_ON_DATA_LOSS") or "true",
        help="true: stop when offsets not yet read are gone (retention, a recreated topic); false: skip them",
    )
    parser.add_argument(
        "--max-offsets-per-trigger", default=os.environ.get("SPARK_MAX_OFFSETS_PER_TRIGGER") or "100000"
    )
    parser.add_argument(
        "--status-file", default=os.environ.get("SPARK_STATUS_FILE"), help="where the last progress is kept"
    )
    return parser.parse_args(argv)


# --- plan -----------------------------------------------------------------------------------------------


def kafka_options(bootstrap_servers: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The Kafka source's and sink's client options: the servers, and for KAFKA_SECURITY_PROTOCOL=SASL_SSL the
    SASL mechanism, user and password (KAFKA_SASL_USERNAME/PASSWORD, from the environment: a password on a command
    line is visible to every process) and the CA (KAFKA_SSL_CAFILE, PEM; empty: the JVM's CAs)."""
    env = dict(os.environ if environ is None else environ)
    options = {"kafka.bootstrap.servers": bootstrap_servers}
    protocol = setting("KAFKA_SECURITY_PROTOCOL", env).strip().upper()
    if protocol == "PLAINTEXT":
        return options
    options["kafka.security.protocol"] = protocol
    cafile = setting("KAFKA_SSL_CAFILE", env)
    if protocol in ("SSL", "SASL_SSL") and cafile:
        options.update({"kafka.ssl.truststore.type": "PEM", "kafka.ssl.truststore.location": cafile})
    if protocol.startswith("SASL_"):
        mechanism = setting("KAFKA_SASL_MECHANISM", env).strip().upper()
        if not mechanism.startswith("SCRAM-") and mechanism != "PLAIN":
            raise ValueError(f"the lake writer speaks SASL SCRAM and PLAIN, not {mechanism}")
        module = "scram.ScramLoginModule" if mechanism.startswith("SCRAM-") else "plain.PlainLoginModule"
        username, password = (json.dumps(setting(name, env)) for name in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"))
        options["kafka.sasl.mechanism"] = mechanism
        options["kafka.sasl.jaas.config"] = (
            f"org.apache.kafka.common.security.{module} required username={username} password={password};"
        )
    return options


def read_topic(spark: SparkSession, args: argparse.Namespace, topic: str) -> DataFrame:
    return (
        spark.readStream.format("kafka")
        .options(**kafka_options(args.bootstrap_servers))
        .option("subscribe", topic)
        .option("startingOffsets", args.starting_offsets)
        .option("failOnDataLoss", args.fail_on_data_loss)
        .option("maxOffsetsPerTrigger", args.max_offsets_per_trigger)
        .load()
    )


def _kafka_columns() -> list[Column]:
    return [
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.current_timestamp().alias("ingested_timestamp"),
    ]


KAFKA_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "ingested_timestamp")


def _date_partitions(df: DataFrame, moment: Column) -> DataFrame:
    return df.withColumn("dt", F.date_format(moment, "yyyy-MM-dd"))


def _text(column: str) -> Column:
    """A Kafka key or value as text. Casting bytes to a string keeps invalid UTF-8, which Parquet readers then
    refuse to decode (pyarrow raises): such bytes become U+FFFD, as the collector's decoding makes them."""
    return F.make_valid_utf8(F.col(column).cast("string"))


def _with_first_problem(rows: DataFrame, checks: list[tuple[Column, str, str, str]]) -> DataFrame:
    """`rows` with the code, path and reason of the first check (failed, code, path, reason) that holds, or nulls:
    a row's one problem."""
    for position, name in ((1, "code"), (2, "path"), (3, "reason")):
        # A CASE chain: element_at(array, first_index) would be shorter, but Spark answers its last element for
        # a null index.
        value = F.lit(None).cast("string")
        for check in reversed(checks):
            value = F.when(check[0], F.lit(check[position])).otherwise(value)
        rows = rows.withColumn(name, value)
    return rows


def parse_raw_records(records: DataFrame, event_schema: dict[str, Any]) -> DataFrame:
    """Raw-topic records (Kafka's columns) as rows with the event's columns and `reason`: null for a row the lake
    can hold, else why it cannot. Never raises on data: whatever bytes a producer wrote come out as one row.

    Works on a stream and on a static frame alike (tests/spark checks the collector agrees with it).
    """
    value = _text("value")
    record = F.from_json(value, raw_record_schema(event_schema), {"columnNameOfCorruptRecord": CORRUPT_RECORD})
    parsed = records.select(record.alias("r"), value.alias("value_text"), "key", *_kafka_columns())
    details = event_schema["properties"]["event"]["properties"]
    top = [name for name in event_schema["properties"] if name not in ("id", "event")]
    rows = parsed.select(
        # The collector keys each record by event id: a value that cannot be parsed still has its id.
        F.coalesce(F.col("r.id"), _text("key")).alias("id"),
        *[F.col(f"r.{name}").alias(name) for name in top],
        *[F.col(f"r.event.{name}").alias(name) for name in details if name != "timestamp"],
        # try_: a string that names no instant (31 April) is null here, and filed as invalid below.
        F.try_to_timestamp(F.col("r.event.timestamp")).alias("event_timestamp"),
        *[F.col(f"r.collector.{name}").alias(name) for name in METADATA_FIELDS if name != "user_agent"],
        F.col("r.collector.user_agent").alias("collector_user_agent"),
        *KAFKA_COLUMNS,
        F.col("r.event.timestamp").alias("event_timestamp_text"),
        F.col(f"r.{CORRUPT_RECORD}").alias(CORRUPT_RECORD),
        "value_text",
    ).withColumn("received_at", F.try_to_timestamp("received_at"))
    required = [n for n in event_schema["required"] if n != "event"]
    required_details = [n for n in event_schema["properties"]["event"]["required"] if n != "timestamp"]
    stamp = "$.event.timestamp"
    checks = [
        (F.col("value_text").isNull() | (F.length("value_text") == 0), "record.empty", "$", "record has no value"),
        (
            F.col(CORRUPT_RECORD).isNotNull(),
            "record.shape",
            "$",
            "record is not a JSON event with the schema's types",
        ),
        *[(F.col(n).isNull(), "record.required", f"$.{n}", f"$.{n}: missing") for n in required],
        *[(F.col(n).isNull(), "record.required", f"$.event.{n}", f"$.event.{n}: missing") for n in required_details],
        (F.col("event_timestamp_text").isNull(), "record.required", stamp, f"{stamp}: missing"),
        (F.col("event_timestamp").isNull(), "lake.timestamp.instant", stamp, f"{stamp}: not a real instant"),
        # Spark counts a year 0; Python, pyarrow's readers and the collector start at year 1.
        (F.year("event_timestamp") < 1, "lake.timestamp.instant", stamp, f"{stamp}: before year 1"),
    ]
    rows = _with_first_problem(rows, checks)
    return _date_partitions(rows, F.coalesce("event_timestamp", "kafka_timestamp"))


def events_of(parsed: DataFrame) -> DataFrame:
    """The parsed raw records that are valid events, as the events table's columns (before enrichment)."""
    rows = parsed.where(F.col("reason").isNull())
    return rows.drop("code", "path", "reason", "event_timestamp_text", CORRUPT_RECORD, "value_text")


def valid_events(spark: SparkSession, args: argparse.Namespace, event_schema: dict[str, Any]) -> DataFrame:
    """Valid events, one row each, flattened (duplicates stay: the lake's MERGE and the latest query drop them)."""
    return events_of(parse_raw_records(read_topic(spark, args, args.raw_topic), event_schema))


def deduplicated(rows: DataFrame, args: argparse.Namespace) -> DataFrame:
    # The watermark runs on the Kafka time (when the collector produced), not the client's clock: rows behind
    # the watermark are dropped by the deduplication, and client clocks can be far off.
    return rows.withWatermark("kafka_timestamp", args.dedupe_window).dropDuplicatesWithinWatermark(["id"])


def _invalid_columns(rows: DataFrame) -> DataFrame:
    """The invalid table's columns, in order, from rows that have at least id and reason."""
    present = set(rows.columns)
    names = [
        "id",
        *[f.name for f in INVALID_RECORD_SCHEMA.fields if f.name not in ("collector", CORRUPT_RECORD)],
        *METADATA_FIELDS,
        *KAFKA_COLUMNS,
        "dt",
    ]
    types = {f.name: f.dataType for f in INVALID_RECORD_SCHEMA.fields} | {"received_at": T.TimestampType()}
    return rows.select(
        *[F.col(n) if n in present else F.lit(None).cast(types.get(n, T.StringType())).alias(n) for n in names]
    )


def unfileable_of(parsed: DataFrame) -> DataFrame:
    """The parsed raw records the lake cannot hold (any producer's: not JSON, the wrong shape, an impossible
    timestamp), as invalid rows with their reason, value and Kafka position."""
    rows = parsed.where(F.col("reason").isNotNull()).select(
        "id",
        "code",
        "path",
        "reason",
        F.substring("value_text", 1, KEPT_VALUE_CHARS).alias("body"),
        F.length("value_text").cast("long").alias("body_bytes"),
        *[n for n in METADATA_FIELDS if n != "user_agent"],
        F.col("collector_user_agent").alias("user_agent"),
        *KAFKA_COLUMNS,
    )
    return _invalid_columns(_date_partitions(rows, F.coalesce("received_at", "kafka_timestamp")))


#: What the invalid table keeps of a request holds its addresses too.
SCRUBBED_INVALID_COLUMNS = ("source_ip", "payload", "body")


def invalid_events(spark: SparkSession, args: argparse.Namespace) -> DataFrame:
    """Rejected events and refused requests, with their reasons."""
    value = _text("value")
    record = F.from_json(value, INVALID_RECORD_SCHEMA, {"columnNameOfCorruptRecord": CORRUPT_RECORD}).alias("r")
    parsed = read_topic(spark, args, args.invalid_topic).select(
        record, value.alias("value_text"), _text("key").alias("id"), *_kafka_columns()
    )
    unreadable = F.col("value_text").isNull() | F.col(f"r.{CORRUPT_RECORD}").isNotNull() | F.col("r.reason").isNull()
    rows = parsed.select(
        "id",
        # A record another producer wrote to the invalid topic is kept too, as text, with a reason of ours.
        F.when(unreadable, F.lit("record is not an invalid-event record")).otherwise(F.col("r.reason")).alias("reason"),
        F.when(unreadable, F.lit("record.shape")).otherwise(F.col("r.code")).alias("code"),
        F.when(unreadable, F.lit("$")).otherwise(F.col("r.path")).alias("path"),
        *[
            F.col(f"r.{f.name}").alias(f.name)
            for f in INVALID_RECORD_SCHEMA.fields
            if f.name not in ("collector", "code", "path", "reason", "body", "body_bytes", CORRUPT_RECORD)
        ],
        F.when(unreadable, F.substring("value_text", 1, KEPT_VALUE_CHARS)).otherwise(F.col("r.body")).alias("body"),
        F.when(unreadable, F.length("value_text").cast("long")).otherwise(F.col("r.body_bytes")).alias("body_bytes"),
        *[F.col(f"r.collector.{name}").alias(name) for name in METADATA_FIELDS],
        *KAFKA_COLUMNS,
    ).withColumn("received_at", F.try_to_timestamp("received_at"))
    return _invalid_columns(_date_partitions(rows, F.coalesce("received_at", "kafka_timestamp")))


def _table(spark: SparkSession, path: str, schema: T.StructType, args: argparse.Namespace) -> lake_tables.Maintenance:
    """The Delta table at `path` (created unless it exists) and its maintenance, started."""
    lake_tables.ensure_table(spark, path, schema)
    maintenance = lake_tables.Maintenance(
        spark, path, args.compact_every_s, args.vacuum_every_s, args.maintenance_request
    )
    maintenance.start()
    return maintenance


def table_rows(parsed: DataFrame, ip_mode: str, enrich: bool = True) -> tuple[DataFrame, DataFrame]:
    """The events table's rows (enriched) and the invalid table's rows of parsed raw-topic records."""
    events, unfileable = events_of(parsed), unfileable_of(parsed)
    if not enrich:
        return events, unfileable
    return enrichment.enriched(events, ip_mode), enrichment.scrubbed(unfileable, ip_mode, SCRUBBED_INVALID_COLUMNS)


class RawRecordsWriter:
    """The lake query's foreachBatch: a batch of raw records is parsed once; its events are upserted into the
    events table, and the records no event can be made of into the invalid table."""

    def __init__(
        self, events: lake_tables.TableWriter, unfileable: lake_tables.TableWriter, event_schema: dict, ip_mode: str,
        enrich: bool,
    ) -> None:  # fmt: skip
        self.events, self.unfileable = events, unfileable
        self.event_schema, self.ip_mode, self.enrich = event_schema, ip_mode, enrich

    def started(self, query_id: str) -> None:
        self.events.started(query_id)
        self.unfileable.started(query_id)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        # Both tables' rows come from one read and parse of the batch, cached, and cached before either table uses
        # it: tasks of two branches computing one partition at the same time would each read and parse it.
        parsed = parse_raw_records(batch, self.event_schema).persist()
        parsed.count()
        try:
            events, unfileable = table_rows(parsed, self.ip_mode, self.enrich)
            self.events(events, batch_id)
            self.unfileable(unfileable, batch_id)
        finally:
            parsed.unpersist()


def _start(df: DataFrame, name: str, writer: Any, args: argparse.Namespace, checkpoint: str | None = None) -> Any:
    query = (
        df.writeStream.queryName(name)
        .foreachBatch(writer)
        .option("checkpointLocation", f"{args.checkpoint.rstrip('/')}/{checkpoint or name}")
        .trigger(processingTime=args.commit_interval)
        .start()
    )
    writer.started(str(query.id))
    return query


def table_queries(spark: SparkSession, args: argparse.Namespace, event_schema: dict) -> list[StreamingQuery]:
    """The lake query (the raw topic into both tables) and the invalid query (the invalid topic into the invalid
    table), each committing every --commit-interval (lake_tables.py); the sessions table kept up from the events
    table by a thread (sessions.py). One lock per table keeps their writes and the table's compaction in turn."""
    enrich = args.enrichment == "on"
    raw = read_topic(spark, args, args.raw_topic)
    invalid = invalid_events(spark, args)
    if enrich:
        invalid = enrichment.scrubbed(invalid, args.ip_mode, SCRUBBED_INVALID_COLUMNS)
    events, _ = table_rows(parse_raw_records(raw, event_schema), args.ip_mode, enrich)
    events_table = _table(spark, args.lake_path, events.schema, args)
    invalid_table = _table(spark, args.invalid_path, invalid.schema, args)
    # Created (and compacted) even when not kept up, so every table a reader or `make compact` names exists.
    sessions_table = _table(spark, args.sessions_path, sessions.empty_sessions(events).schema, args)
    if enrich and args.sessions == "on":
        sessions.enable_change_feed(spark, args.lake_path)
        sessions.SessionsUpdater(
            spark, args.sessions_path, args.lake_path, sessions_table, args.session_gap_minutes, args.sessions_every_s
        ).start()
    lake = RawRecordsWriter(
        lake_tables.TableWriter(args.lake_path, events_table),
        lake_tables.TableWriter(args.invalid_path, invalid_table),
        event_schema,
        args.ip_mode,
        enrich,
    )
    invalid_writer = lake_tables.TableWriter(args.invalid_path, invalid_table)
    return [
        _start(raw, "lake", lake, args),
        # Its own checkpoint folder since the raw topic's unfileable records moved to the lake query: a checkpoint
        # of the earlier two-source query cannot be resumed; the new one re-reads the invalid topic from its
        # first offset, and the MERGE keeps each row once.
        _start(invalid, "invalid", invalid_writer, args, checkpoint="invalid-topic"),
    ]


def latest_query(df: DataFrame, args: argparse.Namespace) -> StreamingQuery:
    processed = df.select(
        F.col("id").alias("key"),
        F.to_json(F.struct(*[c for c in df.columns if c != "dt"])).alias("value"),
    )
    # A query's jobs run in the pool of the thread that started it.
    context = df.sparkSession.sparkContext
    context.setLocalProperty("spark.scheduler.pool", "latest")
    try:
        return (
            processed.writeStream.queryName("latest")
            .format("kafka")
            .options(**kafka_options(args.bootstrap_servers))
            .option("topic", args.latest_topic)
            .option("checkpointLocation", f"{args.checkpoint.rstrip('/')}/latest")
            .outputMode("append")
            .trigger(processingTime=args.trigger)
            .start()
        )
    finally:
        context.setLocalProperty("spark.scheduler.pool", None)


# --- run ------------------------------------------------------------------------------------------------


def _kafka_offsets(text: str | None) -> dict[tuple[str, str], int]:
    """A Kafka source's offsets ({"topic": {"partition": offset}}) by (topic, partition); {} for another source
    (the latest query reads the lake: {"logOffset": n}) or no offsets yet."""
    try:
        document = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(document, dict):
        return {}
    return {
        (topic, partition): int(offset)
        for topic, parts in document.items()
        if isinstance(parts, dict)
        for partition, offset in parts.items()
    }


class ProgressLog(StreamingQueryListener):
    """One JSON line per micro-batch in the log, and the last progress of each query in the status file."""

    def __init__(self, status_file: str | None) -> None:
        self.status_file = Path(status_file) if status_file else None
        self.last: dict[str, Any] = {}
        self.lock = threading.Lock()

    def onQueryStarted(self, event: Any) -> None:
        print(json.dumps({"query_started": event.name, "at": time.time()}), flush=True)

    def onQueryProgress(self, event: Any) -> None:
        progress = event.progress
        processed = lag = 0
        for source in progress.sources:
            end, latest = _kafka_offsets(source.endOffset), _kafka_offsets(source.latestOffset)
            processed += sum(end.values())
            lag += sum(offset - end.get(partition, 0) for partition, offset in latest.items())
        line = {
            "query": progress.name,
            "batch": progress.batchId,
            "rows": progress.numInputRows,
            "rows_per_s": round(progress.processedRowsPerSecond or 0, 1),
            "batch_ms": progress.durationMs.get("triggerExecution"),
            # Where a slow batch spent its time (addBatch: reading and writing; walCommit/commitOffsets: the
            # checkpoint's offset and commit logs).
            "phases_ms": {k: v for k, v in progress.durationMs.items() if k != "triggerExecution" and v >= 50},
            "lag": lag,
            # Offsets read so far, summed over partitions: the topic's end offsets once all is processed.
            "offsets": processed,
            "at": progress.timestamp,
        }
        print(json.dumps(line), flush=True)
        if self.status_file is not None:
            with self.lock:
                self.last[progress.name] = line
                tmp = self.status_file.with_suffix(".tmp")
                tmp.write_text(json.dumps(self.last, indent=2))
                tmp.replace(self.status_file)

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        print(json.dumps({"query_terminated": str(event.id), "exception": event.exception}), flush=True)


def session(app_name: str) -> SparkSession:
    """The tables' session (lake_tables.session) with the rows' semantics, which live here, not in deployment:
    dt in UTC; INT64 timestamps that every Parquet reader understands (Spark's default is the legacy INT96). FAIR
    scheduling: the latest topic's query has a pool of its own, so its tasks do not queue behind a MERGE's."""
    spark = lake_tables.session(app_name, {"spark.scheduler.mode": "FAIR"})
    # The enrichment's UDFs run in Python workers, which import their module: shipped to every executor.
    spark.sparkContext.addPyFile(str(HERE / "enrichment.py"))
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    return spark


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    event_schema = json.loads(Path(args.event_schema).read_text())
    spark = session("acme-clickstream-lake-writer")
    # RocksDB state with a changelog per batch.
    spark.conf.set(
        "spark.sql.streaming.stateStore.providerClass",
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
    )
    spark.conf.set("spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled", "true")
    spark.streams.addListener(ProgressLog(args.status_file))

    latest = deduplicated(valid_events(spark, args, event_schema), args)
    if args.enrichment == "on":
        latest = enrichment.enriched(latest, args.ip_mode)
    queries = [*table_queries(spark, args, event_schema), latest_query(latest, args)]

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set() and all(q.isActive for q in queries):
        stop.wait(1.0)
    failed = [q for q in queries if not q.isActive and q.exception()]
    # A graceful stop lets a running micro-batch finish, so it leaves no uncommitted files behind.
    for query in queries:
        deadline = time.monotonic() + 120
        while query.isActive and query.status["isTriggerActive"] and time.monotonic() < deadline:
            time.sleep(0.2)
        query.stop()
    for query in failed:
        print(f"query {query.name} failed: {query.exception()}", file=sys.stderr, flush=True)
    spark.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
