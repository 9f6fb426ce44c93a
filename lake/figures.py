"""The lake report's figures: both Delta tables scanned once (lake.reader's lazy datasets, from delta-rs), for the
columns the report uses, into DuckDB (in-process, no extension to download) in a temporary file with a memory limit;
every figure is computed there, never from the lake as one table in memory."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from lake.invalid_kinds import invalid_group_sql

#: The lake's columns the report uses, with their types (an empty lake is read as a table without columns).
EVENT_COLUMNS = pa.schema(
    [
        ("id", pa.string()),
        ("type", pa.string()),
        ("package_id", pa.string()),
        ("customer_id", pa.string()),
        ("query", pa.string()),
        ("product_id", pa.int32()),
        ("product_name", pa.string()),
        ("price", pa.float64()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("ingested_timestamp", pa.timestamp("us", tz="UTC")),
        ("is_bot", pa.bool_()),
    ]
)
#: The sessions table's columns the report uses (spark/sessions.py writes them).
SESSION_COLUMNS = pa.schema(
    [
        ("session_start", pa.timestamp("us", tz="UTC")),
        ("events", pa.int64()),
        ("landing_page", pa.string()),
        ("referrer_host", pa.string()),
        ("referrer_medium", pa.string()),
        ("utm_source", pa.string()),
        ("utm_medium", pa.string()),
        ("utm_campaign", pa.string()),
        ("device_class", pa.string()),
        ("browser_family", pa.string()),
        ("is_bot", pa.bool_()),
        ("converted", pa.bool_()),
        ("revenue", pa.float64()),
    ]
)
INVALID_COLUMNS = pa.schema(
    [
        ("code", pa.string()),
        ("path", pa.string()),
        ("reason", pa.string()),
        ("status_code", pa.int32()),
        ("ingested_timestamp", pa.timestamp("us", tz="UTC")),
    ]
)
EVENT_TYPES = ("click", "view", "purchase")
Source = pa.Table | ds.Dataset
#: Bucket sizes for the events-over-time chart; the smallest that gives at most MAX_BUCKETS bars is used.
BUCKET_SECONDS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
MAX_BUCKETS = 60
TOP_QUERIES = 10
TOP_SOURCES = 8
TOP_PAGES = 10


#: DuckDB's names of the report's Arrow types.
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "double": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
}


def _register(con: duckdb.DuckDBPyConnection, name: str, source: Source | None, schema: pa.Schema) -> None:
    """A view `name` over `source` (a lazy dataset or a table) with exactly the columns of `schema`: missing ones
    are nulls (an older or empty lake lacks some). DuckDB scans only the columns the queries use."""
    if source is None or not source.schema.names:  # no table yet, or an empty one
        source = schema.empty_table()
    con.register(f"{name}_source", source)
    present = set(source.schema.names)
    columns = ", ".join(
        f"CAST({field.name if field.name in present else 'NULL'} AS {DUCKDB_TYPES[str(field.type)]}) AS {field.name}"
        for field in schema
    )
    con.execute(f"CREATE TEMP VIEW {name} AS SELECT {columns} FROM {name}_source")


def bucket_seconds(first: datetime | None, last: datetime | None) -> int:
    """The smallest bucket that spreads first..last over at most MAX_BUCKETS bars."""
    if first is None or last is None:
        return BUCKET_SECONDS[0]
    span = (last - first).total_seconds()
    for seconds in BUCKET_SECONDS:
        if span // seconds + 2 <= MAX_BUCKETS:  # +2: the first and last buckets are cut at round times
            return seconds
    # A client clock far off can stretch the range over years: whole days, as many as it takes.
    return math.ceil(span / (MAX_BUCKETS - 2) / 86400) * 86400


def bucket_name(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}s" if count > 1 else unit
    return f"{seconds} seconds"


def _iso(moment: datetime | None) -> str | None:
    """A naive UTC datetime from DuckDB as ISO-8601 with Z."""
    return None if moment is None else moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def _rows(con: duckdb.DuckDBPyConnection, sql: str, parameters: Sequence[Any] = ()) -> list[dict[str, Any]]:
    result = con.execute(sql, list(parameters))
    names = [column[0] for column in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def _totals(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    (row,) = _rows(
        con,
        """
        SELECT
            (SELECT count(*) FROM e) AS events,
            (SELECT count(DISTINCT customer_id) FROM e) AS customers,
            (SELECT count(*) FROM s) AS sessions,
            (SELECT count(*) FILTER (WHERE events = 1) FROM s) AS bounced_sessions,
            (SELECT count(*) FILTER (WHERE converted) FROM s) AS converted_sessions,
            (SELECT count(*) FROM e WHERE type = 'view' AND product_id IS NOT NULL) AS product_views,
            (SELECT count(*) FROM e WHERE type = 'purchase') AS purchases,
            (SELECT round(coalesce(sum(price), 0), 2) FROM e WHERE type = 'purchase') AS revenue,
            (SELECT count(*) FROM invalid WHERE status_code IS NULL) AS invalid_events,
            (SELECT count(*) FROM invalid WHERE status_code IS NOT NULL) AS refused_requests,
            (SELECT min(ts) FROM e) AS first_event,
            (SELECT max(ts) FROM e) AS last_event,
            (SELECT greatest(max(ingested), (SELECT max(ingested) FROM invalid)) FROM e_all) AS freshness
        """,
    )
    by_type = dict(con.execute("SELECT type, count(*) FROM e GROUP BY type ORDER BY count(*) DESC").fetchall())
    row["by_type"] = by_type
    for key in ("first_event", "last_event", "freshness"):
        row[key] = _iso(row[key])
    row["revenue"] = float(row["revenue"])
    return row


def _bucket_counts(
    con: duckdb.DuckDBPyConnection, table: str, instant: str, measures: dict[str, str], by: str = ""
) -> tuple[int, list[dict[str, Any]]]:
    """The bucket width for the table's time span, and each measure (name: aggregate) per bucket, and per `by` if
    given, from the first bucket to the last, a bucket without rows counted 0 (a chart with no holes)."""
    first, last = con.execute(f"SELECT min({instant}), max({instant}) FROM {table}").fetchall()[0] or (None, None)
    seconds = bucket_seconds(first, last)
    aggregates = ", ".join(f"{expression} AS {name}" for name, expression in measures.items())
    keys, groups = ("bucket, " + by, f"CROSS JOIN (SELECT DISTINCT {by} FROM counts)") if by else ("bucket", "")
    rows = _rows(
        con,
        f"""
        WITH counts AS (
            SELECT time_bucket(INTERVAL {seconds} SECOND, {instant}) AS bucket, {by + ", " if by else ""}{aggregates}
            FROM {table} WHERE {instant} IS NOT NULL GROUP BY ALL
        ), buckets AS (
            SELECT unnest(range(min(bucket), max(bucket) + INTERVAL {seconds} SECOND, INTERVAL {seconds} SECOND))
                AS bucket
            FROM counts
        )
        SELECT {keys}, {", ".join(f"coalesce({n}, 0) AS {n}" for n in measures)}
        FROM buckets {groups} LEFT JOIN counts USING ({keys})
        ORDER BY bucket
        """,
    )
    return seconds, rows


def _timeline(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    types = [t for (t,) in con.execute("SELECT DISTINCT type FROM e WHERE ts IS NOT NULL").fetchall()]
    types.sort(key=lambda t: (EVENT_TYPES.index(t) if t in EVENT_TYPES else len(EVENT_TYPES), t))
    seconds, rows = _bucket_counts(con, "e", "ts", {"n": "count(*)"}, by="type")
    buckets: dict[str, dict[str, int]] = {}
    for row in rows:
        buckets.setdefault(_iso(row["bucket"]) or "", {t: 0 for t in types})[row["type"]] = row["n"]
    return {
        "bucket_seconds": seconds,
        "bucket": bucket_name(seconds),
        "types": types,
        "buckets": [{"start": start, "counts": counts} for start, counts in buckets.items()],
    }


def _funnel(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    return _rows(
        con,
        """
        SELECT product_id,
            arg_max(product_name, ts) FILTER (WHERE product_name IS NOT NULL) AS product_name,
            count(*) FILTER (WHERE type = 'view') AS views,
            count(*) FILTER (WHERE type = 'purchase') AS purchases,
            count(*) FILTER (WHERE type = 'purchase')::DOUBLE / nullif(count(*) FILTER (WHERE type = 'view'), 0)
                AS conversion
        FROM e WHERE product_id IS NOT NULL AND type IN ('view', 'purchase')
        GROUP BY product_id ORDER BY product_id
        """,
    )


def _revenue(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    rows = _rows(
        con,
        """
        SELECT product_id,
            arg_max(product_name, ts) FILTER (WHERE product_name IS NOT NULL) AS product_name,
            count(*) AS purchases, round(coalesce(sum(price), 0), 2) AS revenue
        FROM e WHERE type = 'purchase'
        GROUP BY product_id ORDER BY revenue DESC, product_id
        """,
    )
    return [{**row, "revenue": float(row["revenue"])} for row in rows]


def _queries(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    return _rows(
        con,
        """
        SELECT query, count(*) AS views FROM e
        WHERE type = 'view' AND query IS NOT NULL AND query <> ''
        GROUP BY query ORDER BY views DESC, query LIMIT ?
        """,
        [TOP_QUERIES],
    )


def _sources(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    return _rows(
        con,
        "SELECT package_id AS source, count(*) AS events FROM e GROUP BY ALL ORDER BY events DESC, source LIMIT ?",
        [TOP_SOURCES],
    )


def _invalid(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    grouped, parameters = invalid_group_sql()
    return _rows(
        con,
        f"""
        SELECT problem, count(*) AS count, min(reason) AS example
        FROM ({grouped}) GROUP BY problem ORDER BY count DESC, problem
        """,
        parameters,
    )


def figures(
    events: Source | None, invalid: Source | None, sessions: Source | None = None, include_bots: bool = False
) -> dict[str, Any]:
    """Every figure of the report, from the lake's events, invalid rows and sessions (lazy datasets, or tables).
    Bots' events and sessions are left out of every figure but their share, unless `include_bots`.

    The lake is scanned once, for the columns the report uses, into a DuckDB database in a temporary file: every
    figure is then computed from DuckDB's compressed columns, spilling to disk beyond MEMORY_LIMIT, so memory stays
    flat however large the lake (scanning the lake again for each figure would read S3 a dozen times).
    """
    with tempfile.TemporaryDirectory(prefix="lake-report-") as work:
        con = duckdb.connect(str(Path(work) / "report.duckdb"))
        try:
            return _figures(con, events, invalid, sessions, include_bots)
        finally:
            con.close()


#: DuckDB's memory for the report; beyond it, sorts and aggregations spill to its temporary file.
MEMORY_LIMIT = "512MB"


def _figures(
    con: duckdb.DuckDBPyConnection,
    events: Source | None,
    invalid: Source | None,
    sessions: Source | None,
    include_bots: bool,
) -> dict[str, Any]:
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    con.execute("SET preserve_insertion_order = false")
    _register(con, "events_arrow", events, EVENT_COLUMNS)
    _register(con, "invalid_arrow", invalid, INVALID_COLUMNS)
    _register(con, "sessions_arrow", sessions, SESSION_COLUMNS)
    # Timestamps as naive UTC from here on: bucketing and printing need no time-zone rules.
    con.execute(
        """
        CREATE TABLE e_all AS SELECT id, type, package_id, customer_id, lower(trim(query)) AS query, product_id,
            product_name, price, event_timestamp::TIMESTAMP AS ts, ingested_timestamp::TIMESTAMP AS ingested,
            coalesce(is_bot, false) AS is_bot
        FROM events_arrow
        """
    )
    con.execute(
        "CREATE TABLE s_all AS SELECT * EXCLUDE (session_start, is_bot), session_start::TIMESTAMP AS start, "
        "coalesce(is_bot, false) AS is_bot FROM sessions_arrow"
    )
    # Every figure reads e and s: without the bots' rows unless asked.
    keep = "true" if include_bots else "NOT is_bot"
    con.execute(f"CREATE VIEW e AS SELECT * FROM e_all WHERE {keep}")
    con.execute(f"CREATE VIEW s AS SELECT * FROM s_all WHERE {keep}")
    con.execute(
        "CREATE TABLE invalid AS SELECT code, path, reason, status_code, "
        "ingested_timestamp::TIMESTAMP AS ingested FROM invalid_arrow"
    )
    return {
        "empty": con.execute("SELECT (SELECT count(*) FROM e_all) + (SELECT count(*) FROM invalid)").fetchall()
        == [(0,)],
        "totals": _totals(con),
        "timeline": _timeline(con),
        "funnel": _funnel(con),
        "revenue": _revenue(con),
        "queries": _queries(con),
        "sources": _sources(con),
        "invalid": _invalid(con),
        "bots": {**_bots(con), "included": include_bots},
        "sessions_timeline": _sessions_timeline(con),
        "by_source": _conversion(con, SOURCE_MEDIUM, TOP_SOURCES),
        "by_campaign": _conversion(con, "utm_campaign", TOP_SOURCES),
        "devices": _split(con, "coalesce(device_class, '(unknown)')", TOP_SOURCES),
        "browsers": _split(con, "coalesce(browser_family, '(unknown)')", TOP_SOURCES),
        "landing_pages": _landing_pages(con),
    }


def _bots(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The bots' share of the events and of the sessions."""
    (row,) = _rows(
        con,
        """
        SELECT (SELECT count(*) FILTER (WHERE is_bot) FROM e_all) AS events,
            (SELECT count(*) FROM e_all) AS all_events,
            (SELECT count(*) FILTER (WHERE is_bot) FROM s_all) AS sessions,
            (SELECT count(*) FROM s_all) AS all_sessions
        """,
    )
    return row


def _sessions_timeline(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Sessions per time bucket of their start: bounced (one event) and engaged."""
    kinds = {"engaged": "count(*) FILTER (WHERE events > 1)", "bounced": "count(*) FILTER (WHERE events = 1)"}
    seconds, rows = _bucket_counts(con, "s", "start", kinds)
    return {
        "bucket_seconds": seconds,
        "bucket": bucket_name(seconds),
        "types": list(kinds),
        "unit": "sessions",
        "buckets": [{"start": _iso(r["bucket"]), "counts": {kind: r[kind] for kind in kinds}} for r in rows],
    }


#: A session's traffic source / medium: its campaign's tags, else its referrer's host and medium.
SOURCE_MEDIUM = (
    "coalesce(utm_source, referrer_host, '(direct)') || ' / ' || coalesce(utm_medium, referrer_medium, '(none)')"
)


def _conversion(con: duckdb.DuckDBPyConnection, key: str, top: int) -> list[dict[str, Any]]:
    """Sessions, converted sessions, conversion rate and revenue per `key` (the most sessions first)."""
    rows = _rows(
        con,
        f"""
        SELECT {key} AS name, count(*) AS sessions, count(*) FILTER (WHERE converted) AS converted,
            count(*) FILTER (WHERE converted)::DOUBLE / count(*) AS rate, round(coalesce(sum(revenue), 0), 2) AS revenue
        FROM s WHERE {key} IS NOT NULL GROUP BY ALL ORDER BY sessions DESC, name LIMIT ?
        """,
        [top],
    )
    return [{**row, "revenue": float(row["revenue"])} for row in rows]


def _split(con: duckdb.DuckDBPyConnection, key: str, top: int) -> list[dict[str, Any]]:
    return _rows(
        con,
        f"SELECT {key} AS name, count(*) AS sessions FROM s GROUP BY ALL ORDER BY sessions DESC, name LIMIT ?",
        [top],
    )


def _landing_pages(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The pages sessions start on (their path: a campaign's tags do not split a page), with their bounce rate."""
    return _rows(
        con,
        """
        SELECT split_part(landing_page, '?', 1) AS page, count(*) AS sessions,
            count(*) FILTER (WHERE events = 1)::DOUBLE / count(*) AS bounce_rate
        FROM s WHERE landing_page IS NOT NULL GROUP BY ALL ORDER BY sessions DESC, page LIMIT ?
        """,
        [TOP_PAGES],
    )
