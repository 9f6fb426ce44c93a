"""A lake writer variant with a production's settings where they differ from the suite's, on the suite stack's broker
and LocalStack: Kafka over SASL_SSL (SCRAM-SHA-512 on the broker's second listener, the user's secret in Secrets
Manager, the certificate the stack made), a short dedupe window, a quick maintenance round, and sessions kept up (the
suite stack's are off). Its own topics and tables (tests/stacks.variant); the suite's lake writer is left alone.

One lake writer for all of it, started once: each start of a lake writer costs the two cores about a minute. (A
restart on an evolved schema is tests/faults/test_cluster.py's `make up`.) The lake is read back with delta-rs
(lake/reader.py), not Spark.
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
from kafka import KafkaConsumer, TopicPartition

from chalicelib.collector import Collector, RequestInfo
from chalicelib.sinks.kafka import KafkaSink, sasl_credentials, security_config
from generator.synthetic import synthetic_events
from lake.figures import figures
from lake.reader import INVALID_PREFIX, LAKE_PREFIX, SESSIONS_PREFIX, dataset, read
from lake.reader import table as table_of
from pipeline.config import Config
from stack import forget, localstack, spark
from tests.conftest import committed_ids, lake_ids, whole_topic
from tests.stacks import over_sasl, variant

pytestmark = pytest.mark.slow

#: The variant's name: its topics, tables and lake writer instance (`spark-variant`).
VARIANT = "variant"
INSTANCE = f"spark-{VARIANT}"


def variant_table(prefix: str) -> str:
    """The variant's table of a lake prefix (lake/reader.py's LAKE_PREFIX, ...), as the readers name it."""
    return f"{VARIANT}/{prefix}"


@pytest.fixture(scope="module")
def variant_writer(config: Config) -> Iterator[Config]:
    """The variant's lake writer, running; its configuration (a client of the SASL_SSL listener)."""
    settings = over_sasl(
        config,
        variant(config, VARIANT).replace(
            lake={"dedupe_window": "5 seconds"},
            maintenance={"compact_interval_s": 10.0},
            # A round 5 s after the last, not 30: a test waits for the sessions of its events.
            sessions={"enabled": True, "interval_s": 5.0},
        ),
    )
    spark.start(settings, name=INSTANCE)
    try:
        yield settings
    finally:
        spark.stop(INSTANCE)


def collector_over_sasl(settings: Config) -> Collector:
    """The collector as a deployment over SASL_SSL runs it: the user's secret read from Secrets Manager."""
    return Collector(settings, KafkaSink(settings.kafka, sasl_credentials(settings.kafka, localstack.client)))


def post(collector: Collector, events: list[dict[str, Any]]) -> dict[str, Any]:
    outcome = collector.collect(json.dumps(events).encode(), RequestInfo("application/json", "127.0.0.1", "pytest"))
    assert outcome.status_code == 200, outcome.body
    return outcome.body


def keys_in(settings: Config, topic: str, wanted: set[str]) -> Counter[str]:
    """How often each wanted key is in `topic`, read over SASL_SSL with the same settings."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.servers,
        group_id=None,
        enable_auto_commit=False,
        **security_config(settings.kafka, sasl_credentials(settings.kafka, localstack.client)),
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        found: Counter[str] = Counter()
        while any(consumer.position(p) < end[p] for p in partitions):
            for records in consumer.poll(timeout_ms=1000).values():
                found.update(r.key.decode() for r in records if r.key and r.key.decode() in wanted)
        return found
    finally:
        consumer.close()


def test_events_travel_collector_kafka_lake_and_latest_topic_over_sasl_ssl(variant_writer: Config) -> None:
    settings = variant_writer
    events = synthetic_events(200, seed=61)
    body = post(collector_over_sasl(settings), events)
    assert body["valid_count"] == 200, body
    ids = {e["id"] for e in events}
    assert keys_in(settings, settings.kafka.raw_topic, ids) == Counter(dict.fromkeys(ids, 1))
    # The lake writer read them over SASL_SSL, wrote the lake, and fed the latest topic over SASL_SSL.
    assert lake_ids(variant_table(LAKE_PREFIX), ids) == Counter(dict.fromkeys(ids, 1))
    assert set(keys_in(settings, settings.kafka.latest_topic, ids)) == ids


def test_a_resend_after_the_window_lands_again_until_its_day_is_swept(variant_writer: Config, config: Config) -> None:
    """Within the window a resend is dropped (the other tests); after it, it lands again, and the sweep of its day
    deletes the later copy: at once for a day that has closed, at `make compact` for the current one."""
    windowed = variant_writer
    collector = collector_over_sasl(windowed)
    table = variant_table(LAKE_PREFIX)
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

    spark.compact(windowed, name=INSTANCE)  # make compact: every day swept, the current one too
    assert copies(today) == 1 and copies(closed) == 1
    rows = [r for r in read(table).to_pylist() if r["id"] == today["id"]]
    assert len(rows) == 1 and rows[0]["kafka_offset"] == min(  # the first copy stays
        r.offset
        for r in whole_topic(config.kafka.bootstrap_servers, windowed.kafka.raw_topic)
        if r.key and r.key.decode() == today["id"]
    )


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0 Safari/537.36"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def lake_sessions(customer: str, count: int, timeout_s: float = 150) -> list[dict[str, Any]]:
    """The customer's rows of the variant's sessions table, by start, once there are `count` (or the timeout
    passed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = sorted(
            (r for r in read(variant_table(SESSIONS_PREFIX)).to_pylist() if r["customer_id"] == customer),
            key=lambda r: r["session_start"],
        )
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(1)


#: Real public addresses (Google's DNS, a British block): full client IPs the lake must never hold.
FULL_IPS = ("8.8.8.8", "2001:4860:4860::8888", "81.2.69.160")


def test_crafted_events_come_back_enriched_and_no_full_ip_is_in_the_lake(variant_writer: Config) -> None:
    """On the variant, which keeps sessions up: the enrichment's columns, the sessions, and no full IP."""
    collector = collector_over_sasl(variant_writer)
    events_table, invalid_table, sessions_table = map(variant_table, (LAKE_PREFIX, INVALID_PREFIX, SESSIONS_PREFIX))
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

    # No full address anywhere: in no column of any row of any table, the variant's and the suite's (the invalid
    # payload included).
    for prefix in (events_table, invalid_table, sessions_table, LAKE_PREFIX, INVALID_PREFIX, SESSIONS_PREFIX):
        for stored in read(prefix).to_pylist():
            text = json.dumps(stored, default=str)
            found = [ip for ip in FULL_IPS if re.search(rf"(?<![\w.:]){re.escape(ip)}(?![\w.:])", text)]
            assert not found, (prefix, stored["id"], found)
    [invalid] = [r for r in read(invalid_table).to_pylist() if r["id"] == broken["id"]]
    assert json.loads(invalid["payload"])["event"]["ip"] == "8.8.8.0"


def test_a_forgotten_customer_is_gone_from_every_table_and_their_next_event_is_never_stored(
    variant_writer: Config, config: Config
) -> None:
    """`make forget` on the variant (it keeps sessions): the customer's events, invalid rows and sessions deleted,
    everyone else's untouched, and their next event dropped and counted, in the lake and the latest topic alike."""
    settings = variant_writer
    collector = collector_over_sasl(settings)
    gone, kept = (f"{who}-{uuid.uuid4().hex[:8]}" for who in ("forgotten", "kept"))
    events = synthetic_events(6, seed=81)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    for n, event in enumerate(events):
        moment = (start + timedelta(minutes=n)).isoformat().replace("+00:00", "Z")
        event["event"].update(customer_id=gone if n < 3 else kept, timestamp=moment)
    events[2]["type"] = "hover"  # invalid: the invalid table keeps it, naming the customer in its payload
    post(collector, events)
    valid = {e["id"] for e in events} - {events[2]["id"]}
    events_table, invalid_table, sessions_table = map(variant_table, (LAKE_PREFIX, INVALID_PREFIX, SESSIONS_PREFIX))
    assert lake_ids(events_table, valid) == Counter(dict.fromkeys(valid, 1))
    assert lake_ids(invalid_table, {events[2]["id"]}) == Counter({events[2]["id"]: 1})
    assert len(lake_sessions(gone, 1)) == 1 and len(lake_sessions(kept, 1)) == 1

    def rows_of(customer: str) -> dict[str, list[dict[str, Any]]]:
        """The customer's rows in each table, in a fixed order: a delete rewrites files, so the read order changes."""
        invalid = [r for r in read(invalid_table).to_pylist() if customer in (r["payload"] or "")]
        events = [r for r in read(events_table).to_pylist() if r["customer_id"] == customer]
        sessions = [r for r in read(sessions_table).to_pylist() if r["customer_id"] == customer]
        return {
            name: sorted(rows, key=repr)
            for name, rows in (("events", events), ("invalid", invalid), ("sessions", sessions))
        }

    def report_totals() -> dict[str, Any]:
        """The report's totals over the variant's tables (`make report`'s figures, DuckDB over delta-rs), bots too."""
        tables = (dataset(events_table), dataset(invalid_table), dataset(sessions_table))
        return figures(*tables, include_bots=True)["totals"]

    before, reported = rows_of(kept), report_totals()
    # `make forget` reaches Kafka over the stack's PLAINTEXT listener, as `make up` does.
    plain = settings.replace(
        kafka={"bootstrap_servers": config.kafka.bootstrap_servers, "security_protocol": "PLAINTEXT"}
    )
    said = forget.forget([gone], plain, name=INSTANCE)
    assert "clickstream-data 2, clickstream-invalid 1" in said, said
    # The sessions at once, or at the next round if a round under way had read the events before their delete.
    assert wait_for(lambda: rows_of(gone) == {"events": [], "invalid": [], "sessions": []}, 90), rows_of(gone)
    assert rows_of(kept) == before
    # The report shows nothing of them: one customer, their two events, their invalid row and their session fewer.
    now = report_totals()
    fewer = {k: reported[k] - now[k] for k in ("customers", "events", "invalid_events", "sessions")}
    assert fewer == {"customers": 1, "events": 2, "invalid_events": 1, "sessions": 1}, (reported, now)

    # Their next event (and a resend of an old one) is dropped and counted; the other customer's lands.
    [later, other] = synthetic_events(2, seed=82)
    later["event"]["customer_id"], other["event"]["customer_id"] = gone, kept
    post(collector, [later, other, events[0]])
    assert lake_ids(events_table, {other["id"]}) == Counter({other["id"]: 1})
    published = {other["id"]: 1}
    assert wait_for(lambda: keys_in(settings, settings.kafka.latest_topic, {other["id"]}) == published, 60)
    assert not ({later["id"], events[0]["id"]} & set(committed_ids(events_table)))
    assert not keys_in(settings, settings.kafka.latest_topic, {later["id"]})
    noted = spark.job_status(INSTANCE)["notes"]["forgotten"]
    # The later event at least: the resend may have been dropped before, as a repeat within the dedupe window.
    assert noted["customers"] == 1 and noted["rows_dropped"]["clickstream-data"] >= 1, noted
