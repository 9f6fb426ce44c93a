"""The lake writer: Kafka -> the lake's Delta Lake tables on S3 (exactly once per event id) and the latest topic.

Three streaming queries, each with its own checkpoint (the tables' under SPARK_CHECKPOINT):
  lake     the raw topic, parsed once per batch (records.py), less the ids seen within LAKE_DEDUPE_WINDOW, its events
           enriched (enrichment.py) and appended every LAKE_COMMIT_INTERVAL into the events table, idempotently
           (lake_tables.py; an older resend goes when its day is swept, maintenance.py), its records no event can be
           made of into the invalid table, with a problem code;
  invalid  the invalid topic into the invalid table, the same way;
  latest   the raw topic's events, deduplicated and enriched, to the latest topic every SPARK_TRIGGER, as Avro in
           Confluent's wire format (latest.py; its checkpoint at SPARK_LATEST_CHECKPOINT).
A raw record in the wire format is read once the schema registry knows its schema id (wire_format.py). No table and
not the latest topic take a forgotten customer's rows (forgetting.py).
Threads keep the sessions table (sessions.py) and compact and vacuum each table (table_queries.py). Its state and
progress go to SPARK_STATUS_FILE (progress.py).

The configuration is the tree its parent handed it (CLICKSTREAM_CONFIG), else its environment (pipeline/config.py).
Spark and s3a settings (master, endpoint, credentials, jars) come from spark-submit or PYSPARK_SUBMIT_ARGS, never
from this file, so it runs unchanged on local[*] and on a cluster (`spark-submit --master spark://...`). SIGTERM
ends it between commits: the threads finish their round, the queries their micro-batch.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import tempfile
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pyspark.sql import SparkSession

import lake_tables
import pipeline
from forgetting import Forgotten, read_list
from latest import LatestTopic, latest_rows, registered_schema, start_latest_query
from pipeline.config import load
from progress import ProgressListener, StatusFile
from table_queries import TableJob

HERE = Path(__file__).resolve().parent


def session(app_name: str, shuffle_partitions: int) -> SparkSession:
    """The tables' session (lake_tables.session) with the rows' semantics, which live here, not in deployment:
    dt in UTC; INT64 timestamps that every Parquet reader understands (Spark's default is the legacy INT96). FAIR
    scheduling with the pools of scheduler-pools.xml: the latest topic's tasks go first.
    The queries' state has `shuffle_partitions` partitions (SPARK_SHUFFLE_PARTITIONS, fixed when a checkpoint is
    made): a task each per micro-batch, so Spark's default of 200 would cost a laptop a minute a batch."""
    spark = lake_tables.session(
        app_name,
        {
            "spark.scheduler.mode": "FAIR",
            "spark.scheduler.allocation.file": str(HERE / "scheduler-pools.xml"),
            "spark.sql.shuffle.partitions": str(shuffle_partitions),
        },
    )
    # The UDFs (the enrichment, the registry's check) run in Python workers, which import their modules and the
    # ground floor: all shipped to every executor (as spark-submit's --py-files would), whatever it has installed.
    spark.sparkContext.addPyFile(str(HERE / "enrichment.py"))
    spark.sparkContext.addPyFile(str(HERE / "wire_format.py"))
    spark.sparkContext.addPyFile(ground_floor_zip())
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    # RocksDB state (the latest topic's deduplication) with a changelog per batch.
    spark.conf.set(
        "spark.sql.streaming.stateStore.providerClass",
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
    )
    spark.conf.set("spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled", "true")
    return spark


def ground_floor_zip() -> str:
    """The ground floor's package (pipeline/) as a zip Python imports from, in a temporary folder."""
    source = Path(pipeline.__file__).resolve().parent
    target = Path(tempfile.mkdtemp(prefix="lake-writer-")) / "pipeline.zip"
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(source.glob("*.py")):
            archive.write(path, f"pipeline/{path.name}")
    return str(target)


def main(argv: list[str]) -> int:
    """`lake_writer.py [NAME]`: NAME (an instance's, as `make up` and the bench name theirs) goes into the Spark
    application's name."""
    if len(argv) > 1 or argv[:1] in (["-h"], ["--help"]):
        print(__doc__, file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    # The job's own JSON lines (progress, sessions, maintenance) to stdout, its log; Spark's and py4j's stay quiet.
    handler = logging.StreamHandler(sys.stdout)
    lake_tables.log.addHandler(handler)
    lake_tables.log.setLevel(logging.INFO)
    config = load()
    event_schema = json.loads(Path(config.lake.event_schema).read_text())
    spark = session("acme-clickstream-lake-writer" + (f" ({argv[0]})" if argv else ""), config.spark.shuffle_partitions)
    status = StatusFile(config.spark.status_file)
    spark.streams.addListener(ProgressListener(status))
    forgotten = Forgotten(note=status.note)
    job = TableJob(spark, config, event_schema, note=status.note, forgotten=forgotten)
    # The start's steps that wait on Kafka, S3 and the registry more than on the cores run side by side (each a few
    # seconds): the forgotten list read while the tables are made ready, then the queries started. No query starts
    # before the list is in.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="start") as pool:
        listed = pool.submit(read_list, spark, config)
        schema = pool.submit(registered_schema, config)
        job.prepare()
        forgotten.load(listed.result())
        started = pool.submit(job.start)
        latest = LatestTopic(
            lambda: start_latest_query(
                latest_rows(spark, config, event_schema, forgotten.hashes), config, *schema.result()
            )
        )
        tables = started.result()
    forgotten.on_change = latest.restart

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set() and latest.active() and all(q.isActive for q in tables):
        stop.wait(1.0)
    failed = [q for q in [*tables, latest.query] if not q.isActive and q.exception()]
    job.stop()
    latest.stop()
    for query in failed:
        print(f"query {query.name} failed: {query.exception()}", file=sys.stderr, flush=True)
    spark.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
