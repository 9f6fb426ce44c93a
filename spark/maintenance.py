"""Each lake table's maintenance, on a thread of its own in the lake writer's driver, between two batches: the sweep of
closed days, compaction and vacuum. Delta on S3 allows one writing driver per table; the table's lock keeps its
appends and its maintenance in turn.

- **Sweep.** The stream drops an id it saw within LAKE_DEDUPE_WINDOW; an older resend is appended again. A day's
  sweep finds the ids the day holds more than once and deletes every copy but the first appended (a MERGE … WHEN
  MATCHED THEN DELETE of those rows only, by their Kafka position), so once its day is swept an event is in the
  lake once, whatever the age of its resend. A day is swept when it has closed (its UTC date is past) and again
  whenever a later batch wrote into it; the current day when `make compact` asks. A sweep reads the day's ids; a
  batch never does.
- **Compaction** bin-packs the days written into (OPTIMIZE) every LAKE_COMPACT_INTERVAL_S; **vacuum** deletes files
  unreferenced for LAKE_VACUUM_RETAIN_HOURS every LAKE_VACUUM_INTERVAL_S. `make compact` asks for all three on every
  day now.
- **Forgetting** (`make forget`, forgetting.py): the customers' rows deleted, between two writes.
- `python maintenance.py maintain PATH...` does all three once, each table whole, for `make compact` when the lake
  writer is stopped; `forget CUSTOMER[,...] PATH...` the deletes of `make forget`.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

from forgetting import Forgotten, delete_rows
from lake_tables import Note, compact, exists, in_list, log, log_note, session, vacuum
from pipeline.config import load
from pipeline.config_sections import MaintenanceConfig
from pipeline.contract import PARTITION, maintenance_answer

#: A row's Kafka record and when it was appended: which copy of an id came first, and how to name one row.
POSITION = ("ingested_timestamp", "kafka_topic", "kafka_partition", "kafka_offset")


def sweep(spark: SparkSession, path: str, days: list[str] | None = None) -> dict[str, Any]:
    """Delete every copy but the first of each id held more than once in a day (of `days`, or of every day)."""
    started = time.monotonic()
    table = spark.read.format("delta").load(path)
    scope = table.where(F.col(PARTITION).isin(days)) if days else table
    repeated = (
        scope.where(F.col("id").isNotNull())
        .groupBy(PARTITION, "id")
        .count()
        .where(F.col("count") > 1)
        .select(PARTITION, "id")
        .persist()
    )
    try:
        found = repeated.count()
        deleted = 0
        if found:
            first = Window.partitionBy(PARTITION, "id").orderBy(*POSITION)
            later = (
                scope.join(F.broadcast(repeated), [PARTITION, "id"])
                .select(PARTITION, "id", *POSITION, F.row_number().over(first).alias("copy"))
                .where(F.col("copy") > 1)
                .drop("copy")
                .persist()
            )
            try:
                deleted = later.count()
                touched = sorted(r[0] for r in later.select(PARTITION).distinct().collect())
                _delete(spark, path, later, touched)
            finally:
                later.unpersist()
    finally:
        repeated.unpersist()
    return {
        "days": days or "all",
        "repeated_ids": found,
        "rows_deleted": deleted,
        "ms": round((time.monotonic() - started) * 1000),
    }


def _delete(spark: SparkSession, path: str, rows: Any, days: list[str]) -> None:
    view = "lake_sweep_rows"
    rows.createOrReplaceTempView(view)
    match = " AND ".join(f"t.`{c}` <=> s.`{c}`" for c in POSITION)
    try:
        spark.sql(
            f"""
            MERGE INTO delta.`{path}` AS t USING {view} AS s
            ON t.{PARTITION} IN ({in_list(days)}) AND t.{PARTITION} = s.{PARTITION} AND t.id = s.id AND {match}
            WHEN MATCHED THEN DELETE
            """
        )
    finally:
        spark.catalog.dropTempView(view)


def keyed_by_id(columns: list[str]) -> bool:
    """Whether a table's rows are appended records keyed by `id`, whose repeats a sweep deletes (the events and
    invalid tables); the sessions table, rewritten by its rounds, has no such column."""
    return "id" in columns


def closed(day: str, today: str | None = None) -> bool:
    """Whether a day (yyyy-MM-dd, UTC) has ended: no first arrival of an event of it is expected any more."""
    return day < (today or datetime.now(timezone.utc).date().isoformat())


class Maintenance:
    """Sweep, compaction and vacuum of one table, on a thread of their own: when due, or when `make compact` asks;
    until `stopping` is set, when a round under way finishes first. Only a table `keyed_by_id` is swept (`sweeps`)."""

    def __init__(
        self,
        spark: SparkSession,
        path: str,
        config: MaintenanceConfig,
        stopping: threading.Event,
        note: Note = log_note,
        sweeps: bool = True,
        forgotten: Forgotten | None = None,
    ) -> None:
        self.spark = spark
        self.path = path
        self.sweeps = sweeps
        self.forgotten = forgotten or Forgotten()
        self.compact_every_s = config.compact_interval_s
        self.vacuum_every_s = config.vacuum_interval_s
        self.vacuum_retain_hours = config.vacuum_retain_hours
        self.request_file = Path(config.request_file) if config.request_file else None
        self.stopping = stopping
        self.note = note
        #: Held by the table's writes too.
        self.lock = threading.Lock()
        #: Days written into since their last compaction, and since their last sweep.
        self._to_compact: set[str] = set()
        self._to_sweep: set[str] = set()
        self._days_lock = threading.Lock()
        self.last_compact = self.last_vacuum = time.monotonic()
        self.last_request = time.time()

    def wrote(self, days: list[str]) -> None:
        """The days a batch wrote into: the next round's to compact, and to sweep once closed."""
        with self._days_lock:
            self._to_compact.update(days)
            if self.sweeps:
                self._to_sweep.update(days)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name=f"maintenance {self.path}", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        # Behind the latest topic's tasks, beside the tables' batches (scheduler-pools.xml).
        self.spark.sparkContext.setLocalProperty("spark.scheduler.pool", "maintenance")
        while not self.stopping.wait(1.0):
            try:
                self.run_due()
            except Exception as exc:  # a failed round must not stop the lake: the next one tries again
                self.note(f"maintenance {self.path}", {"failed": str(exc)[:500]})
                self.last_compact = self.last_vacuum = time.monotonic()

    def run_due(self) -> None:
        request = self._request()
        if request is not None and "forget" in request:
            self._forget(request["forget"])
            return
        requested = request is not None
        now = time.monotonic()
        with self._days_lock:
            to_compact = sorted(self._to_compact)
            to_sweep = sorted(day for day in self._to_sweep if closed(day))
        compact_due = bool(to_compact or to_sweep) and now - self.last_compact >= self.compact_every_s
        vacuum_due = now - self.last_vacuum >= self.vacuum_every_s
        if not (requested or compact_due or vacuum_due):
            return
        figures: dict[str, Any] = {}
        with self.lock:
            if requested or compact_due:
                with self._days_lock:
                    self._to_compact = set() if requested else self._to_compact - set(to_compact)
                    self._to_sweep = set() if requested else self._to_sweep - set(to_sweep)
                if (requested and self.sweeps) or to_sweep:
                    figures["sweep"] = sweep(self.spark, self.path, None if requested else to_sweep)
                if requested or to_compact:
                    figures["compact"] = compact(self.spark, self.path, None if requested else to_compact)
                self.last_compact = now
            if requested or vacuum_due:
                figures["vacuum"] = vacuum(self.spark, self.path, self.vacuum_retain_hours)
                self.last_vacuum = now
        self.note(f"maintenance {self.path}", figures)
        if requested:
            self._answer(figures)

    def _forget(self, customers: list[str]) -> None:
        """`make forget`: the customers on the list every later batch is filtered with, then their rows deleted
        (between two of the table's writes)."""
        self.forgotten.add(customers)
        with self.lock:
            figures = {"customers": len(customers), "rows_deleted": delete_rows(self.spark, self.path, customers)}
        self.note(f"forget {self.path}", figures)
        self._answer(figures)

    def _request(self) -> dict[str, Any] | None:
        """What `make compact` (or `make forget`) asked by writing the request file since this table last answered."""
        if self.request_file is None:
            return None
        try:
            request = json.loads(self.request_file.read_text())
            asked_at = request["at"]
        except (FileNotFoundError, ValueError, KeyError):
            return None
        return request if asked_at > self.last_request else None

    def _answer(self, figures: dict[str, Any]) -> None:
        self.last_request = time.time()
        assert self.request_file is not None
        maintenance_answer(self.request_file, self.path).write_text(
            json.dumps({**figures, "at": self.last_request}, default=str)
        )


def main(argv: list[str]) -> int:
    """`maintain PATH...`: sweep, compact and vacuum each table whole, once; `forget CUSTOMER[,...] PATH...`: delete
    the customers' rows of each table. What `make compact` and `make forget` run while the lake writer is stopped."""
    if len(argv) < 2 or argv[0] not in ("maintain", "forget") or (argv[0] == "forget" and len(argv) < 3):
        print("usage: maintenance.py maintain PATH [PATH...] | forget CUSTOMER[,...] PATH [PATH...]", file=sys.stderr)
        return 2
    log.addHandler(logging.StreamHandler(sys.stdout))
    log.setLevel(logging.INFO)
    config = load()
    partitions = str(config.spark.shuffle_partitions)
    spark = session("acme-clickstream-lake-maintenance", {"spark.sql.shuffle.partitions": partitions})
    try:
        if argv[0] == "forget":
            customers = argv[1].split(",")
            for path in argv[2:]:
                if exists(spark, path):
                    log_note(f"forget {path}", {"rows_deleted": delete_rows(spark, path, customers)})
            return 0
        for path in argv[1:]:
            if exists(spark, path):
                keyed = keyed_by_id(spark.read.format("delta").load(path).columns)
                figures = {"sweep": sweep(spark, path)} if keyed else {}
                retain = config.maintenance.vacuum_retain_hours
                figures |= {"compact": compact(spark, path), "vacuum": vacuum(spark, path, retain)}
                log_note(f"maintenance {path}", figures)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
