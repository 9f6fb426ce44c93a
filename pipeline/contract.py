"""What every stage agrees on about a record and where it goes: the collector writes it, the lake writer files it, the
readers, the report and the schema generator read it. Standard library only."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

#: The pipeline's topics (their variables can move them: pipeline/config.py).
RAW_TOPIC = "acme.clickstream.raw.events"
INVALID_TOPIC = "acme.clickstream.invalid.events"
LATEST_TOPIC = "acme.clickstream.latest.events"
#: The customers forgotten (`make forget`): a compacted topic, one record per customer, keyed by customer_hash.
FORGOTTEN_TOPIC = "acme.clickstream.forgotten.customers"

REGION = "eu-west-1"
LAKE_BUCKET = "acme.eu-west-1.stg.data.lake"
WEBSITE_BUCKET = "acme-clickstream-shop"
#: Where the shop is served from: locally (python -m http.server 8000) and as LocalStack's S3 website.
SHOP_ORIGINS = (
    "http://localhost:8000",
    "http://127.0.0.1:8000",
    f"http://{WEBSITE_BUCKET}.s3-website.localhost.localstack.cloud:4566",
)

#: The lake's tables: the events, the invalid rows, the sessions (prefixes of the lake bucket by default).
EVENTS_TABLE, INVALID_TABLE, SESSIONS_TABLE = LAKE_TABLES = (
    "clickstream-data",
    "clickstream-invalid",
    "clickstream-sessions",
)
#: Each table's setting of the lake section (LAKE_PATH, LAKE_INVALID_PATH, LAKE_SESSIONS_PATH).
LAKE_TABLE_FIELDS = {EVENTS_TABLE: "events_path", INVALID_TABLE: "invalid_path", SESSIONS_TABLE: "sessions_path"}
#: Where the lake can live: LocalStack's S3 (forgets on a restart), or S3Proxy on a folder (durable).
LAKE_STORES = ("localstack", "s3proxy")
#: Where S3Proxy listens when LAKE_S3_ENDPOINT does not say.
S3PROXY_ENDPOINT = "http://127.0.0.1:8333"
#: The raw and invalid topics' retention on a durable store (a week, in ms): the lake no longer needs them whole.
DURABLE_RETENTION_MS = str(7 * 24 * 3600 * 1000)

#: The tables' partition column: the event's UTC day (events), the day received (invalid), the day it began.
PARTITION = "dt"

#: How the lake keeps client IPs: IPv4 /24 and IPv6 /48, whole, or not at all.
IP_MODES = ("truncate", "full", "drop")

#: The event's JSON Schema, the source of truth, relative to the repository (and to /app in compose's image).
EVENT_SCHEMA_FILE = "schemas/acme.clickstream.raw.events.json"

#: The "collector" object added to every raw record, in this order (all strings; received_at is ISO-8601 UTC).
METADATA_FIELDS = ("correlation_id", "received_at", "source_ip", "user_agent", "schema_id", "schema_version")

#: Where a lake row's record was in Kafka, and when the lake writer took it.
KAFKA_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "ingested_timestamp")
#: The registry's id of the schema a raw record was written with (Confluent's wire format), kept on the event's row.
SCHEMA_ID_COLUMN = "registry_schema_id"
#: The enrichment's columns (spark/enrichment.py), after `referrer`: the user agent's, the country, the referrer's
#: host and medium, the page URL's campaign parameters; all text but is_bot.
AGENT_COLUMNS = ("ua_browser_family", "ua_browser_major", "ua_os_family", "ua_os_version", "ua_device_class", "is_bot")
CAMPAIGN_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "gclid", "fbclid", "msclkid")
ENRICHED_COLUMNS = (*AGENT_COLUMNS, "geo_country", "referrer_host", "referrer_medium", *CAMPAIGN_FIELDS)
#: What the schema registry holds under the raw and latest topics' subjects (`<topic>-value`): the raw records'
#: JSON Schema (the event and the collector's metadata) and the latest records' Avro schema, both generated from
#: EVENT_SCHEMA_FILE by schemas/generate.py.
RAW_VALUE_SCHEMA_FILE = "schemas/acme.clickstream.raw.events-value.json"
LATEST_VALUE_SCHEMA_FILE = "schemas/acme.clickstream.latest.events-value.avsc"

INT32_RANGE = (-(2**31), 2**31 - 1)
INT64_RANGE = (-(2**63), 2**63 - 1)


def is_int32(prop: dict[str, Any]) -> bool:
    """Whether a JSON Schema integer's bounds fit 32 bits: its lake column (and Avro/Protobuf field) is then
    32-bit, else 64-bit."""
    low, high = INT32_RANGE
    return prop.get("maximum", high + 1) <= high and prop.get("minimum", low - 1) >= low


def integer_range(prop: dict[str, Any]) -> tuple[int, int]:
    """The values the lake column of a JSON Schema integer holds."""
    return INT32_RANGE if is_int32(prop) else INT64_RANGE


def host_port(address: str) -> tuple[str, int]:
    """host and port of "host:port" (IPv6 in brackets too); an empty host is 127.0.0.1."""
    host, _, port = address.strip().rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def table_name(path: str) -> str:
    """A lake table's name: the last segment of its path (`s3a://<bucket>/clickstream-data`: `clickstream-data`)."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def maintenance_answer(request_file: str | Path, table_path: str) -> Path:
    """Where a table's maintenance in the lake writer answers what `make compact` or `make forget` asked in the
    request file (LAKE_MAINTENANCE_REQUEST): beside it, named after the table."""
    request = Path(request_file)
    return request.with_name(f"{request.stem}.{table_name(table_path)}.done")


def customer_hash(customer_id: str) -> str:
    """How the list of forgotten customers names one (SHA-256 of the id, hex): the list keeps no id itself. Spark's
    sha2(customer_id, 256) gives the same."""
    return hashlib.sha256(customer_id.encode()).hexdigest()
