"""The lake's Delta Lake tables: created once, appended to exactly once per micro-batch, compacted and vacuumed.

- A micro-batch's rows are appended: the stream has dropped the ids it saw within LAKE_DEDUPE_WINDOW (records.py's
  `first_arrivals`), so a batch costs what its rows cost, however large the day or the table it lands in.
- Every append names its streaming query and batch in its commit (Delta's userMetadata), so a batch replayed after a
  restart commits nothing twice.
- An id resent after the window lands again; the sweep of its day (maintenance.py) deletes the later copies. The
  day is the event's own (a resend lands in the same partition), for the invalid table the day received.
- Sweeps, compaction and vacuum are maintenance.py's.

PySpark and the ground floor (pipeline/) only: it runs wherever the lake writer runs (the compose image has nothing
else).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T
from pyspark.sql.utils import AnalysisException

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
    # One commit of the table's metadata (no Spark job, no empty write): the columns as Spark's DDL spells them.
    columns = spark._jsparkSession.parseDataType(schema.json()).toDDL()
    properties = ", ".join(f"'{k}' = '{v}'" for k, v in TABLE_PROPERTIES.items())
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS delta.`{path}` ({columns}) USING delta PARTITIONED BY ({PARTITION}) "
        f"TBLPROPERTIES ({properties})"
    )


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


def days_of(batch: DataFrame) -> list[str]:
    return sorted(row[0] for row in batch.select(PARTITION).distinct().collect() if row[0] is not None)


def in_list(days: list[str]) -> str:
    return ", ".join("'" + day.replace("'", "") + "'" for day in days)


Note = Callable[[str, dict[str, Any]], None]


#: The lake writer's own log (its JSON lines); its `main` sends it to stdout, the job's log.
log = logging.getLogger("clickstream.lake")


def log_note(kind: str, figures: dict[str, Any]) -> None:
    """A note of what a job did, as a JSON line in its log."""
    log.info(json.dumps({kind: figures}, default=str))


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


def vacuum(spark: SparkSession, path: str, retain_hours: int = VACUUM_RETAIN_HOURS) -> dict[str, Any]:
    """Delete the files the table has not named for `retain_hours` (LAKE_VACUUM_RETAIN_HOURS), however short: the
    user chose how long time travel reaches, and how soon `make forget` purges (Delta's own check wants a week)."""
    started = time.monotonic()
    with session_conf(spark, {"spark.databricks.delta.retentionDurationCheck.enabled": "false"}):
        spark.sql(f"VACUUM delta.`{path}` RETAIN {retain_hours} HOURS")
    return {"retain_hours": retain_hours, "ms": round((time.monotonic() - started) * 1000)}


class JobStopping(RuntimeError):
    """A micro-batch reached its table's write after the job began to stop: it writes nothing and ends its query
    (its offsets stay uncommitted, so the next run replays it)."""


class TableWriter:
    """The foreachBatch function of one table's streaming query: an append, idempotent across restarts.

    Each commit names the query and the batch (Delta's userMetadata, `{"query": ..., "batch": ...}`). Only a run's
    first batch can be one the table already has (the batch a crash left uncommitted in the checkpoint is the one
    replayed, first), so only then is the table's history read: the newest batch of the query it names. Delta's own
    transaction ids (`txnAppId`/`txnVersion`) would do the same, but they make every append rebuild the table's
    state from its log (a Spark job of three stages: Delta 4.4 reads `setTransactions` from the full state), which
    cost a commit every 20 s 1-3 s of two cores; the run's first append still carries them, so a batch an older
    version of the job committed that way is known too.

    `lock` is held while it writes, so the table's maintenance runs between two batches, never during one; the days
    it wrote into go to `wrote`, the maintenance's next compaction (and, once closed, its sweep). Once `stopping` is
    set no write begins, so a stop waits only for the write under way (`drained`), never for a busy query to idle.
    """

    def __init__(
        self,
        path: str,
        lock: threading.Lock,
        wrote: Callable[[list[str]], None],
        stopping: threading.Event | None = None,
        keep: Callable[[DataFrame], DataFrame] | None = None,
        persist: bool = True,
    ) -> None:
        self.path, self.lock, self.wrote = path, lock, wrote
        #: Whether a batch is cached for its two actions. Not when the caller cached what it is made of (the raw
        #: writer's parsed records): the days then read that cache without the enrichment, and the write computes
        #: the rows once, where a cache of its own cost a third of the batch's time.
        self.persist = persist
        #: The rows of a batch the table keeps (forgetting.Forgotten.kept), chosen under the lock: a DELETE of the
        #: maintenance's runs between two writes, and the write after it filters with the list it deleted for.
        self.keep = keep or (lambda rows: rows)
        self.stopping = stopping or threading.Event()
        self._query_id: str | None = None
        #: The newest batch of the query the table holds; None until the run's first batch has read it.
        self._newest: int | None = None
        self._started = threading.Event()

    def drained(self) -> None:
        """Returns once no write of this table is under way (and, `stopping` set, none can begin)."""
        with self.lock:
            pass

    def started(self, query_id: str) -> None:
        """The query's id (kept in its checkpoint), which its commits name."""
        self._query_id, self._newest = query_id, None
        self._started.set()

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        # The first batch can begin before start() has returned the query's id to us.
        if not self._started.wait(timeout=120):
            raise RuntimeError("the streaming query's id never arrived")
        persisted = batch.persist() if self.persist else batch  # two actions below: the days, and the write
        try:
            with self.lock:
                first = self._newest is None
                if first:
                    self._newest = newest_batch(batch.sparkSession, self.path, self._app)
                if batch_id <= self._newest:
                    log_note("replayed", {"table": self.path, "batch": batch_id, "committed_before": True})
                    return
                rows = self.keep(persisted)
                days = days_of(rows)
                if days:
                    if self.stopping.is_set():
                        raise JobStopping(f"{self.path}: the job is stopping; batch {batch_id} is left to the next run")
                    write = (
                        rows.write.format("delta")
                        .mode("append")
                        .option("userMetadata", json.dumps({QUERY: self._app, BATCH: batch_id}))
                        # A field added to the schema becomes a column (older rows read null).
                        .option("mergeSchema", "true")
                    )
                    if first:  # a batch an older job committed with Delta's transaction id is skipped too
                        write = write.option("txnAppId", self._app).option("txnVersion", str(batch_id))
                    write.save(self.path)
                    self._newest = batch_id
            if days:
                self.wrote(days)
        finally:
            if self.persist:
                persisted.unpersist()

    @property
    def _app(self) -> str:
        return f"clickstream-{self._query_id}"


#: The keys of an append's userMetadata: the query (its application id) and the batch.
QUERY, BATCH = "query", "batch"


def newest_batch(spark: SparkSession, path: str, app: str, commits: int = 100) -> int:
    """The newest batch of the query `app` among the table's last `commits` commits, -1 if none names it. The lake
    writer and its maintenance are the tables' only writers, a few commits between two batches: a batch replayed
    after a restart is always among them if it was committed."""
    for row in spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT {commits}").select("userMetadata").collect():
        try:
            named = json.loads(row["userMetadata"] or "{}")
        except ValueError:
            continue
        if isinstance(named, dict) and named.get(QUERY) == app:
            return int(named[BATCH])
    return -1
