"""A table query's append (spark/lake_tables.py TableWriter), on a real Spark session and Delta table: a batch a
restarted query replays commits nothing twice, whether the table knows it by its commit's name (userMetadata) or by
Delta's transaction id (as an older job wrote it); another query's batch of the same number is its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lake_tables

pytestmark = pytest.mark.slow

SCHEMA = "id string, dt string"


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    # The JVM has the Delta jars (tests/spark/conftest.py).
    session = lake_tables.session("table-writer-test", {"spark.sql.shuffle.partitions": "2"})
    yield session
    session.stop()


@pytest.fixture
def table(spark: Any, tmp_path: Path) -> str:
    path = str(tmp_path / "events")
    lake_tables.ensure_table(spark, path, spark.createDataFrame([], SCHEMA).schema)
    return path


def run_of(query_id: str, path: str) -> lake_tables.TableWriter:
    """A query's writer as a (re)started lake writer makes it."""
    writer = lake_tables.TableWriter(path, threading.Lock(), lambda days: None)
    writer.started(query_id)
    return writer


def batch(spark: Any, *ids: str) -> Any:
    return spark.createDataFrame([(i, "2026-12-05") for i in ids], SCHEMA)


def ids_in(spark: Any, path: str) -> list[str]:
    return sorted(row["id"] for row in spark.read.format("delta").load(path).collect())


def version_of(spark: Any, path: str) -> int:
    return spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").collect()[0]["version"]


def test_a_replayed_batch_commits_nothing_and_the_next_one_lands(spark: Any, table: str) -> None:
    first_run = run_of("q", table)
    first_run(batch(spark, "a", "b"), 0)
    first_run(batch(spark, "c"), 1)
    committed = version_of(spark, table)

    # A crash after batch 1's commit, before the checkpoint's: the next run replays batch 1 first.
    restarted = run_of("q", table)
    restarted(batch(spark, "c"), 1)
    assert version_of(spark, table) == committed
    restarted(batch(spark, "d"), 2)
    assert ids_in(spark, table) == ["a", "b", "c", "d"]

    # Another query (another checkpoint) numbers its batches from 0 too: they are its own.
    run_of("other", table)(batch(spark, "e"), 1)
    assert ids_in(spark, table) == ["a", "b", "c", "d", "e"]


def test_a_batch_an_older_job_committed_with_delta_s_transaction_id_is_not_committed_again(
    spark: Any, table: str
) -> None:
    older = batch(spark, "a").write.format("delta").mode("append")
    older.option("txnAppId", "clickstream-q").option("txnVersion", "7").save(table)

    restarted = run_of("q", table)
    restarted(batch(spark, "a"), 7)
    restarted(batch(spark, "b"), 8)
    assert ids_in(spark, table) == ["a", "b"]
