"""Sessions cut from events, as pure transforms: a customer's events with gaps under the session gap are one session.

Both events and stored sessions become *pieces* (a piece is a run of one customer's events with the session's
aggregates: its first and last event, counts, sums, landing and exit), and pieces are cut into sessions the same way
whatever they came from: sorted by their first event, a piece starts a new session when it begins a gap or more
after every earlier piece ends. A single event is a piece; so is a stored session. The aggregates combine (counts
and sums add, the landing is the first piece's, the exit the last's), so a session cut from its stored pieces and
new events equals the one cut from all its events, which is what lets a round (sessions.py) read only the new
events and the stored sessions near them.

A session's id is a hash of the customer and its first event (its time and id), so a rebuild gives the same ids.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from pipeline.contract import PARTITION

#: Taken from the session's first event: where the visit came from and on what (the session's column: the event's).
LANDING_COLUMNS = {
    "package_id": "package_id",
    "landing_page": "page",
    "referrer_host": "referrer_host",
    "referrer_medium": "referrer_medium",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
    "utm_term": "utm_term",
    "utm_content": "utm_content",
    "device_class": "ua_device_class",
    "browser_family": "ua_browser_family",
    "os_family": "ua_os_family",
    "country": "geo_country",
}
#: The events table's columns a session is made of.
EVENT_COLUMNS = tuple(
    dict.fromkeys(["id", "customer_id", "event_timestamp", "type", "price", "is_bot", *LANDING_COLUMNS.values(), "dt"])
)
KEY = "session_id"
#: A piece's columns besides the landing ones. `last_event_id` orders pieces that end at the same moment; a stored
#: session does not keep it (sessions.py cuts such a tie from the events instead).
PIECE_COLUMNS = (
    "customer_id",
    "first_event_id",
    "last_event_id",
    "session_start",
    "session_end",
    "events",
    "page_views",
    "exit_page",
    "is_bot",
    "purchases",
    "revenue",
)


def micros(moment: Column | str) -> Column:
    return F.unix_micros(F.col(moment) if isinstance(moment, str) else moment)


def event_pieces(events: DataFrame) -> DataFrame:
    """Each event with a customer and a time as a piece of one event."""
    purchase = F.col("type") == "purchase"
    return events.where(F.col("customer_id").isNotNull() & F.col("event_timestamp").isNotNull()).select(
        "customer_id",
        F.col("id").alias("first_event_id"),
        F.col("id").alias("last_event_id"),
        F.col("event_timestamp").alias("session_start"),
        F.col("event_timestamp").alias("session_end"),
        F.lit(1).cast("bigint").alias("events"),
        F.when(F.col("type") == "view", 1).otherwise(0).cast("bigint").alias("page_views"),
        F.col("page").alias("exit_page"),
        F.coalesce(F.col("is_bot"), F.lit(False)).alias("is_bot"),
        F.when(purchase, 1).otherwise(0).cast("bigint").alias("purchases"),
        F.coalesce(F.when(purchase, F.col("price")), F.lit(0.0)).cast("double").alias("revenue"),
        *[F.col(source).alias(name) for name, source in LANDING_COLUMNS.items()],
    )


def stored_pieces(stored: DataFrame) -> DataFrame:
    """Stored sessions as pieces (their last event's id unknown: null)."""
    columns = [F.lit(None).cast("string").alias(c) if c == "last_event_id" else F.col(c) for c in PIECE_COLUMNS]
    return stored.select(*columns, *LANDING_COLUMNS)


def cut(pieces: DataFrame, gap_minutes: float) -> DataFrame:
    """The sessions the pieces make, one row each, in the sessions table's columns."""
    first = F.struct("session_start", "first_event_id")
    last = F.struct("session_end", "last_event_id")
    by_customer = Window.partitionBy("customer_id").orderBy("session_start", "first_event_id")
    ended = F.max("session_end").over(by_customer.rowsBetween(Window.unboundedPreceding, -1))
    gap = micros("session_start") - micros(ended)
    starts = F.coalesce(gap >= int(gap_minutes * 60 * 1_000_000), F.lit(True)).cast("int")
    numbered = pieces.withColumn("_starts", starts).withColumn(
        "_session", F.sum("_starts").over(by_customer.rowsBetween(Window.unboundedPreceding, Window.currentRow))
    )
    sessions = numbered.groupBy("customer_id", "_session").agg(
        F.min_by("first_event_id", first).alias("first_event_id"),
        F.min("session_start").alias("session_start"),
        F.max("session_end").alias("session_end"),
        F.sum("events").alias("events"),
        F.sum("page_views").alias("page_views"),
        *[F.min_by(name, first).alias(name) for name in LANDING_COLUMNS],
        F.max_by("exit_page", last).alias("exit_page"),
        F.bool_or("is_bot").alias("is_bot"),
        F.sum("purchases").alias("purchases"),
        F.sum("revenue").alias("revenue"),
    )
    session_id = F.substring(
        F.sha2(F.concat_ws("\u001f", "customer_id", micros("session_start").cast("string"), "first_event_id"), 256),
        1,
        32,
    )
    return sessions.select(
        session_id.alias(KEY),
        "customer_id",
        "package_id",
        "session_start",
        "session_end",
        ((micros("session_end") - micros("session_start")) / 1_000_000).alias("duration_s"),
        "events",
        "page_views",
        "landing_page",
        "exit_page",
        *[name for name in LANDING_COLUMNS if name not in ("package_id", "landing_page")],
        "is_bot",
        "purchases",
        (F.col("purchases") > 0).alias("converted"),
        "revenue",
        "first_event_id",
        F.date_format("session_start", "yyyy-MM-dd").alias(PARTITION),
    )


def sessions_of(events: DataFrame, gap_minutes: float) -> DataFrame:
    """The sessions of the given events (all of each customer's events in a stretch of time), one row each."""
    return cut(event_pieces(events), gap_minutes)


def empty_sessions(events: DataFrame) -> DataFrame:
    """An empty static frame with the sessions table's columns, from a frame (a stream's too) with the events'."""
    # Without the enrichment the events lack its columns (strings, is_bot aside): the table keeps its shape.
    types = {"is_bot": "boolean"} | {f.name: f.dataType for f in events.schema.fields}
    empty = events.sparkSession.range(0).select(
        *[F.lit(None).cast(types.get(name, "string")).alias(name) for name in EVENT_COLUMNS]
    )
    # The gap changes which sessions there are, not their columns.
    return sessions_of(empty, gap_minutes=30)
