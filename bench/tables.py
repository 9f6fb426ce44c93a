"""The Delta tables' figures for `make bench`, on tables of synthetic events Spark writes directly (bench/table_job.py):

- Day growth: the lake writer's micro-batch (30 s at 1k events/s) appended into a day holding 1M rows, then into
  the same day grown to 20M: the ratio shows whether a batch's cost grows with the day it lands in (with the
  MERGE it replaced, it did: the anti-join read the whole day).
- Files: an hour of 200 events/s committed every 30 s (120 appends of 6,000 rows into one day), data files of that
  day before and after the lake writer's compaction, and their median size, read from the log with delta-rs.
- The report: `make report`'s command over the table at 10M rows, its wall time and peak RSS.
- Forgetting: `make forget`'s delete of one customer from the table at 1M rows, its time and the table's size.
The tables live under s3://<lake bucket>/bench/<run>/ and are deleted afterwards.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from bench.lake import delete_prefix
from chalicelib.collector import Collector, RequestInfo
from chalicelib.sinks.memory import MemorySink
from generator.synthetic import synthetic_events
from lake.reader import table
from pipeline.config import Config
from stack import spark
from stack.cluster import current
from stack.paths import REPO, runtime_dir
from stack.process import free_port

JOB = Path(__file__).resolve().parent / "table_job.py"
TEMPLATE_EVENTS = 10_000
ROWS_PER_FILE = current().bench.rows_per_file
#: 20 s of 1k events/s: one micro-batch of the lake writer (LAKE_COMMIT_INTERVAL) at the latency figures' rate.
BATCH_ROWS = 20_000
BATCHES = 3
#: The day's rows for the two append figures and the report's.
SMALL_DAY, REPORT_DAY, LARGE_DAY = 1_000_000, 10_000_000, 20_000_000
#: An hour at 200 events/s with LAKE_COMMIT_INTERVAL's 20 s.
HOUR_COMMITS = current().bench.hour_commits
HOUR_ROWS_PER_COMMIT = 4_000


def _template(config: Config, path: Path) -> None:
    """Raw-topic records as the collector publishes them (its metadata included)."""
    sink = MemorySink()
    collector = Collector(config, sink)
    events = synthetic_events(TEMPLATE_EVENTS, seed=11)
    for offset in range(0, len(events), 1000):
        body = json.dumps(events[offset : offset + 1000]).encode()
        assert collector.collect(body, RequestInfo("application/json", "127.0.0.1", "bench")).status_code == 200
    with path.open("w") as out:
        for n, record in enumerate(r for r in sink.records if r.topic == config.kafka.raw_topic):
            out.write(json.dumps({"key": record.key.decode(), "value": record.value.decode(), "n": n}) + "\n")


def _job(*args: str) -> dict[str, Any]:
    config = current().replace(spark={"master": "local[2]", "ui_port": free_port()})
    env = config.child_environment() | spark.job_environment(config)
    log = runtime_dir() / "bench-table-job.log"
    with log.open("a") as out:
        out.write(f"--- {' '.join(args[:2])}\n")
        out.flush()
        done = subprocess.run([sys.executable, str(JOB), *args], env=env, stdout=subprocess.PIPE, stderr=out, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"bench"')]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"bench: table job {args[0]} failed (rc {done.returncode}); see {log}")
    return json.loads(lines[-1])["bench"]


def _file_sizes(key: str) -> list[tuple[int, str]]:
    """Each current data file of the table: its size in bytes and its day, from the log (delta-rs)."""
    found = table(key, current().lake.bucket)
    assert found is not None, key
    actions = pa.table(found.get_add_actions(flatten=True))
    return list(zip(actions["size_bytes"].to_pylist(), actions["partition.dt"].to_pylist(), strict=True))


def _day_files(key: str, day: str) -> dict[str, Any]:
    sizes = [size for size, dt in _file_sizes(key) if dt == day]
    return {"files": len(sizes), "median_mb": round(statistics.median(sizes) / 2**20, 2) if sizes else 0}


def _table_mb(key: str) -> float:
    """The size of the table's current data files."""
    return round(sum(size for size, _ in _file_sizes(key)) / 2**20, 1)


def _report(lake_path: str, invalid_path: str, sessions_path: str) -> dict[str, Any]:
    """`make report`'s command over the given tables: wall time and peak RSS (of the process and its children)."""
    paths = {"events_path": lake_path, "invalid_path": invalid_path, "sessions_path": sessions_path}
    env = current().replace(lake=paths).child_environment()
    with tempfile.TemporaryDirectory() as out:
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "lake.report", "--output", f"{out}/report.html"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
        output = process.stdout.read().decode(errors="replace") if process.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"bench: the report failed:\n{output[-2000:]}")
    rss_mb = usage.ru_maxrss // 1024
    return {
        "seconds": round(seconds, 1),
        "peak_rss_mb": rss_mb,
        "events": json.loads(output[: output.rindex("}") + 1]).get("events"),
        "targets": {"<= 20 s": seconds <= 20, "<= 1 GB": rss_mb <= 1024},
    }


def table_figures(config: Config) -> dict[str, Any]:
    prefix = f"bench/{uuid.uuid4().hex[:8]}"
    bucket = config.lake.bucket
    aged, hour = f"{prefix}/aged/clickstream-data", f"{prefix}/hour/clickstream-data"
    today = datetime.now(UTC).date()
    aged_day = (today - timedelta(days=1)).isoformat()
    result: dict[str, Any] = {"rows_per_file": ROWS_PER_FILE}
    with tempfile.TemporaryDirectory() as work:
        template = str(Path(work) / "template.jsonl")
        _template(config, Path(template))
        aged_url, hour_url = f"s3a://{bucket}/{aged}", f"s3a://{bucket}/{hour}"
        held = 0

        def grow_to(rows: int) -> dict[str, Any]:
            nonlocal held
            files = max(1, -(-(rows - held) // ROWS_PER_FILE))
            built = _job("build", aged_url, template, aged_day, str(files), str(ROWS_PER_FILE))
            held += built["rows"]
            return built

        def append() -> dict[str, Any]:
            nonlocal held
            appended = _job("append", aged_url, template, aged_day, str(BATCH_ROWS), str(BATCHES))
            held += BATCH_ROWS * BATCHES
            return {"day_rows": held - BATCH_ROWS * BATCHES, **appended}

        try:
            built = [grow_to(SMALL_DAY)]
            small = append()
            # `make forget` on a lake of 1M events: the delete's time, and the table's size it had to look through.
            result["forget_on_1m"] = {**_job("forget", aged_url, template), "table_mb": _table_mb(aged)}
            built.append(grow_to(REPORT_DAY))
            # No invalid or sessions table there: the report shows none (sessions of 10M events are not built).
            elsewhere = f"s3a://{bucket}/{prefix}/aged"
            result["report_on_10m"] = _report(
                aged_url, f"{elsewhere}/clickstream-invalid", f"{elsewhere}/clickstream-sessions"
            )
            built.append(grow_to(LARGE_DAY))
            large = append()
            ratio = large["seconds_p50"] / small["seconds_p50"]
            result["day_growth"] = {
                "rows_per_batch": BATCH_ROWS,
                "day_rows_small": small["day_rows"],
                "day_rows_large": large["day_rows"],
                "seconds_p50_small": small["seconds_p50"],
                "seconds_p50_large": large["seconds_p50"],
                "cost_ratio": round(ratio, 2),
                "seconds_to_write_the_day": round(sum(b["seconds"] for b in built), 1),
                "target ratio <= 1.3": ratio <= 1.3,
            }

            hourly = _job("append", hour_url, template, today.isoformat(), str(HOUR_ROWS_PER_COMMIT), str(HOUR_COMMITS))
            before = _day_files(hour, today.isoformat())
            compacted = _job("compact", hour_url, today.isoformat())
            after = _day_files(hour, today.isoformat())
            result["files_after_an_hour_at_200_eps"] = {
                "commits": HOUR_COMMITS,
                "rows": HOUR_COMMITS * HOUR_ROWS_PER_COMMIT,
                "append_seconds_p50": hourly["seconds_p50"],
                "append_seconds_max": hourly["seconds_max"],
                "before_compaction": before,
                "after_compaction": after,
                "compaction_ms": compacted["ms"],
                "target after <= 4": after["files"] <= 4,
            }
        finally:
            delete_prefix(f"{prefix}/")
    return result
