"""A small lake for the report's tests: events as the lake writer files them (its columns, the enrichment's),
their sessions, and invalid rows with the collector's reasons, as pyarrow tables."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

import enrichment
from chalicelib.validation import SCHEMA_ID, SCHEMA_VERSION
from lake import figures

START = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


#: Columns both prefixes share: the collector's metadata (its user agent named per prefix) and Kafka's.
def collector_columns(user_agent: str) -> list[tuple[str, pa.DataType]]:
    return [
        ("correlation_id", pa.string()),
        ("received_at", TS),
        ("source_ip", pa.string()),
        (user_agent, pa.string()),
        ("schema_id", pa.string()),
        ("schema_version", pa.string()),
    ]


KAFKA_AND_PARTITION_COLUMNS = [
    ("kafka_partition", pa.int32()),
    ("kafka_offset", pa.int64()),
    ("kafka_timestamp", TS),
    ("ingested_timestamp", TS),
    ("dt", pa.string()),
    ("hour", pa.string()),
]
#: The lake's columns as the lake writer writes them (spark/lake_writer.py).
LAKE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("type", pa.string()),
        ("package_id", pa.string()),
        ("user_agent", pa.string()),
        ("ip", pa.string()),
        ("customer_id", pa.string()),
        ("page", pa.string()),
        ("query", pa.string()),
        ("product_id", pa.int32()),
        ("product_name", pa.string()),
        ("price", pa.float64()),
        ("referrer", pa.string()),
        ("event_timestamp", TS),
        *collector_columns("collector_user_agent"),
        *KAFKA_AND_PARTITION_COLUMNS,
        ("is_bot", pa.bool_()),
    ]
)
INVALID_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("index", pa.int64()),
        ("reason", pa.string()),
        ("payload", pa.string()),
        ("status_code", pa.int32()),
        ("body", pa.string()),
        ("body_bytes", pa.int64()),
        *collector_columns("user_agent"),
        *KAFKA_AND_PARTITION_COLUMNS,
    ]
)

UNSUPPORTED = "HTTP 415: content type not accepted"
#: Invalid rows as the collector words them (current and earlier wording), with the group each belongs in.
REASONS: list[tuple[str, int | None, str]] = [
    ('$.type: "hover" is not one of "click", "view" or "purchase"', None, "$.type: not an allowed value"),
    ('$.type: "scroll" is not one of "click", "view" or "purchase"', None, "$.type: not an allowed value"),
    ("$.type must be one of ['click', 'view', 'purchase']", None, "$.type: not an allowed value"),
    ('$.event: "customer_id" is a required property', None, "$.event.customer_id: missing"),
    ("$.event must contain ['customer_id'] properties", None, "$.event.customer_id: missing"),
    ('$.event: "price" is a required property', None, "$.event.price: missing"),
    ('$: "id" is a required property', None, "$.id: missing"),
    (
        "$.event must contain ['price', 'product_id', 'product_name'] properties",
        None,
        "$.event.{price,product_id,product_name}: missing",
    ),
    ('$.event.price: "free" is not of types "null", "number"', None, "$.event.price: wrong type"),
    ("$.event.price must be number or null", None, "$.event.price: wrong type"),
    ('$.event: "x" is not of type "object"', None, "$.event: wrong type"),
    ('$.event.timestamp: "yesterday at noon" does not match "^[0-9]{4}-..."', None, "$.event.timestamp: wrong format"),
    ("$.event.timestamp must match pattern ^[0-9]{4}-...", None, "$.event.timestamp: wrong format"),
    ("$.event.price: 0 is less than or equal to the minimum of 0", None, "$.event.price: out of range"),
    ('$.id: "" is shorter than 1 character', None, "$.id: wrong length"),
    ("$: Additional properties are not allowed ('extra' was unexpected)", None, "$: unexpected property"),
    ("$: Additional properties are not allowed ('other' was unexpected)", None, "$: unexpected property"),
    (
        "$.event: {} is not valid under any of the schemas listed in the 'anyOf' keyword",
        None,
        "$.event: fits none of the allowed shapes",
    ),
    ("event must be a JSON object", None, "$: not a JSON object"),
    ("body is not valid JSON: unexpected character: line 1 column 2 (char 1)", 400, "HTTP 400: body is not valid JSON"),
    ("body is not valid JSON: trailing characters: line 1 column 9 (char 8)", 400, "HTTP 400: body is not valid JSON"),
    ("body is an empty array: there are no events to collect", 400, "HTTP 400: empty array"),
    ("content type 'text/xml' is not accepted; send application/json or text/plain", 415, UNSUPPORTED),
    ("content type 'image/png' is not accepted; send application/json or text/plain", 415, UNSUPPORTED),
    ("body of 10485761 bytes exceeds the limit of 10485760 bytes", 413, "HTTP 413: body too large"),
    ("batch of 1001 events exceeds the limit of 1000", 413, "HTTP 413: too many events in one batch"),
]  # fmt: skip


def moment_of(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def iso_of(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def lake_table(events: list[dict[str, Any]]) -> pa.Table:
    """Events flattened as the lake writer writes them."""
    rows = []
    for offset, event in enumerate(events):
        details = event["event"]
        moment = moment_of(details["timestamp"])
        rows.append(
            {
                "id": event["id"],
                "type": event["type"],
                "package_id": event["package_id"],
                **{name: details.get(name) for name in ("user_agent", "ip", "customer_id", "page", "query")},
                **{name: details.get(name) for name in ("product_id", "product_name", "price", "referrer")},
                "event_timestamp": moment,
                "correlation_id": f"batch-{offset // 50}",
                "received_at": moment + timedelta(seconds=1),
                "source_ip": "127.0.0.1",
                "schema_id": SCHEMA_ID,
                "schema_version": SCHEMA_VERSION,
                "collector_user_agent": "pytest",
                "kafka_partition": offset % 6,
                "kafka_offset": offset,
                "kafka_timestamp": moment + timedelta(seconds=1),
                "ingested_timestamp": moment + timedelta(seconds=3 + offset % 5),
                "dt": f"{moment:%Y-%m-%d}",
                "hour": f"{moment:%H}",
                "is_bot": enrichment.agent(details["user_agent"]).is_bot,
            }
        )
    return pa.Table.from_pylist(rows, schema=LAKE_SCHEMA)


def visits(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sessions of the events, as spark/sessions.py makes them (the enrichment's own functions for the
    landing event's facts): a customer's events with gaps under 30 minutes."""
    by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_customer[event["event"]["customer_id"]].append(event)
    found = []
    for customer_events in by_customer.values():
        customer_events.sort(key=lambda e: (moment_of(e["event"]["timestamp"]), e["id"]))
        current: list[dict[str, Any]] = []
        for event in customer_events:
            if current and moment_of(event["event"]["timestamp"]) - moment_of(current[-1]["event"]["timestamp"]) >= (
                timedelta(minutes=30)
            ):
                found.append(current)
                current = []
            current.append(event)
        found.append(current)
    rows = []
    for session in found:
        first = session[0]["event"]
        host, medium = enrichment.referrer_medium(first.get("referrer"), first["page"])
        agent = enrichment.agent(first["user_agent"])
        rows.append(
            {
                "session_start": moment_of(first["timestamp"]),
                "events": len(session),
                "landing_page": first["page"],
                "referrer_host": host,
                "referrer_medium": medium,
                **{k: v for k, v in enrichment.campaign(first["page"]).items() if k.startswith("utm_")},
                "device_class": agent.device_class,
                "browser_family": agent.browser_family,
                "is_bot": any(enrichment.agent(e["event"]["user_agent"]).is_bot for e in session),
                "converted": any(e["type"] == "purchase" for e in session),
                "revenue": sum(e["event"]["price"] for e in session if e["type"] == "purchase"),
            }
        )
    return rows


def sessions_table(events: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(visits(events), schema=figures.SESSION_COLUMNS)


def invalid_table(reasons: list[tuple[str, int | None]], at: datetime = START) -> pa.Table:
    rows = []
    for index, (reason, status_code) in enumerate(reasons):
        moment = at + timedelta(seconds=index)
        rows.append(
            {
                "id": None if status_code else f"bad-{index}",
                "index": None if status_code else index,
                "reason": reason,
                "payload": None if status_code else "{}",
                "status_code": status_code,
                "body": "x" if status_code else None,
                "body_bytes": 1 if status_code else None,
                "received_at": moment,
                "ingested_timestamp": moment + timedelta(seconds=2),
                "dt": f"{moment:%Y-%m-%d}",
                "hour": f"{moment:%H}",
            }
        )
    return pa.Table.from_pylist(rows, schema=INVALID_SCHEMA)
