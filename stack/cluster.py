"""`CLUSTER=1`: the scale-out path on one machine, without Docker.

Three Kafka nodes in KRaft mode (each broker and controller, a static quorum of three) with topics replicated
three times and `min.insync.replicas=2`, and a Spark standalone master and worker started from PySpark's own
jars with `spark-class`; the lake writer is submitted to the master unchanged. CLUSTER=1 only changes
defaults (below); an explicit variable still wins. `make up` records the choice in the runtime folder, so
later commands (`make deploy`, `make status`, `make run`, `make down`, `make up` again) follow the stack without it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from pipeline.config import CONFIG_VARIABLE, Config, load
from pipeline.deployment import runtime_dir

#: What CLUSTER=1 changes. Each Kafka node's controller and SASL_SSL listener listen on the ports at its place in
#: the lists.
CLUSTER_DEFAULTS = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292",
    "KAFKA_CONTROLLER_PORT": "9093,9193,9293",
    "KAFKA_SASL_SSL_PORT": "9094,9194,9294",
    "SPARK_MASTER": "spark://127.0.0.1:7077",
}


def marker(config: Config) -> Path:
    return runtime_dir(config) / "cluster.json"


def enabled(config: Config) -> bool:
    """CLUSTER=1 (or 0) if set, else whether the running stack was started as a cluster."""
    return config.stack.cluster == "1" if config.stack.cluster else marker(config).exists()


def current(environ: Mapping[str, str] | None = None) -> Config:
    """The stack's configuration: the tree this process was handed, else its environment with, when the stack runs
    as a cluster, the values the running cluster was started with (or CLUSTER_DEFAULTS) where no variable is set."""
    env = os.environ if environ is None else environ
    config = load(env)
    if env.get(CONFIG_VARIABLE) or not enabled(config):
        return config
    try:
        recorded = json.loads(marker(config).read_text())
    except (FileNotFoundError, ValueError):
        recorded = {}
    defaults = {**CLUSTER_DEFAULTS, **{k: v for k, v in recorded.items() if v}}
    return load({**defaults, **{k: v for k, v in env.items() if v}, "CLUSTER": "1"})


def record(config: Config, clustered: bool) -> None:
    """Remember (at `make up`) whether the stack runs as a cluster, and with which values: kept across `make down`,
    as its Kafka data is (kafka.check_shape refuses another shape)."""
    if clustered:
        values = config.environment(("kafka", "spark"))
        marker(config).parent.mkdir(parents=True, exist_ok=True)
        marker(config).write_text(json.dumps({name: values[name] for name in CLUSTER_DEFAULTS}) + "\n")
    else:
        marker(config).unlink(missing_ok=True)
