"""A query's checkpoint that a stop left mid-write (spark/checkpoints.py): on a real Spark session, a stateful query
as the lake writer's (its dedupe window) refuses the folder, and starts once the unfinished write is cleared."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lake_tables
from checkpoints import clear_unfinished_writes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    # The JVM has the Delta jars (tests/spark/conftest.py).
    session = lake_tables.session("checkpoints-test", {"spark.sql.shuffle.partitions": "2"})
    yield session
    session.stop()


def test_a_query_starts_again_on_a_checkpoint_a_stop_left_mid_write(spark: Any, tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint"
    (checkpoint / "offsets").mkdir(parents=True)
    # What a stop leaves when it interrupts the first entry's write: the temporary file, never renamed to `0`.
    unfinished = checkpoint / "offsets" / f".0.{uuid.uuid4()}.tmp"
    unfinished.write_text("v1\n")
    rows = spark.readStream.format("rate").option("rowsPerSecond", 10).load()
    deduped = rows.withWatermark("timestamp", "1 minute").dropDuplicatesWithinWatermark(["value"])

    def start() -> Any:
        writer = deduped.writeStream.format("noop").option("checkpointLocation", str(checkpoint))
        return writer.trigger(processingTime="1 second").start()

    refused = start()
    with pytest.raises(Exception, match="STATE_STORE_CHECKPOINT_LOCATION_NOT_EMPTY"):
        refused.awaitTermination(60)

    assert clear_unfinished_writes(spark, str(checkpoint)) == [f"file:{unfinished}"]
    query = start()
    try:
        committed = checkpoint / "commits" / "0"
        deadline = time.monotonic() + 60
        while not committed.exists() and query.isActive and time.monotonic() < deadline:
            time.sleep(0.2)
        assert committed.exists(), query.exception()
    finally:
        query.stop()
