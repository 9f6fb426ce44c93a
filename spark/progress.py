"""What the lake writer reports of itself: a StreamingQueryListener that keeps each query's state, last progress and
running totals in a status file (SPARK_STATUS_FILE), which `make status`, `make up`, the bench and the tests read, and
one JSON line per event in the log, for people. Nobody parses the log.

The status file is one JSON document, replaced whole at each change:
  {"pid": ..., "updated_at": ..., "queries": {"lake": {"state": "started" | "active" | "terminated", "last": {...},
   "totals": {...}}, ...}, "notes": {"sessions": {...}, "maintenance <table>": {...}}}
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from pyspark.sql.streaming import StreamingQueryListener

from lake_tables import log, log_note


def kafka_offsets(text: str | None) -> dict[tuple[str, str], int]:
    """A Kafka source's offsets ({"topic": {"partition": offset}}) by (topic, partition); {} for another source or
    no offsets yet."""
    try:
        document = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(document, dict):
        return {}
    return {
        (topic, partition): int(offset)
        for topic, parts in document.items()
        if isinstance(parts, dict)
        for partition, offset in parts.items()
    }


def progress_line(progress: Any) -> dict[str, Any]:
    """A micro-batch's progress as the status file keeps it."""
    processed = lag = 0
    for source in progress.sources:
        end, latest = kafka_offsets(source.endOffset), kafka_offsets(source.latestOffset)
        processed += sum(end.values())
        lag += sum(offset - end.get(partition, 0) for partition, offset in latest.items())
    return {
        "query": progress.name,
        "batch": progress.batchId,
        "rows": progress.numInputRows,
        "rows_per_s": round(progress.processedRowsPerSecond or 0, 1),
        "batch_ms": progress.durationMs.get("triggerExecution"),
        # Where a slow batch spent its time (addBatch: reading and writing; walCommit/commitOffsets: the
        # checkpoint's offset and commit logs).
        "phases_ms": {k: v for k, v in progress.durationMs.items() if k != "triggerExecution" and v >= 50},
        "lag": lag,
        # Offsets read so far, summed over partitions: the topics' end offsets once all is processed.
        "offsets": processed,
        "at": progress.timestamp,
    }


class StatusFile:
    """The status document, kept in memory and written whole (atomically) at each change."""

    def __init__(self, path: str) -> None:
        self.path = Path(path) if path else None
        self.document: dict[str, Any] = {"pid": os.getpid(), "queries": {}, "notes": {}}
        self.lock = threading.Lock()

    def query(self, name: str) -> dict[str, Any]:
        empty = {"data_batches": 0, "rows": 0, "ms": 0, "steady_rows": 0, "steady_ms": 0}
        return self.document["queries"].setdefault(name, {"state": "started", "last": None, "totals": empty})

    def note(self, kind: str, figures: dict[str, Any]) -> None:
        """What a thread of the job last did (a sessions round, a table's compaction), in the log and the file."""
        log_note(kind, figures)
        with self.lock:
            self.document["notes"][kind] = {**figures, "at": time.time()}
            self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        self.document["updated_at"] = time.time()
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.document, indent=2, default=str))
        tmp.replace(self.path)


class ProgressListener(StreamingQueryListener):
    """Each query's state, last progress and totals into the status file; a JSON line per event into the log."""

    def __init__(self, status: StatusFile) -> None:
        self.status = status
        self.names: dict[str, str] = {}

    def onQueryStarted(self, event: Any) -> None:
        log.info(json.dumps({"query_started": event.name, "at": time.time()}))
        with self.status.lock:
            self.names[str(event.id)] = event.name
            self.status.query(event.name)["state"] = "started"
            self.status._write()

    def onQueryProgress(self, event: Any) -> None:
        line = progress_line(event.progress)
        log.info(json.dumps(line))
        with self.status.lock:
            query = self.status.query(line["query"])
            query.update(state="active", last=line)
            totals = query["totals"]
            if line["rows"]:
                # The steady rate is of the batches that ran flat out: after the first with data (which also pays
                # for class loading and code generation), and leaving records waiting (a backlog's last, short
                # batch is mostly a batch's fixed cost).
                if totals["data_batches"] and line["lag"]:
                    totals["steady_rows"] += line["rows"]
                    totals["steady_ms"] += line["batch_ms"] or 0
                totals["data_batches"] += 1
                totals["rows"] += line["rows"]
                totals["ms"] += line["batch_ms"] or 0
            self.status._write()

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        log.info(json.dumps({"query_terminated": str(event.id), "exception": event.exception}))
        with self.status.lock:
            name = self.names.get(str(event.id))
            if name is not None:
                self.status.query(name).update(state="terminated", exception=event.exception)
                self.status._write()
