"""Forgotten customers (`make forget`): the lake writer keeps none of their rows, in any table, from any source.

The list is the compacted KAFKA_FORGOTTEN_TOPIC, one record per customer keyed by contract.customer_hash (the list
holds no id itself), read when the job starts: so a rebuild from the topics after a LocalStack restart, a late
event and a resend all meet it. Every batch of a table drops the rows of a forgotten customer before its write (an
event's customer_id; an invalid row's, in the payload it keeps) and counts them; the latest topic's query, whose
plan is fixed when it starts, is started again with the new list. `make forget` also asks each table's maintenance
to DELETE the rows it already holds (maintenance.py), and a vacuum purges their files LAKE_VACUUM_RETAIN_HOURS later.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lake_tables import Note, in_list, log_note
from pipeline.config import Config
from pipeline.contract import customer_hash
from topics import kafka_options

#: Where an invalid row names its customer: in the event it kept (as JSON text).
PAYLOAD_CUSTOMER = "$.event.customer_id"


def customer_hash_of(columns: list[str]) -> str:
    """SQL for the hash of a table's customer id: its column (events, sessions), else the one in an invalid row's
    payload. The batches' filter and `make forget`'s DELETE both match with it."""
    customer = "customer_id" if "customer_id" in columns else f"get_json_object(payload, '{PAYLOAD_CUSTOMER}')"
    return f"sha2({customer}, 256)"


def forgotten_rows(columns: list[str], hashes: Iterable[str]) -> Column:
    """Whether a row is a forgotten customer's (never true for a row naming no customer)."""
    return F.coalesce(F.expr(customer_hash_of(columns)).isin(sorted(hashes)), F.lit(False))


def read_list(spark: SparkSession, config: Config) -> set[str]:
    """The hashes the forgotten topic holds (every key of its records: a customer is never remembered again)."""
    records = (
        spark.read.format("kafka")
        .options(**kafka_options(config.kafka))
        .option("subscribe", config.kafka.forgotten_topic)
        .option("startingOffsets", "earliest")
        .option("endingOffsets", "latest")
        .load()
    )
    return {row[0] for row in records.select(F.col("key").cast("string")).distinct().collect() if row[0]}


class Forgotten:
    """The list the lake writer filters with, shared by its tables' writes, their maintenance and the latest query;
    `version` counts its changes, and what it dropped goes to `note` (the status file's "forgotten")."""

    def __init__(self, hashes: Iterable[str] = (), note: Note = log_note) -> None:
        self._hashes = frozenset(hashes)
        self._lock = threading.Lock()
        self.note = note
        #: Called once the list has grown, before the rows are deleted (the latest query starts again with it).
        self.on_change: Callable[[], None] = lambda: None
        self.version = 0
        #: Rows each table dropped since the job started.
        self.dropped: dict[str, int] = {}
        self._noted()

    @property
    def hashes(self) -> frozenset[str]:
        return self._hashes

    def load(self, hashes: Iterable[str]) -> None:
        """The forgotten topic's hashes (read_list), as the job starts."""
        with self._lock:
            self._hashes = self._hashes | frozenset(hashes)
        self._noted()

    def add(self, customers: Iterable[str]) -> None:
        """Customers `make forget` just forgot (their ids: the request carries them, the topic their hashes)."""
        with self._lock:
            more = self._hashes | {customer_hash(c) for c in customers}
            grown = more != self._hashes
            if grown:
                self._hashes, self.version = frozenset(more), self.version + 1
        if grown:
            self.on_change()
        self._noted()

    def kept(self, rows: DataFrame, table: str) -> DataFrame:
        """`rows` without the forgotten customers', those dropped counted (one more job a batch, while any are)."""
        hashes = self._hashes
        if not hashes:
            return rows
        gone = forgotten_rows(rows.columns, hashes)
        dropped = rows.where(gone).count()
        if dropped:
            with self._lock:
                self.dropped[table] = self.dropped.get(table, 0) + dropped
            self._noted()
        return rows.where(~gone)

    def _noted(self) -> None:
        self.note("forgotten", {"customers": len(self._hashes), "rows_dropped": dict(self.dropped)})


def delete_rows(spark: SparkSession, path: str, customers: list[str]) -> int:
    """Delete every row of `customers` the table holds (Delta DELETE: the files they were in are rewritten without
    them, the old files left to the vacuum); how many."""
    hashed = customer_hash_of(spark.read.format("delta").load(path).columns)
    hashes = in_list(sorted(customer_hash(c) for c in customers))
    answer = spark.sql(f"DELETE FROM delta.`{path}` WHERE {hashed} IN ({hashes})").first()
    return int(answer["num_affected_rows"]) if answer is not None else 0
