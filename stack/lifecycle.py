"""The embedded stack as a whole: every service started, stopped or reported in dependency order."""

from __future__ import annotations

import os
from pathlib import Path

from chalicelib.settings import setting
from stack import chalice_local, cluster, deploy, kafka, localstack, spark, supervisor
from stack.process import free_port


def up(supervised: bool = True) -> None:
    clustered = cluster.enabled()
    cluster.record(clustered)
    kafka.start()
    localstack.start()
    localstack.ensure_bucket(setting("LAKE_BUCKET"))
    chalice_local.start()
    if clustered:
        spark.start_master()
        spark.start_worker()
    spark.start()
    if supervised:
        supervisor.start()


def down() -> None:
    # The supervisor first: it would bring back what the next lines stop.
    supervisor.stop()
    spark.stop()
    if cluster.enabled():
        spark.stop_cluster()
    chalice_local.stop()
    localstack.stop()
    kafka.stop()
    cluster.record(False)


def status() -> list[str]:
    lines = [kafka.status(), localstack.status(), chalice_local.status(), spark.status()]
    if cluster.enabled():
        lines.append(spark.cluster_status())
    lines.append(supervisor.status())
    if localstack.healthy():
        lines.append(deploy.spool_status())
    return lines


def fresh_stack_environment(runtime: Path | str, clustered: bool = False) -> dict[str, str]:
    """This environment for a second, independent stack: its own runtime folder and free ports for every service
    (three Kafka nodes and a Spark master and worker if `clustered`).

    The stack's own settings of this shell (ports, topics, endpoints) are left out, so its defaults apply.
    """
    nodes = 3 if clustered else 1
    ports: set[int] = set()
    while len(ports) < 3 * nodes + 6:
        ports.add(free_port())
    free = sorted(ports)
    brokers, controllers, sasl = free[:nodes], free[nodes : 2 * nodes], free[2 * nodes : 3 * nodes]
    rest = free[3 * nodes :]
    gateway, collector_port, spark_ui, master, master_ui, worker_ui = rest
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SPARK_", "COLLECTOR_", "AWS_", "CLUSTER"))
    }
    env.update(
        CLICKSTREAM_RUNTIME=str(runtime),
        KAFKA_BOOTSTRAP_SERVERS=",".join(f"127.0.0.1:{port}" for port in brokers),
        KAFKA_CONTROLLER_PORT=",".join(map(str, controllers)),
        KAFKA_SASL_SSL_PORT=",".join(map(str, sasl)),
        GATEWAY_LISTEN=f"127.0.0.1:{gateway}",
        COLLECTOR_PORT=str(collector_port),
        SPARK_UI_PORT=str(spark_ui),
        CLUSTER="1" if clustered else "0",
    )
    if clustered:
        env.update(
            SPARK_MASTER=f"spark://127.0.0.1:{master}",
            SPARK_MASTER_WEBUI_PORT=str(master_ui),
            SPARK_WORKER_WEBUI_PORT=str(worker_ui),
        )
    return env
