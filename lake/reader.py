"""Reads the lake's Delta tables without Spark: delta-rs (`deltalake`) over S3, lazily.

A Delta table's log names the files of every committed version, so a reader sees whole commits only: nothing of a
batch a crash interrupted, nothing twice. `dataset()` is a pyarrow dataset of the current version (projection and
partition pruning happen when it is scanned: DuckDB, Polars, pyarrow); `read()` materialises what was asked.
"""

from __future__ import annotations

from functools import lru_cache

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from pyarrow import fs

from pipeline.config import load
from pipeline.contract import LAKE_TABLES

LAKE_PREFIX, INVALID_PREFIX, SESSIONS_PREFIX = LAKE_TABLES  # the events, the invalid events, the sessions


def storage_options() -> dict[str, str]:
    """delta-rs's S3 settings: LocalStack by default, or LAKE_S3_ENDPOINT (MinIO, AWS) with the AWS credentials."""
    config = load()
    return {
        "AWS_ENDPOINT_URL": config.lake.s3_endpoint,
        "AWS_REGION": config.aws.region,
        "AWS_ACCESS_KEY_ID": config.aws.access_key_id,
        "AWS_SECRET_ACCESS_KEY": config.aws.secret_access_key,
        "AWS_ALLOW_HTTP": "true",
    }


@lru_cache(maxsize=4)
def _filesystem(endpoint: str, region: str, key: str, secret: str) -> fs.S3FileSystem:
    scheme, _, host = endpoint.partition("://")
    return fs.S3FileSystem(endpoint_override=host, scheme=scheme, region=region, access_key=key, secret_key=secret)


def filesystem() -> fs.S3FileSystem:
    """The lake's S3 as pyarrow's filesystem (for reading single files of a table)."""
    config = load()
    aws = config.aws
    return _filesystem(config.lake.s3_endpoint, aws.region, aws.access_key_id, aws.secret_access_key)


def table_path(prefix: str, bucket: str | None = None) -> str:
    """bucket/key of a lake table: `prefix` in `bucket` if given; else where the lake writer writes it
    (LAKE_PATH, LAKE_INVALID_PATH), or `prefix` in the lake bucket."""
    lake = load().lake
    if bucket is None and prefix in LAKE_TABLES:
        return lake.path(prefix).split("://", 1)[-1]
    return f"{bucket or lake.bucket}/{prefix}"


def table(prefix: str = LAKE_PREFIX, bucket: str | None = None) -> DeltaTable | None:
    """The Delta table at its latest version, or None while the lake writer has not created it."""
    try:
        return DeltaTable(f"s3://{table_path(prefix, bucket)}", storage_options=storage_options())
    except TableNotFoundError:
        return None


def dataset(prefix: str = LAKE_PREFIX, bucket: str | None = None) -> ds.Dataset | None:
    """The table's current version as a lazy pyarrow dataset (dt is a partition column), or None.

    delta-rs names the files of the version (its log decides what is committed); pyarrow's own S3 reads them.
    delta-rs's to_pyarrow_dataset() would read them through a Python filesystem handler instead, whose threads
    can outlive the interpreter and abort it on exit.
    """
    found = table(prefix, bucket)
    if found is None:
        return None
    base = table_path(prefix, bucket)
    schema = pa.schema(found.schema().to_arrow())
    partitions = pa.schema([schema.field(name) for name in found.metadata().partition_columns])
    files = [uri.split("://", 1)[-1] for uri in found.file_uris()]
    return ds.dataset(
        files,
        schema=schema,
        filesystem=filesystem(),
        format="parquet",
        partitioning=ds.partitioning(partitions, flavor="hive"),
        partition_base_dir=base,
    )


def read(prefix: str = LAKE_PREFIX, bucket: str | None = None, columns: list[str] | None = None) -> pa.Table:
    """The committed rows of a table (only the asked columns it has: an older table may lack newer ones)."""
    scan = dataset(prefix, bucket)
    if scan is None:
        return pa.table({})
    present = set(scan.schema.names)
    return scan.to_table(columns=None if columns is None else [c for c in columns if c in present])


def count(prefix: str = LAKE_PREFIX) -> int:
    scan = dataset(prefix)
    return 0 if scan is None else scan.count_rows()
