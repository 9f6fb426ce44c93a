"""The lake's Delta Lake tables: created once, written exactly once per micro-batch, compacted and vacuumed.

- Rows are upserted: MERGE on (dt, id) inserting only the ids the table lacks, pruned to the days in the batch, so
  an event resent a day (or a year) later lands once and a batch's cost does not grow with the table's age. The
  invalid table's day is the day received: an invalid event sent twice the same day is one row.
- Every write carries Delta's transaction id (the streaming query's id and the batch id), so a batch replayed after
  a restart commits nothing twice; insert-only MERGE would be harmless to repeat anyway.
- Each table compacts the days it wrote into (OPTIMIZE, bin-packing) every `compact_every_s`, and vacuums files
  older than a week every `vacuum_every_s`, in the lake writer's driver, between two batches: Delta on S3 allows
  one writing driver per table, and a lock per table keeps compaction and writes in turn.
- `python lake_tables.py maintain PATH...` does the same once, for `make compact` when the lake writer is stopped.

PySpark and the ground floor (pipeline/) only: it runs wherever the lake writer runs (the compose image has nothing
else).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.utils import AnalysisException

from pipeline.config_sections import MaintenanceConfig
from pipeline.contract import PARTITION

#: Time travel and readers of an older version keep a week of files; the log keeps 30 days.
VACUUM_RETAIN_HOURS = 168
TABLE_PROPERTIES = {
    # Readable by every engine: deletion vectors are a reader feature not all of them have (insert-only MERGE
    # and appends make none anyway).
    "delta.enableDeletionVectors": "false",
    # A Parquet checkpoint of the log every 10 commits, so readers replay at most 10 JSON commits.
    "delta.checkpointInterval": "10",
    "delta.deletedFileRetentionDuration": f"interval {VACUUM_RETAIN_HOURS} hours",
    "delta.logRetentionDuration": "interval 30 days",
}
#: Semantics of the tables, so they live here rather than in the submit line. These two must be set before the
#: session starts.
BUILDER_CONFIGS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
SESSION_CONFIGS = {
    # A field added to the schema (SchemaVer 1-1-0) becomes a column on the next batch; old rows read null.
    "spark.databricks.delta.schema.autoMerge.enabled": "true",
    # Compaction targets 128 MB files and leaves files of 32 MB or more alone, so a busy day is not rewritten
    # whole every time.
    "spark.databricks.delta.optimize.maxFileSize": str(128 << 20),
    "spark.databricks.delta.optimize.minFileSize": str(32 << 20),
}


def session(app_name: str, builder_configs: dict[str, str] | None = None) -> SparkSession:
    """A Spark session that writes the tables as they must be written (with `builder_configs`, the caller's own
    settings that must be made before the session starts)."""
    builder = SparkSession.builder.appName(app_name)
    for key, value in {**BUILDER_CONFIGS, **(builder_configs or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    for key, value in SESSION_CONFIGS.items():
        spark.conf.set(key, value)
    # Delta reads its log with this many tasks (default 50): as many as the shuffle's suit a laptop's table.
    spark.conf.set("spark.databricks.delta.snapshotPartitions", spark.conf.get("spark.sql.shuffle.partitions") or "2")
    return spark


def exists(spark: SparkSession, path: str) -> bool:
    try:
        spark.read.format("delta").load(path).schema  # noqa: B018  resolving the log is the check
    except AnalysisException:
        return False
    return True


def ensure_table(spark: SparkSession, path: str, schema: T.StructType) -> None:
    """Create the table (empty, partitioned by day, with our properties) unless it exists."""
    if exists(spark, path):
        return
    # Built in the JVM (createDataFrame from Python would need Python workers, which a cluster may lack).
    empty = spark.range(0).select(*[F.lit(None).cast(field.dataType).alias(field.name) for field in schema.fields])
    empty.write.format("delta").partitionBy(PARTITION).mode("append").save(path)
    properties = ", ".join(f"'{k}' = '{v}'" for k, v in TABLE_PROPERTIES.items())
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({properties})")


@contextlib.contextmanager
def session_conf(spark: SparkSession, conf: dict[str, str]) -> Iterator[None]:
    """`conf` set in the session for the SQL run inside only (Delta reads a write's options from the session)."""
    for key, value in conf.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key in conf:
            spark.conf.unset(key)


def transaction(spark: SparkSession, app_id: str, version: int) -> contextlib.AbstractContextManager[None]:
    """Delta's idempotent-write id for the SQL run inside: a (app id, version) committed before is skipped."""
    return session_conf(
        spark,
        {"spark.databricks.delta.write.txnAppId": app_id, "spark.databricks.delta.write.txnVersion": str(version)},
    )


def _days(batch: DataFrame) -> list[str]:
    return sorted(row[0] for row in batch.select(PARTITION).distinct().collect() if row[0] is not None)


def in_list(days: list[str]) -> str:
    return ", ".join("'" + day.replace("'", "") + "'" for day in days)


Note = Callable[[str, dict[str, Any]], None]


#: The lake writer's own log (its JSON lines); its `main` sends it to stdout, the job's log.
log = logging.getLogger("clickstream.lake")


def log_note(kind: str, figures: dict[str, Any]) -> None:
    """A note of what a job did, as a JSON line in its log."""
    log.info(json.dumps({kind: figures}, default=str))


class Maintenance:
    """Compaction and vacuum of one table, on a thread of their own: when due, or when `make compact` asks; until
    `stopping` is set, when a compaction under way finishes first.

    The table's writes hold `lock` too, so a compaction runs between two batches, never during one (and an
    idle table is still compacted on request).
    """

    def __init__(
        self,
        spark: SparkSession,
        path: str,
        config: MaintenanceConfig,
        stopping: threading.Event,
        note: Note = log_note,
    ) -> None:
        self.spark = spark
        self.path = path
        self.compact_every_s = config.compact_interval_s
        self.vacuum_every_s = config.vacuum_interval_s
        self.request_file = Path(config.request_file) if config.request_file else None
        self.stopping = stopping
        self.note = note
        self.lock = threading.Lock()
        self._touched: set[str] = set()
        self._touched_lock = threading.Lock()
        self.last_compact = self.last_vacuum = time.monotonic()
        self.last_request = time.time()

    def wrote(self, days: list[str]) -> None:
        """The days a batch wrote into: the next compaction's."""
        with self._touched_lock:
            self._touched.update(days)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name=f"maintenance {self.path}", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        while not self.stopping.wait(1.0):
            try:
                self.run_due()
            except Exception as exc:  # a failed compaction must not stop the lake: the next round tries again
                self.note(f"maintenance {self.path}", {"failed": str(exc)[:500]})
                self.last_compact = self.last_vacuum = time.monotonic()

    def run_due(self) -> None:
        requested = self._requested()
        now = time.monotonic()
        with self._touched_lock:
            days = sorted(self._touched)
        compact_due = bool(days) and now - self.last_compact >= self.compact_every_s
        vacuum_due = now - self.last_vacuum >= self.vacuum_every_s
        if not (requested or compact_due or vacuum_due):
            return
        with self.lock:
            if requested or compact_due:
                with self._touched_lock:
                    self._touched.clear()
                compacted = compact(self.spark, self.path, None if requested else days)
                self.note(f"maintenance {self.path}", {"compact": compacted})
                self.last_compact = now
            if requested or vacuum_due:
                self.note(f"maintenance {self.path}", {"vacuum": vacuum(self.spark, self.path)})
                self.last_vacuum = now
        if requested:
            self._answer()

    def _requested(self) -> bool:
        """Whether `make compact` asked (by writing the request file) since this table last answered."""
        if self.request_file is None:
            return False
        try:
            asked_at = json.loads(self.request_file.read_text())["at"]
        except (FileNotFoundError, ValueError, KeyError):
            return False
        return asked_at > self.last_request

    def _answer(self) -> None:
        self.last_request = time.time()
        assert self.request_file is not None
        done = self.request_file.with_name(f"{self.request_file.stem}.{self.path.rstrip('/').rsplit('/', 1)[-1]}.done")
        done.write_text(json.dumps({"at": self.last_request}))


def compact(spark: SparkSession, path: str, days: list[str] | None = None) -> dict[str, Any]:
    """OPTIMIZE (bin-packing) of the given days, or of the whole table; Delta's metrics of it."""
    started = time.monotonic()
    where = f" WHERE {PARTITION} IN ({in_list(days)})" if days else ""
    metrics = spark.sql(f"OPTIMIZE delta.`{path}`{where}").collect()[0]["metrics"]
    return {
        "days": days or "all",
        "files_removed": metrics["numFilesRemoved"],
        "files_added": metrics["numFilesAdded"],
        "ms": round((time.monotonic() - started) * 1000),
    }


def vacuum(spark: SparkSession, path: str) -> dict[str, Any]:
    started = time.monotonic()
    spark.sql(f"VACUUM delta.`{path}` RETAIN {VACUUM_RETAIN_HOURS} HOURS")
    return {"retain_hours": VACUUM_RETAIN_HOURS, "ms": round((time.monotonic() - started) * 1000)}


class TableWriter:
    """The foreachBatch function of one table's streaming query: an insert-only MERGE on (dt, id).

    Rows without an id (a record no producer keyed) match nothing, so each is kept.
    """

    def __init__(self, path: str, maintenance: Maintenance) -> None:
        self.path = path
        self.maintenance = maintenance
        self._query_id: str | None = None
        self._started = threading.Event()

    def started(self, query_id: str) -> None:
        """The query's id (kept in its checkpoint): the transaction id's application part."""
        self._query_id = query_id
        self._started.set()

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        # The first batch can begin before start() has returned the query's id to us.
        if not self._started.wait(timeout=120):
            raise RuntimeError("the streaming query's id never arrived")
        # foreachBatch hands each batch a session of its own: views and settings must be made in it.
        spark = batch.sparkSession
        keyed = F.col("id").isNotNull()
        # Cached first, whole: the two branches below would each compute the batch's rows (parse, enrichment).
        source = batch.persist()
        source.count()
        rows = source.where(keyed).dropDuplicates([PARTITION, "id"]).unionByName(source.where(~keyed)).persist()
        try:
            days = _days(rows)
            if days:
                with self.maintenance.lock:
                    self._merge(spark, rows, days, batch_id)
                self.maintenance.wrote(days)
        finally:
            rows.unpersist()
            source.unpersist()

    def _merge(self, spark: SparkSession, batch: DataFrame, days: list[str], batch_id: int) -> None:
        view = f"lake_batch_{batch_id}"
        batch.createOrReplaceTempView(view)
        try:
            with transaction(spark, f"clickstream-{self._query_id}", batch_id):
                spark.sql(
                    f"""
                    MERGE INTO delta.`{self.path}` AS t USING {view} AS s
                    ON t.{PARTITION} IN ({in_list(days)}) AND t.{PARTITION} = s.{PARTITION} AND t.id = s.id
                    WHEN NOT MATCHED THEN INSERT *
                    """
                )
        finally:
            spark.catalog.dropTempView(view)


def main(argv: list[str]) -> int:
    """`maintain PATH...`: compact and vacuum each table whole, once (what `make compact` runs offline)."""
    if len(argv) < 2 or argv[0] != "maintain":
        print("usage: lake_tables.py maintain PATH [PATH...]", file=sys.stderr)
        return 2
    log.addHandler(logging.StreamHandler(sys.stdout))
    log.setLevel(logging.INFO)
    spark = session("acme-clickstream-lake-maintenance")
    try:
        for path in argv[1:]:
            if exists(spark, path):
                log_note(f"maintenance {path}", {"compact": compact(spark, path), "vacuum": vacuum(spark, path)})
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
