"""`make bench`: collector ingest rates against the real broker, measured in one run, as one JSON object.

Compares, for batches of 987 events with acks=all:
  - the collector in-process (parse, validate, serialise, produce, flush once per batch), writing Confluent's wire
    format and, beside it, plain JSON,
  - the collector behind `chalice local` (the same plus HTTP),
  - the raw producer: the same client and settings sending pre-serialised events,
  - the seed's way: one `send().get()` round trip per event,
  - the collector deployed on LocalStack (API Gateway -> Lambda), when `make bench` deployed its stage.
Bench traffic goes to its own topics (the `bench` stage of chalice_app/.chalice/config.json), so it never
reaches the lake. Then the lake's figures (bench/lake.py: freshness, the latest topic, Spark's ingest rate) and the
Delta tables' (bench/tables.py: an append into a day of 1M and of 20M rows, files per day before and after
compaction, the report on 10M events). Its `headline` repeats the figures that judge the lake.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import requests
from kafka import KafkaProducer

from bench import lake, tables
from chalicelib.collector import Collector, RequestInfo
from chalicelib.dependencies import registry_id
from chalicelib.rate_limit import RateLimiter
from chalicelib.sinks.kafka import KafkaSink, producer_config
from chalicelib.write_keys import WriteKeys
from generator.sender import SEED_BATCH_SIZE
from generator.synthetic import synthetic_events
from pipeline.config import Config
from pipeline.deployment import deployed_write_key, read_deployment
from stack import chalice_local, kafka, localstack, spark
from stack.cluster import current
from stack.deploy import stage_config
from stack.lifecycle import fresh_stack_environment
from stack.paths import REPO
from stack.process import ServiceError, free_port, group_peak_rss_mb, wait_for_port

BATCH = SEED_BATCH_SIZE
REPEATS = 3
SMALL_REQUESTS = 200
#: Events of the bench's `make run`s.
RUN_EVENTS = 200


def _rate(events: int, run: Callable[[], None]) -> float:
    """Best of a few runs, in events/s (the best run is the least disturbed by the rest of the machine)."""
    rates = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        rates.append(events / (time.perf_counter() - started))
    return max(rates)


def peak_rss() -> dict[str, Any]:
    """Peak resident memory of each service of the running stack (its process group), and of the whole stack."""
    services = {
        "kafka": kafka.service(),
        "localstack_with_lambdas": localstack.service(),
        "chalice_local": chalice_local.service(),
        "spark_lake_writer": spark.service(),
    }
    figures: dict[str, Any] = {name: group_peak_rss_mb(svc.pid()) for name, svc in services.items()}
    # LocalStack's Lambda processes run in groups of their own.
    figures["localstack_with_lambdas"] += sum(group_peak_rss_mb(pid) for pid in localstack.runtime_processes())
    figures["stack_total"] = sum(figures.values())
    figures["target stack <= 3 GB"] = figures["stack_total"] <= 3 * 1024
    return figures


def make_run_on_a_fresh_stack() -> dict[str, Any]:
    """`make run`'s path on a second stack of its own (fresh runtime, free ports, downloads cached), then once more
    on the running stack (warm), then down."""
    with tempfile.TemporaryDirectory() as runtime:
        env = fresh_stack_environment(runtime)
        try:
            cold = _timed_run(env)
            warm = _timed_run(env) if cold is not None else None
        finally:
            subprocess.run([sys.executable, "-m", "stack", "down"], env=env, cwd=REPO, capture_output=True, timeout=300)
    return {
        "events": RUN_EVENTS,
        "seconds_until_every_event_is_in_the_lake": cold,
        "warm_seconds_until_every_event_is_in_the_lake": warm,
        "target first row <= 90 s": cold is not None and cold <= 90,
        "target warm <= 40 s": warm is not None and warm <= 40,
    }


def _timed_run(env: dict[str, str]) -> float | None:
    """`make run`'s command: seconds until it said every event is in the lake (None if it never did)."""
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "run", "--events", str(RUN_EVENTS)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    landed = run.returncode == 0 and "every accepted event is in the lake" in run.stdout
    return round(time.monotonic() - started, 1) if landed else None


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The figures that judge the lake, as measured in this run (None where one went missing)."""

    def at(*path: str) -> Any:
        found: Any = result
        for key in path:
            found = found.get(key) if isinstance(found, dict) else None
        return found

    return {
        # As the goal defines it: enriched, with the sessions table kept up.
        "lake_steady_events_per_s": at("spark_throughput", "with_sessions", "events_per_s_steady"),
        "lake_day_growth_cost_ratio": at("tables", "day_growth", "cost_ratio"),
        "latest_p50_s": at("lake_e2e_latency", "latest_topic", "p50_s"),
        "latest_p99_s": at("lake_e2e_latency", "latest_topic", "p99_s"),
        "lake_freshness_p50_s": at("lake_e2e_latency", "lake_freshness", "p50_s"),
        "stack_peak_rss_mib": at("peak_rss_mb", "stack_total"),
        "make_run_warm_s": at("make_run_cold_services", "warm_seconds_until_every_event_is_in_the_lake"),
    }


def measured(measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One measurement's figures; one that failed or found nothing says what was missing, and the bench goes on."""
    try:
        return measure()
    except Exception as exc:  # e.g. ServiceError, with the service's log
        return {"missing": f"{type(exc).__name__}: {str(exc).strip()[:2000]}"}


def main() -> int:
    # The bench stage's configuration (its topics and write keys: chalice_app/.chalice/config.json).
    settings, _ = stage_config("bench", current())
    kafka.create_topics(settings)
    events = synthetic_events(BATCH * settings.bench.batches, seed=1)
    batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
    bodies = [json.dumps(b).encode() for b in batches]
    total = len(events)
    result: dict[str, Any] = {"batch_size": BATCH, "events_per_run": total, "acks": "all"}

    # Warm-up: connections and metadata, as in a warm Lambda. Raw records in Confluent's wire format, with the id
    # `make bench`'s deploy of the bench stage registered; the same collector writing plain JSON beside it.
    schema_id = registry_id(settings)
    assert schema_id is not None, "the registry does not have the bench topics' schema: run `make bench`"
    collector = Collector(settings, KafkaSink(settings.kafka), registry_id=schema_id)
    plain_json = Collector(settings, collector.sink)
    info = RequestInfo("application/json", "127.0.0.1", "bench")
    assert collector.collect(bodies[0], info).status_code == 200

    def in_process(through: Collector) -> None:
        for body in bodies:
            outcome = through.collect(body, info)
            assert outcome.status_code == 200, outcome.body

    result["collector_in_process_eps"] = round(_rate(total, lambda: in_process(collector)))
    result["collector_in_process_plain_json_eps"] = round(_rate(total, lambda: in_process(plain_json)))
    result["collector_in_process_with_write_keys"] = measured(
        lambda: _with_write_keys(settings, collector, bodies, total)
    )

    producer = KafkaProducer(**producer_config(settings.kafka))
    values = [[json.dumps(e).encode() for e in b] for b in batches]

    def raw() -> None:
        for batch, encoded in zip(batches, values, strict=True):
            futures = [
                producer.send(settings.kafka.raw_topic, key=e["id"].encode(), value=v)
                for e, v in zip(batch, encoded, strict=True)
            ]
            producer.flush()
            assert all(f.succeeded() for f in futures)

    raw()
    result["raw_producer_eps"] = round(_rate(total, raw))
    producer.close()

    # The seed: default producer settings, one synchronous round trip per event.
    seed_producer = KafkaProducer(bootstrap_servers=settings.kafka.servers)
    # The seed keyed each record by event id too.
    seed_values = [
        (e["id"].encode(), v) for b, vs in zip(batches, values, strict=True) for e, v in zip(b, vs, strict=True)
    ]
    seed_values = seed_values[: settings.bench.seed_events]

    def seed_way() -> None:
        for k, v in seed_values:
            seed_producer.send(settings.kafka.raw_topic, key=k, value=v).get(timeout=10)

    result["seed_per_event_eps"] = round(_rate(len(seed_values), seed_way))
    seed_producer.close()

    result["chalice_local"] = measured(lambda: _chalice_local(bodies, total))
    result["api_gateway_lambda"] = measured(lambda: _api_gateway(bodies, total))
    chalice_local_eps = result["chalice_local"].get("eps")
    result["chalice_local_eps"] = chalice_local_eps

    result["ratios"] = {
        "collector_vs_raw": round(result["collector_in_process_eps"] / result["raw_producer_eps"], 3),
        "wire_format_vs_plain_json": round(
            result["collector_in_process_eps"] / result["collector_in_process_plain_json_eps"], 3
        ),
        "write_keys_vs_none": round(
            result["collector_in_process_with_write_keys"].get("eps", 0) / result["collector_in_process_eps"], 3
        ),
        "collector_vs_seed": round(result["collector_in_process_eps"] / result["seed_per_event_eps"], 1),
    }
    if chalice_local_eps:
        result["ratios"]["chalice_local_vs_raw"] = round(chalice_local_eps / result["raw_producer_eps"], 3)
        result["ratios"]["chalice_local_vs_seed"] = round(chalice_local_eps / result["seed_per_event_eps"], 1)
        if "eps" in result["api_gateway_lambda"]:
            result["ratios"]["api_gateway_lambda_vs_chalice_local"] = round(
                result["api_gateway_lambda"]["eps"] / chalice_local_eps, 3
            )
    result["targets"] = {
        "collector >= 0.5 x raw": result["ratios"]["collector_vs_raw"] >= 0.5,
        "collector >= 20 x seed": result["ratios"]["collector_vs_seed"] >= 20,
    }
    result["lake_e2e_latency"] = measured(lake.e2e_latency)
    result["spark_throughput"] = measured(lambda: lake.spark_throughput(current()))
    result["tables"] = measured(lambda: tables.table_figures(current()))
    result["peak_rss_mb"] = measured(peak_rss)
    result["make_run_cold_services"] = measured(make_run_on_a_fresh_stack)
    result["headline"] = headline(result)
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "kafka": kafka.version()}

    out = REPO / "bench-results" / "collector.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def _with_write_keys(settings: Config, plain: Collector, bodies: list[bytes], total: int) -> dict[str, Any]:
    """The in-process run again with the deployed bench key checked for every batch (the keys read from SSM on
    LocalStack, then cached) and its package for every event, and the rate limiter counting (at a rate it never
    reaches): the cost of authentication against the same collector without."""
    key = deployed_write_key("generator", "bench")
    if key is None:
        return {"missing": "the bench stage is not deployed (make bench deploys it)"}
    write_keys = WriteKeys.from_config(settings.collector, lambda: localstack.client("ssm"))
    keyed = Collector(settings, plain.sink, write_keys, RateLimiter(1e12, settings.collector.rate_limit_burst_s))
    info = RequestInfo("application/json", "127.0.0.1", "bench", write_key=key)

    def run() -> None:
        for body in bodies:
            outcome = keyed.collect(body, info)
            assert outcome.status_code == 200, outcome.body

    run()  # the keys loaded, as in a warm Lambda
    return {"eps": round(_rate(total, run))}


def _over_http(base_url: str, bodies: list[bytes], total: int, write_key: str | None) -> dict[str, float]:
    """Batches of 987 POSTed to a collector URL, and the warm latency of small requests."""
    headers = {"Content-Type": "application/json", **({"X-Write-Key": write_key} if write_key else {})}
    latencies: list[float] = []
    with requests.Session() as session:

        def post_all() -> None:
            for body in bodies:
                started = time.perf_counter()
                response = session.post(f"{base_url}/collect", data=body, headers=headers, timeout=60)
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text

        post_all()  # warm-up: producer, connections, a warm Lambda
        latencies.clear()
        eps = _rate(total, post_all)
        batch_ms = statistics.median(latencies) * 1000

        one_event = json.dumps(synthetic_events(1, seed=2)).encode()
        small: list[float] = []
        for _ in range(SMALL_REQUESTS):
            started = time.perf_counter()
            response = session.post(f"{base_url}/collect", data=one_event, headers=headers, timeout=60)
            small.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
    return {
        "eps": round(eps),
        "batch_ms_p50": round(batch_ms, 1),
        "one_event_request_ms_p50": round(statistics.median(small) * 1000, 1),
        "one_event_requests_per_s": round(len(small) / sum(small), 1),
    }


def _chalice_local(bodies: list[bytes], total: int) -> dict[str, float]:
    """The collector behind its own `chalice local` on a free port, writing to the bench topics."""
    port = free_port()
    svc = chalice_local.service(port, name="bench-chalice-local")
    # The bench stage checks write keys: its chalice local reads them from SSM on LocalStack.
    env = current().child_environment(as_variables=True)
    svc.start(chalice_local.command(port, "bench"), cwd=chalice_local.APP_DIR, env=env)
    try:
        if not wait_for_port("127.0.0.1", port, 30, alive=lambda: svc.pid() is not None):
            raise ServiceError(f"bench: chalice local did not start:\n{svc.log_tail()}")
        return _over_http(f"http://127.0.0.1:{port}", bodies, total, deployed_write_key("generator", "bench"))
    finally:
        svc.stop()


def _api_gateway(bodies: list[bytes], total: int) -> dict[str, Any]:
    """The bench stage deployed on LocalStack: API Gateway -> Lambda (local process) -> Kafka."""
    deployment = read_deployment("bench")
    if deployment is None:
        return {"missing": "the bench stage is not deployed (make bench deploys it)"}
    return _over_http(deployment["api_url"], bodies, total, deployment["write_keys"]["generator"])


if __name__ == "__main__":
    sys.exit(main())
