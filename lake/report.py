"""`python -m lake.report`: one self-contained HTML page about what the lake holds.

Scans both Delta tables lazily (lake.reader's pyarrow datasets, from delta-rs), once, for the columns it needs, into
DuckDB (in-process, no extension to download) in a temporary file with a memory limit: the figures are computed
there, never from the lake as one table in memory. It writes an HTML file with inline CSS and inline SVG charts: no
script, font or stylesheet is fetched from anywhere, so the file opens offline and can be mailed around.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from chalicelib.contract import runtime_dir
from chalicelib.settings import setting
from lake.reader import INVALID_PREFIX, LAKE_PREFIX, SESSIONS_PREFIX, dataset

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

# --- figures ----------------------------------------------------------------------------------------------

#: Schema violations: (regex on the reason, kind). The reason starts with the JSON path of the offending value
#: ("$.event.price: ..."); both the collector's current wording (jsonschema-rs) and its earlier one are known.
VIOLATION_KINDS: tuple[tuple[str, str], ...] = (
    (r"is a required property$|must contain \[.*\] properties$", "missing"),
    (r"Additional properties are not allowed|must not contain .* properties$", "unexpected property"),
    (r"is not one of |must be one of ", "not an allowed value"),
    (r"is not valid under any of the schemas|must be valid by one of", "fits none of the allowed shapes"),
    (r"does not match |must match pattern ", "wrong format"),
    (r"(less|greater) than (or equal to )?the (minimum|maximum)|must be (bigger|smaller) than", "out of range"),
    (r"is (shorter|longer) than|must be (shorter|longer) than", "wrong length"),
    (r"is not of types? |must be (number|string|integer|object|array|boolean|null)", "wrong type"),
)
#: Problem codes (chalicelib/validation.py's Problem, the collector's refusals, the lake writer's own): (regex on
#: the code, kind). Rows with a code are grouped by it; the reason's wording is only read for older rows.
CODE_KINDS: tuple[tuple[str, str], ...] = (
    (r"^(schema|record)\.required$", "missing"),
    (r"^schema\.additional_properties$", "unexpected property"),
    (r"^schema\.(enum|const)$", "not an allowed value"),
    (r"^schema\.(any_of|one_of.*)$", "fits none of the allowed shapes"),
    (r"^schema\.format\.", "wrong format"),
    (r"^schema\.(exclusive_)?(minimum|maximum)$", "out of range"),
    (r"^schema\.(min|max)_length$", "wrong length"),
    (r"^schema\.type$", "wrong type"),
    (r"^lake\.timestamp\.instant$", "not a real instant"),
    (r"^lake\.timestamp\.window$", "outside the clock window"),
    (r"^lake\.integer\.range$", "not a whole number in range"),
    (r"^lake\.number\.finite$", "not a finite number"),
    (r"^event\.shape$", "not a JSON object"),
    (r"^record\.empty$", "an empty record"),
    (r"^record\.shape$", "not an event record"),
    (r"^body\.content_type$", "content type not accepted"),
    (r"^body\.size$", "body too large"),
    (r"^body\.malformed$", "body is not valid JSON"),
    (r"^body\.encoding$", "body is not UTF-8"),
    (r"^body\.depth$", "body is nested too deeply"),
    (r"^body\.shape$", "body is not an event or an array"),
    (r"^batch\.empty$", "empty array"),
    (r"^batch\.size$", "too many events in one batch"),
    (r"^size\.event$", "an event too large"),
)
#: Refused requests (the whole body, with an HTTP status): (regex on the reason, what went wrong).
REFUSAL_KINDS: tuple[tuple[str, str], ...] = (
    (r"^body is not valid JSON", "body is not valid JSON"),
    (r"^body is not UTF-8", "body is not UTF-8"),
    (r"^body is nested too deeply", "body is nested too deeply"),
    (r"^content type .* is not accepted", "content type not accepted"),
    (r"^body of \d+ bytes exceeds", "body too large"),
    (r"^batch of \d+ events exceeds", "too many events in one batch"),
    (r"event\(s\) exceed the per-event size limit", "an event too large"),
    (r"^body must be an event object or an array", "body is not an event or an array"),
    (r"^body is an empty array", "empty array"),
)


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


def _case(subject: str, rules: Sequence[tuple[str, str]], fallback: str) -> tuple[str, list[str]]:
    """A SQL CASE mapping `subject` through regex rules; the patterns and labels are bound as parameters."""
    whens = " ".join(f"WHEN regexp_matches({subject}, ?) THEN ?" for _ in rules)
    parameters = [item for rule in rules for item in rule]
    return f"CASE {whens} ELSE {fallback} END", parameters


def _invalid_group_sql() -> tuple[str, list[str]]:
    """SQL for one label per kind of problem: the JSON path plus the kind of violation, or the refusal."""
    # A generic form for an unknown wording: quoted values and numbers blanked out, so values do not split it.
    generic = r"""left(regexp_replace(regexp_replace({0}, '"[^"]*"|''[^'']*''', '…', 'g'), '[0-9]+', 'N', 'g'), 80)"""
    message = r"regexp_replace(reason, '^\$[^\s:]*:?\s*', '')"
    coded, coded_parameters = _case("code", CODE_KINDS, "code")
    kind, kind_parameters = _case("reason", VIOLATION_KINDS, generic.format(message))
    refusal, refusal_parameters = _case("reason", REFUSAL_KINDS, generic.format("reason"))
    # A missing property is reported on its parent ("$.event: \"price\" is a required property"): name it.
    missing = r"""coalesce(
        nullif(regexp_extract(reason, '"([^"]+)" is a required property$', 1), ''),
        nullif(regexp_replace(regexp_extract(reason, 'must contain \[(.*)\] properties$', 1), '[''\s]', '', 'g'), '')
    )"""
    path = r"regexp_extract(reason, '^(\$[^\s:]*)', 1)"
    sql = f"""
        SELECT CASE
            WHEN code IS NOT NULL THEN
                CASE WHEN status_code IS NOT NULL THEN 'HTTP ' || status_code ELSE coalesce(path, '$') END
                || ': ' || ({coded})
            WHEN status_code IS NOT NULL THEN 'HTTP ' || status_code || ': ' || coalesce(({refusal}), 'no reason')
            WHEN reason IS NULL THEN '(no reason)'
            WHEN reason = 'event must be a JSON object' THEN '$: not a JSON object'
            WHEN {path} = '' THEN {generic.format("reason")}
            WHEN {missing} IS NOT NULL THEN {path} || '.'
                || CASE WHEN contains({missing}, ',') THEN '{{' || {missing} || '}}' ELSE {missing} END
                || ': missing'
            ELSE {path} || ': ' || ({kind})
        END AS problem, reason
        FROM invalid
    """
    return sql, coded_parameters + refusal_parameters + kind_parameters


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
    grouped, parameters = _invalid_group_sql()
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


# --- SVG charts -------------------------------------------------------------------------------------------

COLOURS = {
    "click": "#4c78a8",
    "view": "#54a24b",
    "purchase": "#f58518",
    "invalid": "#e45756",
    "other": "#9d755d",
    "engaged": "#72b7b2",
    "bounced": "#bab0ac",
    "bot": "#b279a2",
}
VIEW_LIGHT = "#b8dcb2"
CHAR_WIDTH = 7.0  # width of a 12px sans-serif character (a little over the average), for laying out labels
BOLD_WIDTH = 7.6  # the same for bold digits


def fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def fmt_money(value: float, cents: bool = True) -> str:
    return f"${value:,.2f}" if cents else f"${value:,.0f}"


def fmt_short(value: float) -> str:
    """1234 -> 1.2k, for labels in tight places."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}".rstrip("0").rstrip(".") + suffix
    return fmt_int(value)


def nice_ticks(maximum: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least `maximum` (steps of 1, 2 or 5 times a power of ten)."""
    if maximum <= 0:
        return [0, 1]
    raw = maximum / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(maximum / step) + 1)]


def _svg(width: int, height: int, title: str, body: Iterable[str]) -> str:
    label = escape(title)
    return (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{label}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{label}</title>{"".join(body)}</svg>'
    )


def _text(x: float, y: float, content: str, anchor: str = "start", css: str = "", extra: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{cls}{extra}>{escape(content)}</text>'


def _clip(label: str, chars: int) -> str:
    return label if len(label) <= chars else label[: chars - 1] + "…"


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str  # the number printed at the bar's end
    tooltip: str = ""


def hbar_chart(title: str, bars: Sequence[Bar], colour: str, axis_label: str, width: int = 560) -> str:
    """Horizontal bars, largest first as given, with the value at each bar's end."""
    row, top, bottom = 26, 8, 34
    label_chars = min(max((len(b.label) for b in bars), default=4), 64 if width > 800 else 36)
    left = 16 + label_chars * CHAR_WIDTH
    right = 16 + max((len(b.text) for b in bars), default=4) * BOLD_WIDTH
    span = max(width - left - right, 40)
    top_value = max((b.value for b in bars), default=0) or 1
    height = top + row * len(bars) + bottom
    parts = []
    for i, bar in enumerate(bars):
        y = top + i * row
        length = max(span * bar.value / top_value, 1 if bar.value else 0)
        tip = escape(bar.tooltip or f"{bar.label}: {bar.text}")
        parts.append(
            f"<g><title>{tip}</title>"
            + _text(left - 8, y + row / 2 + 4, _clip(bar.label, label_chars), "end", "label")
            + f'<rect x="{left:.1f}" y="{y + 4}" width="{length:.1f}" height="{row - 8}" rx="3" fill="{colour}"/>'
            + _text(left + length + 6, y + row / 2 + 4, bar.text, css="value")
            + "</g>"
        )
    axis_y = top + row * len(bars)
    parts.append(f'<line x1="{left:.1f}" x2="{left:.1f}" y1="{top}" y2="{axis_y}" class="axis"/>')
    parts.append(_text(left + span / 2, axis_y + 24, axis_label, "middle", "axis-title"))
    return _svg(width, height, title, parts)


def funnel_chart(title: str, funnel: Sequence[dict[str, Any]], width: int = 560) -> str:
    """Per product: its page views (light bar), its purchases over them (dark bar) and the conversion."""
    row, top, bottom = 42, 28, 34
    labels = [_product_label(p) for p in funnel]
    label_chars = min(max((len(label) for label in labels), default=4), 28)
    left, right = 16 + label_chars * CHAR_WIDTH, 16 + 6 * BOLD_WIDTH
    span = width - left - right
    top_value = max((max(p["views"], p["purchases"]) for p in funnel), default=0) or 1
    parts = _legend((("product page views", VIEW_LIGHT), ("purchases", COLOURS["purchase"])), left, 12)
    for i, (product, label) in enumerate(zip(funnel, labels, strict=True)):
        y = top + i * row
        views, purchases = product["views"], product["purchases"]
        conversion = "n/a" if product["conversion"] is None else f"{100 * product['conversion']:.1f}%"
        caption = f"{fmt_int(views)} views → {fmt_int(purchases)} purchases"
        views_w, purchases_w = span * views / top_value, span * purchases / top_value
        parts.append(
            f"<g><title>{escape(label)}: {escape(caption)}, conversion {conversion}</title>"
            + _text(left - 8, y + 17, _clip(label, label_chars), "end", "label")
            + f'<rect x="{left:.1f}" y="{y + 4}" width="{views_w:.1f}" height="18" rx="3" fill="{VIEW_LIGHT}"/>'
            + f'<rect x="{left:.1f}" y="{y + 4}" width="{purchases_w:.1f}" height="18" rx="3" '
            f'fill="{COLOURS["purchase"]}"/>'
            + _text(left + max(views_w, purchases_w) + 6, y + 17, conversion, css="value")
            + _text(left, y + 36, caption, css="caption")
            + "</g>"
        )
    axis_y = top + row * len(funnel)
    parts.append(f'<line x1="{left:.1f}" x2="{left:.1f}" y1="{top}" y2="{axis_y}" class="axis"/>')
    parts.append(_text(left + span / 2, axis_y + 24, "events; % = purchases per view", "middle", "axis-title"))
    return _svg(width, axis_y + bottom, title, parts)


def _time_label(start: str, seconds: int, previous: str | None) -> str:
    """HH:MM, with the date where the day changes (only the date for buckets of a day or more)."""
    moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
    day = moment.strftime("%b %d")
    if seconds >= 86400:
        return day
    return f"{day} {moment:%H:%M}" if previous is None or previous[:10] != start[:10] else f"{moment:%H:%M}"


def timeline_chart(title: str, timeline: dict[str, Any], width: int = 1160, height: int = 300) -> str:
    """Stacked bars of events per type and time bucket, with a y axis, time labels and a legend."""
    buckets, types, seconds = timeline["buckets"], timeline["types"], timeline["bucket_seconds"]
    left, right, top, bottom = 64, 16, 30, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(b["counts"].values()) for b in buckets]
    ticks = nice_ticks(max(totals, default=0))
    scale = plot_h / ticks[-1]
    slot = plot_w / max(len(buckets), 1)
    parts = []
    for tick in ticks:
        y = top + plot_h - tick * scale
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(_text(left - 6, y + 4, fmt_short(tick), "end", "tick"))
    label_every = max(1, math.ceil(len(buckets) / (plot_w / 90)))
    previous_label: str | None = None
    for i, (bucket, total) in enumerate(zip(buckets, totals, strict=True)):
        x, y = left + i * slot + slot * 0.1, top + plot_h
        breakdown = ", ".join(f"{t} {fmt_int(bucket['counts'][t])}" for t in types)
        parts.append(f"<g><title>{escape(bucket['start'])} ({timeline['bucket']}): {escape(breakdown)}</title>")
        for kind in types:
            h = bucket["counts"][kind] * scale
            y -= h
            colour = COLOURS.get(kind, COLOURS["other"])
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.8:.1f}" height="{h:.1f}" fill="{colour}"/>')
        if slot >= 34 and total:
            parts.append(_text(x + slot * 0.4, y - 4, fmt_short(total), "middle", "value"))
        parts.append("</g>")
        if i % label_every == 0:
            label = _time_label(bucket["start"], seconds, previous_label)
            previous_label = bucket["start"]
            # The first label starts at its bar, so a long one (with the date) stays clear of the y axis.
            at, anchor = (x, "start") if i == 0 else (x + slot * 0.4, "middle")
            parts.append(_text(at, top + plot_h + 16, label, anchor, "tick"))
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" class="axis"/>')
    unit = timeline.get("unit", "events")
    moment = "event time" if unit == "events" else "start time"
    parts.append(_text(left + plot_w / 2, height - 12, f"{moment} (UTC)", "middle", "axis-title"))
    parts.append(
        _text(
            14,
            top + plot_h / 2,
            f"{unit} per {timeline['bucket']}",
            "middle",
            "axis-title",
            f' transform="rotate(-90 14 {top + plot_h / 2:.1f})"',
        )
    )
    parts.extend(_legend(((t, COLOURS.get(t, COLOURS["other"])) for t in types), left, 14))
    return _svg(width, height, title, parts)


def _legend(entries: Iterable[tuple[str, str]], x: float, y: float) -> list[str]:
    parts = []
    for name, colour in entries:
        parts.append(f'<rect x="{x:.1f}" y="{y - 9}" width="11" height="11" rx="2" fill="{colour}"/>')
        parts.append(_text(x + 16, y, name, css="label"))
        x += 32 + len(name) * CHAR_WIDTH
    return parts


def _product_label(product: dict[str, Any]) -> str:
    name = product.get("product_name")
    return f"{name} ({product['product_id']})" if name else f"product {product['product_id']}"


# --- HTML -------------------------------------------------------------------------------------------------

CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --bg: #f5f7fa; --card: #fff; --accent: #4c78a8; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 28px 24px 40px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 0; color: var(--muted); }
.numbers { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 12px; margin: 20px 0; }
.number, .chart { background: var(--card); border: 1px solid var(--line); border-radius: 10px; }
.number { padding: 14px 16px; border-top: 4px solid var(--accent); }
.number .name { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.number .value { font-size: 24px; font-weight: 650; margin-top: 2px; font-variant-numeric: tabular-nums; }
.number .note { color: var(--muted); font-size: 12px; }
.charts { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; }
.chart { padding: 16px 18px 10px; }
.chart.wide { grid-column: 1 / -1; }
.chart h2 { margin: 0 0 2px; font-size: 16px; }
.chart .sub { margin: 0 0 10px; color: var(--muted); font-size: 12px; }
.empty { color: var(--muted); padding: 24px 0; text-align: center; }
.nodata { background: var(--card); border: 1px dashed #cbd2d9; border-radius: 10px; padding: 48px 24px;
  text-align: center; color: var(--muted); font-size: 16px; }
footer { margin-top: 20px; color: var(--muted); font-size: 12px; }
svg { display: block; height: auto; font-family: inherit; }
svg .label { font-size: 12px; fill: var(--ink); }
svg .value { font-size: 12px; fill: var(--ink); font-weight: 600; }
svg .caption { font-size: 11px; fill: var(--muted); }
svg .tick { font-size: 11px; fill: var(--muted); }
svg .axis-title { font-size: 12px; fill: var(--muted); }
svg .axis { stroke: #9aa5b1; stroke-width: 1; }
svg .grid { stroke: var(--line); stroke-width: 1; }
@media (max-width: 800px) { .charts, .numbers { grid-template-columns: 1fr 1fr; } .chart { grid-column: 1 / -1; } }
"""


def _moment(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _duration(seconds: float) -> str:
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _time_range(first: str | None, last: str | None) -> tuple[str, str]:
    """The events' time range for a card: a short value and a note."""
    if first is None or last is None:
        return "n/a", "no events yet"
    start, end = _moment(first), _moment(last)
    span = _duration((end - start).total_seconds())
    if start.date() == end.date():
        return f"{start:%H:%M} → {end:%H:%M}", f"{start:%Y-%m-%d} UTC · {span} of events"
    return f"{start:%b %d} → {end:%b %d}", f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC · {span}"


def _freshness(iso: str | None, now: datetime) -> tuple[str, str]:
    if iso is None:
        return "n/a", "nothing ingested yet"
    moment = _moment(iso)
    return f"{moment:%H:%M:%S} UTC", f"{moment:%Y-%m-%d} · {_duration((now - moment).total_seconds())} ago"


def _number(name: str, value: str, note: str = "", colour: str = "") -> str:
    style = f' style="border-top-color:{colour}"' if colour else ""
    note_html = f'<div class="note">{escape(note)}</div>' if note else ""
    return (
        f'<div class="number"{style}><div class="name">{escape(name)}</div>'
        f'<div class="value">{escape(value)}</div>{note_html}</div>'
    )


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def key_numbers(totals: dict[str, Any], bots: dict[str, Any], now: datetime) -> str:
    views, purchases, sessions = totals["product_views"], totals["purchases"], totals["sessions"]
    conversion = f"{100 * purchases / views:.1f}% of product views" if views else ""
    by_type = ", ".join(f"{fmt_int(n)} {t}" for t, n in totals["by_type"].items())
    per_session = f"{totals['events'] / sessions:.1f} events each" if sessions else "from clickstream-sessions"
    average = f"{fmt_money(totals['revenue'] / purchases)} per purchase" if purchases else ""
    invalid_note = f"+ {fmt_int(totals['refused_requests'])} refused requests"
    bot_note = f"{_share(bots['sessions'], bots['all_sessions'])} of sessions; " + (
        "included in the figures" if bots["included"] else "left out of the figures"
    )
    cards = [
        _number("Events in the lake", fmt_int(totals["events"]), by_type),
        _number("Customers", fmt_int(totals["customers"]), "distinct customer_id"),
        _number("Sessions", fmt_int(sessions), per_session),
        _number("Bounce rate", _share(totals["bounced_sessions"], sessions), "sessions of a single event"),
        _number("Purchases", fmt_int(purchases), conversion, COLOURS["purchase"]),
        _number("Revenue", fmt_money(totals["revenue"]), average, COLOURS["purchase"]),
        _number(
            "Converted sessions",
            _share(totals["converted_sessions"], sessions),
            f"{fmt_int(totals['converted_sessions'])} sessions with a purchase",
            COLOURS["purchase"],
        ),
        _number("Invalid events", fmt_int(totals["invalid_events"]), invalid_note, COLOURS["invalid"]),
        _number("Bot events", _share(bots["events"], bots["all_events"]), bot_note, COLOURS["bot"]),
        _number("Time range", *_time_range(totals["first_event"], totals["last_event"])),
        _number("Freshness (last ingested)", *_freshness(totals["freshness"], now)),
        _number(
            "Revenue per session",
            fmt_money(totals["revenue"] / sessions) if sessions else "n/a",
            "revenue over every session",
            COLOURS["purchase"],
        ),
    ]
    return f'<section class="numbers" aria-label="key numbers">{"".join(cards)}</section>'


def _card(title: str, sub: str, content: str, wide: bool = False) -> str:
    cls = "chart wide" if wide else "chart"
    return f'<section class="{cls}"><h2>{escape(title)}</h2><p class="sub">{escape(sub)}</p>{content}</section>'


def _or_empty(rows: Sequence[Any], chart: str, message: str) -> str:
    return chart if rows else f'<p class="empty">{escape(message)}</p>'


def _bars(fig: dict[str, Any]) -> dict[str, list[Bar]]:
    """The bars of the horizontal bar charts, with their printed values and tooltips."""
    revenue = [
        Bar(
            _product_label(p),
            p["revenue"],
            fmt_money(p["revenue"], cents=False),
            f"{_product_label(p)}: {fmt_money(p['revenue'])} from {fmt_int(p['purchases'])} purchases",
        )
        for p in fig["revenue"]
    ]
    queries = [Bar(q["query"], q["views"], fmt_int(q["views"])) for q in fig["queries"]]
    invalid = [Bar(g["problem"], g["count"], fmt_int(g["count"]), f"e.g. {g['example']}") for g in fig["invalid"]]
    sources = [Bar(r["source"] or "(none)", r["events"], fmt_int(r["events"])) for r in fig["sources"]]
    conversion = {
        key: [
            Bar(
                r["name"],
                r["rate"],
                f"{100 * r['rate']:.1f}% of {fmt_int(r['sessions'])}",
                f"{r['name']}: {fmt_int(r['converted'])} of {fmt_int(r['sessions'])} sessions converted, "
                f"{fmt_money(r['revenue'])}",
            )
            for r in fig[key]
        ]
        for key in ("by_source", "by_campaign")
    }
    splits = {
        key: [Bar(r["name"], r["sessions"], fmt_int(r["sessions"])) for r in fig[key]]
        for key in ("devices", "browsers")
    }
    pages = [
        Bar(
            r["page"],
            r["sessions"],
            fmt_int(r["sessions"]),
            f"{r['page']}: {fmt_int(r['sessions'])} sessions, {100 * r['bounce_rate']:.1f}% bounced",
        )
        for r in fig["landing_pages"]
    ]
    return {
        "revenue": revenue,
        "queries": queries,
        "invalid": invalid,
        "sources": sources,
        **conversion,
        **splits,
        "landing_pages": pages,
    }


def charts(fig: dict[str, Any]) -> str:
    timeline, funnel, bars = fig["timeline"], fig["funnel"], _bars(fig)
    revenue_chart = hbar_chart("Revenue per product", bars["revenue"], COLOURS["purchase"], "revenue (USD)")
    query_chart = hbar_chart("Top search queries", bars["queries"], COLOURS["view"], "search result views")
    invalid_chart = hbar_chart(
        "Invalid events by problem", bars["invalid"], COLOURS["invalid"], "invalid events", width=1160
    )
    source_chart = hbar_chart("Events per source", bars["sources"], COLOURS["click"], "events")
    visits = fig["sessions_timeline"]
    session_cards = [
        _card(
            "Sessions over time",
            f"sessions per {visits['bucket']} by start (UTC): engaged, and bounced (a single event)",
            _or_empty(visits["buckets"], timeline_chart("Sessions over time", visits), "No sessions."),
            wide=True,
        ),
        *[
            _card(
                title,
                sub,
                _or_empty(bars[key], hbar_chart(title, bars[key], COLOURS[colour], axis), "No sessions."),
            )
            for key, title, sub, colour, axis in (
                (
                    "by_source",
                    "Conversion per source / medium",
                    "sessions with a purchase, by utm_source / utm_medium, else referrer host / medium",
                    "purchase",
                    "converted sessions (share)",
                ),
                (
                    "by_campaign",
                    "Conversion per campaign",
                    "sessions with a purchase, by utm_campaign of the landing page",
                    "purchase",
                    "converted sessions (share)",
                ),
                ("devices", "Devices", "sessions per device class", "engaged", "sessions"),
                ("browsers", "Browsers", f"sessions per browser family (top {TOP_SOURCES})", "engaged", "sessions"),
            )
        ],
        _card(
            "Top landing pages",
            f"the {TOP_PAGES} pages most sessions start on (path only); the tooltip gives their bounce rate",
            _or_empty(
                bars["landing_pages"],
                hbar_chart("Top landing pages", bars["landing_pages"], COLOURS["view"], "sessions", width=1160),
                "No sessions.",
            ),
            wide=True,
        ),
    ]
    parts = [
        _card(
            "Events over time",
            f"events per {timeline['bucket']} and type, by event time (UTC)",
            _or_empty(timeline["buckets"], timeline_chart("Events per type over time", timeline), "No events."),
            wide=True,
        ),
        *session_cards,
        _card(
            "View → purchase funnel per product",
            "product page views, purchases and conversion",
            _or_empty(funnel, funnel_chart("View to purchase funnel per product", funnel), "No product views."),
        ),
        _card(
            "Revenue per product",
            "sum of purchase prices (USD)",
            _or_empty(bars["revenue"], revenue_chart, "No purchases."),
        ),
        _card(
            "Top search queries",
            f"the {TOP_QUERIES} most frequent queries of search result views (lower-cased)",
            _or_empty(bars["queries"], query_chart, "No searches."),
        ),
        _card(
            "Events per source",
            f"package_id of the sending tracker or app (top {TOP_SOURCES})",
            _or_empty(bars["sources"], source_chart, "No events."),
        ),
        _card(
            "Invalid events by problem",
            "JSON path and kind of schema violation; refused requests by HTTP status and cause",
            _or_empty(bars["invalid"], invalid_chart, "No invalid events."),
            wide=True,
        ),
    ]
    return f'<div class="charts">{"".join(parts)}</div>'


def render_html(fig: dict[str, Any], generated_at: datetime | None = None, source: str = "") -> str:
    """The report as one HTML document: inline CSS and SVG, nothing to fetch."""
    now = generated_at or datetime.now(UTC)
    stamp = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    about = f"{escape(source)} · " if source else ""
    bots_note = (
        "Bots (is_bot) are included."
        if fig["bots"]["included"]
        else "Bots (is_bot) are left out of every figure but their share (--include-bots keeps them)."
    )
    body = (
        '<div class="nodata" role="status">No data in the lake yet. Send some events (<code>make run</code>) '
        "and run the report again.</div>"
        if fig["empty"]
        else charts(fig)
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Clickstream lake report</title>
<style>{CSS}</style>
</head>
<body>
<main>
<header><h1>Clickstream lake report</h1><p>{about}generated {stamp}</p></header>
{key_numbers(fig["totals"], fig["bots"], now)}
{body}
<footer>Committed rows only (the Delta tables' current versions, read with delta-rs). Sessions: the
clickstream-sessions table, a customer's events with less than the lake writer's gap (SESSION_GAP_MINUTES) between
them. {bots_note} Invalid events: rejected events and refused requests kept by the collector.</footer>
</main>
</body>
</html>
"""


# --- command ----------------------------------------------------------------------------------------------


def default_output() -> Path:
    return runtime_dir() / "report" / "lake-report.html"


def write_report(output: Path | None = None, include_bots: bool = False) -> tuple[Path, dict[str, Any]]:
    """The report of what the lake holds, written to `output` (default: <runtime>/report/); its path and totals."""
    fig = figures(dataset(LAKE_PREFIX), dataset(INVALID_PREFIX), dataset(SESSIONS_PREFIX), include_bots)
    output = output or default_output()
    output.parent.mkdir(parents=True, exist_ok=True)
    source = f"s3://{setting('LAKE_BUCKET')}/{{{LAKE_PREFIX},{INVALID_PREFIX},{SESSIONS_PREFIX}}}"
    output.write_text(render_html(fig, source=source), encoding="utf-8")
    return output.resolve(), fig["totals"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lake.report", description=__doc__)
    parser.add_argument("--output", type=Path, help="where to write the HTML (default: <runtime>/report/)")
    parser.add_argument("--include-bots", action="store_true", help="count bots' events and sessions too")
    args = parser.parse_args(argv)
    output, totals = write_report(args.output, args.include_bots)
    print(json.dumps(totals, indent=2))
    print(f"report: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
