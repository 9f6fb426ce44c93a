"""The embedded stack as a whole: every service started, stopped or reported in dependency order."""

from __future__ import annotations

import os
from pathlib import Path

from chalicelib.settings import setting
from stack import chalice_local, deploy, kafka, localstack, spark, supervisor
from stack.process import free_port


def up(supervised: bool = True) -> None:
    kafka.start()
    localstack.start()
    localstack.ensure_bucket(setting("LAKE_BUCKET"))
    chalice_local.start()
    spark.start()
    if supervised:
        supervisor.start()


def down() -> None:
    # The supervisor first: it would bring back what the next lines stop.
    supervisor.stop()
    spark.stop()
    chalice_local.stop()
    localstack.stop()
    kafka.stop()


def status() -> list[str]:
    lines = [kafka.status(), localstack.status(), chalice_local.status(), spark.status(), supervisor.status()]
    if localstack.healthy():
        lines.append(deploy.spool_status())
    return lines


def fresh_stack_environment(runtime: Path | str) -> dict[str, str]:
    """This environment for a second, independent stack: its own runtime folder and free ports for every service.

    The stack's own settings of this shell (ports, topics, endpoints) are left out, so its defaults apply.
    """
    ports: set[int] = set()
    while len(ports) < 5:
        ports.add(free_port())
    kafka_port, controller, gateway, collector_port, spark_ui = sorted(ports)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SPARK_", "COLLECTOR_", "AWS_"))}
    env.update(
        CLICKSTREAM_RUNTIME=str(runtime),
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{kafka_port}",
        KAFKA_CONTROLLER_PORT=str(controller),
        GATEWAY_LISTEN=f"127.0.0.1:{gateway}",
        COLLECTOR_PORT=str(collector_port),
        SPARK_UI_PORT=str(spark_ui),
    )
    return env
