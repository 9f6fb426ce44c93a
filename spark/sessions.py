"""Server-side sessions: the clickstream-sessions Delta table, one row per visit, kept by the lake writer.

A customer's events with gaps under the session gap (30 minutes by default) are one session. Its id is a hash of the
customer and the session's first event (its time and id), so a rebuild of the lake gives the same ids.

SESSIONS_INTERVAL_S (30 s) after each round, a thread of the lake writer recomputes the sessions of the customers
with events committed since its last round (the events table's change data feed), from the events table (an
incremental job over the lake, not Spark's stateful operators):
1. the new events give each customer's window [first, last event];
2. the stored sessions of that customer ending within a gap before it or starting within a gap after it widen it;
3. the customer's events in the widened window are cut into sessions again;
4. one MERGE replaces the stored sessions: a session that grew is updated, one a late event merged into another is
   deleted, a new one inserted. Sessions that came out unchanged are left alone.
Why over the lake rather than applyInPandasWithState / transformWithStateInPandas: a late event can merge two
sessions already written, which an append-only state output cannot take back (its rows would have to be MERGEd
anyway); state holds what arrived, in arrival order, so ids would depend on it, while the lake's rows give the same
sessions whatever the order, after a restart or a rebuild; an event-time watermark would drop events later than it,
where the lake keeps every one; and those operators need pandas in every Python worker. The price is a read of the
touched customers' days per round (partition-pruned, projected), and sessions up to a round behind the events.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import date, timedelta
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

import lake_tables
from maintenance import Maintenance
from pipeline.config_sections import SessionsConfig
from pipeline.contract import PARTITION

#: Taken from the session's first event: where the visit came from and on what.
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


def _micros(moment: Column | str) -> Column:
    return F.unix_micros(F.col(moment) if isinstance(moment, str) else moment)


def enable_change_feed(spark: SparkSession, events_path: str) -> None:
    """The events table's change data feed, which the rounds read (a table property; an insert-only MERGE writes
    no extra files for it, and readers without the feature read the table as before)."""
    properties = {row["key"]: row["value"] for row in spark.sql(f"SHOW TBLPROPERTIES delta.`{events_path}`").collect()}
    if properties.get(CHANGE_FEED) != "true":
        spark.sql(f"ALTER TABLE delta.`{events_path}` SET TBLPROPERTIES ('{CHANGE_FEED}' = 'true')")


CHANGE_FEED = "delta.enableChangeDataFeed"


def sessions_of(events: DataFrame, gap_minutes: float) -> DataFrame:
    """The sessions of the given events (all of each customer's events in a stretch of time), one row each."""
    order = F.struct("event_timestamp", "id")
    by_customer = Window.partitionBy("customer_id").orderBy("event_timestamp", "id")
    gap = _micros("event_timestamp") - _micros(F.lag("event_timestamp").over(by_customer))
    starts = F.coalesce(gap >= int(gap_minutes * 60 * 1_000_000), F.lit(True)).cast("int")
    numbered = events.withColumn("_starts", starts).withColumn(
        "_session", F.sum("_starts").over(by_customer.rowsBetween(Window.unboundedPreceding, Window.currentRow))
    )
    purchase = F.col("type") == "purchase"
    sessions = numbered.groupBy("customer_id", "_session").agg(
        F.min_by("id", order).alias("first_event_id"),
        F.min("event_timestamp").alias("session_start"),
        F.max("event_timestamp").alias("session_end"),
        F.count(F.lit(1)).alias("events"),
        F.count(F.when(F.col("type") == "view", 1)).alias("page_views"),
        *[F.min_by(source, order).alias(name) for name, source in LANDING_COLUMNS.items()],
        F.max_by("page", order).alias("exit_page"),
        F.coalesce(F.bool_or("is_bot"), F.lit(False)).alias("is_bot"),
        F.count(F.when(purchase, 1)).alias("purchases"),
        F.coalesce(F.sum(F.when(purchase, F.col("price"))), F.lit(0.0)).alias("revenue"),
    )
    session_id = F.substring(
        F.sha2(F.concat_ws("\u001f", "customer_id", _micros("session_start").cast("string"), "first_event_id"), 256),
        1,
        32,
    )
    return sessions.select(
        session_id.alias(KEY),
        "customer_id",
        "package_id",
        "session_start",
        "session_end",
        ((_micros("session_end") - _micros("session_start")) / 1_000_000).alias("duration_s"),
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


def empty_sessions(events: DataFrame) -> DataFrame:
    """An empty static frame with the sessions table's columns, from a frame (a stream's too) with the events'."""
    # Without the enrichment the events lack its columns (strings, is_bot aside): the table keeps its shape.
    types = {"is_bot": "boolean"} | {f.name: f.dataType for f in events.schema.fields}
    empty = events.sparkSession.range(0).select(
        *[F.lit(None).cast(types.get(name, "string")).alias(name) for name in EVENT_COLUMNS]
    )
    # The gap changes which sessions there are, not their columns.
    return sessions_of(empty, gap_minutes=30)


class SessionsUpdater:
    """Keeps the sessions table up to date with the events table, on a thread of its own, `interval_s` after each
    round.

    Each round reads the rows the events table's commits since the mark added (its change data feed: only their
    files, however large the table), and recomputes those customers' sessions. The mark, the events table's version
    a round was made from, is kept in the sessions table's commit (Delta's userMetadata), so a restart resumes where
    the last commit was; with no mark (a new table) the first round makes every session of the lake. A round
    repeated after a crash writes the same rows.
    """

    def __init__(
        self, spark: SparkSession, path: str, events_path: str, maintenance: Maintenance,
        config: SessionsConfig, stopping: threading.Event, note: lake_tables.Note = lake_tables.log_note,
    ) -> None:  # fmt: skip
        # A session of its own, with the lake writer's settings: the commit's metadata set for the MERGE is not
        # seen by other writers' commits.
        self.spark = spark.newSession()
        for key, value in spark.conf.getAll.items():
            if self.spark.conf.isModifiable(key):
                self.spark.conf.set(key, value)
        self.path, self.events_path = path, events_path
        self.maintenance = maintenance
        self.gap_minutes, self.interval_s = config.gap_minutes, config.interval_s
        self.stopping, self.note = stopping, note
        self._mark: int | None = None
        self._mark_read = False

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name=f"sessions {self.path}", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        context = self.spark.sparkContext
        # Its jobs wait behind the latest topic's tasks, beside the tables' batches (scheduler-pools.xml).
        context.setLocalProperty("spark.scheduler.pool", "sessions")
        # The first round at once (after a restart it catches up on what the last one missed); then a pause of
        # interval_s after each round, so rounds never run back to back on a busy driver. A stop waits for the
        # round under way (its MERGE) to end.
        while not self.stopping.is_set():
            try:
                self.update()
            except Exception as exc:  # a failed round must not stop the lake: the next one starts from the same mark
                self.note("sessions", {"failed": str(exc)[:500]})
            self.stopping.wait(self.interval_s)

    def update(self) -> dict[str, Any]:
        """One round: the sessions of the customers with events committed since the mark, recomputed and merged."""
        started = time.monotonic()
        if not self._mark_read:
            self._mark, self._mark_read = self._stored_mark(), True
        version = self._events_version()
        if version is None or (self._mark is not None and self._mark >= version):
            return {"customers": 0}
        # Every read of this round is of one version of the events table: what a later commit adds, the next
        # round takes.
        events = self.spark.read.format("delta").option("versionAsOf", version).load(self.events_path)
        touched, earliest, customers = self._touched(version, events)
        try:
            days: list[str] = []
            if customers:
                with self.maintenance.lock:
                    days = self._recompute(touched, events, earliest, version)
                self.maintenance.wrote(days)
            self._mark = version
        finally:
            touched.unpersist()
        figures = {"customers": customers, "days": days, "events_version": version, "ms": _ms_since(started)}
        self.note("sessions", figures)
        return figures

    def _events_version(self) -> int | None:
        rows = self.spark.sql(f"DESCRIBE HISTORY delta.`{self.events_path}` LIMIT 1").collect()
        return rows[0]["version"] if rows else None

    def _touched(self, version: int, events: DataFrame) -> tuple[DataFrame, int | None, int]:
        """Each customer's window [first, last event] among the rows the commits after the mark added (the events
        table's change data feed), cached, with the earliest event and the customer count. All the rows when there
        is no mark, or when the feed does not reach back to it (enabled later, or its log cleaned up)."""
        if self._mark is not None:
            added = (
                self.spark.read.format("delta")
                .option("readChangeFeed", "true")
                .option("startingVersion", self._mark + 1)
                .option("endingVersion", version)
                .load(self.events_path)
                # Appended rows, and the copies a sweep deleted (a session counted them).
                .where(F.col("_change_type").isin("insert", "delete"))
            )
            windows = _windows(added)
            try:
                return windows, *_earliest_and_count(windows)
            except Exception as exc:  # the feed's versions are checked when it is read; a rebuild is always right
                windows.unpersist()
                self.note("sessions", {"rebuilding": str(exc)[:300]})
        windows = _windows(events)
        return windows, *_earliest_and_count(windows)

    def _stored_mark(self) -> int | None:
        """The events table's version the last sessions commit was made from."""
        for row in self.spark.sql(f"DESCRIBE HISTORY delta.`{self.path}` LIMIT 100").collect():
            if row["userMetadata"]:
                try:
                    return int(json.loads(row["userMetadata"])[MARK])
                except (ValueError, KeyError, TypeError):
                    continue
        return None

    def _recompute(self, touched: DataFrame, events: DataFrame, earliest: int, mark: int) -> list[str]:
        """Replace the stored sessions near the touched customers' windows by the sessions of their events."""
        spark = self.spark
        gap = F.expr(f"INTERVAL {int(self.gap_minutes * 60 * 1_000_000)} MICROSECONDS")
        stored = spark.read.format("delta").load(self.path)
        nearby = (
            # A bound on every touched customer's window first: Delta skips the files that end before it.
            stored.where(F.col("session_end") >= F.timestamp_micros(F.lit(earliest)) - gap)
            .join(F.broadcast(touched), "customer_id")
            .where((F.col("session_end") >= F.col("lo") - gap) & (F.col("session_start") <= F.col("hi") + gap))
            .drop("lo", "hi")
            .persist()
        )
        spans = nearby.select("customer_id", F.col("session_start").alias("lo"), F.col("session_end").alias("hi"))
        windows = (
            touched.unionByName(spans)
            .groupBy("customer_id")
            .agg(F.min("lo").alias("lo"), F.max("hi").alias("hi"))
            .persist()
        )
        frames = [nearby, windows]
        try:
            day_spans = windows.select(*[F.date_format(c, "yyyy-MM-dd").alias(c) for c in ("lo", "hi")]).distinct()
            days = _merged([(row["lo"], row["hi"]) for row in day_spans.collect()])
            rows = (
                events.where(_within(F.col(PARTITION), days))
                .select(*[c for c in EVENT_COLUMNS if c in events.columns])
                .join(F.broadcast(windows), "customer_id")
                .where(F.col("event_timestamp").between(F.col("lo"), F.col("hi")))
                .drop("lo", "hi")
            )
            fresh = sessions_of(rows, self.gap_minutes).persist()
            frames.append(fresh)
            columns = fresh.columns
            # Sessions that came out as stored are not written again (a MERGE rewrites every file it matches in).
            changed = fresh.exceptAll(nearby.select(*columns))
            gone = nearby.select(KEY, PARTITION).join(fresh.select(KEY), KEY, "left_anti")
            # Computed once, its plan cut off (a local checkpoint): the MERGE analyses and reads a plain scan, not the
            # whole plan above, which took seconds of a round's driver time however few the rows.
            source = (
                changed.withColumn("_gone", F.lit(False))
                .unionByName(gone.withColumn("_gone", F.lit(True)), allowMissingColumns=True)
                .localCheckpoint()
            )
            written = sorted(r[0] for r in source.select(PARTITION).distinct().collect())
            if written:
                self._merge(source, columns, written, mark)
            return written
        finally:
            for frame in frames:
                frame.unpersist()

    def _merge(self, source: DataFrame, columns: list[str], days: list[str], mark: int) -> None:
        spark = self.spark
        view = "sessions_changes"
        source.createOrReplaceTempView(view)
        names, values = ", ".join(f"`{c}`" for c in columns), ", ".join(f"s.`{c}`" for c in columns)
        try:
            with lake_tables.session_conf(spark, {USER_METADATA: json.dumps({MARK: mark})}):
                spark.sql(
                    f"""
                    MERGE INTO delta.`{self.path}` AS t USING {view} AS s
                    ON t.{PARTITION} IN ({lake_tables.in_list(days)})
                       AND t.{PARTITION} = s.{PARTITION} AND t.{KEY} = s.{KEY}
                    WHEN MATCHED AND s._gone THEN DELETE
                    WHEN MATCHED THEN UPDATE SET {", ".join(f"t.`{c}` = s.`{c}`" for c in columns)}
                    WHEN NOT MATCHED AND NOT s._gone THEN INSERT ({names}) VALUES ({values})
                    """
                )
        finally:
            spark.catalog.dropTempView(view)


def _windows(events: DataFrame) -> DataFrame:
    """Each customer's first and last event time among `events`, cached."""
    return (
        events.where(F.col("customer_id").isNotNull() & F.col("event_timestamp").isNotNull())
        .groupBy("customer_id")
        .agg(F.min("event_timestamp").alias("lo"), F.max("event_timestamp").alias("hi"))
        .persist()
    )


def _earliest_and_count(windows: DataFrame) -> tuple[int | None, int]:
    """The earliest event of the windows, as microseconds (Python's datetime starts at year 1, a Spark timestamp
    earlier), and how many customers they are."""
    return tuple(windows.agg(F.min(_micros("lo")), F.count(F.lit(1))).first())  # type: ignore[return-value]


def _merged(spans: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Day ranges (ISO days, first and last included) merged where they overlap or touch, in order."""
    merged: list[tuple[str, str]] = []
    for first, last in sorted(spans):
        if merged and first <= _next_day(merged[-1][1]):
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _next_day(day: str) -> str:
    moment = date.fromisoformat(day)
    return day if moment == date.max else (moment + timedelta(days=1)).isoformat()


def _within(dt: Column, ranges: list[tuple[str, str]]) -> Column:
    """dt in one of the day ranges: a partition filter Delta prunes with (dt is yyyy-MM-dd, so text order is time
    order). Ranges, not every day: a customer's window may span years (a client clock far off)."""
    condition = F.lit(False)
    for first, last in ranges:
        condition = condition | dt.between(first, last)
    return condition


#: Where a commit keeps its metadata, and the key of the mark in it.
USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
MARK = "events_version"


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
