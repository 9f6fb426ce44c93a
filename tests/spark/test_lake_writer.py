"""The lake writer on the real path: collector -> Kafka -> Spark (local) -> Delta tables on LocalStack S3.

The lake is read back with delta-rs (lake/reader.py), not Spark: committed versions only.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.collector import Collector, RequestInfo
from chalicelib.dependencies import registry_id
from chalicelib.sinks.kafka import KafkaSink
from enrichment import scrub_ips
from generator.synthetic import synthetic_events
from lake.reader import INVALID_PREFIX, LAKE_PREFIX, SESSIONS_PREFIX, read
from lake.reader import table as table_of
from pipeline.config import Config
from pipeline.schema_registry import framed
from stack import spark
from tests.conftest import REPO, committed_ids, lake_ids, read_topic, record_json
from tests.stacks import variant

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


#: The window's, the sessions' and the schema's tests run on a lake writer of their own (tests/stacks.variant), which
#: they may restart: a short window, a quick maintenance, sessions kept up (the suite stack's are off). The suite's
#: lake writer is left alone.
OWN = "own"


def own_table(prefix: str) -> str:
    """The own writer's table of a lake prefix (lake/reader.py's LAKE_PREFIX, ...), as the readers name it."""
    return f"{OWN}/{prefix}"


@pytest.fixture(scope="module")
def own_writer(config: Config) -> Iterator[Config]:
    own = variant(config, OWN).replace(
        lake={"dedupe_window": "5 seconds"},
        maintenance={"compact_interval_s": 10.0},
        sessions={"enabled": True},
    )
    spark.start(own, name=f"spark-{OWN}")
    try:
        yield own
    finally:
        spark.stop(f"spark-{OWN}")


def test_a_resend_after_the_window_lands_again_until_its_day_is_swept(own_writer: Config) -> None:
    """Within the window a resend is dropped (the other tests); after it, it lands again, and the sweep of its day
    deletes the later copy: at once for a day that has closed, at `make compact` for the current one."""
    windowed = own_writer
    collector = Collector(windowed, KafkaSink(windowed.kafka))
    table = own_table(LAKE_PREFIX)
    [today, closed] = synthetic_events(2, seed=71)
    now = datetime.now(UTC)
    for event, moment in ((today, now), (closed, now - timedelta(days=1))):
        event["event"]["timestamp"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    post(collector, [today, closed])
    assert lake_ids(table, {today["id"], closed["id"]}) == Counter({today["id"]: 1, closed["id"]: 1})

    def copies(event: dict[str, Any]) -> int:
        return Counter(committed_ids(table))[event["id"]]

    # Resent until the window has let it through: the current day keeps both copies until it is swept.
    deadline = time.monotonic() + 120
    while copies(today) < 2 and time.monotonic() < deadline:
        post(collector, [today])
        time.sleep(1)
    assert copies(today) == 2
    # A closed day is swept by the lake writer's next maintenance round: the later copy goes.
    post(collector, [closed])
    history = lambda: [e["operation"] for e in table_of(table).history(20)]  # noqa: E731
    assert wait_for(lambda: "MERGE" in history() and copies(closed) == 1, 120), (copies(closed), history())
    assert copies(today) == 2

    spark.compact(windowed, name=f"spark-{OWN}")  # make compact: every day swept, the current one too
    assert copies(today) == 1 and copies(closed) == 1
    rows = [r for r in read(table).to_pylist() if r["id"] == today["id"]]
    assert len(rows) == 1 and rows[0]["kafka_offset"] == min(  # the first copy stays
        r.offset
        for r in read_topic(windowed.kafka.bootstrap_servers, windowed.kafka.raw_topic, {}, 10**9, 5)
        if r.key and r.key.decode() == today["id"]
    )


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(1)
    return False


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


CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0 Safari/537.36"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def lake_sessions(customer: str, count: int, timeout_s: float = 150) -> list[dict[str, Any]]:
    """The customer's rows of the own writer's sessions table, by start, once there are `count` (or the timeout
    passed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = sorted(
            (r for r in read(own_table(SESSIONS_PREFIX)).to_pylist() if r["customer_id"] == customer),
            key=lambda r: r["session_start"],
        )
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(2)


#: Real public addresses (Google's DNS, a British block): full client IPs the lake must never hold.
FULL_IPS = ("8.8.8.8", "2001:4860:4860::8888", "81.2.69.160")


def test_crafted_events_come_back_enriched_and_no_full_ip_is_in_the_lake(own_writer: Config) -> None:
    """On the own writer, the one keeping sessions up: the enrichment's columns, the sessions, and no full IP."""
    collector = Collector(own_writer, KafkaSink(own_writer.kafka))
    events_table, invalid_table, sessions_table = map(own_table, (LAKE_PREFIX, INVALID_PREFIX, SESSIONS_PREFIX))
    [desktop, mobile, crawler, broken, *visitor] = synthetic_events(7, seed=49)
    desktop["event"].update(
        user_agent=CHROME,
        ip="8.8.8.8",
        page="https://shop.example/home?utm_source=newsletter&utm_medium=email&utm_campaign=winter&gclid=g-1",
        referrer="https://www.google.com/search?q=laptop",
    )
    mobile["event"].update(user_agent=IPHONE, ip="2001:4860:4860::8888", page="/product/101", referrer="https://t.co/a")
    crawler["event"].update(user_agent=GOOGLEBOT, ip=None, page="/home", referrer=None)
    broken["type"], broken["event"]["ip"] = "hover", "8.8.8.8"  # invalid: kept in the invalid table
    # One customer's visits: a search landing, a purchase 10 minutes later, and a return 60 minutes after that.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    customer = f"visitor-{uuid.uuid4().hex[:8]}"
    for event, minutes, kind, page in zip(
        visitor, (0, 10, 70), ("view", "purchase", "view"), ("/home?utm_campaign=winter", "/cart", "/home"), strict=True
    ):
        moment = (start + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
        event["type"] = kind
        event["event"].update(customer_id=customer, timestamp=moment, page=page, user_agent=IPHONE, ip="8.8.8.8")
        event["event"].update(referrer="https://www.google.com/" if minutes == 0 else None, price=12.5)
        event["event"].update(product_id=101, product_name="Desk lamp")
    outcome = collector.collect(
        json.dumps([desktop, mobile, crawler, broken, *visitor]).encode(),
        RequestInfo("application/json", "81.2.69.160", CHROME),
    )
    assert outcome.body["valid_count"] == 6, outcome.body
    wanted = {desktop["id"], mobile["id"], crawler["id"], *(e["id"] for e in visitor)}
    assert lake_ids(events_table, wanted) == Counter(dict.fromkeys(wanted, 1))
    assert lake_ids(invalid_table, {broken["id"]}) == Counter({broken["id"]: 1})

    rows = {r["id"]: r for r in read(events_table).to_pylist() if r["id"] in wanted}
    row = rows[desktop["id"]]
    assert (row["ua_browser_family"], row["ua_browser_major"], row["ua_os_family"]) == ("Chrome", "141", "Windows")
    assert (row["ua_device_class"], row["is_bot"]) == ("desktop", False)
    assert (row["ip"], row["source_ip"], row["geo_country"]) == ("8.8.8.0", "81.2.69.0", "US")
    assert (row["referrer_host"], row["referrer_medium"]) == ("www.google.com", "search")
    assert (row["utm_source"], row["utm_medium"], row["utm_campaign"], row["gclid"]) == (
        "newsletter",
        "email",
        "winter",
        "g-1",
    )
    assert row["utm_term"] is None and row["fbclid"] is None
    row = rows[mobile["id"]]
    assert (row["ua_browser_family"], row["ua_os_family"], row["ua_os_version"]) == ("Mobile Safari", "iOS", "18.1")
    assert (row["ua_device_class"], row["ip"], row["geo_country"]) == ("mobile", "2001:4860:4860::", "US")
    assert (row["referrer_medium"], row["utm_source"]) == ("social", None)
    row = rows[crawler["id"]]
    assert (row["ua_device_class"], row["is_bot"], row["referrer_medium"]) == ("bot", True, "direct")
    assert row["geo_country"] == "GB"  # no client-known address: the one the collector saw

    # Two sessions (gaps of 10 and 60 minutes), with the facts of their landing event, within a round or two.
    visits = lake_sessions(customer, 2)
    assert [(v["events"], v["page_views"], v["converted"], v["revenue"]) for v in visits] == [
        (2, 1, True, 12.5),
        (1, 1, False, 0.0),
    ]
    first, second = visits
    assert (first["landing_page"], first["exit_page"], first["referrer_medium"]) == (
        "/home?utm_campaign=winter",
        "/cart",
        "search",
    )
    assert (first["utm_campaign"], first["device_class"], first["country"], first["is_bot"]) == (
        "winter",
        "mobile",
        "US",
        False,
    )
    assert (first["duration_s"], second["landing_page"], second["referrer_medium"]) == (600.0, "/home", "direct")
    assert first["first_event_id"] == visitor[0]["id"] and first["session_id"] != second["session_id"]

    # No full address anywhere: in no column of any row of any table, the own writer's and the suite's (the invalid
    # payload included).
    for prefix in (events_table, invalid_table, sessions_table, LAKE_PREFIX, INVALID_PREFIX, SESSIONS_PREFIX):
        for stored in read(prefix).to_pylist():
            text = json.dumps(stored, default=str)
            found = [ip for ip in FULL_IPS if re.search(rf"(?<![\w.:]){re.escape(ip)}(?![\w.:])", text)]
            assert not found, (prefix, stored["id"], found)
    [invalid] = [r for r in read(invalid_table).to_pylist() if r["id"] == broken["id"]]
    assert json.loads(invalid["payload"])["event"]["ip"] == "8.8.8.0"


def test_an_optional_field_of_schema_1_1_0_adds_its_column_old_rows_read_null(
    own_writer: Config, tmp_path: Any
) -> None:
    """Restarts the lake writer (its own) on an evolved schema: the table gains the column, nothing is rewritten."""
    from kafka import KafkaProducer

    from tests.conftest import read_topic

    config, table = own_writer, own_table(LAKE_PREFIX)
    collector = Collector(config, KafkaSink(config.kafka))
    before = synthetic_events(30, seed=48)
    body = post(collector, before)
    old_ids = {e["id"] for e in before}
    assert lake_ids(table, old_ids) == Counter(dict.fromkeys(old_ids, 1))

    # SchemaVer 1-1-0: one optional field more. The records are the collector's own, re-keyed, with the field.
    schema = json.loads((REPO / "schemas" / "acme.clickstream.raw.events.json").read_text())
    schema["properties"]["event"]["properties"]["coupon"] = {"type": ["string", "null"], "maxLength": 64}
    evolved = tmp_path / "acme.clickstream.raw.events-1-1-0.json"
    evolved.write_text(json.dumps(schema))
    [record] = read_topic(
        config.kafka.bootstrap_servers, config.kafka.raw_topic, {"correlation_id": body["correlation_id"]}, 30
    )[:1]
    template = record_json(record.value)
    new_ids = {f"{template['id']}-1-1-0-{n}" for n in range(10)}
    spark.stop(f"spark-{OWN}")
    # Without sessions now: this test asks nothing of them, and their first round would take the cores it waits on.
    spark.start(config.replace(lake={"event_schema": str(evolved)}, sessions={"enabled": False}), name=f"spark-{OWN}")
    producer = KafkaProducer(bootstrap_servers=config.kafka.servers, acks="all")
    for event_id in new_ids:
        value = {**template, "id": event_id, "event": {**template["event"], "coupon": "WINTER"}}
        value["collector"] = {**template["collector"], "schema_version": "1-1-0"}
        producer.send(config.kafka.raw_topic, key=event_id.encode(), value=json.dumps(value).encode())
    producer.flush()
    producer.close()
    assert lake_ids(table, new_ids) == Counter(dict.fromkeys(new_ids, 1))

    rows = {r["id"]: r for r in read(table, columns=["id", "coupon", "schema_version"]).to_pylist()}
    assert {rows[i]["coupon"] for i in new_ids} == {"WINTER"}
    assert {rows[i]["schema_version"] for i in new_ids} == {"1-1-0"}
    assert {rows[i]["coupon"] for i in old_ids} == {None}  # old rows read null: nothing was rewritten
