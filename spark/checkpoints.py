"""The streaming queries' checkpoints: what a stop mid-write leaves in them, cleared before a query starts.

Spark writes each entry of a query's offset and commit logs to a hidden temporary file (`.N.<uuid>.tmp`) and then
renames it. A stop during that write (`make down` while a new query plans its first batch) leaves the temporary
file behind; Spark reads no entry from it, but a query with no entry yet refuses to start on a log folder that is
not empty (STATE_STORE_CHECKPOINT_LOCATION_NOT_EMPTY), so the lake writer would never start again. Such a file is
never an entry: deleting it loses nothing.
"""

from __future__ import annotations

from pyspark.sql import SparkSession

#: The logs of a checkpoint that a query writes an entry to at every batch.
LOGS = ("offsets", "commits")


def clear_unfinished_writes(spark: SparkSession, checkpoint: str) -> list[str]:
    """Delete the temporary files of interrupted log writes in `checkpoint`; the paths deleted."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    root = jvm.org.apache.hadoop.fs.Path(checkpoint)
    filesystem = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    deleted = []
    for log in LOGS:
        folder = jvm.org.apache.hadoop.fs.Path(root, log)
        if not filesystem.exists(folder):
            continue
        for status in filesystem.listStatus(folder):
            name = status.getPath().getName()
            if name.startswith(".") and name.endswith(".tmp"):
                filesystem.delete(status.getPath(), False)
                deleted.append(str(status.getPath()))
    return deleted
