"""Server-side sessions: the clickstream-sessions Delta table, one row per visit, kept by the lake writer.

A customer's events with gaps under the session gap (30 minutes by default) are one session (sessionize.py cuts
them). Its id is a hash of the customer and the session's first event (its time and id), so a rebuild of the lake
gives the same ids.

SESSIONS_INTERVAL_S (30 s) after each round, a thread of the lake writer recomputes the sessions of the customers
with events committed since its last round (an incremental job over the lake, not Spark's stateful operators):
1. the events table's change data feed gives the new events, and each customer's window [first, last event];
2. the stored sessions of that customer ending within a gap before it or starting within a gap after it are the
   ones the new events can extend, merge or leave alone;
3. those stored sessions and the new events are cut into sessions again: a stored session is a piece of its
   events, so the events table itself is not read;
4. one commit replaces the stored sessions: an append when every changed session is new, else a MERGE (a session
   that grew is updated, one a late event merged into another is deleted, a new one inserted). Sessions that came
   out unchanged are left alone.
A customer whose rows a commit deleted (a sweep's copy, `make forget`), or with a new event at the very moment a
stored session ends (its exit page is the last event's by id, which a session does not keep), is cut from its
events in the window instead, read from the events table (partition-pruned, projected); so is every customer on a
new table, or when the feed does not reach back to the mark.
Why over the lake rather than applyInPandasWithState / transformWithStateInPandas: a late event can merge two
sessions already written, which an append-only state output cannot take back (its rows would have to be MERGEd
anyway); state holds what arrived, in arrival order, so ids would depend on it, while the lake's rows give the same
sessions whatever the order, after a restart or a rebuild; an event-time watermark would drop events later than it,
where the lake keeps every one; and those operators need pandas in every Python worker. The price is sessions up
to a round behind the events.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

import lake_tables
from maintenance import Maintenance
from pipeline.config_sections import SessionsConfig
from pipeline.contract import PARTITION
from sessionize import EVENT_COLUMNS, KEY, cut, event_pieces, micros, stored_pieces


def enable_change_feed(spark: SparkSession, events_path: str) -> None:
    """The events table's change data feed, which the rounds read (a table property; an append writes no extra
    files for it, and readers without the feature read the table as before)."""
    properties = {row["key"]: row["value"] for row in spark.sql(f"SHOW TBLPROPERTIES delta.`{events_path}`").collect()}
    if properties.get(CHANGE_FEED) != "true":
        spark.sql(f"ALTER TABLE delta.`{events_path}` SET TBLPROPERTIES ('{CHANGE_FEED}' = 'true')")


CHANGE_FEED = "delta.enableChangeDataFeed"


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
        # A session of its own, with the lake writer's settings: the metadata set for a round's commit is not
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
        # round under way (its commit) to end.
        while not self.stopping.is_set():
            try:
                self.update()
            except Exception as exc:  # a failed round must not stop the lake: the next one starts from the same mark
                self.note("sessions", {"failed": str(exc)[:500]})
            self.stopping.wait(self.interval_s)

    def update(self) -> dict[str, Any]:
        """One round: the sessions of the customers with events committed since the mark, recomputed and written."""
        started = time.monotonic()
        if not self._mark_read:
            self._mark, self._mark_read = self._stored_mark(), True
        version = self._events_version()
        if version is None or (self._mark is not None and self._mark >= version):
            return {"customers": 0}
        # Every read of this round is of one version of the events table: what a later commit adds, the next
        # round takes.
        events = self.spark.read.format("delta").option("versionAsOf", version).load(self.events_path)
        touched = self._touched(version, events)
        try:
            days: list[str] = []
            if touched.customers:
                with self.maintenance.lock:
                    days = self._recompute(touched, events, version)
                self.maintenance.wrote(days)
            self._mark = version
        finally:
            touched.windows.unpersist()
            if touched.changes is not None:
                touched.changes.unpersist()
        figures = {"customers": touched.customers, "days": days, "events_version": version, "ms": _ms_since(started)}
        self.note("sessions", figures)
        return figures

    def _events_version(self) -> int | None:
        rows = self.spark.sql(f"DESCRIBE HISTORY delta.`{self.events_path}` LIMIT 1").collect()
        return rows[0]["version"] if rows else None

    def _touched(self, version: int, events: DataFrame) -> Touched:
        """The rows the commits after the mark added or deleted (the events table's change data feed) and each
        customer's window among them. All the rows of the table, to be cut from the events, when there is no mark,
        or when the feed does not reach back to it (enabled later, or its log cleaned up)."""
        if self._mark is not None:
            feed = (
                self.spark.read.format("delta")
                .option("readChangeFeed", "true")
                .option("startingVersion", self._mark + 1)
                .option("endingVersion", version)
                .load(self.events_path)
                # Appended rows, and the copies a sweep or `make forget` deleted (a session counted them).
                .where(F.col("_change_type").isin("insert", "delete"))
                .select(*EVENT_COLUMNS, "_change_type")
            )
            try:
                # Read once: the windows, the ties and the new pieces all come from these rows.
                changes = _cached(feed)
            except Exception as exc:  # the feed's versions are checked when it is read; a rebuild is always right
                feed.unpersist()
                self.note("sessions", {"rebuilding": str(exc)[:300]})
            else:
                windows = _windows(changes)
                return Touched(windows, *_earliest_and_count(windows), changes)
        windows = _windows(events)
        return Touched(windows, *_earliest_and_count(windows), None)

    def _stored_mark(self) -> int | None:
        """The events table's version the last sessions commit was made from."""
        for row in self.spark.sql(f"DESCRIBE HISTORY delta.`{self.path}` LIMIT 100").collect():
            if row["userMetadata"]:
                try:
                    return int(json.loads(row["userMetadata"])[MARK])
                except (ValueError, KeyError, TypeError):
                    continue
        return None

    def _recompute(self, touched: Touched, events: DataFrame, mark: int) -> list[str]:
        """Replace the stored sessions near the touched customers' new events by the sessions cut from both."""
        gap = F.expr(f"INTERVAL {int(self.gap_minutes * 60 * 1_000_000)} MICROSECONDS")
        stored = self.spark.read.format("delta").load(self.path)
        nearby = (
            # A bound on every touched customer's window first: Delta skips the files that end before it.
            stored.where(F.col("session_end") >= F.timestamp_micros(F.lit(touched.earliest)) - gap)
            .join(F.broadcast(touched.windows.select("customer_id", "lo", "hi")), "customer_id")
            .where((F.col("session_end") >= F.col("lo") - gap) & (F.col("session_start") <= F.col("hi") + gap))
            .drop("lo", "hi")
        )
        nearby = _cached(nearby)
        frames = [nearby]
        try:
            if touched.changes is None:
                pieces = self._pieces_from_events(touched.windows, nearby, events, frames)
            else:
                pieces = self._pieces(touched.windows, touched.changes, nearby, events, frames)
            fresh = _cached(cut(pieces, self.gap_minutes))
            frames.append(fresh)
            return self._write(fresh, nearby, mark)
        finally:
            for frame in reversed(frames):
                frame.unpersist()

    def _pieces(
        self, windows: DataFrame, changes: DataFrame, nearby: DataFrame, events: DataFrame, frames: list[DataFrame]
    ) -> DataFrame:
        """The stored sessions near the new events and the new events themselves, as pieces; the customers whose
        sessions must be cut from their events (a deleted row, a new event at a stored session's end) from those."""
        added = changes.where(F.col("_change_type") == "insert").select(*EVENT_COLUMNS)
        ends = nearby.select("customer_id", F.col("session_end").alias("event_timestamp"))
        tied = added.select("customer_id", "event_timestamp").join(
            F.broadcast(ends), ["customer_id", "event_timestamp"], "left_semi"
        )
        deleted = windows.where("deleted").select("customer_id")
        listed = deleted.unionByName(tied.select("customer_id")).distinct().persist()
        frames.append(listed)
        from_events = F.broadcast(listed)
        pieces = stored_pieces(nearby.join(from_events, "customer_id", "left_anti")).unionByName(
            event_pieces(added.join(from_events, "customer_id", "left_anti"))
        )
        if listed.isEmpty():
            return pieces
        listed_windows = windows.join(from_events, "customer_id", "left_semi")
        return pieces.unionByName(self._pieces_from_events(listed_windows, nearby, events, frames))

    def _pieces_from_events(
        self, windows: DataFrame, nearby: DataFrame, events: DataFrame, frames: list[DataFrame]
    ) -> DataFrame:
        """The given customers' events in their windows widened by their stored sessions nearby, as pieces."""
        spans = nearby.join(windows.select("customer_id"), "customer_id", "left_semi").select(
            "customer_id", F.col("session_start").alias("lo"), F.col("session_end").alias("hi")
        )
        widened = (
            windows.select("customer_id", "lo", "hi")
            .unionByName(spans)
            .groupBy("customer_id")
            .agg(F.min("lo").alias("lo"), F.max("hi").alias("hi"))
            .persist()
        )
        frames.append(widened)
        day_spans = widened.select(*[F.date_format(c, "yyyy-MM-dd").alias(c) for c in ("lo", "hi")]).distinct()
        days = _merged([(row["lo"], row["hi"]) for row in day_spans.collect()])
        return event_pieces(
            events.where(_within(F.col(PARTITION), days))
            .select(*EVENT_COLUMNS)
            .join(F.broadcast(widened), "customer_id")
            .where(F.col("event_timestamp").between(F.col("lo"), F.col("hi")))
            .drop("lo", "hi")
        )

    def _write(self, fresh: DataFrame, nearby: DataFrame, mark: int) -> list[str]:
        """One commit with the sessions that changed, the mark in its metadata; the days it wrote."""
        columns = fresh.columns
        stored_keys = nearby.select(KEY, F.lit(True).alias("_stored"))
        # Sessions that came out as stored are not written again (a MERGE rewrites every file it matches in).
        changed = fresh.exceptAll(nearby.select(*columns)).join(stored_keys, KEY, "left")
        gone = nearby.select(KEY, PARTITION).join(fresh.select(KEY), KEY, "left_anti")
        # Computed once, its plan cut off (a local checkpoint): the write analyses and reads a plain scan, not the
        # whole plan above, which took seconds of a round's driver time however few the rows.
        source = (
            changed.withColumn("_gone", F.lit(False))
            .unionByName(gone.withColumns({"_gone": F.lit(True), "_stored": F.lit(True)}), allowMissingColumns=True)
            .localCheckpoint()
        )
        days, replaces = source.agg(F.sort_array(F.collect_set(PARTITION)), F.max("_stored")).first()
        if not days:
            return []
        if replaces:
            self._merge(source, columns, days, mark)
        else:
            # Only new sessions: an append, which reads nothing of the table (a MERGE joins its days' files).
            with lake_tables.session_conf(self.spark, {USER_METADATA: json.dumps({MARK: mark})}):
                source.select(*columns).write.format("delta").mode("append").save(self.path)
        return list(days)

    def _merge(self, source: DataFrame, columns: list[str], days: list[str], mark: int) -> None:
        spark = self.spark
        view = "sessions_changes"
        source.createOrReplaceTempView(view)
        names, values = ", ".join(f"`{c}`" for c in columns), ", ".join(f"s.`{c}`" for c in columns)
        # The source is a local checkpoint, computed and fixed: MERGE need not materialize it again (one job and a
        # copy of the rows fewer).
        conf = {USER_METADATA: json.dumps({MARK: mark}), "spark.databricks.delta.merge.materializeSource": "none"}
        try:
            with lake_tables.session_conf(spark, conf):
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


@dataclass
class Touched:
    """A round's customers: each one's window [lo, hi] among the rows it takes, and whether any was deleted (cached);
    the earliest event (microseconds) and how many customers; the change data feed's rows (cached), or None when
    every customer's sessions are cut from the events table."""

    windows: DataFrame
    earliest: int | None
    customers: int
    changes: DataFrame | None


def _windows(rows: DataFrame) -> DataFrame:
    """Each customer's first and last event time among `rows`, and whether a change feed's row of theirs is a
    deletion, cached."""
    deleted = F.col("_change_type") == "delete" if "_change_type" in rows.columns else F.lit(False)
    return (
        rows.where(F.col("customer_id").isNotNull() & F.col("event_timestamp").isNotNull())
        .groupBy("customer_id")
        .agg(
            F.min("event_timestamp").alias("lo"),
            F.max("event_timestamp").alias("hi"),
            F.bool_or(deleted).alias("deleted"),
        )
        .persist()
    )


def _cached(frame: DataFrame) -> DataFrame:
    """`frame` cached and computed now: the jobs that read it next (broadcasts among them, which start side by
    side) each computed it again when it was only marked for caching."""
    frame = frame.persist()
    frame.count()
    return frame


def _earliest_and_count(windows: DataFrame) -> tuple[int | None, int]:
    """The earliest event of the windows, as microseconds (Python's datetime starts at year 1, a Spark timestamp
    earlier), and how many customers they are."""
    return tuple(windows.agg(F.min(micros("lo")), F.count(F.lit(1))).first())  # type: ignore[return-value]


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
