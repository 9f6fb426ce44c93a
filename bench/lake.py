"""The lake's figures for `make bench`: end-to-end latency through the running pipeline, Spark's throughput.

Latency: events POSTed at a steady rate through API Gateway -> Lambda -> Kafka -> the running lake writer,
each timed from its POST until its row is readable (committed to the Delta table) in the lake, and until its
record is in the latest topic. These events land in the real lake, marked with package_id "acme.bench".
Throughput: a second lake writer on local[2] with its own checkpoint and output, over a topic of its own that
holds a backlog of three full batches (SPARK_MAX_OFFSETS_PER_TRIGGER each), from the first offset until it has caught
up: enriched, without the enrichment stage, and enriched with the sessions table kept up (the headline's).
"""

from __future__ import annotations

import itertools
import json
import shutil
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.dataset as ds
import requests
from kafka import KafkaConsumer, TopicPartition

from chalicelib.collector import Collector, RequestInfo
from chalicelib.sinks.kafka import KafkaSink
from generator.synthetic import synthetic_events
from lake.reader import LAKE_PREFIX, filesystem, table
from pipeline.config import Config
from pipeline.deployment import read_deployment
from stack import kafka, lake_store, spark
from stack.cluster import current
from stack.deploy import BENCH_PACKAGE
from stack.process import free_port, group_peak_rss_mb


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def _latest_consumer(config: Config) -> KafkaConsumer:
    """A consumer of every partition of the latest topic, from its end."""
    consumer = KafkaConsumer(bootstrap_servers=config.kafka.servers, enable_auto_commit=False)
    topic = config.kafka.latest_topic
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    for partition in partitions:
        consumer.position(partition)  # resolves the end now, before anything is posted
    return consumer


def _figures(posted: dict[str, float], seen: dict[str, float], target_p50_s: float) -> dict[str, Any]:
    latencies = [seen[i] - posted[i] for i in posted if i in seen]
    if not latencies:
        return {"missing": f"none of the {len(posted)} events posted arrived within 120 s"}
    return {
        "missing_after_120s": len(set(posted) - set(seen)),
        "p50_s": round(_percentile(latencies, 50), 2),
        "p99_s": round(_percentile(latencies, 99), 2),
        "max_s": round(max(latencies), 2),
        f"target p50 <= {target_p50_s:g} s": _percentile(latencies, 50) <= target_p50_s,
    }


def e2e_latency(rate: int = 1000, seconds: float = 60, warm_up_max_s: float = 240) -> dict[str, Any]:
    """The figures of a run of `seconds` at `rate`, after a run at the same rate until the lake writer is warm: two
    commits of the lake query with this traffic, and a round of the sessions that took some of it (a lake writer
    that has just started compiles its first batches' code, and its first sessions round reads the tables cold: a
    user sees the figures of one that has been running). The warm-up's own figures are reported beside them."""
    deployment = read_deployment()
    if deployment is None:
        return {"missing": "the collector is not deployed (make deploy)"}
    url = f"{deployment['api_url']}/collect"
    write_key = deployment["write_keys"]["generator"]
    warming = _WarmUp(current().keeps_sessions, warm_up_max_s)
    warm_up = _latency_run(url, write_key, rate, warming.done)
    measured = _latency_run(url, write_key, rate, lambda elapsed: elapsed >= seconds)
    return {**measured, "warm_up": {**warm_up, "warm": warming.warm}}


class _WarmUp:
    """Whether the running lake writer is warm: since the warm-up began, its lake query committed two batches with
    rows, and (when it keeps them) a sessions round took some customers; or `max_s` have passed."""

    def __init__(self, sessions: bool, max_s: float) -> None:
        self.sessions, self.max_s = sessions, max_s
        self.batches_before = self._batches(spark.job_status())
        self.since, self.warm = time.time(), False

    @staticmethod
    def _batches(status: dict[str, Any]) -> int:
        return status.get("queries", {}).get("lake", {}).get("totals", {}).get("data_batches", 0)

    def done(self, elapsed: float) -> bool:
        status = spark.job_status()
        round_ = status.get("notes", {}).get("sessions", {})
        sessions_warm = not self.sessions or (round_.get("at", 0) > self.since and round_.get("customers", 0) > 0)
        self.warm = self._batches(status) - self.batches_before >= 2 and sessions_warm
        return self.warm or elapsed >= self.max_s


def _bench_events(rate: int, chunk_s: float = 10) -> Iterator[dict[str, Any]]:
    """Synthetic events marked as the bench's, made `chunk_s` seconds' worth at a time, for as long as asked."""
    seed = int(time.time())
    while True:
        events = synthetic_events(int(rate * chunk_s), seed=seed)
        for event in events:
            event["package_id"] = BENCH_PACKAGE
        yield from events
        seed += 1


def _latency_run(
    url: str, write_key: str, rate: int, enough: Callable[[float], bool], tick: float = 0.1
) -> dict[str, Any]:
    """Events POSTed at `rate` until `enough(seconds since the first)`, then their figures once all are in (or 120 s
    have passed)."""
    per_tick = int(rate * tick)
    source = _bench_events(rate)
    posted: dict[str, float] = {}
    seen: dict[str, float] = {}
    in_latest: dict[str, float] = {}
    consumer = _latest_consumer(current())
    start_table = table(LAKE_PREFIX)
    read_files: set[str] = set(start_table.file_uris()) if start_table is not None else set()
    stop = threading.Event()

    def watch() -> None:
        # Each commit of the Delta table adds files: an event is "in the lake" once a commit holding it is.
        while not stop.is_set():
            current = table(LAKE_PREFIX)
            new = [f for f in current.file_uris() if f not in read_files] if current is not None else []
            if new:
                paths = [uri.split("://", 1)[-1] for uri in new]
                ids = ds.dataset(paths, filesystem=filesystem(), format="parquet").to_table(columns=["id"])
                now = time.time()
                for event_id in ids.column("id").to_pylist():
                    seen.setdefault(event_id, now)
                read_files.update(new)
            time.sleep(0.2)

    def follow_latest() -> None:
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=100).values():
                now = time.time()
                for record in records:
                    if record.key is not None:
                        in_latest.setdefault(record.key.decode(), now)

    watchers = [threading.Thread(target=watch, daemon=True), threading.Thread(target=follow_latest, daemon=True)]
    for watcher in watchers:
        watcher.start()
    started = time.time()
    with requests.Session() as session:
        session.headers["X-Write-Key"] = write_key
        ticks = 0
        while not enough(time.time() - started):
            batch = list(itertools.islice(source, per_tick))
            sent_at = time.time()
            response = session.post(url, json=batch, timeout=30)
            assert response.status_code == 200, response.text
            posted.update(dict.fromkeys((e["id"] for e in batch), sent_at))
            # Steady rate: the next batch leaves on its tick, whatever this one took.
            ticks += 1
            time.sleep(max(0.0, started + ticks * tick - time.time()))
    posting_s = time.time() - started
    deadline = time.time() + 120
    while not (set(posted) <= set(seen) and set(posted) <= set(in_latest)) and time.time() < deadline:
        time.sleep(0.5)
    stop.set()
    for watcher in watchers:
        watcher.join()
    consumer.close()
    return {
        "rate_events_per_s": rate,
        "events": len(posted),
        "seconds": round(posting_s, 1),
        # The lake commits every LAKE_COMMIT_INTERVAL (20 s): freshness is half that at p50 plus the commit's time.
        "lake_freshness": _figures(posted, seen, 20),
        # The latest topic's query runs every SPARK_TRIGGER (1 s).
        "latest_topic": _figures(posted, in_latest, 2),
    }


def spark_throughput(config: Config, full_batches: int = 3) -> dict[str, Any]:
    """A fresh lake writer on local[2] over a backlog of `full_batches` batches of the most a batch takes
    (SPARK_MAX_OFFSETS_PER_TRIGGER); events/s until caught up. The steady rate is of the batches after the first."""
    topic = f"bench.lake.{uuid.uuid4().hex[:8]}"
    config = config.replace(kafka={"raw_topic": topic})
    kafka.create_topics(config)
    backlog = full_batches * config.spark.max_offsets_per_trigger
    _publish_backlog(config, backlog)
    try:
        # The enrichment's cost alone (sessions off in both), then the sessions' on top.
        enriched = _catch_up(config, backlog, enrichment=True, sessions=False)
        plain = _catch_up(config, backlog, enrichment=False, sessions=False)
        with_sessions = _catch_up(config, backlog, enrichment=True, sessions=True)
    finally:
        kafka.delete_topics([topic], config)
    return {
        **enriched,
        "without_enrichment": plain,
        "with_sessions": with_sessions,
        "enrichment_cost_steady_ratio": round(enriched["events_per_s_steady"] / plain["events_per_s_steady"], 2),
        "sessions_cost_steady_ratio": round(with_sessions["events_per_s_steady"] / enriched["events_per_s_steady"], 2),
        "target >= 15k events/s (steady, enriched, sessions on)": with_sessions["events_per_s_steady"] >= 15_000,
    }


def _publish_backlog(config: Config, backlog: int, chunk: int = 100_000) -> None:
    """`backlog` synthetic events on the raw topic, made a chunk at a time (a million at once would hold gigabytes).
    A burst within one hour, as after an outage at a busy hour: the synthetic shop spaces customers 7 s apart,
    which would spread a backlog over weeks of hourly partitions."""
    collector = Collector(config, KafkaSink(config.kafka))
    first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for start in range(0, backlog, chunk):
        events = synthetic_events(min(chunk, backlog - start), seed=5 + start)
        for n, event in enumerate(events, start=start):
            moment = first + timedelta(seconds=3600 * n / backlog)
            event["event"]["timestamp"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for offset in range(0, len(events), 1000):
            body = json.dumps(events[offset : offset + 1000]).encode()
            assert collector.collect(body, RequestInfo("application/json", "127.0.0.1", "bench")).status_code == 200


def delete_prefix(prefix: str) -> None:
    """Every object under `prefix` in the lake bucket (a bench run's tables and checkpoints)."""
    config = current()
    s3, bucket = lake_store.client(config), config.lake.bucket
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})


def _catch_up(config: Config, events: int, enrichment: bool, sessions: bool) -> dict[str, Any]:
    run = f"s3a://{config.lake.bucket}/bench/{uuid.uuid4().hex[:8]}"
    tables = {f"{t.split('-')[-1]}_path": f"{run}/{t}" for t in ("clickstream-invalid", "clickstream-sessions")}
    job = config.replace(
        spark={"master": "local[2]", "ui_port": free_port(), "checkpoint": f"{run}/_checkpoints"},
        lake={"events_path": f"{run}/clickstream-data", **tables, "enrichment": enrichment},
        sessions={"enabled": sessions},
    )
    launched = time.monotonic()
    spark.start(job, name="spark-bench")
    ready = time.monotonic()
    max_lag = 0
    try:
        while True:
            lake = spark.progress("spark-bench").get("lake", {})
            max_lag = max(max_lag, lake.get("lag", 0))
            if lake.get("offsets", -1) >= events:
                break
            if time.monotonic() - ready > 600:
                raise TimeoutError("bench: the bench lake writer did not catch up in 10 minutes")
            time.sleep(0.5)
        elapsed = time.monotonic() - ready
        peak_rss = group_peak_rss_mb(spark.service("spark-bench").pid())
        totals = spark.job_status("spark-bench")["queries"]["lake"]["totals"]
        steady = round(totals["steady_rows"] / (totals["steady_ms"] / 1000)) if totals["steady_ms"] else 0
    finally:
        spark.stop("spark-bench")
        delete_prefix(run.removeprefix(f"s3a://{config.lake.bucket}/"))
        shutil.rmtree(spark.latest_checkpoint(job), ignore_errors=True)
    return {
        "master": "local[2]",
        "backlog_events": events,
        "start_to_queries_running_s": round(ready - launched, 1),
        "seconds_to_catch_up": round(elapsed, 1),
        "events_per_s_overall": round(events / elapsed),
        # Batches after the first: the first one also pays for class loading and code generation.
        "events_per_s_steady": steady,
        "peak_rss_mb": peak_rss,
        "enrichment": enrichment,
        "sessions": sessions,
        "target >= 20k events/s (steady)": steady >= 20_000,
    }
