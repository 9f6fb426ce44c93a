"""Reads the Parquet lake without Spark (pyarrow over S3), counting only what the lake writer committed.

Spark's file sink writes a micro-batch's files first and records them in <prefix>/_spark_metadata when the
batch commits; a job killed between the two leaves files no batch committed, and a later run writes those
rows again. So readers list the committed files from that log, as Spark itself does, instead of globbing.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

import pyarrow as pa
import pyarrow.dataset as ds
from pyarrow import fs

from chalicelib.settings import LAKE_TABLES, aws_environment, lake_url, setting

LAKE_PREFIX, INVALID_PREFIX = LAKE_TABLES  # the events and the invalid events
PARTITIONING = ds.partitioning(pa.schema([("dt", pa.string()), ("hour", pa.string())]), flavor="hive")


@lru_cache(maxsize=4)
def _filesystem(endpoint: str, region: str, key: str, secret: str) -> fs.S3FileSystem:
    scheme, _, host = endpoint.partition("://")
    return fs.S3FileSystem(endpoint_override=host, scheme=scheme, region=region, access_key=key, secret_key=secret)


def filesystem() -> fs.S3FileSystem:
    """The lake's S3: LocalStack by default, or LAKE_S3_ENDPOINT (MinIO, AWS) with the AWS credentials."""
    aws = aws_environment()
    endpoint = os.environ.get("LAKE_S3_ENDPOINT") or aws["AWS_ENDPOINT_URL"]
    return _filesystem(endpoint, aws["AWS_DEFAULT_REGION"], aws["AWS_ACCESS_KEY_ID"], aws["AWS_SECRET_ACCESS_KEY"])


def table_path(prefix: str, bucket: str | None = None) -> str:
    """bucket/key of a lake table: `prefix` in `bucket` if given; else where the lake writer writes it
    (LAKE_PATH, LAKE_INVALID_PATH), or `prefix` in the lake bucket."""
    if bucket is None and prefix in LAKE_TABLES:
        return lake_url(prefix).split("://", 1)[-1]
    return f"{bucket or setting('LAKE_BUCKET')}/{prefix}"


def committed_files(prefix: str, bucket: str | None = None) -> list[str]:
    """The Parquet files of `prefix` that committed micro-batches added (bucket/key paths)."""
    s3 = filesystem()
    log_dir = f"{table_path(prefix, bucket)}/_spark_metadata"
    try:
        entries = s3.get_file_info(fs.FileSelector(log_dir))
    except FileNotFoundError:
        return []
    # Batch logs are named by batch id; every 10th is a compaction ("N.compact") that holds all before it.
    logs = {}
    for entry in entries:
        name = entry.base_name
        if entry.type == fs.FileType.File and not name.startswith("."):
            stem = name.removesuffix(".compact")
            if stem.isdigit():
                logs[int(stem)] = entry.path
    compactions = [batch for batch, path in logs.items() if path.endswith(".compact")]
    start = max(compactions, default=-1)
    files: dict[str, None] = {}
    for batch in sorted(b for b in logs if b >= start):
        with s3.open_input_stream(logs[batch]) as stream:
            lines = stream.read().decode().splitlines()[1:]  # the first line is the log format's version
        for line in lines:
            entry = json.loads(line)
            path = entry["path"].split("://", 1)[-1]
            if entry.get("action", "add") == "add":
                files[path] = None
            else:
                files.pop(path, None)
    return list(files)


def read(prefix: str = LAKE_PREFIX, bucket: str | None = None, columns: list[str] | None = None) -> pa.Table:
    """The committed rows under `prefix` as one table, with dt and hour from the partition folders."""
    files = committed_files(prefix, bucket)
    if not files:
        return pa.table({})
    dataset = ds.dataset(
        files,
        filesystem=filesystem(),
        format="parquet",
        partitioning=PARTITIONING,
        partition_base_dir=table_path(prefix, bucket),
    )
    # A lake written by an earlier version lacks the columns added since: ask only for those it has.
    present = set(dataset.schema.names)
    return dataset.to_table(columns=None if columns is None else [c for c in columns if c in present])


def count(prefix: str = LAKE_PREFIX) -> int:
    return read(prefix, columns=["id"]).num_rows if committed_files(prefix) else 0
