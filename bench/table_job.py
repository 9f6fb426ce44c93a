"""A Spark application for `make bench`'s table figures: it writes a Delta table of synthetic events directly (no
collector, no Kafka) and times the lake writer's own append on it.

    table_job.py build PATH TEMPLATE DAY FILES ROWS_PER_FILE    add FILES data files of ROWS_PER_FILE new rows to DAY
    table_job.py append PATH TEMPLATE DAY ROWS BATCHES           BATCHES micro-batches of ROWS new rows into DAY,
                                                                 each through lake_tables.TableWriter
    table_job.py compact PATH DAY                                OPTIMIZE of DAY, as the lake writer runs it
    table_job.py forget PATH TEMPLATE                            `make forget`'s DELETE of the template's first
                                                                 customer, from every day of the table

TEMPLATE is a JSON-lines file of raw-topic records ({"key", "value"}) as the collector publishes them. Rows are the
template's, parsed by the lake writer's own code, with new ids and timestamps spread over the day; each command
prints one `{"bench": ...}` line of figures. Run by bench/tables.py with the lake writer's Spark settings.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "spark"))

import forgetting
import lake_tables
import lake_writer
import records
from pipeline.config import Config


def template_rows(spark: SparkSession, template: str) -> DataFrame:
    """The template's records as the lake writer makes events table rows of them (enriched), numbered 0..n-1 in
    `kafka_offset`, cached."""
    raw = spark.read.schema("key string, value string, n long").json(f"file://{template}")
    raw = raw.select(
        F.col("key").cast("binary").alias("key"),
        F.col("value").cast("binary").alias("value"),
        F.lit("bench").alias("topic"),
        F.lit(0).alias("partition"),
        F.col("n").alias("offset"),
        F.current_timestamp().alias("timestamp"),
    )
    schema = json.loads(Path(Config.defaults().lake.event_schema).read_text())
    events, _ = records.table_rows(records.parse_raw_records(raw, schema), "truncate")
    return events.coalesce(1).cache()


def day_rows(template: DataFrame, day: str, rows: int, salt: str) -> DataFrame:
    """`rows` rows of `day` (copies of the template with ids of their own, spread evenly over the day)."""
    size = template.count()
    copies = -(-rows // size)
    index = F.col("copy") * size + F.col("kafka_offset")
    digest = F.md5(F.concat_ws("/", F.lit(salt), F.lit(day), index.cast("string")))
    groups = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))  # a UUID's shape
    uuid = F.concat_ws("-", *[F.substring(digest, start, length) for start, length in groups])
    start = F.unix_timestamp(F.lit(day), "yyyy-MM-dd")
    moment = F.timestamp_seconds(start + index * F.lit(86400.0 / rows))
    grown = template.crossJoin(template.sparkSession.range(copies, numPartitions=1).withColumnRenamed("id", "copy"))
    grown = grown.where(index < rows).withColumn("id", uuid).withColumn("event_timestamp", moment)
    return grown.withColumn("dt", F.lit(day)).drop("copy").select(*template.columns)


def build(spark: SparkSession, path: str, template: str, day: str, files: int, rows_per_file: int) -> dict:
    """`files` files of new rows added to `day` (large files: the layout compaction leaves)."""
    rows = template_rows(spark, template)
    lake_tables.ensure_table(spark, path, rows.schema)
    started = time.monotonic()
    for _ in range(files):
        salt = f"build-{time.time_ns()}"
        day_rows(rows, day, rows_per_file, salt).coalesce(1).write.format("delta").mode("append").save(path)
    return {"files": files, "rows": files * rows_per_file, "seconds": round(time.monotonic() - started, 1)}


def append(spark: SparkSession, path: str, template: str, day: str, rows: int, batches: int) -> dict:
    """Micro-batches of new events into `day`, through the lake writer's TableWriter; each one's seconds."""
    source = template_rows(spark, template)
    lake_tables.ensure_table(spark, path, source.schema)
    writer = lake_tables.TableWriter(path, threading.Lock(), lambda days: None)
    run = f"bench-{time.time_ns()}"
    writer.started(run)
    seconds = []
    for batch_id in range(batches):
        batch = day_rows(source, day, rows, f"{run}-{batch_id}").cache()
        batch.count()  # the rows exist before the clock starts, as a micro-batch's rows do
        started = time.monotonic()
        writer(batch, batch_id)
        seconds.append(time.monotonic() - started)
        batch.unpersist()
    return {
        "batches": batches,
        "rows_per_batch": rows,
        "seconds_p50": round(statistics.median(seconds), 2),
        "seconds_max": round(max(seconds), 2),
        "seconds_each": [round(s, 2) for s in seconds],
    }


def forget(spark: SparkSession, path: str, template: str) -> dict:
    """`make forget`'s delete (forgetting.delete_rows) of one customer of the template: a customer of every copy."""
    customer = template_rows(spark, template).where(F.col("customer_id").isNotNull()).first()["customer_id"]
    before = spark.read.format("delta").load(path).count()
    started = time.monotonic()
    deleted = forgetting.delete_rows(spark, path, [customer])
    return {"rows_before": before, "rows_deleted": deleted, "seconds": round(time.monotonic() - started, 1)}


def main(argv: list[str]) -> int:
    command, path, *rest = argv
    spark = lake_writer.session(f"acme-clickstream-bench-{command}", Config.defaults().spark.shuffle_partitions)
    try:
        if command == "build":
            template, day, files, rows_per_file = rest
            figures = build(spark, path, template, day, int(files), int(rows_per_file))
        elif command == "append":
            template, day, rows, batches = rest
            figures = append(spark, path, template, day, int(rows), int(batches))
        elif command == "compact":
            figures = lake_tables.compact(spark, path, rest)
        elif command == "forget":
            figures = forget(spark, path, *rest)
        else:
            raise ValueError(f"unknown command {command!r}")
    finally:
        spark.stop()
    print(json.dumps({"bench": figures}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
