"""From topic records to the lake's rows: the schema derived from schemas/, and the parsing of the raw and invalid
topics' records. Pure transforms on DataFrames (a stream's or a static frame's alike); never raise on data: whatever
bytes a producer wrote come out as one row, an event or an invalid row with a problem code (pipeline/problems.py).
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

import enrichment
import wire_format
from pipeline import problems
from pipeline.contract import KAFKA_COLUMNS, METADATA_FIELDS, PARTITION, SCHEMA_ID_COLUMN, is_int32


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
        # The problem's code (pipeline/problems.py) and the JSON path it is at; an older collector's have neither.
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
#: What the invalid table keeps of a request holds its addresses too.
SCRUBBED_INVALID_COLUMNS = ("source_ip", "payload", "body")


def _kafka_columns() -> list[Column]:
    return [
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.current_timestamp().alias("ingested_timestamp"),
    ]


def _date_partitions(df: DataFrame, moment: Column) -> DataFrame:
    return df.withColumn(PARTITION, F.date_format(moment, "yyyy-MM-dd"))


def _text(column: str | Column) -> Column:
    """A Kafka key or value as text. Casting bytes to a string keeps invalid UTF-8, which Parquet readers then
    refuse to decode (pyarrow raises): such bytes become U+FFFD, as the collector's decoding makes them."""
    return F.make_valid_utf8((F.col(column) if isinstance(column, str) else column).cast("string"))


Check = tuple[Column, problems.Code, str, str | Column]


def _with_first_problem(rows: DataFrame, checks: list[Check]) -> DataFrame:
    """`rows` with the code, path and reason of the first check (failed, code, path, reason) that holds, or nulls:
    a row's one problem."""
    for position, name in ((1, "code"), (2, "path"), (3, "reason")):
        # A CASE chain: element_at(array, first_index) would be shorter, but Spark answers its last element for
        # a null index.
        value = F.lit(None).cast("string")
        for check in reversed(checks):
            said = check[position]
            value = F.when(check[0], said if isinstance(said, Column) else F.lit(str(said))).otherwise(value)
        rows = rows.withColumn(name, value)
    return rows


def parse_raw_records(records: DataFrame, event_schema: dict[str, Any], known_schema: Any = None) -> DataFrame:
    """Raw-topic records (Kafka's columns) as rows with the event's columns and `reason`: null for a row the lake
    can hold, else why it cannot (with its `code` and `path`). A record in Confluent's wire format keeps its schema
    id, which `known_schema` (wire_format.known_schema: the registry's answer) must know; plain JSON is read too.

    Works on a stream and on a static frame alike (tests/spark checks the collector agrees with it).
    """
    value = _text(wire_format.payload(F.col("value")))
    record = F.from_json(value, raw_record_schema(event_schema), {"columnNameOfCorruptRecord": CORRUPT_RECORD})
    schema_id = wire_format.schema_id(F.col("value"))
    known = F.lit(True) if known_schema is None else known_schema(schema_id)
    parsed = records.select(
        record.alias("r"),
        value.alias("value_text"),
        "key",
        *_kafka_columns(),
        # Registries give 32-bit ids; a longer one is no registry's (filed below as unknown).
        schema_id.alias("schema_id_read"),
        schema_id.try_cast(T.IntegerType()).alias(SCHEMA_ID_COLUMN),
        wire_format.cut_short(F.col("value")).alias("cut_short"),
        (schema_id.isNull() | known).alias("known_schema"),
    )
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
        SCHEMA_ID_COLUMN,
        F.col("r.event.timestamp").alias("event_timestamp_text"),
        F.col(f"r.{CORRUPT_RECORD}").alias(CORRUPT_RECORD),
        "value_text",
        "cut_short",
        "known_schema",
        "schema_id_read",
    ).withColumn("received_at", F.try_to_timestamp("received_at"))
    required = [n for n in event_schema["required"] if n != "event"]
    required_details = [n for n in event_schema["properties"]["event"]["required"] if n != "timestamp"]
    stamp = "$.event.timestamp"
    missing = problems.RECORD_REQUIRED
    empty = F.col("value_text").isNull() | (F.length("value_text") == 0)
    not_an_event = "record is not a JSON event with the schema's types"
    unknown_id = F.format_string("schema id %d is not one the schema registry has for the raw topic", "schema_id_read")
    checks: list[Check] = [
        (F.col("cut_short"), problems.RECORD_WIRE_FORMAT, "$", "record has the wire format's magic byte, no schema id"),
        (~F.col("known_schema"), problems.RECORD_SCHEMA_ID, "$", unknown_id),
        (empty, problems.RECORD_EMPTY, "$", "record has no value"),
        (F.col(CORRUPT_RECORD).isNotNull(), problems.RECORD_SHAPE, "$", not_an_event),
        *[(F.col(n).isNull(), missing, f"$.{n}", f"$.{n}: missing") for n in required],
        *[(F.col(n).isNull(), missing, f"$.event.{n}", f"$.event.{n}: missing") for n in required_details],
        (F.col("event_timestamp_text").isNull(), missing, stamp, f"{stamp}: missing"),
        (F.col("event_timestamp").isNull(), problems.LAKE_TIMESTAMP_INSTANT, stamp, f"{stamp}: not a real instant"),
        # Spark counts a year 0; Python, pyarrow's readers and the collector start at year 1.
        (F.year("event_timestamp") < 1, problems.LAKE_TIMESTAMP_INSTANT, stamp, f"{stamp}: before year 1"),
    ]  # fmt: skip
    rows = _with_first_problem(rows, checks).drop("cut_short", "known_schema", "schema_id_read")
    return _date_partitions(rows, F.coalesce("event_timestamp", "kafka_timestamp"))


def events_of(parsed: DataFrame) -> DataFrame:
    """The parsed raw records that are valid events, as the events table's columns (before enrichment); duplicates
    stay (the lake's MERGE and the latest query drop them)."""
    rows = parsed.where(F.col("reason").isNull())
    return rows.drop("code", "path", "reason", "event_timestamp_text", CORRUPT_RECORD, "value_text")


def _invalid_columns(rows: DataFrame) -> DataFrame:
    """The invalid table's columns, in order, from rows that have at least id and reason."""
    present = set(rows.columns)
    names = [
        "id",
        *[f.name for f in INVALID_RECORD_SCHEMA.fields if f.name not in ("collector", CORRUPT_RECORD)],
        *METADATA_FIELDS,
        *KAFKA_COLUMNS,
        PARTITION,
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


def parse_invalid_records(records: DataFrame) -> DataFrame:
    """Invalid-topic records (rejected events and refused requests, with their reasons) as invalid rows. A record
    another producer wrote there is kept too, as text, with a problem of ours."""
    value = _text("value")
    record = F.from_json(value, INVALID_RECORD_SCHEMA, {"columnNameOfCorruptRecord": CORRUPT_RECORD}).alias("r")
    parsed = records.select(record, value.alias("value_text"), _text("key").alias("id"), *_kafka_columns())
    unreadable = F.col("value_text").isNull() | F.col(f"r.{CORRUPT_RECORD}").isNotNull() | F.col("r.reason").isNull()
    own = ("collector", "code", "path", "reason", "body", "body_bytes", CORRUPT_RECORD)
    rows = parsed.select(
        "id",
        F.when(unreadable, F.lit("record is not an invalid-event record")).otherwise(F.col("r.reason")).alias("reason"),
        F.when(unreadable, F.lit(problems.RECORD_SHAPE.code)).otherwise(F.col("r.code")).alias("code"),
        F.when(unreadable, F.lit("$")).otherwise(F.col("r.path")).alias("path"),
        *[F.col(f"r.{f.name}").alias(f.name) for f in INVALID_RECORD_SCHEMA.fields if f.name not in own],
        F.when(unreadable, F.substring("value_text", 1, KEPT_VALUE_CHARS)).otherwise(F.col("r.body")).alias("body"),
        F.when(unreadable, F.length("value_text").cast("long")).otherwise(F.col("r.body_bytes")).alias("body_bytes"),
        *[F.col(f"r.collector.{name}").alias(name) for name in METADATA_FIELDS],
        *KAFKA_COLUMNS,
    ).withColumn("received_at", F.try_to_timestamp("received_at"))
    return _invalid_columns(_date_partitions(rows, F.coalesce("received_at", "kafka_timestamp")))


def record_key(rows: DataFrame) -> Column:
    """What makes two records the same: their id (an event's, or an invalid event's), else their Kafka position (a
    record no producer keyed is one of its own)."""
    position = F.concat_ws("/", "kafka_topic", "kafka_partition", "kafka_offset")
    key = F.coalesce(F.col("id"), position)
    # A raw-topic record no row of the events table can be made of is not the same as an event of its id.
    return (
        F.concat_ws(":", F.when(F.col("reason").isNull(), "e").otherwise("u"), key) if "reason" in rows.columns else key
    )


def first_arrivals(rows: DataFrame, window: str) -> DataFrame:
    """A stream's rows without the records seen in the last `window` of processing time (the stream's state, in its
    checkpoint, so a restart forgets nothing). On processing time, not Kafka's or the client's: no row is ever too
    late to be kept, and a rebuild from the topics' first offsets sees every record within one window."""
    keyed = rows.withColumn("_record_key", record_key(rows)).withColumn("_seen_at", F.current_timestamp())
    first = keyed.withWatermark("_seen_at", window).dropDuplicatesWithinWatermark(["_record_key"])
    return first.drop("_record_key", "_seen_at")


def table_rows(parsed: DataFrame, ip_mode: str, enrich: bool = True) -> tuple[DataFrame, DataFrame]:
    """The events table's rows (enriched) and the invalid table's rows of parsed raw-topic records."""
    events, unfileable = events_of(parsed), unfileable_of(parsed)
    if not enrich:
        return events, unfileable
    return enrichment.enriched(events, ip_mode), enrichment.scrubbed(unfileable, ip_mode, SCRUBBED_INVALID_COLUMNS)


def invalid_rows(records: DataFrame, ip_mode: str, enrich: bool = True) -> DataFrame:
    """The invalid table's rows of invalid-topic records (their addresses scrubbed with the enrichment)."""
    rows = parse_invalid_records(records)
    return enrichment.scrubbed(rows, ip_mode, SCRUBBED_INVALID_COLUMNS) if enrich else rows
