"""The Delta tables' figures for `make bench`, on tables of synthetic events Spark writes directly (bench/table_job.py):

- MERGE: the lake writer's micro-batch (30 s at 1k events/s) into a table of 1M rows, then of 10M rows. The
  table grows by days, as a lake ages at a steady rate (the same rows per day), so the ratio shows whether a
  batch's cost grows with the table's age.
- Files: an hour of 200 events/s committed every 30 s (120 MERGEs of 6,000 rows into one day), data files of that
  day before and after the lake writer's compaction, and their median size, read from the log with delta-rs.
- The report: `make report`'s command over the 10M-row table, its wall time and peak RSS.
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
ROWS_PER_DAY = current().bench.rows_per_day
#: 30 s of 1k events/s: one micro-batch of the lake writer at the rate of the latency figures.
MERGE_ROWS = 30_000
MERGE_BATCHES = 3
#: An hour at 200 events/s with LAKE_COMMIT_INTERVAL's 30 s.
HOUR_COMMITS = current().bench.hour_commits
HOUR_ROWS_PER_COMMIT = 6_000


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
    env = config.child_environment()
    env.update(PYSPARK_SUBMIT_ARGS=spark.submit_args(config), PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
    log = runtime_dir() / "bench-table-job.log"
    with log.open("a") as out:
        out.write(f"--- {' '.join(args[:2])}\n")
        out.flush()
        done = subprocess.run([sys.executable, str(JOB), *args], env=env, stdout=subprocess.PIPE, stderr=out, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"bench"')]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"bench: table job {args[0]} failed (rc {done.returncode}); see {log}")
    return json.loads(lines[-1])["bench"]


def _day_files(key: str, day: str) -> dict[str, Any]:
    found = table(key, current().lake.bucket)
    assert found is not None, key
    actions = pa.table(found.get_add_actions(flatten=True))
    sizes = [
        size
        for size, dt in zip(actions["size_bytes"].to_pylist(), actions["partition.dt"].to_pylist(), strict=True)
        if dt == day
    ]
    return {"files": len(sizes), "median_mb": round(statistics.median(sizes) / 2**20, 2) if sizes else 0}


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
    small_days = -(-1_000_000 // ROWS_PER_DAY)
    big_days = -(-10_000_000 // ROWS_PER_DAY) - small_days
    first = today - timedelta(days=small_days + big_days)

    def day(n: int) -> str:
        return (first + timedelta(days=n)).isoformat()

    result: dict[str, Any] = {"rows_per_day": ROWS_PER_DAY}
    with tempfile.TemporaryDirectory() as work:
        template = str(Path(work) / "template.jsonl")
        _template(config, Path(template))
        aged_url, hour_url = f"s3a://{bucket}/{aged}", f"s3a://{bucket}/{hour}"
        try:
            build_small = _job("build", aged_url, template, day(0), str(small_days), str(ROWS_PER_DAY))
            at_1m = _job("merge", aged_url, template, day(small_days - 1), str(MERGE_ROWS), str(MERGE_BATCHES))
            build_big = _job("build", aged_url, template, day(small_days), str(big_days), str(ROWS_PER_DAY))
            last = day(small_days + big_days - 1)
            at_10m = _job("merge", aged_url, template, last, str(MERGE_ROWS), str(MERGE_BATCHES))
            ratio = at_10m["seconds_p50"] / at_1m["seconds_p50"]
            result["merge"] = {
                "rows_per_batch": MERGE_ROWS,
                "table_rows_small": build_small["rows"] + MERGE_ROWS * MERGE_BATCHES,
                "table_rows_large": build_small["rows"] + build_big["rows"] + 2 * MERGE_ROWS * MERGE_BATCHES,
                "seconds_p50_at_1m": at_1m["seconds_p50"],
                "seconds_p50_at_10m": at_10m["seconds_p50"],
                "ratio_10m_vs_1m": round(ratio, 2),
                "seconds_to_write_10m_rows": round(build_small["seconds"] + build_big["seconds"], 1),
                "target ratio <= 1.5": ratio <= 1.5,
            }
            # No invalid or sessions table there: the report shows none (sessions of 10M events are not built).
            elsewhere = f"s3a://{bucket}/{prefix}/aged"
            result["report_on_10m"] = _report(
                aged_url, f"{elsewhere}/clickstream-invalid", f"{elsewhere}/clickstream-sessions"
            )

            hourly = _job("merge", hour_url, template, today.isoformat(), str(HOUR_ROWS_PER_COMMIT), str(HOUR_COMMITS))
            before = _day_files(hour, today.isoformat())
            compacted = _job("compact", hour_url, today.isoformat())
            after = _day_files(hour, today.isoformat())
            result["files_after_an_hour_at_200_eps"] = {
                "commits": HOUR_COMMITS,
                "rows": HOUR_COMMITS * HOUR_ROWS_PER_COMMIT,
                "merge_seconds_p50": hourly["seconds_p50"],
                "merge_seconds_max": hourly["seconds_max"],
                "before_compaction": before,
                "after_compaction": after,
                "compaction_ms": compacted["ms"],
                "target after <= 4": after["files"] <= 4,
            }
        finally:
            delete_prefix(f"{prefix}/")
    return result
