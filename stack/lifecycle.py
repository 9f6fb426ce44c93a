"""The embedded stack as a whole: every service started, stopped or reported in dependency order."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from pipeline.config import CONFIG_VARIABLE, Config, variables
from stack import (
    chalice_local,
    cluster,
    deploy,
    kafka,
    kafka_ui,
    lake_store,
    localstack,
    registry,
    s3proxy,
    spark,
    supervisor,
)
from stack.cluster import current
from stack.process import free_port

T = TypeVar("T")


def up(config: Config | None = None, supervised: bool = True, beside: Callable[[], T] | None = None) -> T | None:
    """Start what is not running, in dependency order, with independent starts side by side. `beside` runs while
    the lake writer starts, once Kafka, the registry and LocalStack answer (`make run`'s deploy); its result is
    returned."""
    config = config or current()
    kafka.check_shape(config)
    if not config.lake_on_localstack:
        # First: a store that is not there, refuses the keys or lacks the bucket stops `make up` before anything runs.
        lake_store.prepare(config)
    clustered = cluster.enabled(config)
    cluster.record(config, clustered)
    # LocalStack and the Spark cluster need nothing of Kafka's: they start side by side (each start is mostly one
    # busy core).
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="start beside kafka") as pool:
        started = [pool.submit(localstack.start, config)]
        if clustered:
            started.append(pool.submit(_start_spark_cluster, config))
        kafka.start(config)
        registry.start(config)
        # Before the collector: its cold start asks the registry for the raw topic's schema id.
        registry.register_schemas(config)
        for future in started:
            future.result()
    if config.lake_on_localstack:
        lake_store.prepare(config)
    # The lake writer's start is mostly its JVM's (15-40 s): what needs only the services above goes beside it.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="beside the lake writer") as pool:
        lake_writer = pool.submit(spark.start, config)
        besides = pool.submit(beside) if beside else None
        chalice_local.start(config)
        kafka_ui.start(config)
    lake_writer.result()
    if supervised:
        supervisor.start(config)
    # Its failure (a deploy's) is raised once the stack is up and supervised, as when it ran after `up`.
    return besides.result() if besides else None


def _start_spark_cluster(config: Config) -> None:
    spark.start_master(config)
    spark.start_worker(config)


def down(config: Config | None = None) -> None:
    """Stop everything, in three rounds of stops side by side: what writes to the services below it, then those
    services, then Kafka, which the others publish to until they are gone. (One after another, `make down` waited
    for each service's shutdown in turn: about twice as long.)"""
    config = config or current()
    # The supervisor first: it would bring back what the next lines stop.
    supervisor.stop()
    _side_by_side(kafka_ui.stop, lambda: _stop_spark(config), chalice_local.stop)
    _side_by_side(s3proxy.stop, lambda: localstack.stop(config), registry.stop)
    kafka.stop(config)


def _stop_spark(config: Config) -> None:
    spark.stop_all()
    if cluster.enabled(config):
        spark.stop_cluster(config)


def _side_by_side(*stops: Callable[[], None]) -> None:
    with ThreadPoolExecutor(max_workers=len(stops), thread_name_prefix="stop") as pool:
        for stopped in [pool.submit(stop) for stop in stops]:
            stopped.result()


def status(config: Config | None = None) -> list[str]:
    config = config or current()
    lines = [kafka.status(config), registry.status(config), localstack.status(config), *lake_store.status(config)]
    lines.append(chalice_local.status(config))
    lines.append(spark.status(config))
    if cluster.enabled(config):
        lines.append(spark.cluster_status(config))
    lines.append(kafka_ui.status(config))
    lines.append(supervisor.status())
    if localstack.healthy(config):
        lines.append(deploy.spool_status(config))
    return lines


def fresh_stack_environment(
    runtime: Path | str, clustered: bool = False, base: Mapping[str, str] | None = None, store: str = "localstack"
) -> dict[str, str]:
    """`base` (this environment) for a second, independent stack: its own runtime folder and free ports for every
    service (three Kafka nodes and a Spark master and worker if `clustered`; S3Proxy if `store` is `s3proxy`).

    Every setting of the tree is left out of `base` (ports, topics, endpoints, the lake's paths and intervals), so
    the defaults apply but for the ports and the runtime folder.
    """
    nodes = 3 if clustered else 1
    ports: set[int] = set()
    while len(ports) < 3 * nodes + 9:
        ports.add(free_port())
    free = sorted(ports)
    brokers, controllers, sasl = free[:nodes], free[nodes : 2 * nodes], free[2 * nodes : 3 * nodes]
    rest = free[3 * nodes :]
    gateway, collector_port, spark_ui, master, master_ui, worker_ui, registry_port, kafka_ui_port, s3 = rest
    settings = {variable.name for _, variable in variables()} | {CONFIG_VARIABLE}
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in settings}
    env.update(
        CLICKSTREAM_RUNTIME=str(runtime),
        KAFKA_BOOTSTRAP_SERVERS=",".join(f"127.0.0.1:{port}" for port in brokers),
        KAFKA_CONTROLLER_PORT=",".join(map(str, controllers)),
        KAFKA_SASL_SSL_PORT=",".join(map(str, sasl)),
        GATEWAY_LISTEN=f"127.0.0.1:{gateway}",
        COLLECTOR_PORT=str(collector_port),
        SPARK_UI_PORT=str(spark_ui),
        SCHEMA_REGISTRY_PORT=str(registry_port),
        KAFKA_UI_PORT=str(kafka_ui_port),
        CLUSTER="1" if clustered else "0",
    )
    if clustered:
        env.update(
            SPARK_MASTER=f"spark://127.0.0.1:{master}",
            SPARK_MASTER_WEBUI_PORT=str(master_ui),
            SPARK_WORKER_WEBUI_PORT=str(worker_ui),
        )
    if store == "s3proxy":
        env.update(LAKE_STORE=store, LAKE_S3_ENDPOINT=f"http://127.0.0.1:{s3}")
    # The machine's own (JAVA_HOME, the download cache) stay: they are not the stack's.
    for name in ("JAVA_HOME", "CLICKSTREAM_HOME"):
        if (os.environ if base is None else base).get(name):
            env[name] = (os.environ if base is None else base)[name]
    return env
