"""The collector accepts only what the lake can store: its verdict against the lake writer's own parsing.

Hypothesis generates events with edge values in every field the lake types (timestamps, integers, numbers);
each event goes through the collector's checks and, serialised as the collector writes it, through the lake
writer's `parse_raw_records` on a real Spark session. Wherever the collector accepts, the lake stores the
same values; wherever the lake would refuse, the collector refused first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.validation import SCHEMA, ClockWindow, lake_violation, parse_instant, schema_violation
from pipeline.schema_registry import framed
from records import parse_raw_records

pytestmark = pytest.mark.slow

#: The registry's answer in these tests: only schema id 7 is the raw topic's.
KNOWN_ID = 7


def known(ids: Any) -> Any:
    return ids.isin(KNOWN_ID)


#: Wide enough that only the calendar and the types decide, not the clock.
ANY_TIME = ClockWindow(earliest=datetime(1, 1, 1, tzinfo=UTC), ahead=timedelta(days=3_000_000))


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("lake-types")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "1")
        # As the lake writer writes them (spark/lake_writer.py's main).
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .getOrCreate()
    )
    yield session
    session.stop()


def two(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: f"{n:02d}")


timestamps = st.builds(
    lambda y, mo, d, h, mi, s, frac, zone: f"{y:04d}-{mo}-{d}T{h}:{mi}:{s}{frac}{zone}",
    st.sampled_from([0, 1, 1582, 1900, 1999, 2000, 2023, 2024, 2100, 9999]) | st.integers(0, 9999),
    two(1, 12),
    two(1, 31),
    two(0, 23),
    two(0, 59),
    two(0, 59),
    st.just("") | st.text("0123456789", min_size=1, max_size=9).map(lambda digits: "." + digits),
    st.sampled_from(["Z", "+00:00"]),
)
integers = st.integers(-(2**64), 2**64) | st.sampled_from([0, 2**31 - 1, 2**31, -1]) | st.floats(0, 1e10)
numbers = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**63), 2**63)
    | st.sampled_from([0.01, 1e308, 5e-324, 2**53 + 1])
)


@st.composite
def edge_events(draw: st.DrawFn) -> dict[str, Any]:
    details: dict[str, Any] = {
        "user_agent": "hypothesis",
        "customer_id": "c-1",
        "timestamp": draw(timestamps),
        "page": "/home",
        "product_id": draw(integers),
        "product_name": "thing",
        "price": draw(numbers),
    }
    return {"id": f"e-{draw(st.uuids())}", "type": "purchase", "package_id": "t", "event": details}


def dump(value: Any) -> bytes:
    """JSON as the collector writes it (orjson); integers past 64 bits, which orjson refuses, as any other producer
    might write them (the collector refuses such events before writing)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def collector_record(event: dict[str, Any]) -> bytes:
    meta = {"correlation_id": "c", "received_at": "2026-12-01T00:00:00.000Z", "source_ip": None, "user_agent": "t"}
    return dump({**event, "collector": meta})


def lake_rows(spark: Any, events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    from pyspark.sql import functions as F

    records = spark.createDataFrame(
        [(e["id"].encode(), collector_record(e), "raw", 0, n, datetime(2026, 12, 1)) for n, e in enumerate(events)],
        "key binary, value binary, topic string, partition int, offset long, timestamp timestamp",
    )
    rows = parse_raw_records(records, SCHEMA).select(
        "id", "reason", "product_id", "price", F.unix_micros("event_timestamp").alias("micros")
    )
    return {row["id"]: row.asDict() for row in rows.collect()}


#: Few examples of many events each: each example costs a Spark job (about a second and a half), each event a few
#: milliseconds, and every event is checked on its own; ~700 events in all, as 25 examples of 20-40 were.
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(edge_events(), min_size=80, max_size=160, unique_by=lambda e: e["id"]))
def test_the_collector_accepts_exactly_what_the_lake_stores(spark: Any, events: list[dict[str, Any]]) -> None:
    schema_valid = [e for e in events if schema_violation(e) is None]
    rows = lake_rows(spark, schema_valid)
    for event in schema_valid:
        row = rows[event["id"]]
        verdict = lake_violation(event, ANY_TIME)
        assert (verdict is None) == (row["reason"] is None), (event, verdict, row)
        if verdict is None:
            instant = parse_instant(event["event"]["timestamp"])
            assert instant is not None
            epoch = datetime(1970, 1, 1, tzinfo=UTC)
            assert row["micros"] == (instant - epoch) // timedelta(microseconds=1), (event, row)
            assert row["product_id"] == event["event"]["product_id"]
            assert row["price"] == float(event["event"]["price"])


def test_crafted_edges_agree(spark: Any) -> None:
    """The cases that started it: 31 April, 29 February of a common year, 1.0 as a product id."""
    cases = {
        "april-31": ("2026-04-31T10:00:00Z", 1),
        "feb-29-2023": ("2023-02-29T10:00:00Z", 1),
        "feb-29-2024": ("2024-02-29T10:00:00Z", 1),
        "float-id": ("2026-04-30T10:00:00Z", 1.0),
        "nanos": ("2026-04-30T10:00:00.123456789+00:00", 1),
    }
    events = [
        {
            "id": name,
            "type": "purchase",
            "package_id": "t",
            "event": {
                "user_agent": "u",
                "customer_id": "c",
                "timestamp": ts,
                "page": "/",
                "product_id": pid,
                "product_name": "p",
                "price": 1.5,
            },
        }
        for name, (ts, pid) in cases.items()
    ]
    rows = lake_rows(spark, events)
    stored = {name for name, row in rows.items() if row["reason"] is None}
    accepted = {e["id"] for e in events if schema_violation(e) is None and lake_violation(e, ANY_TIME) is None}
    assert stored == accepted == {"feb-29-2024", "nanos"}


json_like = st.one_of(
    st.binary(max_size=60),
    st.builds(lambda event, cut: dump(event)[:cut], edge_events(), st.integers(0, 400)),
    st.builds(lambda event: collector_record(event), edge_events()),
    # Confluent's wire format: a known id, an unknown one, a header cut anywhere.
    st.builds(framed, st.sampled_from([KNOWN_ID, 8, 2**32 - 1]), edge_events().map(collector_record)),
    st.builds(lambda value, cut: framed(KNOWN_ID, value)[:cut], st.binary(max_size=8), st.integers(1, 6)),
    st.sampled_from([b"", b"null", b"[]", b"{}", b'"x"', b"\xff\xfe{", b'{"id": null}']),
)


#: As above: four Spark jobs of up to 140 records each, where there were 15 of up to 30.
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.tuples(st.none() | st.binary(max_size=20), st.none() | json_like), min_size=1, max_size=140))
def test_any_bytes_become_rows_a_parquet_reader_reads(
    spark: Any, tmp_path_factory: pytest.TempPathFactory, records: list[tuple[bytes | None, bytes | None]]
) -> None:
    """Whatever a producer writes, parsing never raises and yields one row per record, each either a lake row or
    an invalid one with a reason, in Parquet that pyarrow decodes (no invalid UTF-8 slips through)."""
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F

    frame = spark.createDataFrame(
        [(key, value, "raw", 0, n, datetime(2026, 12, 1)) for n, (key, value) in enumerate(records)],
        "key binary, value binary, topic string, partition int, offset long, timestamp timestamp",
    )
    out = tmp_path_factory.mktemp("parsed")
    parsed = parse_raw_records(frame, SCHEMA, known)
    # Only lake rows keep event_timestamp (an invalid one may be Spark's year 0, which no Python datetime holds).
    parsed = parsed.withColumn("event_timestamp", F.when(F.col("reason").isNull(), F.col("event_timestamp")))
    parsed.write.mode("overwrite").parquet(str(out))
    rows = pq.read_table(out).to_pylist()
    assert sorted(r["kafka_offset"] for r in rows) == list(range(len(records)))
    for row in rows:
        assert row["reason"] is not None or (row["id"] and row["event_timestamp"] and row["customer_id"])


def raw_frame(spark: Any, values: list[bytes]) -> Any:
    return spark.createDataFrame(
        [(f"k{n}".encode(), value, "raw", 0, n, datetime(2026, 12, 1)) for n, value in enumerate(values)],
        "key binary, value binary, topic string, partition int, offset long, timestamp timestamp",
    )


def test_the_wire_format_is_read_and_an_unknown_id_or_a_cut_header_is_filed_with_its_code(spark: Any) -> None:
    event = {
        "id": "w",
        "type": "view",
        "package_id": "t",
        "event": {"user_agent": "u", "customer_id": "c", "timestamp": "2026-12-01T10:00:00Z", "page": "/"},
    }
    values = [
        framed(KNOWN_ID, collector_record({**event, "id": "known"})),
        collector_record({**event, "id": "plain"}),  # an older collector's plain JSON
        framed(2**31 + 5, collector_record({**event, "id": "unknown"})),
        b"\x00\x00\x07",
    ]
    rows = {
        r["kafka_offset"]: r.asDict()
        for r in parse_raw_records(raw_frame(spark, values), SCHEMA, known)
        .select("kafka_offset", "id", "registry_schema_id", "code", "reason")
        .collect()
    }
    assert (rows[0]["id"], rows[0]["registry_schema_id"], rows[0]["code"]) == ("known", KNOWN_ID, None)
    assert (rows[1]["id"], rows[1]["registry_schema_id"], rows[1]["code"]) == ("plain", None, None)
    assert (rows[2]["id"], rows[2]["code"]) == ("unknown", "record.schema_id")
    assert rows[2]["reason"] == f"schema id {2**31 + 5} is not one the schema registry has for the raw topic"
    assert (rows[3]["id"], rows[3]["code"]) == ("k3", "record.wire_format")


def test_the_latest_topics_avro_schema_holds_every_column_of_the_enriched_rows(spark: Any) -> None:
    """The schema in schemas/ names exactly the latest rows' columns, Spark's to_avro writes them with it, and
    Avro's own reader reads them back."""
    import io

    import avro.io
    import avro.schema

    import enrichment
    import records
    from latest import avro_values
    from pipeline.config import REPO
    from pipeline.contract import LATEST_VALUE_SCHEMA_FILE, PARTITION

    spark.sparkContext.addPyFile(str(REPO / "spark" / "enrichment.py"))  # its UDF's module, for the workers
    text = (REPO / LATEST_VALUE_SCHEMA_FILE).read_text()
    schema = avro.schema.parse(text)
    event = {
        "id": "avro-1",
        "type": "purchase",
        "package_id": "t",
        "event": {
            "user_agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "customer_id": "c-9",
            "timestamp": "2026-12-01T10:00:00.123456Z",
            "page": "/p?utm_source=news",
            "product_id": 42,
            "price": 9.5,
            "ip": "203.0.113.77",
        },
    }
    parsed = parse_raw_records(raw_frame(spark, [framed(KNOWN_ID, collector_record(event))]), SCHEMA, known)
    rows = enrichment.enriched(records.events_of(parsed), "truncate").drop(PARTITION)
    assert sorted(rows.columns) == sorted(f.name for f in schema.fields)
    [value] = [r["value"] for r in rows.select(avro_values(rows, 12, text).alias("value")).collect()]
    assert bytes(value[:5]) == framed(12, b"")
    decoded = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(bytes(value[5:]))))
    assert (decoded["id"], decoded["product_id"], decoded["price"], decoded["registry_schema_id"]) == (
        "avro-1",
        42,
        9.5,
        KNOWN_ID,
    )
    assert decoded["is_bot"] is True and decoded["utm_source"] == "news" and decoded["ip"] == "203.0.113.0"
    assert decoded["event_timestamp"] == datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)
    # Without the enrichment (LAKE_ENRICHMENT=off) its fields are nulls of their types.
    plain = records.events_of(parsed).drop(PARTITION)
    [value] = [r["value"] for r in plain.select(avro_values(plain, 12, text).alias("value")).collect()]
    decoded = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(bytes(value[5:]))))
    assert decoded["id"] == "avro-1" and decoded["is_bot"] is None and decoded["ip"] == "203.0.113.77"


def test_the_forgotten_are_found_by_the_hash_the_list_holds_in_events_and_invalid_payloads(spark: Any) -> None:
    """spark/forgetting.py's filter: Spark's sha2 of the customer id is contract.customer_hash, for an event's column
    and for the event an invalid row keeps; a row naming no customer is nobody's."""
    from forgetting import Forgotten
    from pipeline.contract import customer_hash

    events = spark.createDataFrame([("a", "c-1"), ("b", "c-2"), ("c", None)], "id string, customer_id string")
    payloads = [json.dumps({"id": "d", "event": {"customer_id": "c-1"}}), "not json", None]
    invalid = spark.createDataFrame([(p,) for p in payloads], "payload string")
    forgotten, noted = Forgotten([customer_hash("c-1")], note=lambda kind, figures: None), []
    forgotten.on_change = lambda: noted.append(forgotten.version)
    assert [r["id"] for r in forgotten.kept(events, "events").collect()] == ["b", "c"]
    assert [r["payload"] for r in forgotten.kept(invalid, "invalid").collect()] == ["not json", None]
    assert forgotten.dropped == {"events": 1, "invalid": 1}
    forgotten.add(["c-2"])
    forgotten.add(["c-2"])  # already on the list: no change, the latest query is not started again
    assert noted == [1] and [r["id"] for r in forgotten.kept(events, "events").collect()] == ["c"]
