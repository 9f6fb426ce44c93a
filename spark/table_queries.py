"""The lake writer's table queries and threads: the raw topic into the events and invalid tables, the invalid topic
into the invalid table, each dropping the records it saw within LAKE_DEDUPE_WINDOW (records.first_arrivals) and
appending every LAKE_COMMIT_INTERVAL (lake_tables.TableWriter, idempotent across restarts) without the forgotten
customers' rows (forgetting.py); the sessions table kept up from the events table (sessions.py); each table's
sweep, compaction, vacuum and `make forget` (maintenance.py). One lock per table keeps its writes and its
maintenance in turn; one stop event ends the threads between their commits."""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

import lake_tables
import records
import sessionize
import sessions
import wire_format
from checkpoints import clear_unfinished_writes
from forgetting import Forgotten
from maintenance import Maintenance, keyed_by_id
from pipeline.config import Config
from pipeline.contract import table_name
from topics import read_topic


class RawRecordsWriter:
    """The lake query's foreachBatch: a batch of parsed raw records (their first arrivals); its events are appended
    to the events table, and the records no event can be made of to the invalid table."""

    def __init__(
        self, events: lake_tables.TableWriter, unfileable: lake_tables.TableWriter, ip_mode: str, enrich: bool
    ) -> None:
        self.events, self.unfileable = events, unfileable
        self.ip_mode, self.enrich = ip_mode, enrich

    def started(self, query_id: str) -> None:
        self.events.started(query_id)
        self.unfileable.started(query_id)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        # Both tables' rows come from one read and parse of the batch, cached, and cached before either table uses
        # it: tasks of two branches computing one partition at the same time would each read and parse it.
        parsed = batch.persist()
        try:
            if parsed.count() == 0:  # a batch that only moved the window's watermark: nothing to file
                return
            events, unfileable = records.table_rows(parsed, self.ip_mode, self.enrich)
            self.events(events, batch_id)
            self.unfileable(unfileable, batch_id)
        finally:
            parsed.unpersist()


@dataclass
class TableJob:
    """The tables' queries and threads: prepare() readies the tables and starts the threads, start() the queries,
    and stop() ends them all between commits."""

    spark: SparkSession
    config: Config
    event_schema: dict[str, Any]
    note: lake_tables.Note = lake_tables.log_note
    forgotten: Forgotten = field(default_factory=Forgotten)
    stopping: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    queries: list[StreamingQuery] = field(default_factory=list)
    writers: list[lake_tables.TableWriter] = field(default_factory=list)
    #: The queries prepare() made, each a (rows, name, foreachBatch writer, checkpoint folder), for start().
    prepared: list[tuple[DataFrame, str, Any, str]] = field(default_factory=list)

    def _table(self, path: str, schema: Any) -> Maintenance:
        """The Delta table at `path` (created unless it exists) and its maintenance, started."""
        lake_tables.ensure_table(self.spark, path, schema)
        sweeps = keyed_by_id(schema.fieldNames())
        maintenance = Maintenance(
            self.spark, path, self.config.maintenance, self.stopping, self.note, sweeps, self.forgotten
        )
        self.threads.append(maintenance.start())
        return maintenance

    def _start(self, df: DataFrame, name: str, writer: Any, checkpoint: str) -> None:
        location = f"{self.config.spark.checkpoint.rstrip('/')}/{checkpoint}"
        if cleared := clear_unfinished_writes(self.spark, location):
            self.note(name, {"cleared_unfinished_checkpoint_writes": cleared})
        query = (
            df.writeStream.queryName(name)
            .foreachBatch(writer)
            .option("checkpointLocation", location)
            .trigger(processingTime=self.config.lake.commit_interval)
            .start()
        )
        writer.started(str(query.id))
        self.queries.append(query)

    def prepare(self) -> None:
        """The tables (made unless they exist), the sessions thread and each table's maintenance; start() then
        starts the queries."""
        lake, config = self.config.lake, self.config
        enrich = lake.enrichment
        raw_topic = read_topic(self.spark, config, config.kafka.raw_topic)
        parsed = records.parse_raw_records(raw_topic, self.event_schema, wire_format.registry_check(config))
        raw = records.first_arrivals(parsed, lake.dedupe_window)
        invalid_topic = read_topic(self.spark, config, config.kafka.invalid_topic)
        invalid = records.first_arrivals(records.invalid_rows(invalid_topic, lake.ip_mode, enrich), lake.dedupe_window)
        events, _ = records.table_rows(parsed, lake.ip_mode, enrich)
        events_table = self._table(lake.events_path, events.schema)
        invalid_table = self._table(lake.invalid_path, invalid.schema)
        # Created (and compacted) even when not kept up, so every table a reader or `make compact` names exists.
        sessions_table = self._table(lake.sessions_path, sessionize.empty_sessions(events).schema)
        if config.keeps_sessions:
            sessions.enable_change_feed(self.spark, lake.events_path)
            updater = sessions.SessionsUpdater(
                self.spark, lake.sessions_path, lake.events_path, sessions_table, config.sessions, self.stopping,
                self.note,
            )  # fmt: skip
            self.threads.append(updater.start())
        writer = RawRecordsWriter(
            self._writer(events_table, persist=False), self._writer(invalid_table, persist=False), lake.ip_mode, enrich
        )
        # Checkpoint folders of their own since the queries hold the dedupe window's state: a checkpoint of the
        # earlier, stateless queries cannot take it (README's *Moving an existing lake*).
        self.prepared = [
            (raw, "lake", writer, "lake-appends"),
            (invalid, "invalid", self._writer(invalid_table), "invalid-appends"),
        ]

    def start(self) -> list[StreamingQuery]:
        """The lake query and the invalid query, as prepare() made them."""
        for df, name, writer, checkpoint in self.prepared:
            self._start(df, name, writer, checkpoint)
        return self.queries

    def _writer(self, table: Maintenance, persist: bool = True) -> lake_tables.TableWriter:
        keep = functools.partial(self.forgotten.kept, table=table_name(table.path))
        writer = lake_tables.TableWriter(table.path, table.lock, table.wrote, self.stopping, keep, persist)
        self.writers.append(writer)
        return writer

    def stop(self, timeout_s: float = 120) -> None:
        """End the sessions and maintenance threads once the round or compaction under way has committed (within
        `timeout_s` in all: a stop must not outwait the stack's, which then kills the job), then the queries once
        no table write is under way (a batch that reaches its write after that writes nothing)."""
        self.stopping.set()
        deadline = time.monotonic() + timeout_s
        for thread in self.threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for writer in self.writers:
            writer.drained()
        for query in self.queries:
            query.stop()
